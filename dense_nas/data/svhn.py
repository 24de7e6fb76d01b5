"""SVHN (street view house numbers, cropped digits) from the official ``.mat`` files.

``train_32x32.mat`` and ``test_32x32.mat`` hold ``X``, a ``32x32x3xN`` uint8 array, and
``y``, an ``Nx1`` array of labels 1..10 where 10 stands for the digit 0. As in the paper,
training batches are not augmented by default (with ``augment=True`` they are shifted,
never mirrored) and normalisation uses statistics of the training split.

Example:
    >>> dm = SVHNDataModule("/nonexistent", download=False)
    >>> dm.num_classes, dm.in_channels, dm.image_size, dm.augment
    (10, 3, (32, 32), False)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch
from scipy.io.matlab import MatReadError

from dense_nas.data.download import ensure_files
from dense_nas.data.tensor_data import FileDataModule, LabelledImages
from dense_nas.errors import UserInputError

TRAIN_FILE = "train_32x32.mat"
TEST_FILE = "test_32x32.mat"


def read_mat(path: Path) -> LabelledImages:
    """Images ``(N, 3, 32, 32)`` and labels 0..9 of one official SVHN ``.mat`` file.

    Raises:
        UserInputError: the file is not a MATLAB file with SVHN's ``X`` and ``y``.
    """
    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
        pixels, labels = mat["X"], mat["y"].reshape(-1).astype(np.int64)
        valid = (
            pixels.dtype == np.uint8
            and pixels.shape[:3] == (32, 32, 3)
            and pixels.shape[3] == labels.size > 0
            and labels.min() >= 1
            and labels.max() <= 10
        )
    except (ValueError, OSError, MatReadError, KeyError) as err:
        raise _corrupt(path, f"{type(err).__name__}: {err}") from err
    if not valid:
        raise _corrupt(path, "X must be 32x32x3xN uint8, y N labels in 1..10")
    # MATLAB's height x width x channel x N becomes N x channel x height x width.
    images = torch.from_numpy(np.ascontiguousarray(pixels.transpose(3, 2, 0, 1)))
    return LabelledImages(images, torch.from_numpy(labels % 10))


def _corrupt(path: Path, why: str) -> UserInputError:
    return UserInputError(
        f"{path} is not an SVHN .mat file ({why}); delete it and run again "
        "to download a fresh copy",
        param="data_dir",
    )


class SVHNDataModule(FileDataModule):
    """SVHN: 73,257 training and 26,032 test images of the digits 0..9.

    Args:
        data_dir: directory holding ``train_32x32.mat`` and ``test_32x32.mat``.
        download: fetch missing files (MD5-checked).
        **kwargs: the shared options of :class:`~dense_nas.data.DenseNetDataModule`.
    """

    name = "svhn"
    num_classes = 10
    in_channels = 3
    image_size = (32, 32)
    crop_padding = 4

    def prepare_data(self) -> None:
        """Download (when allowed) whichever official file is missing."""
        self._files()

    def _files(self) -> list[Path]:
        return ensure_files(self.data_dir, (TRAIN_FILE, TEST_FILE), download=self.download)

    def _load_pool(self) -> LabelledImages:
        return read_mat(self._files()[0])

    def _load_test(self) -> LabelledImages:
        return read_mat(self._files()[1])

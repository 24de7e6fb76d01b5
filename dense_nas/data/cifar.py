"""CIFAR-10 and CIFAR-100 from the official binary-version archives.

A binary record is the label byte(s) followed by 3,072 pixel bytes: 1,024 red, then green,
then blue, each plane row-major. CIFAR-10 records carry one label byte; CIFAR-100 records
a coarse then a fine label byte (dense-nas trains on the 100 fine classes). Reading plain
records avoids the python-version archive, whose pickles could run code when loaded.

Validation holds out 5,000 training images, normalisation uses the paper's per-channel
statistics and training batches get the paper's augmentation (zero-pad 4, random 32x32
crop, horizontal flip).

Example:
    >>> dm = CIFAR100DataModule("/nonexistent", download=False)
    >>> dm.num_classes, dm.in_channels, dm.image_size, dm.augment
    (100, 3, (32, 32), True)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dense_nas.data.download import ensure_extracted
from dense_nas.data.tensor_data import FileDataModule, LabelledImages
from dense_nas.errors import UserInputError

_PIXELS = 3 * 32 * 32


def read_records(path: Path, *, label_bytes: int, num_classes: int) -> LabelledImages:
    """Images and labels of one CIFAR binary file; the last label byte is the class.

    Args:
        path: a ``.bin`` file of fixed-size records.
        label_bytes: label bytes before the pixels of each record (1, or 2 for CIFAR-100).
        num_classes: labels must lie below this.

    Raises:
        UserInputError: the file is not a whole number of records or holds a bad label.
    """
    record = label_bytes + _PIXELS
    raw = np.fromfile(path, dtype=np.uint8)
    labels = raw[label_bytes - 1 :: record].astype(np.int64)
    if raw.size == 0 or raw.size % record or labels.max() >= num_classes:
        raise UserInputError(
            f"{path} is not a CIFAR binary file of {record}-byte records with "
            f"labels below {num_classes}; delete it and run again to unpack a fresh copy",
            param="data_dir",
        )
    images = raw.reshape(-1, record)[:, label_bytes:].reshape(-1, 3, 32, 32)
    return LabelledImages(torch.from_numpy(images.copy()), torch.from_numpy(labels))


class _CIFARDataModule(FileDataModule):
    """Shared reader of both CIFAR variants; the subclasses name their files."""

    archive: str
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    label_bytes: int
    in_channels = 3
    image_size = (32, 32)
    crop_padding = 4
    flip = True
    default_augment = True
    default_val_size = 5000

    def prepare_data(self) -> None:
        """Unpack (and first download, when allowed) the archive unless already unpacked."""
        self._files()

    def _files(self) -> list[Path]:
        members = self.train_members + self.test_members
        return ensure_extracted(self.data_dir, self.archive, members, download=self.download)

    def _read(self, paths: list[Path]) -> LabelledImages:
        parts = [
            read_records(path, label_bytes=self.label_bytes, num_classes=self.num_classes)
            for path in paths
        ]
        return LabelledImages.concat(parts)

    def _load_pool(self) -> LabelledImages:
        return self._read(self._files()[: len(self.train_members)])

    def _load_test(self) -> LabelledImages:
        return self._read(self._files()[len(self.train_members) :])


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10: 50,000 training and 10,000 test images of 10 classes.

    Args:
        data_dir: directory holding ``cifar-10-binary.tar.gz`` or ``cifar-10-batches-bin/``.
        download: fetch the archive if neither is there.
        **kwargs: the shared options of :class:`~dense_nas.data.DenseNetDataModule`.
    """

    name = "cifar10"
    num_classes = 10
    archive = "cifar-10-binary.tar.gz"
    train_members = tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6))
    test_members = ("cifar-10-batches-bin/test_batch.bin",)
    label_bytes = 1
    # fb.resnet.torch's statistics, which the paper's code uses (pixel values / 255).
    fixed_mean = (125.3 / 255, 123.0 / 255, 113.9 / 255)
    fixed_std = (63.0 / 255, 62.1 / 255, 66.7 / 255)


class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100: 50,000 training and 10,000 test images of 100 fine classes.

    Args:
        data_dir: directory holding ``cifar-100-binary.tar.gz`` or ``cifar-100-binary/``.
        download: fetch the archive if neither is there.
        **kwargs: the shared options of :class:`~dense_nas.data.DenseNetDataModule`.
    """

    name = "cifar100"
    num_classes = 100
    archive = "cifar-100-binary.tar.gz"
    train_members = ("cifar-100-binary/train.bin",)
    test_members = ("cifar-100-binary/test.bin",)
    label_bytes = 2
    fixed_mean = (129.3 / 255, 124.1 / 255, 112.4 / 255)
    fixed_std = (68.2 / 255, 65.4 / 255, 70.4 / 255)

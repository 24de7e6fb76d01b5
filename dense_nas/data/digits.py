"""scikit-learn's bundled 8x8 handwritten digits: the embedded default, no network ever.

1,797 grey images with values 0..16, stored as uint8 scaled to 0..255. The set ships
without a test split, so a fixed 20% is held out as test (the same on every run, whatever
the seed) and validation comes out of the rest.

Example:
    >>> dm = DigitsDataModule(batch_size=32)
    >>> dm.num_classes, dm.in_channels, dm.image_size, dm.augment
    (10, 1, (8, 8), True)
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from sklearn.datasets import load_digits

from dense_nas.data._base import hold_out_test
from dense_nas.data.tensor_data import LabelledImages, TensorDataModule


@functools.lru_cache(maxsize=1)
def _pool_and_test() -> tuple[LabelledImages, LabelledImages]:
    bunch = load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    images = torch.from_numpy(pixels).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    pool, test = hold_out_test(len(labels))
    return LabelledImages(images[pool], labels[pool]), LabelledImages(images[test], labels[test])


class DigitsDataModule(TensorDataModule):
    """The 8x8 digits; training batches shift by up to one pixel (no flips: digits are
    not mirror-symmetric).

    Args:
        **kwargs: the shared options of :class:`~dense_nas.data.DenseNetDataModule`
            (``batch_size``, ``val_size``, ``seed``, ``augment``, ``full_train``).
    """

    name = "digits"
    num_classes = 10
    in_channels = 1
    image_size = (8, 8)
    crop_padding = 1
    default_augment = True

    def _load_pool(self) -> LabelledImages:
        return _pool_and_test()[0]

    def _load_test(self) -> LabelledImages:
        return _pool_and_test()[1]

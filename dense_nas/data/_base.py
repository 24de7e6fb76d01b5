"""The base every dense-nas datamodule shares: metadata, splits, on-device batch transforms.

A model is built from a datamodule's ``num_classes``, ``in_channels`` and ``image_size``
before any data is read, so subclasses set those on construction. Loaders yield raw
``(uint8 images, int64 labels)`` batches; after Lightning moves a batch to the device,
:meth:`DenseNetDataModule.on_after_batch_transfer` augments it (training only) and
normalises it there, as a whole batch.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from dense_nas.data.augment import augment, normalize
from dense_nas.errors import UserInputError

#: Datasets without an official test split (digits, a folder without ``test/``) hold out
#: this fraction as test set, always with the same seed: a test set must never move.
TEST_FRACTION = 0.2
TEST_SEED = 20170707


def split_indices(n: int, n_held: int, seed: int) -> tuple[Tensor, Tensor]:
    """Split ``range(n)`` at random into a kept and a held-out part, both sorted.

    Args:
        n: number of items.
        n_held: how many to hold out.
        seed: the split depends on nothing else, so it is the same on every run and rank.

    Returns:
        ``(kept, held)`` int64 index tensors, disjoint, together covering ``range(n)``.

    Example:
        >>> kept, held = split_indices(10, 3, seed=0)
        >>> len(kept), len(held), sorted(kept.tolist() + held.tolist()) == list(range(10))
        (7, 3, True)
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_held:].sort().values, order[:n_held].sort().values


def hold_out_test(n: int) -> tuple[Tensor, Tensor]:
    """The fixed ``(pool, test)`` split of a dataset that ships without a test set.

    Example:
        >>> pool, test = hold_out_test(1797)
        >>> len(pool), len(test)
        (1438, 359)
    """
    return split_indices(n, int(TEST_FRACTION * n), TEST_SEED)


def check_val_size(val_size: int | float | None) -> None:
    """Reject a validation size that no dataset could honour, before anything is read."""
    if val_size is None:
        return
    is_count = isinstance(val_size, int) and not isinstance(val_size, bool) and val_size >= 1
    is_fraction = isinstance(val_size, float) and 0.0 < val_size < 1.0
    if not (is_count or is_fraction):
        raise UserInputError(
            f"must be a count >= 1 or a fraction in (0, 1), got {val_size!r}", param="val_size"
        )


def count_val(val_size: int | float, n_pool: int) -> int:
    """Validation images to hold out of ``n_pool`` training images.

    Example:
        >>> count_val(0.1, 1438), count_val(5000, 50000)
        (144, 5000)
    """
    n_val = round(val_size * n_pool) if isinstance(val_size, float) else val_size
    if not 1 <= n_val < n_pool:
        raise UserInputError(
            f"{val_size!r} leaves no training or no validation images out of "
            f"{n_pool}; pass a smaller count or a fraction in (0, 1)",
            param="val_size",
        )
    return n_val


def check_positive(field: str, value: int) -> None:
    """Reject a count that must be a positive integer (``batch_size``, ``image_size``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserInputError(f"{field}: must be a positive integer, got {value!r}")


class DenseNetDataModule(L.LightningDataModule):
    """A LightningDataModule whose batches are normalised and augmented on the device.

    Subclasses set the class attributes below (or the same names on the instance before
    ``setup``) and provide the loaders; this class owns the batch transform and the
    train/validation split.

    Args:
        batch_size: images per batch (per rank under DDP).
        val_size: validation images held out of the training set, a count or a fraction;
            ``None``: ``default_val_size`` (5,000 for CIFAR, 10% elsewhere).
        seed: fixes the validation split and the order of the training batches.
        augment: augment training batches; ``None``: the dataset's ``default_augment``.
        full_train: train on training plus validation images (the final retraining).

    Attributes:
        name: the dataset's name in :data:`dense_nas.data.DATASETS`.
        num_classes: outputs the model needs.
        in_channels: image channels.
        image_size: ``(height, width)`` of every image.
        augment: whether training batches are augmented. A search reads it for the
            paper's dropout rule: a space that leaves dropout unset trains with 0.2
            without augmentation and 0 with it (see
            :meth:`~dense_nas.model.arch.DenseNetConfig.resolve_dropout`).
        crop_padding: zero padding before the random crop when augmenting; 0: no crop.
        flip: mirror training images left-right at random when augmenting.
        mean: per-channel mean (0..1 units) used to normalise; set by ``setup``.
        std: per-channel standard deviation (0..1 units); set by ``setup``.

    Example:
        >>> from dense_nas.data import make_datamodule
        >>> dm = make_datamodule("digits", augment=False)
        >>> dm.augment, dm.crop_padding, dm.flip
        (False, 1, False)
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    crop_padding: int = 0
    flip: bool = False
    default_augment: bool = False
    #: validation held out of the training set when ``val_size`` is None
    default_val_size: int | float = 0.1

    def __init__(
        self,
        *,
        batch_size: int = 64,
        val_size: int | float | None = None,
        seed: int = 0,
        augment: bool | None = None,
        full_train: bool = False,
    ) -> None:
        super().__init__()
        check_positive("batch_size", batch_size)
        check_val_size(val_size)
        self.batch_size = batch_size
        self.val_size = self.default_val_size if val_size is None else val_size
        self.seed = seed
        self.augment = self.default_augment if augment is None else augment
        self.full_train = full_train
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment (training batches only) and normalise a batch where it now lives.

        Example:
            >>> import torch
            >>> from dense_nas.data import make_datamodule
            >>> dm = make_datamodule("digits")
            >>> dm.setup("fit")
            >>> images, labels = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
            >>> images.dtype, labels.dtype, images.shape[1:]
            (torch.float32, torch.int64, torch.Size([1, 8, 8]))
        """
        images, labels = batch
        if not self.mean:
            raise RuntimeError(f"{type(self).__name__}: call setup() before using batches")
        if self.augment and self.trainer is not None and self.trainer.training:
            images = augment(images, self.mean, self.std, padding=self.crop_padding, flip=self.flip)
            return images, labels
        return normalize(images, self.mean, self.std), labels

    def _split(self, n_pool: int) -> tuple[Tensor, Tensor]:
        """``(train, validation)`` indices into the training pool, fixed by ``seed``."""
        return split_indices(n_pool, count_val(self.val_size, n_pool), self.seed)

    def _device(self) -> torch.device:
        """Where the trainer trains (the data goes there once), or the CPU without one."""
        if self.trainer is None:
            return torch.device("cpu")
        return self.trainer.strategy.root_device

    def _rank(self) -> tuple[int, int]:
        """``(global_rank, world_size)``; each rank reads only its own shard."""
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

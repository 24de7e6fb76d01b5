"""What a datamodule tells a study: classes, image channels, image size, augmentation.

dense-nas's own datamodules say it in attributes before any pixel is read. A user's
``LightningDataModule`` says the classes in its ``num_classes`` attribute; channels and
image size come from its first training batch, after ``prepare_data()`` and
``setup("fit")``, so they are what the network will really be fed.

Example:
    >>> from dense_nas.data import make_datamodule
    >>> data_facts(make_datamodule("digits", augment=False), "digits")
    DataFacts(num_classes=10, in_channels=1, image_size=(8, 8), augmented=False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
from torch import Tensor

from dense_nas.data._base import DenseNetDataModule
from dense_nas.errors import UserInputError


@dataclass(frozen=True)
class DataFacts:
    """The task a datamodule poses (see :class:`~dense_nas.space.Task`)."""

    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    augmented: bool


def data_facts(datamodule: L.LightningDataModule, data: str) -> DataFacts:
    """The facts of ``datamodule`` (named ``data`` in error messages).

    A user datamodule's ``augment`` attribute, when it is a bool, says whether it
    augments (the paper's dropout rule reads it); without one it counts as not augmenting.

    Raises:
        UserInputError: no integer ``num_classes``, a setup or loader that fails, a batch
            that is not ``(images, labels)`` with images ``N x C x H x W``, a label in
            that batch outside ``[0, num_classes)``.
    """
    if isinstance(datamodule, DenseNetDataModule):
        return DataFacts(
            datamodule.num_classes,
            datamodule.in_channels,
            datamodule.image_size,
            datamodule.augment,
        )
    origin = f"{data!r}"
    images, labels = _first_batch(datamodule, origin)
    num_classes = getattr(datamodule, "num_classes", None)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise UserInputError(
            f"{origin} has no num_classes (got {num_classes!r}); set self.num_classes to the "
            "number of classes (at least 2) in __init__ or setup()",
            param="data",
        )
    _check_labels(labels, num_classes, origin)
    augment = getattr(datamodule, "augment", False)
    return DataFacts(
        num_classes,
        int(images.shape[1]),
        (int(images.shape[2]), int(images.shape[3])),
        augment if isinstance(augment, bool) else False,
    )


def _check_labels(labels: Any, num_classes: int, origin: str) -> None:
    """Refuse class indices outside ``[0, num_classes)`` now: later, every trial would fail
    in its loss, one candidate after another."""
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.is_complex():
        return  # soft or one-hot targets: the loss checks their shape
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if outside.numel():
        raise UserInputError(
            f"{origin}: the first training batch has label {int(outside[0])}, outside "
            f"0..{num_classes - 1} for num_classes {num_classes}; number the classes from 0 "
            "or set num_classes to how many there are",
            param="data",
        )


def _first_batch(datamodule: L.LightningDataModule, origin: str) -> tuple[Tensor, Any]:
    try:
        datamodule.prepare_data()
        datamodule.setup("fit")
        batch: Any = next(iter(datamodule.train_dataloader()))
    except Exception as err:  # user code may fail in any way; one line says where
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        raise UserInputError(
            f"{origin} failed to set up and give a training batch ({reason}); fix the "
            "datamodule or its --data-arg values",
            param="data",
        ) from None
    images = batch[0] if isinstance(batch, (tuple, list)) and len(batch) == 2 else None
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise UserInputError(
            f"{origin}: a training batch must be (images, labels) with images of shape "
            "N x C x H x W; make train_dataloader() yield such pairs",
            param="data",
        )
    return images, batch[1]

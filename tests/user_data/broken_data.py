"""Datamodules that dense-nas must refuse, each with one line: the bad inputs of ``--data``."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from tests.user_data.quadrants import Quadrants


class NoClasses(Quadrants):
    """Says nothing about its classes."""

    num_classes = None  # type: ignore[assignment]


class NoValidation(L.LightningDataModule):
    """Has training data but nothing to select on."""

    num_classes = 2

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        data = TensorDataset(torch.zeros(4, 1, 4, 4), torch.tensor([0, 1, 0, 1]))
        return DataLoader(data, batch_size=2)


class NoTest(Quadrants):
    """Searchable, but has no test set for retrain to measure."""

    test_dataloader = L.LightningDataModule.test_dataloader  # type: ignore[assignment]


class NotADataModule:
    """A class, but not a LightningDataModule."""

    num_classes = 2


def returns_a_number() -> int:
    """A function that does not return a datamodule."""
    return 3


class OneBasedLabels(L.LightningDataModule):
    """Numbers its two classes 1 and 2 (a common slip): label 2 is outside num_classes."""

    num_classes = 2

    def _pairs(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        data = TensorDataset(torch.rand(8, 1, 4, 4), torch.tensor([1, 2] * 4))
        return DataLoader(data, batch_size=4)

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return self._pairs()

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return self._pairs()

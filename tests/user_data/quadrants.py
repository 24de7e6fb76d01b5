"""quadrants.py: your own LightningDataModule, searched with --data quadrants:Quadrants."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


class Quadrants(L.LightningDataModule):
    """Noisy RGB images; the label is the quadrant that is brighter than the rest."""

    num_classes = 4  # dense-nas sizes the network's head from this

    def __init__(self, size: int = 16, images: int = 400, batch_size: int = 32) -> None:
        super().__init__()
        self.size, self.images, self.batch_size = size, images, batch_size

    def _images(self, count: int, seed: int) -> TensorDataset:
        generator = torch.Generator().manual_seed(seed)  # the same data in every process
        labels = torch.randint(0, 4, (count,), generator=generator)
        lower = torch.arange(self.size) >= self.size // 2
        rows = lower[None, :, None] == (labels // 2).bool()[:, None, None]
        cols = lower[None, None, :] == (labels % 2).bool()[:, None, None]
        noise = torch.randn(count, 3, self.size, self.size, generator=generator)
        return TensorDataset(noise + (rows & cols)[:, None].float(), labels)

    def setup(self, stage: str) -> None:
        self.train_set = self._images(self.images, seed=0)
        self.val_set = self._images(self.images // 4, seed=1)  # search selects on this
        self.test_set = self._images(self.images // 4, seed=2)  # only retrain reads this

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.test_set, batch_size=self.batch_size)


def small_quadrants(size: int = 8) -> Quadrants:
    """A factory works too: dense-nas calls it with the --data-arg values."""
    return Quadrants(size=size, images=200)

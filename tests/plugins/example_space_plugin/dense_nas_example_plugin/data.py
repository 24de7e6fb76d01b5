"""A datamodule that dense-nas finds through this package's ``dense_nas.datamodules`` entry point."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


class Stripes(L.LightningDataModule):
    """Plugin example: 8x8 grey stripes, horizontal or vertical (2 classes)."""

    num_classes = 2

    def __init__(self, images: int = 128, batch_size: int = 32) -> None:
        super().__init__()
        self.images, self.batch_size = images, batch_size

    def _stripes(self, seed: int) -> TensorDataset:
        generator = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 2, (self.images,), generator=generator)
        wave = (torch.arange(8) % 2).float()
        horizontal, vertical = wave[:, None].expand(8, 8), wave[None, :].expand(8, 8)
        images = torch.where(labels[:, None, None] == 0, horizontal, vertical)[:, None]
        noise = 0.3 * torch.randn(self.images, 1, 8, 8, generator=generator)
        return TensorDataset(images + noise, labels)

    def setup(self, stage: str) -> None:
        self.train_set, self.val_set = self._stripes(0), self._stripes(1)

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.val_set, batch_size=self.batch_size)

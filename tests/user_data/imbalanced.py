"""imbalanced.py: a datamodule whose classes are far from even (75 %, 20 %, 5 %).

Accuracy flatters a network that ignores the rare classes here; macro F1 does not: the
data of the tests of ``--objective``.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

SHARES = (0.75, 0.2, 0.05)
"""How often each class occurs, in every split."""


class Imbalanced(L.LightningDataModule):
    """Noisy 8x8 grey images; class ``c`` brightens row band ``c``."""

    num_classes = len(SHARES)

    def __init__(self, images: int = 480, batch_size: int = 64) -> None:
        super().__init__()
        self.images, self.batch_size = images, batch_size

    def _images(self, count: int, seed: int) -> TensorDataset:
        generator = torch.Generator().manual_seed(seed)  # the same data in every process
        labels = torch.multinomial(
            torch.tensor(SHARES), count, replacement=True, generator=generator
        )
        bands = torch.arange(8)[None, :] // 3 == labels[:, None]  # rows 0-2, 3-5, 6-7
        noise = torch.randn(count, 1, 8, 8, generator=generator)
        return TensorDataset(noise + 1.5 * bands[:, None, :, None].float(), labels)

    def setup(self, stage: str) -> None:
        self.train_set = self._images(self.images, seed=0)
        self.val_set = self._images(self.images // 2, seed=1)
        self.test_set = self._images(self.images // 2, seed=2)

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.test_set, batch_size=self.batch_size)

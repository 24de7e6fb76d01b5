"""A Lightning callback that measures where a trial's time goes.

Time inside training and validation steps is the work; everything else in a trial
(process hand-off, Trainer set-up, data loading between steps, checkpointing) is
overhead, which ``benchmarks/bench_search.py`` reports as a share of the trial.

Example:
    >>> timer = StepTimer()
    >>> timer.images_per_second
    0.0
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class StepTimer(L.Callback):
    """Seconds inside training/validation steps, and training images per second."""

    def __init__(self) -> None:
        self.step_seconds = 0.0
        self.train_seconds = 0.0
        self.train_images = 0
        self._started = 0.0

    @property
    def images_per_second(self) -> float:
        """Training throughput over all ranks (0 before any step)."""
        return self.train_images / self.train_seconds if self.train_seconds else 0.0

    def _lap(self) -> float:
        spent = time.perf_counter() - self._started
        self.step_seconds += spent
        return spent

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.train_seconds += self._lap()
        self.train_images += len(batch[0]) * trainer.world_size

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._started = time.perf_counter()

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._lap()

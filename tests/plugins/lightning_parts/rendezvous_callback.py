"""A user's own callback for the parallel ``retrain`` test: runs that wait for each other.

Each fit writes a file named after its process into ``directory`` and then waits until
``parties`` different processes have written theirs. Runs in one process one after
another never get there (the wait ends with an error), so a fit that ends proves that
``parties`` processes trained at the same time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback


class RendezvousCallback(Callback):
    """Wait at the start of each fit until ``parties`` processes have started one.

    Args:
        directory: where each process leaves its file (created when missing).
        parties: how many different processes must meet.
        timeout: seconds to wait before giving up with an error.
    """

    def __init__(self, directory: str, parties: int = 2, timeout: float = 300.0) -> None:
        self.directory = Path(directory)
        self.parties = parties
        self.timeout = timeout

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / str(os.getpid())).touch()
        deadline = time.monotonic() + self.timeout
        while len(list(self.directory.iterdir())) < self.parties:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {self.parties} processes met in {self.directory}")
            time.sleep(0.05)

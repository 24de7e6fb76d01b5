"""A user's own callback for ``--trainer-config`` tests: a marker file per fit.

It lives outside the package, as a user's callback would, and is found through
``PYTHONPATH`` by the trial processes.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback


class MarkerCallback(Callback):
    """Write one file into ``directory`` each time a fit ends.

    The file holds ``tag`` and the Trainer's ``gradient_clip_val``: what a test needs to
    see that the callback and the config's Trainer options reached the Trainer.

    Args:
        directory: where the markers go (created when missing).
        tag: written into each marker, to tell apart the configs that made them.
    """

    def __init__(self, directory: str, tag: str = "marker") -> None:
        self.directory = Path(directory)
        self.tag = tag

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            self.directory.mkdir(parents=True, exist_ok=True)
            marker = self.directory / f"{os.getpid()}-{uuid.uuid4().hex}.marker"
            marker.write_text(f"{self.tag} {trainer.gradient_clip_val}\n")

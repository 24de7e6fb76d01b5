"""A user's own Lightning logger for ``--trainer-config`` tests: one JSON file per run.

It lives outside the package, as a user's logger would, and is found through
``PYTHONPATH`` by the trial processes.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only


class RecordingLogger(Logger):
    """Keep what Lightning logs and write it into ``directory`` when the run ends.

    The file holds the hyperparameters, every metric with its step, and ``tag``: what a
    test needs to see that the logger was built from the config and got each epoch.

    Args:
        directory: where the runs' files go (created when missing).
        tag: written into each file, to tell apart the configs that made them.
    """

    def __init__(self, directory: str, tag: str = "recording") -> None:
        super().__init__()
        self.directory = Path(directory)
        self.tag = tag
        self.params: dict[str, Any] = {}
        self.metrics: list[dict[str, Any]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return self.tag

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.params.update(json.loads(json.dumps(dict(params), default=str)))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append({"step": step, **{k: float(v) for k, v in metrics.items()}})

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        run = {"tag": self.tag, "status": status, "params": self.params, "metrics": self.metrics}
        path = self.directory / f"{os.getpid()}-{uuid.uuid4().hex}.json"
        path.write_text(json.dumps(run))

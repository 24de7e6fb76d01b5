"""A Lightning callback that reports each epoch's validation metric and obeys pruning.

Only rank 0 asks for a decision (its ``decide`` callable talks to whoever owns the Optuna
trial); the answer is broadcast so every DDP rank stops at the same epoch. Ranks never
touch the study, so each one trains exactly the architecture it was handed.

Example:
    >>> reporter = EpochReporter(lambda message: message["epoch"] >= 2)
    >>> reporter.pruned
    False
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L

from dense_nas.study.process.messages import EpochMessage
from dense_nas.study.process.timing import StepTimer

Decide = Callable[[int, float], bool]
"""A pruning rule on the worker: (epoch starting at 1, the study's metric) -> stop now?"""

Ask = Callable[[EpochMessage], bool]
"""The trial process's side: report an epoch to whoever decides, and hear: stop now?"""


class EpochReporter(L.Callback):
    """Report the study's metric after every validation epoch and stop all ranks when told to.

    Args:
        ask: called on rank 0 only, with the epoch's report (1-based epoch, the metric,
            validation accuracy and loss, training images per second so far).
        timer: where the images per second come from (0 without one).
        metric: the name of the metric the study optimises (``val/<metric>`` is logged by
            :class:`~dense_nas.model.module.DenseNetModule`).
    """

    def __init__(self, ask: Ask, timer: StepTimer | None = None, metric: str = "accuracy") -> None:
        self.ask = ask
        self.timer = timer
        self.monitor = f"val/{metric}"
        self.pruned = False
        self.history: list[float] = []
        #: validation accuracy after the latest epoch, shown beside the metric
        self.accuracy: float | None = None

    def state_dict(self) -> dict[str, Any]:
        # a resumed trial reports its whole history
        return {"history": self.history, "accuracy": self.accuracy}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self.accuracy = state_dict.get("accuracy")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        value = float(metrics[self.monitor])
        self.accuracy = float(metrics["val/acc"])
        self.history.append(value)
        report: EpochMessage = {
            "type": "epoch",
            "epoch": trainer.current_epoch + 1,
            "value": value,
            "accuracy": self.accuracy,
            "loss": float(metrics["val/loss"]),
            "images_per_second": self.timer.images_per_second if self.timer else 0.0,
        }
        stop = self.ask(report) if trainer.is_global_zero else False
        stop = bool(trainer.strategy.broadcast(stop, src=0))
        if stop:
            self.pruned = True
            trainer.should_stop = True

"""A Lightning callback that reports each epoch's validation accuracy and obeys pruning.

Only rank 0 asks for a decision (its ``decide`` callable talks to whoever owns the Optuna
trial); the answer is broadcast so every DDP rank stops at the same epoch. Ranks never
touch the study, so each one trains exactly the architecture it was handed.

Example:
    >>> reporter = EpochReporter(lambda epoch, value: epoch >= 2)
    >>> reporter.pruned
    False
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L

Decide = Callable[[int, float], bool]
"""(epoch starting at 1, validation accuracy) -> stop now?"""


class EpochReporter(L.Callback):
    """Report ``monitor`` after every validation epoch and stop all ranks when told to.

    Args:
        decide: called on rank 0 only, with the 1-based epoch and the metric's value.
        monitor: the logged metric to report.
    """

    def __init__(self, decide: Decide, monitor: str = "val/acc") -> None:
        self.decide = decide
        self.monitor = monitor
        self.pruned = False
        self.history: list[float] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = float(trainer.callback_metrics[self.monitor])
        self.history.append(value)
        stop = self.decide(trainer.current_epoch + 1, value) if trainer.is_global_zero else False
        stop = bool(trainer.strategy.broadcast(stop, src=0))
        if stop:
            self.pruned = True
            trainer.should_stop = True

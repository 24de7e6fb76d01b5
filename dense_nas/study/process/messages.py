"""The messages between a study worker and its trial process, one JSON object a line.

The worker sends a :class:`SpecMessage` (train this), or a :class:`LogMessage` to a
process it adopted; the trial process answers every validation epoch with an
:class:`EpochMessage`, which the worker answers with a :class:`PruneReply`, and ends with
a :class:`ResultMessage` or an :class:`ErrorMessage`. ``type`` tells a trial process's
messages apart (:data:`TrialMessage`).

Example:
    >>> report: EpochMessage = {"type": "epoch", "epoch": 1, "value": 0.5, "accuracy": 0.5,
    ...                         "loss": 1.2, "images_per_second": 900.0}
    >>> reply: PruneReply = {"prune": report["value"] < 0.1}
    >>> reply
    {'prune': False}
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from typing_extensions import NotRequired

from dense_nas.records import TrialLogs


class SpecMessage(TypedDict):
    """Worker to trial process: train this (a :class:`~dense_nas.study.process.trial.TrialSpec`)."""

    spec: dict[str, Any]


class LogMessage(TypedDict):
    """Worker to a trial process it adopted (started early, see :mod:`dense_nas.study.process.prestart`):
    write your output to this file from now on."""

    log: str


class EpochMessage(TypedDict):
    """Trial process to worker, after each validation epoch: may I go on?"""

    type: Literal["epoch"]
    epoch: int
    value: float
    """The study's validation metric (what the pruner sees)."""
    accuracy: float
    """Validation accuracy, shown beside it."""
    loss: float
    """Validation loss."""
    images_per_second: float
    """Training throughput so far."""


class PruneReply(TypedDict):
    """Worker to trial process, answering an :class:`EpochMessage`."""

    prune: bool


class ResultMessage(TypedDict):
    """Trial process to worker: training ended (completed, or pruned)."""

    type: Literal["result"]
    value: float
    """The study's metric after the last epoch."""
    history: list[float]
    """The metric after each epoch."""
    accuracy: float
    """Validation accuracy after the last epoch."""
    pruned: bool
    epochs: int
    precision: str
    compiled: bool
    step_seconds: float
    images_per_second: float
    ranks: list[dict[str, Any]]
    checkpoint: str | None
    resumed_from: int | None
    """Epochs done by an earlier try when this one went on from its resume checkpoint
    (``None``: trained from epoch 0); ``history`` and ``epochs`` count the earlier ones."""
    logs: NotRequired[list[TrialLogs]]
    """Where the trial logged, with the MLflow run id (absent without a logger)."""


ErrorKind = Literal["signal", "out-of-memory", "error"]
"""Why a trial process failed: its process died of a signal (SIGKILL from outside, the
OOM killer), training ran out of (GPU) memory, or anything else (a NaN loss, a bug, a
checkpoint that could not be written). The first two are retried (``--retries``)."""


class ErrorMessage(TypedDict):
    """Trial process (or the worker on its behalf) to worker: the trial failed."""

    type: Literal["error"]
    kind: ErrorKind
    reason: str
    traceback: NotRequired[str]


TrialMessage = EpochMessage | ResultMessage | ErrorMessage
"""What a trial process sends; ``type`` tells which."""

Message = SpecMessage | LogMessage | PruneReply | TrialMessage
"""Anything on the worker's channel to its trial process."""

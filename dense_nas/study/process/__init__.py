"""The trial process, and the study worker's side of the channel to it.

A worker owns the Optuna study; a trial process (``python -m dense_nas.study.process.trial``)
owns the Trainer. They talk over a socket pair, and nothing else crosses:

- :mod:`~dense_nas.study.process.runner`: :class:`TrialProcess`, the worker's side: start
  the process, feed it a :class:`TrialSpec`, relay each epoch's report and the pruning
  answer, turn a crash into an ``error``.
- :mod:`~dense_nas.study.process.channel`: JSON lines over the socket;
  :mod:`~dense_nas.study.process.messages`: what travels on it.
- :mod:`~dense_nas.study.process.trial`: the process itself (Lightning's DDP launcher
  re-runs it once per rank); :mod:`~dense_nas.study.process.pruning` reports each epoch
  and obeys the answer, :mod:`~dense_nas.study.process.timing` measures the steps, and
  :mod:`~dense_nas.study.process.resume` writes the resume checkpoint a retry goes on from.
- :mod:`~dense_nas.study.process.prestart` starts trial processes while the command
  still imports, and :mod:`~dense_nas.study.process.cpu_wait` chooses how their OpenMP
  threads wait.

This package imports nothing heavy: the trial process chooses OpenMP's waiting before
torch loads.

Example:
    >>> from dense_nas.study.process import TrialSpec
    >>> TrialSpec(number=3, arch={}, training={"epochs": 1}, data="digits").number
    3
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dense_nas._lazy import lazy_exports

if TYPE_CHECKING:
    from dense_nas.study.process.runner import TrialProcess
    from dense_nas.study.process.trial import TrialSpec

__all__ = ["TrialProcess", "TrialSpec"]

__getattr__ = lazy_exports(
    __name__,
    {
        "TrialProcess": "dense_nas.study.process.runner",
        "TrialSpec": "dense_nas.study.process.trial",
    },
)

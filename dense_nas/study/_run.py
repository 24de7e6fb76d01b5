"""One ``search()`` call as its workers share it: the settings, resolved, and the state.

:func:`~dense_nas.study._open.prepare` makes the :class:`Run`;
:func:`~dense_nas.study._workers.run_workers` hands it to every worker thread, and each
:class:`~dense_nas.study._attempt.TrialAttempt` reads it. Ctrl-C or a failed worker set
:attr:`Run.stop`, and every wait in the search ends at it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from dense_nas.space import SearchSpace, Task
    from dense_nas.study.events import SearchObserver
    from dense_nas.study.latency_meter import LatencyMeter
    from dense_nas.study.loggers import StudyLoggers
    from dense_nas.study.objectives import Objective
    from dense_nas.study.process.runner import TrialProcess
    from dense_nas.study.settings import SearchSettings


@dataclass
class Run:
    """One ``search()`` call as its workers share it: the settings, resolved, and the state."""

    settings: SearchSettings
    study: optuna.Study
    space: SearchSpace
    task: Task
    objective: Objective
    data: str
    data_args: dict[str, Any]
    data_dir: str | None
    val_size: int | float | None
    deadline: float
    accelerator: str
    precision: str
    observer: SearchObserver
    #: where the trials log (``--logger``)
    loggers: StudyLoggers
    #: the study's recorded ``--trainer-config`` (plain values)
    trainer_config: dict[str, Any] = field(default_factory=dict)
    budget_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    runners: list[TrialProcess] = field(default_factory=list)
    #: each worker's CUDA_VISIBLE_DEVICES (GPU studies only)
    gpus: list[str] = field(default_factory=list)
    #: bytes each worker's trial may plan for on its GPU or on the CPU (none: unknown)
    memory_budgets: list[int] = field(default_factory=list)
    error: BaseException | None = None
    #: lines to print under the study's header (a changed space)
    notes: list[str] = field(default_factory=list)
    #: set by Ctrl-C: the trials then in flight failed because of it
    interrupted: bool = False
    #: measures each candidate's latency before it trains, when the study needs it
    meter: LatencyMeter | None = None
    #: finished trials of the study's earlier versions that ``study`` holds no copy of:
    #: they count toward ``--trials`` too (:mod:`~dense_nas.study.lineage`)
    counted_elsewhere: int = 0

    def stop_reason(self) -> str:
        """Why a trial stopped by :attr:`stop` failed; the next run of the command trains it."""
        if self.interrupted:
            return "interrupted (Ctrl-C); retried on resume"
        return "the command stopped (another worker failed); retried on resume"

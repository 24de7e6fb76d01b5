"""Heartbeats, and retries with the same parameters, for every Optuna storage.

Optuna's own heartbeat exists only for RDB storages, and a journal file has none. So a
worker writes the time into its RUNNING trial's user attribute ``heartbeat`` every few
seconds; a RUNNING trial whose heartbeat is older than the grace period belongs to a
dead worker (killed, machine lost): any worker marks it FAILED and enqueues a retry with
the same parameters and the reason. The storage's own state update decides the race
when two workers notice the same trial, so it is retried once.

A retry carries ``retry_of`` and its ``attempt``; a trial is retried while its attempt
is at most ``retries`` (``--retries``), so its last failed try stays FAILED and counts.

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> trial.set_user_attr("heartbeat", 0.0)  # last heard of in 1970
    >>> retry_silent_trials(study, grace=30.0, retries=2)
    [0]
    >>> study.trials[0].state.name, study.trials[1].state.name
    ('FAIL', 'WAITING')
    >>> study.trials[1].user_attrs["attempt"]
    2
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from dense_nas.records import LAST_TRY_FAILURE_PREFIX, record_trial, trial_attrs
from dense_nas.study.coordination.periodic import PeriodicWrite

logger = logging.getLogger(__name__)


class Heartbeat(PeriodicWrite):
    """Context manager: keep a trial's heartbeat fresh from a background thread."""

    def __init__(self, trial: optuna.Trial, interval: float) -> None:
        super().__init__(interval, name=f"heartbeat of trial {trial.number}")
        self.trial = trial

    def write(self) -> bool:
        try:
            record_trial(self.trial, heartbeat=time.time())
        except UpdateFinishedTrialError:
            return False  # told already, or failed as silent by another worker
        return True

    def begin(self) -> None:
        record_trial(self.trial, heartbeat=time.time())


def retry_silent_trials(study: optuna.Study, grace: float, retries: int) -> list[int]:
    """Fail RUNNING trials whose heartbeat is older than ``grace`` seconds; retry each once
    while its attempt is at most ``retries``.

    The reason travels on the retry (``retry_reason``: a FAILED trial cannot be written
    any more). When two workers notice the same trial, the storage lets only one of them
    end it, so it is retried once.

    Returns:
        Numbers of the trials this call failed.
    """
    now = time.time()
    failed: list[int] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        silent = now - float(trial_attrs(trial).get("heartbeat", started))
        if silent <= grace:
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError, RuntimeError):
            continue  # another worker got there first, or the trial just finished
        failed.append(trial.number)
        reason = f"worker stopped sending heartbeats for {silent:.0f} s (killed?)"
        if may_retry(trial, retries):
            retry(study, trial, f"{reason}; {retry_note(trial, retries)}")
        else:  # Optuna's public API cannot write on a FAILED trial: the study keeps why
            why = f"{reason}, in its last try (--retries {retries}): it stays FAILED and counts"
            study.set_user_attr(f"{LAST_TRY_FAILURE_PREFIX}{trial.number}", why)
            logger.warning("trial %d: %s", trial.number, why)
    return failed


def attempt_of(trial: optuna.Trial | FrozenTrial) -> int:
    """Which try of its parameters a trial is (1: the first).

    Example:
        >>> import optuna
        >>> attempt_of(optuna.trial.create_trial(value=1.0, user_attrs={"attempt": 3}))
        3
    """
    return int(trial_attrs(trial).get("attempt", 1))


def may_retry(trial: optuna.Trial | FrozenTrial, retries: int) -> bool:
    """Whether a trial whose process died may be tried again (``retries`` retries in all).

    Example:
        >>> import optuna
        >>> first = optuna.trial.create_trial(value=1.0)
        >>> may_retry(first, retries=1), may_retry(first, retries=0)
        (True, False)
    """
    return attempt_of(trial) <= retries


def retry_note(trial: optuna.Trial | FrozenTrial, retries: int) -> str:
    """What a FAILED try that is retried records (``retried``).

    Example:
        >>> import optuna
        >>> retry_note(optuna.trial.create_trial(value=1.0), retries=2)
        'not its own fault: retried with the same parameters as try 2 of 3'
    """
    return (
        "not its own fault: retried with the same parameters as "
        f"try {attempt_of(trial) + 1} of {retries + 1}"
    )


def retry(
    study: optuna.Study,
    trial: optuna.Trial | FrozenTrial,
    reason: str,
    *,
    new_attempt: bool = True,
) -> None:
    """Enqueue a copy of a trial that is about to fail (or just failed); it stops counting.

    ``new_attempt=False`` keeps the attempt (Ctrl-C is no try of the trial's own).
    """
    attempt = attempt_of(trial) + (1 if new_attempt else 0)
    study.enqueue_trial(
        trial.params,
        user_attrs={"retry_of": trial.number, "retry_reason": reason, "attempt": attempt},
    )


def retried_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of the trials that another trial retries: they do not use up the budget.

    Example:
        >>> import optuna
        >>> retry = optuna.trial.create_trial(value=0.9, user_attrs={"retry_of": 3})
        >>> retried_numbers([retry])
        {3}
    """
    return {n for t in trials if (n := trial_attrs(t).get("retry_of")) is not None}

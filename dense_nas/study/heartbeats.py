"""Heartbeats and the stale-trial rule, the same for every Optuna storage.

Optuna's own heartbeat exists only for RDB storages, and a journal file has none. So a
worker writes the time into its RUNNING trial's user attribute ``heartbeat`` every few
seconds; a RUNNING trial whose heartbeat is older than the grace period belongs to a
dead worker (killed, machine lost): any worker marks it FAILED, records why, and
enqueues a retry with the same parameters. The storage's own state update decides the
race when two workers notice the same trial, so it is retried once.

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> trial.set_user_attr("heartbeat", 0.0)  # last heard of in 1970
    >>> fail_stale_trials(study, grace=30.0)
    [0]
    >>> study.trials[0].state.name, study.trials[1].state.name
    ('FAIL', 'WAITING')
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

logger = logging.getLogger(__name__)

HEARTBEAT_ATTR = "heartbeat"
COUNTS_ATTR = "counts"
"""User attribute set to False on a FAILED trial that does not use up the study's budget."""


class Heartbeat:
    """Context manager: keep a trial's heartbeat fresh from a background thread."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, interval: float) -> None:
        self.study = study
        self.trial_id = trial._trial_id
        self.interval = max(0.2, interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")

    def _beat(self) -> None:
        while True:
            try:
                self.study._storage.set_trial_user_attr(self.trial_id, HEARTBEAT_ATTR, time.time())
            except UpdateFinishedTrialError:
                return  # told already, or failed as stale by another worker
            except Exception as err:  # a busy or briefly unreachable storage: try again
                logger.debug("heartbeat of trial %s not written: %s", self.trial_id, err)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        self.study._storage.set_trial_user_attr(self.trial_id, HEARTBEAT_ATTR, time.time())
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


def fail_stale_trials(study: optuna.Study, grace: float) -> list[int]:
    """Fail RUNNING trials silent for more than ``grace`` seconds and retry each once.

    Returns:
        Numbers of the trials this call failed.
    """
    now = time.time()
    failed: list[int] = []
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.user_attrs.get(
            HEARTBEAT_ATTR, trial.datetime_start.timestamp() if trial.datetime_start else now
        )
        if now - float(beat) <= grace:
            continue
        try:
            storage.set_trial_user_attr(
                trial._trial_id,
                "failure",
                f"worker stopped sending heartbeats for {now - float(beat):.0f} s (killed?); retried",
            )
            storage.set_trial_user_attr(trial._trial_id, COUNTS_ATTR, False)
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another worker got there first, or the trial just finished
        failed.append(trial.number)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return failed


def retry(study: optuna.Study, trial: optuna.Trial) -> None:
    """Enqueue a copy of a RUNNING trial that is about to fail; it stops counting."""
    trial.set_user_attr(COUNTS_ATTR, False)
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})

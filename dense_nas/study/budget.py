"""Which trials use up a study's budget (``--trials``): one rule for search and status.

COMPLETE, PRUNED and FAILED trials count, so a study whose every trial fails still
ends; RUNNING ones hold their place. A FAILED try retried with the same parameters (its
process died of a signal or ran out of memory, or its worker went silent, up to
``--retries`` times; or Ctrl-C stopped it) does not count: its retry takes its place,
and the last failed try counts. A surplus trial does not count either.

Example:
    >>> import optuna
    >>> from optuna.trial import TrialState, create_trial
    >>> study = optuna.create_study()
    >>> study.add_trial(create_trial(value=0.9))
    >>> study.add_trial(create_trial(state=TrialState.FAIL))
    >>> study.enqueue_trial({}, user_attrs={"retry_of": 1})
    >>> [t.number for t in counted_trials(study.get_trials())]
    [0]
"""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState

from dense_nas.records import trial_attrs
from dense_nas.study.coordination.heartbeats import retried_numbers

BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
"""The states of trials that may use up the budget."""


def counted_trials(trials: Sequence[FrozenTrial], before: int | None = None) -> list[FrozenTrial]:
    """The trials that use up the budget (numbered below ``before``, when given)."""
    retried = retried_numbers(trials)
    return [
        t
        for t in trials
        if t.state in BUDGET_STATES
        and (before is None or t.number < before)
        and trial_attrs(t).get("counts", True)
        and t.number not in retried
    ]


def finished_and_running(trials: Sequence[FrozenTrial]) -> tuple[int, int]:
    """How many counted trials have finished, and how many are RUNNING."""
    counted = counted_trials(trials)
    running = sum(t.state == TrialState.RUNNING for t in counted)
    return len(counted) - running, running

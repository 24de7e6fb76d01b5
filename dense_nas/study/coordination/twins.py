"""Trials of one study that train the same candidate: the one trained, the one training.

Two trials whose candidates share an ``arch_key`` (:attr:`~dense_nas.space.Candidate.key`)
train the same network the same way, so a study trains each candidate once, whichever
worker or command draws it again: a trial answers from a COMPLETE twin
(:func:`find_duplicate`), or waits for a RUNNING one (:func:`find_running_twin`).

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> study.enqueue_trial({}, user_attrs={"arch_key": "k=12"})
    >>> study.optimize(lambda trial: 0.5, n_trials=1)
    >>> find_duplicate(study, "k=12").value, find_running_twin(study, 1, "k=12")
    (0.5, None)
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from dense_nas.records import trial_attrs


def find_duplicate(study: optuna.Study, key: str) -> FrozenTrial | None:
    """The first COMPLETE trial whose user attribute ``arch_key`` equals ``key``.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> study.enqueue_trial({}, user_attrs={"arch_key": "k=12"})
        >>> study.optimize(lambda trial: 0.5, n_trials=1)
        >>> find_duplicate(study, "k=12").value, find_duplicate(study, "k=24")
        (0.5, None)
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return next((t for t in complete if trial_attrs(t).get("arch_key") == key), None)


def find_running_twin(study: optuna.Study, number: int, key: str) -> FrozenTrial | None:
    """The RUNNING trial that trains candidate ``key`` and trial ``number`` should wait for.

    An earlier twin goes first; a later one only while it trains (it waits for no one),
    so two trials never wait for each other for long: of two that each chose the other,
    the earlier finds no twin at its next look and trains.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> for attrs in ({"arch_key": "k=12"}, {"arch_key": "k=12"}, {"arch_key": "k=24"}):
        ...     study.enqueue_trial({}, user_attrs=attrs)
        >>> first, second, other = study.ask(), study.ask(), study.ask()
        >>> find_running_twin(study, 1, "k=12").number, find_running_twin(study, 0, "k=12").number
        (0, 1)
        >>> second.set_user_attr("waits_for", 0)
        >>> find_running_twin(study, 0, "k=12"), find_running_twin(study, 2, "k=24")
        (None, None)
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    twins = [t for t in running if t.number != number and trial_attrs(t).get("arch_key") == key]
    earlier = [t for t in twins if t.number < number]
    training = [t for t in twins if trial_attrs(t).get("waits_for") is None]
    return min(earlier or training, key=lambda t: t.number, default=None)

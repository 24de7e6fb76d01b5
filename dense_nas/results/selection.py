"""Which trial is "the best": one rule for ``best``, ``load_best``, ``export``, ``retrain``, ``report``.

Every completed trial of a dense-nas study carries the study's validation metric (the
first objective: accuracy unless ``--objective`` chose another, see :class:`Goal`) and its
size (user attrs ``params`` and ``macs``, and ``latency_ms`` where the study measured
latency). Trials are ranked by the metric (highest first, or lowest for a minimised one
such as ``nll``), then size, then number (:func:`ranked`); the best trials of a study
(:func:`best_trials`) are what ``dense-nas best`` shows, and the first of them is what
:func:`select_trial` picks.

A study that grew (:mod:`dense_nas.study.lineage`) is ranked as one: every trained
network of every version, each once, named as ``--trial`` takes it (``N`` for the
user's study, ``vK:N`` for version K's).

A pick rule chooses one trial of the front (the non-dominated set of best metric against
fewest parameters, or fewest MACs for a ``METRIC,macs`` study, or lowest latency for a
``METRIC,latency`` study; single-objective studies have a front too):

- ``"accuracy"`` (default): the trial with the best metric (the most accurate in an
  accuracy study); among equals, the smallest.
- ``"smallest"``: the smallest trial of the front.
- ``"knee"``: the trial of the front farthest from the straight line joining its two
  ends, with the metric and log10(size) each scaled to [0, 1]: where a little more size
  stops buying much metric.

``max_params`` first drops every trial with more parameters, ``max_latency_ms`` every
trial measured slower, then the rule applies.

Example:
    >>> import optuna
    >>> from optuna.distributions import IntDistribution
    >>> study = optuna.create_study(directions=["maximize", "minimize"])
    >>> for acc, size in [(0.90, 1_000), (0.95, 2_000), (0.96, 50_000), (0.94, 9_000)]:
    ...     study.add_trial(optuna.trial.create_trial(
    ...         values=[acc, size], user_attrs={"params": size, "macs": 10 * size}))
    >>> [t.number for t in pareto_front(study.trials)]
    [0, 1, 2]
    >>> select_trial(study).number, select_trial(study, pick="smallest").number
    (2, 0)
    >>> select_trial(study, pick="knee").number, select_trial(study, max_params=5_000).number
    (1, 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from dense_nas.errors import UserInputError, check_choice
from dense_nas.records import study_attrs, trial_attrs
from dense_nas.study.lineage import LineageTrial, find_lineage_trial, lineage_trials

Pick = Literal["accuracy", "smallest", "knee"]
PICKS: tuple[str, ...] = get_args(Pick)
"""The pick rules :func:`select_trial` accepts."""

SizeMetric = Literal["params", "macs", "latency_ms"]

#: The trial attribute each second objective of a study's ``objective`` minimises.
_METRICS: dict[str, SizeMetric] = {"macs": "macs", "latency": "latency_ms"}


def metric_value(trial: FrozenTrial) -> float:
    """The study's validation metric of a completed trial: its first objective.

    Example:
        >>> import optuna
        >>> metric_value(optuna.trial.create_trial(values=[0.93, 1200]))
        0.93
    """
    values = trial.values
    if not values:
        raise UserInputError(
            f"trial {trial.number} has no result ({trial.state.name})", param="trial"
        )
    return float(values[0])


@dataclass(frozen=True)
class Goal:
    """What "better" means in a study: its metric (the first objective) and its direction.

    Example:
        >>> import optuna
        >>> nll = Goal("nll", maximize=False)
        >>> [nll.score(optuna.trial.create_trial(value=v)) for v in (0.3, 0.1)]
        [-0.3, -0.1]
    """

    metric: str = "accuracy"
    maximize: bool = True

    def score(self, trial: FrozenTrial) -> float:
        """The trial's metric, signed so that higher is better."""
        value = metric_value(trial)
        return value if self.maximize else -value

    def accuracy(self, trial: FrozenTrial) -> float | None:
        """The trial's validation accuracy, shown beside the metric (``None``: not recorded).

        Example:
            >>> import optuna
            >>> t = optuna.trial.create_trial(value=0.8, user_attrs={"accuracy": 0.9})
            >>> Goal().accuracy(t), Goal("f1").accuracy(t)
            (0.9, 0.9)
            >>> Goal("f1").accuracy(optuna.trial.create_trial(value=0.8)) is None
            True
        """
        recorded = trial_attrs(trial).get("accuracy")
        if recorded is not None:
            return float(recorded)
        return metric_value(trial) if self.metric == "accuracy" and trial.values else None


ACCURACY = Goal()
"""The goal of a study from before there were other metrics: accuracy, maximised."""


def study_goal(study: optuna.Study) -> Goal:
    """The study's :class:`Goal`, from its recorded objective and its first direction.

    Example:
        >>> import optuna
        >>> study_goal(optuna.create_study(direction="maximize"))
        Goal(metric='accuracy', maximize=True)
        >>> study = optuna.create_study(directions=["minimize", "minimize"])
        >>> study.set_user_attr("objective", "nll,params")
        >>> study_goal(study)
        Goal(metric='nll', maximize=False)
    """
    objective = study_attrs(study).get("objective", "accuracy")
    metric = objective.split(",")[0].strip()
    return Goal(metric, study.directions[0] == StudyDirection.MAXIMIZE)


def size_metric(study: optuna.Study) -> SizeMetric:
    """The size a study trades its metric against: MACs for ``METRIC,macs``, the measured
    latency for ``METRIC,latency``, else parameters.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> size_metric(study)
        'params'
        >>> study.set_user_attr("objective", "accuracy,macs")
        >>> size_metric(study)
        'macs'
        >>> study.set_user_attr("objective", "accuracy,latency")
        >>> size_metric(study)
        'latency_ms'
    """
    second = study_attrs(study).get("objective", "accuracy").split(",")[1:]
    return _METRICS.get(second[0].strip(), "params") if second else "params"


def trial_size(trial: FrozenTrial, metric: SizeMetric = "params") -> float:
    """A trial's parameter or MAC count, or its latency in milliseconds (user attr
    ``params`` / ``macs`` / ``latency_ms``).

    Example:
        >>> import optuna
        >>> trial_size(optuna.trial.create_trial(value=0.9, user_attrs={"params": 42}))
        42
    """
    size = trial_attrs(trial).get(metric)
    if size is None:
        raise UserInputError(
            f"trial {trial.number} records no {metric!r}; was it made by dense-nas?",
            param="study_name",
        )
    return float(size) if metric == "latency_ms" else int(size)


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The completed trials of every version, or one line saying the study has none yet.

    Example:
        >>> import optuna
        >>> completed_trials(optuna.create_study(study_name="empty"))
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: study_name: study 'empty' has no completed trials yet; run dense-nas search (or wait for a running one) first
    """
    return [entry.trial for entry in completed_entries(study)]


def completed_entries(study: optuna.Study) -> list[LineageTrial]:
    """:func:`completed_trials` with the version that holds each."""
    entries = lineage_trials(study, states=(TrialState.COMPLETE,))
    if not entries:
        raise UserInputError(
            f"study {study.study_name!r} has no completed trials yet; "
            "run dense-nas search (or wait for a running one) first",
            param="study_name",
        )
    return entries


def pareto_front(
    trials: Sequence[FrozenTrial], metric: SizeMetric = "params", goal: Goal = ACCURACY
) -> list[FrozenTrial]:
    """Trials no other trial beats on both the metric (``goal``) and size (lower), smallest
    first.

    Of several trials with equal metric and size (a duplicate architecture) only the
    first is kept. Along the returned list size and the metric both strictly improve.

    Example:
        >>> import optuna
        >>> trials = [optuna.trial.create_trial(value=a, user_attrs={"params": p})
        ...           for a, p in [(0.9, 100), (0.8, 200), (0.95, 300), (0.9, 100)]]
        >>> [(t.value, trial_size(t)) for t in pareto_front(trials)]
        [(0.9, 100), (0.95, 300)]
    """
    ordered = sorted(trials, key=lambda t: (trial_size(t, metric), -goal.score(t), t.number))
    front: list[FrozenTrial] = []
    for trial in ordered:
        if not front or goal.score(trial) > goal.score(front[-1]):
            front.append(trial)
    return front


def _knee(front: Sequence[FrozenTrial], metric: SizeMetric, goal: Goal) -> FrozenTrial:
    """The point of the front farthest from the chord between its ends (scaled axes)."""
    if len(front) < 3:
        return front[-1]  # no bend to find: the best metric
    # sizes are positive: at least one parameter or MAC, a latency above zero
    xs = [math.log10(max(trial_size(t, metric), 1e-9)) for t in front]
    ys = [goal.score(t) for t in front]
    x_span, y_span = (xs[-1] - xs[0]) or 1.0, (ys[-1] - ys[0]) or 1.0
    points = [((x - xs[0]) / x_span, (y - ys[0]) / y_span) for x, y in zip(xs, ys, strict=True)]
    # The chord runs from (0, 0) to (1, 1) after scaling; distance is |y - x| / sqrt(2).
    distances = [abs(y - x) for x, y in points]
    return front[distances.index(max(distances))]


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.number == number:
            return trial
    raise UserInputError(
        f"study {study.study_name!r} has no trial {number} (it has trials 0 to {len(trials) - 1})",
        param="trial",
    )


def select_trial(
    study: optuna.Study,
    *,
    trial: int | str | None = None,
    pick: str = "accuracy",
    max_params: int | None = None,
    max_latency_ms: float | None = None,
) -> FrozenTrial:
    """The completed trial to load: the one ``trial`` names, or the front's by ``pick``.

    Args:
        study: a dense-nas study.
        trial: a trial number, or ``vK:N`` for trial N of the study's version K; it
            must be COMPLETE. ``pick``, ``max_params`` and ``max_latency_ms`` then do
            not apply.
        pick: ``"accuracy"``, ``"smallest"`` or ``"knee"`` (see the module docstring).
        max_params: consider only trials with at most this many parameters.
        max_latency_ms: consider only trials whose measured latency (``latency_ms``) is at
            most this many milliseconds.

    Raises:
        UserInputError: no completed trial, no such trial, an unknown pick, no trial
            within ``max_params`` or ``max_latency_ms``, or no latency measured.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(study_name="demo")
        >>> study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={"params": 10}))
        >>> select_trial(study, pick="largest")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: pick: must be one of accuracy, smallest, knee, got 'largest'
    """
    return select_entry(
        study, trial=trial, pick=pick, max_params=max_params, max_latency_ms=max_latency_ms
    ).trial


def select_entry(
    study: optuna.Study,
    *,
    trial: int | str | None = None,
    pick: str = "accuracy",
    max_params: int | None = None,
    max_latency_ms: float | None = None,
) -> LineageTrial:
    """:func:`select_trial` with the version (and its Optuna study) that holds the trial."""
    check_pick(pick)
    if trial is not None:
        named = find_lineage_trial(study, trial)
        if named.trial.state != TrialState.COMPLETE:
            raise UserInputError(
                f"trial {trial} is {named.trial.state.name}; only completed trials can be loaded",
                param="trial",
            )
        return named
    entries = completed_entries(study)
    by_trial = {id(entry.trial): entry for entry in entries}
    candidates = within(study, [entry.trial for entry in entries], max_params, max_latency_ms)
    metric, goal = size_metric(study), study_goal(study)
    front = pareto_front(candidates, metric, goal)
    if pick == "smallest":
        return by_trial[id(front[0])]
    if pick == "knee":
        return by_trial[id(_knee(front, metric, goal))]
    return by_trial[id(front[-1])]  # the best metric; of equals the smallest: ranked(...)[0]


def within(
    study: optuna.Study,
    trials: Sequence[FrozenTrial],
    max_params: int | None = None,
    max_latency_ms: float | None = None,
) -> list[FrozenTrial]:
    """The trials with at most ``max_params`` parameters and ``max_latency_ms`` latency.

    Raises:
        UserInputError: none of ``trials`` is within the limits (one line naming the
            nearest), or ``max_latency_ms`` is given but no trial measured its latency.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(study_name="demo")
        >>> for ms in (0.4, 1.5):
        ...     study.add_trial(optuna.trial.create_trial(
        ...         value=0.9, user_attrs={"params": 10, "latency_ms": ms}))
        >>> [t.number for t in within(study, study.trials, max_latency_ms=1.0)]
        [0]
        >>> within(study, study.trials, max_latency_ms=0.1)
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: max_latency_ms: no completed trial has a latency of at most 0.1 ms (the fastest takes 0.4 ms)
    """
    kept = list(trials)
    if max_params is not None:
        kept = [t for t in kept if trial_size(t) <= max_params]
        if not kept:
            smallest = min(trial_size(t) for t in trials)
            raise UserInputError(
                f"no completed trial has at most {max_params} parameters "
                f"(the smallest has {smallest})",
                param="max_params",
            )
    if max_latency_ms is not None:
        measured = [t for t in kept if "latency_ms" in trial_attrs(t)]
        if kept and not measured:
            raise UserInputError(
                f"study {study.study_name!r} measured no latency; search it with "
                "--objective accuracy,latency or --max-latency-ms first",
                param="max_latency_ms",
            )
        kept = [t for t in measured if trial_size(t, "latency_ms") <= max_latency_ms]
        if measured and not kept:
            fastest = min(trial_size(t, "latency_ms") for t in measured)
            raise UserInputError(
                f"no completed trial has a latency of at most {max_latency_ms:g} ms "
                f"(the fastest takes {fastest:.4g} ms)",
                param="max_latency_ms",
            )
    return kept


def check_pick(pick: str) -> None:
    """Refuse an unknown pick rule (before any study is opened).

    Example:
        >>> check_pick("knee")
        >>> check_pick("largest")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: pick: must be one of accuracy, smallest, knee, got 'largest'
    """
    check_choice(pick, PICKS, "pick")


def ranked(
    trials: Sequence[FrozenTrial], metric: SizeMetric = "params", goal: Goal = ACCURACY
) -> list[FrozenTrial]:
    """Completed trials best first: better metric (``goal``), then smaller size, then lower
    number.

    This is the order every view of "the best" uses: its first trial is the one
    :func:`select_trial` picks by default among the same trials.

    Example:
        >>> import optuna
        >>> trials = [optuna.trial.create_trial(value=a, user_attrs={"params": p})
        ...           for a, p in [(0.9, 300), (0.95, 500), (0.95, 400)]]
        >>> [(t.value, trial_size(t)) for t in ranked(trials)]
        [(0.95, 400), (0.95, 500), (0.9, 300)]
    """
    return sorted(trials, key=lambda t: (-goal.score(t), trial_size(t, metric), t.number))


def best_trials(study: optuna.Study, top: int = 5) -> list[FrozenTrial]:
    """The best completed trials of every version, best first (:func:`ranked`); ``[]``
    when none completed.

    A single-objective study gives its ``top`` trials, a multi-objective study its whole
    Pareto front of the metric against size. The first trial is what :func:`select_trial`,
    :func:`~dense_nas.results.loading.load_best`, ``export`` and ``retrain`` choose.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(direction="maximize")
        >>> for acc, size in [(0.9, 100), (0.95, 300), (0.95, 200)]:
        ...     study.add_trial(optuna.trial.create_trial(value=acc, user_attrs={"params": size}))
        >>> [t.number for t in best_trials(study)], select_trial(study).number
        ([2, 1, 0], 2)
    """
    return [entry.trial for entry in best_entries(study, top)]


def best_entries(study: optuna.Study, top: int = 5) -> list[LineageTrial]:
    """:func:`best_trials` with the version that holds each."""
    entries = lineage_trials(study, states=(TrialState.COMPLETE,))
    by_trial = {id(entry.trial): entry for entry in entries}
    trials = [entry.trial for entry in entries]
    if not trials:
        return []
    metric, goal = size_metric(study), study_goal(study)
    if len(study.directions) > 1:
        best = ranked(pareto_front(trials, metric, goal), metric, goal)
    else:
        best = ranked(trials, metric, goal)[:top]
    return [by_trial[id(t)] for t in best]


def best_architectures(
    study: optuna.Study, max_params: int | None = None, max_latency_ms: float | None = None
) -> list[LineageTrial]:
    """Completed trials of every version best first (:func:`ranked`), one per
    architecture and recipe.

    A trial with the ``arch_key`` of a better-ranked one (a duplicate, which trained
    nothing of its own) is left out: ``retrain --top K`` retrains K different networks.
    ``max_params`` and ``max_latency_ms`` drop the trials beyond them first (:func:`within`).

    Example:
        >>> import optuna
        >>> study = optuna.create_study(direction="maximize")
        >>> for acc, key in [(0.9, "a"), (0.95, "b"), (0.95, "b"), (0.93, "c")]:
        ...     study.add_trial(optuna.trial.create_trial(
        ...         value=acc, user_attrs={"params": 100, "arch_key": key}))
        >>> [t.name for t in best_architectures(study)]
        [1, 3, 0]
    """
    entries = lineage_trials(study, states=(TrialState.COMPLETE,))
    by_trial = {id(entry.trial): entry for entry in entries}
    trials = [entry.trial for entry in entries]
    if trials:
        trials = within(study, trials, max_params, max_latency_ms)
    seen: set[str] = set()
    distinct = []
    for trial in ranked(trials, size_metric(study), study_goal(study)):
        key = trial_attrs(trial).get("arch_key", f"trial {by_trial[id(trial)].name}")
        if key not in seen:
            seen.add(key)
            distinct.append(by_trial[id(trial)])
    return distinct

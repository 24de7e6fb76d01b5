"""What a study optimises, and how it stops weak trials early under each objective.

The first objective is a validation metric of :data:`~dense_nas.model.metrics.METRICS`
(``accuracy`` by default, or ``top5``, ``balanced_accuracy``, ``f1``, ``auroc``, ``nll``),
maximised or, for ``nll``, minimised. Alone, Optuna's pruner decides after each epoch.
``METRIC,params``, ``METRIC,macs`` and ``METRIC,latency`` are multi-objective (the
metric, and the smallest size: parameters, MACs, or the latency measured on the study's
target before training, :mod:`dense_nas.study.latency_meter`); Optuna cannot prune
those, so dense-nas applies its own rule, *dominated at equal budget*: after a warm-up,
a trial stops when some completed trial that is no larger already had a clearly better
metric (by ``margin``) at the same epoch. Such a trial is very unlikely to reach the
Pareto front, and it costs nothing to know the size, which is fixed before training.
Each trial keeps its per-epoch metric in the user attribute ``intermediate`` so the rule
(and plots) can read them.

Example:
    >>> parse_objective("accuracy,params").names
    ('accuracy', 'params')
    >>> [d.name for d in parse_objective("nll,macs").directions]
    ['MINIMIZE', 'MINIMIZE']
    >>> parse_objective("loss")
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: objective: must be METRIC or METRIC,SIZE with METRIC one of accuracy, top5, balanced_accuracy, f1, auroc, nll and SIZE one of params, macs, latency; got 'loss'
    >>> parse_objective("accuracy,latency").size_attr, parse_objective("accuracy").needs_latency
    ('latency_ms', False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from dense_nas.model.arch import DenseNetConfig
from dense_nas.records import TrialAttrs, trial_attrs
from dense_nas.study.process.pruning import Decide
from dense_nas.study.settings import check_objective

SizeAttr = Literal["params", "macs", "latency_ms"]
SIZE_ATTRS: dict[str, SizeAttr] = {"params": "params", "macs": "macs", "latency": "latency_ms"}
"""The trial attribute (:class:`~dense_nas.records.TrialAttrs`) of each second objective."""


@dataclass(frozen=True)
class Objective:
    """A metric, and the size it is traded against, with the directions and early-stopping
    rule."""

    names: tuple[str, ...]
    startup_trials: int = 4
    margin: float = 0.01

    @property
    def name(self) -> str:
        return ",".join(self.names)

    @property
    def multi(self) -> bool:
        return len(self.names) > 1

    @property
    def metric(self) -> str:
        """The validation metric, the first objective."""
        return self.names[0]

    @property
    def maximize(self) -> bool:
        """Whether a higher metric is better."""
        from dense_nas.model.metrics import get_metric  # torch: not when building the CLI

        return get_metric(self.metric).direction == "maximize"

    @property
    def directions(self) -> list[StudyDirection]:
        first = StudyDirection.MAXIMIZE if self.maximize else StudyDirection.MINIMIZE
        return [first] + [StudyDirection.MINIMIZE] * (len(self.names) - 1)

    @property
    def size_attr(self) -> SizeAttr | None:
        """The trial attribute of the size it minimises (``None``: single objective)."""
        return SIZE_ATTRS[self.names[1]] if self.multi else None

    @property
    def needs_latency(self) -> bool:
        """Whether each candidate's latency must be measured before it trains."""
        return "latency" in self.names[1:]

    def size(self, attrs: TrialAttrs) -> float | None:
        """The trial's size this objective minimises (``None``: single objective, or unknown)."""
        if self.size_attr is None:
            return None
        found = attrs.get(self.size_attr)
        return None if found is None else float(found)

    def values(self, value: float, attrs: TrialAttrs) -> list[float]:
        """The values to tell the study for a completed trial whose metric is ``value``."""
        size = self.size(attrs)
        return [value] if size is None else [value, size]

    def pruning_rule(
        self, study: optuna.Study, trial: optuna.Trial, arch: DenseNetConfig
    ) -> Decide:
        """``decide(epoch, metric) -> stop?`` for this trial."""
        if not self.multi:

            def prune(epoch: int, value: float) -> bool:
                trial.report(value, epoch)
                # Median and percentile pruners answer with a numpy bool, which the
                # trial channel's JSON cannot carry.
                return bool(trial.should_prune())

            return prune
        size = self.size(trial_attrs(trial))
        if size is None:
            raise RuntimeError(f"trial {trial.number} has no size recorded before training")
        return lambda epoch, value: self.dominated(study, size, epoch, value)

    def dominated(self, study: optuna.Study, size: float, epoch: int, value: float) -> bool:
        """True when a completed, no larger trial's metric was better by ``margin`` at
        ``epoch`` (higher, or lower for a minimised metric)."""
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(done) < self.startup_trials:
            return False
        sign = 1.0 if self.maximize else -1.0  # better is higher after the sign
        for other in done:
            attrs = trial_attrs(other)
            seen = attrs.get("intermediate", {}).get(str(epoch))
            other_size = self.size(attrs)
            if seen is None or other_size is None:
                continue
            if float(other_size) <= size and sign * (float(seen) - value) >= self.margin:
                return True
        return False


def parse_objective(text: str) -> Objective:
    """An :class:`Objective` from its command-line spelling (``f1``, ``nll,latency``)."""
    return Objective(check_objective(text))

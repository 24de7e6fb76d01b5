"""Which version of a space a study searched: its fingerprint, and whether two versions mix.

A space is walked, like the constraint check does, with a stand-in trial
(:mod:`dense_nas.space._probe`) that records every Optuna distribution it is asked for,
and the smallest candidate of each branch. The fingerprint is the sha256 of those, the
constraints, the seeds and the name, written as canonical JSON: the same space loaded
from the same file gives the same fingerprint, a changed range or fixed value another.

A study can go on with a changed space unless Optuna cannot mix a parameter's old and
new distribution (another kind, another ``log``, other categorical choices): that is
what :func:`incompatibility` finds, before any trial is asked for.

Example:
    >>> from dense_nas.space import load_space
    >>> task = Task(10, 1, (8, 8))
    >>> first = space_version(load_space("digits-tiny"), task)
    >>> first.fingerprint == space_version(load_space("digits-tiny"), task).fingerprint
    True
    >>> sorted(first.distributions)[:2]
    ['batch_size', 'bottleneck']
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
    distribution_to_json,
)

from dense_nas.errors import UserInputError
from dense_nas.space._base import SearchSpace, Task
from dense_nas.space._probe import Probe, walk


@dataclass(frozen=True)
class SpaceVersion:
    """A space as a study sees it: its name, fingerprint and parameter distributions.

    Attributes:
        name: the space's name.
        fingerprint: sha256 (hex) of the space's canonical form.
        distributions: the Optuna distribution of every parameter the space can draw
            (empty when the space cannot be walked: a Python class that reads more of
            the trial than ``suggest_*``).
    """

    name: str
    fingerprint: str
    distributions: Mapping[str, BaseDistribution]


class _Recorder:
    """Passes ``suggest_*`` calls to a probe, noting the distribution of each parameter."""

    def __init__(self, probe: Probe, seen: dict[str, BaseDistribution]) -> None:
        self.probe = probe
        self.seen = seen

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        self.seen.setdefault(name, IntDistribution(low, high, log=log, step=step))
        return self.probe.suggest_int(name, low, high, step=step, log=log)

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        self.seen.setdefault(name, FloatDistribution(low, high, log=log, step=step))
        return self.probe.suggest_float(name, low, high, step=step, log=log)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.seen.setdefault(name, CategoricalDistribution(list(choices)))
        return self.probe.suggest_categorical(name, choices)


def space_version(space: SearchSpace, task: Task) -> SpaceVersion:
    """The space's fingerprint and distributions for the task's data.

    Example:
        >>> from dense_nas.space import YamlSearchSpace
        >>> def tiny(high):
        ...     return YamlSearchSpace({"name": "k", "architecture": {
        ...         "growth_rate": {"low": 4, "high": high}, "depth": 10, "bottleneck": False}})
        >>> task = Task(10, 1, (8, 8))
        >>> space_version(tiny(8), task).fingerprint == space_version(tiny(12), task).fingerprint
        False
        >>> space_version(tiny(8), task).distributions["growth_rate"]
        IntDistribution(high=8, log=False, low=4, step=1)
    """
    seen: dict[str, BaseDistribution] = {}
    # the values that change a YAML space's shape (see _probe); other spaces walk their
    # non-numeric choices only
    branch = cast(Mapping[str, Sequence[Any]], getattr(space, "_branch", {}))

    def draw(probe: Probe) -> str:
        return space.suggest(cast(optuna.Trial, _Recorder(probe, seen)), task).key

    try:
        corners, _ = walk(draw, branch)
    except UserInputError:
        raise
    except Exception:  # a class space that needs a real trial: its name and class only
        seen, corners = {}, [f"{type(space).__module__}.{type(space).__qualname__}"]
    canonical = {
        "name": space.name,
        "distributions": {name: json.loads(distribution_to_json(d)) for name, d in seen.items()},
        "corners": sorted(set(corners)),
        "constraints": _constraints(space),
        "seeds": [dict(seed) for seed in space.seeds],
        "max_epochs": space.max_epochs,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=repr)
    return SpaceVersion(space.name, hashlib.sha256(text.encode()).hexdigest(), seen)


def _constraints(space: SearchSpace) -> dict[str, Any]:
    limits = dataclasses.asdict(space.constraints)
    if limits["max_latency_ms"] is None:
        # a limit added later: unset, it leaves the fingerprints of older studies as they were
        del limits["max_latency_ms"]
    return limits


def incompatibility(
    study: optuna.Study, distributions: Mapping[str, BaseDistribution]
) -> str | None:
    """Why Optuna cannot mix the study's trials with a space of these distributions.

    Example:
        >>> study = optuna.create_study()
        >>> study.add_trial(optuna.trial.create_trial(
        ...     value=0.5, params={"k": 12}, distributions={"k": CategoricalDistribution([12, 24])}))
        >>> incompatibility(study, {"k": CategoricalDistribution([12, 24])}) is None
        True
        >>> incompatibility(study, {"k": CategoricalDistribution([12, 36])})
        'parameter k takes choices [12, 24] in the study but choices [12, 36] in this space'
    """
    recorded: dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            recorded.setdefault(name, dist)
    for name, new in distributions.items():
        old = recorded.get(name)
        if old is None:
            continue
        try:
            check_distribution_compatibility(old, new)
        except ValueError:
            return f"parameter {name} takes {show_distribution(old)} in the study but {show_distribution(new)} in this space"
    return None


def show_distribution(dist: BaseDistribution) -> str:
    """A distribution in words, as the one-line messages about a space say it.

    Example:
        >>> show_distribution(CategoricalDistribution([32, 64]))
        'choices [32, 64]'
    """
    if isinstance(dist, CategoricalDistribution):
        return f"choices [{', '.join(str(c) for c in dist.choices)}]"
    if isinstance(dist, (IntDistribution, FloatDistribution)):
        kind = "integers" if isinstance(dist, IntDistribution) else "numbers"
        return f"{kind} {dist.low}..{dist.high}" + (" on a log scale" if dist.log else "")
    return repr(dist)

"""A study that grows: its versions, the trials each one carries over, and reading them.

One Optuna study cannot hold a parameter under two distributions Optuna does not mix
(other categorical choices, another kind, another ``log``), and its sampler would learn
from trials that never drew a parameter added since. So when a resumed study's space
changes that way, or gains or loses a parameter, the study goes on as its next
*version*: a new plain Optuna study named ``<name>@v<N>`` (file-name safe: checkpoints
and logs are named after it) in the same storage. Every finished trial of the earlier
versions whose values lie inside the new space is added to it with the new space's
distributions, its values, intermediate values and user attributes (``copied_from``
names where it was trained), so the sampler and the pruner learn from it at once. A
trial outside the new space stays where it is. The user's study (version 1) keeps the
name the user gave and lists the versions (:class:`~dense_nas.records.VersionRecord`);
a change one study can hold (a widened range) stays in the study, as its next
:class:`~dense_nas.records.SpaceVersionRecord`.

Reading: :func:`lineage_trials` gives every trial of every version, each trained network
once (a copy gives way to its original), as :class:`LineageTrial`. A trial is named as
``--trial`` takes it (:func:`find_lineage_trial`): ``N`` for trial N of the user's study,
``vK:N`` for trial N of version K's study (the number the optuna CLI and dashboard show).

Example:
    >>> import optuna
    >>> from optuna.distributions import CategoricalDistribution as Choices
    >>> describe_changes({"batch_size": Choices([64, 128])}, {"batch_size": Choices([32, 64, 128])})
    ['batch_size gained 32']
    >>> version_name("demo", 2), parse_trial_name("v2:7"), parse_trial_name("7")
    ('demo@v2', (2, 7), (1, 7))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.exceptions import DuplicatedStudyError
from optuna.trial import FrozenTrial, TrialState

from dense_nas.errors import UserInputError
from dense_nas.records import (
    ARTIFACT_ROOT_ATTR,
    SpaceVersionRecord,
    TrialRef,
    VersionRecord,
    record_study,
    study_attrs,
    trial_attrs,
)
from dense_nas.study.budget import counted_trials
from dense_nas.study.storage import remember_storage, storage_of

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage

    from dense_nas.space import SearchSpace, SpaceVersion, Task

VERSION_MARK = "@v"
"""Between the user's study name and a version's number: ``demo@v2``."""

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""The states of trials a new version carries over (they hold a result)."""

SHARED_ATTRS = (
    "data",
    "data_args",
    "data_dir",
    "val_size",
    "objective",
    "seed",
    "image_size",
    "trainer_config",
    ARTIFACT_ROOT_ATTR,
)
"""Study attributes every version shares with the user's study: the same search on the
same data, its checkpoints in the same artifact store."""

NUMBERED_ATTRS = ("duplicate_of", "retry_of", "retry_reason", "waits_for")
"""Trial attributes that name another trial by its number in its own study: a copy in
another study drops them (a copy of a duplicate records its original's checkpoint)."""


UNCOMPARED_FIELDS = ("epochs", "memory_efficient")
"""Fields a carried trial may differ in from what the new space builds: the schedule's
length (``--epochs``, or the space's; intermediate values say how far it trained) and
how a GPU's memory made it train (the same network)."""


def version_name(name: str, number: int) -> str:
    """The Optuna study that holds version ``number`` of the user's study ``name``."""
    return f"{name}{VERSION_MARK}{number}"


def _storage(study: optuna.Study) -> BaseStorage:
    """The storage of the study, where all its versions live."""
    storage = storage_of(study)
    if storage is None:
        raise UserInputError(
            f"study {study.study_name!r} has versions in its storage; open it with "
            "dense_nas.open_study(storage, name) (or search()) to read them",
            param="study_name",
        )
    return storage


def _sibling(study: optuna.Study, name: str) -> optuna.Study:
    """Another study of the same storage (a version of the same lineage)."""
    storage = _storage(study)
    return remember_storage(optuna.load_study(study_name=name, storage=storage), storage)


def user_study(study: optuna.Study) -> optuna.Study:
    """The user's study (version 1) of a study that may be one of its later versions."""
    owner = study_attrs(study).get("version_of")
    return study if owner is None else _sibling(study, owner)


def version_studies(study: optuna.Study) -> list[optuna.Study]:
    """Every version of the study, oldest (the user's study) first; one for a study that
    never grew."""
    user = user_study(study)
    records = study_attrs(user).get("versions", [])
    return [user, *(_sibling(user, record["study"]) for record in records[1:])]


@dataclass(frozen=True)
class LineageTrial:
    """One trial of a study's lineage, with the version that holds it.

    Attributes:
        version: 1 for the user's study, 2 for its first new version, and so on.
        study: the Optuna study of that version.
        trial: the trial, as that study holds it.
    """

    version: int
    study: optuna.Study
    trial: FrozenTrial

    @property
    def name(self) -> int | str:
        """How ``--trial`` names it: its number in the user's study, else ``vK:N``."""
        number = self.trial.number
        return number if self.version == 1 else f"v{self.version}:{number}"


def lineage_trials(
    study: optuna.Study, states: Sequence[TrialState] | None = None
) -> list[LineageTrial]:
    """Every trial of every version of the study, each trained network once.

    A copy (``copied_from``) gives way to its original, which its own version lists; a
    copy of a trial from outside the lineage (a warm start's history) is not listed.

    Example:
        >>> study = optuna.create_study(study_name="demo")
        >>> study.add_trial(optuna.trial.create_trial(value=0.5))
        >>> [t.name for t in lineage_trials(study)]
        [0]
    """
    return [
        LineageTrial(index + 1, version, trial)
        for index, version in enumerate(version_studies(study))
        for trial in version.get_trials(deepcopy=False, states=states)
        if "copied_from" not in trial_attrs(trial)
    ]


def parse_trial_name(text: str | int) -> tuple[int, int]:
    """The version and number a ``--trial`` value names: ``7`` or ``v2:7``.

    Example:
        >>> parse_trial_name("v3:0")
        (3, 0)
        >>> parse_trial_name("v0:2")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: trial: must be a trial number N (the study's own) or vK:N (trial N of version K), got 'v0:2'
    """
    raw = str(text).strip()
    version, colon, number = raw.partition(":")
    if not colon:
        version, number = "v1", raw
    try:
        parsed = int(version.removeprefix("v")), int(number)
    except ValueError:
        parsed = (0, -1)
    if not version.startswith("v") or parsed[0] < 1 or parsed[1] < 0:
        raise UserInputError(
            "must be a trial number N (the study's own) or vK:N (trial N of version K), "
            f"got {raw!r}",
            param="trial",
        )
    return parsed


def find_lineage_trial(study: optuna.Study, name: str | int) -> LineageTrial:
    """The trial ``--trial`` names (:func:`parse_trial_name`); a copy names its original.

    Example:
        >>> study = optuna.create_study(study_name="demo")
        >>> study.add_trial(optuna.trial.create_trial(value=0.5))
        >>> find_lineage_trial(study, "0").trial.value
        0.5
        >>> find_lineage_trial(study, "v2:0")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: trial: study 'demo' has 1 version; name a trial N or v1:N
    """
    version, number = parse_trial_name(name)
    versions = version_studies(study)
    if version > len(versions):
        count = f"{len(versions)} version" + ("s" if len(versions) > 1 else "")
        raise UserInputError(
            f"study {versions[0].study_name!r} has {count}; name a trial N or v{len(versions)}:N",
            param="trial",
        )
    holder = versions[version - 1]
    trials = holder.get_trials(deepcopy=False)
    found = next((t for t in trials if t.number == number), None)
    if found is None:
        raise UserInputError(
            f"study {holder.study_name!r} has no trial {number} "
            f"(it has trials 0 to {len(trials) - 1})",
            param="trial",
        )
    origin = trial_attrs(found).get("copied_from")
    names = [v.study_name for v in versions]
    if origin is not None and origin["study"] in names:
        index = names.index(origin["study"])
        return find_lineage_trial(versions[0], f"v{index + 1}:{origin['number']}")
    return LineageTrial(version, holder, found)


def counted_elsewhere(versions: Sequence[optuna.Study]) -> int:
    """Finished trials of the earlier versions that the latest one holds no copy of.

    With the latest version's own counted trials (copies included), that is the
    lineage's total for ``--trials``: every trained trial once.
    """
    latest = versions[-1]
    carried = {_key(latest, t) for t in latest.get_trials(deepcopy=False, states=FINISHED)}
    total = 0
    for version in versions[:-1]:
        for trial in counted_trials(version.get_trials(deepcopy=False)):
            own = "copied_from" not in trial_attrs(trial)
            finished = trial.state != TrialState.RUNNING
            total += own and finished and _key(version, trial) not in carried
    return total


def lineage_finished(study: optuna.Study) -> int:
    """The lineage's finished trials as ``--trials`` counts them (each trained trial once)."""
    versions = version_studies(study)
    latest = counted_trials(versions[-1].get_trials(deepcopy=False))
    return counted_elsewhere(versions) + sum(t.state != TrialState.RUNNING for t in latest)


def _origin(study: optuna.Study, trial: FrozenTrial) -> TrialRef:
    return trial_attrs(trial).get("copied_from") or TrialRef(
        study=study.study_name, number=trial.number
    )


def _key(study: optuna.Study, trial: FrozenTrial) -> tuple[str, int]:
    """Which trained trial this is: its original's study and number."""
    origin = _origin(study, trial)
    return origin["study"], origin["number"]


def describe_changes(
    old: Mapping[str, BaseDistribution], new: Mapping[str, BaseDistribution]
) -> list[str]:
    """The changes between two spaces' parameters that one Optuna study cannot hold.

    A widened or narrowed range is not one of them (Optuna mixes those).

    Example:
        >>> describe_changes({"lr": FloatDistribution(0.01, 0.1)},
        ...                  {"lr": FloatDistribution(0.01, 0.2, log=True), "k": IntDistribution(4, 8)})
        ['k added', 'lr is now on a log scale']
        >>> describe_changes({"lr": FloatDistribution(0.01, 0.1)}, {"lr": FloatDistribution(0.01, 0.2)})
        []
    """
    from dense_nas.space import show_distribution

    changes = [f"{name} added" for name in new if name not in old]
    changes += [f"{name} removed" for name in old if name not in new]
    for name in (n for n in new if n in old):
        was, now = old[name], new[name]
        if isinstance(was, CategoricalDistribution) and isinstance(now, CategoricalDistribution):
            gained = [c for c in now.choices if not _among(c, was.choices)]
            lost = [c for c in was.choices if not _among(c, now.choices)]
            said = [f"gained {', '.join(map(str, gained))}"] if gained else []
            said += [f"lost {', '.join(map(str, lost))}"] if lost else []
            if said:
                changes.append(f"{name} {' and '.join(said)}")
        elif type(was) is not type(now):
            changes.append(f"{name} is now {show_distribution(now)} (was {show_distribution(was)})")
        elif cast(Any, was).log != cast(Any, now).log:
            changes.append(
                f"{name} is now on a log scale"
                if cast(Any, now).log
                else f"{name} is no longer on a log scale"
            )
    return changes


def _among(value: Any, choices: Sequence[Any]) -> bool:
    """``value in choices`` where ``True`` is not ``1`` (a choice keeps its type)."""
    return any(type(c) is type(value) and c == value for c in choices)


def contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether a distribution can draw ``value`` (of its kind, in its range and steps).

    Example:
        >>> contains(IntDistribution(4, 8, step=2), 6), contains(IntDistribution(4, 8, step=2), 5)
        (True, False)
        >>> contains(CategoricalDistribution([32, 64]), True)
        False
    """
    if isinstance(dist, CategoricalDistribution):
        return _among(value, dist.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(dist, IntDistribution):
        return (
            float(value).is_integer()
            and dist.low <= value <= dist.high
            and (int(value) - dist.low) % dist.step == 0
        )
    if isinstance(dist, FloatDistribution):
        if not dist.low <= value <= dist.high:
            return False
        if dist.step is None:
            return True
        steps = (value - dist.low) / dist.step
        return math.isclose(steps, round(steps), abs_tol=1e-8)
    return False


class _Outside(Exception):
    """A replayed trial has no value inside the space for a parameter."""


class _Replay:
    """Answers a space's ``suggest_*`` calls with a trial's values, refusing any outside.

    A parameter the trial never drew takes the value its recorded architecture or recipe
    had (the space then held it fixed); without one the trial does not fit.
    """

    def __init__(self, params: Mapping[str, Any], recorded: Mapping[str, Any]) -> None:
        self.params = params
        self.recorded = recorded
        self.drawn: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}

    def _answer(self, name: str, dist: BaseDistribution) -> Any:
        if name in self.params:
            value = self.params[name]
        elif name in self.recorded:
            value = self.recorded[name]
        else:
            raise _Outside(name)
        if not contains(dist, value):
            raise _Outside(name)
        self.drawn[name], self.distributions[name] = value, dist
        return value

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        return int(self._answer(name, IntDistribution(low, high, log=log, step=step)))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return float(self._answer(name, FloatDistribution(low, high, log=log, step=step)))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._answer(name, CategoricalDistribution(list(choices)))


def fit(
    trial: FrozenTrial, space: SearchSpace, task: Task
) -> tuple[dict[str, Any], dict[str, BaseDistribution]] | None:
    """The trial's values and distributions as ``space`` draws them, or ``None`` when a
    value lies outside it (or a parameter it never drew has no recorded value), or the
    network and recipe the space builds from them is not the one the trial recorded (a
    fixed value changed), but for :data:`UNCOMPARED_FIELDS`.

    Example:
        >>> from dense_nas.space import YamlSearchSpace, Task
        >>> space = YamlSearchSpace({"name": "k", "architecture": {
        ...     "growth_rate": {"choices": [4, 8]}, "depth": 10, "bottleneck": False}})
        >>> old = optuna.trial.create_trial(value=0.9, params={"growth_rate": 8},
        ...     distributions={"growth_rate": IntDistribution(4, 8)})
        >>> fit(old, space, Task(10, 1, (8, 8)))[1]
        {'growth_rate': CategoricalDistribution(choices=(4, 8))}
    """
    attrs = trial_attrs(trial)
    recorded = {**attrs.get("training", {}), **attrs.get("arch", {})}
    replay = _Replay(trial.params, recorded)
    try:
        candidate = space.suggest(cast(optuna.Trial, replay), task)
    except Exception:  # _Outside, or a space that refuses these values its own way
        return None
    if "arch" in attrs and "training" in attrs:  # the space's fixed values must agree too
        arch = candidate.arch.resolve_dropout(task.augmented).to_dict()
        pairs = ((attrs["arch"], arch), (attrs["training"], candidate.training.to_dict()))
        for was, now in pairs:
            if any(was.get(k) != now.get(k) for k in {*was, *now} - set(UNCOMPARED_FIELDS)):
                return None
    return replay.drawn, replay.distributions


def copy_trial(
    study: optuna.Study,
    trial: FrozenTrial,
    params: dict[str, Any],
    distributions: dict[str, BaseDistribution],
    *,
    counts: bool = True,
) -> FrozenTrial:
    """A finished trial of ``study`` as another study holds it: these params and
    distributions, its values, intermediate values and user attributes, and where it came
    from (``copied_from``: the trial that trained, never a copy). ``counts=False``: it
    does not use up the other study's ``--trials`` (history from outside its lineage)."""
    attrs: dict[str, Any] = {k: v for k, v in trial.user_attrs.items() if k not in NUMBERED_ATTRS}
    owner = trial
    numbers = {t.number: t for t in study.get_trials(deepcopy=False)}
    while (
        "checkpoint" not in trial_attrs(owner)
        and (earlier := trial_attrs(owner).get("duplicate_of")) in numbers
        and earlier != owner.number
    ):
        owner = numbers[earlier]  # a duplicate's weights are its original's
    if "checkpoint" in trial_attrs(owner):
        attrs["checkpoint"] = trial_attrs(owner)["checkpoint"]
    attrs.setdefault("copied_from", _origin(study, trial))
    if not counts:
        attrs["counts"] = False
    copy = optuna.trial.create_trial(
        state=trial.state,
        values=trial.values if trial.state == TrialState.COMPLETE else None,
        params=params,
        distributions=distributions,
        user_attrs=attrs,
        intermediate_values=dict(trial.intermediate_values),
    )
    copy.datetime_start, copy.datetime_complete = trial.datetime_start, trial.datetime_complete
    return copy


def _carry(
    versions: Sequence[optuna.Study], space: SearchSpace, task: Task
) -> tuple[list[FrozenTrial], int, int]:
    """The copies of the lineage's finished trials that fit ``space``; how many of the
    lineage's own fit, and how many it holds (history from outside it is not counted)."""
    names = {v.study_name for v in versions}
    seen: set[tuple[str, int]] = set()
    copies: list[FrozenTrial] = []
    carried = earlier = 0
    for version in versions:
        for trial in version.get_trials(deepcopy=False, states=FINISHED):
            key = _key(version, trial)
            if key in seen:
                continue
            seen.add(key)
            own = key[0] in names
            earlier += own
            fitted = fit(trial, space, task)
            if fitted is not None:
                copies.append(copy_trial(version, trial, *fitted))
                carried += own
    return copies, carried, earlier


def _recorded_parameters(study: optuna.Study) -> dict[str, BaseDistribution]:
    """The parameters of the study's latest space version: as recorded, else as its
    trials drew them (a study made before parameters were recorded)."""
    versions = study_attrs(study).get("space_versions", [])
    if versions and "parameters" in versions[-1]:
        return {n: json_to_distribution(d) for n, d in versions[-1]["parameters"].items()}
    drawn: dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        drawn.update(trial.distributions)  # the latest trial's: a widened range
    return drawn


def record_space_version(study: optuna.Study, version: SpaceVersion) -> list[str]:
    """Record a space version the study can hold; the line to print when it changed."""
    versions = study_attrs(study).get("space_versions", [])
    first = len(study.get_trials(deepcopy=False))
    latest = SpaceVersionRecord(
        name=version.name,
        fingerprint=version.fingerprint,
        first_trial=first,
        parameters={name: distribution_to_json(d) for name, d in version.distributions.items()},
    )
    record_study(study, space=version.name, space_versions=[*versions, latest])
    if not versions:
        return []
    before = versions[-1]["fingerprint"]
    return [
        f"space changed (fingerprint {before[:8]} → {version.fingerprint[:8]}): "
        f"trials from #{first} on use it"
    ]


@dataclass(frozen=True)
class GoingOn:
    """Where a search on a space goes on (:func:`go_on`).

    Attributes:
        study: the version's Optuna study: new trials go there.
        notes: lines to print under the study's header (a changed space).
        counted_elsewhere: finished trials of earlier versions it holds no copy of; with
            its own counted trials, the lineage's total for ``--trials``.
    """

    study: optuna.Study
    notes: list[str]
    counted_elsewhere: int


def go_on(
    study: optuna.Study,
    space: SearchSpace,
    task: Task,
    version: SpaceVersion,
    *,
    sampler: BaseSampler,
    pruner: BasePruner,
) -> GoingOn:
    """The study version a search on this space goes on in: the latest one when it can
    hold the space (recording a changed space's version), else a new version.

    Args:
        study: the user's study, as opened by name.
        space, task, version: the space, the data's task and the space's version.
        sampler, pruner: for a new version's study.
    """
    from dense_nas.space import incompatibility

    versions = version_studies(study)
    latest = versions[-1]
    recorded = study_attrs(latest).get("space_versions", [])
    if recorded and recorded[-1]["fingerprint"] == version.fingerprint:
        return GoingOn(latest, [], counted_elsewhere(versions))
    changes = describe_changes(_recorded_parameters(latest), version.distributions)
    clash = incompatibility(latest, version.distributions)
    if (
        not latest.get_trials(deepcopy=False)
        or not version.distributions
        or (not changes and clash is None)
    ):
        notes = record_space_version(latest, version)
        return GoingOn(latest, notes, counted_elsewhere(versions))
    return _next_version(
        versions, space, task, version, changes or [cast(str, clash)], sampler, pruner
    )


def _next_version(
    versions: list[optuna.Study],
    space: SearchSpace,
    task: Task,
    version: SpaceVersion,
    changes: list[str],
    sampler: BaseSampler,
    pruner: BasePruner,
) -> GoingOn:
    """Make the next version's study, carry the trials that fit into it, record it."""
    user = versions[0]
    number = len(versions) + 1
    name = version_name(user.study_name, number)
    storage = _storage(user)
    try:
        new = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=user.directions,
        )
    except DuplicatedStudyError:  # another command made it a moment ago: go on there
        return GoingOn(_sibling(user, name), [], counted_elsewhere(version_studies(user)))
    remember_storage(new, storage)
    for key in SHARED_ATTRS:
        if key in user.user_attrs:
            new.set_user_attr(key, user.user_attrs[key])
    record_study(new, version_of=user.study_name)
    copies, carried, earlier = _carry(versions, space, task)
    new.add_trials(copies)
    record_space_version(new, version)
    first = study_attrs(user).get("versions") or [_first_version(user)]
    record = VersionRecord(
        study=name,
        space=version.name,
        fingerprint=version.fingerprint,
        changes=changes,
        carried=carried,
        earlier=earlier,
    )
    record_study(user, versions=[*first, record])
    line = (
        f"space changed: {'; '.join(changes)}; study {user.study_name!r} goes on as version "
        f"{number} ({name}) with {carried} of {earlier} earlier trials"
    )
    return GoingOn(new, [line], counted_elsewhere([*versions, new]))


def _first_version(user: optuna.Study) -> VersionRecord:
    recorded = study_attrs(user).get("space_versions", [])
    last = recorded[-1] if recorded else None
    return VersionRecord(
        study=user.study_name,
        space=last["name"] if last else "",
        fingerprint=last["fingerprint"] if last else "",
        changes=[],
        carried=0,
        earlier=0,
    )

"""One field of a declarative search space: its type, its legal values, its distribution.

A field in a space file is either a fixed value or a distribution. This module knows the
fields (their type and default, and how :mod:`dense_nas.model.arch` / :mod:`dense_nas.model.recipe`
validate them), parses one field's YAML node into a :class:`Dist`, and words every
problem as one line naming the file, the field and the fix (:class:`Where`).

Example:
    >>> where = Where("my.yaml", "architecture.growth_rate")
    >>> parse_dist(FIELDS["growth_rate"], {"low": 4, "high": 16, "step": 4}, where)
    IntRange(low=4, high=16, step=4, log=False)
    >>> try:
    ...     parse_dist(FIELDS["growth_rate"], {"low": 8, "high": 4}, where)
    ... except UserInputError as err:
    ...     print(err)
    my.yaml: architecture.growth_rate: low (8) > high (4); make low <= high
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dense_nas.errors import UserInputError
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.recipe import TrainingConfig


class Suggester(Protocol):
    """The part of :class:`optuna.Trial` a space draws from (a probe can stand in for it)."""

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int: ...

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


# ----------------------------------------------------------------------------- errors
@dataclass(frozen=True)
class Where:
    """A place in a space file, for one-line error messages.

    Example:
        >>> print(Where("s.yaml").at("architecture").at("depth").error("bad; fix it"))
        s.yaml: architecture.depth: bad; fix it
    """

    source: str
    path: str = ""

    def at(self, key: str | int) -> Where:
        """The place one key (or list index) further down."""
        if isinstance(key, int):
            return Where(self.source, f"{self.path}[{key}]")
        return Where(self.source, f"{self.path}.{key}" if self.path else key)

    def error(self, message: str) -> UserInputError:
        """A one-line :class:`UserInputError` for this place."""
        text = (
            f"{self.source}: {self.path}: {message}" if self.path else f"{self.source}: {message}"
        )
        return UserInputError(" ".join(text.split()))


#: Longest value an error message shows; the rest is cut to "...".
SHOWN = 80


def show(value: Any) -> str:
    """A value as the user wrote it in YAML (``true``, not ``True``), cut to :data:`SHOWN`.

    Example:
        >>> show(True), show("cifar"), show(0.5)
        ('true', 'cifar', '0.5')
        >>> shown = show(list(range(100)))
        >>> len(shown), shown[-8:]
        (80, '0, 21...')
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def refused(value: Any, rule: str) -> str:
    """The shape of every bad-value message: ``<value> is not allowed; <rule>``.

    Example:
        >>> refused("twelve", "use an integer")
        "'twelve' is not allowed; use an integer"
    """
    shown = f"'{show(value)}'" if isinstance(value, str) else show(value)
    return f"{shown} is not allowed; {rule}"


def same(a: Any, b: Any) -> bool:
    """Equality that keeps ``true`` apart from ``1`` (YAML users mean different things)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


# ----------------------------------------------------------------------------- fields
REQUIRED: Any = object()
"""Default of a field that a space must give (``growth_rate``)."""


@dataclass(frozen=True)
class FieldSpec:
    """A field a space may set: its section, Python type, default, and validator.

    ``check`` raises ``ValueError("<name>: must ...")`` for an illegal value; it is the
    config classes' own validation, so the space never disagrees with them.
    """

    name: str
    section: str
    kind: type
    default: Any
    check: Callable[[Any], object]


def _arch_check(name: str) -> Callable[[Any], object]:
    def check(value: Any) -> object:
        return DenseNetConfig(**{"growth_rate": 1, "block_layers": (1,), name: value})

    return check


def _training_check(name: str) -> Callable[[Any], object]:
    # Nesterov (on by default) needs momentum > 0, and milestones and warm-ups in epochs
    # must lie inside the schedule: judge momentum, milestones and warm-up on their own
    # here (any schedule long enough); the combinations are checked on whole candidates
    # when the space loads.
    others: dict[str, dict[str, Any]] = {
        "momentum": {"nesterov": False},
        "milestones": {"epochs": 2**62},
        "warmup_epochs": {"epochs": 2**62},
    }
    base = others.get(name, {})

    def check(value: Any) -> object:
        return TrainingConfig(**{**base, name: value})

    return check


def _positive_int(name: str) -> Callable[[Any], object]:
    def check(value: Any) -> object:
        if value < 1:
            raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        return value

    return check


def _fields() -> dict[str, FieldSpec]:
    arch = DenseNetConfig(growth_rate=1, block_layers=(1,))
    training = TrainingConfig()
    specs = [
        FieldSpec("stem", "architecture", str, arch.stem, _arch_check("stem")),
        FieldSpec("num_blocks", "architecture", int, 3, _positive_int("num_blocks")),
        FieldSpec("bottleneck", "architecture", bool, arch.bottleneck, _arch_check("bottleneck")),
        FieldSpec("growth_rate", "architecture", int, REQUIRED, _arch_check("growth_rate")),
        FieldSpec("depth", "architecture", int, REQUIRED, _positive_int("depth")),
        FieldSpec(
            "layers_per_block", "architecture", int, REQUIRED, _positive_int("layers_per_block")
        ),
    ]
    # Unset (None) init_channels and dropout resolve later: to 2k, and by the data's
    # augmentation (the paper's dropout rule).
    optional: list[tuple[str, type, Any]] = [
        ("bottleneck_width", int, arch.bottleneck_width),
        ("compression", float, arch.compression),
        ("init_channels", int, None),
        ("dropout", float, arch.dropout),
        ("memory_efficient", bool, arch.memory_efficient),
    ]
    for name, kind, default in optional:
        specs.append(FieldSpec(name, "architecture", kind, default, _arch_check(name)))
    for name, default in training.to_dict().items():
        specs.append(FieldSpec(name, "training", type(default), default, _training_check(name)))
    return {spec.name: spec for spec in specs}


FIELDS: dict[str, FieldSpec] = _fields()
"""Every field a space may set, in the order a space draws them (before conditions)."""

STRUCTURE = ("depth", "layers_per_block")
"""Fields that decide the layers per block; a space gives exactly one of them."""


def coerce(spec: FieldSpec, value: Any, where: Where) -> Any:
    """Check one value's type and range for the field; ints stand for floats.

    Example:
        >>> coerce(FIELDS["compression"], 1, Where("s.yaml", "architecture.compression"))
        1.0
    """
    kind = spec.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        wanted = {
            bool: "true or false",
            int: "an integer",
            float: "a number",
            str: "a string",
            list: f"a list, e.g. {show(spec.default)}",
        }
        raise where.error(refused(value, f"use {wanted[kind]}"))
    try:
        spec.check(value)
    except ValueError as err:
        message = str(err).split(": ", 1)[-1]  # drop the "<field>: " prefix
        rule, got, _ = message.rpartition(", got ")
        raise where.error(refused(value, f"{spec.name} {rule}") if got else message) from None
    return value


# ----------------------------------------------------------------------------- dists
class Dist(abc.ABC):
    """The values one field takes: fixed, or drawn by the trial under a param name."""

    @abc.abstractmethod
    def draw(self, trial: Suggester, name: str) -> Any:
        """The value for this trial (asks the trial unless fixed)."""

    @abc.abstractmethod
    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one the distribution can draw."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Its values in words, for error messages."""

    @abc.abstractmethod
    def values(self) -> list[Any] | None:
        """Every value, in order, or ``None`` where there are too many (floats)."""


@dataclass(frozen=True)
class Fixed(Dist):
    """One value; no trial parameter."""

    value: Any

    def draw(self, trial: Suggester, name: str) -> Any:
        return self.value

    def contains(self, value: Any) -> bool:
        return same(self.value, value)

    def describe(self) -> str:
        return f"fixed at {show(self.value)}"

    def values(self) -> list[Any] | None:
        return [self.value]


@dataclass(frozen=True)
class Choices(Dist):
    """A categorical parameter."""

    choices: tuple[Any, ...]

    def draw(self, trial: Suggester, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def contains(self, value: Any) -> bool:
        return any(same(c, value) for c in self.choices)

    def describe(self) -> str:
        return "one of " + ", ".join(show(c) for c in self.choices)

    def values(self) -> list[Any] | None:
        return list(self.choices)


@dataclass(frozen=True)
class IntRange(Dist):
    """An integer parameter: ``low..high`` by ``step``, or log-uniform."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def draw(self, trial: Suggester, name: str) -> Any:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        return self.low <= value <= self.high and (value - self.low) % self.step == 0

    def describe(self) -> str:
        step = f" in steps of {self.step}" if self.step > 1 else ""
        return f"an integer in [{self.low}, {self.high}]{step}"

    def values(self) -> list[Any] | None:
        return list(range(self.low, self.high + 1, self.step))


@dataclass(frozen=True)
class FloatRange(Dist):
    """A float parameter: uniform, stepped, or log-uniform."""

    low: float
    high: float
    step: float | None = None
    log: bool = False

    def draw(self, trial: Suggester, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        inside = self.low <= value <= self.high
        return inside and (self.step is None or _whole((value - self.low) / self.step))

    def describe(self) -> str:
        step = f" in steps of {self.step}" if self.step else ""
        return f"a number in [{self.low}, {self.high}]{step}"

    def values(self) -> list[Any] | None:
        return None


def _whole(ratio: float) -> bool:
    return abs(ratio - round(ratio)) <= 1e-9 * max(1.0, abs(ratio))


# ----------------------------------------------------------------------------- parsing
RANGE_KEYS = ("low", "high", "step", "log")
DIST_KEYS = ("value", "choices", *RANGE_KEYS, "when")


def parse_dist(spec: FieldSpec, node: Any, where: Where, extra_keys: Sequence[str] = ()) -> Dist:
    """A field's YAML node (a plain value, or a mapping) as a :class:`Dist`.

    ``when`` and ``extra_keys`` are allowed in the mapping but left to the caller.

    Example:
        >>> parse_dist(FIELDS["bottleneck"], {"choices": [True, False]}, Where("s.yaml"))
        Choices(choices=(True, False))
    """
    if not isinstance(node, Mapping):
        return Fixed(coerce(spec, node, where))
    allowed = (*DIST_KEYS, *extra_keys)
    for key in node:
        if key not in allowed:
            raise where.at(str(key)).error(f"unknown key; allowed keys: {', '.join(allowed)}")
    if spec.kind is list and "value" not in node:
        # A list-valued field is fixed: Optuna stores only plain values as categorical choices.
        example = show(spec.default)
        raise where.error(
            f"takes one list, not a distribution; write e.g. {example}, or "
            f"{{value: {example}, when: {{...}}}}"
        )
    if "value" in node:
        _refuse(node, where, "value", ("choices", *RANGE_KEYS))
        return Fixed(coerce(spec, node["value"], where.at("value")))
    if "choices" in node:
        _refuse(node, where, "choices", RANGE_KEYS)
        return _parse_choices(spec, node["choices"], where.at("choices"))
    if "low" in node or "high" in node:
        return _parse_range(spec, node, where)
    example = "{choices: [true, false]}" if spec.kind in (bool, str) else "{low: 1, high: 4}"
    raise where.error(f"needs value, choices or low/high; e.g. {example}")


def _refuse(node: Mapping[str, Any], where: Where, form: str, others: Sequence[str]) -> None:
    for key in others:
        if key in node:
            raise where.error(f"{key} does not go with {form}; give one form only")


def _parse_choices(spec: FieldSpec, node: Any, where: Where) -> Dist:
    if not isinstance(node, list) or not node:
        raise where.error("must be a non-empty list; write e.g. choices: [12, 24]")
    choices: list[Any] = []
    for index, item in enumerate(node):
        value = coerce(spec, item, where.at(index))
        if any(same(value, c) for c in choices):
            raise where.error(f"{show(value)} appears twice; list each choice once")
        choices.append(value)
    return Fixed(choices[0]) if len(choices) == 1 else Choices(tuple(choices))


def _parse_range(spec: FieldSpec, node: Mapping[str, Any], where: Where) -> Dist:
    if spec.kind not in (int, float):
        raise where.error(f"low/high need a numeric field; use choices: [...] for {spec.name}")
    for key in ("low", "high"):
        if key not in node:
            raise where.error(f"missing {key}; a range needs both low and high")
    low = coerce(spec, node["low"], where.at("low"))
    high = coerce(spec, node["high"], where.at("high"))
    if low > high:
        raise where.error(f"low ({show(low)}) > high ({show(high)}); make low <= high")
    log = node.get("log", False)
    if not isinstance(log, bool):
        raise where.at("log").error(refused(log, "log must be true or false"))
    step = _parse_step(spec, node, where, low, high)
    if log and step is not None:
        raise where.error("log and step cannot be combined; drop one of them")
    if log and low <= 0:
        raise where.at("log").error(f"needs low > 0, got low = {show(low)}; raise low or drop log")
    if low == high:
        return Fixed(low)
    if spec.kind is int:
        return IntRange(low, high, step or 1, log)
    return FloatRange(low, high, step, log)


def _parse_step(spec: FieldSpec, node: Mapping[str, Any], where: Where, low: Any, high: Any) -> Any:
    if "step" not in node:
        return None
    step = node["step"]
    here = where.at("step")
    number = isinstance(step, (int, float)) and not isinstance(step, bool)
    if not number or (spec.kind is int and not isinstance(step, int)) or step <= 0:
        wanted = "a positive integer" if spec.kind is int else "a positive number"
        raise here.error(refused(step, f"step must be {wanted}"))
    ratio = (high - low) / step
    if not _whole(ratio):
        below, above = low + math.floor(ratio) * step, low + math.ceil(ratio) * step
        raise here.error(
            f"{show(step)} does not divide high - low ({show(high - low)}); "
            f"make high {_round(below)} or {_round(above)}, or change step"
        )
    return step


def _round(value: float) -> str:
    return show(round(value, 9))

"""The training recipe: every setting besides the architecture that a trial trains with.

Defaults are the paper's: SGD with Nesterov momentum 0.9, weight decay 1e-4, lr 0.1
divided by 10 at 50% and 75% of the epochs, batch 64.

Example:
    >>> TrainingConfig(epochs=300).milestone_epochs()
    [150, 225]
    >>> TrainingConfig(epochs=90, milestones=[30, 60]).milestone_epochs()  # the paper's ImageNet
    [30, 60]
    >>> TrainingConfig(lr=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: lr: must be a positive number, got -1.0
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

Schedule = Literal["multistep", "cosine"]
SCHEDULES: tuple[str, ...] = ("multistep", "cosine")

Milestones = tuple[int, ...] | tuple[float, ...]
PAPER_MILESTONES: Milestones = (0.5, 0.75)
"""The paper's CIFAR and SVHN steps: the lr divided by 10 at 50% and 75% of the epochs."""


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser, schedule and batch settings for one training run.

    Args:
        lr: initial learning rate.
        momentum: SGD momentum.
        nesterov: use Nesterov momentum.
        weight_decay: L2 penalty on all parameters (the paper decays BN too).
        schedule: ``"multistep"`` (divide the lr by 10 at each of ``milestones``) or
            ``"cosine"`` (cosine annealing to zero over the epochs).
        milestones: where ``multistep`` divides the lr by 10, in increasing order: epochs
            (integers in ``[1, epochs)``, e.g. ``[30, 60]`` of 90 for the paper's ImageNet
            schedule) or fractions of the schedule (floats in ``(0, 1)``, floored to
            whole epochs), never a mix; the paper's ``[0.5, 0.75]`` by default. A list is
            kept as a tuple. ``cosine`` ignores it.
        epochs: length of the schedule.
        label_smoothing: cross-entropy label smoothing.
        batch_size: images per optimiser step (per device under DDP).

    Example:
        >>> TrainingConfig.from_dict({"lr": 0.05, "batch_size": 128}).batch_size
        128
        >>> TrainingConfig(epochs=90, milestones=[60, 30])
        Traceback (most recent call last):
        ...
        ValueError: milestones: must increase, got [60, 30]
    """

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    schedule: Schedule = "multistep"
    milestones: Milestones = PAPER_MILESTONES
    epochs: int = 300
    label_smoothing: float = 0.0
    batch_size: int = 64

    def __post_init__(self) -> None:
        _number("lr", self.lr, low=0.0, low_open=True)
        _number("momentum", self.momentum, low=0.0, high=1.0)
        _number("weight_decay", self.weight_decay, low=0.0)
        _number("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"nesterov: must be true or false, got {self.nesterov!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: needs momentum > 0; set nesterov to false or momentum > 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"schedule: must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if isinstance(self.milestones, list):
            object.__setattr__(self, "milestones", tuple(self.milestones))
        _check_milestones(self.milestones, self.epochs)

    def milestone_epochs(self) -> list[int]:
        """Epochs at which the multistep schedule divides the lr by 10.

        Fractions are floored: 75% of 10 epochs is epoch 7, as in the paper's code.

        Example:
            >>> TrainingConfig(epochs=10).milestone_epochs()
            [5, 7]
        """
        if _are_epochs(self.milestones):
            return list(self.milestones)
        # The epsilon keeps e.g. 0.29 * 100 (28.999999999999996) at 29.
        return [math.floor(f * self.epochs + 1e-9) for f in self.milestones]

    def with_epochs(self, epochs: int) -> TrainingConfig:
        """The same schedule stretched to ``epochs``: milestones keep their place in it.

        Fractions need no change; milestones in epochs become the fractions of the schedule
        they stood for, so a proxy run of 30 epochs of an ``[30, 60]``-of-90 recipe decays
        at epochs 10 and 20, and a later run at 90 epochs at 30 and 60 again.

        Example:
            >>> short = TrainingConfig(epochs=90, milestones=[30, 60]).with_epochs(30)
            >>> short.milestone_epochs(), short.with_epochs(90).milestone_epochs()
            ([10, 20], [30, 60])
        """
        if epochs == self.epochs or not _are_epochs(self.milestones):
            return self.replace(epochs=epochs)
        fractions = tuple(m / self.epochs for m in self.milestones)
        return self.replace(epochs=epochs, milestones=fractions)

    @property
    def key(self) -> str:
        """Canonical key: equal for any two recipes that train the same way.

        ``cosine`` never reads the milestones, so they enter the key only for
        ``multistep`` (and a cosine recipe keys as it did before milestones existed).

        Example:
            >>> TrainingConfig(epochs=90, milestones=[30, 60]).key == TrainingConfig(epochs=90).key
            False
            >>> TrainingConfig(schedule="cosine", milestones=[30, 60]).key == TrainingConfig(
            ...     schedule="cosine").key
            True
        """
        values = self.to_dict()
        if self.schedule != "multistep":
            del values["milestones"]
        return ";".join(f"{name}={value}" for name, value in sorted(values.items()))

    def replace(self, **changes: Any) -> TrainingConfig:
        """A validated copy with some fields changed.

        Example:
            >>> TrainingConfig().replace(epochs=5).epochs
            5
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe values (lists, not tuples) that :meth:`from_dict` reads back.

        Example:
            >>> TrainingConfig().to_dict()["milestones"]
            [0.5, 0.75]
            >>> TrainingConfig.from_dict(TrainingConfig().to_dict()) == TrainingConfig()
            True
        """
        return {**dataclasses.asdict(self), "milestones": list(self.milestones)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingConfig:
        """Build from plain values; unknown keys are an error naming the key.

        Example:
            >>> TrainingConfig.from_dict({"lr_rate": 0.1})
            Traceback (most recent call last):
            ...
            ValueError: lr_rate: unknown training field; known fields: batch_size, epochs, label_smoothing, lr, milestones, momentum, nesterov, schedule, weight_decay
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{unknown[0]}: unknown training field; known fields: {', '.join(sorted(known))}"
            )
        return cls(**data)


def _are_epochs(milestones: Milestones) -> TypeGuard[tuple[int, ...]]:
    return all(isinstance(m, int) for m in milestones)


def _check_milestones(milestones: Any, epochs: int) -> None:
    """Raise ValueError naming ``milestones`` and the rule its value breaks."""
    got = list(milestones) if isinstance(milestones, tuple) else milestones
    if not isinstance(milestones, tuple) or not all(
        isinstance(m, (int, float)) and not isinstance(m, bool) for m in milestones
    ):
        raise ValueError(
            "milestones: must be a list of epochs like [30, 60] or of fractions of the "
            f"schedule like [0.5, 0.75], got {got!r}"
        )
    if not milestones:
        raise ValueError(f"milestones: must name at least one epoch or fraction, got {got!r}")
    kinds = {isinstance(m, int) for m in milestones}
    if len(kinds) > 1:
        raise ValueError(
            "milestones: must be all epochs (integers) or all fractions (floats), "
            f"not a mix, got {got!r}"
        )
    if kinds == {True} and not all(1 <= m < epochs for m in milestones):
        inside = f"epochs in [1, {epochs - 1}] or " if epochs > 1 else ""
        raise ValueError(
            f"milestones: {got!r} do not fit a schedule of {epochs} epochs; "
            f"give {inside}fractions in (0, 1)"
        )
    if kinds == {False} and not all(0 < m < 1 for m in milestones):
        raise ValueError(f"milestones: must hold fractions in (0, 1), got {got!r}")
    if any(a >= b for a, b in itertools.pairwise(milestones)):
        raise ValueError(f"milestones: must increase, got {got!r}")


def _number(
    name: str,
    value: Any,
    *,
    low: float,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high)
        )
    if not ok:
        what = (
            "a positive number"
            if low_open and high is None
            else (
                f"a number >= {low}"
                if high is None
                else f"a number in [{low}, {high}{')' if high_open else ']'}"
            )
        )
        raise ValueError(f"{name}: must be {what}, got {value!r}")

"""The training recipe: every setting besides the architecture that a trial trains with.

Defaults are the paper's: SGD with Nesterov momentum 0.9, weight decay 1e-4, lr 0.1
divided by 10 at 50% and 75% of the epochs, batch 64. AdamW is the other optimizer; a
linear warm-up can lead into either schedule.

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

Optimizer = Literal["sgd", "adamw"]
OPTIMIZER_FIELDS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum", "nesterov"),
    "adamw": ("betas", "eps"),
}
"""Each optimizer and the fields only it reads (``lr`` and ``weight_decay`` are shared)."""

Milestones = tuple[int, ...] | tuple[float, ...]
PAPER_MILESTONES: Milestones = (0.5, 0.75)
"""The paper's CIFAR and SVHN steps: the lr divided by 10 at 50% and 75% of the epochs."""


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser, schedule and batch settings for one training run.

    Args:
        lr: initial learning rate (the peak one after a warm-up).
        optimizer: ``"sgd"`` (the paper's) or ``"adamw"`` (decoupled weight decay).
        momentum: SGD momentum (SGD only).
        nesterov: use Nesterov momentum (SGD only).
        betas: AdamW's two running-average coefficients, each in ``[0, 1)`` (AdamW
            only). A list is kept as a tuple.
        eps: AdamW's term added to the denominator, > 0 (AdamW only).
        weight_decay: weight decay on all parameters (the paper decays BN too): an L2
            penalty for SGD, decoupled from the gradient for AdamW.
        schedule: ``"multistep"`` (divide the lr by 10 at each of ``milestones``) or
            ``"cosine"`` (cosine annealing to zero over the epochs).
        milestones: where ``multistep`` divides the lr by 10, in increasing order: epochs
            (integers in ``[1, epochs)``, e.g. ``[30, 60]`` of 90 for the paper's ImageNet
            schedule) or fractions of the schedule (floats in ``(0, 1)``, floored to
            whole epochs), never a mix; the paper's ``[0.5, 0.75]`` by default. A list is
            kept as a tuple. ``cosine`` ignores it.
        warmup_epochs: epochs of linear warm-up, fewer than ``epochs``: epoch ``e`` of
            them trains at ``lr * (e + 1) / (warmup_epochs + 1)`` times the schedule's
            factor, so the lr climbs in equal steps to the full lr at epoch
            ``warmup_epochs``; the schedule itself keeps its epochs (milestones stay
            where they are, cosine still ends at ``epochs``). 0: no warm-up.
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
        >>> TrainingConfig(optimizer="adamw", lr=1e-3, betas=[0.9, 0.99]).betas
        (0.9, 0.99)
        >>> TrainingConfig(epochs=5, warmup_epochs=5)
        Traceback (most recent call last):
        ...
        ValueError: warmup_epochs: 5 do not fit a schedule of 5 epochs; warm up for fewer epochs than the schedule has
    """

    lr: float = 0.1
    optimizer: Optimizer = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-4
    schedule: Schedule = "multistep"
    milestones: Milestones = PAPER_MILESTONES
    warmup_epochs: int = 0
    epochs: int = 300
    label_smoothing: float = 0.0
    batch_size: int = 64

    def __post_init__(self) -> None:
        _number("lr", self.lr, low=0.0, low_open=True)
        _number("momentum", self.momentum, low=0.0, high=1.0)
        _number("eps", self.eps, low=0.0, low_open=True)
        _number("weight_decay", self.weight_decay, low=0.0)
        _number("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        for name, choices in (("optimizer", tuple(OPTIMIZER_FIELDS)), ("schedule", SCHEDULES)):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"{name}: must be one of {', '.join(choices)}, got {getattr(self, name)!r}"
                )
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"nesterov: must be true or false, got {self.nesterov!r}")
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: needs momentum > 0; set nesterov to false or momentum > 0")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        _check_warmup(self.warmup_epochs, self.epochs)
        for name in ("milestones", "betas"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_betas(self.betas)
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
        at epochs 10 and 20, and a later run at 90 epochs at 30 and 60 again. A warm-up
        keeps its share of the schedule, rounded, but never shrinks to nothing and always
        ends before the schedule does.

        Example:
            >>> short = TrainingConfig(epochs=90, milestones=[30, 60]).with_epochs(30)
            >>> short.milestone_epochs(), short.with_epochs(90).milestone_epochs()
            ([10, 20], [30, 60])
            >>> warm = TrainingConfig(epochs=100, warmup_epochs=5)
            >>> [warm.with_epochs(n).warmup_epochs for n in (200, 10, 2, 1)]
            [10, 1, 1, 0]
        """
        if epochs == self.epochs:
            return self
        warmup = self._stretched_warmup(epochs)
        if not _are_epochs(self.milestones):
            return self.replace(epochs=epochs, warmup_epochs=warmup)
        fractions = tuple(m / self.epochs for m in self.milestones)
        return self.replace(epochs=epochs, milestones=fractions, warmup_epochs=warmup)

    def _stretched_warmup(self, epochs: int) -> int:
        """The warm-up's share of the schedule at ``epochs``, rounded: at least one epoch
        while the recipe warms up at all, and always below ``epochs``."""
        if self.warmup_epochs == 0:
            return 0
        share = round(self.warmup_epochs * epochs / self.epochs)
        return min(max(share, 1), epochs - 1)

    def unused_fields(self) -> frozenset[str]:
        """Fields this recipe never reads: the other optimizer's, and cosine's milestones.

        Example:
            >>> sorted(TrainingConfig(optimizer="adamw", schedule="cosine").unused_fields())
            ['milestones', 'momentum', 'nesterov']
        """
        unused = {
            name
            for optimizer, names in OPTIMIZER_FIELDS.items()
            if optimizer != self.optimizer
            for name in names
        }
        if self.schedule != "multistep":
            unused.add("milestones")
        return frozenset(unused)

    @property
    def key(self) -> str:
        """Canonical key: equal for any two recipes that train the same way.

        Fields the recipe never reads (:meth:`unused_fields`) stay out of it, and so do
        an SGD optimizer and a warm-up of 0: a recipe that trains as recipes did before
        those fields existed keys as it did then.

        Example:
            >>> TrainingConfig(epochs=90, milestones=[30, 60]).key == TrainingConfig(epochs=90).key
            False
            >>> TrainingConfig(schedule="cosine", milestones=[30, 60]).key == TrainingConfig(
            ...     schedule="cosine").key
            True
            >>> TrainingConfig(optimizer="adamw", momentum=0.5).key == TrainingConfig(
            ...     optimizer="adamw").key
            True
        """
        values = {k: v for k, v in self.to_dict().items() if k not in self.unused_fields()}
        if self.optimizer == "sgd":
            del values["optimizer"]
        if self.warmup_epochs == 0:
            del values["warmup_epochs"]
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
        return {
            **dataclasses.asdict(self),
            "milestones": list(self.milestones),
            "betas": list(self.betas),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingConfig:
        """Build from plain values; unknown keys are an error naming the key.

        A missing field takes its default, so a recipe recorded before a field existed
        (``optimizer``, ``warmup_epochs``, ...) reads back as the recipe it trained with.

        Example:
            >>> TrainingConfig.from_dict({"lr": 0.1, "momentum": 0.9}).optimizer
            'sgd'

            >>> TrainingConfig.from_dict({"lr_rate": 0.1})
            Traceback (most recent call last):
            ...
            ValueError: lr_rate: unknown training field; known fields: batch_size, betas, epochs, eps, label_smoothing, lr, milestones, momentum, nesterov, optimizer, schedule, warmup_epochs, weight_decay
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


def _check_warmup(warmup: Any, epochs: int) -> None:
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup_epochs: must be a whole number of epochs >= 0, got {warmup!r}")
    if warmup >= epochs:
        raise ValueError(
            f"warmup_epochs: {warmup} do not fit a schedule of {epochs} epochs; "
            "warm up for fewer epochs than the schedule has"
        )


def _check_betas(betas: Any) -> None:
    shape_ok = isinstance(betas, tuple) and len(betas) == 2
    if not shape_ok or not all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas
    ):
        got = list(betas) if isinstance(betas, tuple) else betas
        raise ValueError(f"betas: must be two numbers in [0, 1), like [0.9, 0.999], got {got!r}")


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

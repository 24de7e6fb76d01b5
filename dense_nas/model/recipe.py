"""The training recipe: every setting besides the architecture that a trial trains with.

Defaults are the paper's: SGD with Nesterov momentum 0.9, weight decay 1e-4, lr 0.1
divided by 10 at 50% and 75% of the epochs, batch 64.

Example:
    >>> TrainingConfig(epochs=300).milestones()
    [150, 225]
    >>> TrainingConfig(lr=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: lr: must be a positive number, got -1.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Schedule = Literal["multistep", "cosine"]
SCHEDULES: tuple[str, ...] = ("multistep", "cosine")


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser, schedule and batch settings for one training run.

    Args:
        lr: initial learning rate.
        momentum: SGD momentum.
        nesterov: use Nesterov momentum.
        weight_decay: L2 penalty on all parameters (the paper decays BN too).
        schedule: ``"multistep"`` (divide by 10 at 50% and 75% of the epochs) or
            ``"cosine"`` (cosine annealing to zero over the epochs).
        epochs: length of the schedule.
        label_smoothing: cross-entropy label smoothing.
        batch_size: images per optimiser step (per device under DDP).

    Example:
        >>> TrainingConfig.from_dict({"lr": 0.05, "batch_size": 128}).batch_size
        128
    """

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    schedule: Schedule = "multistep"
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

    def milestones(self) -> list[int]:
        """Epochs at which the multistep schedule divides the lr by 10 (50% and 75%).

        Example:
            >>> TrainingConfig(epochs=10).milestones()
            [5, 7]
        """
        return [self.epochs // 2, (self.epochs * 3) // 4]

    def replace(self, **changes: Any) -> TrainingConfig:
        """A validated copy with some fields changed.

        Example:
            >>> TrainingConfig().replace(epochs=5).epochs
            5
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values that :meth:`from_dict` reads back.

        Example:
            >>> TrainingConfig.from_dict(TrainingConfig().to_dict()) == TrainingConfig()
            True
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingConfig:
        """Build from plain values; unknown keys are an error naming the key.

        Example:
            >>> TrainingConfig.from_dict({"lr_rate": 0.1})
            Traceback (most recent call last):
            ...
            ValueError: lr_rate: unknown training field; known fields: batch_size, epochs, label_smoothing, lr, momentum, nesterov, schedule, weight_decay
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{unknown[0]}: unknown training field; known fields: {', '.join(sorted(known))}"
            )
        return cls(**data)


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

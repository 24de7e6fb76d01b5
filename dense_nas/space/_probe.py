"""A stand-in for an Optuna trial that walks a space's corners instead of sampling.

Every cost the constraints limit (parameters, MACs, activation bytes) grows with each
numeric field of a space (growth rate, depth, layers, widths, compression, batch size),
so the smallest candidate of each branch takes every numeric parameter at its low end.
The branches are the values that change the shape of the space: categorical choices that
are not numbers, and whatever values the caller lists (the number of blocks, and the
values ``when`` conditions test). :func:`walk` visits every combination of them.

Example:
    >>> def draw(trial):
    ...     return (trial.suggest_categorical("stem", ["cifar", "imagenet"]),
    ...             trial.suggest_int("growth_rate", 4, 16),
    ...             trial.suggest_int("num_blocks", 1, 3))
    >>> walk(draw, branch={"num_blocks": [1, 3]})[0]
    [('cifar', 4, 1), ('cifar', 4, 3), ('imagenet', 4, 1), ('imagenet', 4, 3)]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class Probe:
    """Answers ``suggest_*`` calls with fixed values, low ends, or one branch's choices.

    Args:
        fixed: parameter values to return as given (a seed).
        branch: the values to try, per parameter name, besides non-numeric choices.
        path: which alternative to take at each branch point met, in order; ``0`` past
            its end.
    """

    def __init__(
        self,
        fixed: Mapping[str, Any] | None = None,
        branch: Mapping[str, Sequence[Any]] | None = None,
        path: Sequence[int] = (),
    ) -> None:
        self.fixed = dict(fixed or {})
        self.branch = dict(branch or {})
        self.path = tuple(path)
        self.asked: dict[str, Any] = {}
        self.taken: list[int] = []
        self.arities: list[int] = []

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        value: int = self._pick(name, [low])
        return value

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        value: float = self._pick(name, [low])
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
        return self._pick(name, [min(choices)] if numeric else list(choices))

    def _pick(self, name: str, options: Sequence[Any]) -> Any:
        if name in self.fixed:
            value = self.fixed[name]
        else:
            options = self.branch.get(name, options)
            point = len(self.taken)
            index = self.path[point] if point < len(self.path) else 0
            self.taken.append(index)
            self.arities.append(len(options))
            value = options[index]
        self.asked[name] = value
        return value


def walk(
    draw: Callable[[Probe], T],
    branch: Mapping[str, Sequence[Any]] | None = None,
    limit: int = 2048,
) -> tuple[list[T], bool]:
    """Run ``draw`` once per branch combination (depth first).

    Returns:
        The results, and whether every combination was visited (``False`` when more
        than ``limit`` exist).
    """
    results: list[T] = []
    stack: list[tuple[int, ...]] = [()]
    while stack:
        if len(results) >= limit:
            return results, False
        path = stack.pop()
        probe = Probe(branch=branch, path=path)
        results.append(draw(probe))
        for point in range(len(path), len(probe.arities)):
            for alternative in range(probe.arities[point] - 1, 0, -1):
                stack.append((*probe.taken[:point], alternative))
    return results, True

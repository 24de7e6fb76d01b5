"""The fields of a declarative space as nodes: drawn in dependency order, under conditions.

A node draws one field's value into a context (field name -> value) that starts from the
config classes' defaults. A node with ``when`` conditions draws only while every
condition holds; otherwise its field keeps the default. Depth is special: the legal L
values differ with and without bottleneck layers and with the number of blocks, and an
Optuna categorical cannot change its choices under one name, so :class:`DepthNode` draws
under one parameter name per block type (``depth_bc``, ``depth_basic``, ...).

Example:
    >>> from dense_nas.space._values import IntRange
    >>> node = DepthNode(dist=IntRange(40, 60), bottlenecks=(True, False), blocks=(3,))
    >>> node.param_name((False, 3)), node.legal((True, 3)), node.legal((False, 3)).step
    ('depth_basic', IntRange(low=40, high=58, step=6, log=False), 3)
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from dense_nas.model.arch import valid_depths
from dense_nas.space._values import Choices, Dist, Fixed, IntRange, Suggester, same, show

Context = dict[str, Any]
Combo = tuple[bool, int]
"""(bottleneck, num_blocks): what decides which depths are legal."""


class NotInSpace(ValueError):
    """A value (from a seed) that the node cannot draw; the message says why."""


@dataclass(frozen=True, kw_only=True)
class Node(abc.ABC):
    """One field of a space and the conditions under which it is drawn."""

    field: str
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def active(self, ctx: Context) -> bool:
        """Whether every condition holds for the values drawn so far."""
        return all(any(same(ctx[name], v) for v in values) for name, values in self.when)

    def needs(self) -> frozenset[str]:
        """Fields that must be drawn before this one."""
        return frozenset(name for name, _ in self.when)

    @abc.abstractmethod
    def draw(self, trial: Suggester, ctx: Context) -> Any:
        """This field's value for the trial."""

    @abc.abstractmethod
    def params_for(self, value: Any, ctx: Context) -> dict[str, Any]:
        """The trial parameters that make :meth:`draw` give ``value`` (raise NotInSpace)."""


def _params(dist: Dist, name: str, value: Any) -> dict[str, Any]:
    if not dist.contains(value):
        raise NotInSpace(f"{show(value)} is not in the space ({dist.describe()})")
    return {} if isinstance(dist, Fixed) else {name: value}


@dataclass(frozen=True, kw_only=True)
class ValueNode(Node):
    """A field drawn from one distribution, under the field's own name."""

    dist: Dist

    def draw(self, trial: Suggester, ctx: Context) -> Any:
        return self.dist.draw(trial, self.field)

    def params_for(self, value: Any, ctx: Context) -> dict[str, Any]:
        return _params(self.dist, self.field, value)


@dataclass(frozen=True, kw_only=True)
class DepthNode(Node):
    """The paper's L, drawn only from the legal values of the candidate's block type.

    Args:
        dist: the depths the space names, legal or not (a range keeps its legal values).
        bottlenecks: the values ``bottleneck`` may take in the space.
        blocks: the values ``num_blocks`` may take in the space.
    """

    field: str = "depth"
    dist: Dist
    bottlenecks: tuple[bool, ...]
    blocks: tuple[int, ...]

    def needs(self) -> frozenset[str]:
        return frozenset({"bottleneck", "num_blocks"})

    def param_name(self, combo: Combo) -> str:
        """``depth``, with ``_bc``/``_basic`` and ``_<n>blocks`` where those vary."""
        name = "depth"
        if len(self.bottlenecks) > 1:
            name += "_bc" if combo[0] else "_basic"
        if len(self.blocks) > 1:
            name += f"_{combo[1]}blocks"
        return name

    def legal(self, combo: Combo) -> Dist:
        """The legal depths for the block type (raise NotInSpace if there are none)."""
        legal = [L for L in self.dist.values() or [] if _is_legal(L, combo)]
        if not legal:
            raise _no_legal_depth(self.dist, combo)
        if len(legal) == 1:
            return Fixed(legal[0])
        if isinstance(self.dist, Choices):
            return Choices(tuple(legal))
        # Two evenly spaced sets meet in an evenly spaced set: still one int range.
        return IntRange(legal[0], legal[-1], legal[1] - legal[0])

    def legal_anywhere(self, depth: int) -> bool:
        """Whether ``depth`` is legal for some block type the space holds."""
        return any(_is_legal(depth, (b, n)) for b in self.bottlenecks for n in self.blocks)

    def rule(self) -> str:
        """The legality rule, in words."""
        return "; ".join(
            f"{'with' if b else 'without'} bottleneck layers and {n} blocks, L - {n + 1} "
            f"must be a multiple of {(2 if b else 1) * n}"
            for b in self.bottlenecks
            for n in self.blocks
        )

    def draw(self, trial: Suggester, ctx: Context) -> Any:
        combo = (ctx["bottleneck"], ctx["num_blocks"])
        return self.legal(combo).draw(trial, self.param_name(combo))

    def params_for(self, value: Any, ctx: Context) -> dict[str, Any]:
        combo = (ctx["bottleneck"], ctx["num_blocks"])
        return _params(self.legal(combo), self.param_name(combo), value)


def _no_legal_depth(dist: Dist, combo: Combo) -> NotInSpace:
    bottleneck, blocks = combo
    step = (2 if bottleneck else 1) * blocks
    values = dist.values() or [1]
    below = valid_depths(1, min(values), bottleneck=bottleneck, num_blocks=blocks)[-1:]
    above = valid_depths(max(values), max(values) + step, bottleneck=bottleneck, num_blocks=blocks)
    nearest = " or ".join(str(d) for d in below + above[:1])
    kind = "with" if bottleneck else "without"
    return NotInSpace(
        f"no legal depth ({dist.describe()}) {kind} bottleneck layers and {blocks} blocks: "
        f"L - {blocks + 1} must be a positive multiple of {step}; include {nearest}"
    )


def _is_legal(depth: int, combo: Combo) -> bool:
    return valid_depths(depth, depth, bottleneck=combo[0], num_blocks=combo[1]) == [depth]


@dataclass(frozen=True, kw_only=True)
class BlockLayersNode(Node):
    """Layers drawn per block: one distribution each, or one shared by every block."""

    field: str = "layers_per_block"
    per_block: tuple[Dist, ...] = ()
    shared: Dist | None = None

    def needs(self) -> frozenset[str]:
        return super().needs() | {"num_blocks"}

    def _dists(self, ctx: Context) -> tuple[Dist, ...]:
        if self.shared is not None:
            blocks: int = ctx["num_blocks"]
            return (self.shared,) * blocks
        return self.per_block

    def draw(self, trial: Suggester, ctx: Context) -> Any:
        return tuple(d.draw(trial, f"layers_block{i + 1}") for i, d in enumerate(self._dists(ctx)))

    def params_for(self, value: Any, ctx: Context) -> dict[str, Any]:
        dists = self._dists(ctx)
        if not isinstance(value, (list, tuple)) or len(value) != len(dists):
            raise NotInSpace(f"must list the layers of all {len(dists)} blocks, got {show(value)}")
        params: dict[str, Any] = {}
        for i, (dist, n) in enumerate(zip(dists, value, strict=True)):
            params |= _params(dist, f"layers_block{i + 1}", n)
        return params

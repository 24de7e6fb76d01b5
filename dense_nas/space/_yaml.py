"""A search space declared as data: :class:`YamlSearchSpace`.

The file format is documented in ``search_spaces/README.md``. Loading a space checks all
of it up front, so that a study never starts on a broken space: every field's type and
range, the ``when`` conditions (known fields, values that can occur, no cycles), that
every block type reachable has a legal depth, that the smallest candidates of each branch
build (e.g. a compression that leaves no feature maps), that the constraints can be met
by something, and that each seed lies in the space.

Example:
    >>> space = YamlSearchSpace({
    ...     "name": "mine",
    ...     "architecture": {"growth_rate": {"choices": [12, 24]}, "depth": 40,
    ...                      "bottleneck": False, "compression": 1.0},
    ...     "training": {"lr": {"low": 0.01, "high": 0.2, "log": True}},
    ...     "seeds": [{"growth_rate": 12, "lr": 0.1}],
    ... }, source="mine.yaml")
    >>> space.seeds
    [{'growth_rate': 12, 'lr': 0.1}]
    >>> import optuna
    >>> trial = optuna.trial.FixedTrial({"growth_rate": 24, "lr": 0.05})
    >>> candidate = space.suggest(trial, Task(10, 3, (32, 32)))
    >>> candidate.arch.block_layers, candidate.training.lr
    ((12, 12, 12), 0.05)
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import optuna

from dense_nas.errors import UserInputError
from dense_nas.model import cost
from dense_nas.model.arch import DenseNetConfig, layers_per_block
from dense_nas.model.recipe import OPTIMIZER_FIELDS, TrainingConfig
from dense_nas.space._base import Candidate, Constraints, SearchSpace, Task
from dense_nas.space._file import read_yaml_file
from dense_nas.space._nodes import (
    BlockLayersNode,
    Context,
    DepthNode,
    Node,
    NotInSpace,
    ValueNode,
)
from dense_nas.space._probe import Probe, walk
from dense_nas.space._values import (
    FIELDS,
    REQUIRED,
    STRUCTURE,
    Choices,
    Fixed,
    FloatRange,
    IntRange,
    Suggester,
    Where,
    coerce,
    parse_dist,
    refused,
    same,
    show,
)

TOP_KEYS = ("name", "description", "architecture", "training", "constraints", "seeds")
SECTIONS = ("architecture", "training")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FROM_ELSEWHERE = {
    "num_classes": "comes from the data; remove it",
    "in_channels": "comes from the data; remove it",
    "block_layers": "unknown key; use layers_per_block (a number, a distribution or a list)",
}
_SMALLEST_TASK = Task(num_classes=2, in_channels=1, image_size=(224, 224))
"""The task with the fewest parameters: judges max_params before the data is known."""
_UNKNOWN: Any = object()


class YamlSearchSpace(SearchSpace):
    """A space read from plain data (a YAML file's contents), checked on construction.

    Args:
        document: the parsed file: a mapping with ``name``, ``architecture`` and
            optionally ``description``, ``training``, ``constraints`` and ``seeds``.
        source: what to call the document in error messages (its file path).

    Raises:
        UserInputError: one line naming the source, the field and the fix.

    Example:
        >>> space = YamlSearchSpace({"name": "basic-40", "architecture": {
        ...     "growth_rate": {"choices": [12, 24]}, "bottleneck": False, "depth": 40}})
        >>> space.suggest(optuna.trial.FixedTrial({"growth_rate": 24}), Task(10, 3, (32, 32))).arch.depth
        40
        >>> YamlSearchSpace({"name": "bad", "architecture": {"growth_rate": 12, "depth": 41}},
        ...                 source="bad.yaml")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: bad.yaml: architecture.depth: no legal depth ...
    """

    def __init__(self, document: Any, source: str = "<space>") -> None:
        where = Where(source)
        doc = _mapping(document, where, "a space must be a mapping with name and architecture")
        _check_keys(doc, TOP_KEYS, where)
        self.source = source
        self.name = _parse_name(doc.get("name"), where.at("name"))
        self.description = _parse_description(doc.get("description"), where.at("description"))
        parser = _Parser(doc, where)
        self._nodes = parser.nodes()
        parser.check_recipe(self._nodes)
        self.max_epochs = max(parser.values("epochs"))
        self._defaults: Context = {name: spec.default for name, spec in FIELDS.items()}
        self._branch = _branch_values(self._nodes)
        self.constraints = parse_constraints(doc.get("constraints"), where.at("constraints"))
        self._check_smallest(where)
        self.seeds = [
            self._seed_params(seed, where.at("seeds").at(i))
            for i, seed in enumerate(_list(doc.get("seeds", []), where.at("seeds")))
        ]

    @classmethod
    def from_file(cls, path: str | Path) -> YamlSearchSpace:
        """Read and check a space file.

        Example:
            >>> from dense_nas.space._registry import builtin_path
            >>> YamlSearchSpace.from_file(builtin_path("digits-tiny")).name
            'digits-tiny'
        """
        return cls(read_yaml_file(Path(path)), source=str(path))

    def __repr__(self) -> str:
        return f"YamlSearchSpace({self.name!r}, source={self.source!r})"

    def suggest(self, trial: optuna.Trial, task: Task) -> Candidate:
        """Draw each field in dependency order; inactive fields keep their defaults."""
        try:
            return self._draw(trial, task)
        except UserInputError:
            raise
        except ValueError as err:  # checked at load time; only a bug in a check lands here
            raise _explain(err, Where(self.source)) from None

    def check(self, task: Task) -> None:
        """Raise if every candidate breaks a constraint (or cannot take the task's input).

        Example:
            >>> from dense_nas.space import load_space
            >>> load_space("densenet-imagenet").check(Task(1000, 3, (224, 224)))
            >>> load_space("densenet-imagenet").check(Task(10, 3, (8, 8)))
            ... # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            dense_nas.errors.UserInputError: ...: nothing in the space fits 8x8 images ...
        """
        corners, complete = self._corners(task)
        smallest = min(corners, key=lambda c: cost.params(c.arch))
        reasons = [self.constraints.violation(c, task) for c in corners]
        if complete and all(reasons):
            reason = self.constraints.violation(smallest, task) or ""
            section = "architecture" if reason.startswith("input") else "constraints"
            size = "x".join(str(s) for s in task.image_size)
            raise Where(self.source, section).error(
                f"nothing in the space fits {size} images with {task.num_classes} classes: "
                f"even its smallest candidates break a limit ({reason}); "
                "relax the limit or lower the space's minimums"
            )

    # ------------------------------------------------------------------ drawing
    def _draw(self, trial: Suggester, task: Task) -> Candidate:
        ctx = dict(self._defaults)
        for node in self._nodes:
            if node.active(ctx):
                try:
                    ctx[node.field] = node.draw(trial, ctx)
                except NotInSpace as err:
                    raise ValueError(f"{node.field}: {err}") from None
        return _candidate(ctx, task)

    def _corners(self, task: Task) -> tuple[list[Candidate], bool]:
        """The smallest candidate of every branch (see :mod:`dense_nas.space._probe`)."""
        try:
            return walk(lambda probe: self._draw(probe, task), self._branch)
        except UserInputError:
            raise
        except ValueError as err:
            raise _explain(err, Where(self.source)) from None

    def _check_smallest(self, where: Where) -> None:
        corners, complete = self._corners(_SMALLEST_TASK)
        limit = self.constraints.max_params
        smallest = min(cost.params(c.arch) for c in corners)
        if limit is not None and complete and smallest > limit:
            raise where.at("constraints.max_params").error(
                f"{limit:,} is below the smallest architecture in the space "
                f"({smallest:,} params even with 2 classes and 1 input channel); "
                f"raise max_params to at least {smallest} or lower the space's minimums"
            )

    # ------------------------------------------------------------------ seeds
    def _seed_params(self, seed: Any, where: Where) -> dict[str, Any]:
        seed = _mapping(seed, where, "a seed must map fields to values, e.g. {growth_rate: 12}")
        values = {
            key: self._seed_value(key, value, where.at(str(key))) for key, value in seed.items()
        }
        ctx = dict(self._defaults)
        params: dict[str, Any] = {}
        for node in self._nodes:
            params |= self._seed_node(node, values, ctx, where.at(node.field))
        try:
            candidate = self._draw(Probe(fixed=params), _SMALLEST_TASK)
        except ValueError as err:
            raise _explain(err, where, sectioned=False) from None
        limit = self.constraints.max_params
        if limit is not None and cost.params(candidate.arch) > limit:
            raise where.error(
                f"breaks constraints.max_params even with 2 classes "
                f"({cost.params(candidate.arch):,} > {limit:,}); remove the seed or raise the limit"
            )
        return params

    def _seed_value(self, key: Any, value: Any, where: Where) -> Any:
        spec = FIELDS.get(key) if isinstance(key, str) else None
        if spec is None:
            raise where.error(
                f"unknown field{_did_you_mean(key, FIELDS)}; fields: {', '.join(FIELDS)}"
            )
        if key == "layers_per_block" and isinstance(value, list):
            value = tuple(coerce(spec, n, where.at(i)) for i, n in enumerate(value))
        else:
            value = coerce(spec, value, where)
        if key not in {node.field for node in self._nodes} and not same(value, spec.default):
            raise where.error("not searched in this space; remove it")
        return value

    def _seed_node(
        self, node: Node, values: Mapping[str, Any], ctx: Context, where: Where
    ) -> dict[str, Any]:
        """The params for one node of a seed; records the node's value in ``ctx``."""
        given = node.field in values
        missing = sorted(name for name in node.needs() if ctx[name] is _UNKNOWN)
        if missing:
            if given:
                raise where.error(f"depends on {', '.join(missing)}; give that in the seed too")
            ctx[node.field] = _UNKNOWN
            return {}
        if not node.active(ctx):
            if given:
                raise where.error(
                    f"unused in this seed (drawn only when {_conditions(node)}); remove it"
                )
            return {}
        if not given:
            fixed = isinstance(node, ValueNode) and isinstance(node.dist, Fixed)
            ctx[node.field] = node.draw(Probe(), ctx) if fixed else _UNKNOWN
            return {}
        try:
            params = node.params_for(values[node.field], ctx)
        except NotInSpace as err:
            raise where.error(f"{err}; pick a value inside it") from None
        ctx[node.field] = values[node.field]
        return params


# ---------------------------------------------------------------------- parsing
class _Parser:
    """Turns the ``architecture`` and ``training`` sections into ordered nodes."""

    def __init__(self, doc: Mapping[str, Any], where: Where) -> None:
        self.raw: dict[str, Any] = {}
        self.places: dict[str, Where] = {}
        for section in SECTIONS:
            self._read_section(doc, section, where.at(section))
        self.dists = {
            name: parse_dist(FIELDS[name], raw, self.places[name])
            for name, raw in self.raw.items()
            if name not in STRUCTURE
        }
        self.where = where

    def _read_section(self, doc: Mapping[str, Any], section: str, where: Where) -> None:
        if section not in doc and section == "architecture":
            raise where.error(
                "missing; add an architecture mapping (at least growth_rate and depth)"
            )
        body = _mapping(doc.get(section, {}), where, f"{section} must be a mapping of fields")
        for key, raw in body.items():
            spec = FIELDS.get(key) if isinstance(key, str) else None
            if spec is None or spec.section != section:
                raise where.at(str(key)).error(_unknown_field(key, section))
            self.raw[key] = raw
            self.places[key] = where.at(key)

    def nodes(self) -> list[Node]:
        """Every node, in an order where each comes after the fields it depends on."""
        if "growth_rate" not in self.raw:
            raise self.where.at("architecture.growth_rate").error(
                "missing; add e.g. growth_rate: 12 or growth_rate: {choices: [12, 24]}"
            )
        structure = self._structure_node()  # first: a list of blocks fixes num_blocks
        nodes: dict[str, Node] = {name: self._value_node(name) for name in self.dists}
        nodes[structure.field] = structure
        return _order(nodes, self.places)

    def _value_node(self, name: str) -> ValueNode:
        raw = self.raw.get(name)  # None for num_blocks set by a list of blocks
        when = raw.get("when") if isinstance(raw, Mapping) else None
        return ValueNode(field=name, dist=self.dists[name], when=self._when(name, when))

    def _when(self, name: str, raw: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        if raw is None:
            return ()
        where = self.places[name].at("when")
        body = _mapping(raw, where, "when must map fields to values, e.g. when: {bottleneck: true}")
        if not body:
            raise where.error("is empty; name a field and its value, e.g. {bottleneck: true}")
        conditions = []
        for field, wanted in body.items():
            here = where.at(str(field))
            if field not in FIELDS:
                raise here.error(
                    f"unknown field{_did_you_mean(field, FIELDS)}; fields: {', '.join(FIELDS)}"
                )
            if field in STRUCTURE:
                raise here.error(
                    "cannot be a condition; condition on bottleneck or num_blocks instead"
                )
            options = tuple(wanted) if isinstance(wanted, list) else (wanted,)
            for value in options:
                if not self._can_take(field, value):
                    raise here.error(
                        f"{show(value)} never occurs ({field} is {self._describe(field)}); "
                        "use one of its values"
                    )
            conditions.append((field, options))
        return tuple(conditions)

    def _conditional(self, name: str) -> bool:
        raw = self.raw.get(name)
        return isinstance(raw, Mapping) and "when" in raw

    def _can_take(self, field: str, value: Any) -> bool:
        default = FIELDS[field].default
        if field not in self.dists:
            return same(default, value)
        return self.dists[field].contains(value) or (
            self._conditional(field) and same(default, value)
        )

    def _describe(self, field: str) -> str:
        if field not in self.dists:
            return f"always {show(FIELDS[field].default)}"
        return self.dists[field].describe()

    def values(self, field: str) -> list[Any]:
        """Every value a bool or int field may hold (its default too, if conditional)."""
        if field not in self.dists:
            return [FIELDS[field].default]
        values = self.dists[field].values() or []
        default = FIELDS[field].default
        if self._conditional(field) and not any(same(default, v) for v in values):
            values.append(default)
        return values

    # ------------------------------------------------------------------ recipe
    def check_recipe(self, nodes: Sequence[Node]) -> None:
        """Refuse what the walk over the smallest candidates cannot see.

        A warm-up drawn long for a schedule drawn short; a field of one optimizer set
        where only the other is drawn, or searched where the other may be drawn (Optuna
        would tune a value nothing reads: ``when: {optimizer: ...}`` keeps it apart).
        """
        warmup, shortest = max(self.values("warmup_epochs")), min(self.values("epochs"))
        if warmup >= shortest:
            raise self.places["warmup_epochs"].error(
                f"can be {warmup} epochs but the shortest schedule has {shortest}; "
                "keep warmup_epochs below epochs"
            )
        optimizers = self.values("optimizer")
        for node in nodes:
            owner = next((o for o, names in OPTIMIZER_FIELDS.items() if node.field in names), None)
            if owner is None or not isinstance(node, ValueNode):
                continue
            wanted = dict(node.when).get("optimizer", optimizers)
            under = [o for o in optimizers if o in wanted]
            where = self.places[node.field]
            if owner not in under:
                raise where.error(
                    f"only the {owner} optimizer reads it, and optimizer is "
                    f"{self._describe('optimizer')} here; remove it or draw optimizer {owner}"
                )
            others = [o for o in under if o != owner]
            if others and not isinstance(node.dist, Fixed):
                raise where.error(
                    f"is searched, but only {owner} reads it and optimizer can be "
                    f"{' or '.join(others)}; add when: {{optimizer: {owner}}}"
                )

    # ------------------------------------------------------------------ structure
    def _structure_node(self) -> Node:
        given = [name for name in STRUCTURE if name in self.raw]
        where = self.where.at("architecture")
        if len(given) != 1:
            problem = "both depth and layers_per_block" if given else "no depth or layers_per_block"
            raise where.error(f"{problem}; give exactly one, e.g. depth: 40 or layers_per_block: 4")
        raw = self.raw[given[0]]
        if isinstance(raw, Mapping) and "when" in raw:
            where = self.places[given[0]].at("when")
            raise where.error("the layers cannot be conditional; remove when")
        if given[0] == "depth":
            return self._depth_node(raw, self.places["depth"])
        return self._layers_node(raw, self.places["layers_per_block"])

    def _depth_node(self, raw: Any, where: Where) -> DepthNode:
        if isinstance(raw, Mapping) and raw.get("log"):
            raise where.at("log").error(
                "legal depths are evenly spaced, so log does not apply; drop it"
            )
        dist = parse_dist(FIELDS["depth"], raw, where)
        node = DepthNode(
            dist=dist,
            bottlenecks=tuple(self.values("bottleneck")),
            blocks=tuple(self.values("num_blocks")),
        )
        if isinstance(dist, Choices):
            for choice in dist.choices:
                if not node.legal_anywhere(choice):
                    raise where.at("choices").error(
                        f"{choice} is not a legal depth for any block type in the space; "
                        f"{node.rule()}"
                    )
        return node

    def _layers_node(self, raw: Any, where: Where) -> Node:
        spec = FIELDS["layers_per_block"]
        if isinstance(raw, list):
            return self._block_list(raw, where)
        if isinstance(raw, Mapping) and "per_block" in raw:
            per_block = raw["per_block"]
            if not isinstance(per_block, bool):
                raise where.at("per_block").error(
                    refused(per_block, "per_block must be true or false")
                )
            rest = {k: v for k, v in raw.items() if k != "per_block"}
            dist = parse_dist(spec, rest, where)
            if per_block:
                return BlockLayersNode(shared=dist)
            return ValueNode(field="layers_per_block", dist=dist)
        return ValueNode(field="layers_per_block", dist=parse_dist(spec, raw, where))

    def _block_list(self, raw: list[Any], where: Where) -> Node:
        if not raw:
            raise where.error("lists no blocks; give one entry per block, e.g. [6, 12, 24, 16]")
        dists = []
        for i, item in enumerate(raw):
            if isinstance(item, Mapping) and "when" in item:
                here = where.at(i).at("when")
                raise here.error("a block's layers cannot be conditional; remove it")
            dists.append(parse_dist(FIELDS["layers_per_block"], item, where.at(i)))
        blocks = self.dists.get("num_blocks")
        if blocks is not None and not (isinstance(blocks, Fixed) and blocks.value == len(raw)):
            raise self.places["num_blocks"].error(
                f"is {blocks.describe()} but layers_per_block lists {len(raw)} blocks; "
                "drop num_blocks or make them agree"
            )
        self.dists["num_blocks"] = Fixed(len(raw))
        return BlockLayersNode(per_block=tuple(dists))


def _order(nodes: Mapping[str, Node], places: Mapping[str, Where]) -> list[Node]:
    """Nodes in FIELDS order, each moved after the fields it depends on."""
    pending = [nodes[name] for name in FIELDS if name in nodes]
    done: set[str] = set()
    ordered: list[Node] = []
    while pending:
        ready = next((n for n in pending if n.needs() & nodes.keys() <= done), None)
        if ready is None:
            names = ", ".join(n.field for n in pending if n.when)
            first = next(n for n in pending if n.when)
            where = places[first.field].at("when")
            raise where.error(f"conditions form a cycle among {names}; remove one of those entries")
        ordered.append(ready)
        done.add(ready.field)
        pending.remove(ready)
    return ordered


def _branch_values(nodes: Sequence[Node]) -> dict[str, list[Any]]:
    """Values the corner walk tries per numeric param (see :mod:`dense_nas.space._probe`).

    All block counts (costs need not grow with them when depth is fixed), and for a field
    that a condition tests, its low end plus every value tested.
    """
    tested: dict[str, list[Any]] = {}
    for node in nodes:
        for name, values in node.when:
            tested.setdefault(name, []).extend(values)
    branch: dict[str, list[Any]] = {}
    for node in nodes:
        if not isinstance(node, ValueNode) or isinstance(node.dist, Fixed):
            continue
        dist = node.dist
        numeric = isinstance(dist, (IntRange, FloatRange)) or (
            isinstance(dist, Choices) and not isinstance(dist.choices[0], (bool, str))
        )
        if node.field == "num_blocks":
            branch[node.field] = dist.values() or []
        elif node.field in tested and numeric:
            low = dist.low if isinstance(dist, (IntRange, FloatRange)) else min(dist.values() or [])
            extra = [v for v in tested[node.field] if dist.contains(v) and not same(v, low)]
            branch[node.field] = [low, *dict.fromkeys(extra)]
    return branch


# ---------------------------------------------------------------------- candidates
def _candidate(ctx: Context, task: Task) -> Candidate:
    arch_fields = [f.name for f in dataclass_fields(DenseNetConfig)]
    arch = {name: ctx[name] for name in arch_fields if name in FIELDS}
    training = {f.name: ctx[f.name] for f in dataclass_fields(TrainingConfig)}
    config = DenseNetConfig(
        **arch,
        block_layers=_block_layers(ctx),
        num_classes=task.num_classes,
        in_channels=task.in_channels,
    )
    return Candidate(config, TrainingConfig(**training))


def _block_layers(ctx: Context) -> tuple[int, ...]:
    blocks: int = ctx["num_blocks"]
    if ctx["depth"] is not REQUIRED:
        n = layers_per_block(ctx["depth"], bottleneck=ctx["bottleneck"], num_blocks=blocks)
        return (n,) * blocks
    layers = ctx["layers_per_block"]
    return tuple(layers) if isinstance(layers, tuple) else (layers,) * blocks


def _explain(err: ValueError, where: Where, sectioned: bool = True) -> UserInputError:
    """A config's ``"field: problem"`` error, placed at the field in the space."""
    field, _, problem = str(err).partition(": ")
    if field not in FIELDS:
        return where.error(str(err))
    here = where.at(FIELDS[field].section) if sectioned else where
    return here.at(field).error(problem)


def _conditions(node: Node) -> str:
    return " and ".join(
        f"{name} is {' or '.join(show(v) for v in values)}" for name, values in node.when
    )


# ---------------------------------------------------------------------- small parts
def parse_constraints(raw: Any, where: Where) -> Constraints:
    """The ``constraints`` section: limits as integers or with a unit (``2M``, ``4GiB``);
    ``max_latency_ms`` is a positive number of milliseconds (``2.5``).

    Example:
        >>> parse_constraints({"max_params": "1.5M", "max_activation_memory": "2GiB"},
        ...                   Where("s.yaml", "constraints"))
        Constraints(max_params=1500000, max_macs=None, max_activation_memory=2147483648, max_latency_ms=None)
        >>> parse_constraints({"max_latency_ms": 2.5}, Where("s.yaml", "constraints")).max_latency_ms
        2.5
    """
    if raw is None:
        return Constraints()
    body = _mapping(raw, where, "constraints must map limits to numbers, e.g. {max_params: 1M}")
    known = [f.name for f in dataclass_fields(Constraints)]
    _check_keys(body, known, where)
    limits: dict[str, Any] = {
        key: parse_amount(value, where.at(key))
        for key, value in body.items()
        if key != "max_latency_ms"
    }
    if "max_latency_ms" in body:  # milliseconds, not a count: 2.5 is a fine limit
        limits["max_latency_ms"] = _milliseconds(body["max_latency_ms"], where.at("max_latency_ms"))
    return Constraints(**limits)


def _milliseconds(value: Any, where: Where) -> float:
    """A positive, finite number of milliseconds."""
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value > 0
        and math.isfinite(value)
    ):
        return float(value)
    raise where.error(refused(value, "write a positive number of milliseconds like 2.5"))


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_AMOUNT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(?:([kKMGT])(i?)B?)?$")


def parse_amount(value: Any, where: Where) -> int:
    """A positive count: ``2000000``, ``2_000_000``, ``2M``, ``0.5G``, ``4GiB`` (binary).

    Example:
        >>> parse_amount("4GiB", Where("s.yaml")), parse_amount("2M", Where("s.yaml"))
        (4294967296, 2000000)
    """
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and (match := _AMOUNT.match(value.strip())):
        digits, unit, binary = match.groups()
        unit = (unit or "").upper()
        scale = 1024 ** "KMGT".index(unit) * 1024 if binary else _UNITS[unit]
        number = float(digits) * scale
    if number is None or number < 1 or not float(number).is_integer():
        raise where.error(refused(value, "write a positive whole number like 2000000, 2M or 4GiB"))
    return int(number)


def _mapping(value: Any, where: Where, hint: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise where.error(f"expected a mapping, got {_kind(value)}; {hint}")
    return value


def _list(value: Any, where: Where) -> list[Any]:
    if not isinstance(value, list):
        raise where.error(
            f"expected a list, got {_kind(value)}; write one entry per line with '- '"
        )
    return value


def _kind(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "true/false", type(None): "nothing"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else "a value")


def _check_keys(body: Mapping[str, Any], allowed: Sequence[str], where: Where) -> None:
    for key in body:
        if key not in allowed:
            raise where.at(str(key)).error(
                f"unknown key{_did_you_mean(key, allowed)}; allowed keys: {', '.join(allowed)}"
            )


def _did_you_mean(key: Any, known: Sequence[str] | Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _unknown_field(key: Any, section: str) -> str:
    if key in _FROM_ELSEWHERE:
        return _FROM_ELSEWHERE[key]
    spec = FIELDS.get(key) if isinstance(key, str) else None
    if spec is not None:
        return f"is a {spec.section} field; move it under {spec.section}"
    names = [name for name, s in FIELDS.items() if s.section == section]
    return f"unknown field{_did_you_mean(key, names)}; {section} fields: {', '.join(names)}"


def _parse_name(value: Any, where: Where) -> str:
    if value is None:
        raise where.error("missing; add a name such as name: my-space")
    if not isinstance(value, str) or not _NAME.match(value) or value.endswith((".yaml", ".yml")):
        raise where.error(
            f"{show(value)!r} is not a usable name; use letters, digits, '-', '_' or '.', "
            "not ending in .yaml"
        )
    return value


def _parse_description(value: Any, where: Where) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise where.error(f"must be text, got {_kind(value)}; quote it")
    return " ".join(value.split())

"""The architecture genome: :class:`DenseNetConfig` and its named presets.

A config is a frozen, validated description of one DenseNet (Huang et al., CVPR 2017).
Everything downstream (the cost model, the nn.Module, the search space, the study's
duplicate detection) reads it and nothing else.

Example:
    >>> from dense_nas.model.arch import DenseNetConfig, preset
    >>> cfg = DenseNetConfig.from_depth(100, growth_rate=12, bottleneck=True, compression=0.5)
    >>> cfg.block_layers
    (16, 16, 16)
    >>> cfg.init_channels
    24
    >>> preset("densenet-bc-100-12").key == cfg.key
    True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Stem = Literal["cifar", "imagenet"]
STEMS: tuple[str, ...] = ("cifar", "imagenet")

PAPER_DROPOUT = 0.2
"""The paper's dropout rate when the data is not augmented (C10, C100, SVHN); 0 with it."""


def transition_channels(channels: int, compression: float) -> int:
    """Channels after a transition layer: ``floor(compression * channels)``.

    The tiny epsilon keeps e.g. ``0.3 * 10`` (2.9999999999999996 in floating point) at 3.

    Example:
        >>> transition_channels(216, 0.5)
        108
    """
    return math.floor(compression * channels + 1e-9)


@dataclass(frozen=True)
class DenseNetConfig:
    """One DenseNet architecture, validated on construction.

    Args:
        growth_rate: k, feature maps each dense layer adds.
        block_layers: dense layers in each block, one entry per block.
        bottleneck: use the BC layer (1x1 conv to ``bottleneck_width * k`` maps first).
        bottleneck_width: multiplier of the bottleneck 1x1 conv (the paper's 4).
        compression: theta in (0, 1]; transitions keep ``floor(theta * m)`` maps.
        init_channels: maps of the stem conv; ``None`` means 2k.
        stem: ``"cifar"`` (one 3x3 conv) or ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 pool).
        dropout: dropout rate after every conv but the stem's; ``None`` (the default)
            means the paper's rule, 0.2 without augmentation and 0 with it, which
            :meth:`resolve_dropout` applies once the data is known (a search does so for
            every trial). A network built from ``None`` has no dropout.
        num_classes: outputs of the linear head.
        in_channels: channels of the input images.
        memory_efficient: recompute concat-BN-ReLU-conv1x1 in the backward pass instead of
            storing it; training leaves the same weights and BN statistics, and the
            outputs are the same.

    Example:
        >>> DenseNetConfig(growth_rate=12, block_layers=(4, 4), num_classes=10).init_channels
        24
        >>> DenseNetConfig(growth_rate=12, block_layers=(4,), compression=0.0)
        Traceback (most recent call last):
        ...
        ValueError: compression: must be in (0, 1], got 0.0
    """

    growth_rate: int
    block_layers: tuple[int, ...]
    bottleneck: bool = True
    bottleneck_width: int = 4
    compression: float = 0.5
    init_channels: int = field(default=None)  # type: ignore[assignment]  # resolved to 2k
    stem: Stem = "cifar"
    dropout: float | None = None
    num_classes: int = 10
    in_channels: int = 3
    memory_efficient: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.block_layers, list):
            object.__setattr__(self, "block_layers", tuple(self.block_layers))
        if self.init_channels is None:
            object.__setattr__(self, "init_channels", 2 * _as_int("growth_rate", self.growth_rate))
        _validate(self)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_depth(
        cls,
        depth: int,
        growth_rate: int,
        bottleneck: bool = True,
        num_blocks: int = 3,
        **kwargs: Any,
    ) -> DenseNetConfig:
        """Build a CIFAR-style config from the paper's total depth L.

        With bottleneck layers each block holds ``(L - 4) / 6`` layers (two convs per
        layer), without them ``(L - 4) / 3``; for ``num_blocks`` blocks the divisor scales
        accordingly. An L that does not divide is an error, never silently floored.

        Example:
            >>> DenseNetConfig.from_depth(40, growth_rate=12, bottleneck=False,
            ...                           compression=1.0, init_channels=16).block_layers
            (12, 12, 12)
        """
        layers = layers_per_block(depth, bottleneck=bottleneck, num_blocks=num_blocks)
        return cls(
            growth_rate=growth_rate,
            block_layers=(layers,) * num_blocks,
            bottleneck=bottleneck,
            **kwargs,
        )

    def resolve_dropout(self, augmented: bool) -> DenseNetConfig:
        """The config with the paper's dropout where it was left unset (``None``).

        0.2 (:data:`PAPER_DROPOUT`) when the training data is not augmented, 0 when it is;
        a dropout set explicitly is kept.

        Example:
            >>> cfg = preset("densenet-bc-100-12")
            >>> cfg.resolve_dropout(augmented=False).dropout, cfg.resolve_dropout(True).dropout
            (0.2, 0.0)
            >>> cfg.replace(dropout=0.1).resolve_dropout(augmented=False).dropout
            0.1
        """
        if self.dropout is not None:
            return self
        return self.replace(dropout=0.0 if augmented else PAPER_DROPOUT)

    def replace(self, **changes: Any) -> DenseNetConfig:
        """A copy with some fields changed (validated again).

        Example:
            >>> preset("densenet-bc-100-12").replace(num_classes=100).num_classes
            100
        """
        # A default stem width (2k) follows a new k; an explicit one (e.g. 16) stays.
        follows_k = self.init_channels == 2 * self.growth_rate
        if "growth_rate" in changes and "init_channels" not in changes and follows_k:
            changes["init_channels"] = None
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- derived values
    @property
    def depth(self) -> int:
        """The paper's L: convs in dense layers and transitions, plus stem and head.

        Example:
            >>> preset("densenet-bc-100-12").depth
            100
        """
        convs_per_layer = 2 if self.bottleneck else 1
        return convs_per_layer * sum(self.block_layers) + len(self.block_layers) + 1

    @property
    def key(self) -> str:
        """Canonical key: equal for any two configs that build the same network.

        ``memory_efficient`` only changes how gradients are computed, and the bottleneck
        width does not exist without a bottleneck, so neither enters the key; an unset
        dropout builds no dropout layers, so it keys as 0.

        Example:
            >>> a = DenseNetConfig(12, (4, 4), bottleneck=False, bottleneck_width=2)
            >>> b = DenseNetConfig(12, (4, 4), bottleneck=False, memory_efficient=True)
            >>> a.key == b.key
            True
        """
        parts = [
            f"stem={self.stem}",
            f"in={self.in_channels}",
            f"init={self.init_channels}",
            f"k={self.growth_rate}",
            "blocks=" + "-".join(str(n) for n in self.block_layers),
            f"bn={self.bottleneck_width}" if self.bottleneck else "bn=none",
            f"theta={self.compression:.6g}",
            f"drop={self.dropout or 0.0:.6g}",
            f"classes={self.num_classes}",
        ]
        return ";".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe values (lists, not tuples) that :meth:`from_dict` reads back.

        Example:
            >>> cfg = preset("densenet-bc-100-12")
            >>> DenseNetConfig.from_dict(cfg.to_dict()) == cfg
            True
        """
        data = dataclasses.asdict(self)
        data["block_layers"] = list(self.block_layers)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DenseNetConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error.

        Example:
            >>> DenseNetConfig.from_dict({"growth_rate": 12, "block_layers": [2]}).depth
            6
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{unknown[0]}: unknown architecture field; known fields: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if "block_layers" in values:
            values["block_layers"] = tuple(values["block_layers"])
        return cls(**values)


def layers_per_block(depth: int, *, bottleneck: bool, num_blocks: int = 3) -> int:
    """Dense layers per block for a total depth L, or ValueError if L does not divide.

    Example:
        >>> layers_per_block(100, bottleneck=True)
        16
        >>> layers_per_block(43, bottleneck=True)
        Traceback (most recent call last):
        ...
        ValueError: depth: (L - 4) must be a positive multiple of 6 with bottleneck layers (3 blocks), got L=43; nearest valid: 40 or 46
    """
    depth = _as_int("depth", depth)
    num_blocks = _as_int("num_blocks", num_blocks)
    if num_blocks < 1:
        raise ValueError(f"num_blocks: must be at least 1, got {num_blocks}")
    convs = 2 if bottleneck else 1
    step = convs * num_blocks
    overhead = num_blocks + 1  # transitions + stem conv + linear head
    body = depth - overhead
    if body <= 0 or body % step:
        below = overhead + max(1, body // step) * step
        above = overhead + (max(0, body // step) + 1) * step
        nearest = f"{below} or {above}" if below < depth else f"{above}"
        kind = "with" if bottleneck else "without"
        raise ValueError(
            f"depth: (L - {overhead}) must be a positive multiple of {step} {kind} bottleneck "
            f"layers ({num_blocks} blocks), got L={depth}; nearest valid: {nearest}"
        )
    return body // step


def valid_depths(low: int, high: int, *, bottleneck: bool, num_blocks: int = 3) -> list[int]:
    """Every legal L in ``[low, high]`` for the block type.

    Example:
        >>> valid_depths(40, 60, bottleneck=True)
        [40, 46, 52, 58]
    """
    step = (2 if bottleneck else 1) * num_blocks
    overhead = num_blocks + 1
    first = overhead + step
    return [d for d in range(max(low, first), high + 1) if (d - overhead) % step == 0]


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    return value


def _validate(cfg: DenseNetConfig) -> None:
    """Raise ValueError naming the field and the rule it breaks."""
    if _as_int("growth_rate", cfg.growth_rate) < 1:
        raise ValueError(f"growth_rate: must be at least 1, got {cfg.growth_rate}")
    if not cfg.block_layers:
        raise ValueError("block_layers: needs at least one block, got none")
    for n in cfg.block_layers:
        if _as_int("block_layers", n) < 1:
            raise ValueError(f"block_layers: every block needs at least 1 layer, got {n}")
    if not isinstance(cfg.bottleneck, bool):
        raise ValueError(f"bottleneck: must be true or false, got {cfg.bottleneck!r}")
    if _as_int("bottleneck_width", cfg.bottleneck_width) < 1:
        raise ValueError(f"bottleneck_width: must be at least 1, got {cfg.bottleneck_width}")
    theta = cfg.compression
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not 0 < theta <= 1:
        raise ValueError(f"compression: must be in (0, 1], got {theta!r}")
    if _as_int("init_channels", cfg.init_channels) < 1:
        raise ValueError(f"init_channels: must be at least 1, got {cfg.init_channels}")
    if cfg.stem not in STEMS:
        raise ValueError(f"stem: must be one of {', '.join(STEMS)}, got {cfg.stem!r}")
    drop = cfg.dropout
    number = isinstance(drop, (int, float)) and not isinstance(drop, bool)
    if drop is not None and not (number and 0 <= drop < 1):
        raise ValueError(f"dropout: must be in [0, 1) or unset for the paper's rule, got {drop!r}")
    if _as_int("num_classes", cfg.num_classes) < 2:
        raise ValueError(f"num_classes: must be at least 2, got {cfg.num_classes}")
    if _as_int("in_channels", cfg.in_channels) < 1:
        raise ValueError(f"in_channels: must be at least 1, got {cfg.in_channels}")
    if not isinstance(cfg.memory_efficient, bool):
        raise ValueError(f"memory_efficient: must be true or false, got {cfg.memory_efficient!r}")
    for index, block in enumerate(channel_plan(cfg)):
        if block.transition_out == 0:
            raise ValueError(
                f"compression: theta={theta} leaves no feature maps after block {index + 1}; "
                "raise compression or growth_rate"
            )


@dataclass(frozen=True)
class BlockPlan:
    """Channel layout of one dense block and the transition after it.

    Attributes:
        layer_inputs: input channels of each dense layer (the growing concatenation).
        out_channels: channels leaving the block (before any transition).
        transition_out: channels after the transition, or ``None`` for the last block.
    """

    layer_inputs: tuple[int, ...]
    out_channels: int
    transition_out: int | None


def channel_plan(cfg: DenseNetConfig) -> list[BlockPlan]:
    """The channel layout every consumer (model builder, cost model) walks.

    Example:
        >>> [b.transition_out for b in channel_plan(preset("densenet-bc-100-12"))]
        [108, 150, None]
    """
    plans: list[BlockPlan] = []
    channels = cfg.init_channels
    for index, n in enumerate(cfg.block_layers):
        inputs = tuple(channels + i * cfg.growth_rate for i in range(n))
        channels += n * cfg.growth_rate
        last = index == len(cfg.block_layers) - 1
        out = None if last else transition_channels(channels, cfg.compression)
        plans.append(BlockPlan(inputs, channels, out))
        if out is not None:
            channels = out
    return plans


def _imagenet(k: int, init: int, blocks: tuple[int, ...]) -> DenseNetConfig:
    return DenseNetConfig(
        growth_rate=k, block_layers=blocks, init_channels=init, stem="imagenet", num_classes=1000
    )


PRESETS: dict[str, DenseNetConfig] = {
    "densenet121": _imagenet(32, 64, (6, 12, 24, 16)),
    "densenet161": _imagenet(48, 96, (6, 12, 36, 24)),
    "densenet169": _imagenet(32, 64, (6, 12, 32, 32)),
    "densenet201": _imagenet(32, 64, (6, 12, 48, 32)),
    "densenet-bc-100-12": DenseNetConfig.from_depth(100, 12),
    "densenet-bc-100-12-c100": DenseNetConfig.from_depth(100, 12, num_classes=100),
    "densenet-bc-250-24": DenseNetConfig.from_depth(250, 24),
    "densenet-bc-190-40": DenseNetConfig.from_depth(190, 40),
    "densenet-40-12": DenseNetConfig.from_depth(
        40, 12, bottleneck=False, compression=1.0, init_channels=16
    ),
    "densenet-100-12": DenseNetConfig.from_depth(
        100, 12, bottleneck=False, compression=1.0, init_channels=16
    ),
    "densenet-100-24": DenseNetConfig.from_depth(
        100, 24, bottleneck=False, compression=1.0, init_channels=16
    ),
}
"""The paper's CIFAR rows and torchvision's ImageNet models, by name."""


def list_presets() -> list[str]:
    """Names of every preset, sorted.

    Example:
        >>> "densenet121" in list_presets()
        True
    """
    return sorted(PRESETS)


def preset(name: str, **changes: Any) -> DenseNetConfig:
    """A named preset, optionally with fields changed (e.g. ``num_classes``).

    Example:
        >>> preset("densenet121").block_layers
        (6, 12, 24, 16)
    """
    try:
        cfg = PRESETS[name]
    except KeyError:
        raise ValueError(
            f"preset: unknown name {name!r}; choose one of {', '.join(list_presets())}"
        ) from None
    return cfg.replace(**changes) if changes else cfg

"""The architecture genome: validation, depth rules, canonical keys, presets."""

from __future__ import annotations

import pytest

from dense_nas.model.arch import (
    DenseNetConfig,
    layers_per_block,
    list_presets,
    preset,
    valid_depths,
)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"compression": 0.0}, "compression"),
        ({"compression": 1.5}, "compression"),
        ({"growth_rate": 0}, "growth_rate"),
        ({"growth_rate": 2.5}, "growth_rate"),
        ({"block_layers": ()}, "block_layers"),
        ({"block_layers": (4, 0)}, "block_layers"),
        ({"stem": "resnet"}, "stem"),
        ({"dropout": 1.0}, "dropout"),
        ({"num_classes": 1}, "num_classes"),
        ({"in_channels": 0}, "in_channels"),
        ({"bottleneck_width": 0}, "bottleneck_width"),
        ({"init_channels": 0}, "init_channels"),
        ({"bottleneck": "yes"}, "bottleneck"),
        (
            {"growth_rate": 1, "init_channels": 1, "block_layers": (1, 1), "compression": 0.1},
            "compression",
        ),
    ],
)
def test_invalid_config_names_field_and_rule(changes: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"growth_rate": 12, "block_layers": (4, 4, 4)} | changes
    with pytest.raises(ValueError, match=rf"^{field}: ") as info:
        DenseNetConfig(**values)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_from_depth_follows_the_paper() -> None:
    assert DenseNetConfig.from_depth(100, 12, bottleneck=True).block_layers == (16, 16, 16)
    assert DenseNetConfig.from_depth(40, 12, bottleneck=False).block_layers == (12, 12, 12)
    assert DenseNetConfig.from_depth(190, 40).block_layers == (31, 31, 31)


def test_depth_that_does_not_divide_is_an_error_with_neighbours() -> None:
    with pytest.raises(ValueError, match=r"^depth: .*L=43; nearest valid: 40 or 46$"):
        DenseNetConfig.from_depth(43, 12, bottleneck=True)
    with pytest.raises(ValueError, match=r"^depth: "):
        layers_per_block(4, bottleneck=False)


def test_valid_depths_are_exactly_the_ones_from_depth_accepts() -> None:
    for bottleneck in (True, False):
        legal = valid_depths(1, 120, bottleneck=bottleneck)
        for depth in range(1, 121):
            if depth in legal:
                assert DenseNetConfig.from_depth(depth, 4, bottleneck=bottleneck).depth == depth
            else:
                with pytest.raises(ValueError):
                    layers_per_block(depth, bottleneck=bottleneck)


def test_key_ignores_what_does_not_change_the_network() -> None:
    plain = DenseNetConfig(12, (4, 4), bottleneck=False)
    assert plain.key == DenseNetConfig(12, (4, 4), bottleneck=False, bottleneck_width=2).key
    assert plain.key == DenseNetConfig(12, (4, 4), bottleneck=False, memory_efficient=True).key
    assert plain.key == DenseNetConfig(12, [4, 4], bottleneck=False, init_channels=24).key  # type: ignore[arg-type]
    bc = DenseNetConfig(12, (4, 4))
    assert bc.key != DenseNetConfig(12, (4, 4), bottleneck_width=2).key
    assert bc.key != plain.key
    assert bc.key != DenseNetConfig(12, (4, 4), compression=0.6).key


def test_unset_dropout_takes_the_papers_rate_only_without_augmentation() -> None:
    cfg = preset("densenet-bc-100-12")
    assert cfg.dropout is None  # the presets leave it to the data
    plain, augmented = cfg.resolve_dropout(augmented=False), cfg.resolve_dropout(augmented=True)
    assert (plain.dropout, augmented.dropout) == (0.2, 0.0)
    # An unset dropout builds no dropout layers, so it keys like the augmented case.
    assert augmented.key == cfg.key and "drop=0;" in cfg.key
    assert "drop=0.2;" in plain.key
    chosen = cfg.replace(dropout=0.1)  # set by a space or a user: kept, augmented or not
    assert chosen.resolve_dropout(augmented=False) == chosen == chosen.resolve_dropout(True)
    assert DenseNetConfig.from_dict(plain.to_dict()) == plain


def test_round_trip_through_plain_dict() -> None:
    for name in list_presets():
        cfg = preset(name)
        assert DenseNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"^colour: unknown architecture field"):
        DenseNetConfig.from_dict({"growth_rate": 4, "block_layers": [1], "colour": "red"})


def test_presets_are_listed_and_unknown_names_rejected() -> None:
    names = list_presets()
    assert {"densenet121", "densenet161", "densenet169", "densenet201"} <= set(names)
    assert {"densenet-bc-100-12", "densenet-bc-250-24", "densenet-bc-190-40"} <= set(names)
    assert preset("densenet-40-12").init_channels == 16
    assert preset("densenet-bc-100-12").depth == 100
    with pytest.raises(ValueError, match=r"^preset: unknown name 'densenet9'"):
        preset("densenet9")


def test_replace_keeps_default_init_channels_tied_to_growth_rate() -> None:
    assert preset("densenet-bc-100-12").replace(growth_rate=24).init_channels == 48
    assert preset("densenet-40-12").replace(growth_rate=24).init_channels == 16

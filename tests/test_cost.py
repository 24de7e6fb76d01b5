"""The closed-form cost model against REFERENCE.md and against the built model."""

from __future__ import annotations

import pytest
import torch

from dense_nas.model import cost
from dense_nas.model.arch import DenseNetConfig, list_presets, preset
from dense_nas.model.measure import counted_macs, saved_tensor_bytes
from dense_nas.model.network import DenseNet

# REFERENCE.md, "Parameter counts".
REFERENCE_PARAMS = {
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "densenet-bc-100-12": 769_162,
    "densenet-bc-100-12-c100": 800_032,
    "densenet-bc-250-24": 15_324_406,
    "densenet-bc-190-40": 25_624_430,
    "densenet-40-12": 1_019_722,
}


@pytest.mark.parametrize("name", list_presets())
def test_params_equal_reference_and_built_model(name: str) -> None:
    cfg = preset(name)
    built = sum(p.numel() for p in DenseNet(cfg).parameters())
    assert cost.params(cfg) == built
    if name in REFERENCE_PARAMS:
        assert built == REFERENCE_PARAMS[name]


def test_every_reference_count_names_a_preset() -> None:
    """Else a renamed preset would skip its reference check above without a word."""
    assert set(REFERENCE_PARAMS) <= set(list_presets())


def test_macs_match_reference_figures() -> None:
    assert round(cost.macs(preset("densenet-bc-100-12"), (32, 32)) / 1e9, 3) == 0.288
    assert round(cost.macs(preset("densenet-bc-250-24"), (32, 32)) / 1e9, 2) == 5.42


@pytest.mark.parametrize(
    ("cfg", "size"),
    [
        (preset("densenet-bc-100-12"), (32, 32)),
        (preset("densenet-40-12"), (32, 32)),
        (preset("densenet121"), (224, 224)),
        (DenseNetConfig(5, (2, 3, 1, 2), compression=0.3, stem="imagenet"), (45, 37)),
        (DenseNetConfig(4, (3, 2), bottleneck_width=2, in_channels=1), (8, 8)),
    ],
    ids=["bc-100-12", "40-12", "densenet121", "odd-imagenet", "digits"],
)
def test_macs_equal_flop_counter(cfg: DenseNetConfig, size: tuple[int, int]) -> None:
    x = torch.randn(1, cfg.in_channels, *size)
    assert cost.macs(cfg, size) == counted_macs(DenseNet(cfg).eval(), x)


@pytest.mark.parametrize("memory_efficient", [False, True])
@pytest.mark.parametrize("name", ["densenet-bc-100-12", "densenet-40-12"])
def test_activation_memory_estimate_is_close_to_saved_bytes(
    name: str, memory_efficient: bool
) -> None:
    cfg = preset(name, memory_efficient=memory_efficient)
    measured = saved_tensor_bytes(DenseNet(cfg).train(), torch.randn(4, 3, 32, 32))
    estimate = cost.activation_memory(cfg, (32, 32), batch_size=4)
    assert abs(estimate - measured) / measured < 0.1


def test_memory_efficient_mode_saves_most_activation_memory() -> None:
    plain = cost.activation_memory(preset("densenet-bc-100-12"), (32, 32), 64)
    lean = cost.activation_memory(preset("densenet-bc-100-12", memory_efficient=True), (32, 32), 64)
    assert lean / plain <= 0.6

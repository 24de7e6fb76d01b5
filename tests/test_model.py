"""Every preset builds, runs, trains and checkpoints the same way (timm-style contract)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dense_nas.model.arch import DenseNetConfig, list_presets, preset
from dense_nas.model.network import DenseNet


def _input(cfg: DenseNetConfig, batch: int = 2) -> torch.Tensor:
    # Small but legal spatial sizes: ImageNet stems divide by 32, CIFAR stems by 4 here.
    size = 32 if cfg.stem == "imagenet" else 16
    return torch.randn(
        batch, cfg.in_channels, size, size, generator=torch.Generator().manual_seed(0)
    )


def _forward_backward(
    model: DenseNet, x: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    out = model(x)
    (out.float() ** 2).mean().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads


@pytest.mark.parametrize("name", list_presets())
def test_preset_forward_backward_and_memory_efficient_equivalence(name: str) -> None:
    cfg = preset(name)
    torch.manual_seed(0)
    plain = DenseNet(cfg).train()
    x = _input(cfg)
    out, grads = _forward_backward(plain, x)
    assert out.shape == (2, cfg.num_classes)
    assert torch.isfinite(out).all()
    missing = [
        n for n, p in plain.named_parameters() if n not in grads or not grads[n].abs().sum() > 0
    ]
    assert not missing, f"parameters without gradient: {missing[:5]}"

    lean = DenseNet(cfg.replace(memory_efficient=True)).train()
    lean.load_state_dict(plain.state_dict())
    lean_out, lean_grads = _forward_backward(lean, x)
    torch.testing.assert_close(lean_out, out, rtol=1e-4, atol=1e-5)
    for n, g in grads.items():
        torch.testing.assert_close(lean_grads[n], g, rtol=1e-3, atol=1e-5, msg=n)


def test_memory_efficient_with_dropout_recomputes_the_same_mask() -> None:
    cfg = DenseNetConfig(6, (3, 3), dropout=0.2)
    x = torch.randn(4, 3, 16, 16)
    plain = DenseNet(cfg).train()
    lean = DenseNet(cfg.replace(memory_efficient=True)).train()
    lean.load_state_dict(plain.state_dict())
    torch.manual_seed(1)
    out, grads = _forward_backward(plain, x)
    torch.manual_seed(1)
    lean_out, lean_grads = _forward_backward(lean, x)
    torch.testing.assert_close(lean_out, out)
    for n, g in grads.items():
        torch.testing.assert_close(lean_grads[n], g, rtol=1e-4, atol=1e-6, msg=n)


def test_layer_order_follows_the_paper() -> None:
    net: Any = DenseNet(preset("densenet-bc-100-12"))  # nn.Module indexing is untyped
    layer = net.blocks[0][0]
    kinds = [type(m).__name__ for m in layer.first] + [type(m).__name__ for m in layer.second]
    assert kinds == ["BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]
    assert layer.first[2].out_channels == 48 and layer.second[2].out_channels == 12
    transition = net.blocks[1]
    assert [type(m).__name__ for m in transition] == ["BatchNorm2d", "ReLU", "Conv2d", "AvgPool2d"]
    assert transition[2].out_channels == 108  # floor(0.5 * (24 + 16 * 12))
    assert net.stem[0].kernel_size == (3, 3) and net.stem[0].out_channels == 24


def test_forward_features_and_head_compose_to_forward() -> None:
    net = DenseNet(DenseNetConfig(4, (2, 2), in_channels=1)).eval()
    x = torch.randn(3, 1, 8, 8)
    features = net.forward_features(x)
    assert features.shape == (3, net.num_features, 4, 4)
    torch.testing.assert_close(net.forward_head(features), net(x))


def test_he_normal_init() -> None:
    torch.manual_seed(0)
    blocks: Any = DenseNet(preset("densenet-bc-100-12")).blocks
    conv = blocks[0][0].second[2]
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() - (2 / fan_out) ** 0.5) < 0.01

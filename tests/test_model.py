"""Every preset builds, runs, trains and checkpoints the same way (timm-style contract)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

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


# Both stems and both layer kinds; three steps in two modes of the other presets take 10-15 s
# each on a 2-core CPU, so they run in the slow tier.
_FAST_PRESETS = ("densenet-40-12", "densenet-bc-100-12", "densenet-bc-100-12-c100", "densenet121")


def _presets_big_ones_slow() -> list[object]:
    return [
        name if name in _FAST_PRESETS else pytest.param(name, marks=pytest.mark.slow)
        for name in list_presets()
    ]


def _train(model: DenseNet, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> DenseNet:
    """The paper's SGD, one step per batch."""
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4
    )
    model.train()
    for x, y in batches:
        opt.zero_grad()
        torch.autograd.backward(nn.functional.cross_entropy(model(x), y))
        opt.step()
    return model.eval()


@pytest.mark.parametrize("name", _presets_big_ones_slow())
def test_memory_efficient_training_leaves_the_same_network(name: str) -> None:
    cfg = preset(name)
    g = torch.Generator().manual_seed(0)
    # Small inputs that leave 2x2 maps in the last block: with 1x1 maps, BN would normalise
    # two values a channel and its gradients blow up within three steps.
    size = 64 if cfg.stem == "imagenet" else 8
    batches = [
        (
            torch.randn(2, 3, size, size, generator=g),
            torch.randint(0, cfg.num_classes, (2,), generator=g),
        )
        for _ in range(3)
    ]
    torch.manual_seed(0)
    plain = DenseNet(cfg)
    lean = DenseNet(cfg.replace(memory_efficient=True))
    lean.load_state_dict(plain.state_dict())
    _train(plain, batches)
    _train(lean, batches)
    state, lean_state = plain.state_dict(), lean.state_dict()
    for key, value in state.items():  # weights, running mean/var and batch counts alike
        torch.testing.assert_close(lean_state[key], value, rtol=1e-4, atol=1e-5, msg=key)
    counts = {v.item() for key, v in lean_state.items() if key.endswith("num_batches_tracked")}
    assert counts == {len(batches)}  # one update a step, recomputation or not
    with torch.no_grad():
        torch.testing.assert_close(lean(batches[0][0]), plain(batches[0][0]), rtol=1e-4, atol=1e-4)


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


@pytest.mark.parametrize("bottleneck", [True, False])
def test_paper_dropout_follows_every_conv_but_the_stems(bottleneck: bool) -> None:
    cfg = DenseNetConfig(4, (2, 2), bottleneck=bottleneck).resolve_dropout(augmented=False)
    net: Any = DenseNet(cfg)  # nn.Module indexing is untyped
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == len(convs) - 1 and {d.p for d in drops} == {0.2}
    for unit in (net.blocks[0][0].first, net.blocks[1]):  # right after the conv
        kinds = [type(m) for m in unit]
        assert kinds[kinds.index(nn.Conv2d) + 1] is nn.Dropout
    augmented = DenseNet(cfg.replace(dropout=None).resolve_dropout(augmented=True))
    assert not any(isinstance(m, nn.Dropout) for m in augmented.modules())


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

"""Zero-cost proxies: each one computed by hand on a tiny network, then on real DenseNets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from dense_nas.data import make_datamodule
from dense_nas.errors import UserInputError
from dense_nas.model import cost
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.network import DenseNet
from dense_nas.model.proxies import (
    PROXIES,
    get_proxy,
    grad_norm,
    naswot,
    params,
    score_at_init,
    synflow,
    training_batch,
)

# Two layers, 3 inputs -> 4 hidden ReLU units -> 2 classes, with weights of both signs.
W1 = torch.tensor(
    [[1.0, -2.0, 0.5], [-1.0, 1.0, 1.0], [0.5, 0.5, -1.5], [2.0, -0.5, -0.5]],
    dtype=torch.float64,
)
B1 = torch.tensor([0.1, -0.2, 0.3, -0.4], dtype=torch.float64)
W2 = torch.tensor([[1.0, -1.0, 2.0, 0.5], [-0.5, 1.5, -1.0, 1.0]], dtype=torch.float64)
B2 = torch.tensor([0.2, -0.3], dtype=torch.float64)
IMAGES = torch.tensor(
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, -1.0], [-1.0, 0.5, 2.0]],
    dtype=torch.float64,
)
LABELS = torch.tensor([0, 1, 1, 0, 1])


def two_layer_net() -> nn.Sequential:
    first, second = nn.Linear(3, 4).double(), nn.Linear(4, 2).double()
    with torch.no_grad():
        first.weight.copy_(W1)
        first.bias.copy_(B1)
        second.weight.copy_(W2)
        second.bias.copy_(B2)
    return nn.Sequential(first, nn.ReLU(), second)


def test_naswot_is_the_log_determinant_of_the_hamming_kernel() -> None:
    # K has rank at most units + 1 (5): four images keep it non-singular here.
    images = IMAGES[:4]
    codes = (images @ W1.T + B1 > 0).int()  # which hidden units each image switches on
    n_units = codes.shape[1]
    kernel = torch.tensor(
        [[n_units - int((a != b).sum()) for b in codes] for a in codes], dtype=torch.float64
    )
    assert float(torch.linalg.det(kernel)) == pytest.approx(32.0)
    assert naswot(two_layer_net(), images, LABELS[:4]) == pytest.approx(math.log(32.0))


def test_naswot_of_two_images_with_one_code_is_minus_infinity() -> None:
    same = torch.stack([IMAGES[0], IMAGES[0]])
    assert naswot(two_layer_net(), same, LABELS[:2]) == -math.inf


def test_synflow_sums_theta_times_the_gradient_of_the_positive_network() -> None:
    a1, c1, a2 = W1.abs(), B1.abs(), W2.abs()
    hidden = a1.sum(dim=1) + c1  # all-ones input, every unit positive so every ReLU passes
    # R = sum_k sum_j a2[k, j] * hidden[j] + const: dR/da2[k, j] = hidden[j] and
    # dR/da1[j, i] = sum_k a2[k, j] (times the input 1).
    by_second = (a2 * hidden[None, :]).sum()
    by_first = (a1 * a2.sum(dim=0)[:, None]).sum()
    assert synflow(two_layer_net(), IMAGES, LABELS) == pytest.approx(float(by_first + by_second))


def test_synflow_reads_only_the_input_shape() -> None:
    net = two_layer_net()
    assert synflow(net, IMAGES, LABELS) == synflow(net, torch.randn(2, 3).double(), LABELS[:2])


def test_grad_norm_sums_the_layer_norms_of_the_cross_entropy_gradient() -> None:
    pre = IMAGES @ W1.T + B1
    hidden = pre.clamp(min=0)
    logits = hidden @ W2.T + B2
    onehot = torch.nn.functional.one_hot(LABELS, 2).double()
    d_logits = (logits.softmax(dim=1) - onehot) / len(LABELS)  # mean cross-entropy
    d_w2 = d_logits.T @ hidden
    d_pre = (d_logits @ W2) * (pre > 0)
    d_w1 = d_pre.T @ IMAGES
    expected = float(d_w1.norm() + d_w2.norm())
    assert grad_norm(two_layer_net(), IMAGES, LABELS) == pytest.approx(expected)


def test_params_counts_every_trainable_parameter() -> None:
    net = two_layer_net()
    assert params(net, IMAGES, LABELS) == 3 * 4 + 4 + 4 * 2 + 2
    net[0].requires_grad_(False)
    assert params(net, IMAGES, LABELS) == 4 * 2 + 2


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def digits_batch() -> tuple[Tensor, Tensor]:
    dm = make_datamodule("digits", batch_size=32)
    dm.setup("fit")
    return training_batch(dm)


TINY = DenseNetConfig(
    growth_rate=6, block_layers=(2, 3), bottleneck=True, compression=0.5, in_channels=1
)


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_every_proxy_leaves_a_densenet_as_it_found_it(
    name: str, digits_batch: tuple[Tensor, Tensor]
) -> None:
    model = DenseNet(TINY).eval()
    model.stem.train()  # a mix of modes, so that each one must be put back
    before = snapshot(model)
    modes = [m.training for m in model.modules()]
    score = get_proxy(name).score(model, *digits_batch)
    assert math.isfinite(score)
    after = model.state_dict()
    assert all(after[key].dtype == value.dtype for key, value in before.items())
    assert all(torch.equal(after[key], value) for key, value in before.items())
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize(
    "cfg",
    [
        TINY,
        DenseNetConfig(growth_rate=8, block_layers=(4,), bottleneck=False, in_channels=1),
        DenseNetConfig(
            growth_rate=12, block_layers=(4, 4, 4), bottleneck=True, compression=0.5, in_channels=1
        ),
    ],
    ids=["bc-2-3", "basic-4", "bc-4-4-4"],
)
def test_densenet_scores_are_finite_and_deterministic_per_seed(
    cfg: DenseNetConfig, digits_batch: tuple[Tensor, Tensor]
) -> None:
    images, labels = digits_batch
    for name in PROXIES:
        first = score_at_init(name, cfg, images, labels, seed=3)
        assert math.isfinite(first), name
        assert score_at_init(name, cfg, images, labels, seed=3) == first, name
    assert score_at_init("params", cfg, images, labels, seed=0) == cost.params(cfg)
    # The seed draws the initial weights: every proxy but the count moves with it.
    for name in ("naswot", "synflow", "grad_norm"):
        seeds = {score_at_init(name, cfg, images, labels, seed=s) for s in (0, 1)}
        assert len(seeds) == 2, name


def test_score_at_init_leaves_the_global_random_state_alone(
    digits_batch: tuple[Tensor, Tensor],
) -> None:
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    score_at_init("grad_norm", TINY, *digits_batch, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_a_wider_network_has_more_synaptic_flow(digits_batch: tuple[Tensor, Tensor]) -> None:
    """synflow grows with width: a behaviour the papers rely on, checked on DenseNets."""
    narrow = DenseNetConfig(growth_rate=4, block_layers=(3,), in_channels=1)
    wide = DenseNetConfig(growth_rate=16, block_layers=(3,), in_channels=1)
    images, labels = digits_batch
    scores = [score_at_init("synflow", c, images, labels, seed=0) for c in (narrow, wide)]
    assert scores[0] < scores[1]


def test_training_batch_index_picks_another_batch() -> None:
    dm = make_datamodule("digits", batch_size=16)
    dm.setup("fit")
    first, second = training_batch(dm, 0), training_batch(dm, 1)
    assert first[0].shape == second[0].shape == (16, 1, 8, 8)
    assert not torch.equal(first[0], second[0])
    assert abs(float(first[0].mean())) < 1.0  # normalised, not raw 0..255 pixels


def test_an_unknown_proxy_is_one_line_naming_the_choices() -> None:
    with pytest.raises(UserInputError, match=r"unknown proxy 'snip'; choose one of naswot"):
        get_proxy("snip")
    with pytest.raises(UserInputError) as info:
        score_at_init("snip", TINY, torch.zeros(2, 1, 8, 8), torch.zeros(2).long(), seed=0)
    assert info.value.param == "proxy"

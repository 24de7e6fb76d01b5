"""Zero-cost proxies: scores of an untrained network on one batch, meant to rank candidates.

Each proxy scores a network at initialisation from one training batch, without any
training step; higher is better for every one of them. They are measured against the
exact parameter count on dense-nas's own spaces (``benchmarks/bench_proxies.py``,
``benchmarks/RESULTS.md``) before anything relies on them.

- ``naswot`` (Mellor et al., "Neural Architecture Search without Training", ICML 2021):
  the log-determinant of the kernel ``K[i, j] = N_A - hamming(c_i, c_j)``, where ``c_i``
  is the binary code of which ReLU units image ``i`` switches on and ``N_A`` the number of
  units.
- ``synflow`` (Tanaka et al., "Pruning neural networks without any data by iteratively
  conserving synaptic flow", NeurIPS 2020): with every parameter replaced by its absolute
  value, BatchNorm in eval mode and an all-ones input, ``R`` is the sum of the output and
  the score sums ``|theta * dR/dtheta|``.
- ``grad_norm`` (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR
  2021): the Euclidean norm of each layer's cross-entropy gradient on the batch, summed
  over the layers.
- ``params``: the exact number of trainable parameters, the baseline the others must beat.

synflow and grad_norm score the weights of the convolutions and linear layers, the
weights both papers' pruning code scores (biases and BatchNorm's affine parameters are
not). Every proxy leaves the network as it found it: values, dtypes, gradients,
BatchNorm statistics, train/eval modes and hooks.

Example:
    >>> import torch
    >>> from dense_nas.model import DenseNetConfig, cost
    >>> cfg = DenseNetConfig(growth_rate=4, block_layers=(2, 2), in_channels=1)
    >>> images, labels = torch.randn(8, 1, 8, 8), torch.arange(8) % 10
    >>> sorted(PROXIES)
    ['grad_norm', 'naswot', 'params', 'synflow']
    >>> score_at_init("params", cfg, images, labels, seed=0) == cost.params(cfg)
    True
    >>> a = score_at_init("naswot", cfg, images, labels, seed=0)
    >>> a == score_at_init("naswot", cfg, images, labels, seed=0)
    True
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dense_nas.errors import UserInputError
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.network import DenseNet

ProxyFunction = Callable[[nn.Module, Tensor, Tensor], float]
"""``(network, images, labels) -> score``: one batch in, a float out, higher is better."""


@contextlib.contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """Run the body, then put back every parameter, gradient, buffer and mode of ``model``.

    Copies, not references, are kept: the body may change tensors in place (BatchNorm's
    running statistics in train mode) or swap them for others (synflow's float64
    absolute values).
    """
    params = [(p, p.detach().clone(), p.grad, p.requires_grad) for p in model.parameters()]
    buffers = [
        (module, name, buffer.clone())
        for module in model.modules()
        for name, buffer in module._buffers.items()
        if buffer is not None
    ]
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for param, value, grad, requires_grad in params:
            param.grad = None  # before the data: a float64 gradient cannot sit on float32
            param.data = value
            param.grad = grad
            param.requires_grad_(requires_grad)
        for module, name, value in buffers:
            module._buffers[name] = value
        for module, training in modes:
            module.training = training


def _scored_weights(model: nn.Module) -> list[Tensor]:
    """The weights synflow and grad_norm score: those of convolutions and linear layers."""
    return [
        module.weight
        for module in model.modules()
        if isinstance(module, nn.Conv2d | nn.Linear) and module.weight.requires_grad
    ]


def naswot(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """log|K| of the Hamming kernel of the batch's ReLU activation codes (Mellor et al.).

    Every ``nn.ReLU`` module contributes its units; a ReLU applied as a function is not
    seen (DenseNet's final BN-ReLU before pooling is one). BatchNorm runs in train mode,
    normalising with the batch's own statistics as the paper's code does; its running
    statistics are put back afterwards. A kernel that is singular (two images with the
    same code) scores ``-inf``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(1, 2), nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        ...     _ = net[0].bias.zero_()
        >>> codes = torch.tensor([[1.0], [-1.0]])  # switch on units (1, 0) and (0, 1)
        >>> round(naswot(net, codes, torch.zeros(2)), 6)  # K = [[2, 0], [0, 2]]: log 4
        1.386294
    """
    kernel = torch.zeros(len(images), len(images), dtype=torch.float64, device=images.device)

    def add_codes(module: nn.Module, inputs: Any, output: Tensor) -> None:
        # K counts the units two images agree on: both on, plus both off. float64 keeps
        # the counts exact: float32 (and TF32 on a GPU) would round large layers' sums.
        code = (output > 0).flatten(1).to(torch.float64)
        kernel.add_(code @ code.T + (1 - code) @ (1 - code).T)

    with _restored(model):
        handles = [
            m.register_forward_hook(add_codes) for m in model.modules() if isinstance(m, nn.ReLU)
        ]
        try:
            model.train()
            with torch.no_grad():
                model(images)
        finally:
            for handle in handles:
                handle.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else -math.inf


def synflow(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Synaptic flow: ``sum |theta * dR/dtheta|`` of an all-positive copy of the network.

    Only the shape of ``images`` is read: the input is all ones, one image. The network
    runs in float64, as the paper's code does, since the product of absolute weights over
    many layers overflows float32; BatchNorm runs in eval mode.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = net.weight.copy_(torch.tensor([[3.0, -2.0]]))
        >>> synflow(net, torch.zeros(5, 2), torch.zeros(5))  # R = 3 + 2 + |b|: dR/dw = 1
        5.0
    """
    with _restored(model):
        model.double().eval()
        with torch.no_grad():
            for param in model.parameters():
                param.abs_()
                param.grad = None
            model.requires_grad_(True)
        ones = torch.ones((1, *images.shape[1:]), dtype=torch.float64, device=images.device)
        model(ones).sum().backward()  # type: ignore[no-untyped-call]
        total = sum(
            float((w.detach() * w.grad).abs().sum())
            for w in _scored_weights(model)
            if w.grad is not None
        )
    return total


def grad_norm(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Sum over layers of the norm of the cross-entropy gradient (Abdelfattah et al.).

    One forward and backward pass of the batch in train mode (BatchNorm on the batch's
    statistics); the mean cross-entropy's gradient with respect to each convolution's
    and linear layer's weight has its Euclidean norm taken, and the norms are added.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Linear(1, 2)
        >>> with torch.no_grad():
        ...     _ = net.weight.zero_(); _ = net.bias.zero_()
        >>> # even odds: dL/dlogits = (1/2 - 1, 1/2), times the input 2
        >>> round(grad_norm(net, torch.tensor([[2.0]]), torch.tensor([0])), 6)
        1.414214
    """
    with _restored(model):
        model.train()
        model.requires_grad_(True)
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()  # type: ignore[no-untyped-call]
        total = sum(float(w.grad.norm()) for w in _scored_weights(model) if w.grad is not None)
    return total


def params(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """The exact number of trainable parameters (the batch is not read).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> params(nn.Linear(3, 2), torch.zeros(1, 3), torch.zeros(1))
        8.0
    """
    return float(sum(p.numel() for p in model.parameters() if p.requires_grad))


@dataclass(frozen=True)
class Proxy:
    """One zero-cost proxy.

    Attributes:
        name: its name, as ``--proxy`` spells it.
        score: computes it (:data:`ProxyFunction`); higher is better.
        summary: one line about what it measures.
    """

    name: str
    score: ProxyFunction
    summary: str


PROXIES: Mapping[str, Proxy] = MappingProxyType(
    {
        proxy.name: proxy
        for proxy in (
            Proxy("naswot", naswot, "log-determinant of the ReLU-code Hamming kernel"),
            Proxy("synflow", synflow, "synaptic flow of the all-positive network"),
            Proxy("grad_norm", grad_norm, "summed layer norms of the loss gradient"),
            Proxy("params", params, "trainable parameters: the baseline"),
        )
    }
)
"""The proxies by name; every score is higher-is-better."""


def get_proxy(name: str) -> Proxy:
    """The proxy called ``name``.

    Raises:
        UserInputError: (``proxy``) no proxy has that name; the message lists them.

    Example:
        >>> get_proxy("synflow").summary
        'synaptic flow of the all-positive network'
        >>> get_proxy("snip")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: proxy: unknown proxy 'snip'; choose one of naswot, synflow, grad_norm, params
    """
    if name not in PROXIES:
        raise UserInputError(
            f"unknown proxy {name!r}; choose one of {', '.join(PROXIES)}", param="proxy"
        )
    return PROXIES[name]


def training_batch(
    datamodule: L.LightningDataModule, index: int = 0, device: torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """Batch ``index`` of the training loader, as a model sees it: moved to ``device``
    and through the datamodule's batch hooks (no trainer: dense-nas's datamodules
    normalise it and do not augment it).

    The datamodule must be set up (``setup("fit")``).

    Example:
        >>> from dense_nas.data import make_datamodule
        >>> dm = make_datamodule("digits", batch_size=16)
        >>> dm.setup("fit")
        >>> images, labels = training_batch(dm)
        >>> images.dtype, tuple(images.shape), len(labels)
        (torch.float32, (16, 1, 8, 8), 16)
    """
    target = torch.device("cpu") if device is None else device
    batches = iter(datamodule.train_dataloader())
    for _ in range(index):
        next(batches)
    batch = datamodule.on_before_batch_transfer(next(batches), 0)
    images, labels = (tensor.to(target) for tensor in batch)
    return datamodule.on_after_batch_transfer((images, labels), 0)  # type: ignore[no-any-return]


def score_at_init(
    name: str, config: DenseNetConfig, images: Tensor, labels: Tensor, *, seed: int
) -> float:
    """Proxy ``name`` of ``config``'s network, initialised from ``seed``, on one batch.

    The initial weights are drawn on the CPU from ``seed`` alone (the global random
    state is left as it was), then moved to the batch's device, so a seed gives the same
    network everywhere.

    Raises:
        UserInputError: (``proxy``) an unknown proxy name.
    """
    proxy = get_proxy(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DenseNet(config)
    return proxy.score(model.to(images.device), images, labels)

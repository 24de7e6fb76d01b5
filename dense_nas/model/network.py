"""The DenseNet ``nn.Module``, in the paper's layer order.

Dense layer (BC): BN-ReLU-Conv1x1 (``bottleneck_width * k`` maps) - BN-ReLU-Conv3x3 (k maps),
whose output is concatenated to the block input. Transition: BN-ReLU-Conv1x1 to
``floor(theta * m)`` maps, then 2x2 average pooling. Head: BN-ReLU-global average pool-linear.

Example:
    >>> import torch
    >>> from dense_nas.model.arch import preset
    >>> model = DenseNet(preset("densenet-bc-100-12"))
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from dense_nas.model.arch import DenseNetConfig, channel_plan


def _bn_relu_conv(
    in_channels: int, out_channels: int, kernel: int, dropout: float
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


@contextlib.contextmanager
def _buffers_kept(module: nn.Module) -> Iterator[None]:
    """Run the body, then put every buffer of ``module`` back as it was.

    The backward pass of memory-efficient mode runs concat-BN-ReLU-conv a second time to
    get back the activations it did not store. In train mode that second BN forward
    would move the running mean and variance again and count the batch twice; saving and
    restoring them (as the paper's memory-efficient code does) keeps one update a step.
    """
    saved = [(buffer, buffer.clone()) for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


class DenseLayer(nn.Module):
    """One dense layer: takes the list of earlier feature maps, returns k new maps.

    The first unit (concat-BN-ReLU-conv, the 1x1 bottleneck in BC layers) is the
    memory-hungry part: its input grows with every layer. In memory-efficient mode it is
    recomputed in the backward pass instead of stored; the recomputation leaves the BN
    running statistics alone, so both modes train the same network.
    """

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        *,
        bottleneck: bool,
        bottleneck_width: int,
        dropout: float,
        memory_efficient: bool,
    ) -> None:
        super().__init__()
        if bottleneck:
            inner = bottleneck_width * growth_rate
            self.first = nn.Sequential(*_bn_relu_conv(in_channels, inner, 1, dropout))
            self.second: nn.Module = nn.Sequential(*_bn_relu_conv(inner, growth_rate, 3, dropout))
        else:
            self.first = nn.Sequential(*_bn_relu_conv(in_channels, growth_rate, 3, dropout))
            self.second = nn.Identity()
        self.memory_efficient = memory_efficient

    def _first(self, *features: Tensor) -> Tensor:
        joined = features[0] if len(features) == 1 else torch.cat(features, dim=1)
        return self.first(joined)  # type: ignore[no-any-return]

    def _recompute_contexts(
        self,
    ) -> tuple[contextlib.AbstractContextManager[None], contextlib.AbstractContextManager[None]]:
        """For ``checkpoint``: nothing around the forward, buffers kept around the recompute."""
        return contextlib.nullcontext(), _buffers_kept(self.first)

    def forward(self, features: list[Tensor]) -> Tensor:
        if (
            self.memory_efficient
            and torch.is_grad_enabled()
            and any(f.requires_grad for f in features)
        ):
            # Compiled graphs apply buffer updates once, in the forward graph, and dynamo
            # takes no context_fn but a selective-checkpoint policy: pass none there.
            options: dict[str, Any] = (
                {} if torch.compiler.is_compiling() else {"context_fn": self._recompute_contexts}
            )
            hidden = checkpoint(self._first, *features, use_reentrant=False, **options)
        else:
            hidden = self._first(*features)
        return self.second(hidden)  # type: ignore[no-any-return]


class DenseBlock(nn.ModuleList):
    """Dense layers whose outputs are all concatenated to the block input.

    Plain mode grows one running concatenation, ``[x, y1, ..., yi]``, a layer at a
    time: each layer reads it whole and the block returns the last one. Autograd then
    sums one gradient per layer into it, instead of one per pair of layers into every
    earlier output (about 360 small, strided additions in DenseNet-BC-100): 15% faster
    training steps on one CPU thread. Memory-efficient mode keeps the list of outputs,
    since the running concatenations are what it must not store.
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if self and self[0].memory_efficient and torch.is_grad_enabled():
            features = [x]
            for layer in self:
                features.append(layer(features))
            return torch.cat(features, dim=1)
        for layer in self:
            x = torch.cat((x, layer([x])), dim=1)
        return x


class Transition(nn.Sequential):
    """BN-ReLU-Conv1x1 to ``floor(theta * m)`` maps, then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__(*_bn_relu_conv(in_channels, out_channels, 1, dropout), nn.AvgPool2d(2))


def _stem(cfg: DenseNetConfig) -> nn.Sequential:
    if cfg.stem == "cifar":
        return nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.init_channels, 3, padding=1, bias=False)
        )
    return nn.Sequential(
        nn.Conv2d(cfg.in_channels, cfg.init_channels, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(cfg.init_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


class DenseNet(nn.Module):
    """A DenseNet built from a :class:`~dense_nas.model.arch.DenseNetConfig`.

    Uniform API: ``forward_features(x)`` gives the pre-head feature maps,
    ``forward_head(features)`` the logits, ``forward(x)`` both.

    Example:
        >>> import torch
        >>> from dense_nas.model.arch import DenseNetConfig
        >>> cfg = DenseNetConfig(growth_rate=4, block_layers=(2, 2), num_classes=3,
        ...                      in_channels=1)
        >>> net = DenseNet(cfg)
        >>> net.forward_features(torch.randn(1, 1, 8, 8)).shape
        torch.Size([1, 16, 4, 4])
        >>> net(torch.randn(1, 1, 8, 8)).shape
        torch.Size([1, 3])
    """

    def __init__(self, cfg: DenseNetConfig) -> None:
        super().__init__()
        self.config = cfg
        dropout = cfg.dropout or 0.0  # unset: the paper's rule was never applied, so none
        stages: list[nn.Module] = []
        for block in channel_plan(cfg):
            stages.append(
                DenseBlock(
                    DenseLayer(
                        channels,
                        cfg.growth_rate,
                        bottleneck=cfg.bottleneck,
                        bottleneck_width=cfg.bottleneck_width,
                        dropout=dropout,
                        memory_efficient=cfg.memory_efficient,
                    )
                    for channels in block.layer_inputs
                )
            )
            if block.transition_out is not None:
                stages.append(Transition(block.out_channels, block.transition_out, dropout))
        self.stem = _stem(cfg)
        self.blocks = nn.Sequential(*stages)
        self.num_features = channel_plan(cfg)[-1].out_channels
        self.norm = nn.BatchNorm2d(self.num_features)
        self.classifier = nn.Linear(self.num_features, cfg.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's init: He-normal convs, BN to identity, zero linear bias."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """Feature maps after the last dense block's final BN-ReLU."""
        return F.relu(self.norm(self.blocks(self.stem(x))))

    def forward_head(self, features: Tensor) -> Tensor:
        """Global average pool and the linear classifier."""
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))  # type: ignore[no-any-return]

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

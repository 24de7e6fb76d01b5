"""Closed-form cost of a :class:`~dense_nas.model.arch.DenseNetConfig`, without building it.

Search spaces reject candidates that break a constraint before any training, so these
functions must be cheap and exact: ``params`` equals the built model's count, ``macs``
equals what ``torch.utils.flop_counter`` counts for the convs and the linear layer (half
its FLOPs), and ``activation_memory`` estimates the bytes autograd keeps for the backward
pass of one training step.

Example:
    >>> from dense_nas.model.arch import preset
    >>> params(preset("densenet-bc-100-12"))
    769162
    >>> round(macs(preset("densenet-bc-100-12"), (32, 32)) / 1e9, 3)
    0.288
"""

from __future__ import annotations

from dataclasses import dataclass

from dense_nas.model.arch import DenseNetConfig, channel_plan


@dataclass(frozen=True)
class Cost:
    """Parameters, MACs and training activation bytes of one config at one input size."""

    params: int
    macs: int
    activation_bytes: int


def _layer_widths(cfg: DenseNetConfig) -> tuple[int, int]:
    """(maps made by a layer's first conv, kernel of that conv)."""
    if cfg.bottleneck:
        return cfg.bottleneck_width * cfg.growth_rate, 1
    return cfg.growth_rate, 3


def stem_size(
    cfg: DenseNetConfig, size: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(stem conv output size, stem output size) for an input size: the maps block 1 sees.

    Example:
        >>> from dense_nas.model.arch import preset
        >>> stem_size(preset("densenet121"), (224, 224))
        ((112, 112), (56, 56))
    """
    if cfg.stem == "cifar":
        return size, size
    conv = tuple((s + 2 * 3 - 7) // 2 + 1 for s in size)
    pooled = tuple((s + 2 * 1 - 3) // 2 + 1 for s in conv)
    return (conv[0], conv[1]), (pooled[0], pooled[1])


def params(cfg: DenseNetConfig) -> int:
    """Trainable parameters (convs have no bias; BN has weight and bias).

    Example:
        >>> from dense_nas.model.arch import preset
        >>> params(preset("densenet121"))
        7978856
    """
    return estimate(cfg, (32, 32), batch_size=1).params


def macs(cfg: DenseNetConfig, input_size: tuple[int, int]) -> int:
    """Multiply-accumulates of the convs and the linear layer for one image.

    Example:
        >>> from dense_nas.model.arch import preset
        >>> macs(preset("densenet-bc-250-24"), (32, 32)) > 5_000_000_000
        True
    """
    return estimate(cfg, input_size, batch_size=1).macs


def activation_memory(
    cfg: DenseNetConfig, input_size: tuple[int, int], batch_size: int, bytes_per_element: int = 4
) -> int:
    """Estimated bytes autograd saves for backward in one training step.

    Plain mode keeps every layer's growing concatenation and its BN-ReLU output, which is
    quadratic in the layers per block; memory-efficient mode recomputes them and keeps
    only each layer's k new maps.

    Example:
        >>> from dense_nas.model.arch import preset
        >>> cfg = preset("densenet-bc-100-12")
        >>> lean = cfg.replace(memory_efficient=True)
        >>> activation_memory(lean, (32, 32), 64) < activation_memory(cfg, (32, 32), 64) / 2
        True
    """
    return estimate(cfg, input_size, batch_size, bytes_per_element).activation_bytes


def estimate(
    cfg: DenseNetConfig,
    input_size: tuple[int, int],
    batch_size: int = 1,
    bytes_per_element: int = 4,
) -> Cost:
    """All three costs in one walk over the channel plan.

    Example:
        >>> from dense_nas.model.arch import preset
        >>> estimate(preset("densenet-40-12"), (32, 32)).params
        1019722
    """
    first_maps, first_kernel = _layer_widths(cfg)
    k = cfg.growth_rate
    conv_size, (h, w) = stem_size(cfg, input_size)
    conv_area = conv_size[0] * conv_size[1]

    n_params = cfg.in_channels * cfg.init_channels * (3 * 3 if cfg.stem == "cifar" else 7 * 7)
    n_macs = n_params * conv_area
    saved = cfg.in_channels * input_size[0] * input_size[1]  # the stem conv's input
    if cfg.stem == "imagenet":
        n_params += 2 * cfg.init_channels
        # BN input, ReLU output kept by the max pool (plus its int64 indices: 2 elements).
        saved += 2 * cfg.init_channels * conv_area + 2 * cfg.init_channels * h * w

    for block in channel_plan(cfg):
        area = h * w
        for c in block.layer_inputs:
            n_params += 2 * c + c * first_maps * first_kernel**2
            n_macs += area * c * first_maps * first_kernel**2
            if cfg.bottleneck:
                n_params += 2 * first_maps + first_maps * k * 9
                n_macs += area * first_maps * k * 9
                # BN2 input and ReLU2 output, kept in both modes.
                saved += 2 * first_maps * area
            # Plain: the concatenation (BN1 input) and the BN1-ReLU output.
            # Memory-efficient: only the layer's k new maps, kept as the checkpoint's input.
            saved += (k if cfg.memory_efficient else 2 * c) * area
        m, out = block.out_channels, block.transition_out
        if out is not None:
            n_params += 2 * m + m * out
            n_macs += area * m * out
            # BN input, ReLU output (the conv's input), conv output (the pool's input).
            saved += (2 * m + out) * area
            h, w = h // 2, w // 2
        else:
            n_params += 2 * m + m * cfg.num_classes + cfg.num_classes
            n_macs += m * cfg.num_classes
            saved += 2 * m * area + m  # head BN input, ReLU output, pooled vector
    return Cost(
        params=n_params,
        macs=n_macs,
        activation_bytes=saved * batch_size * bytes_per_element,
    )

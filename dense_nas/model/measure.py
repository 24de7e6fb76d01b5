"""Measure what the cost model predicts, on a real model: autograd's saved bytes and MACs.

Used by the tests (to hold :mod:`dense_nas.model.cost` to the truth) and by the benchmarks.

Example:
    >>> import torch
    >>> from dense_nas.model.arch import DenseNetConfig
    >>> from dense_nas.model.network import DenseNet
    >>> net = DenseNet(DenseNetConfig(growth_rate=4, block_layers=(2,), in_channels=1))
    >>> counted_macs(net, torch.randn(1, 1, 8, 8)) > 0
    True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def saved_tensor_bytes(model: nn.Module, x: Tensor) -> int:
    """Bytes of distinct storages autograd saves for backward during ``model(x)``.

    Tensors that share a storage (a ReLU output saved by both the ReLU and the next conv)
    are counted once, as the allocator holds them once. The input itself is included.

    Example:
        >>> import torch
        >>> saved_tensor_bytes(torch.nn.Linear(4, 2), torch.randn(3, 4)) > 0
        True
    """
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    out.sum().backward()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    buffers = {b.untyped_storage().data_ptr() for b in model.buffers()}
    return sum(n for ptr, n in storages.items() if ptr not in params | buffers)


def counted_macs(model: nn.Module, x: Tensor) -> int:
    """MACs of ``model(x)`` as ``torch.utils.flop_counter`` counts them (FLOPs / 2).

    Example:
        >>> import torch
        >>> counted_macs(torch.nn.Linear(4, 2, bias=False), torch.randn(1, 4))
        8
    """
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops()) // 2

"""The network and its cost: genome, closed-form cost model, nn.Module and LightningModule.

- :mod:`~dense_nas.model.arch`: :class:`DenseNetConfig`, the frozen, validated genome
  with a canonical key, and the named presets.
- :mod:`~dense_nas.model.cost`: exact parameter count, MACs and activation memory.
- :mod:`~dense_nas.model.latency`: measured inference latency on a device, and
  :mod:`~dense_nas.model.latency_cache`, where a study keeps it per device fingerprint.
- :mod:`~dense_nas.model.network`: :class:`DenseNet`, the ``nn.Module``.
- :mod:`~dense_nas.model.recipe`: :class:`TrainingConfig`, the training recipe (the
  paper's by default; AdamW and a warm-up besides).
- :mod:`~dense_nas.model.metrics`: the validation metrics by name, with their direction.
- :mod:`~dense_nas.model.proxies`: zero-cost proxies, scores of an untrained network on
  one batch (NASWOT, synflow, grad-norm, and the parameter count as their baseline).
- :mod:`~dense_nas.model.module`: :class:`DenseNetModule`, the ``LightningModule``.

Example:
    >>> from dense_nas.model import DenseNetConfig, cost
    >>> cost.params(DenseNetConfig.from_depth(100, growth_rate=12, bottleneck=True,
    ...                                       compression=0.5))
    769162
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dense_nas._lazy import lazy_exports
from dense_nas.model import cost
from dense_nas.model.arch import DenseNetConfig, list_presets, preset
from dense_nas.model.recipe import TrainingConfig

if TYPE_CHECKING:
    from dense_nas.model.module import DenseNetModule
    from dense_nas.model.network import DenseNet

__all__ = [
    "DenseNet",
    "DenseNetConfig",
    "DenseNetModule",
    "TrainingConfig",
    "cost",
    "list_presets",
    "preset",
]

__getattr__ = lazy_exports(
    __name__,
    {"DenseNet": "dense_nas.model.network", "DenseNetModule": "dense_nas.model.module"},
)

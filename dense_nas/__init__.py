"""dense-nas: neural architecture search over DenseNet with Optuna and PyTorch Lightning.

The public names are imported on first use, so ``dense-nas --help`` and the light
modules (``arch``, ``cost``) do not pay for Lightning's import.

Example:
    >>> from dense_nas import DenseNetConfig, DenseNet
    >>> cfg = DenseNetConfig.from_depth(100, growth_rate=12, bottleneck=True, compression=0.5)
    >>> sum(p.numel() for p in DenseNet(cfg).parameters())
    769162
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dense_nas.arch import DenseNetConfig, list_presets, preset
    from dense_nas.errors import UserInputError
    from dense_nas.model import DenseNet
    from dense_nas.module import DenseNetModule
    from dense_nas.recipe import TrainingConfig
    from dense_nas.results import load_best
    from dense_nas.space import SearchSpace
    from dense_nas.study import search

_HOMES = {
    "DenseNet": "dense_nas.model",
    "DenseNetConfig": "dense_nas.arch",
    "DenseNetModule": "dense_nas.module",
    "SearchSpace": "dense_nas.space",
    "TrainingConfig": "dense_nas.recipe",
    "UserInputError": "dense_nas.errors",
    "list_presets": "dense_nas.arch",
    "load_best": "dense_nas.results",
    "preset": "dense_nas.arch",
    "search": "dense_nas.study",
}

__all__ = [
    "DenseNet",
    "DenseNetConfig",
    "DenseNetModule",
    "SearchSpace",
    "TrainingConfig",
    "UserInputError",
    "list_presets",
    "load_best",
    "preset",
    "search",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'dense_nas' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value

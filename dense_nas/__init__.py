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

from typing import TYPE_CHECKING

from dense_nas._lazy import lazy_exports

if TYPE_CHECKING:
    from dense_nas.errors import StorageError, UserInputError
    from dense_nas.model.arch import DenseNetConfig, list_presets, preset
    from dense_nas.model.module import DenseNetModule
    from dense_nas.model.network import DenseNet
    from dense_nas.model.recipe import TrainingConfig
    from dense_nas.results.loading import load_best
    from dense_nas.space import SearchSpace
    from dense_nas.study._search import search

__all__ = [
    "DenseNet",
    "DenseNetConfig",
    "DenseNetModule",
    "SearchSpace",
    "StorageError",
    "TrainingConfig",
    "UserInputError",
    "list_presets",
    "load_best",
    "preset",
    "search",
]
__version__ = "0.1.0"


__getattr__ = lazy_exports(
    __name__,
    {
        "DenseNet": "dense_nas.model.network",
        "DenseNetConfig": "dense_nas.model.arch",
        "DenseNetModule": "dense_nas.model.module",
        "SearchSpace": "dense_nas.space",
        "StorageError": "dense_nas.errors",
        "TrainingConfig": "dense_nas.model.recipe",
        "UserInputError": "dense_nas.errors",
        "list_presets": "dense_nas.model.arch",
        "load_best": "dense_nas.results.loading",
        "preset": "dense_nas.model.arch",
        "search": "dense_nas.study._search",
    },
)

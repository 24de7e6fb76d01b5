"""dense-nas: neural architecture search over DenseNet with Optuna and PyTorch Lightning.

Example:
    >>> from dense_nas import DenseNetConfig, DenseNet
    >>> cfg = DenseNetConfig.from_depth(100, growth_rate=12, bottleneck=True, compression=0.5)
    >>> sum(p.numel() for p in DenseNet(cfg).parameters())
    769162
"""

from dense_nas.arch import DenseNetConfig, list_presets, preset
from dense_nas.errors import UserInputError
from dense_nas.model import DenseNet
from dense_nas.module import DenseNetModule
from dense_nas.recipe import TrainingConfig
from dense_nas.results import load_best
from dense_nas.space import SearchSpace
from dense_nas.study import search

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

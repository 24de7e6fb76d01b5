"""Two search spaces that dense-nas finds through this package's entry points.

``example-wide`` is a Python class: DenseNet L=40 (basic layers) with a free growth
rate. ``example-yaml`` is a YAML file shipped in the package; the entry point names the
path (relative paths are read beside this module).
"""

from __future__ import annotations

import optuna

from dense_nas import DenseNetConfig, TrainingConfig
from dense_nas.space import Candidate, Constraints, SearchSpace, Task

YAML_SPACE = "example_yaml.yaml"
"""The YAML space's file, relative to this package."""


class WideSpace(SearchSpace):
    """DenseNet L=40 with basic layers and k from 12 to 48: the paper's wide nets."""

    name = "example-wide"
    description = "Plugin example: DenseNet L=40 (basic layers), k 12-48, lr log-uniform"
    constraints = Constraints(max_params=20_000_000)
    seeds = ({"growth_rate": 12, "lr": 0.1},)

    def suggest(self, trial: optuna.Trial, task: Task) -> Candidate:
        arch = DenseNetConfig.from_depth(
            40,
            growth_rate=trial.suggest_int("growth_rate", 12, 48, step=12),
            bottleneck=False,
            compression=1.0,
            init_channels=16,
            num_classes=task.num_classes,
            in_channels=task.in_channels,
        )
        training = TrainingConfig(lr=trial.suggest_float("lr", 0.02, 0.2, log=True))
        return Candidate(arch, training)

"""A plugin package registers spaces through the ``dense_nas.search_spaces`` entry points.

Needs the example plugin installed:
    pip install ./tests/plugins/example_space_plugin
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

import optuna
import pytest

from dense_nas.space import Task, YamlSearchSpace, enqueue_seeds, list_spaces, load_space, sample

try:
    distribution("dense-nas-example-plugin")
except PackageNotFoundError:
    pytestmark = pytest.mark.skip(
        reason="example plugin not installed: pip install ./tests/plugins/example_space_plugin"
    )

SOURCE = "plugin dense-nas-example-plugin"
CIFAR = Task(num_classes=10, in_channels=3, image_size=(32, 32))


def test_list_spaces_shows_the_plugin_spaces() -> None:
    listed = {info.name: info for info in list_spaces()}
    for name in ("example-wide", "example-yaml"):
        assert listed[name].source == SOURCE
        assert listed[name].description.startswith("Plugin example")


def test_a_plugin_class_loads_by_name_and_samples() -> None:
    space = load_space("example-wide")
    assert type(space).__module__ == "dense_nas_example_plugin"
    study = optuna.create_study()
    assert enqueue_seeds(study, space) == 1
    candidate = sample(space, study.ask(), CIFAR)
    assert (candidate.arch.depth, candidate.arch.growth_rate) == (40, 12)


def test_a_plugin_yaml_file_loads_by_name_and_samples() -> None:
    space = load_space("example-yaml")
    assert isinstance(space, YamlSearchSpace)
    assert space.source.endswith("example_yaml.yaml")
    candidate = sample(space, optuna.create_study().ask(), CIFAR)
    assert len(candidate.arch.block_layers) == 2

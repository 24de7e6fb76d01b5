"""A plugin package registers spaces through the ``dense_nas.search_spaces`` entry points.

Needs the example plugin installed:
    pip install ./tests/plugins/example_space_plugin
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import optuna
import pytest

from dense_nas.space import Task, YamlSearchSpace, enqueue_seeds, list_spaces, load_space, sample
from tests.helpers import main_in_process

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


def test_a_study_runs_on_a_plugin_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dense-nas spaces` lists the plugin's space and `dense-nas search` trains on it."""
    monkeypatch.chdir(tmp_path)
    listed = main_in_process(capsys, "spaces")
    assert listed.returncode == 0 and "example-yaml" in listed.stdout and SOURCE in listed.stdout
    result = main_in_process(
        capsys,
        "search",
        "--space",
        "example-yaml",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--accelerator",
        "cpu",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(
        study_name="example-yaml-digits", storage=f"sqlite:///{tmp_path / 'dense-nas.db'}"
    )
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert study.user_attrs["space"] == "example-yaml"

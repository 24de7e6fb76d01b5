"""A Lightning user's own pieces in a study: callbacks, Trainer options and the default
loggers, and LightningCLI configs of a trial (``dense-nas best --config``).

Every log is read back by its own real reader (the CSV file, tensorboard's event reader),
and a callback from a module outside the package proves it ran in every trained trial by
the marker file it writes. tests/test_loggers.py tests the other loggers.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from dense_nas.records import retrain_records, trial_attrs
from dense_nas.study.loggers import recorded_logs
from tests.helpers import ROOT, main_in_process, search_args

PARTS = ROOT / "tests" / "plugins" / "lightning_parts"
MARKER = "marker_callback.MarkerCallback"


def _search(*extra: str, out: Path, trials: int = 2) -> list[str]:
    return search_args(*extra, trials=trials, epochs=2, out=out, quiet=True)


def _trained(out: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials of the only study in ``out`` that trained (not pruned before training)."""
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'dense-nas.db'}")
    return [t for t in study.trials if "epochs" in trial_attrs(t)]


def _with_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the test-only callback module importable here and in every trial process."""
    monkeypatch.syspath_prepend(str(PARTS))
    paths = [str(PARTS), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))


def _write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"trainer": {"max_epochs": 5}},
            "--trainer-config: trainer.max_epochs is set by dense-nas (--epochs); remove it "
            "from the file",
        ),
        (
            {"trainer": {"strategy": "ddp"}},
            "--trainer-config: trainer.strategy is set by dense-nas (--devices: more than one "
            "trains with DDP); remove it from the file",
        ),
        (
            {"trainer": {"gradient_clip": 1.0}},
            "--trainer-config: trainer.gradient_clip is not an option of lightning.Trainer",
        ),
        (
            {"callbacks": [{"class_path": "no_such_module.Callback"}]},
            "--trainer-config: Problem with given class_path 'no_such_module.Callback': "
            "No module named 'no_such_module'",
        ),
        (
            {"callbacks": [{"class_path": MARKER, "init_args": {"folder": "x"}}]},
            f"--trainer-config: Problem with given class_path '{MARKER}': "
            "Option 'folder' is not accepted",
        ),
        (
            {"model": {"lr": 0.1}},
            "--trainer-config: section 'model' is not read; only trainer:, callbacks: and "
            "logger: are (the model and data come from the study)",
        ),
        (
            {"trainer": ["gradient_clip_val", 1.0]},
            "--trainer-config: trainer: must be a mapping of lightning.Trainer options",
        ),
        (
            {"callbacks": 5},
            "--trainer-config: callbacks: must be a list of class_path/init_args entries, got 5",
        ),
        (
            {"trainer": {"limit_val_batches": 0}},
            "--trainer-config: trainer.limit_val_batches is set by dense-nas (dense-nas: every "
            "trial validates on all of the validation data); remove it from the file",
        ),
    ],
    ids=[
        "owned",
        "owned-strategy",
        "unknown-option",
        "no-module",
        "bad-init-arg",
        "section",
        "trainer-not-a-mapping",
        "callbacks-not-a-list",
        "no-validation",
    ],
)
def test_a_refused_trainer_config_is_one_line_and_stores_nothing(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    config: dict[str, Any],
    expected: str,
) -> None:
    _with_parts(monkeypatch)
    path = _write_config(tmp_path / "trainer.yaml", config)
    out = tmp_path / "out"
    ran = main_in_process(capsys, *_search("--trainer-config", str(path), out=out))
    assert ran.returncode == 2
    assert ran.stderr.strip() == f"dense-nas: error: {expected}"
    assert not (out / "dense-nas.db").exists()


@pytest.mark.slow  # a study, then LightningCLI in a fresh interpreter: about 20 s
def test_csv_is_the_default_log_and_best_config_trains_under_lightning_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert main_in_process(capsys, *_search(out=out)).returncode == 0
    trained = _trained(out)
    assert trained
    for trial in trained:
        (logs,) = recorded_logs(trial_attrs(trial)["logs"])
        assert logs["logger"] == "csv"
        assert Path(logs["location"]) == (out / "logs" / "test-tiny-digits").resolve() / (
            f"trial-{trial.number}"
        )
        with open(Path(logs["location"]) / "metrics.csv", newline="") as file:
            rows = list(csv.DictReader(file))
        for name in ("train/loss", "val/loss", "val/acc"):
            per_epoch = {row["epoch"]: row[name] for row in rows if row[name]}
            assert len(per_epoch) == trial_attrs(trial)["epochs"], name
        hparams = yaml.safe_load((Path(logs["location"]) / "hparams.yaml").read_text())
        assert hparams["config"] == trial_attrs(trial)["arch"]
        assert hparams["lr"] == trial_attrs(trial)["training"]["lr"]

    config = tmp_path / "best.yaml"
    shown = main_in_process(capsys, "best", "--out", str(out), "--config", str(config))
    assert shown.returncode == 0
    assert f"python -m dense_nas.lightning fit --config {config}" in shown.stdout
    best = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'dense-nas.db'}")
    params = trial_attrs(best.best_trial)["params"]

    # A user's own LightningCLI(DenseNetModule) reads the file as it is.
    from lightning.pytorch.cli import LightningCLI

    from dense_nas import DenseNetModule

    own = LightningCLI(DenseNetModule, args=["--config", str(config)], run=False)
    assert sum(p.numel() for p in own.model.parameters()) == params
    assert type(own.datamodule).__name__ == "DigitsDataModule"

    # python -m dense_nas.lightning fits it (one epoch) in a fresh interpreter.
    root = tmp_path / "fit"
    overrides = ["--trainer.max_epochs", "1", "--trainer.default_root_dir", str(root)]
    fit = subprocess.run(
        [sys.executable, "-m", "dense_nas.lightning", "fit", "--config", str(config), *overrides],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert fit.returncode == 0, fit.stderr[-2000:]
    (checkpoint,) = root.glob("lightning_logs/version_0/checkpoints/*.ckpt")
    fitted = DenseNetModule.load_from_checkpoint(checkpoint)
    assert sum(p.numel() for p in fitted.parameters()) == params
    assert "epoch=0" in checkpoint.name


@pytest.mark.slow  # a study with a callback, then a retrain: about 25 s
def test_trainer_config_callbacks_run_in_every_trial_and_retrain_with_csv_and_tensorboard(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _with_parts(monkeypatch)
    markers = tmp_path / "markers"
    config = _write_config(
        tmp_path / "trainer.yaml",
        {
            "trainer": {
                "gradient_clip_val": 0.5,
                "callbacks": [
                    {"class_path": MARKER, "init_args": {"directory": str(markers), "tag": "a"}}
                ],
            }
        },
    )
    out = tmp_path / "out"
    args = _search(
        "--logger", "csv,tensorboard", "--trainer-config", str(config), out=out, trials=3
    )
    assert main_in_process(capsys, *args).returncode == 0
    trained = _trained(out)
    assert trained
    found = sorted(marker.read_text() for marker in markers.iterdir())
    assert found == ["a 0.5\n"] * len(trained)  # one per trained trial, with the option set
    for trial in trained:
        csv_logs, tensorboard = recorded_logs(trial_attrs(trial)["logs"])
        assert (csv_logs["logger"], tensorboard["logger"]) == ("csv", "tensorboard")
        events = EventAccumulator(tensorboard["location"])
        events.Reload()
        accuracies = [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]
        for name in ("train/loss", "val/loss", "val/acc"):
            assert len(events.Scalars(name)) == trial_attrs(trial)["epochs"], name
        assert [event.value for event in events.Scalars("val/acc")] == pytest.approx(accuracies)
        with open(Path(csv_logs["location"]) / "metrics.csv", newline="") as file:
            logged = [float(row["val/acc"]) for row in csv.DictReader(file) if row["val/acc"]]
        assert logged == pytest.approx(accuracies)

    # A second command on the study applies the recorded config; another one is refused.
    other = _write_config(tmp_path / "other.yaml", {"trainer": {"gradient_clip_val": 2.0}})
    refused = main_in_process(capsys, *_search("--trainer-config", str(other), out=out))
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "dense-nas: error: --trainer-config: study 'test-tiny-digits' was made with another trainer config; "
        "leave --trainer-config out to apply the recorded one, or use a new --study"
    )

    retrained = main_in_process(capsys, "retrain", "--out", str(out), "--epochs", "1")
    assert retrained.returncode == 0, retrained.stderr
    assert len(list(markers.iterdir())) == len(trained) + 1
    (retrain,) = retrain_records(
        optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'dense-nas.db'}")
    )
    csv_logs, tensorboard = retrain["logs"]  # the trials' loggers
    events = EventAccumulator(tensorboard["location"])
    events.Reload()
    assert len(events.Scalars("train/loss")) == 1  # one epoch, logged with the trials' loggers
    assert [event.value for event in events.Scalars("test/acc")] == pytest.approx(
        [retrain["test_accuracy"]]
    )
    assert "test/acc" in (Path(csv_logs["location"]) / "metrics.csv").read_text()


@pytest.mark.parametrize(
    ("data", "class_path"),
    [
        ("tests.user_data.quadrants:Quadrants", "tests.user_data.quadrants.Quadrants"),
        ("example-stripes", "dense_nas_example_plugin.data.Stripes"),  # a plugin's entry point
    ],
)
def test_the_data_section_of_a_user_datamodule_passes_the_trials_batch_size(
    data: str, class_path: str
) -> None:
    from dense_nas.results.lightning_config import datamodule_section

    section = datamodule_section({"data": data, "data_args": {"images": 64}}, batch_size=48)
    assert section == {"class_path": class_path, "init_args": {"images": 64, "batch_size": 48}}


def test_the_data_section_of_a_module_that_does_not_import_is_one_line() -> None:
    from dense_nas.errors import UserInputError
    from dense_nas.results.lightning_config import datamodule_section

    with pytest.raises(UserInputError, match="no_such_package") as refused:
        datamodule_section({"data": "no_such_package.data:Thing", "data_args": {}}, batch_size=8)
    assert "\n" not in str(refused.value)


def test_the_data_section_names_the_studys_datamodule_class() -> None:
    from dense_nas.errors import UserInputError
    from dense_nas.results.lightning_config import datamodule_section

    recorded = {"data": "cifar10", "data_dir": "/data", "val_size": 5000, "seed": 3}
    assert datamodule_section(recorded, batch_size=64) == {
        "class_path": "dense_nas.data.CIFAR10DataModule",
        "init_args": {"data_dir": "/data", "batch_size": 64, "val_size": 5000, "seed": 3},
    }
    own = {"data": "dense_nas.data.digits:DigitsDataModule", "data_args": {"batch_size": 8}}
    assert datamodule_section(own, batch_size=64) == {
        "class_path": "dense_nas.data.digits.DigitsDataModule",
        "init_args": {"batch_size": 8},
    }
    with pytest.raises(UserInputError, match=r"folder.*no LightningDataModule class"):
        datamodule_section({"data": "folder", "data_dir": "/images"}, batch_size=64)
    with pytest.raises(UserInputError, match="make_datamodule is not a class"):
        datamodule_section({"data": "dense_nas.data:make_datamodule"}, batch_size=64)

"""``--logger`` lists and a ``--trainer-config`` ``logger:`` section: every trial, and
retrain, logs to each of them.

Every log is read back by its own reader: the CSV file, W&B's offline run file (its
records checked and decoded with W&B's own protobuf messages), MLflow's client, and the
JSON files a test-only Logger subclass writes.
"""

from __future__ import annotations

import csv
import importlib
import json
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from dense_nas.records import TrialLogs, retrain_records, trial_attrs
from dense_nas.study.loggers import make_logger, prepare_loggers, recorded_logs, rerun_logs
from tests.helpers import ROOT, main_in_process, search_args

PARTS = ROOT / "tests" / "plugins" / "lightning_parts"
STUDY = "test-tiny-digits"


def _search(*extra: str, out: Path, trials: int = 2, epochs: int = 2) -> list[str]:
    return search_args(*extra, trials=trials, epochs=epochs, out=out, quiet=True)


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'dense-nas.db'}")


def _trained(out: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials of the only study in ``out`` that trained (not pruned before training)."""
    return [t for t in _study(out).trials if "epochs" in trial_attrs(t)]


def _logs(trial: optuna.trial.FrozenTrial) -> dict[str, TrialLogs]:
    return {logs["logger"]: logs for logs in recorded_logs(trial_attrs(trial).get("logs"))}


def _csv_rows(directory: Path) -> list[dict[str, str]]:
    with open(directory / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def _accuracies(trial: optuna.trial.FrozenTrial) -> list[float]:
    return [trial.intermediate_values[epoch] for epoch in sorted(trial.intermediate_values)]


@pytest.fixture
def wandb_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """W&B offline, with its run files and its own settings under ``tmp_path``."""
    directory = tmp_path / "wandb-runs"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(directory))
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return directory


# --- W&B's offline run file -------------------------------------------------------------

#: The run file is a log of 32 KiB blocks after a 7-byte file header (":W&B", magic,
#: version); each record has a 7-byte header: CRC-32 of type and data, length, type.
_BLOCK, _HEADER = 32768, 7
_FULL, _LAST = 1, 4


@dataclass
class _WandbRun:
    """What an offline W&B run file says: the run, its config, history and summary."""

    run: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exited: bool = False


def _key(item: Any) -> str:
    return item.key or ".".join(item.nested_key)


def _read_wandb_run(path: Path) -> _WandbRun:
    # wandb_internal_pb2 picks the generated module of the installed protobuf at import
    Record = importlib.import_module("wandb.proto.wandb_internal_pb2").Record

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    run, pending, at = _WandbRun(), b"", _HEADER
    while at + _HEADER <= len(data):
        if _BLOCK - at % _BLOCK < _HEADER:  # a block's tail too short for a header
            at += _BLOCK - at % _BLOCK
            continue
        checksum, length, kind = struct.unpack_from("<IHB", data, at)
        payload = data[at + _HEADER : at + _HEADER + length]
        assert zlib.crc32(payload, zlib.crc32(bytes([kind]))) == checksum, f"{path} at {at}"
        at += _HEADER + length
        pending += payload
        if kind not in (_FULL, _LAST):
            continue
        record = Record()
        record.ParseFromString(pending)
        pending = b""
        which = record.WhichOneof("record_type")
        if which == "run":
            run.run = record.run
            run.config.update({_key(u): json.loads(u.value_json) for u in record.run.config.update})
        elif which == "config":
            run.config.update({_key(u): json.loads(u.value_json) for u in record.config.update})
        elif which == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif which == "summary":
            run.summary.update({_key(u): json.loads(u.value_json) for u in record.summary.update})
        elif which == "exit":
            run.exited = True
    return run


def _wandb_run(logs: TrialLogs) -> _WandbRun:
    """The offline run a trial's (or retrain's) W&B entry names."""
    run_id = logs["run_id"]
    (path,) = Path(logs["location"]).glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")
    return _read_wandb_run(path)


def _wandb_runs(directory: Path) -> dict[str, _WandbRun]:
    """Every offline run under ``directory``, by its name."""
    runs = [_read_wandb_run(path) for path in directory.glob("wandb/offline-run-*/*.wandb")]
    return {run.run.display_name: run for run in runs}


def _curve(run: _WandbRun, name: str) -> list[float]:
    return [row[name] for row in run.history if name in row]


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--logger", "csv,comet"],
            "--logger: unknown logger 'comet'; list some of csv, tensorboard, mlflow, wandb "
            "(comma-separated), or none",
        ),
        (
            ["--logger", "none,csv"],
            "--logger: none means no logger and stands alone; drop none or the others",
        ),
        (["--logger", "csv,tensorboard,csv"], "--logger: csv is listed twice; list it once"),
        (
            ["--logger", ""],
            "--logger: unknown logger ''; list some of csv, tensorboard, "
            "mlflow, wandb (comma-separated), or none",
        ),
        (
            ["--logger", "csv,tensorboard", "--mlflow-uri", "file:/tmp/x"],
            "--mlflow-uri: only --logger mlflow uses it, and csv,tensorboard does not list it",
        ),
    ],
    ids=["unknown", "none-and-another", "twice", "empty", "mlflow-uri-unused"],
)
def test_a_bad_logger_list_is_one_line_and_stores_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], expected: str
) -> None:
    ran = main_in_process(capsys, *_search(*flags, out=tmp_path))
    assert (ran.returncode, ran.stderr.strip()) == (2, f"dense-nas: error: {expected}")
    assert not (tmp_path / "dense-nas.db").exists()


@pytest.mark.parametrize(
    ("logger", "module"),
    [("tensorboard", "tensorboard"), ("mlflow", "mlflow"), ("csv,wandb", "wandb")],
)
def test_a_logger_whose_package_is_missing_names_the_extra(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    logger: str,
    module: str,
) -> None:
    # None in sys.modules is Python's own "this module cannot be imported".
    for name in (module, "tensorboardX"):
        monkeypatch.setitem(sys.modules, name, None)
    ran = main_in_process(capsys, *_search("--logger", logger, out=tmp_path))
    assert ran.returncode == 2
    assert ran.stderr.strip() == (
        f"dense-nas: error: --logger: {module} needs its package: pip install 'dense-nas[{module}]'"
    )
    assert not (tmp_path / "dense-nas.db").exists()


def test_a_study_recorded_with_one_logger_per_trial_still_reads_and_retrains(
    tmp_path: Path,
) -> None:
    old = TrialLogs(logger="csv", location=str(tmp_path / "logs" / STUDY / "trial-4"))
    assert recorded_logs(old) == [old]  # trials recorded before --logger took a list
    logs = rerun_logs(old, "retrain-trial-4", tmp_path / "logs" / STUDY)
    (logger,) = make_logger(logs, {})
    assert Path(logger.save_dir) == (tmp_path / "logs" / STUDY / "retrain-trial-4").resolve()


# --- the loggers, read back -------------------------------------------------------------


@pytest.mark.slow  # a study of two trials logging to two loggers, then a retrain: ~15-25 s
def test_csv_and_wandb_log_every_trial_and_retrain(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, wandb_offline: Path
) -> None:
    out = tmp_path / "out"
    ran = main_in_process(capsys, *_search("--logger", "csv,wandb", out=out, epochs=1))
    assert ran.returncode == 0, ran.stderr
    trained = _trained(out)
    assert len(trained) == 2
    ids = set()
    for trial in trained:
        logs = _logs(trial)
        assert list(logs) == ["csv", "wandb"]
        attrs, accuracies = trial_attrs(trial), _accuracies(trial)
        rows = _csv_rows(Path(logs["csv"]["location"]))
        assert [float(row["val/acc"]) for row in rows if row["val/acc"]] == pytest.approx(
            accuracies
        )

        wandb = logs["wandb"]
        assert Path(wandb["location"]) == wandb_offline.resolve()
        assert wandb["mode"] == "offline"
        run = _wandb_run(wandb)
        assert run.exited  # the trial process finished the run
        assert (run.run.project, run.run.run_group) == (STUDY, STUDY)
        assert run.run.display_name == f"trial-{trial.number}"
        assert run.config["config"] == attrs["arch"]  # the architecture
        assert run.config["lr"] == attrs["training"]["lr"]  # the recipe
        assert _curve(run, "val/acc") == pytest.approx(accuracies)
        assert len(_curve(run, "train/loss")) == attrs["epochs"]
        ids.add(wandb["run_id"])
    assert len(ids) == 2

    retrained = main_in_process(capsys, "retrain", "--out", str(out), "--epochs", "1")
    assert retrained.returncode == 0, retrained.stderr
    (record,) = retrain_records(_study(out))
    name = f"retrain-trial-{record['trial']}-seed-{record['seed']}-epochs-1"
    logs = {entry["logger"]: entry for entry in record["logs"]}
    assert list(logs) == ["csv", "wandb"]  # as the trials logged
    assert Path(logs["csv"]["location"]) == (out / "logs" / STUDY / name).resolve()
    rows = _csv_rows(Path(logs["csv"]["location"]))
    assert [float(row["test/acc"]) for row in rows if row["test/acc"]] == pytest.approx(
        [record["test_accuracy"]]
    )
    assert sum(1 for row in rows if row["train/loss"]) == 1  # one epoch
    run = _wandb_run(logs["wandb"])
    assert run.exited
    assert (run.run.project, run.run.run_group, run.run.display_name) == (STUDY, STUDY, name)
    assert run.summary["test/acc"] == pytest.approx(record["test_accuracy"])
    chosen = next(t for t in trained if t.number == record["trial"])
    assert run.config["config"] == trial_attrs(chosen)["arch"]
    assert _wandb_runs(wandb_offline).keys() == {f"trial-{t.number}" for t in trained} | {name}


@pytest.mark.slow  # a study of two workers logging to MLflow, then a retrain: ~30 s
def test_mlflow_nests_every_trial_and_retrain_under_one_parent_run_per_study(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's local file store
    out = tmp_path / "out"
    # two workers: their first trials start together and must not race for the experiment
    ran = main_in_process(capsys, *_search("--logger", "mlflow", "--workers", "2", out=out))
    assert ran.returncode == 0, ran.stderr
    trained = _trained(out)
    assert len(trained) == 2
    uri = _logs(trained[0])["mlflow"]["location"]
    assert uri == (out / "mlruns").resolve().as_uri()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None
    runs = {run.info.run_id: run for run in client.search_runs([experiment.experiment_id])}
    (parent,) = [run for run in runs.values() if "mlflow.parentRunId" not in run.data.tags]
    assert parent.info.run_name == STUDY
    assert len(runs) == len(trained) + 1
    for trial in trained:
        logs = _logs(trial)["mlflow"]
        run = runs[logs["run_id"]]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id == logs["parent_run_id"]
        assert run.info.run_name == f"trial-{trial.number}"
        arch = trial_attrs(trial)["arch"]
        assert run.data.params["config/growth_rate"] == str(arch["growth_rate"])
        assert float(run.data.params["lr"]) == trial_attrs(trial)["training"]["lr"]
        for name in ("train/loss", "val/loss", "val/acc"):
            history = client.get_metric_history(run.info.run_id, name)
            assert len(history) == trial_attrs(trial)["epochs"], name

    retrained = main_in_process(capsys, "retrain", "--out", str(out), "--epochs", "1")
    assert retrained.returncode == 0, retrained.stderr
    (record,) = retrain_records(_study(out))
    (logs,) = record["logs"]
    retrain = client.get_run(logs["run_id"])
    assert (
        retrain.info.run_name == f"retrain-trial-{record['trial']}-seed-{record['seed']}-epochs-1"
    )
    assert retrain.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert retrain.data.metrics["test/acc"] == pytest.approx(record["test_accuracy"])


def test_a_second_command_adopts_the_studys_mlflow_parent_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    first = prepare_loggers("csv,mlflow", tmp_path, "demo")
    second = prepare_loggers("mlflow", tmp_path, "demo")
    assert first.mlflow_parent == second.mlflow_parent is not None
    assert [logs["logger"] for logs in first.trial_logs(0)] == ["csv", "mlflow"]
    client = MlflowClient(first.mlflow_uri)
    experiment = client.get_experiment_by_name("demo")
    assert experiment is not None
    (parent,) = client.search_runs([experiment.experiment_id])
    assert (parent.info.run_id, parent.info.run_name) == (first.mlflow_parent, "demo")


@pytest.mark.parametrize(
    ("env", "mode", "noted"),
    [
        ({}, "offline", True),  # no key: offline, and the header says where the runs go
        ({"WANDB_API_KEY": "k" * 40}, "online", False),
        ({"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "offline"}, "offline", False),
    ],
    ids=["no-key", "key", "chosen"],
)
def test_wandb_is_offline_unless_an_api_key_is_known_or_wandb_mode_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], mode: str, noted: bool
) -> None:
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # no `wandb login` entry
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    loggers = prepare_loggers("wandb", tmp_path / "out", "cifar:a#1")
    (logs,) = loggers.trial_logs(7)
    assert (logs["mode"], logs["location"]) == (mode, str((tmp_path / "out").resolve()))
    assert (logs["experiment"], logs["group"], logs["run_name"]) == (
        "cifar-a-1",
        "cifar:a#1",
        "trial-7",
    )
    assert logs["run_id"] != loggers.trial_logs(7)[0]["run_id"]  # a fresh run every time
    assert bool(loggers.notes) == noted


# --- a logger: section of --trainer-config ----------------------------------------------


def _with_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the test-only logger module importable here and in every trial process."""
    import os

    monkeypatch.syspath_prepend(str(PARTS))
    paths = [str(PARTS), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            {"class_path": "no_such_module.Logger"},
            "logger: Problem with given class_path 'no_such_module.Logger': "
            "No module named 'no_such_module'",
        ),
        (
            [{"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}],
            "logger: Import path lightning.pytorch.callbacks.LearningRateMonitor does not "
            "correspond to a subclass of Logger",
        ),
        (
            [{"class_path": "recording_logger.RecordingLogger", "init_args": {"folder": "x"}}],
            "logger: Problem with given class_path 'recording_logger.RecordingLogger': "
            "Option 'folder' is not accepted",
        ),
    ],
    ids=["no-module", "not-a-logger", "bad-init-arg"],
)
def test_a_refused_logger_section_is_one_line_and_stores_nothing(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    section: Any,
    expected: str,
) -> None:
    _with_parts(monkeypatch)
    config = tmp_path / "trainer.yaml"
    config.write_text(yaml.safe_dump({"logger": section}))
    ran = main_in_process(capsys, *_search("--trainer-config", str(config), out=tmp_path))
    assert ran.returncode == 2
    assert ran.stderr.strip() == f"dense-nas: error: --trainer-config: {expected}"
    assert not (tmp_path / "dense-nas.db").exists()


@pytest.mark.slow  # a study of two trials with the user's loggers, then a retrain: ~20 s
def test_a_logger_section_adds_the_users_loggers_to_every_trial_and_retrain(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _with_parts(monkeypatch)
    recordings, own_csv = tmp_path / "recordings", tmp_path / "own-csv"
    config = tmp_path / "trainer.yaml"
    section = [
        {
            "class_path": "recording_logger.RecordingLogger",
            "init_args": {"directory": str(recordings), "tag": "mine"},
        },
        {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(own_csv)},
        },
    ]
    config.write_text(yaml.safe_dump({"logger": section}))
    out = tmp_path / "out"
    flags = ("--logger", "none", "--trainer-config", str(config))
    assert main_in_process(capsys, *_search(*flags, out=out)).returncode == 0
    trained = _trained(out)
    assert len(trained) == 2
    assert all("logs" not in trial_attrs(trial) for trial in trained)  # --logger none
    runs = [json.loads(path.read_text()) for path in recordings.iterdir()]
    by_arch = {json.dumps(run["params"]["config"], sort_keys=True): run for run in runs}
    assert len(runs) == len(by_arch) == 2
    for trial in trained:
        run = by_arch[json.dumps(trial_attrs(trial)["arch"], sort_keys=True)]
        assert (run["tag"], run["status"]) == ("mine", "success")
        curve = [m["val/acc"] for m in run["metrics"] if "val/acc" in m]
        assert curve == pytest.approx(_accuracies(trial))
    versions = sorted(path.name for path in (own_csv / "lightning_logs").iterdir())
    assert versions == ["version_0", "version_1"]  # a CSVLogger of its own per trial

    retrained = main_in_process(capsys, "retrain", "--out", str(out), "--epochs", "1")
    assert retrained.returncode == 0, retrained.stderr
    runs = [json.loads(path.read_text()) for path in recordings.iterdir()]
    (retrain,) = [run for run in runs if any("test/acc" in m for m in run["metrics"])]
    (record,) = retrain_records(_study(out))
    assert record["logs"] == []  # --logger none: the section's loggers only
    assert [m["test/acc"] for m in retrain["metrics"] if "test/acc" in m] == pytest.approx(
        [record["test_accuracy"]]
    )

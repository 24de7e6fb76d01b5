"""``dense-nas retrain``: train + validation from scratch, test accuracy, resume, records."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import torch
from optuna.artifacts import download_artifact

from dense_nas.cli import main
from dense_nas.records import study_attrs
from dense_nas.results.retrain import LAST, retrain, run_dir
from dense_nas.study.storage import artifact_store
from tests._study_fixtures import (
    BuiltStudy,
    Spec,
    build_study,
    ctrl_c_reaches_it,
    empty_study,
    shared_study,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Two blocks of three BC layers, k=12, 20 epochs: 98.3% to 98.9% test accuracy on digits
#: over study seeds 0 to 4 (12 epochs gave 97.7% to 98.6%: too close to the bar).
GOOD = Spec(growth_rate=12, layers=3, lr=0.1, epochs=1)
EPOCHS = 20


def _retrain_args(built: BuiltStudy, *extra: str) -> list[str]:
    return [
        "retrain",
        "--study",
        built.name,
        "--storage",
        built.storage,
        "--out",
        str(built.out),
        "--accelerator",
        "cpu",
        *extra,
    ]


def _interrupt_after_first_epoch(built: BuiltStudy) -> subprocess.CompletedProcess[str]:
    """Start ``python -m dense_nas retrain``, press Ctrl-C once a checkpoint exists."""
    last = run_dir(built.out, built.name) / LAST
    process = subprocess.Popen(
        [sys.executable, "-m", "dense_nas", *_retrain_args(built, "--epochs", str(EPOCHS))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=ctrl_c_reaches_it,
    )
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
def test_retrain_reaches_97_percent_and_resumes_after_ctrl_c(tmp_path: Path) -> None:
    built = build_study(tmp_path, "good", [GOOD])
    interrupted = _interrupt_after_first_epoch(built)
    assert interrupted.returncode == 130, interrupted.stderr
    assert "run the same command again to resume" in interrupted.stderr
    done = torch.load(run_dir(built.out, built.name) / LAST, weights_only=True)["epoch"] + 1
    assert 1 <= done < EPOCHS

    result = retrain(built.storage, built.name, epochs=EPOCHS, out=built.out, accelerator="cpu")
    assert result.resumed_from_epoch == done
    assert result.test_accuracy >= 0.97
    assert result.checkpoint == run_dir(built.out, built.name) / LAST
    assert torch.load(result.checkpoint, weights_only=True)["epoch"] + 1 == EPOCHS
    assert study_attrs(built.load())["retrain"] == result.to_dict()
    assert result.precision == "32-true"

    again = retrain(built.storage, built.name, epochs=EPOCHS, out=built.out, accelerator="cpu")
    assert again.resumed_from_epoch == EPOCHS  # nothing left to train: the same weights
    assert again.test_accuracy == result.test_accuracy


def test_retrain_trains_from_scratch_and_prints_test_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_study(tmp_path, "tiny", [Spec(growth_rate=4, layers=1)])
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert main(_retrain_args(built, "--epochs", "1", "--precision", "bf16-mixed")) == 0
    assert [str(w.message) for w in shown] == []  # Lightning's warnings stay off the terminal
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("trial 0: test accuracy 0.") and "after 1 epochs" in out
    assert "resumed" not in out
    assert (run_dir(built.out, built.name) / LAST).is_file()
    recorded = study_attrs(built.load())["retrain"]
    assert recorded["epochs"] == 1 and recorded["precision"] == "bf16-mixed"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--precision", "16-mixed"],
            "--precision: 16-mixed needs a GPU; on the CPU use bf16-mixed or 32-true",
        ),
        pytest.param(
            ["--accelerator", "gpu"],
            "--accelerator: gpu asked for but no CUDA device is visible; use cpu",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible"),
        ),
    ],
)
def test_device_settings_this_machine_cannot_train_with_exit_2_before_training(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_study(tmp_path, "tiny", [Spec(growth_rate=4, layers=1)])
    assert main(_retrain_args(built, *flags)) == 2  # the last --accelerator given wins
    assert capsys.readouterr().err == f"dense-nas: error: {message}\n"
    assert not run_dir(built.out, built.name).exists()
    assert "retrain" not in study_attrs(built.load())


def test_last_checkpoint_of_another_architecture_exits_2(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    built = build_study(tmp_path, "tiny", [Spec(growth_rate=4, layers=1)])
    other = shared_study(tmp_path_factory.getbasetemp(), "single").load()
    directory = run_dir(built.out, built.name)
    directory.mkdir(parents=True)
    download_artifact(
        artifact_store=artifact_store(other),
        file_path=str(directory / LAST),
        artifact_id=other.trials[1].user_attrs["checkpoint"],
    )
    assert main(_retrain_args(built)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dense-nas: error: retrain: {directory / LAST} belongs to another run")
    assert "config" in err and err.count("\n") == 1
    shutil.rmtree(directory)  # the fix the message names
    assert "retrain" not in study_attrs(built.load())


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_missing_or_empty_study_exits_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    built = empty_study(tmp_path)
    args = _retrain_args(built)
    if case == "missing":
        args[2] = "nope"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("no study named 'nope'" if case == "missing" else "no completed trials") in err

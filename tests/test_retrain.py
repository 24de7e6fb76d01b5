"""``dense-nas retrain``: train + validation from scratch, test accuracy, resume, records."""

from __future__ import annotations

import json
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
from dense_nas.records import record_study, retrain_records, study_attrs
from dense_nas.results.retrain import LAST, RetrainRun, retrain, run_dir
from dense_nas.study.storage import artifact_store
from tests._study_fixtures import (
    BuiltStudy,
    Spec,
    build_study,
    ctrl_c_reaches_it,
    empty_study,
    shared_study,
)
from tests.helpers import ROOT, main_in_process

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Two blocks of three BC layers, k=12, 20 epochs: 98.3% to 98.9% test accuracy on digits
#: over study seeds 0 to 4 (12 epochs gave 97.7% to 98.6%: too close to the bar).
GOOD = Spec(growth_rate=12, layers=3, lr=0.1, epochs=1)
EPOCHS = 20
PARTS = ROOT / "tests" / "plugins" / "lightning_parts"
RENDEZVOUS = "rendezvous_callback.RendezvousCallback"


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
    last = run_dir(built.out, built.name, RetrainRun(0, 0, EPOCHS)) / LAST
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
    directory = run_dir(built.out, built.name, RetrainRun(0, 0, EPOCHS))
    done = torch.load(directory / LAST, weights_only=True)["epoch"] + 1
    assert 1 <= done < EPOCHS

    (result,) = retrain(built.storage, built.name, epochs=EPOCHS, out=built.out, accelerator="cpu")
    assert result.resumed_from_epoch == done
    assert result.test_accuracy >= 0.97
    assert result.checkpoint == directory / LAST
    assert torch.load(result.checkpoint, weights_only=True)["epoch"] + 1 == EPOCHS
    assert retrain_records(built.load()) == [result.to_record()]
    assert result.precision == "32-true"

    (again,) = retrain(built.storage, built.name, epochs=EPOCHS, out=built.out, accelerator="cpu")
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
    assert out.startswith("trial 0 seed 0: test accuracy 0.") and "after 1 epochs" in out
    assert "resumed" not in out
    assert (run_dir(built.out, built.name, RetrainRun(0, 0, 1)) / LAST).is_file()
    (recorded,) = retrain_records(built.load())
    assert recorded["epochs"] == 1 and recorded["precision"] == "bf16-mixed"
    assert recorded["logs"] == []  # the study's trials logged nowhere


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
    assert not (built.out / "retrain").exists()
    assert "retrains" not in study_attrs(built.load())


def test_last_checkpoint_of_another_architecture_exits_2(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    built = build_study(tmp_path, "tiny", [Spec(growth_rate=4, layers=1)])
    other = shared_study(tmp_path_factory.getbasetemp(), "single").load()
    directory = run_dir(built.out, built.name, RetrainRun(0, 0, 1))
    directory.mkdir(parents=True)
    download_artifact(
        artifact_store=artifact_store(other),
        file_path=str(directory / LAST),
        artifact_id=other.trials[1].user_attrs["checkpoint"],
    )
    assert main(_retrain_args(built)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dense-nas: error: retrain: {directory / LAST} belongs to another run")
    assert f"delete {directory}" in err and err.count("\n") == 1
    shutil.rmtree(directory)  # the fix the message names
    assert "retrains" not in study_attrs(built.load())


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


#: Three architectures and a duplicate of the first: two of them, by accuracy, are the top 2.
THREE = (
    Spec(growth_rate=4, layers=1),
    Spec(growth_rate=6, layers=1),
    Spec(growth_rate=4, layers=1, duplicate_of=0),
    Spec(growth_rate=2, layers=1),
)
#: What studies retrained before every run was kept recorded: their one result.
OLD_RESULT = {
    "trial": 3,
    "arch_key": "old",
    "epochs": 1,
    "resumed_from_epoch": 0,
    "test_accuracy": 0.5,
    "checkpoint": "last.ckpt",
    "precision": "32-true",
}


def _top_two(built: BuiltStudy) -> list[int | str]:
    """The trials ``--top 2`` takes: the two best architectures (the duplicate left out)."""
    from dense_nas.results.selection import best_architectures

    return [t.name for t in best_architectures(built.load())[:2]]


def _runs(built: BuiltStudy) -> list[tuple[int | str, int, int, float]]:
    return sorted(
        (r["trial"], r["seed"], r["epochs"], r["test_accuracy"])
        for r in retrain_records(built.load())
    )


def test_top_2_with_2_seeds_keeps_4_runs_and_shows_mean_and_std_per_architecture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_study(tmp_path, "three", THREE, logger="csv")
    study = built.load()
    record_study(study, retrain=OLD_RESULT)  # an old study's one result reads on
    top = _top_two(built)
    assert 2 not in top  # trial 2 repeats trial 0's architecture

    ran = main_in_process(capsys, *_retrain_args(built, "--top", "2", "--seeds", "2"))
    assert ran.returncode == 0, ran.stderr
    records = retrain_records(built.load())
    assert records[0]["arch_key"] == "old" and records[0]["seconds"] is None
    new = records[1:]
    assert sorted((r["trial"], r["seed"]) for r in new) == [
        (t, s) for t in sorted(top) for s in (0, 1)
    ]
    for record in new:
        assert record["epochs"] == 1 and record["seconds"] and record["finished"]
        (logs,) = record["logs"]
        assert logs["logger"] == "csv"  # as the study's trials logged
        name = f"retrain-trial-{record['trial']}-seed-{record['seed']}-epochs-1"
        assert Path(logs["location"]) == (built.out / "logs" / built.name / name).resolve()
        assert "test/acc" in (Path(logs["location"]) / "metrics.csv").read_text()
    for number in top:  # one line of mean ± std over 2 seeds per architecture
        accs = [r["test_accuracy"] for r in new if r["trial"] == number]
        mean, std = sum(accs) / 2, abs(accs[0] - accs[1]) / 2**0.5
        row = f"{number}       1      2  {mean:.4f} ± {std:.4f}"
        assert row in ran.stdout
        shown = main_in_process(capsys, "best", "--storage", built.storage, "--study", built.name)
        assert row in shown.stdout

    report = tmp_path / "report"
    args = ("report", "--storage", built.storage, "--study", built.name, "--output", str(report))
    assert main_in_process(capsys, *args).returncode == 0
    summary = (report / "summary.md").read_text()
    for number in top:
        accs = [r["test_accuracy"] for r in new if r["trial"] == number]
        mean, std = sum(accs) / 2, abs(accs[0] - accs[1]) / 2**0.5
        assert f"| {number} | 1 | 2 | {mean:.4f} ± {std:.4f} |" in summary

    # A second retrain adds its run; no earlier one goes.
    again = _retrain_args(built, "--trial", str(top[0]), "--seed", "7")
    assert main_in_process(capsys, *again).returncode == 0
    after = retrain_records(built.load())
    assert after[:-1] == records and (after[-1]["trial"], after[-1]["seed"]) == (top[0], 7)
    best = main_in_process(
        capsys, "best", "--json", "--storage", built.storage, "--study", built.name
    )
    retrained = {arch["trials"][0]: arch for arch in json.loads(best.stdout)["retrained"]}
    assert retrained[top[0]]["n"] == 3 and retrained[top[1]]["n"] == 2
    assert retrained[top[0]]["seeds"] == [0, 1, 7]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--top", "0"], "--top: must be at least 1, got 0"),
        (["--seeds", "0"], "--seeds: must be 1 to 100, got 0"),
        (["--seeds", "101"], "--seeds: must be 1 to 100, got 101"),
        (
            ["--top", "4"],
            "--top: 4 trials asked for, but study 'single' has 3 to retrain (completed, one "
            "per architecture); use --top 3 or less",
        ),
        (
            ["--top", "1", "--trial", "0"],
            "--top: --top takes the best trials itself; give --top or --trial, not both",
        ),
        (["--trial", "1", "--trial", "1"], "--trial: trial 1 is given twice; give it once"),
        (["--seed", "-1"], "--seed: must be 0 to 4294967295 (--seeds 1), got -1"),
        (
            ["--seed", "4294967295", "--seeds", "2"],
            "--seed: must be 0 to 4294967294 (--seeds 2), got 4294967295",
        ),
    ],
)
def test_bad_top_seeds_or_trials_exit_2_with_nothing_stored_or_trained(
    flags: list[str],
    message: str,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    built = shared_study(tmp_path_factory.getbasetemp(), "single")
    before = built.load().user_attrs
    ran = main_in_process(capsys, *_retrain_args(built, *flags))
    assert (ran.returncode, ran.stderr) == (2, f"dense-nas: error: {message}\n")
    assert ran.stdout == ""
    assert built.load().user_attrs == before
    assert not (built.out / "retrain").exists()


@pytest.mark.slow  # two worker processes import torch: about 40 s on 2 busy cores
def test_two_workers_train_at_once_in_their_own_processes_and_record_the_same_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = build_study(tmp_path / "alone", "three", THREE)
    ran = main_in_process(
        capsys, *_retrain_args(alone, "--top", "2", "--seeds", "2", "--threads", "1")
    )
    assert ran.returncode == 0, ran.stderr

    # Each run waits until two processes have started one: only workers at once get on.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PARTS), *sys.path])))
    met = tmp_path / "met"
    paired = build_study(tmp_path / "paired", "three", THREE)
    rendezvous = {"class_path": RENDEZVOUS, "init_args": {"directory": str(met), "timeout": 300}}
    record_study(paired.load(), trainer_config={"trainer": {}, "callbacks": [rendezvous]})
    args = _retrain_args(paired, "--top", "2", "--seeds", "2", "--threads", "1", "--workers", "2")
    ran = main_in_process(capsys, *args)
    assert ran.returncode == 0, ran.stderr
    pids = {int(p.name) for p in met.iterdir()}
    assert len(pids) == 2 and os.getpid() not in pids
    assert _runs(paired) == _runs(alone)  # the same runs, seeds and test accuracies

"""Search studies end to end: real trial processes, real storages, real kills."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from dense_nas.model.module import DenseNetModule
from dense_nas.records import failure_reason
from dense_nas.results import load_best
from dense_nas.results.retrain import retrain
from dense_nas.space import Task, load_space
from dense_nas.study import search
from dense_nas.study.process import TrialProcess, TrialSpec
from dense_nas.study.process.messages import EpochMessage
from dense_nas.study.process.runner import Answer
from dense_nas.study.storage import make_storage
from tests._study_fixtures import BuiltStudy, ctrl_c_reaches_it
from tests.helpers import TINY_SPACE, cli, main_in_process, search_args, wait_for
from tests.test_data_files import write_svhn

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def test_trials_record_what_users_need(tmp_path: Path) -> None:
    lines: list[str] = []
    study = search(
        space=TINY_SPACE, n_trials=3, out=tmp_path, accelerator="cpu", threads=1, echo=lines.append
    )
    assert _finished(study) == 3 and len(lines) == 4
    assert lines[0].startswith("study 'test-tiny-digits' in sqlite:///") and "0 of 3" in lines[0]
    assert all(line.startswith("trial ") and " best " in line for line in lines[1:])
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete
    for trial in complete:
        attrs = trial.user_attrs
        for key in ("arch", "training", "params", "macs", "epochs", "seconds", "images_per_second"):
            assert key in attrs, key
        assert attrs["precision"] == "32-true"  # what the CPU trains in unless asked
        assert 0.0 <= trial.value <= 1.0  # type: ignore[operator]
        assert attrs["epochs"] == 2 and attrs["images_per_second"] > 0
        if "duplicate_of" not in attrs:
            assert "checkpoint" in attrs
    assert study.user_attrs["data"] == "digits" and study.user_attrs["objective"] == "accuracy"


def test_resume_reaches_the_requested_total(tmp_path: Path) -> None:
    first = search(
        space=TINY_SPACE, n_trials=2, out=tmp_path, accelerator="cpu", threads=1, study_name="r"
    )
    assert _finished(first) == 2
    again = search(
        space=TINY_SPACE, n_trials=4, out=tmp_path, accelerator="cpu", threads=1, study_name="r"
    )
    assert _finished(again) == 4
    done = search(
        space=TINY_SPACE, n_trials=4, out=tmp_path, accelerator="cpu", threads=1, study_name="r"
    )
    assert len(done.trials) == len(again.trials)  # already complete: nothing new runs


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_two_workers_finish_exactly_the_budget(tmp_path: Path, storage: str) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}" if storage == "sqlite" else str(tmp_path / "s.journal")
    study = search(
        space=TINY_SPACE,
        n_trials=8,
        epochs=1,
        workers=2,
        storage=url,
        out=tmp_path,
        accelerator="cpu",
        threads=1,
        pruner="none",
    )
    reloaded = optuna.load_study(study_name=study.study_name, storage=make_storage(url, tmp_path))
    assert _finished(reloaded) == 8
    assert _states(reloaded).get("RUNNING", 0) == 0


def _search_args(study: str, trials: int, epochs: int, extra: list[str]) -> list[str]:
    """`dense-nas search` on the tiny space, one CPU thread, no pruner, plus ``extra``."""
    return search_args(*extra, trials=trials, epochs=epochs, study=study, pruner="none")


def _trials_told(output: str) -> set[int]:
    """The numbers of the trials a `dense-nas search` ran, from its line per finished trial."""
    return {int(number) for number in re.findall(r"^trial +(\d+) ", output, flags=re.MULTILINE)}


@pytest.mark.slow  # four interpreters import Lightning: two commands and their trial processes
def test_postgresql_study_shared_by_two_machines(tmp_path: Path, postgres_url: str) -> None:
    """Two separate `dense-nas search` processes (two machines) fill one budget exactly."""
    args = _search_args("shared", trials=8, epochs=1, extra=["--storage", postgres_url])
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dense_nas", *args, "--out", str(tmp_path / f"m{i}")],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    ran = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        ran.append(_trials_told(out))
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    assert _finished(study) == 8
    assert _states(study).get("RUNNING", 0) == 0
    assert all(ran), f"trials each machine ran: {ran}"  # both trained into the one study
    assert not ran[0] & ran[1]  # no trial twice
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert ran[0] | ran[1] == {t.number for t in finished}
    assert len({json.dumps(t.user_attrs.get("arch")) for t in study.trials}) > 1


@pytest.mark.slow  # its trial runs as two DDP ranks: two more interpreters import Lightning
def test_ddp_trial_builds_the_same_model_on_both_ranks(tmp_path: Path) -> None:
    study = search(
        space=TINY_SPACE,
        n_trials=1,
        out=tmp_path,
        accelerator="cpu",
        threads=1,
        devices=2,
        pruner="none",
    )
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("failure")
    ranks = trial.user_attrs["ranks"]
    assert len(ranks) == 2
    assert ranks[0]["arch_key"] == ranks[1]["arch_key"]
    assert trial.user_attrs["arch_key"].startswith(ranks[0]["arch_key"])


def test_ddp_prune_decision_stops_every_rank(tmp_path: Path) -> None:
    space = load_space(TINY_SPACE)
    study = optuna.create_study(direction="maximize")
    from dense_nas.space import sample

    candidate = sample(space, study.ask(), Task(10, 1, (8, 8)))
    spec = TrialSpec(
        number=0,
        arch=candidate.arch.to_dict(),
        training=candidate.training.replace(epochs=5).to_dict(),
        data="digits",
        accelerator="cpu",
        threads=1,
        devices=2,
    )
    asked: list[int] = []

    def prune_after_first(report: EpochMessage, answer: Answer) -> None:
        asked.append(report["epoch"])
        answer(report["epoch"] >= 1)

    runner = TrialProcess(log_path=tmp_path / "log")
    try:
        result = runner.run(spec, prune_after_first, tmp_path)
    finally:
        runner.close()
    assert result["type"] == "result", result
    assert result["pruned"] and asked == [1]
    assert [r["epochs"] for r in result["ranks"]] == [1, 1]


def test_failing_trials_are_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    diverging = str(Path(TINY_SPACE).with_name("diverging.yaml"))
    study = search(
        space=diverging, n_trials=2, out=tmp_path, accelerator="cpu", threads=1, timeout=120
    )
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert failed
    assert all("train/loss" in t.user_attrs["failure"] for t in failed)
    assert _states(study).get("RUNNING", 0) == 0


def test_crashed_trial_process_is_a_failed_trial(tmp_path: Path) -> None:
    spec = TrialSpec(
        number=0,
        arch={"growth_rate": 4, "block_layers": [1], "in_channels": 1},
        training={"batch_size": 128, "epochs": 3},
        data="digits",
    )
    runner = TrialProcess(log_path=tmp_path / "log")

    def kill_it(report: EpochMessage, answer: Answer) -> None:
        assert runner._proc is not None
        runner._proc.send_signal(signal.SIGKILL)
        answer(False)

    try:
        crashed = runner.run(spec, kill_it, tmp_path)
        again = runner.run(
            spec, lambda report, answer: answer(False), tmp_path
        )  # a new process serves
    finally:
        runner.close()
    assert crashed == {
        "type": "error",
        "kind": "signal",
        "reason": "trial process killed by SIGKILL (out of memory?)",
    }
    assert again["type"] == "result" and again["epochs"] == 3


def test_constraint_violations_are_pruned_before_training(tmp_path: Path) -> None:
    study = search(
        space=TINY_SPACE, n_trials=3, out=tmp_path, accelerator="cpu", threads=1, max_params=600
    )
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    reasons = [t.user_attrs.get("pruned_reason", "") for t in pruned]
    assert any("max_params" in r for r in reasons)
    for trial in pruned:
        if "max_params" in trial.user_attrs.get("pruned_reason", ""):
            assert "epochs" not in trial.user_attrs  # never trained


def test_multi_objective_gives_a_pareto_front(tmp_path: Path) -> None:
    study = search(
        space=TINY_SPACE,
        n_trials=4,
        out=tmp_path,
        accelerator="cpu",
        threads=1,
        objective="accuracy,params",
    )
    assert len(study.directions) == 2
    front = study.best_trials
    assert front and all(t.values[1] == t.user_attrs["params"] for t in front)
    assert all("intermediate" in t.user_attrs for t in front if "duplicate_of" not in t.user_attrs)


def test_dominated_at_equal_budget_rule() -> None:
    from dense_nas.study.objectives import parse_objective

    objective = parse_objective("accuracy,params")
    study = optuna.create_study(directions=["maximize", "minimize"])
    for params, acc in [(100, 0.9), (200, 0.95), (300, 0.97), (400, 0.99)]:
        study.enqueue_trial({}, user_attrs={"params": params, "intermediate": {"1": acc - 0.2}})
        trial = study.ask()
        study.tell(trial, [acc, params])
    assert objective.dominated(study, size=250, epoch=1, value=0.5)  # the 100/200 ones beat it
    assert not objective.dominated(study, size=50, epoch=1, value=0.5)  # smaller than all
    assert not objective.dominated(study, size=500, epoch=1, value=0.9)  # best so far
    assert not objective.dominated(study, size=250, epoch=2, value=0.1)  # no one at epoch 2


def _search_until_training(args: list[str], cwd: Path, study_name: str) -> subprocess.Popen[str]:
    """Start `dense-nas ARGS` and return once one of its trials trains (or fail the test)."""
    storage = make_storage(None, cwd)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dense_nas", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_reaches_it,
    )

    def training() -> bool:
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:
            return False
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return any("arch" in t.user_attrs for t in running)

    try:
        wait_for(training, 120, "a trial to start training")
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc


@pytest.mark.slow  # its own command, killed, then a rerun: three interpreters import Lightning
def test_sigkilled_worker_trial_is_failed_and_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _search_args(
        "k", trials=3, epochs=30, extra=["--heartbeat", "2", "--out", str(tmp_path)]
    )
    storage = make_storage(None, tmp_path)
    worker = _search_until_training(args, tmp_path, "k")
    os.kill(worker.pid, signal.SIGKILL)
    worker.communicate()
    # The rerun may train briefly; the kill is the point.
    rerun = main_in_process(
        capsys, *_search_args("k", 3, 1, ["--heartbeat", "2", "--out", str(tmp_path)])
    )
    assert rerun.returncode == 0, rerun.stderr
    study = optuna.load_study(study_name="k", storage=storage)
    assert _states(study).get("RUNNING", 0) == 0
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and "heartbeat" in (failure_reason(failed[0], study.trials) or "")
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == failed[0].number]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retries[0].params == failed[0].params
    assert _finished(study) == 3


@pytest.mark.slow  # its own command, interrupted, then a resume: three interpreters as above
def test_ctrl_c_stops_cleanly_and_resume_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _search_args("c", trials=2, epochs=40, extra=["--out", str(tmp_path)])
    storage = make_storage(None, tmp_path)
    proc = _search_until_training(args, tmp_path, "c")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and "run the same command again to resume" in err
    study = optuna.load_study(study_name="c", storage=storage)
    assert _states(study).get("RUNNING", 0) == 0
    (interrupted,) = study.get_trials(states=(TrialState.FAIL,))
    assert "interrupted" in interrupted.user_attrs["failure"]
    resumed = main_in_process(capsys, *_search_args("c", 2, 1, ["--out", str(tmp_path)]))
    assert resumed.returncode == 0, resumed.stderr
    assert _finished(optuna.load_study(study_name="c", storage=storage)) == 2


def test_best_prints_a_table_and_json(
    single: BuiltStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = make_storage(None, tmp_path)  # where --out puts it
    optuna.copy_study(
        from_study_name=single.name,
        from_storage=single.storage,
        to_storage=storage,
        to_study_name="b",
    )
    table = main_in_process(capsys, "best", "--out", str(tmp_path))  # the only study: no --study
    assert table.returncode == 0, table.stderr
    assert "val acc" in table.stdout and "params" in table.stdout
    as_json = main_in_process(capsys, "best", "--study", "b", "--out", str(tmp_path), "--json")
    best = json.loads(as_json.stdout)["best"]
    assert best and {"trial", "accuracy", "params", "macs", "epochs", "arch"} <= set(best[0])

    optuna.create_study(study_name="other", storage=storage)
    ambiguous = main_in_process(capsys, "best", "--out", str(tmp_path))
    assert ambiguous.returncode == 2
    assert ambiguous.stderr.strip().endswith("holds 2 studies (b, other); name one with --study")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["search", "--objective", "loss"], "--objective"),
        (["search", "--sampler", "bayes"], "--sampler"),
        (["search", "--pruner", "early"], "--pruner"),
        (["search", "--trials", "0"], "--trials"),
        (["search", "--storage", "mongodb://localhost/x"], "--storage"),
        (["search", "--data", "imagenet22k"], "data"),
        (["search", "--space", "no-such-space"], "no-such-space"),
        (["best", "--study", "missing"], "--storage: no study storage"),  # none in --out
        (["best"], "--storage: no study storage"),
        (["search", "--val-size", "5000"], "--val-size:"),
        (["search", "--val-size", "1.5"], "--val-size:"),
        (["search", "--precision", "64-true"], "--precision"),
        (["search", "--accelerator", "cpu", "--precision", "16-mixed"], "--precision"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    field: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    result = main_in_process(capsys, *args, "--out", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in result.stderr


@pytest.mark.slow
def test_default_search_finds_a_good_digits_model(tmp_path: Path) -> None:
    """`dense-nas search` with no flags: digits, >= 97%, some trials pruned.

    How long it takes is measured, not asserted (about 2 minutes on 2 idle cores; see
    benchmarks/RESULTS.md): beside the rest of the suite on a busy machine it takes much longer, so the
    timeout only guards against a hang.
    """
    result = cli("search", cwd=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(
        study_name="digits-tiny-digits", storage=make_storage(None, tmp_path / "dense-nas-runs")
    )
    assert study.best_value >= 0.97
    assert study.get_trials(states=(TrialState.PRUNED,))
    assert "best trials" in result.stdout


#: A timeout that ends a study before it starts a trial: what it records up front, cheaply.
BEFORE_ANY_TRIAL = 1e-9


def _one_short_trial(out: Path, name: str, epochs: int | None = 1, **options: Any) -> optuna.Study:
    """A study of one trial over the tiny space (one epoch unless told), on one CPU thread."""
    return search(
        space=TINY_SPACE,
        n_trials=1,
        epochs=epochs,
        study_name=name,
        out=out,
        accelerator="cpu",
        threads=1,
        **options,
    )


def test_hyperband_knows_the_trial_length_before_any_trial_finishes(tmp_path: Path) -> None:
    """Its brackets come from --epochs, else the space's epochs: not from a first full trial."""
    from_space = _one_short_trial(tmp_path, "s", epochs=None, timeout=BEFORE_ANY_TRIAL)
    assert from_space.trials == []
    assert isinstance(from_space.pruner, optuna.pruners.HyperbandPruner)
    assert vars(from_space.pruner)["_max_resource"] == 2  # tiny.yaml trains 2 epochs
    from_flag = _one_short_trial(tmp_path, "e", timeout=BEFORE_ANY_TRIAL)
    assert vars(from_flag.pruner)["_max_resource"] == 1  # --epochs 1


def test_resuming_with_another_objective_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _one_short_trial(tmp_path, "o", timeout=BEFORE_ANY_TRIAL)  # the objective is set up front
    result = main_in_process(
        capsys,
        "search",
        "--space",
        TINY_SPACE,
        "--study",
        "o",
        "--objective",
        "accuracy,params",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dense-nas: error: --objective: study 'o' was made with another objective (accuracy); "
        "use --objective accuracy or a new --study"
    ]
    study = optuna.load_study(study_name="o", storage=make_storage(None, tmp_path))
    assert study.trials == [] and study.user_attrs["objective"] == "accuracy"


def test_bf16_mixed_trains_on_the_cpu_when_asked_and_the_trial_records_it(
    tmp_path: Path,
) -> None:
    study = _one_short_trial(tmp_path, "p", precision="bf16-mixed")
    (trial,) = study.get_trials(states=(TrialState.COMPLETE,))
    assert trial.user_attrs["precision"] == "bf16-mixed"  # as the trial's Trainer reports it
    assert trial.value is not None and 0.0 < trial.value <= 1.0


def test_val_size_sets_the_validation_split_for_the_studys_life(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _one_short_trial(tmp_path, "v", val_size=0.3)
    # 30% of the 1,438 digits outside the test set: accuracies count out of 431 images.
    (trial,) = study.get_trials(states=(TrialState.COMPLETE,))
    assert trial.value is not None and 0.0 < trial.value < 1.0
    correct = trial.value * 431  # a float32 mean of 431 zeros and ones
    assert abs(correct - round(correct)) < 1e-3
    assert abs(trial.value * 144 - round(trial.value * 144)) > 1e-3  # not the default 144
    assert study.user_attrs["val_size"] == 0.3

    resumed = main_in_process(
        capsys, "search", "--space", TINY_SPACE, "--study", "v", "--out", str(tmp_path)
    )
    assert resumed.returncode == 2
    assert resumed.stderr.strip().splitlines() == [
        "dense-nas: error: --val-size: study 'v' validates on val size 0.3; "
        "use --val-size 0.3 or a new --study"
    ]


@pytest.mark.slow  # a search, a retrain and a reload: about 25 s
def test_unaugmented_data_trains_records_and_reloads_the_papers_dropout(tmp_path: Path) -> None:
    data = tmp_path / "svhn"
    for split, images in (("train", 40), ("test", 8)):
        write_svhn(data, f"{split}_32x32.mat", images, seed=0)
    study = _one_short_trial(tmp_path, "d", data="svhn", data_dir=data)
    (trial,) = study.get_trials(states=(TrialState.COMPLETE,))
    # SVHN is not augmented and the tiny space leaves dropout unset: the paper's 0.2.
    assert trial.user_attrs["arch"]["dropout"] == 0.2
    assert "drop=0.2;" in trial.user_attrs["arch_key"]
    reloaded = load_best(None, "d", out=tmp_path)
    (retrained,) = retrain(None, "d", epochs=1, out=tmp_path, accelerator="cpu")
    checkpoint = DenseNetModule.load_from_checkpoint(retrained.checkpoint, weights_only=True)
    for module in (reloaded, checkpoint):
        drops = [m.p for m in module.modules() if isinstance(m, torch.nn.Dropout)]
        assert drops and set(drops) == {0.2}

"""Faults a study survives: full disks, killed trial processes, retries within a limit.

The disks are real: small tmpfs file systems mounted for the test (skipped where mount
is not permitted), filled up with a real file. The kills are real SIGKILLs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from benchmarks.chaos import outcome, process_tree
from dense_nas.records import ARTIFACT_ROOT_ATTR, failure_reason, trial_attrs
from dense_nas.study import search
from dense_nas.study import storage as storage_module
from dense_nas.study.coordination.heartbeats import retry_silent_trials
from dense_nas.study.process.trial import _error
from dense_nas.study.storage import make_storage
from tests._study_fixtures import BuiltStudy
from tests.helpers import TINY_SPACE, main_in_process, search_args, wait_for

optuna.logging.set_verbosity(optuna.logging.WARNING)

NO_SPACE = f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}"


@contextlib.contextmanager
def full_tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path``, filled up by the file ``filler``."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(folder: Path) -> Path:
    """Write ``folder/filler`` until the file system is full; returns it."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    with contextlib.suppress(OSError), filler.open("ab", buffering=0) as f:
        while True:  # and the last bytes of the last page
            f.write(b"\0")
    return filler


def _search_args(out: Path, trials: int, *extra: str) -> list[str]:
    return search_args(*extra, trials=trials, out=out, quiet=True)


def test_retries_must_be_a_small_whole_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in ("-1", "101"):
        ran = main_in_process(capsys, *_search_args(tmp_path / "out", 1, "--retries", bad))
        assert ran.returncode == 2
        assert ran.stderr.strip().splitlines() == [
            f"dense-nas: error: --retries: must be a whole number from 0 to 100, got {bad}"
        ]
    assert not (tmp_path / "out" / "dense-nas.db").exists()


def test_running_out_of_memory_is_told_apart_from_other_errors() -> None:
    try:
        torch.empty(1 << 50, dtype=torch.uint8)  # a petabyte: the CPU allocator refuses
    except RuntimeError as err:
        out_of_memory = _error(err)
    assert out_of_memory["kind"] == "out-of-memory", out_of_memory["reason"]
    assert _error(ValueError("train/loss is NaN"))["kind"] == "error"


def test_silent_trials_are_retried_within_the_limit() -> None:
    study = optuna.create_study()
    study.enqueue_trial({}, user_attrs={"attempt": 3, "retry_of": 7})
    last_try = study.ask()
    first_try = study.ask()
    for trial in (last_try, first_try):
        trial.set_user_attr("heartbeat", 0.0)  # last heard of in 1970
    assert sorted(retry_silent_trials(study, grace=30.0, retries=2)) == [0, 1]
    trials = study.get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.FAIL, TrialState.FAIL]
    (retry,) = trials[2:]  # none for the third try: it counts
    assert retry.state == TrialState.WAITING
    assert retry.user_attrs["retry_of"] == 1 and retry.user_attrs["attempt"] == 2
    reason = failure_reason(trials[1], trials) or ""
    assert "heartbeats" in reason and reason.endswith("try 2 of 3")
    last = failure_reason(trials[0], trials, study.user_attrs) or ""  # kept on the study
    assert "heartbeats" in last and "last try (--retries 2)" in last


def _differs(now: Callable[[], int | None], before: int) -> bool:
    return now() != before


def _kill_trial_processes(stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL every trial process this test's search starts, as soon as it exists."""
    while not stop.wait(0.05):
        for pid in process_tree(os.getpid())[1:]:
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"dense_nas.study.process.trial" in command and pid not in killed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)


@pytest.mark.slow  # each try starts a trial process (killed at once)
def test_a_trial_killed_every_time_is_retried_then_counts(tmp_path: Path) -> None:
    stop, killed = threading.Event(), list[int]()
    killer = threading.Thread(target=_kill_trial_processes, args=(stop, killed))
    killer.start()
    try:
        study = search(space=TINY_SPACE, n_trials=1, retries=1, epochs=1, out=tmp_path)
    finally:
        stop.set()
        killer.join()
    first, second = study.get_trials()  # one retry, then the budget of 1 is used up
    assert first.state == second.state == TrialState.FAIL
    assert "killed by SIGKILL" in first.user_attrs["failure"]
    assert first.user_attrs["retried"].endswith("try 2 of 2")
    assert second.user_attrs["retry_of"] == 0 and second.user_attrs["attempt"] == 2
    assert second.params == first.params and "retried" not in second.user_attrs
    assert len(killed) == 2


@pytest.mark.slow  # a real `dense-nas search` whose trial processes are killed mid-training
def test_sigkilled_trial_processes_are_retried_and_the_budget_holds(tmp_path: Path) -> None:
    trials = 4
    command = [sys.executable, "-m", "dense_nas", *_search_args(tmp_path, trials)]
    command[command.index("--epochs") + 1] = "8"  # long enough to be killed mid-training
    storage = make_storage(None, tmp_path)
    search_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kills = 0

    def training_first_try() -> int | None:
        """A trial process training a first try, once the study shows one RUNNING."""
        with contextlib.suppress(KeyError, ValueError):  # the study is not made yet
            study = optuna.load_study(study_name="test-tiny-digits", storage=storage)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if "progress" in t.user_attrs and "attempt" not in t.user_attrs:
                    children = process_tree(search_process.pid)[1:]
                    return children[0] if children else None
        return None

    try:
        while kills < 2:  # two different trials, each killed in its first try
            wait_for(
                lambda: training_first_try() or search_process.poll() is not None,
                600,  # a loaded machine imports Lightning slowly
                "a trial to train",
            )
            pid = training_first_try()
            if pid is None:
                break
            os.kill(pid, signal.SIGKILL)
            kills += 1
            wait_for(partial(_differs, training_first_try, pid), 600, "the killed trial's retry")
        _, err = search_process.communicate(timeout=900)
    finally:
        if search_process.poll() is None:
            search_process.kill()
            search_process.communicate()
    assert search_process.returncode == 0, err
    assert kills == 2
    study = optuna.load_study(study_name="test-tiny-digits", storage=storage)
    counts = outcome(study)  # loads every COMPLETE trial's checkpoint
    assert counts.finished == trials and counts.running == 0 and not counts.unreadable
    assert counts.failed_retried == 2 and counts.failed_counted == 0
    for failed in study.get_trials(states=(TrialState.FAIL,)):
        assert "killed by SIGKILL" in failed.user_attrs["failure"]
        (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == failed.number]
        assert retry.params == failed.params and retry.user_attrs["attempt"] == 2


@pytest.mark.slow  # one search whose two trials train a process each
@pytest.mark.parametrize(
    ("folder", "reason"),
    [("checkpoints", "checkpoint not written"), ("artifacts", "checkpoint not uploaded")],
)
def test_a_full_disk_fails_the_trials_with_the_reason_and_leaves_no_partial_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: str, reason: str
) -> None:
    out = tmp_path / "out"
    with full_tmpfs(out / folder, size="64k") as full:
        filler = fill(full)
        ran = main_in_process(capsys, *_search_args(out, 2, "--pruner", "none"))
        left = sorted(p.name for p in full.iterdir())
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    study = optuna.load_study(study_name="test-tiny-digits", storage=make_storage(None, out))
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    for trial in trials:
        assert trial_attrs(trial)["failure"].startswith(f"{reason}: {NO_SPACE}")
        assert "retried" not in trial.user_attrs  # its own failure: it counts
    assert left == [filler.name]  # no partial checkpoint or artifact
    assert not list((out / "checkpoints").glob("*.ckpt"))


@pytest.mark.slow  # a real `dense-nas search` stopped by its full disk, then a rerun
@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_storage_on_a_full_disk_is_one_line_and_exit_1_and_its_trial_is_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    with full_tmpfs(tmp_path / "disk") as disk:
        url = str(disk / "s.journal") if kind == "journal" else f"sqlite:///{disk / 's.db'}"
        args = [*_search_args(tmp_path / "out", 2, "--storage", url, "--heartbeat", "2")]
        args[args.index("--epochs") + 1] = "50"  # still training when the disk fills
        proc = subprocess.Popen(
            [sys.executable, "-m", "dense_nas", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        storage = make_storage(url, tmp_path)

        def training() -> bool:
            with contextlib.suppress(KeyError, ValueError):
                study = optuna.load_study(study_name="test-tiny-digits", storage=storage)
                running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                return any("progress" in t.user_attrs for t in running)
            return proc.poll() is not None

        try:
            wait_for(training, 120, "a trial to train")
            filler = fill(disk)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 1, err
        (line,) = err.strip().splitlines()
        assert line.startswith(f"dense-nas: error: cannot write the study to {url} (")
        assert line.endswith("then run the same command again to resume")
        filler.unlink()  # space again: the same command resumes, and retries what was left
        args[args.index("--epochs") + 1] = "1"
        rerun = main_in_process(capsys, *args)
        assert rerun.returncode == 0, rerun.stderr
        study = optuna.load_study(
            study_name="test-tiny-digits", storage=make_storage(url, tmp_path)
        )
        counts = outcome(study)
        assert counts.running == 0 and counts.finished == 2 and not counts.unreadable
        (stopped,) = study.get_trials(states=(TrialState.FAIL,))
        (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == stopped.number]
        assert retry.params == stopped.params


def test_chaos_counts_a_real_study_and_finds_unreadable_checkpoints(
    single: BuiltStudy, tmp_path: Path
) -> None:
    study = single.load()
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    counts = outcome(study)
    assert (counts.complete, counts.running, counts.unreadable) == (len(complete), 0, [])
    assert counts.finished == len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))
    moved = optuna.create_study(direction="maximize")  # its checkpoints are elsewhere
    for trial in study.get_trials():
        moved.add_trial(trial)
    moved.set_user_attr(ARTIFACT_ROOT_ATTR, str(tmp_path))
    assert outcome(moved).unreadable == [t.number for t in complete]


def test_chaos_finds_the_processes_it_may_kill() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        tree = process_tree(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert tree[0] == os.getpid() and child.pid in tree


_HOLD_THE_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")  # the write lock, as a command stopped mid-commit has
print("locked", flush=True)
time.sleep(600)
"""


@pytest.mark.slow  # three searches, one of them waiting out the lock
def test_a_sqlite_study_locked_by_a_paused_process_is_one_line_and_exit_1_and_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert main_in_process(capsys, *_search_args(out, 1)).returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_LOCK, str(out / "dense-nas.db")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        os.kill(holder.pid, signal.SIGSTOP)  # paused while it holds the lock
        monkeypatch.setattr(storage_module, "SQLITE_LOCK_TIMEOUT", 1.0)
        ran = main_in_process(capsys, *_search_args(out, 3))
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.kill()
        holder.wait()
    assert ran.returncode == 1
    (line,) = ran.stderr.strip().splitlines()
    assert "another process has held its lock for 1 s" in line
    assert "journal file or PostgreSQL" in line
    rerun = main_in_process(capsys, *_search_args(out, 3))  # the holder is gone: it resumes
    assert rerun.returncode == 0, rerun.stderr
    study = optuna.load_study(study_name="test-tiny-digits", storage=make_storage(None, out))
    counts = outcome(study)
    assert counts.finished == 3 and counts.running == 0 and not counts.unreadable
    assert study.trials[0].state == TrialState.COMPLETE  # the first run's trial is kept

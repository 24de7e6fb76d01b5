"""How a trial process starts: early, while the command imports, and with OpenMP's waiting
chosen from the CPU's load (``study/process/prestart.py``, ``study/process/cpu_wait.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dense_nas.study.process import cpu_wait, prestart
from tests.helpers import main_in_process, search_args

_BUSY = "while True: pass"


def _search(out: Path, *extra: str) -> list[str]:
    return search_args(*extra, trials=2, out=out, quiet=True)


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The pids of every trial process started (the real spawn, counted)."""
    pids: list[int] = []
    real = prestart.spawn

    def counting(*args: object, **kwargs: object) -> object:
        proc, channel = real(*args, **kwargs)  # type: ignore[arg-type]
        pids.append(proc.pid)
        return proc, channel

    monkeypatch.setattr(prestart, "spawn", counting)
    yield pids
    prestart.discard()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_search_trains_in_the_process_it_started_first_and_logs_to_the_worker_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spawned: list[int]
) -> None:
    ran = main_in_process(capsys, *_search(tmp_path / "out"))
    assert ran.returncode == 0, ran.stderr
    assert len(spawned) == 1  # started before the imports, adopted by the worker
    log = (tmp_path / "out" / "logs" / "worker-0.log").read_text()
    assert "GPU available" in log  # Lightning's lines, written after the adoption
    assert not _alive(spawned[0])  # stopped with its worker
    assert prestart.take(prestart.trial_process_env(1, 1, 1)) is None


def test_bad_input_stops_the_early_process_and_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spawned: list[int]
) -> None:
    ran = main_in_process(capsys, *_search(tmp_path / "out", "--sampler", "nope"))
    assert ran.returncode == 2
    assert ran.stderr.count("\n") == 1 and "sampler" in ran.stderr
    assert len(spawned) == 1 and not _alive(spawned[0])
    assert not (tmp_path / "out").exists()


def test_a_started_process_killed_before_a_worker_takes_it_is_not_taken(
    spawned: list[int],
) -> None:
    env = prestart.trial_process_env(1, 1, 1)
    prestart.start(1, env)
    os.kill(spawned[0], 9)
    time.sleep(0.2)
    assert prestart.take(env) is None  # the worker starts a fresh one
    assert prestart.take({**env, "OTHER": "1"}) is None


def test_the_wait_rule_spins_only_on_cores_free_of_other_load() -> None:
    assert cpu_wait.wait_policy(cpu_count=4, busy_elsewhere=1.9, cores=2) == "spin"
    assert cpu_wait.wait_policy(cpu_count=4, busy_elsewhere=2.5, cores=2) == "passive"
    assert cpu_wait.wait_policy(cpu_count=2, busy_elsewhere=0.0, cores=3) == "passive"


def test_cpu_time_of_our_own_process_tree_is_not_load_but_others_is() -> None:
    busy = subprocess.Popen([sys.executable, "-c", _BUSY])  # a child: part of our tree
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.3)
        ours_before, theirs_before = cpu_wait.sample(os.getpid()), cpu_wait.sample(stranger.pid)
        time.sleep(1.0)
        ours_after, theirs_after = cpu_wait.sample(os.getpid()), cpu_wait.sample(stranger.pid)
    finally:
        busy.kill()
        stranger.kill()
        busy.wait()
        stranger.wait()
    seen_from_us = cpu_wait.busy_elsewhere(ours_before, ours_after)
    seen_from_stranger = cpu_wait.busy_elsewhere(theirs_before, theirs_after)
    # The busy loop is about one core: load to the stranger's tree, not to ours.
    assert seen_from_stranger - seen_from_us > 0.6


def test_the_choice_is_kept_for_ranks_and_the_users_setting_wins() -> None:
    env = {cpu_wait.CORES_ENV: "0"}
    assert cpu_wait.choose(env) == "passive"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env[cpu_wait.CHOICE_ENV] == "passive"
    forced = {cpu_wait.CHOICE_ENV: "spin", cpu_wait.CORES_ENV: "64"}
    assert cpu_wait.choose(forced) == "spin" and "OMP_WAIT_POLICY" not in forced
    users = {"OMP_WAIT_POLICY": "active", cpu_wait.CHOICE_ENV: "passive"}
    assert cpu_wait.choose(users) == "spin" and users["OMP_WAIT_POLICY"] == "active"


def test_a_trial_process_on_a_loaded_machine_waits_passively(tmp_path: Path) -> None:
    """A real trial process, its command's cores taken by a program outside its tree."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", _BUSY], start_new_session=True)
        for _ in range(os.cpu_count() or 1)
    ]
    probe = (
        "import os; from dense_nas.study.process import cpu_wait; "
        "print(cpu_wait.choose(root=os.getpid()), os.environ.get('OMP_WAIT_POLICY'))"
    )
    try:
        time.sleep(0.3)
        env = {**os.environ, cpu_wait.CORES_ENV: "1"}
        env.pop("OMP_WAIT_POLICY", None)
        env.pop(cpu_wait.CHOICE_ENV, None)
        printed = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert printed == ["passive", "PASSIVE"]


def test_a_trial_asked_for_after_ctrl_c_does_not_start(tmp_path: Path, spawned: list[int]) -> None:
    from dense_nas.study.process import TrialProcess, TrialSpec

    runner = TrialProcess(log_path=None)
    runner.kill()  # Ctrl-C reached the command before this worker sent its spec
    spec = TrialSpec(number=0, arch={}, training={"epochs": 40}, data="digits")
    result = runner.run(spec, lambda report, answer: answer(False), tmp_path)
    assert result["type"] == "error" and "stopped before this trial trained" in result["reason"]
    assert spawned == []  # nothing trained its 40 epochs meanwhile
    runner.close()

"""How a trial process starts: early, while the command imports, and with OpenMP's waiting
chosen from the CPU's load (``study/process/prestart.py``, ``study/process/cpu_wait.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dense_nas.study.process import cpu_wait, prestart
from tests.helpers import main_in_process, search_args


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
    # refused once the command has started its trial process: the data is read then
    ran = main_in_process(capsys, *_search(tmp_path / "out", "--data", "no-such-data"))
    assert ran.returncode == 2
    assert ran.stderr.count("\n") == 1 and "--data" in ran.stderr
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


def _write_proc(root: Path, busy_seconds: float, ticks: dict[int, tuple[int, float]]) -> Path:
    """A ``/proc`` snapshot in the kernel's format: all cores' busy time, and per process
    ``pid -> (parent pid, user seconds)``."""
    hertz = os.sysconf("SC_CLK_TCK")
    root.mkdir()
    (root / "stat").write_text(f"cpu  {round(busy_seconds * hertz)} 0 0 100000 0 0 0 0 0 0\n")
    for pid, (parent, seconds) in ticks.items():
        (root / str(pid)).mkdir()
        fields = f"S {parent} " + "0 " * 9 + f"{round(seconds * hertz)} 0 0 0 20 0 1 0"
        (root / str(pid) / "stat").write_text(f"{pid} (python3) {fields}\n")
    return root


def test_cpu_time_of_a_process_tree_is_not_load_to_it_but_to_others(tmp_path: Path) -> None:
    # One second: the command (10) has a trial process (11) that burned 1.0 s; a program
    # outside its tree (20) burned 0.8 s.
    before = {10: (1, 2.0), 11: (10, 5.0), 20: (1, 3.0)}
    after = {10: (1, 2.0), 11: (10, 6.0), 20: (1, 3.8)}
    first = _write_proc(tmp_path / "before", 50.0, before)
    second = _write_proc(tmp_path / "after", 51.8, after)

    def load_seen_by(root: int) -> float:
        start, end = cpu_wait.sample(root, first), cpu_wait.sample(root, second)
        return cpu_wait.busy_elsewhere(start, replace(end, at=start.at + 1.0))

    assert load_seen_by(10) == pytest.approx(0.8)  # its own trial is not load
    assert load_seen_by(20) == pytest.approx(1.0)  # the command's trial is load to others


def test_a_childs_cpu_time_counts_as_its_parents_tree() -> None:
    burn = "import time\nwhile time.process_time() < 0.6: pass\nprint(flush=True)\ntime.sleep(60)"
    before = cpu_wait.sample(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", burn], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        child.stdout.readline()  # it has burned 0.6 s of CPU, however loaded the machine
        after = cpu_wait.sample(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert after.ours - before.ours >= 0.5


def test_the_choice_is_kept_for_ranks_and_the_users_setting_wins() -> None:
    env = {cpu_wait.CORES_ENV: "0"}
    assert cpu_wait.choose(env) == "passive"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env[cpu_wait.CHOICE_ENV] == "passive"
    forced = {cpu_wait.CHOICE_ENV: "spin", cpu_wait.CORES_ENV: "64"}
    assert cpu_wait.choose(forced) == "spin" and "OMP_WAIT_POLICY" not in forced
    users = {"OMP_WAIT_POLICY": "active", cpu_wait.CHOICE_ENV: "passive"}
    assert cpu_wait.choose(users) == "spin" and users["OMP_WAIT_POLICY"] == "active"


def test_a_trial_process_wanting_more_cores_than_the_machine_has_waits_passively() -> None:
    """A real trial process's own measurement: however loaded the machine, more threads
    than cores can never spin on free ones."""
    probe = (
        "import os; from dense_nas.study.process import cpu_wait; "
        "print(cpu_wait.choose(root=os.getpid()), os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {**os.environ, cpu_wait.CORES_ENV: str(len(os.sched_getaffinity(0)) + 1)}
    env.pop("OMP_WAIT_POLICY", None)
    env.pop(cpu_wait.CHOICE_ENV, None)
    printed = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
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

"""How a trial process's OpenMP threads wait: chosen from the CPU's load before torch loads.

Between two parallel regions an OpenMP thread either spins for a while (OpenMP's
default) or sleeps at once (``OMP_WAIT_POLICY=PASSIVE``). The digits networks are
thousands of tiny regions an epoch, so on free cores spinning trains 17% faster
(benchmarks/RESULTS.md, "OpenMP waiting"); on cores that other programs also use, a
spinning thread takes the core from the thread it waits for, and the same trials took
1.6 times as long. So a trial process looks first: it samples the CPU for :data:`WINDOW` seconds, counts
the cores kept busy by processes outside its own command (the search process and all its
descendants), and lets OpenMP spin only if the cores its command's trials use
(:data:`CORES_ENV`, set by the worker) are free; otherwise its threads wait passively.
The choice is made once per trial process, when it starts, and is kept in
:data:`CHOICE_ENV` so that DDP ranks it starts inherit it. An ``OMP_WAIT_POLICY`` or a
:data:`CHOICE_ENV` of ``spin`` or ``passive`` already in the environment wins. Needs
Linux's ``/proc``; elsewhere threads wait passively.

Example:
    >>> wait_policy(cpu_count=2, busy_elsewhere=0.1, cores=2)
    'spin'
    >>> wait_policy(cpu_count=2, busy_elsewhere=1.0, cores=2)
    'passive'
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

WaitPolicy = Literal["spin", "passive"]

CORES_ENV = "DENSE_NAS_TRIAL_CORES"
"""Cores the command's trial processes use at once (workers x devices x threads)."""
CHOICE_ENV = "DENSE_NAS_OPENMP_WAIT"
"""``spin`` or ``passive``: the choice made (or forced by the user)."""
WINDOW = 0.2
"""Seconds the CPU is sampled for."""
_SLACK = 0.25
"""Cores of other load tolerated (a shell, a monitor) before threads wait passively."""


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU seconds at one moment: all cores' busy time, and our command's."""

    busy: float
    ours: float
    at: float


def wait_policy(cpu_count: int, busy_elsewhere: float, cores: int) -> WaitPolicy:
    """``spin`` when ``cores`` cores are free of other programs' load, else ``passive``.

    Args:
        cpu_count: cores of the machine (or of this process's CPU set).
        busy_elsewhere: cores kept busy by processes outside this command, on average.
        cores: cores this command's trial processes use at once.
    """
    free = cpu_count - busy_elsewhere
    return "spin" if free + _SLACK >= cores else "passive"


def busy_jiffies(proc_stat: str) -> int:
    """Busy clock ticks of all cores from the ``cpu`` line of ``/proc/stat``.

    Example:
        >>> busy_jiffies("cpu  10 2 30 500 7 0 1 0 0 0\\ncpu0 5 1 15 250 3 0 0 0 0 0\\n")
        43
    """
    fields = [int(value) for value in proc_stat.split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4] if len(fields) > 4 else 0
    guests = sum(fields[8:10])  # already counted in user and nice
    return sum(fields) - idle - iowait - guests


def process_jiffies(stat_line: str) -> tuple[int, int]:
    """``(parent pid, user + system ticks)`` from a ``/proc/PID/stat`` line.

    Example:
        >>> process_jiffies("42 (a (b) c) S 7 42 42 0 -1 0 0 0 0 0 11 4 0 0 20 0 1 0")
        (7, 15)
    """
    rest = stat_line[stat_line.rindex(")") + 2 :].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


def tree_jiffies(processes: dict[int, tuple[int, int]], root: int) -> int:
    """Ticks spent by ``root`` and all its descendants (``processes``: pid -> (ppid, ticks)).

    Example:
        >>> tree_jiffies({1: (0, 100), 5: (1, 10), 6: (5, 3), 9: (1, 50)}, root=5)
        13
    """
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in processes:
            total += processes[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def sample(root: int, proc: Path = Path("/proc")) -> CpuTimes:
    """All cores' busy seconds and those of ``root``'s process tree, now."""
    hertz = os.sysconf("SC_CLK_TCK")
    busy = busy_jiffies((proc / "stat").read_text())
    processes: dict[int, tuple[int, int]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                processes[int(entry.name)] = process_jiffies((entry / "stat").read_text())
            except (OSError, ValueError, IndexError):  # gone meanwhile
                continue
    return CpuTimes(busy / hertz, tree_jiffies(processes, root) / hertz, time.monotonic())


def busy_elsewhere(before: CpuTimes, after: CpuTimes) -> float:
    """Cores kept busy between two samples by processes outside the sampled tree.

    Example:
        >>> busy_elsewhere(CpuTimes(10.0, 2.0, 0.0), CpuTimes(10.6, 2.2, 0.5))
        0.8
    """
    elapsed = max(after.at - before.at, 1e-9)
    return round(max(0.0, (after.busy - before.busy) - (after.ours - before.ours)) / elapsed, 6)


def choose(environ: dict[str, str] | None = None, root: int | None = None) -> WaitPolicy:
    """Decide how OpenMP threads wait in this process and set the environment for it.

    Call before torch is imported. Returns the choice; with ``passive``, sets
    ``OMP_WAIT_POLICY=PASSIVE``. ``environ`` defaults to :data:`os.environ`, ``root``
    (the command's process) to this process's parent.
    """
    env = os.environ if environ is None else environ
    choice = env.get(CHOICE_ENV)
    if "OMP_WAIT_POLICY" in env:
        choice = "passive" if env["OMP_WAIT_POLICY"].upper() == "PASSIVE" else "spin"
    elif choice not in ("spin", "passive"):
        choice = _measure(int(env.get(CORES_ENV, "0") or 0), root)
    if choice == "passive":
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env[CHOICE_ENV] = choice
    return "passive" if choice == "passive" else "spin"


def _measure(cores: int, root: int | None) -> WaitPolicy:
    if cores <= 0:
        return "passive"
    try:
        parent = os.getppid() if root is None else root
        before = sample(parent)
        time.sleep(WINDOW)
        after = sample(parent)
        cpus = len(os.sched_getaffinity(0))
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc: not Linux
        return "passive"
    return wait_policy(cpus, busy_elsewhere(before, after), cores)

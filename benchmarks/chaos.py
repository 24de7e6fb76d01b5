"""Chaos: two search commands share one study while random processes of theirs are killed.

Starts ``--commands`` (2) ``dense-nas search`` processes on one study (``--trials 30`` on
the embedded digits data, tiny epochs), and every 15-20 s kills one random process of
their tree, a search process or one of its trial processes, with SIGKILL. A search
command that dies is started again, until the study is done. Then it prints the kills,
the restarts and the final counts: COMPLETE, PRUNED, FAIL (the tries that were retried,
and the ones that count), RUNNING, and checkpoints that do not load. The goal is exactly
``--trials`` COMPLETE+PRUNED, 0 RUNNING, 0 unreadable checkpoints.

Usage::

    python benchmarks/chaos.py --storage sqlite --trials 30 --seed 0 --out /tmp/chaos-sqlite
    python benchmarks/chaos.py --storage journal --trials 30 --seed 0 --out /tmp/chaos-journal
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from dense_nas.errors import UserInputError
from dense_nas.records import failure_reason
from dense_nas.results.loading import load_trial
from dense_nas.study.budget import counted_trials
from dense_nas.study.coordination.heartbeats import retried_numbers
from dense_nas.study.storage import make_storage

STUDY = "chaos"


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant of it (read from ``/proc``), parents first.

    Example:
        >>> process_tree(os.getpid())[0] == os.getpid()
        True
    """
    tree, i = [pid], 0
    while i < len(tree):
        for task in Path(f"/proc/{tree[i]}/task").glob("*"):
            with contextlib.suppress(OSError):  # the process or thread ended while we looked
                tree.extend(int(c) for c in (task / "children").read_text().split())
        i += 1
    return tree


@dataclass
class Outcome:
    """What a study holds at the end."""

    complete: int = 0
    pruned: int = 0
    failed_counted: int = 0
    """FAILED trials that use up the budget (the last try of a trial, or its own fault)."""
    failed_retried: int = 0
    """FAILED tries that a retry with the same parameters replaced."""
    running: int = 0
    unreadable: list[int] = field(default_factory=list)
    """COMPLETE trials whose checkpoint does not load."""
    failures: dict[str, int] = field(default_factory=dict)
    """Why trials failed, with how often (the reason up to its first ':' or '(', numbers
    as N)."""

    @property
    def finished(self) -> int:
        return self.complete + self.pruned

    def line(self) -> str:
        return (
            f"COMPLETE {self.complete}, PRUNED {self.pruned} (finished {self.finished}), "
            f"FAIL {self.failed_counted + self.failed_retried} ({self.failed_retried} retried, "
            f"{self.failed_counted} counted), RUNNING {self.running}, "
            f"unreadable checkpoints {len(self.unreadable)}"
        )


def outcome(study: optuna.Study) -> Outcome:
    """Count a study's trials by state and load every COMPLETE trial's checkpoint."""
    trials = study.get_trials(deepcopy=False)
    counted = {t.number for t in counted_trials(trials)}
    retried = retried_numbers(trials)
    result = Outcome()
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            result.complete += 1
            try:
                load_trial(study, trial)
            except (UserInputError, OSError, RuntimeError):
                result.unreadable.append(trial.number)
        elif trial.state == TrialState.PRUNED:
            result.pruned += 1
        elif trial.state == TrialState.RUNNING:
            result.running += 1
        elif trial.state == TrialState.FAIL:
            if trial.number in retried:
                result.failed_retried += 1
            elif trial.number in counted:
                result.failed_counted += 1
            reason = failure_reason(trial, trials, study.user_attrs) or "no reason stored"
            short = re.sub(r"\d+", "N", reason.split(":")[0].split(" (")[0])
            result.failures[short] = result.failures.get(short, 0) + 1
    return result


def storage_of(kind: str, out: Path) -> str:
    """The storage URL or journal path of the chaos study in ``out``."""
    if kind == "sqlite":
        return f"sqlite:///{(out / 'chaos.db').resolve()}"
    return str((out / "chaos.journal").resolve())


def search_command(args: argparse.Namespace, storage: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dense_nas",
        "search",
        "--space",
        "digits-tiny",
        "--data",
        "digits",
        "--trials",
        str(args.trials),
        "--epochs",
        str(args.epochs),
        "--study",
        STUDY,
        "--storage",
        storage,
        "--out",
        str(args.out),
        "--seed",
        str(args.seed),
        "--heartbeat",
        str(args.heartbeat),
        "--retries",
        str(args.retries),
        "--accelerator",
        "cpu",
        "--threads",
        "1",
        "--quiet",
    ]


@dataclass
class Chaos:
    """The commands running now, and what was done to them."""

    command: list[str]
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kills: dict[str, int] = field(default_factory=lambda: {"search": 0, "trial": 0})
    restarts: int = 0
    exits: dict[int, int] = field(default_factory=dict)
    """Exit codes of commands that ended by themselves (not by a kill), with how often."""
    started: int = 0

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"command-{self.started}.log").open("wb")
        self.started += 1
        return subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)

    def kill_one(self, rng: random.Random) -> None:
        """SIGKILL one random live process of the commands' trees."""
        tree = [
            (pid, pid == p.pid)
            for p in self.procs
            if p.poll() is None
            for pid in process_tree(p.pid)
        ]
        if not tree:
            return
        pid, is_search = rng.choice(tree)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.kills["search" if is_search else "trial"] += 1


def run(args: argparse.Namespace) -> Outcome:
    args.out.mkdir(parents=True, exist_ok=True)
    storage = storage_of(args.storage, args.out)
    chaos = Chaos(search_command(args, storage), args.out)
    rng = random.Random(args.seed)
    chaos.procs = [chaos.start() for _ in range(args.commands)]
    begun = time.monotonic()
    next_kill = begun + rng.uniform(*args.kill_every)
    while chaos.procs and time.monotonic() - begun < args.limit:
        time.sleep(0.5)
        alive = []
        for proc in chaos.procs:
            code = proc.poll()
            if code is None:
                alive.append(proc)
                continue
            if code != -signal.SIGKILL:
                chaos.exits[code] = chaos.exits.get(code, 0) + 1
            if code != 0:  # killed (or failed): start it again; 0 means the study is done
                alive.append(chaos.start())
                chaos.restarts += 1
        chaos.procs = alive
        if chaos.procs and time.monotonic() >= next_kill:
            chaos.kill_one(rng)
            next_kill = time.monotonic() + rng.uniform(*args.kill_every)
            print(
                f"{time.monotonic() - begun:.0f} s: kills {chaos.kills}, restarts "
                f"{chaos.restarts}, exits without a kill {chaos.exits}",
                flush=True,
            )
    for proc in chaos.procs:  # over the time limit: stop what is left
        proc.kill()
        proc.wait()
    seconds = time.monotonic() - begun
    study = optuna.load_study(study_name=STUDY, storage=make_storage(storage, args.out))
    result = outcome(study)
    print(
        f"chaos on {args.storage} ({storage}), {args.commands} commands, --trials {args.trials} "
        f"--epochs {args.epochs} --heartbeat {args.heartbeat} --retries {args.retries}, "
        f"seed {args.seed}: {seconds:.0f} s"
        + (" (stopped at the time limit)" if chaos.procs else "")
    )
    print(
        f"kills: {chaos.kills['search']} search, {chaos.kills['trial']} trial processes; "
        f"restarts: {chaos.restarts}; exits without a kill: {chaos.exits}"
    )
    print(result.line())
    print(f"failures: {result.failures}")
    if result.unreadable:
        print(f"unreadable checkpoints of trials {result.unreadable}")
    ok = result.finished == args.trials and result.running == 0 and not result.unreadable
    print(
        f"goal ({args.trials} COMPLETE+PRUNED, 0 RUNNING, 0 unreadable): {'met' if ok else 'MISSED'}"
    )
    print(
        f"python {platform.python_version()}, optuna {optuna.__version__}, "
        f"{platform.node()}, {os.cpu_count()} CPUs"
    )
    return result


def _kill_every(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", choices=("sqlite", "journal"), default="sqlite")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="kill schedule and study seed")
    parser.add_argument("--out", type=Path, default=Path("chaos-runs"))
    parser.add_argument("--commands", type=int, default=2, help="search commands at once")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--retries", type=int, default=2, help="search's --retries")
    parser.add_argument("--kill-every", type=_kill_every, default=(15.0, 20.0), help="S-S seconds")
    parser.add_argument("--limit", type=float, default=3600.0, help="stop after S seconds")
    args = parser.parse_args(argv)
    result = run(args)
    return (
        0 if result.finished == args.trials and not result.running and not result.unreadable else 1
    )


if __name__ == "__main__":
    sys.exit(main())

"""Trial processes started while the search command is still importing.

A trial process spends seconds importing torch and Lightning (7-8 s on the 2-core
development machine), and so does the ``dense-nas search`` command before it can ask for
its first trial. On the CPU the command starts its workers' trial processes first thing
(:func:`start`), so that the two imports run at once on different cores; a worker then
adopts one (:func:`take`, through :class:`~dense_nas.study.process.runner.TrialProcess`)
instead of starting its own, and sends it the path of its log. Until then a started
process writes nowhere (or to the terminal with ``--verbose``). Whatever is not adopted
is stopped by :func:`discard`. Nothing is written to the study or the output folder
before a worker adopts a process, so bad input is still refused with nothing stored.

Example:
    >>> take({"DENSE_NAS_TRIAL_CORES": "2"}) is None  # nothing started
    True
    >>> discard()
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dense_nas.study.process import cpu_wait
from dense_nas.study.process.channel import Channel


@dataclass
class Started:
    """A trial process started ahead of its worker."""

    proc: subprocess.Popen[bytes]
    channel: Channel
    extra_env: dict[str, str]


_started: list[Started] = []


def trial_threads(workers: int, devices: int, threads: int = 0) -> int:
    """Torch threads of each CPU trial process: ``threads``, or the cores shared out.

    Example:
        >>> trial_threads(workers=1, devices=1, threads=0) == (os.cpu_count() or 1)
        True
        >>> trial_threads(workers=4, devices=1, threads=3)
        3
    """
    return threads or max(1, (os.cpu_count() or 1) // (workers * devices))


def trial_process_env(workers: int, devices: int, threads: int = 0) -> dict[str, str]:
    """What a CPU worker adds to its trial process's environment (see :mod:`.cpu_wait`)."""
    cores = workers * devices * trial_threads(workers, devices, threads)
    return {cpu_wait.CORES_ENV: str(cores)}


def cpu_only(accelerator: str) -> bool:
    """Will trials train on the CPU? ``auto`` means yes on a machine with no GPU device node
    (checked without importing torch).

    Example:
        >>> cpu_only("cpu"), cpu_only("gpu")
        (True, False)
    """
    if accelerator == "cpu":
        return True
    gpu_nodes = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")  # CUDA, ROCm, WSL
    return accelerator == "auto" and not any(os.path.exists(node) for node in gpu_nodes)


def spawn(
    env: dict[str, str], output: IO[bytes] | int | None, extra_args: list[str] | None = None
) -> tuple[subprocess.Popen[bytes], Channel]:
    """Start ``python -m dense_nas.study.process.trial`` with a channel to it; ``output`` takes its
    stdout and stderr (``None``: this process's)."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dense_nas.study.process.trial",
            "--channel-fd",
            str(theirs.fileno()),
            *(extra_args or []),
        ],
        pass_fds=(theirs.fileno(),),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
    )
    theirs.close()
    return proc, Channel(ours)


def start(count: int, extra_env: dict[str, str], *, verbose: bool = False) -> None:
    """Start ``count`` trial processes for workers that will add ``extra_env``."""
    env = {**os.environ, **extra_env}
    for _ in range(count):
        proc, channel = spawn(env, None if verbose else subprocess.DEVNULL)
        _started.append(Started(proc, channel, dict(extra_env)))


def take(extra_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Channel] | None:
    """A started process that is alive and was started with ``extra_env``, or ``None``.

    (Imports may add to this process's environment meanwhile, e.g. torch's cache folders;
    the process sets those itself.)
    """
    for started in list(_started):
        if started.proc.poll() is not None:  # killed meanwhile: start a fresh one instead
            _stop(started)
        elif started.extra_env == extra_env:
            _started.remove(started)
            return started.proc, started.channel
    return None


def discard() -> None:
    """Stop every started process that no worker adopted."""
    for started in list(_started):
        _stop(started)


def _stop(started: Started) -> None:
    _started.remove(started)
    started.channel.close()
    started.proc.kill()
    started.proc.wait()


def adopt_log(channel: Channel, log_path: Path | None) -> None:
    """Tell an adopted process where its output goes from now on."""
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        channel.send({"log": str(log_path)})

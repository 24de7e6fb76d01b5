"""Retrain runs at once: ``retrain --workers N`` trains N runs, each in its own process.

With one worker the runs train one after another in the calling process. With more,
each worker is a process of its own (``python -m dense_nas.results.retrain_workers``, so
a caller's script is not imported again, as ``multiprocessing`` would) that is handed
its next run as soon as it is done with one, so a slow run holds up no other. A worker's environment is set before it loads
torch, the way ``search`` sets its trial processes': on the CPU the workers share the
cores (:func:`~dense_nas.study.process.prestart.trial_threads` torch threads each, and the
OpenMP wait policy :mod:`~dense_nas.study.process.cpu_wait` chooses for that many busy cores);
on GPUs worker ``i`` trains on visible GPU ``i mod G``
(:func:`~dense_nas.study.hardware.gpu_assignment`).

Workers only train; the calling process records each result on the study, so that runs
ending together cannot overwrite each other's record. Ctrl-C stops every worker at its
next step (each keeps the ``last.ckpt`` of its last whole epoch, to resume from).

This module loads no torch itself: a worker imports it only after its environment is set.

Example:
    >>> worker_environments("cpu", workers=2, threads=3)
    ([{'DENSE_NAS_TRIAL_CORES': '6'}, {'DENSE_NAS_TRIAL_CORES': '6'}], 3)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Generator, Sequence
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, cast

from dense_nas.errors import UserInputError
from dense_nas.study.hardware import gpu_assignment
from dense_nas.study.process import cpu_wait
from dense_nas.study.process.prestart import trial_process_env, trial_threads

if TYPE_CHECKING:
    from dense_nas.results.retrain import RetrainResult, RetrainRun, RetrainSettings

#: Seconds a worker that was asked to stop (Ctrl-C, or another run failed) may take to
#: finish its step and tear down before it is killed.
STOP_GRACE = 30.0


def worker_environments(
    accelerator: str, workers: int, threads: int = 0
) -> tuple[list[dict[str, str]], int]:
    """What each worker adds to its environment, and the torch threads of each (0: torch's
    own choice, on a GPU)."""
    if accelerator == "gpu":
        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = gpu_assignment(workers, 1, torch.cuda.device_count(), visible)
        # The GPU does the work: the host threads only feed it, spinning would take cores.
        return [{"CUDA_VISIBLE_DEVICES": gpu, cpu_wait.CHOICE_ENV: "passive"} for gpu in gpus], 0
    env = trial_process_env(workers, 1, threads)
    return [dict(env) for _ in range(workers)], trial_threads(workers, 1, threads)


def run_all(
    settings: RetrainSettings, runs: Sequence[RetrainRun], workers: int, threads: int = 0
) -> Generator[RetrainResult, None, None]:
    """Train ``runs`` with ``workers`` at once; yield each result as its run ends.

    Raises:
        UserInputError: a run refused its input (a ``last.ckpt`` of another run).
        RuntimeError: a run failed, or a worker died.
    """
    workers = min(workers, len(runs))
    if workers <= 1:
        yield from _in_this_process(settings, runs, threads)
        return
    envs, each = worker_environments(settings.accelerator, workers, threads)
    started = [_start(env, each) for env in envs]
    waiting = list(runs)
    busy: dict[Connection, subprocess.Popen[bytes]] = {}
    finished = False
    try:
        for process, connection in started:
            connection.send((settings, waiting.pop(0)))
            busy[connection] = process
        while busy:
            for ready in wait(list(busy)):
                done = cast(Connection, ready)
                yield _result(done, busy[done])
                if waiting:
                    done.send((settings, waiting.pop(0)))
                else:
                    done.send(None)  # no more runs: the worker exits
                    busy.pop(done).wait()
        finished = True
    finally:
        _stop(started, ask=not finished)


def _start(env: dict[str, str], threads: int) -> tuple[subprocess.Popen[bytes], Connection]:
    """A worker process with a connection to it (pickled runs one way, results back)."""
    ours, theirs = socket.socketpair()
    process = subprocess.Popen(
        [sys.executable, "-m", __name__, str(theirs.fileno()), str(threads)],
        pass_fds=(theirs.fileno(),),
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )
    theirs.close()
    return process, Connection(ours.detach())


def _in_this_process(
    settings: RetrainSettings, runs: Sequence[RetrainRun], threads: int
) -> Generator[RetrainResult, None, None]:
    import torch

    from dense_nas.results.retrain import train_run

    before = torch.get_num_threads()
    for run in runs:
        if threads:
            torch.set_num_threads(threads)
        try:
            result = train_run(settings, run)
        finally:
            torch.set_num_threads(before)
        yield result


def _result(connection: Connection, process: subprocess.Popen[bytes]) -> Any:
    """A worker's answer: its run's result; raise what its run raised."""
    try:
        kind, *details = connection.recv()
    except (EOFError, OSError):
        code = process.wait()
        raise RuntimeError(
            f"retrain: a worker died (exit code {code}); run the same command again to "
            "resume from the runs' checkpoints"
        ) from None
    if kind == "done":
        return details[0]
    if kind == "bad input":
        raise UserInputError(details[0], param=details[1])
    raise RuntimeError(f"retrain: a run failed: {details[0]}\n{details[1]}")


def _stop(started: Sequence[tuple[subprocess.Popen[bytes], Connection]], *, ask: bool) -> None:
    """Wait for the workers; with ``ask``, first tell them to stop as Ctrl-C does."""
    for process, _ in started:
        if ask and process.poll() is None:
            process.send_signal(signal.SIGINT)  # Lightning stops at its next step
    for process, connection in started:
        try:
            process.wait(STOP_GRACE if ask else None)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        connection.close()


def serve(connection: Connection, threads: int) -> None:
    """A worker: train the runs it is sent until it is sent ``None``."""
    cpu_wait.choose()  # before torch loads OpenMP
    import torch

    from dense_nas.results.retrain import train_run
    from dense_nas.study.hardware import keep_freed_memory

    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()  # about 1.5x faster CPU steps; this process is ours
    while (job := connection.recv()) is not None:
        settings, run = job
        try:
            connection.send(("done", train_run(settings, run)))
        except UserInputError as err:  # its param does not survive pickling: sent apart
            connection.send(("bad input", err.message, err.param))
        except Exception as err:
            connection.send(("error", f"{type(err).__name__}: {err}", traceback.format_exc()))


if __name__ == "__main__":
    try:
        serve(Connection(int(sys.argv[1])), int(sys.argv[2]))
    except (KeyboardInterrupt, EOFError):  # Ctrl-C, or the command went away
        sys.exit(0)  # each run's last.ckpt stays for the next command to resume from

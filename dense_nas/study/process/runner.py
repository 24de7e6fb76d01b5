"""The study worker's side of a trial process: start it, feed it specs, relay reports.

Single-device trials go to one long-lived ``python -m dense_nas.study.process.trial`` process per
worker (imports and the dataset are loaded once, not per trial). Multi-device trials get
a fresh process per trial, because Lightning's DDP launcher re-runs that command line
once per rank. Either way a crash of the trial process (out of memory, a segfault, a
kill) becomes an ``error`` message for that trial, and the worker goes on; a death by a
signal is of kind ``signal``, which the worker retries.

Example:
    >>> runner = TrialProcess(log_path=None)
    >>> runner.close()  # nothing started yet: a no-op
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, cast

from dense_nas.study.process import prestart
from dense_nas.study.process.channel import Channel, ChannelClosed
from dense_nas.study.process.messages import (
    EpochMessage,
    ErrorMessage,
    ResultMessage,
    TrialMessage,
)
from dense_nas.study.process.trial import TrialSpec

ResultOrError = ResultMessage | ErrorMessage

Answer = Callable[[bool], None]
"""Sends the pruning answer to an epoch's report to the trial process: stop now?"""

OnEpoch = Callable[[EpochMessage, Answer], None]
"""Hears each epoch's report and must call its :data:`Answer` once; what it does after
answering runs while the trial process trains its next epoch."""


class TrialProcess:
    """Owns the trial process of one worker.

    Args:
        log_path: where the trial process's own output goes (``None``: this terminal).
        env: extra environment for the process (e.g. ``CUDA_VISIBLE_DEVICES``).
    """

    def __init__(self, log_path: Path | None, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.extra_env = dict(env or {})
        self.env = {**os.environ, **self.extra_env}
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: Channel | None = None
        self._log: IO[bytes] | None = None
        self._current: subprocess.Popen[bytes] | None = None  # the one training now
        self._killed = False  # by kill(): no trial trains after it

    def _start(self, extra_args: list[str]) -> tuple[subprocess.Popen[bytes], Channel]:
        if not extra_args:  # a serving process: one started early may be waiting for us
            adopted = prestart.take(self.extra_env)
            if adopted is not None:
                prestart.adopt_log(adopted[1], self.log_path)
                return adopted
        if self.log_path is not None and self._log is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        return prestart.spawn(self.env, self._log, extra_args)

    def run(self, spec: TrialSpec, on_epoch: OnEpoch, spec_dir: Path) -> ResultOrError:
        """Train ``spec``; ``on_epoch(report, answer)`` hears each epoch's report and
        answers whether to stop. Returns the last message."""
        if spec.devices > 1:
            path = spec_dir / f"trial-{spec.number}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(spec.to_dict()))
            if self._killed:
                return _STOPPED
            proc, channel = self._start(["--spec", str(path)])
            self._current = proc
            if self._killed:  # kill() came while this process started
                proc.kill()
            try:
                return self._converse(channel, proc, on_epoch)
            finally:
                channel.close()
                _reap(proc)
                self._current = None
        if self._killed:
            return _STOPPED
        if self._proc is None or self._proc.poll() is not None:
            self._proc, self._channel = self._start([])
        self._current = self._proc
        if self._killed:  # kill() came while this process was being readied
            return self._crashed(self._proc, kill=True)
        assert self._channel is not None
        try:
            self._channel.send({"spec": spec.to_dict()})
        except ChannelClosed:
            return self._crashed(self._proc)
        return self._converse(self._channel, self._proc, on_epoch)

    def _converse(
        self, channel: Channel, proc: subprocess.Popen[bytes], on_epoch: OnEpoch
    ) -> ResultOrError:
        def answer(prune: bool) -> None:
            channel.send({"prune": prune})

        while True:
            try:
                message = cast(TrialMessage, channel.receive())
                if message["type"] != "epoch":
                    return message
                on_epoch(message, answer)
            except ChannelClosed:
                return self._crashed(proc)

    def _crashed(self, proc: subprocess.Popen[bytes], kill: bool = False) -> ErrorMessage:
        code = _reap(proc, kill=kill)
        if proc is self._proc:
            self._proc, self._channel = None, None
        if code is not None and code < 0:
            how = f"killed by {signal.Signals(-code).name}"
            if code == -signal.SIGKILL:
                how += " (out of memory?)"
            return {"type": "error", "kind": "signal", "reason": f"trial process {how}"}
        return {
            "type": "error",
            "kind": "error",
            "reason": f"trial process exited with code {code}",
        }

    def kill(self) -> None:
        """Kill the trial process now (Ctrl-C); the trial in flight ends as an error, and
        so does any trial this runner is asked to train from now on."""
        self._killed = True
        proc = self._current
        if proc is not None and proc.poll() is None:
            proc.kill()

    def close(self) -> None:
        """Stop the trial process (if any) and release its log."""
        if self._channel is not None:
            self._channel.close()
        if self._proc is not None:
            _reap(self._proc, kill=True)
        self._proc, self._channel = None, None
        if self._log is not None:
            self._log.close()
            self._log = None


_STOPPED: ErrorMessage = {
    "type": "error",
    "kind": "signal",
    "reason": "the command was stopped before this trial trained",
}


def _reap(proc: subprocess.Popen[bytes], kill: bool = False) -> int | None:
    """Wait for a trial process to end (killing it if asked or if it hangs)."""
    if kill:
        proc.kill()
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()

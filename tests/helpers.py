"""Helpers the tests share: the CLI in a real process or in this one, waiting for a
condition, test files.

Example:
    >>> Path(TINY_SPACE).is_file()
    True
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from dense_nas.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY_SPACE = str(ROOT / "tests" / "study_spaces" / "tiny.yaml")


def search_args(
    *extra: str,
    trials: int = 1,
    epochs: int = 1,
    out: Path | None = None,
    study: str | None = None,
    pruner: str | None = None,
    threads: int | None = 1,
    quiet: bool = False,
) -> list[str]:
    """``dense-nas search`` arguments: a small study of the tiny space on the CPU, then
    ``extra`` (which, coming last, overrides any of them).

    Example:
        >>> search_args("--seed", "3", trials=2, study="s")[3:]
        ['--trials', '2', '--epochs', '1', '--accelerator', 'cpu', '--threads', '1', '--study', 's', '--seed', '3']
    """
    args = ["search", "--space", TINY_SPACE, "--trials", str(trials), "--epochs", str(epochs)]
    args += ["--accelerator", "cpu"]
    if threads is not None:
        args += ["--threads", str(threads)]
    if pruner is not None:
        args += ["--pruner", pruner]
    if study is not None:
        args += ["--study", study]
    if quiet:
        args.append("--quiet")
    if out is not None:
        args += ["--out", str(out)]
    return [*args, *extra]


def cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dense_nas ARGS`` in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "dense_nas", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@dataclass(frozen=True)
class Ran:
    """What one in-process ``dense-nas`` command returned and printed."""

    returncode: int
    stdout: str
    stderr: str


def main_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> Ran:
    """Run ``dense-nas ARGS`` through ``main()`` here: the same exit code and output as
    :func:`cli` without a second interpreter importing torch (seconds per call).

    Logging starts as in a fresh process, so a stray log line still lands in ``stderr``.
    """
    capsys.readouterr()  # what the test printed before is not the command's
    with _fresh_process_logging():
        returncode = main(list(args))
    out, err = capsys.readouterr()
    return Ran(returncode, out, err)


@contextlib.contextmanager
def _fresh_process_logging() -> Iterator[None]:
    """No root handler (``main``'s ``logging.basicConfig`` then writes to the captured
    stderr) and Optuna at its INFO default, propagating there: what ``main`` must quiet
    itself. pytest's handlers and the levels the tests set come back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    verbosity = optuna.logging.get_verbosity()
    root.handlers = []
    optuna.logging.set_verbosity(optuna.logging.INFO)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers = handlers
        root.setLevel(level)
        optuna.logging.disable_propagation()
        optuna.logging.enable_default_handler()
        optuna.logging.set_verbosity(verbosity)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate()`` until true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")

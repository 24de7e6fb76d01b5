"""Helpers the tests share: the CLI in a real process, waiting for a condition, test files.

Example:
    >>> Path(TINY_SPACE).is_file()
    True
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY_SPACE = str(ROOT / "tests" / "study_spaces" / "tiny.yaml")


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


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate()`` until true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")

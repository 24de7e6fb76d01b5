"""pytest over the docs pages: their ``>>>`` examples run as doctests (``--doctest-glob``).

Each page runs in a fresh directory of its own, so the studies and files its examples
write land there. Pages whose examples train a study are marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

collect_ignore = ["conf.py", "_ext", "_build", "_generated"]

# These pages' examples run a small search (seconds of training each, plus start-up).
TRAINING_PAGES = {"first-study.md", "results.md", "records.md"}


@pytest.fixture(autouse=True)
def _in_a_fresh_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".md" and item.path.name in TRAINING_PAGES:
            item.add_marker(pytest.mark.slow)

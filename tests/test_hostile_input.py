"""Hostile or odd input is refused up front: exit 2, one line, no traceback, nothing stored.

Each case builds its input in a fresh directory, runs the command in this process, and
checks that the command left that directory as it was: no storage, no ``--out``
directory, no file changed.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from dense_nas.cli import main
from tests._study_fixtures import empty_study
from tests.helpers import search_args

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Case:
    """A bad input: the arguments it makes in a directory, and a part of the message."""

    make: Callable[[Path], list[str]]
    says: str


def _search(*extra: str) -> Callable[[Path], list[str]]:
    """A small real search in ``DIR/out`` (it would train, were its input good)."""

    def make(root: Path) -> list[str]:
        return search_args(*extra, out=root / "out", threads=None)

    return make


def _search_with(make_extra: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    def make(root: Path) -> list[str]:
        return _search(*make_extra(root))(root)

    return make


def _a_file(root: Path, name: str = "taken") -> Path:
    path = root / name
    path.write_text("something else's\n")
    return path


def _non_images(root: Path) -> list[str]:
    for label in ("cat", "dog"):
        (root / "pictures" / label).mkdir(parents=True)
        for i in range(3):
            (root / "pictures" / label / f"{i}.png").write_text("this is not a picture\n")
    return ["--data", "folder", "--data-dir", str(root / "pictures")]


def _space(text: str) -> Callable[[Path], list[str]]:
    def make(root: Path) -> list[str]:
        (root / "space.yaml").write_text(text)
        return ["--space", str(root / "space.yaml")]

    return make


def _huge_space(root: Path) -> list[str]:
    path = root / "huge.yaml"
    with path.open("wb") as file:
        file.truncate(8 * 1024**3)  # sparse: 8 GB that would take minutes to read
    return ["--space", str(path)]


def _best_of_empty_study(root: Path) -> list[str]:
    built = empty_study(root)
    return ["best", "--storage", built.storage, "--study", built.name]


def _garbage_journal(root: Path) -> list[str]:
    path = root / "study.journal"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not an Optuna journal at all\n")
    return ["best", "--storage", str(path)]


_ALIAS_BOMB = "name: bomb\narchitecture:\n  growth_rate: &a [12, 12, 12, 12, 12, 12, 12, 12]\n"
for _level in "bcdefghi":
    _ALIAS_BOMB += f"  {_level}: &{_level} [" + ", ".join([f"*{chr(ord(_level) - 1)}"] * 8) + "]\n"

CASES = {
    "search --out is a file": Case(
        _search_with(lambda root: ["--out", str(_a_file(root))]), "--out: "
    ),
    "search --out under /proc": Case(_search("--out", "/proc/dense-nas-runs"), "--out: cannot"),
    "best --out is a file": Case(lambda root: ["best", "--out", str(_a_file(root))], "--out: "),
    "export --output is a directory": Case(
        lambda root: [
            "export",
            "--out",
            str(root / "out"),
            "--format",
            "onnx",
            "--output",
            str(root),
        ],
        "--output: ",
    ),
    "report --output under /proc": Case(
        lambda root: ["report", "--out", str(root / "out"), "--output", "/proc/dense-nas"],
        "--output: cannot",
    ),
    "--heartbeat inf": Case(_search("--heartbeat", "inf"), "--heartbeat"),
    "--heartbeat nan": Case(_search("--heartbeat", "nan"), "--heartbeat"),
    "--heartbeat past the clock": Case(_search("--heartbeat", "1e300"), "--heartbeat"),
    "--timeout inf": Case(_search("--timeout", "inf"), "--timeout"),
    "--seed below numpy's range": Case(_search("--seed", "-1"), "--seed: "),
    "--seed of 2**70": Case(_search("--seed", str(2**70)), "--seed: "),
    "--study of 5,000 characters": Case(_search("--study", "s" * 5000), "--study: "),
    "--study with a slash": Case(_search("--study", "../escape"), "--study: "),
    "--study with a NUL": Case(_search("--study", "a\0b"), "--study: "),
    "folder of .png files that are not images": Case(
        _search_with(_non_images), "is not a readable image"
    ),
    "space file of nested aliases": Case(_search_with(_space(_ALIAS_BOMB)), "aliases expand"),
    "space file nested 100,000 deep": Case(
        _search_with(_space("name: deep\narchitecture: " + "[" * 100_000)), "nested too deeply"
    ),
    "space file of 8 GB": Case(_search_with(_huge_space), "larger than 1,000,000 bytes"),
    "best on a study with no completed trial": Case(_best_of_empty_study, "no completed trials"),
    "a garbage journal file": Case(_garbage_journal, "line 1 is not an Optuna journal record"),
    "status of a garbage journal file": Case(
        lambda root: ["status", *_garbage_journal(root)[1:]], "line 1 is not an Optuna journal"
    ),
}


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` and a digest of each file (sparse files by size)."""
    shot = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.stat().st_size > 1 << 20:
            shot[str(path)] = f"{path.stat().st_size} bytes"
        elif path.is_file():
            shot[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            shot[str(path)] = "dir"
    return shot


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_input_is_one_line_exit_2_and_nothing_is_stored(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = case.make(tmp_path)
    before = _snapshot(tmp_path)
    started = time.monotonic()

    code = main(args)

    err = capsys.readouterr().err
    assert code == 2, err
    assert time.monotonic() - started < 20  # refused at once, not after training or a hang
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("dense-nas: error: ") and case.says in err, err
    assert len(err) < 400, "a short line"
    assert _snapshot(tmp_path) == before  # nothing stored, changed or even made
    assert not os.path.exists("/proc/dense-nas-runs")

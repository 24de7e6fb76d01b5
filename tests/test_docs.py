"""The docs site shows what the code does: its CLI reference lists every flag, and the
commands in its ``console`` blocks run as written.

The pages' ``>>>`` examples run as doctests (``docs/conftest.py``). A ``console`` block
holds commands the tests run (``$ ...`` lines, in a fresh directory per page, in page
order); ``bash`` blocks show commands that need what a test machine lacks (a GPU, a
download, another machine). A ``yaml`` or ``python`` block whose first line is
``# NAME`` is the file NAME that the page's commands read.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dense_nas.cli import build_parser
from dense_nas.cli.reference import cli_reference_markdown
from tests.helpers import ROOT, main_in_process

DOCS = ROOT / "docs"
PAGES = sorted(
    path for path in DOCS.rglob("*.md") if not {"_build", "_generated"} & set(path.parts)
)


def console_commands(page: Path) -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def page_files(page: Path) -> dict[str, str]:
    """The files a page shows (``# NAME`` as a block's first line), by name."""
    blocks = re.findall(
        r"```(?:yaml|python)\n# ([\w.-]+)\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL
    )
    return {name: f"# {name}\n{body}" for name, body in blocks}


def test_the_cli_reference_lists_every_subcommand_and_flag() -> None:
    parser = build_parser()
    reference = cli_reference_markdown(parser)
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in subparsers.choices.items():
        section = reference.split(f"## `dense-nas {name}`\n", 1)[1].split("\n## ", 1)[0]
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert re.search(rf"`{re.escape(flag)}[ `,]", section), (name, flag)


def test_the_cli_reference_gives_defaults_and_choices() -> None:
    reference = cli_reference_markdown(build_parser())
    trials = next(line for line in reference.splitlines() if line.startswith("| `--trials "))
    assert "(default: 24)" in trials or "(default: `24`)" in trials
    assert (
        "| `--out OUT` | directory for the default storage, checkpoints and logs (default: `dense-nas-runs`) |"
        in reference
    )
    assert "(one of `onnx`, `torchscript`, `state-dict`, `exported-program`)" in reference


def test_the_pages_that_run_commands_are_found() -> None:
    runs = {page.name for page in PAGES if console_commands(page)}
    assert {"first-study.md", "lightning.md", "records.md"} <= runs
    assert set(page_files(DOCS / "guide" / "lightning.md")) == {"trainer.yaml", "my_cli.py"}


def _run_elsewhere(words: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command that is not ``dense-nas``, with this interpreter's tools first on PATH."""
    tools = Path(sys.executable).parent
    env = {**os.environ, "PATH": os.pathsep.join([str(tools), os.environ["PATH"]])}
    if words[0] == "python":
        words = [sys.executable, *words[1:]]
    return subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", [p for p in PAGES if console_commands(p)], ids=lambda p: p.relative_to(DOCS).as_posix()
)
def test_the_console_commands_of_a_page_run_as_written(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in page_files(page).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    for command in console_commands(page):
        words = shlex.split(command)
        if words[0] == "dense-nas":
            ran = main_in_process(capsys, *words[1:])
            assert ran.returncode == 0, (command, ran.stderr[-3000:])
        else:
            done = _run_elsewhere(words, tmp_path)
            assert done.returncode == 0, (command, done.stderr[-3000:])

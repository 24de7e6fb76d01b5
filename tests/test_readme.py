"""The README's set-up commands are the ones CI runs, and they name real things."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    main_job, tests = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci
    assert main_job.endswith("dense-nas search")
    assert "torch==2.13.0" in main_job.split("pip install .")[0]  # torch before the package


def test_plugin_the_test_command_installs_exists() -> None:
    assert (ROOT / "tests" / "plugins" / "example_space_plugin" / "pyproject.toml").is_file()

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
    assert tests.endswith("&& .venv/bin/sphinx-build -W -q -b html docs docs/_build/html")


def test_the_readme_links_name_files_that_exist() -> None:
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 8  # the way into the docs pages
    for link in links:
        assert (ROOT / link).is_file(), link


def test_the_readme_stays_a_front_door() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text)  # dated figures live in RESULTS.md


def test_plugin_the_test_command_installs_exists() -> None:
    assert (ROOT / "tests" / "plugins" / "example_space_plugin" / "pyproject.toml").is_file()

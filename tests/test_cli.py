"""The ``dense-nas`` command itself: its version and how it refuses bad arguments."""

from __future__ import annotations

from importlib import metadata

import pytest

from dense_nas.cli import main
from tests.helpers import main_in_process


def test_version_prints_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"dense-nas {metadata.version('dense-nas')}\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "the following arguments are required: command; see dense-nas --help"),
        (
            ["search", "--no-such-flag"],
            "unrecognized arguments: --no-such-flag; see dense-nas --help",
        ),
        (
            ["best", "--max-params", "0"],
            "best: argument --max-params: must be a positive integer, got 0; "
            "see dense-nas best --help",
        ),
    ],
)
def test_an_argument_error_says_its_prefix_once(
    capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    ran = main_in_process(capsys, *args)
    assert (ran.returncode, ran.stderr) == (2, f"dense-nas: error: {says}\n")

"""A study on the user's own LightningDataModule: ``--data module:Name``, ``--data-arg``,
plugin datamodules and ``dense-nas data``.

The user datamodules live in ``tests/user_data/``, which the tests put on ``PYTHONPATH``
as a user would; ``quadrants.py`` there is the docs' example (``docs/guide/lightning.md``),
byte for byte.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import pytest
from optuna.trial import TrialState

from dense_nas import search
from dense_nas.errors import UserInputError
from dense_nas.study.settings import SearchSettings
from tests.helpers import ROOT, TINY_SPACE, cli, main_in_process

USER_DATA = ROOT / "tests" / "user_data"
STORAGE = "dense-nas.db"


@pytest.fixture
def user_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``tests/user_data`` (and the repository, for ``tests.user_data``) on the path of
    this process and of every process it starts."""
    path = os.pathsep.join([str(USER_DATA), str(ROOT), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path.rstrip(os.pathsep))
    monkeypatch.syspath_prepend(str(USER_DATA))
    yield path


def _docs_section() -> str:
    """The "Your own data" section of the docs page on Lightning pieces."""
    text = (ROOT / "docs" / "guide" / "lightning.md").read_text()
    return text.split("\n## Your own data\n", 1)[1].split("\n## ", 1)[0]


def _one_line_error(stderr: str, flag: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"dense-nas: error: {flag}") or f"argument {flag}" in lines[0]
    return lines[0]


# --- bad input: exit 2, one line naming the flag, nothing stored ---------------------------

BAD_INPUTS = [
    (["--data", "no_such_module_xyz:Data"], "--data", "cannot import no_such_module_xyz"),
    (["--data", "quadrants:Missing"], "--data", "quadrants has no Missing; check the name"),
    (["--data", "broken_data:NotADataModule"], "--data", "gave NotADataModule, not a Lightning"),
    (["--data", "broken_data:returns_a_number"], "--data", "gave int, not a LightningDataModule"),
    (["--data", "broken_data:NoClasses"], "--data", "has no num_classes (got None)"),
    (["--data", "broken_data:NoValidation"], "--data", "has no val_dataloader"),
    (
        ["--data", "broken_data:OneBasedLabels"],
        "--data",
        "the first training batch has label 2, outside 0..1 for num_classes 2",
    ),
    (["--data", "mnist"], "--data", "unknown dataset 'mnist'"),
    (["--data", "quadrants:Quadrants", "--data-arg", "size"], "--data-arg", "KEY=VALUE"),
    (["--data", "quadrants:Quadrants", "--data-arg", "a b=1"], "--data-arg", "KEY=VALUE"),
    (["--data", "quadrants:Quadrants", "--data-arg", "size=[1"], "--data-arg", "not a YAML value"),
    (
        ["--data", "quadrants:Quadrants", "--data-arg", "colour=red"],
        "--data-arg",
        "refused colour='red' (TypeError: ",
    ),
    (
        ["--data", "quadrants:Quadrants", "--data-arg", "size=8", "--data-arg", "size=9"],
        "--data-arg",
        "size is given twice",
    ),
    (
        ["--data", "quadrants:Quadrants", "--data-arg", "day=2026-12-02"],
        "--data-arg",
        "not a plain value",
    ),
    (["--data", "digits", "--data-arg", "size=8"], "--data-arg", "takes no arguments"),
    (["--data", "quadrants:Quadrants", "--val-size", "0.2"], "--val-size", "holds out its own"),
    (["--data", "quadrants:Quadrants", "--data-dir", "."], "--data-dir", "as a --data-arg"),
]


@pytest.mark.usefixtures("user_path")
@pytest.mark.parametrize(("args", "flag", "says"), BAD_INPUTS)
def test_bad_data_input_is_one_line_exit_2_and_nothing_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], flag: str, says: str
) -> None:
    out = tmp_path / "out"
    result = main_in_process(
        capsys, "search", "--space", TINY_SPACE, "--trials", "1", "--out", str(out), *args
    )
    assert result.returncode == 2, result.stderr
    assert says in _one_line_error(result.stderr, flag)
    assert not (out / STORAGE).exists()
    assert "Traceback" not in result.stderr


@pytest.mark.usefixtures("user_path")
def test_python_data_is_recorded_by_import_path_and_refused_without_one() -> None:
    quadrants = importlib.import_module("quadrants")
    settings = SearchSettings(data=quadrants.Quadrants, data_args={"size": 8})
    assert settings.data == "quadrants:Quadrants"
    assert SearchSettings(data=quadrants.small_quadrants).data == "quadrants:small_quadrants"

    class Local(L.LightningDataModule):
        num_classes = 2

    with pytest.raises(UserInputError, match=r"^data: .*Local.* has no import path; define it"):
        SearchSettings(data=Local)


@pytest.mark.parametrize(
    ("data_args", "says"),
    [
        ({"size": object()}, r"'size' is <object object at .*>, not a plain value"),
        ({"size": float("nan")}, "'size' is nan, not a plain value"),
        ({"not a name": 1}, "'not a name' is not a keyword argument name"),
    ],
)
def test_python_data_args_must_be_plain_values(
    tmp_path: Path, data_args: dict[str, Any], says: str
) -> None:
    with pytest.raises(UserInputError, match=f"^data_args: {says}"):
        search(data="quadrants:Quadrants", data_args=data_args, out=tmp_path)
    assert not (tmp_path / STORAGE).exists()


@pytest.mark.usefixtures("user_path")
def test_task_facts_come_from_num_classes_and_the_first_training_batch() -> None:
    from dense_nas.data import build_datamodule, data_facts

    datamodule = build_datamodule("quadrants:Quadrants", data_args={"size": 6}, batch_size=16)
    assert datamodule.batch_size == 16  # type: ignore[attr-defined]  # the recipe's, passed on
    facts = data_facts(datamodule, "quadrants:Quadrants")
    assert (facts.num_classes, facts.in_channels, facts.image_size) == (4, 3, (6, 6))
    given = build_datamodule("quadrants:Quadrants", data_args={"batch_size": 5}, batch_size=16)
    assert given.batch_size == 5  # type: ignore[attr-defined]  # a --data-arg wins


# --- plugins and the listing -----------------------------------------------------------------


def _plugin_installed() -> bool:
    try:
        distribution("dense-nas-example-plugin")
    except PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not _plugin_installed(),
    reason="example plugin not installed: pip install ./tests/plugins/example_space_plugin",
)
def test_dense_nas_data_lists_builtin_and_plugin_datasets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = main_in_process(capsys, "data")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    for name in ("digits", "cifar10", "cifar100", "svhn", "folder"):
        assert re.match(rf"{name} +built-in ", rows[name]), rows[name]
    assert re.match(
        r"example-stripes +plugin dense-nas-example-plugin +Plugin example: 8x8 grey stripes",
        rows["example-stripes"],
    )
    from dense_nas.data import build_datamodule, data_facts

    facts = data_facts(build_datamodule("example-stripes"), "example-stripes")
    assert (facts.num_classes, facts.in_channels, facts.image_size) == (2, 1, (8, 8))


def test_the_data_listing_marks_a_hidden_and_a_broken_plugin(
    monkeypatch: pytest.MonkeyPatch, user_path: str
) -> None:
    from dense_nas.data._user import ENTRY_POINT_GROUP, list_datasets

    points = [
        EntryPoint("digits", "quadrants:Quadrants", ENTRY_POINT_GROUP),
        EntryPoint("gone", "no_such_module_xyz:Data", ENTRY_POINT_GROUP),
        EntryPoint("quads", "quadrants:Quadrants", ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(
        "dense_nas._plugins.entry_points",
        lambda group: points if group == ENTRY_POINT_GROUP else [],
    )
    plugins = {info.name: info.description for info in list_datasets() if info.source != "built-in"}
    assert plugins["digits"] == "(hidden: a built-in dataset has this name)"
    assert plugins["gone"].startswith("(broken: ") and "ModuleNotFoundError" in plugins["gone"]
    assert not plugins["quads"].startswith("(")  # its docstring's first paragraph


# --- whole studies -----------------------------------------------------------------------------


def test_the_docs_example_is_the_tested_module() -> None:
    (code,) = re.findall(r"```python\n(.+?)```", _docs_section(), flags=re.DOTALL)
    assert code == (USER_DATA / "quadrants.py").read_text()


def _bash(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One docs command line, run by bash as a user would (this venv's commands first)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    env = {**os.environ, "PATH": path, "PYTHONWARNINGS": "ignore"}
    env.pop("PYTHONPATH", None)  # the docs' own PYTHONPATH=. must be enough
    return subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_the_docs_study_on_a_user_datamodule_runs_as_written(tmp_path: Path) -> None:
    """The docs' quadrants.py and commands: a class with --data-arg, 2 workers, then
    export, retrain and load_best, each in a fresh process."""
    section = _docs_section()
    (tmp_path / "quadrants.py").write_text((USER_DATA / "quadrants.py").read_text())
    (commands,) = re.findall(r"```bash\n(.+?)\n```", section, flags=re.DOTALL)
    search_line, export_line, retrain_line, load_line = commands.splitlines()
    assert "--workers 2" in search_line and "--data-arg size=12" in search_line

    searched = _bash(search_line, tmp_path)
    assert searched.returncode == 0, searched.stderr[-3000:]
    storage = f"sqlite:///{tmp_path / 'dense-nas-runs' / STORAGE}"
    study = optuna.load_study(study_name="digits-tiny-Quadrants", storage=storage)
    assert study.user_attrs["data"] == "quadrants:Quadrants"
    assert study.user_attrs["data_args"] == {"size": 12}
    assert study.user_attrs["image_size"] == [12, 12]  # from the first batch, not a default
    assert "val_size" not in study.user_attrs  # the datamodule holds out its own
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4
    workers = {t.user_attrs["worker"]["index"] for t in study.trials}
    assert workers == {0, 1}
    arch = study.best_trial.user_attrs["arch"]
    assert (arch["num_classes"], arch["in_channels"]) == (4, 3)

    exported = _bash(export_line, tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (tmp_path / "quadrants.onnx").stat().st_size > 0

    retrained = _bash(retrain_line, tmp_path)
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    assert "test accuracy" in retrained.stdout
    record = optuna.load_study(study_name="digits-tiny-Quadrants", storage=storage)
    (run,) = record.user_attrs["retrains"]
    assert 0.0 <= run["test_accuracy"] <= 1.0

    loaded = _bash(load_line, tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "num_classes=4" in loaded.stdout and "in_channels=3" in loaded.stdout


@pytest.mark.slow
@pytest.mark.usefixtures("user_path")
def test_a_factory_datamodule_trains_on_two_ddp_ranks(tmp_path: Path) -> None:
    result = cli(
        "search",
        "--space",
        TINY_SPACE,
        "--data",
        "quadrants:small_quadrants",
        "--data-arg",
        "size=8",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--devices",
        "2",
        "--accelerator",
        "cpu",
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(
        study_name="test-tiny-small_quadrants", storage=f"sqlite:///{tmp_path / STORAGE}"
    )
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("failure")
    ranks = trial.user_attrs["ranks"]
    assert len(ranks) == 2 and ranks[0] == ranks[1]  # both ranks built and trained the same
    assert study.user_attrs["image_size"] == [8, 8]
    arch = trial.user_attrs["arch"]
    assert (arch["num_classes"], arch["in_channels"]) == (4, 3)


@pytest.mark.slow
@pytest.mark.usefixtures("user_path")
def test_a_class_passed_in_python_is_rebuilt_and_its_missing_test_set_said_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """search(data=Class) runs its trial processes on the recorded import path; retrain
    refuses a datamodule without a test set, and the study refuses other data."""
    no_test = importlib.import_module("tests.user_data.broken_data").NoTest
    study = search(
        space=TINY_SPACE,
        data=no_test,
        data_args={"size": 8},
        n_trials=1,
        epochs=1,
        accelerator="cpu",
        threads=1,
        out=tmp_path,
        study_name="no-test",
    )
    assert study.user_attrs["data"] == "tests.user_data.broken_data:NoTest"
    assert study.trials[0].state == TrialState.COMPLETE, study.trials[0].user_attrs

    common = ("--study", "no-test", "--out", str(tmp_path))
    retrained = main_in_process(capsys, "retrain", *common, "--epochs", "1")
    assert retrained.returncode == 2
    line = _one_line_error(retrained.stderr, "retrain")
    assert "has no test_dataloader" in line and "define test_dataloader()" in line

    before = (tmp_path / STORAGE).read_bytes()
    other = main_in_process(
        capsys,
        "search",
        "--space",
        TINY_SPACE,
        "--data",
        "tests.user_data.broken_data:NoTest",
        "--data-arg",
        "size=10",
        "--trials",
        "2",
        *common,
    )
    assert other.returncode == 2
    says = _one_line_error(other.stderr, "--data")
    assert "trains on tests.user_data.broken_data:NoTest --data-arg size=8" in says
    assert (tmp_path / STORAGE).read_bytes() == before

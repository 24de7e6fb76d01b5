"""The SQLite file a study lives in: write-ahead log, readers beside writers, a whole file."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dense_nas.study import storage as storage_module
from dense_nas.study.storage import make_storage
from tests.helpers import TINY_SPACE, cli, main_in_process

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _journal_mode(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return str(connection.execute("PRAGMA journal_mode").fetchone()[0])


def test_a_new_sqlite_study_keeps_a_write_ahead_log_and_syncs_at_checkpoints(
    tmp_path: Path,
) -> None:
    backend = make_storage(None, tmp_path)
    optuna.create_study(study_name="s", storage=backend).set_user_attr("made", True)
    assert _journal_mode(tmp_path / "dense-nas.db") == "wal"
    assert isinstance(backend, optuna.storages.RDBStorage)
    with backend.engine.connect() as connection:  # 1 is NORMAL, 2 (SQLite's default) FULL
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1


def test_a_reader_in_the_middle_of_a_read_does_not_hold_up_a_worker_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_module, "SQLITE_LOCK_TIMEOUT", 1.0)
    study = optuna.create_study(study_name="s", storage=make_storage(None, tmp_path))
    trial = study.ask()
    # `dense-nas status` or the dashboard part-way through reading the study
    with contextlib.closing(sqlite3.connect(tmp_path / "dense-nas.db")) as reader:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM trials").fetchone() == (1,)
        for epoch in range(1, 4):  # with a rollback journal each commit waits for the reader
            trial.report(epoch / 10, epoch)
        study.tell(trial, 0.3)
        # the reader still sees the study as it was when its read began
        assert reader.execute("SELECT count(*) FROM trial_values").fetchone() == (0,)
    assert study.trials[0].state == TrialState.COMPLETE


def test_opening_a_study_file_made_elsewhere_leaves_the_file_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "dense-nas.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{path}")  # Optuna's own mode
    before = path.read_bytes()
    study = optuna.load_study(study_name="s", storage=make_storage(None, tmp_path))
    assert study.trials == []
    assert path.read_bytes() == before and _journal_mode(path) == "delete"
    backend = make_storage(None, tmp_path)
    assert isinstance(backend, optuna.storages.RDBStorage)
    with backend.engine.connect() as connection:  # a rollback journal keeps FULL (2)
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2


@pytest.mark.slow  # its own command: the point is what the file holds once that process ends
def test_after_the_command_the_database_file_alone_holds_the_whole_study(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ran = cli(
        "search", "--space", TINY_SPACE, "--trials", "2", "--epochs", "1", "--out", str(out),
        "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert not (out / "dense-nas.db-wal").exists()  # folded back into the file at exit
    copied = tmp_path / "copy" / "dense-nas.db"
    copied.parent.mkdir()
    shutil.copyfile(out / "dense-nas.db", copied)  # as a user copies a study elsewhere
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{copied}")
    assert summary.n_trials == 2
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{copied}")
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


@pytest.mark.parametrize(
    "command",
    [
        ["best"],
        ["best", "--json"],
        ["status"],
        ["export", "--format", "onnx", "--output", "model.onnx"],
        ["report", "--output", "report"],
        ["retrain", "--epochs", "1", "--accelerator", "cpu"],
    ],
)
@pytest.mark.parametrize(
    "storage",
    [[], ["--storage", "sqlite:///s.db"], ["--storage", "s.journal"]],
    ids=["default", "sqlite", "journal"],
)
def test_a_read_command_where_no_study_is_makes_no_storage(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    storage: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    ran = main_in_process(capsys, *command, *storage)
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1, ran.stderr
    assert "dense-nas search" in ran.stderr  # what makes one
    assert list(tmp_path.iterdir()) == []

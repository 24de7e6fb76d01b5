"""Journal files after a torn write: the torn record moved aside, garbage refused, whole appends."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from dense_nas.cli import main
from dense_nas.study import search
from dense_nas.study.journal import open_journal
from tests._study_fixtures import shared_study
from tests.helpers import TINY_SPACE, main_in_process

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: What a full disk leaves: a record cut short, with no newline (the issue's reproduction).
TORN = b'{"op_code": 5, "trial_id": 9'


def _journal_copy(base: Path, tmp_path: Path) -> tuple[Path, str]:
    """The shared single-objective study (real trained trials) copied into a journal file."""
    built = shared_study(base, "single")
    journal = tmp_path / "study.journal"
    optuna.copy_study(
        from_study_name=built.name,
        from_storage=built.storage,
        to_storage=JournalStorage(JournalFileBackend(str(journal))),
    )
    return journal, built.name


def _trials(journal: Path, name: str) -> list[tuple[int, TrialState, Any, dict[str, Any]]]:
    """Every trial as plain Optuna reads it from the file: number, state, values, user attrs."""
    study = optuna.load_study(
        study_name=name, storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    return [(t.number, t.state, t.values, t.user_attrs) for t in study.trials]


def _assert_parses(journal: Path) -> None:
    data = journal.read_bytes()
    assert data.endswith(b"\n")
    assert all(isinstance(json.loads(line), dict) for line in data.splitlines())


def _torn_files(journal: Path) -> list[Path]:
    return sorted(journal.parent.glob(journal.name + ".torn-*"))


def test_best_on_a_torn_journal_keeps_every_trial_and_moves_the_record_aside(
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    journal, name = _journal_copy(tmp_path_factory.getbasetemp(), tmp_path)
    before = _trials(journal, name)
    whole = journal.read_bytes()
    with journal.open("ab") as file:
        file.write(TORN)

    best = main_in_process(capsys, "best", "--storage", str(journal), "--study", name, "--json")
    assert best.returncode == 0, best.stderr
    shown = {row["trial"] for row in json.loads(best.stdout)["best"]}
    assert shown == {n for n, state, _, _ in before if state == TrialState.COMPLETE}
    (aside,) = _torn_files(journal)
    assert aside.read_bytes() == TORN
    (warning,) = best.stderr.splitlines()  # one line, naming both files
    assert str(journal) in warning and str(aside) in warning and "torn" in warning
    assert journal.read_bytes() == whole  # exactly the torn tail went
    _assert_parses(journal)
    assert _trials(journal, name) == before

    again = main_in_process(capsys, "best", "--storage", str(journal), "--study", name)
    assert again.returncode == 0 and again.stderr == ""  # repaired once; nothing more to say
    assert _torn_files(journal) == [aside]


@pytest.mark.slow
def test_search_resumes_a_torn_journal_with_every_finished_trial(tmp_path: Path) -> None:
    journal = tmp_path / "s.journal"
    options: dict[str, Any] = {
        "space": TINY_SPACE,
        "epochs": 1,
        "storage": str(journal),
        "study_name": "torn",
        "out": tmp_path / "out",
        "accelerator": "cpu",
        "threads": 1,
    }
    search(n_trials=2, **options)
    before = _trials(journal, "torn")
    with journal.open("ab") as file:
        file.write(TORN)

    study = search(n_trials=3, **options)

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    assert len(study.get_trials(states=finished)) == 3
    assert _trials(journal, "torn")[:2] == before
    assert [p.read_bytes() for p in _torn_files(journal)] == [TORN]
    _assert_parses(journal)


def test_a_garbage_line_inside_is_exit_2_naming_the_line_and_nothing_changes(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal, name = _journal_copy(tmp_path_factory.getbasetemp(), tmp_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[4] = b"this is not a record\n"
    journal.write_bytes(b"".join(lines) + TORN)  # a torn tail too: it must stay as well
    damaged = journal.read_bytes()

    assert main(["best", "--storage", str(journal), "--study", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"dense-nas: error: --storage: {journal} line 5 is not")
    assert journal.read_bytes() == damaged and _torn_files(journal) == []


def test_an_unknown_op_code_is_exit_2_naming_the_line(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal, name = _journal_copy(tmp_path_factory.getbasetemp(), tmp_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[4] = b'{"op_code": 99, "worker_id": "w"}\n'  # from an Optuna newer than this one
    journal.write_bytes(b"".join(lines))
    damaged = journal.read_bytes()

    assert main(["best", "--storage", str(journal), "--study", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"dense-nas: error: --storage: {journal} line 5 is not")
    assert "op_code 99" in err
    assert journal.read_bytes() == damaged


def test_a_record_torn_while_the_study_is_open_is_moved_aside_before_the_next_append(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "s.journal"
    study = optuna.create_study(study_name="s", storage=open_journal(journal))
    with journal.open("ab") as file:  # another process died in the middle of a write
        file.write(TORN)
    with caplog.at_level(logging.WARNING):
        study.set_user_attr("after", 1)
    assert len(caplog.records) == 1 and "torn" in caplog.records[0].getMessage()
    assert [p.read_bytes() for p in _torn_files(journal)] == [TORN]
    _assert_parses(journal)
    assert optuna.load_study(study_name="s", storage=open_journal(journal)).user_attrs == {
        "after": 1
    }


#: Fills the disk in the middle of an append: writes past ``size + 10`` bytes fail
#: (RLIMIT_FSIZE gives a short write, then EFBIG), as ENOSPC does on a full file system.
_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    import optuna
    from dense_nas.study.journal import open_journal

    path = Path(sys.argv[1])
    study = optuna.create_study(study_name="s", storage=open_journal(path))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    size = path.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, resource.RLIM_INFINITY))
    try:
        study.set_user_attr("note", "x" * 1000)
    except OSError as err:
        print("failed", size, err.errno)
    """
)


def test_an_append_that_fills_the_disk_leaves_the_journal_whole(tmp_path: Path) -> None:
    journal = tmp_path / "s.journal"
    child = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(journal)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    word, size, _ = child.stdout.split()
    assert word == "failed"
    assert journal.stat().st_size == int(size)  # the cut-short record was truncated back off
    _assert_parses(journal)
    study = optuna.load_study(study_name="s", storage=open_journal(journal))
    assert study.user_attrs == {} and _torn_files(journal) == []
    study.set_user_attr("note", "fits now")  # the study goes on
    assert optuna.load_study(study_name="s", storage=open_journal(journal)).user_attrs == {
        "note": "fits now"
    }

"""Where studies and checkpoints live: Optuna storages and the artifact store.

A storage is given as a URL (``sqlite:///s.db``, ``postgresql://user@host/db``,
``mysql+pymysql://...``) or as a journal file path ending in ``.log``, ``.journal`` or
``.jsonl`` (fastest for many workers on one machine; opening one moves a torn last record
aside, see :mod:`~dense_nas.study.journal`). With none, the study lives in
``<out>/dense-nas.db``. Trial checkpoints go to a file-system artifact store whose root
is recorded on the study, so any machine that mounts it can load them.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> storage_url(None, out).startswith("sqlite:///")
    True
    >>> type(make_storage(str(out / "s.journal"), out)).__name__
    'JournalStorage'
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import sqlite3
import time
import weakref
from pathlib import Path
from typing import Any, BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import BaseStorage, RDBStorage
from sqlalchemy import event

from dense_nas.errors import UserInputError
from dense_nas.paths import check_output_dir
from dense_nas.records import ARTIFACT_ROOT_ATTR
from dense_nas.study.journal import open_journal

JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")


def storage_url(storage: str | None, out: Path) -> str:
    """The storage URL or path to use: the given one, or SQLite in ``out`` (made here)."""
    if storage:
        return storage
    check_output_dir(out, "out")
    out.mkdir(parents=True, exist_ok=True)
    return _default_url(out)


def _default_url(out: Path) -> str:
    return f"sqlite:///{(out / 'dense-nas.db').resolve()}"


def _journal_file(url: str) -> Path | None:
    """The journal file a storage names (none for a URL)."""
    return Path(url) if url.endswith(JOURNAL_SUFFIXES) and "://" not in url else None


def _storage_file(url: str) -> Path | None:
    """The file a journal path or a plain SQLite URL names (none for a database server)."""
    return _journal_file(url) or _sqlite_file(url)


def make_storage(storage: str | None, out: Path) -> BaseStorage:
    """An Optuna storage for a URL or journal path; bad input is one :class:`UserInputError` line.

    Example:
        >>> import tempfile, pathlib
        >>> make_storage("mongodb://x", pathlib.Path(tempfile.mkdtemp()))
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: storage: cannot open 'mongodb://x' (Can't load plugin: sqlalchemy.dialects:mongodb); use sqlite:///FILE, postgresql://..., or a journal file ending in .log
    """
    url = storage_url(storage, out)
    path = _journal_file(url)
    if path is not None:
        if not path.parent.is_dir():
            raise UserInputError(
                f"directory {path.parent} does not exist; create it first", param="storage"
            )
        return open_journal(path)
    for attempt in range(5):
        try:
            sqlite_file = _sqlite_file(url)
            if sqlite_file is not None and not sqlite_file.exists():
                _use_wal(sqlite_file)  # a file made here; one that exists keeps its mode
            rdb = RDBStorage(url, engine_kwargs=_engine_kwargs(url))
            if sqlite_file is not None:
                _sync_normally(rdb)
            return rdb
        except Exception as err:  # SQLAlchemy raises many types for a bad URL or a dead server
            reason = str(err).splitlines()[0]
            # Machines joining a fresh database at once race to create Optuna's tables;
            # the loser sees a duplicate and finds the tables made on its next try.
            if any(word in reason for word in ("duplicate key", "already exists")) and attempt < 4:
                time.sleep(0.2 + random.random())
                continue
            break
    raise UserInputError(
        f"cannot open {url!r} ({reason}); use sqlite:///FILE, postgresql://..., "
        "or a journal file ending in .log",
        param="storage",
    ) from None


SQLITE_LOCK_TIMEOUT = 60.0
"""Seconds a write waits for a SQLite file's lock before the command stops (exit 1)."""


def _sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///FILE`` URL (none for memory or URI options)."""
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    name = url.removeprefix("sqlite:///")
    return None if name in ("", ":memory:") else Path(name)


def _use_wal(path: Path) -> None:
    """Make a new SQLite file in write-ahead-log mode (kept in the file).

    In WAL mode a commit appends to ``<file>-wal`` instead of rewriting pages through a
    rollback journal, and readers (``dense-nas status``, the dashboard) never block the
    workers' writes. A file that exists already is never changed by opening it (reading
    a study must not rewrite it); where the file cannot be made the storage says why.
    """
    if not path.parent.is_dir():
        return  # RDBStorage names the problem
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(path, timeout=1.0)) as connection,
    ):
        connection.execute("PRAGMA journal_mode=WAL")


def _sync_normally(storage: RDBStorage) -> None:
    """``synchronous=NORMAL`` on each of the storage's connections to a file in WAL mode.

    In WAL mode that syncs the log at checkpoints, not at every commit: a killed process
    loses nothing it committed, and a power cut can lose the last commits but never
    corrupts the file. A file in rollback-journal mode keeps SQLite's FULL, which is what
    keeps that mode safe from a power cut.
    """

    def on_connect(connection: Any, _record: Any) -> None:
        if connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections made while opening it are made again, with it
    # The last connection to close folds the log back into the file and removes it, so
    # the file alone is the whole study again once the command ends.
    engine = weakref.ref(storage.engine)

    def close() -> None:
        alive = engine()
        if alive is not None:
            alive.dispose()

    atexit.register(close)


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several local workers write to one file: wait for the lock instead of failing.
        return {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT}}
    return {"pool_pre_ping": True}


def open_study(
    storage: str | None, study_name: str | None, out: Path = Path("dense-nas-runs")
) -> optuna.Study:
    """Load an existing study, or stop with one line naming the studies that do exist.

    ``study_name=None`` opens the storage's only study. Reading never makes a storage: a
    SQLite or journal file that is not there is one line, and nothing is created.

    Example:
        >>> import tempfile, pathlib
        >>> empty = pathlib.Path(tempfile.mkdtemp())
        >>> open_study(None, None, empty / "runs")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: storage: no study storage at .../runs/dense-nas.db; check --out and --storage, or make one with dense-nas search
        >>> list(empty.iterdir())
        []
    """
    if storage is None and out.exists() and not out.is_dir():
        raise UserInputError(
            f"{out} is a file, not the folder of a study; check --out", param="out"
        )
    where = storage or _default_url(out)
    file = _storage_file(where)
    if file is not None and not file.exists():
        raise UserInputError(
            f"no study storage at {file}; check --out and --storage, "
            "or make one with dense-nas search",
            param="storage",
        )
    backend = make_storage(where, out)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(backend))
    known = ", ".join(names) or "none"
    if study_name is None:
        if len(names) != 1:
            fix = "name one with --study" if names else "check --out and --storage"
            raise UserInputError(
                f"{where} holds {len(names)} studies ({known}); {fix}", param="study_name"
            )
        study_name = names[0]
    return load_named_study(backend, where, study_name, names, param="study_name")


def load_named_study(
    backend: BaseStorage,
    where: str,
    name: str,
    names: list[str] | None = None,
    *,
    param: str,
    fix: str = "check --study and --storage",
) -> optuna.Study:
    """Load study ``name`` from ``backend`` (at ``where``), or stop with one line that
    lists the studies it holds (``names``, read when not given) and says how to fix it.

    Example:
        >>> from optuna.storages import InMemoryStorage
        >>> load_named_study(InMemoryStorage(), "memory", "x", param="study_name")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: study_name: no study named 'x' in memory (studies there: none); check --study and --storage
    """
    if names is None:
        names = sorted(optuna.get_all_study_names(backend))
    if name not in names:
        raise UserInputError(
            f"no study named {name!r} in {where} (studies there: {', '.join(names) or 'none'}); "
            f"{fix}",
            param=param,
        )
    return remember_storage(optuna.load_study(study_name=name, storage=backend), backend)


_STORAGES: weakref.WeakKeyDictionary[optuna.Study, BaseStorage] = weakref.WeakKeyDictionary()


def remember_storage(study: optuna.Study, storage: BaseStorage) -> optuna.Study:
    """Note the storage a study was opened from (:func:`storage_of`), and give the study back.

    Optuna keeps a study's storage private; dense-nas notes it where it opens a study, so
    that the other studies of the same storage (the versions of a study that grew,
    :mod:`~dense_nas.study.lineage`) open through the same connection.
    """
    _STORAGES[study] = storage
    return study


def storage_of(study: optuna.Study) -> BaseStorage | None:
    """The storage :func:`open_study` (or ``search``) opened the study from, if it did.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> storage = make_storage(None, out)
        >>> study = remember_storage(optuna.create_study(storage=storage), storage)
        >>> storage_of(study) is storage, storage_of(optuna.create_study())
        (True, None)
    """
    return _STORAGES.get(study)


class WholeFileArtifactStore(FileSystemArtifactStore):
    """Optuna's file-system artifact store whose files are whole or absent.

    Each artifact is written beside its place as ``<id>.partial`` and renamed into it once
    complete; a write that fails (a full disk) removes the partial file and raises.

    Example:
        >>> import io, tempfile
        >>> store = WholeFileArtifactStore(tempfile.mkdtemp())
        >>> store.write("a", io.BytesIO(b"weights"))
        >>> store.open_reader("a").read()
        b'weights'
    """

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        path = self._get_filepath(artifact_id)
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("wb") as f:
                shutil.copyfileobj(content_body, f)
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise


def artifact_store(study: optuna.Study) -> FileSystemArtifactStore:
    """The artifact store recorded on the study (where trial checkpoints are)."""
    root = study.user_attrs.get(ARTIFACT_ROOT_ATTR)
    if root is None:
        raise UserInputError(
            f"study {study.study_name!r} has no checkpoint store; was it made by dense-nas?",
            param="study_name",
        )
    return WholeFileArtifactStore(root)


def set_artifact_root(study: optuna.Study, root: Path) -> None:
    """Record the artifact store's root on a study (first writer wins)."""
    if ARTIFACT_ROOT_ATTR not in study.user_attrs:
        root.mkdir(parents=True, exist_ok=True)
        study.set_user_attr(ARTIFACT_ROOT_ATTR, str(root.resolve()))
    else:
        Path(study.user_attrs[ARTIFACT_ROOT_ATTR]).mkdir(parents=True, exist_ok=True)

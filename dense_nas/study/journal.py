"""Journal files that survive a torn write: whole-line appends, and a check on open.

Optuna's ``JournalFileBackend`` appends records through a buffered file, so a full disk
or a power cut can leave the journal ending in part of a record. Optuna skips such a
tail when it reads, but the next append is glued onto it, and the joined line makes
every later read fail. Here:

* :class:`WholeLineBackend` appends each batch of records with one ``os.write`` on an
  ``O_APPEND`` descriptor, under Optuna's lock, and cuts a write that fails part-way back
  to its last whole line: a record is in the file whole or not at all.
* :func:`open_journal` checks the file first. A torn last record (the bytes after the
  last newline) is copied to ``<journal>.torn-<time>`` beside it, never deleted, and
  truncated away with one warning, so the study goes on with every record before it.
  Any other line that is not a record is a :class:`~dense_nas.errors.UserInputError`
  naming the file and the line, and nothing is changed.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.journal"
    >>> storage = open_journal(path)
    >>> with path.open("ab") as journal:  # a record whose write was cut short
    ...     _ = journal.write(b'{"op_code": 5, "trial_id": 9')
    >>> storage = open_journal(path)  # warns: ...s.journal ended in a torn record (28 bytes)...
    >>> path.stat().st_size, [p.read_bytes() for p in path.parent.glob("s.journal.torn-*")]
    (0, [b'{"op_code": 5, "trial_id": 9'])
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from dense_nas.errors import UserInputError

_log = logging.getLogger(__name__)
#: Bytes read at a time when looking backwards for the journal's last newline.
_CHUNK = 1 << 16


class WholeLineBackend(JournalFileBackend):
    """Optuna's journal file backend whose appends are whole lines or nothing.

    Reading is Optuna's own; the lock is Optuna's default (a symlink beside the file), so
    processes using the plain backend on the same file still take turns with this one.

    Args:
        file_path: the journal file (created when missing).
    """

    def __init__(self, file_path: str) -> None:
        self.path = file_path
        self.lock = JournalFileSymlinkLock(file_path)
        # The last record handed to Optuna and its line (one record a line), so that a
        # record Optuna cannot apply is named by its line.
        self.line_read = 0
        self.record_read: dict[str, Any] = {}
        super().__init__(file_path, lock_obj=self.lock)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        logs = super().read_logs(log_number_from)
        for number, record in enumerate(logs, start=log_number_from + 1):
            self.line_read, self.record_read = number, record
            yield record

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        with _locked(self.lock):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            try:
                # A tail left by a writer that died mid-record would glue onto this batch.
                move_torn_tail(fd, self.path)
                _append_lines(fd, data.encode("utf-8"))
            finally:
                os.close(fd)


def open_journal(path: Path) -> JournalStorage:
    """Check a journal file, move a torn last record aside, and open it.

    Raises:
        UserInputError: a line other than the last is not a journal record (or the file
            is not a journal at all), or the file cannot be read.
    """
    if path.exists() and check_lines(path):
        try:
            with _locked(JournalFileSymlinkLock(str(path))):
                fd = os.open(path, os.O_RDWR)
                try:
                    move_torn_tail(fd, str(path))
                finally:
                    os.close(fd)
        except OSError as err:
            raise UserInputError(
                f"{path} ends in a torn record that cannot be moved aside "
                f"({err.strerror or err}); make the file and its directory writable",
                param="storage",
            ) from None
    backend = WholeLineBackend(str(path))
    try:
        return JournalStorage(backend)
    except (KeyError, TypeError, ValueError, AssertionError) as err:  # records Optuna can't apply
        reason = f"{type(err).__name__}: {err}"
        if isinstance(err, AssertionError):  # Optuna's replay has no case for the op_code
            op_code = backend.record_read.get("op_code")
            reason = f"op_code {op_code} is unknown to Optuna {optuna.__version__}"
        raise _not_a_journal(path, backend.line_read or None, reason) from None


def check_lines(path: Path) -> bool:
    """Check every whole line of a journal is a record; whether a torn tail follows them.

    The tail (bytes after the last newline) counts as a record cut short when it begins
    as every record does, with ``{``; anything else there is not a journal's.

    Raises:
        UserInputError: naming the file and the first line that is not a record.
    """
    try:
        with path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.endswith(b"\n"):
                    if line.startswith(b"{"):
                        return True
                    raise _not_a_journal(path, number, "not a journal record")
                reason = _record_problem(line)
                if reason:
                    raise _not_a_journal(path, number, reason)
    except OSError as err:
        raise UserInputError(
            f"cannot read {path} ({err.strerror or err}); check the path", param="storage"
        ) from None
    return False


def _record_problem(line: bytes) -> str | None:
    """Why a journal line is not a record (``None``: it is one)."""
    try:
        record = json.loads(line)
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as err:
        return f"not JSON: {err.msg}"
    if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
        return "JSON without an op_code"
    return None


def _not_a_journal(path: Path, line: int | None, reason: str) -> UserInputError:
    where = f"{path} line {line}" if line else str(path)
    return UserInputError(
        f"{where} is not an Optuna journal record ({reason}); the file is damaged or not "
        "a journal: restore it from a backup or give another file",
        param="storage",
    )


def move_torn_tail(fd: int, path: str) -> None:
    """Copy whatever follows the journal's last newline to a file beside it, then cut it off.

    Call it holding the journal's lock, with ``fd`` open for reading and writing. Optuna
    never reads such a tail (a record ends with its newline), so cutting it loses nothing
    a reader has seen.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = _last_line_start(fd, size)
    tail = os.pread(fd, size - start, start)
    aside = _write_aside(path, tail)
    os.ftruncate(fd, start)
    os.fsync(fd)
    _log.warning(
        "%s ended in a torn record (%d bytes, a write cut short); moved it to %s and "
        "truncated it away; the study goes on with every record before it",
        path,
        len(tail),
        aside,
    )


def _last_line_start(fd: int, size: int) -> int:
    """Offset just past the last newline in the first ``size`` bytes (0 without one)."""
    end = size
    while end > 0:
        begin = max(0, end - _CHUNK)
        found = os.pread(fd, end - begin, begin).rfind(b"\n")
        if found >= 0:
            return begin + found + 1
        end = begin
    return 0


def _write_aside(path: str, data: bytes) -> str:
    """Write ``data`` to a new ``<path>.torn-<time>[-n]`` file, durably; its name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        name = f"{path}.torn-{stamp}" + (f"-{attempt}" if attempt else "")
        try:
            with open(name, "xb") as aside:
                try:
                    aside.write(data)
                    aside.flush()
                    os.fsync(aside.fileno())
                except BaseException:
                    os.remove(name)  # the journal keeps the tail: try again next time
                    raise
        except FileExistsError:
            continue
        return name
    raise FileExistsError(errno.EEXIST, "no free name for the torn record", path)


def _append_lines(fd: int, data: bytes) -> None:
    """Append whole lines in one write and make them durable; on any failure, cut what
    was written back to its last whole line (a one-record batch: to nothing at all)."""
    start = os.fstat(fd).st_size  # the end: the caller holds the lock
    try:
        written = os.write(fd, data)
        if written < len(data):  # the disk filled up part-way
            raise OSError(
                errno.ENOSPC,
                f"{os.strerror(errno.ENOSPC)} ({written} of {len(data)} bytes written)",
            )
        os.fsync(fd)
    except BaseException:
        # Read back what landed rather than trust ``written``: Ctrl-C may come between.
        with contextlib.suppress(OSError):  # failing too: the next open moves the tail aside
            landed = os.pread(fd, os.fstat(fd).st_size - start, start)
            os.ftruncate(fd, start + landed.rfind(b"\n") + 1)
        raise


@contextlib.contextmanager
def _locked(lock: JournalFileSymlinkLock) -> Iterator[None]:
    lock.acquire()
    try:
        yield
    finally:
        try:
            lock.release()
        except RuntimeError:
            # A process paused (SIGSTOP) while it held the lock finds, on waking, that
            # another broke it as stale; its one write is whole lines or cut back to them.
            _log.warning("the journal lock was broken while this process held it (paused)")

"""Where commands write: a directory or file is checked before anything is stored.

A path that cannot take what a command writes (a file given for a directory, a
directory given for a file, a place under ``/proc`` or on a read-only disk) is one
:class:`~dense_nas.errors.UserInputError` line naming the parameter, before any study,
checkpoint or report file exists. The checks create nothing: the command makes the
directory when it first writes there.

Example:
    >>> import tempfile
    >>> runs = Path(tempfile.mkdtemp()) / "runs"
    >>> check_output_dir(runs, "out") == runs, runs.exists()
    (True, False)
    >>> check_output_dir(Path("/proc/runs"), "out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: out: cannot write in /proc (...); choose a writable directory
    >>> check_output_file(runs.parent, "output")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: output: ... is a directory; give the name of the file to write
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from dense_nas.errors import StorageError, UserInputError


def check_output_dir(path: Path, param: str) -> Path:
    """Check that ``path`` is a directory, or can be made one, that files can be written in.

    Raises:
        UserInputError: ``path`` or the nearest existing folder above it is a file, or
            that folder cannot be written in.
    """
    existing = path.absolute()
    while not existing.exists():  # ends at the root, which exists
        existing = existing.parent
    if not existing.is_dir():
        raise UserInputError(
            f"{existing} is a file, not a directory; give a directory (it is created when missing)",
            param=param,
        )
    try:
        with tempfile.TemporaryFile(dir=existing):  # permissions alone miss /proc and root
            pass
    except OSError as err:
        raise UserInputError(
            f"cannot write in {existing} ({err.strerror or err}); choose a writable directory",
            param=param,
        ) from None
    return path


def check_output_file(path: Path, param: str) -> Path:
    """Check a file can be written at ``path`` (its directory may be missing yet).

    Raises:
        UserInputError: ``path`` is a directory, or its directory cannot be written in.
    """
    if path.is_dir():
        raise UserInputError(
            f"{path} is a directory; give the name of the file to write", param=param
        )
    check_output_dir(path.parent, param)
    return path


def copy_whole(source: Path, target: Path) -> Path:
    """Copy the file ``source`` to ``target``, whole or not at all.

    The copy is written beside ``target`` and renamed over it once complete, so a write
    cut short (a full disk) leaves no partial file and keeps what ``target`` held. A
    target that is not a regular file (``/dev/stdout``) is written in place.

    Raises:
        StorageError: the write failed; one line naming ``target`` and why.

    Example:
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "a").write_bytes(b"weights")
        >>> copy_whole(folder / "a", folder / "b").read_bytes()
        b'weights'
        >>> copy_whole(folder / "a", Path("/dev/full"))  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        dense_nas.errors.StorageError: cannot write /dev/full: No space left on device
    """
    in_place = target.exists() and not target.is_file()
    written = target if in_place else target.with_name(f".{target.name}.partial")
    try:
        with source.open("rb") as reader, written.open("wb") as writer:
            shutil.copyfileobj(reader, writer)
        if not in_place:
            os.replace(written, target)
    except OSError as err:
        if not in_place:
            written.unlink(missing_ok=True)
        raise StorageError(f"cannot write {target}: {err.strerror or err}") from None
    return target

"""Where commands write: a directory or file is checked before anything is stored.

A path that cannot take what a command writes (a file given for a directory, a
directory given for a file, a place under ``/proc`` or on a read-only disk) is one
:class:`~dense_nas.errors.UserInputError` line naming the parameter, before any study,
checkpoint or report file exists.

Example:
    >>> import tempfile
    >>> runs = output_dir(Path(tempfile.mkdtemp()) / "runs", "out")
    >>> runs.is_dir()
    True
    >>> output_dir(Path("/proc/runs"), "out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: out: cannot write in /proc/runs (...); choose a writable directory
    >>> output_file(runs, "output")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: output: ... is a directory; give the name of the file to write
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from dense_nas.errors import UserInputError


def output_dir(path: Path, param: str) -> Path:
    """Create the directory ``path`` when missing and check a file can be written in it.

    Raises:
        UserInputError: ``path`` is a file, or cannot be created or written in.
    """
    if path.exists() and not path.is_dir():
        raise UserInputError(
            f"{path} is a file, not a directory; give a directory (it is created when missing)",
            param=param,
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # permissions alone miss /proc and root
            pass
    except OSError as err:
        raise UserInputError(
            f"cannot write in {path} ({err.strerror or err}); choose a writable directory",
            param=param,
        ) from None
    return path


def output_file(path: Path, param: str) -> Path:
    """Check a file can be written at ``path`` (its directory is created when missing).

    Raises:
        UserInputError: ``path`` is a directory, or its directory cannot be written in.
    """
    if path.is_dir():
        raise UserInputError(
            f"{path} is a directory; give the name of the file to write", param=param
        )
    output_dir(path.parent, param)
    return path

"""Fetch, verify and unpack the official dataset files, never leaving half-written files.

The rules, written once for every dataset:

* A file the dataset reads that is already present is used as it is (its reader checks
  its structure); nothing is re-hashed on every run.
* A missing file is downloaded (when allowed) to a temporary name in the same directory,
  its MD5 checked against :data:`SOURCES`, and only then renamed into place.
* An archive is MD5-checked before unpacking; the members the dataset needs are written
  to a temporary directory and renamed into place one by one, so an interrupted or failed
  run leaves either complete files or none.
* Anything the user must fix raises :class:`~dense_nas.errors.UserInputError` with one
  line naming the directory, the files expected and the fix.

Tests point :data:`SOURCES` at their own small files (``monkeypatch.setitem``): the table
is looked up on every call, never copied.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "a.txt").write_text("present")
    >>> ensure_file(root, "a.txt", download=False, verify=False).name
    'a.txt'
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dense_nas.errors import UserInputError

log = logging.getLogger(__name__)

#: Seconds to wait for the server before calling the network unreachable.
TIMEOUT_S = 30.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """Where an official file comes from and its published MD5."""

    url: str
    md5: str


#: The official files, by file name. CIFAR comes as its binary-version archives (plain
#: fixed-size records: the python version is a pickle, which could run code on load).
SOURCES: dict[str, Source] = {
    "cifar-10-binary.tar.gz": Source(
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        "c32a1d4ab5d03f1284b67883e8d87530",
    ),
    "cifar-100-binary.tar.gz": Source(
        "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        "03b5dce01913d631647c71ecec9e9cb8",
    ),
    "train_32x32.mat": Source(
        "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
        "e26dedcc434d2e4c54c9b2d4a06d8373",
    ),
    "test_32x32.mat": Source(
        "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
        "eb5a983be6a315427106f1b164d9cef3",
    ),
}

# What a damaged .tar.gz raises while it is read: bad headers, a cut-off stream, bad data.
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, KeyError)


def md5sum(path: Path) -> str:
    """Hex MD5 of a file, read in chunks.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "empty"
        >>> path.touch()
        >>> md5sum(path)
        'd41d8cd98f00b204e9800998ecf8427e'
    """
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_file(root: Path, name: str, *, download: bool, verify: bool, wanted: str = "") -> Path:
    """``root / name``, downloaded from :data:`SOURCES` and MD5-checked if it is missing.

    Args:
        root: the data directory.
        name: file name, a key of :data:`SOURCES` unless the file is present.
        download: fetch a missing file; otherwise a missing file is an error.
        verify: also MD5-check a file that is already present (archives about to be
            unpacked); a fresh download is always checked.
        wanted: how the error names what is missing, when more would do than ``name``
            (an archive or its unpacked files); defaults to ``name``.

    Returns:
        The path of the verified file.

    Raises:
        UserInputError: the file is missing and cannot be fetched, or fails its MD5.
    """
    path = root / name
    if path.is_file() and not verify:
        return path
    source = SOURCES[name]
    if path.is_file():
        _check_md5(path, source.md5, fix="delete it and run again to download a fresh copy")
        return path
    wanted = wanted or name
    if not download:
        raise UserInputError(
            f"{root} lacks {wanted}; put the official files there "
            f"(from {source.url}) or allow downloading",
            param="data_dir",
        )
    _download(source, path, wanted)
    return path


def ensure_files(root: Path, names: Sequence[str], *, download: bool) -> list[Path]:
    """Paths of ``root / name`` for every name, downloading (and MD5-checking) missing ones.

    Files already present are used as they are; an error names every missing file.
    """
    missing = [name for name in names if not (root / name).is_file()]
    wanted = " and ".join(missing)
    return [
        ensure_file(root, name, download=download, verify=False, wanted=wanted) for name in names
    ]


def _describe(members: Sequence[str]) -> str:
    """``dir/ with a, b`` when the members share a directory, else the plain list."""
    parents = {Path(member).parent for member in members}
    if len(parents) == 1 and parents != {Path(".")}:
        names = ", ".join(Path(member).name for member in members)
        return f"{parents.pop()}/ with {names}"
    return ", ".join(members)


def _check_md5(path: Path, expected: str, *, fix: str) -> None:
    actual = md5sum(path)
    if actual != expected:
        raise UserInputError(
            f"{path} fails its MD5 check (got {actual}, expected {expected}); {fix}",
            param="data_dir",
        )


def _download(source: Source, path: Path, wanted: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserInputError(
            f"cannot create {path.parent} ({err.strerror}); choose a writable one", param="data_dir"
        ) from err
    log.info("downloading %s to %s", source.url, path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        try:
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(source.url, timeout=TIMEOUT_S) as response,
            ):
                shutil.copyfileobj(response, out, _CHUNK)
        except (OSError, http.client.HTTPException) as err:
            raise UserInputError(
                f"{path.parent} lacks {wanted} and {source.url} could not be "
                f"downloaded ({getattr(err, 'reason', err)}); put the files there by hand "
                "or connect to the network",
                param="data_dir",
            ) from err
        _check_md5(tmp, source.md5, fix="the download was damaged, run again")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_extracted(
    root: Path, archive: str, members: Sequence[str], *, download: bool
) -> list[Path]:
    """Paths of ``members`` under ``root``, unpacked from ``archive`` if any is missing.

    Args:
        root: the data directory; members keep their archive paths below it.
        archive: file name of the archive, a key of :data:`SOURCES`.
        members: archive paths of the files the dataset reads (nothing else is unpacked,
            so no archive entry can write outside ``root``).
        download: fetch the archive if it is missing too.

    Returns:
        ``root / member`` for every member, in order.

    Raises:
        UserInputError: neither the members nor a valid archive are there and none can
            be downloaded, or the archive is corrupt; nothing half-written is left.
    """
    paths = [root / member for member in members]
    if all(path.is_file() for path in paths):
        return paths
    wanted = f"{archive} (or its unpacked {_describe(members)})"
    archive_path = ensure_file(root, archive, download=download, verify=True, wanted=wanted)
    with tempfile.TemporaryDirectory(dir=root, prefix=".unpack-") as tmp:
        staged = _unpack(archive_path, members, Path(tmp))
        for source, target in zip(staged, paths, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    return paths


def _unpack(archive: Path, members: Sequence[str], into: Path) -> list[Path]:
    """Copy ``members`` out of ``archive`` into the staging directory ``into``."""
    staged = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in members:
                source = tar.extractfile(member)
                if source is None:  # a directory or link where a file belongs
                    raise KeyError(member)
                target = into / member
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
                staged.append(target)
    except _ARCHIVE_ERRORS as err:
        raise UserInputError(
            f"{archive} is not a valid archive holding {', '.join(members)} "
            f"({type(err).__name__}: {err}); delete it and run again",
            param="data_dir",
        ) from err
    return staged

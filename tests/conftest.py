"""Fixtures shared by the tests: one torch thread, the shared studies, a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._study_fixtures import BuiltStudy, one_thread, searched_study, shared_study


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """In-process torch work runs on one thread (see ``one_thread``); trial processes
    get their threads from ``search(threads=...)``."""
    with one_thread():
        yield


@pytest.fixture
def single(tmp_path_factory: pytest.TempPathFactory) -> BuiltStudy:
    """A shared single-objective study with trained trials and stored checkpoints."""
    return shared_study(tmp_path_factory.getbasetemp(), "single")


@pytest.fixture
def multi(tmp_path_factory: pytest.TempPathFactory) -> BuiltStudy:
    """A shared multi-objective (accuracy, params) study, like ``single``."""
    return shared_study(tmp_path_factory.getbasetemp(), "multi")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on loopback for the session; its URL.

    ``.ci/run`` installs the server; elsewhere the test is skipped when no server
    binaries exist (set DENSE_NAS_REQUIRE_POSTGRES=1 to make that a failure).
    """
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("DENSE_NAS_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    # Directly under /tmp: pytest's own temp dirs are private to root, and the server
    # must run as an ordinary user.
    home = Path(tempfile.mkdtemp(prefix="dense-nas-pg-"))
    data = home / "data"
    data.mkdir()
    port = _free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(home, "postgres")
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(data / "log"),
        "-w",
        "start",
    )
    try:
        run(
            str(bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "dense_nas",
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/dense_nas"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def searched(tmp_path_factory: pytest.TempPathFactory) -> BuiltStudy:
    """A shared study made by a real ``search()`` (see ``searched_study``)."""
    return searched_study(tmp_path_factory.getbasetemp())

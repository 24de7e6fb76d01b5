"""Seeing a study while it runs: the live view on a terminal, plain lines, ``dense-nas status``."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from dense_nas.cli import main
from dense_nas.records import trial_attrs
from dense_nas.results.status import status_text, study_status
from dense_nas.study.storage import make_storage
from tests.helpers import search_args, wait_for

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")


def _search(out: Path, trials: int, epochs: int, storage: str | None = None) -> list[str]:
    extra = ("--storage", storage) if storage else ()
    args = search_args(*extra, trials=trials, epochs=epochs, out=out, study="live", pruner="none")
    return [sys.executable, "-m", "dense_nas", *args]


@pytest.mark.slow
def test_the_live_view_on_a_terminal_shows_the_epochs_advance(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen(
        _search(tmp_path, 2, 6), stdin=follower, stdout=follower, stderr=follower, cwd=tmp_path
    )
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        screen += chunk
    assert proc.wait(timeout=600) == 0
    text = ANSI.sub("", screen.decode("utf-8", "replace"))
    seen = [int(e) for e in re.findall(r"worker 0@\S+  trial +\d+  epoch (\d)/6", text)]
    assert seen and max(seen) > min(seen)  # the running trial's counter moved on screen
    assert "\x1b[" in screen.decode("utf-8", "replace")  # redrawn in place, not appended
    assert re.search(r"study 'live': \d finished of 2", text)
    assert "trial   1  COMPLETE" in text and "best trials of study 'live'" in text


@pytest.mark.slow
def test_piped_output_is_plain_lines_one_per_epoch(tmp_path: Path) -> None:
    done = subprocess.run(
        _search(tmp_path, 2, 3), capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    epochs = re.findall(r"^trial +(\d+)  epoch (\d)/3 ", done.stdout, flags=re.M)
    assert sorted(epochs) == [(t, e) for t in ("0", "1") for e in ("1", "2", "3")]
    quiet = subprocess.run(
        [*_search(tmp_path / "q", 1, 1), "--quiet"], capture_output=True, text=True, timeout=600
    )
    assert quiet.stdout.startswith("best trials of study 'live'")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_status_sees_a_running_trial_then_the_finished_study(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(tmp_path / "s.log")
    proc = subprocess.Popen(
        _search(tmp_path, 1, 60, storage), cwd=tmp_path, stdout=subprocess.DEVNULL
    )
    try:

        def training() -> bool:
            try:
                study = optuna.load_study(
                    study_name="live", storage=make_storage(storage, tmp_path)
                )
            except KeyError:
                return False
            running = study.get_trials(states=(TrialState.RUNNING,))
            return any("progress" in trial_attrs(t) for t in running)

        wait_for(training, 300, "a RUNNING trial with an epoch done")
        assert main(["status", "--storage", storage, "--study", "live", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        (running,) = shown["running"]
        assert running["epoch"] >= 1 and running["epochs"] == 60
        assert running["host"] == socket.gethostname() and not running["stale"]
        assert shown["n_trials"] == 1 and shown["counts"] == {"RUNNING": 1}
    finally:
        assert proc.wait(timeout=600) == 0
    assert main(["status", "--storage", storage, "--study", "live", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["running"] == [] and after["counts"] == {"COMPLETE": 1}
    assert after["finished"] == 1 and after["best"][0] == 0


def test_status_flags_a_silent_trial_and_counts_the_budget() -> None:
    study = optuna.create_study(study_name="s", direction="maximize")
    study.set_user_attr("n_trials", 4)
    for seconds in (10.0, 30.0):
        study.add_trial(
            create_trial(
                value=0.5 + seconds / 100,
                user_attrs={"params": 100, "epochs": 2, "seconds": seconds, "arch": {}},
            )
        )
    trial = study.ask()
    now = time.time()
    trial.set_user_attr("worker", {"host": "far", "pid": 1, "index": 0, "grace": 30.0})
    trial.set_user_attr("heartbeat", now - 100)
    trial.set_user_attr(
        "progress",
        {"epoch": 1, "epochs": 2, "accuracy": 0.4, "loss": 1.0, "images_per_second": 9.0, "at": 0},
    )
    status = study_status(study, now=now)
    (running,) = status.running
    assert running.stale and running.host == "far" and running.epoch == 1
    assert status.best == (1, 0.8) and status.finished == 2
    # left: the running trial's last epoch and one more trial of 2 epochs, 10 s an epoch
    assert status.eta_seconds == pytest.approx(3 * 10.0)
    assert "STALE (silent 100 s)" in status_text(status)


def test_status_of_a_missing_study_names_the_ones_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="there", storage=storage)
    assert main(["status", "--storage", storage, "--study", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "there" in err and err.startswith("dense-nas: error:")

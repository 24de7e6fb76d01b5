"""Killed trials resume in a study: the retry goes on from the killed try's resume
checkpoint, its curve continues, only the rest of the schedule is trained, and it ends
with exactly the weights of the same trial never killed (CPU, digits data).

The kills are real SIGKILLs of the trial processes of an in-process ``search()``, timed
by the resume checkpoints appearing on disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

from benchmarks.chaos import epochs_trained, process_tree
from dense_nas.records import learning_curve, trial_attrs
from dense_nas.results.loading import load_trial
from dense_nas.space import load_space
from dense_nas.study import search
from dense_nas.study.process.resume import checkpoint_to_resume
from tests.helpers import TINY_SPACE, main_in_process, search_args

optuna.logging.set_verbosity(optuna.logging.WARNING)

EPOCHS = 5
TINY_STUDY = "test-tiny-digits"


def _trial_processes() -> list[int]:
    """This test's live trial processes."""
    found = []
    for pid in process_tree(os.getpid())[1:]:
        with contextlib.suppress(OSError):
            if b"dense_nas.study.process.trial" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


@contextlib.contextmanager
def killing(act: Callable[[], bool]) -> Iterator[list[int]]:
    """While the block runs, call ``act()`` every 20 ms from a thread until it returns
    True once for good; yields the list ``act`` may append its kills to."""
    stop, kills = threading.Event(), list[int]()

    def loop() -> None:
        while not stop.wait(0.02):
            if act():
                return

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield kills
    finally:
        stop.set()
        thread.join()


def _kill_trial_process(kills: list[int], before: Callable[[int], None] | None = None) -> bool:
    processes = _trial_processes()
    if not processes:
        return False
    (pid,) = processes  # one worker: one trial process
    if before is not None:
        before(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
        kills.append(pid)
    return True


def _resume(out: Path, first_try: int = 0, study: str = TINY_STUDY) -> Path:
    return out / "resume" / f"{study}-trial-{first_try}.ckpt"


def _search(out: Path, **options: object) -> optuna.Study:
    settings: dict[str, object] = {
        "space": TINY_SPACE,
        "n_trials": 1,
        "epochs": EPOCHS,
        "pruner": "none",
        "threads": 1,
        "accelerator": "cpu",
        "out": out,
    }
    settings.update(options)
    return search(**settings)  # type: ignore[arg-type]


def _weights(study: optuna.Study, trial: FrozenTrial) -> dict[str, torch.Tensor]:
    return load_trial(study, trial).state_dict()


def _assert_resumed_like(
    study: optuna.Study, retry: FrozenTrial, calm: optuna.Study, resumed_from: int
) -> None:
    """The retry resumed at ``resumed_from`` and ends as the study's trial never killed."""
    (reference,) = calm.get_trials()
    attrs = trial_attrs(retry)
    assert retry.state == TrialState.COMPLETE
    assert attrs["resumed_from"] == resumed_from
    assert attrs["epochs"] == EPOCHS
    assert list(learning_curve(retry)) == list(range(1, EPOCHS + 1))  # continuous
    assert learning_curve(retry) == learning_curve(reference)
    assert retry.value == reference.value
    weights, expected = _weights(study, retry), _weights(calm, reference)
    assert weights.keys() == expected.keys()
    different = [name for name in expected if not torch.equal(weights[name], expected[name])]
    assert not different, f"{len(different)} of {len(expected)} tensors differ: {different[:3]}"


@pytest.fixture(scope="module")
def calm(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    """The one-trial study never killed."""
    out = tmp_path_factory.mktemp("calm")
    study = _search(out)
    assert not list((out / "resume").iterdir())  # the finished trial removed its own
    return study


@pytest.mark.slow  # two studies of 5 epochs, one of them killed and retried
def test_a_killed_trial_resumes_at_the_next_epoch_and_ends_as_if_never_killed(
    tmp_path: Path, calm: optuna.Study
) -> None:
    previous = Path(f"{_resume(tmp_path)}.prev")  # there after the second write: epoch 2

    with killing(lambda: previous.exists() and _kill_trial_process(kills)) as kills:
        study = _search(tmp_path)
    assert len(kills) == 1
    first, retry = study.get_trials()
    assert first.state == TrialState.FAIL
    assert "killed by SIGKILL" in trial_attrs(first)["failure"]
    assert trial_attrs(first)["retried"].endswith("it made progress, so it uses up no retry")
    assert trial_attrs(retry)["retry_of"] == 0 and retry.params == first.params
    resumed_from = trial_attrs(retry)["resumed_from"]
    assert resumed_from >= 2  # the checkpoint of epoch 2 or a later one
    _assert_resumed_like(study, retry, calm, resumed_from)
    # The killed try trained up to its checkpoint, the retry only the rest: one schedule.
    assert epochs_trained(first) + epochs_trained(retry) == EPOCHS
    assert not list((tmp_path / "resume").iterdir())  # removed once the trial completed


@pytest.mark.slow  # a study of 5 epochs whose trial is killed with a torn checkpoint
def test_a_torn_resume_checkpoint_costs_one_warning_and_the_one_before_is_used(
    tmp_path: Path, calm: optuna.Study, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = _resume(tmp_path)
    previous = Path(f"{checkpoint}.prev")
    kept: list[int] = []

    def tear(pid: int) -> None:
        """Stopped, so nothing writes meanwhile: tear the newest, note what the older holds."""
        os.kill(pid, signal.SIGSTOP)
        point = checkpoint_to_resume(previous)
        assert point is not None
        kept.append(point.epoch)
        checkpoint.write_bytes(b"\x80\x02torn in the middle of a write")

    with (
        caplog.at_level(logging.WARNING),
        killing(lambda: previous.exists() and _kill_trial_process(kills, tear)) as kills,
    ):
        study = _search(tmp_path)
    assert len(kills) == 1
    first, retry = study.get_trials()
    assert first.state == TrialState.FAIL
    (warning,) = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert str(checkpoint) in warning.getMessage()
    _assert_resumed_like(study, retry, calm, resumed_from=kept[0])


@pytest.mark.slow  # a 5-epoch trial killed after each of its first 4 epochs
def test_a_trial_killed_many_times_but_progressing_each_time_completes_with_one_retry(
    tmp_path: Path, calm: optuna.Study
) -> None:
    checkpoint = _resume(tmp_path)
    seen: list[tuple[int, int]] = []

    def kill_on_each_write() -> bool:
        try:
            written = checkpoint.stat()
        except FileNotFoundError:
            return False
        stamp = (written.st_ino, written.st_mtime_ns)
        if not seen or seen[-1] != stamp:
            seen.append(stamp)
            _kill_trial_process(kills)
        return False  # go on until the study ends

    with killing(kill_on_each_write) as kills:
        study = _search(tmp_path, retries=1)
    trials = study.get_trials()
    assert len(kills) == EPOCHS - 1
    *killed, last = trials
    assert [t.state for t in killed] == [TrialState.FAIL] * (EPOCHS - 1)
    for number, trial in enumerate(killed):  # each try one epoch further, none stalled
        assert trial_attrs(trial).get("resumed_from", 0) == number
        assert trial_attrs(trial)["retried"].endswith("so it uses up no retry")
    assert trial_attrs(last)["attempt"] == EPOCHS and trial_attrs(last)["stalled_tries"] == 0
    _assert_resumed_like(study, last, calm, resumed_from=EPOCHS - 1)
    assert sum(epochs_trained(t) for t in trials) == EPOCHS


@pytest.mark.slow  # two studies of 4 epochs, each trial killed once mid-way
@pytest.mark.parametrize(("every", "resumed_from"), [(2, 2), (0, None)])
def test_resume_every_sets_how_far_back_a_retry_starts(
    tmp_path: Path, every: int, resumed_from: int | None
) -> None:
    storage = f"sqlite:///{tmp_path / 'dense-nas.db'}"

    def third_epoch_reported() -> bool:
        if not (tmp_path / "checkpoints").exists():  # made with the first trial's spec
            return False  # before it, opening the storage here races its creation
        with contextlib.suppress(KeyError, ValueError):
            study = optuna.load_study(study_name=TINY_STUDY, storage=storage)
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if trial_attrs(trial).get("progress", {"epoch": 0})["epoch"] >= 3:
                    return _kill_trial_process(kills)
        return False

    with killing(third_epoch_reported) as kills:
        study = _search(tmp_path, epochs=4, resume_every=every)
    assert len(kills) == 1
    first, retry = study.get_trials()
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert trial_attrs(retry).get("resumed_from") == resumed_from
    assert list(learning_curve(retry)) == [1, 2, 3, 4]
    assert learning_curve(retry) == {**learning_curve(first), **learning_curve(retry)}
    if every == 0:
        assert not (tmp_path / "resume").exists()  # nothing written, ever


@pytest.mark.slow  # the default space's first seed, trained for 2 epochs and killed in one
def test_a_retry_is_trained_before_the_spaces_other_seeds(tmp_path: Path) -> None:
    study_name = "retry-first"
    first_write = _resume(tmp_path, study=study_name)
    with killing(lambda: first_write.exists() and _kill_trial_process(kills)) as kills:
        study = search(
            n_trials=1,
            epochs=2,
            study_name=study_name,
            threads=1,
            accelerator="cpu",
            out=tmp_path,
        )
    assert len(kills) == 1
    trials = study.get_trials()
    (killed,) = [t for t in trials if t.state == TrialState.FAIL]
    (done,) = [t for t in trials if t.state == TrialState.COMPLETE]
    first_seed = dict(load_space("digits-tiny").seeds[0])
    assert killed.number == 0 and killed.params == first_seed
    assert done.params == first_seed and trial_attrs(done)["retry_of"] == 0
    assert trial_attrs(done)["resumed_from"] == 1
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert not [t for t in waiting if "retry_of" in t.user_attrs]  # no retry left behind
    second_seed = dict(load_space("digits-tiny").seeds[1])
    assert [t.system_attrs["fixed_params"] for t in waiting] == [second_seed]  # untouched


def test_resume_every_must_be_a_whole_number_of_epochs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in ("-1", "1.5"):
        ran = main_in_process(capsys, *search_args("--resume-every", bad, out=tmp_path))
        assert ran.returncode == 2
        (line,) = ran.stderr.strip().splitlines()
        assert line.startswith("dense-nas: error: ") and "--resume-every" in line
        assert "must be a whole number" in line and bad in line
    assert not (tmp_path / "dense-nas.db").exists()

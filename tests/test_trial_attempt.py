"""A trial's steps in its worker (``study/_attempt.py``), driven without a trial process.

Each test drives one :class:`TrialAttempt` on a real in-memory Optuna study, handing it
the epoch reports and final messages a trial process would send over its channel.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from dense_nas.records import EpochProgress, trial_attrs
from dense_nas.space import Constraints, Task, load_space
from dense_nas.study import SearchObserver, SearchSettings
from dense_nas.study._attempt import TrialAttempt
from dense_nas.study._run import Run
from dense_nas.study.coordination.heartbeats import retry_silent_trials
from dense_nas.study.loggers import prepare_loggers
from dense_nas.study.objectives import parse_objective
from dense_nas.study.process.messages import EpochMessage, ErrorKind, ResultMessage
from dense_nas.study.storage import set_artifact_root
from tests.helpers import TINY_SPACE

DIGITS = Task(num_classes=10, in_channels=1, image_size=(8, 8))


class Heard(SearchObserver):
    """What a search told its observer."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.started: list[tuple[int, int]] = []
        self.epochs: list[EpochProgress] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def trial_started(self, number: int, worker: int, arch: str, epochs: int) -> None:
        self.started.append((number, epochs))

    def epoch(self, number: int, worker: int, progress: EpochProgress) -> None:
        self.epochs.append(progress)


def _run(tmp_path: Path, pruner: optuna.pruners.BasePruner | None = None) -> Run:
    study = optuna.create_study(direction="maximize", pruner=pruner)
    set_artifact_root(study, tmp_path / "artifacts")
    settings = SearchSettings(space=TINY_SPACE, epochs=3, out=tmp_path, retries=2)
    return Run(
        settings=settings,
        study=study,
        space=load_space(TINY_SPACE),
        task=DIGITS,
        objective=parse_objective("accuracy"),
        data="digits",
        data_args={},
        data_dir=None,
        val_size=None,
        deadline=math.inf,
        accelerator="cpu",
        precision="32-true",
        observer=Heard(),
        loggers=prepare_loggers(settings.logger, tmp_path, study.study_name),
    )


def _training(run: Run) -> TrialAttempt:
    """An attempt that got as far as the trial process: its candidate drawn, its spec made."""
    attempt = TrialAttempt(run, run.study.ask(), worker=0, threads=1)
    candidate = attempt.candidate()
    assert candidate is not None
    attempt.spec(candidate)
    return attempt


def _epoch(epoch: int, accuracy: float) -> EpochMessage:
    return {
        "type": "epoch",
        "epoch": epoch,
        "value": accuracy,
        "accuracy": accuracy,
        "loss": 1.5,
        "images_per_second": 812.34,
    }


def _result(pruned: bool, checkpoint: str | None = None) -> ResultMessage:
    history = [0.4] if pruned else [0.4, 0.6, 0.8]
    return {
        "type": "result",
        "value": history[-1],
        "history": history,
        "accuracy": history[-1],
        "pruned": pruned,
        "epochs": len(history),
        "precision": "32-true",
        "compiled": False,
        "step_seconds": 1.25,
        "images_per_second": 900.0,
        "ranks": [{"arch_key": "k", "epochs": len(history)}],
        "checkpoint": checkpoint,
        "resumed_from": None,
    }


def _state(run: Run, number: int = 0) -> TrialState:
    return run.study.trials[number].state


def test_candidate_trains_the_asked_epochs_and_is_recorded(tmp_path: Path) -> None:
    run = _run(tmp_path)
    attempt = TrialAttempt(run, run.study.ask(), worker=0)
    candidate = attempt.candidate()
    assert candidate is not None and candidate.training.epochs == 3  # --epochs, not the space's 2
    recorded = trial_attrs(run.study.trials[0])
    assert recorded["arch_key"] == candidate.key and recorded["training"]["epochs"] == 3


def test_a_candidate_that_breaks_a_constraint_is_pruned_before_training(tmp_path: Path) -> None:
    run = _run(tmp_path)
    run.space.constraints = Constraints(max_params=10)  # no DenseNet is that small
    attempt = TrialAttempt(run, run.study.ask(), worker=0)
    assert attempt.candidate() is None
    assert _state(run) == TrialState.PRUNED
    assert "max_params" in trial_attrs(run.study.trials[0])["pruned_reason"]


def test_spec_holds_the_candidate_and_the_observer_hears_the_trial_start(tmp_path: Path) -> None:
    run = _run(tmp_path)
    attempt = TrialAttempt(run, run.study.ask(), worker=0, threads=1)
    candidate = attempt.candidate()
    assert candidate is not None
    spec = attempt.spec(candidate)
    assert spec.arch == candidate.arch.to_dict() and spec.training["epochs"] == 3
    assert spec.checkpoint == str(attempt.checkpoint) and spec.threads == 1
    assert isinstance(run.observer, Heard) and run.observer.started == [(0, 3)]


@pytest.mark.parametrize(("accuracy", "prune"), [(0.95, False), (0.5, True)])
def test_on_epoch_answers_with_the_pruner_and_records_the_progress(
    tmp_path: Path, accuracy: float, prune: bool
) -> None:
    run = _run(tmp_path, optuna.pruners.ThresholdPruner(lower=0.9))
    attempt = _training(run)
    answers: list[bool] = []
    attempt.on_epoch(_epoch(1, accuracy), answers.append)
    assert answers == [prune]
    trial = run.study.trials[0]
    assert trial.intermediate_values == {1: accuracy}  # what the pruner saw
    progress = trial_attrs(trial)["progress"]
    assert (progress["epoch"], progress["epochs"], progress["accuracy"]) == (1, 3, accuracy)
    assert progress["images_per_second"] == 812.3
    assert isinstance(run.observer, Heard) and run.observer.epochs == [progress]


def test_after_its_last_epoch_a_trial_goes_on_to_complete_whatever_the_pruner_says(
    tmp_path: Path,
) -> None:
    """Hyperband may answer "prune" at the last epoch; a trial that trained them all has
    cost all it will, and ends COMPLETE, where best and load_best see it."""
    run = _run(tmp_path, optuna.pruners.ThresholdPruner(lower=0.9))  # prunes below 0.9
    attempt = _training(run)  # 3 epochs
    answers: list[bool] = []
    for epoch in (1, 2, 3):
        attempt.on_epoch(_epoch(epoch, 0.5), answers.append)
    assert answers == [True, True, False]  # the trial process obeyed none of them here
    assert run.study.trials[0].intermediate_values == {1: 0.5, 2: 0.5, 3: 0.5}  # all heard


def test_a_trial_another_worker_ended_is_stopped_and_its_result_dropped(tmp_path: Path) -> None:
    run = _run(tmp_path)
    attempt = _training(run)
    attempt.on_epoch(_epoch(1, 0.5), lambda prune: None)
    attempt.trial.set_user_attr("heartbeat", 0.0)  # its worker paused past the grace:
    assert retry_silent_trials(run.study, grace=30.0, retries=2) == [0]  # another one fails it
    answers: list[bool] = []
    attempt.on_epoch(_epoch(2, 0.6), answers.append)
    assert answers == [True]  # stop training now
    assert trial_attrs(run.study.trials[0])["progress"]["epoch"] == 1  # nothing more written
    attempt.checkpoint.write_bytes(b"half a checkpoint")
    with pytest.raises(UpdateFinishedTrialError):
        attempt.settle(_result(pruned=False, checkpoint=str(attempt.checkpoint)))
    assert not attempt.checkpoint.exists()
    assert _state(run) == TrialState.FAIL and _state(run, 1) == TrialState.WAITING  # its retry


def test_settle_of_a_pruned_result_tells_pruned(tmp_path: Path) -> None:
    run = _run(tmp_path)
    attempt = _training(run)
    attempt.settle(_result(pruned=True))
    trial = run.study.trials[0]
    assert trial.state == TrialState.PRUNED and trial_attrs(trial)["epochs"] == 1
    assert isinstance(run.observer, Heard) and "PRUNED" in run.observer.lines[-1]


def test_settle_of_a_complete_result_stores_its_checkpoint(tmp_path: Path) -> None:
    run = _run(tmp_path)
    attempt = _training(run)
    attempt.checkpoint.write_bytes(b"weights")
    attempt.settle(_result(pruned=False, checkpoint=str(attempt.checkpoint)))
    trial = run.study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.value == 0.8
    attrs = trial_attrs(trial)
    assert (attrs["epochs"], attrs["step_seconds"], attrs["images_per_second"]) == (3, 1.25, 900.0)
    stored = list((tmp_path / "artifacts").rglob("*"))
    assert attrs["checkpoint"] in {path.name for path in stored}
    assert not attempt.checkpoint.exists()  # moved into the artifact store


@pytest.mark.parametrize(
    ("kind", "retried"), [("signal", True), ("out-of-memory", True), ("error", False)]
)
def test_a_failure_not_of_the_trials_making_is_retried(
    tmp_path: Path, kind: ErrorKind, retried: bool
) -> None:
    run = _run(tmp_path)
    attempt = _training(run)
    attempt.settle({"type": "error", "kind": kind, "reason": "trial process killed by SIGKILL"})
    assert _state(run) == TrialState.FAIL
    assert trial_attrs(run.study.trials[0])["failure"] == "trial process killed by SIGKILL"
    retries = run.study.get_trials(states=(TrialState.WAITING,))
    assert len(retries) == int(retried)
    if retried:
        (retry,) = retries
        assert trial_attrs(retry)["retry_of"] == 0 and trial_attrs(retry)["attempt"] == 2
        again = TrialAttempt(run, run.study.ask(), worker=0).candidate()  # the retry
        assert again is not None and again.key == trial_attrs(run.study.trials[0])["arch_key"]


def test_an_interrupted_trial_is_retried_without_using_a_try(tmp_path: Path) -> None:
    run = _run(tmp_path)
    attempt = _training(run)
    run.interrupted = True  # Ctrl-C killed the trial process
    attempt.settle({"type": "error", "kind": "signal", "reason": "trial process killed by SIGKILL"})
    (retry,) = run.study.get_trials(states=(TrialState.WAITING,))
    assert trial_attrs(retry).get("attempt") == 1
    assert trial_attrs(run.study.trials[0])["failure"].startswith("interrupted (Ctrl-C)")


def test_a_candidate_trained_already_is_answered_from_that_trial(tmp_path: Path) -> None:
    run = _run(tmp_path)
    first = _training(run)
    first.settle(_result(pruned=False))
    run.study.enqueue_trial(run.study.trials[0].params)  # the sampler draws it again
    again = TrialAttempt(run, run.study.ask(), worker=0)
    candidate = again.candidate()
    assert candidate is not None
    assert again.answer_from_twin(candidate)  # told: nothing to train
    answered = run.study.trials[1]
    assert answered.state == TrialState.COMPLETE and answered.value == 0.8
    assert trial_attrs(answered)["duplicate_of"] == 0


def test_ctrl_c_during_the_wait_for_a_running_twin_fails_and_retries_the_trial(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    twin = _training(run)  # trial 0, training
    run.study.enqueue_trial(twin.trial.params)  # another worker draws the same candidate
    waiting = TrialAttempt(run, run.study.ask(), worker=1)
    candidate = waiting.candidate()
    assert candidate is not None and candidate.key == trial_attrs(twin.trial)["arch_key"]
    run.interrupted = True
    run.stop.set()
    assert waiting.answer_from_twin(candidate)
    failed = run.study.trials[1]
    assert failed.state == TrialState.FAIL and trial_attrs(failed)["waits_for"] == 0
    assert trial_attrs(failed)["failure"] == "interrupted (Ctrl-C); retried on resume"
    (retry,) = run.study.get_trials(states=(TrialState.WAITING,))
    assert trial_attrs(retry)["retry_of"] == 1

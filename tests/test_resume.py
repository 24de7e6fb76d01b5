"""Resumable trials: a trial process killed mid-way goes on from its last resume checkpoint
and ends with exactly the weights of the same trial never killed (CPU, digits data)."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from dense_nas.study.process import TrialProcess, TrialSpec
from dense_nas.study.process.messages import EpochMessage, ResultMessage
from dense_nas.study.process.resume import checkpoint_to_resume
from dense_nas.study.process.runner import Answer, OnEpoch, ResultOrError
from dense_nas.study.process.trial import run

EPOCHS = 4  # the multistep schedule divides the rate at epochs 2 and 3: both are resumed over


def _spec(folder: Path, devices: int = 1) -> TrialSpec:
    """A trial with dropout and augmentation (random draws) whose LR steps mid-way."""
    return TrialSpec(
        number=0,
        arch={"growth_rate": 4, "block_layers": [1, 1], "in_channels": 1, "dropout": 0.2},
        training={"batch_size": 128, "epochs": EPOCHS},
        data="digits",
        threads=1,
        devices=devices,
        checkpoint=str(folder / "final.ckpt"),
        resume=str(folder / "resume.ckpt"),
    )


def _asking(epochs: list[int]) -> OnEpoch:
    def on_epoch(report: EpochMessage, answer: Answer) -> None:
        epochs.append(report["epoch"])
        answer(False)

    return on_epoch


def _train(runner: TrialProcess, spec: TrialSpec, folder: Path) -> tuple[ResultMessage, list[int]]:
    asked: list[int] = []
    result = runner.run(spec, _asking(asked), folder)
    assert result["type"] == "result", result
    return result, asked


def _killed_at(runner: TrialProcess, spec: TrialSpec, folder: Path, epoch: int) -> ResultOrError:
    """Train ``spec`` and SIGKILL its process when it reports ``epoch`` (it has trained
    that epoch; the resume checkpoint on disk is the one written before it)."""

    def kill_at(report: EpochMessage, answer: Answer) -> None:
        if report["epoch"] == epoch:
            assert Path(str(spec.resume)).exists()
            assert runner._current is not None
            runner._current.send_signal(signal.SIGKILL)
        answer(False)

    return runner.run(spec, kill_at, folder)


def _weights(spec: TrialSpec) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(str(spec.checkpoint), weights_only=False)[
        "state_dict"
    ]
    return state


def _assert_same_weights(spec: TrialSpec, reference: dict[str, torch.Tensor]) -> None:
    weights = _weights(spec)
    assert weights.keys() == reference.keys()
    different = [name for name in reference if not torch.equal(weights[name], reference[name])]
    assert not different, f"{len(different)} of {len(reference)} tensors differ: {different[:3]}"


@dataclasses.dataclass
class Unbroken:
    """The trial trained without a kill, and the resume files a killed try of it left."""

    result: ResultMessage
    weights: dict[str, torch.Tensor]
    left: Path  # resume.ckpt (after 2 epochs) and resume.ckpt.prev (after 1)


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbroken]:
    """One process trains the trial, then a try of it killed after training epoch 3."""
    folder = tmp_path_factory.mktemp("unbroken")
    spec = _spec(folder)
    runner = TrialProcess(log_path=folder / "log")
    try:
        result, asked = _train(runner, spec, folder)
        killed = _killed_at(runner, dataclasses.replace(spec, checkpoint=None), folder, 3)
    finally:
        runner.close()
    assert asked == list(range(1, EPOCHS + 1)) and result["resumed_from"] is None
    assert killed["type"] == "error" and killed["kind"] == "signal"
    yield Unbroken(result, _weights(spec), folder)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrialProcess]:
    """One trial process for the retries below (a new one per test costs seconds of
    imports); it logs to ``served.log`` in the session's temporary folder."""
    runner = TrialProcess(log_path=tmp_path_factory.getbasetemp() / "served.log")
    yield runner
    runner.close()


def _retry(
    runner: TrialProcess, unbroken: Unbroken, folder: Path
) -> tuple[TrialSpec, Callable[[], tuple[ResultMessage, list[int], list[str]]]]:
    """The killed trial's spec with the files it left, and how to retry it: the result,
    the epochs it reported, and the lines about resuming it logged."""
    spec = _spec(folder)
    for name in ("resume.ckpt", "resume.ckpt.prev"):
        shutil.copy(unbroken.left / name, folder / name)

    def retry() -> tuple[ResultMessage, list[int], list[str]]:
        assert runner.log_path is not None
        before = runner.log_path.stat().st_size if runner.log_path.exists() else 0
        result, asked = _train(runner, spec, folder)
        logged = runner.log_path.read_bytes()[before:].decode(errors="replace")
        return result, asked, [line for line in logged.splitlines() if "resume checkpoint" in line]

    return spec, retry


def test_a_trial_killed_mid_way_goes_on_and_ends_with_the_unbroken_weights(
    tmp_path: Path, unbroken: Unbroken, served: TrialProcess
) -> None:
    spec, retry = _retry(served, unbroken, tmp_path)
    result, asked, logged = retry()
    assert result["resumed_from"] == 2 and not logged
    assert asked == [3, 4]  # only the epochs after the resumed one are reported and trained
    assert result["epochs"] == EPOCHS and result["history"] == unbroken.result["history"]
    _assert_same_weights(spec, unbroken.weights)
    assert not list(tmp_path.glob("resume.ckpt*"))  # the trial completed: its files are gone


def test_a_torn_resume_checkpoint_goes_on_from_the_one_before_with_one_warning(
    tmp_path: Path, unbroken: Unbroken, served: TrialProcess
) -> None:
    spec, retry = _retry(served, unbroken, tmp_path)
    whole = (tmp_path / "resume.ckpt").read_bytes()
    (tmp_path / "resume.ckpt").write_bytes(whole[: len(whole) // 2])  # torn mid-write
    result, asked, logged = retry()
    assert result["resumed_from"] == 1 and asked == [2, 3, 4]
    _assert_same_weights(spec, unbroken.weights)
    assert len(logged) == 1 and "unreadable" in logged[0], logged


def test_garbage_resume_checkpoints_train_from_epoch_0_with_a_warning_each(
    tmp_path: Path, unbroken: Unbroken, served: TrialProcess
) -> None:
    spec, retry = _retry(served, unbroken, tmp_path)
    (tmp_path / "resume.ckpt").write_bytes(b"\x00garbage" * 100)
    (tmp_path / "resume.ckpt.prev").write_bytes(b"")
    result, asked, logged = retry()
    assert result["resumed_from"] is None and asked == list(range(1, EPOCHS + 1))
    _assert_same_weights(spec, unbroken.weights)
    assert len(logged) == 2 and all("unreadable" in line for line in logged), logged


def test_a_resume_checkpoint_that_cannot_be_written_costs_a_warning_not_the_trial(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    spec = dataclasses.replace(
        _spec(tmp_path), resume=str(tmp_path / "not-a-folder" / "r.ckpt"), checkpoint=None
    )
    with caplog.at_level(logging.WARNING, logger="dense_nas.study.process.resume"):
        result = run(spec, lambda report: False)  # here: no process to kill
    assert result["epochs"] == EPOCHS and result["resumed_from"] is None
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "dense_nas.study.process.resume"
    ]
    assert len(warnings) == EPOCHS - 1 and all("not written" in line for line in warnings)


class Stopped(Exception):
    """Training stopped from outside (in this process, where a kill would end the test)."""


def test_resume_every_n_epochs_writes_only_every_nth_epoch(tmp_path: Path) -> None:
    spec = dataclasses.replace(_spec(tmp_path), resume_every=2, checkpoint=None)

    def stop_after_last_epoch(report: EpochMessage) -> bool:
        if report["epoch"] == EPOCHS:
            raise Stopped
        return False

    with pytest.raises(Stopped):
        run(spec, stop_after_last_epoch)
    left = checkpoint_to_resume(spec.resume)
    assert left is not None and left.epoch == 2  # not 3: epoch 3 was no write
    assert not Path(f"{spec.resume}.prev").exists()  # and epoch 1 neither


@pytest.mark.slow  # three DDP trial processes of two ranks each
def test_a_ddp_trial_killed_mid_way_goes_on_on_every_rank(tmp_path: Path) -> None:
    unbroken_folder, resumed_folder = tmp_path / "unbroken", tmp_path / "resumed"
    unbroken_spec, spec = _spec(unbroken_folder, devices=2), _spec(resumed_folder, devices=2)
    runner = TrialProcess(log_path=tmp_path / "log")
    try:
        reference, _ = _train(runner, unbroken_spec, unbroken_folder)
        killed = _killed_at(runner, spec, resumed_folder, 3)
        assert killed["type"] == "error" and killed["kind"] == "signal"
        result, asked = _train(runner, spec, resumed_folder)
    finally:
        runner.close()
    assert result["resumed_from"] == 2 and asked == [3, 4]
    assert [rank["epochs"] for rank in result["ranks"]] == [EPOCHS, EPOCHS]
    assert result["history"] == reference["history"]
    _assert_same_weights(spec, _weights(unbroken_spec))

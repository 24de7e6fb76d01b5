"""What a search decides before its first trial: the caller's space, the device, memory."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState

from dense_nas.space import Constraints, Task, load_space, space_version
from dense_nas.study import search
from dense_nas.study.hardware import (
    GPU_WORTHWHILE_STEP_MACS,
    resolve_accelerator,
    typical_step_macs,
)
from tests.helpers import TINY_SPACE


def test_max_params_leaves_the_callers_space_as_it_was(tmp_path: Path) -> None:
    space = load_space(TINY_SPACE)
    task = Task(10, 1, (8, 8))
    before = space_version(space, task).fingerprint
    for number in range(2):  # the second call starts from the space as given, too
        search(
            space=space,
            max_params=900 + number,
            n_trials=1,
            epochs=1,
            accelerator="cpu",
            threads=1,
            study_name=f"limit-{number}",
            out=str(tmp_path),
        )
        assert space.constraints == Constraints()
        assert space_version(space, task).fingerprint == before


def test_auto_keeps_digits_sized_steps_on_the_cpu_and_gives_cifar_ones_the_gpu() -> None:
    digits = typical_step_macs(load_space("digits-tiny"), Task(10, 1, (8, 8)))
    cifar = typical_step_macs(load_space("densenet-bc-cifar"), Task(10, 3, (32, 32)))
    assert digits is not None and cifar is not None
    assert digits < GPU_WORTHWHILE_STEP_MACS <= cifar
    # below the line, auto is the CPU whether or not a GPU is visible
    assert resolve_accelerator("auto", step_macs=digits) == "cpu"


def test_a_candidate_the_machine_cannot_hold_is_pruned_before_training(tmp_path: Path) -> None:
    study = search(
        space=TINY_SPACE,
        data="tests.user_data.quadrants:Quadrants",
        data_args={"size": 2048, "images": 4},  # 3x2048x2048 images, batches of 128
        n_trials=2,
        epochs=1,
        accelerator="cpu",
        threads=1,
        out=str(tmp_path),
    )
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    for trial in trials:
        reason = trial.user_attrs["pruned_reason"]
        assert reason.startswith("out of CPU memory before training: needs about "), reason
        assert "epochs" not in trial.user_attrs  # nothing trained


def test_a_user_datamodule_built_on_ours_keeps_its_own_split(tmp_path: Path) -> None:
    study = search(
        space=TINY_SPACE,
        data="tests.user_data.own_split:QuarterValidation",
        n_trials=1,
        epochs=1,
        accelerator="cpu",
        threads=1,
        out=str(tmp_path),
    )
    (trial,) = study.get_trials(deepcopy=False)
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("failure")
    assert "val_size" not in study.user_attrs  # the datamodule's, not a recorded --val-size

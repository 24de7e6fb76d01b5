"""Several trials per GPU: which GPU each worker gets, and how a trial fits its share.

Runs on the CPU: the rules are pure functions of the GPU count and a stated device
memory, with the cost model's estimates.
"""

from __future__ import annotations

import optuna
import pytest

from dense_nas.errors import UserInputError
from dense_nas.model.arch import preset
from dense_nas.model.recipe import TrainingConfig
from dense_nas.space import Candidate
from dense_nas.study.hardware import gpu_assignment, trials_per_gpu
from dense_nas.study.memory_fit import fit_to_memory, plan_memory, step_bytes, trial_budget

GiB = 1 << 30


@pytest.mark.parametrize("gpus", [1, 2, 3, 8])
@pytest.mark.parametrize("workers", [1, 2, 4, 7, 16])
def test_workers_share_the_gpus_round_robin(workers: int, gpus: int) -> None:
    assignment = gpu_assignment(workers, 1, gpus, None)
    assert assignment == [str(w % gpus) for w in range(workers)]
    shares = trials_per_gpu(assignment)
    assert sum(shares.values()) == workers
    assert max(shares.values()) - min(shares.values()) <= 1  # as even as it gets


def test_shared_gpus_follow_the_launchers_visible_devices() -> None:
    assert gpu_assignment(3, 1, 2, "GPU-aa,GPU-bb") == ["GPU-aa", "GPU-bb", "GPU-aa"]


def test_ddp_trials_never_share_a_gpu() -> None:
    assert gpu_assignment(2, 2, 4, None) == ["0,1", "2,3"]
    with pytest.raises(UserInputError, match="does not share its GPUs") as refused:
        gpu_assignment(3, 2, 4, None)
    assert refused.value.param == "workers"


def test_no_visible_gpu_is_refused() -> None:
    with pytest.raises(UserInputError, match="--accelerator cpu"):
        gpu_assignment(1, 1, 0, None)


def test_the_budget_shrinks_with_the_trials_sharing_a_device() -> None:
    alone, four = trial_budget(80 * GiB, 1), trial_budget(80 * GiB, 4)
    assert four < alone / 4 < alone
    assert trial_budget(GiB // 2, 1) == 0  # less than the reserve: nothing to plan with


BC100 = preset("densenet-bc-100-12")


def test_a_step_that_fits_trains_as_drawn() -> None:
    plan = plan_memory(BC100, (32, 32), 64, trial_budget(80 * GiB, 4))
    assert plan.decision == "as drawn"
    assert plan.reason is None


def test_a_step_too_big_for_its_share_switches_to_memory_efficient() -> None:
    drawn = step_bytes(BC100, (32, 32), 64)
    lean = step_bytes(BC100.replace(memory_efficient=True), (32, 32), 64)
    budget = (drawn + lean) // 2
    plan = plan_memory(BC100, (32, 32), 64, budget)
    assert plan.decision == "memory-efficient"
    assert (plan.needed_bytes, plan.efficient_bytes, plan.budget_bytes) == (drawn, lean, budget)
    trial = optuna.create_study().ask()
    fitted = fit_to_memory(
        trial, Candidate(BC100, TrainingConfig(batch_size=64)), (32, 32), budget, "32-true"
    )
    assert fitted.arch.memory_efficient
    assert fitted.arch.key == BC100.key  # the same network: results compare
    assert trial.user_attrs["memory_mode"] == "memory-efficient"
    assert "memory-efficient mode" in trial.user_attrs["memory_reason"]


def test_a_step_too_big_even_so_is_pruned_before_training_with_its_reason() -> None:
    study = optuna.create_study()
    trial = study.ask()
    big = Candidate(preset("densenet-bc-250-24"), TrainingConfig(batch_size=64))
    budget = trial_budget(16 * GiB, 8)  # a 16 GiB card shared by eight trials
    with pytest.raises(optuna.TrialPruned):
        fit_to_memory(trial, big, (32, 32), budget, "bf16-mixed")
    reason = trial.user_attrs["pruned_reason"]
    assert reason.startswith("out of GPU memory before training: needs about ")
    assert f"the trial may use {budget / (1 << 20):.0f} MiB" in reason


def test_16_bit_activations_fit_where_fp32_ones_do_not() -> None:
    bf16 = step_bytes(BC100, (32, 32), 256, "bf16-mixed")
    fp32 = step_bytes(BC100, (32, 32), 256, "32-true")
    assert (
        plan_memory(BC100, (32, 32), 256, (bf16 + fp32) // 2, "bf16-mixed").decision == "as drawn"
    )
    assert plan_memory(BC100, (32, 32), 256, (bf16 + fp32) // 2, "32-true").decision != "as drawn"

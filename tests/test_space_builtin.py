"""Every candidate the built-in spaces give builds, costs what cost.py says, and fits.

Hypothesis picks the sampler seeds; each example runs a few trials of an in-memory study
with the random or the TPE sampler. Models are built on the meta device and skip their
random initialisers: the layers and their parameter shapes are real, but no memory is
allocated, so ImageNet-sized candidates cost nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cache
from unittest import mock

import optuna
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dense_nas.model import cost
from dense_nas.model.arch import DenseNetConfig, preset
from dense_nas.model.network import DenseNet
from dense_nas.space import SearchSpace, Task, enqueue_seeds, load_space, sample
from dense_nas.space._registry import builtin_names

optuna.logging.set_verbosity(optuna.logging.WARNING)

TASKS = {
    "digits-tiny": Task(num_classes=10, in_channels=1, image_size=(8, 8)),
    "densenet-bc-cifar": Task(num_classes=10, in_channels=3, image_size=(32, 32)),
    "densenet-cifar-full": Task(num_classes=100, in_channels=3, image_size=(32, 32)),
    "densenet-imagenet": Task(num_classes=1000, in_channels=3, image_size=(224, 224)),
}
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=2),
}
TRIALS_PER_EXAMPLE = 4


@cache
def space(name: str) -> SearchSpace:
    return load_space(name)


#: The initialisers that draw random numbers: on the meta device they run as Python
#: decompositions (DenseNet-BC-190-40 builds in 3.4 s with them, 0.2 s without), and no
#: parameter's shape depends on them.
RANDOM_INITS = ("kaiming_normal_", "kaiming_uniform_", "normal_", "uniform_")


def _unchanged(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    return tensor


def built_params(arch: DenseNetConfig) -> int:
    with contextlib.ExitStack() as stack:
        for name in RANDOM_INITS:
            stack.enter_context(mock.patch.object(torch.nn.init, name, _unchanged))
        with torch.device("meta"):
            model = DenseNet(arch)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("name", TASKS)
@settings(max_examples=6, deadline=None, database=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_candidates_build_to_their_cost_and_meet_the_constraints(
    name: str, sampler: str, seed: int
) -> None:
    task = TASKS[name]
    study = optuna.create_study(sampler=SAMPLERS[sampler](seed))
    for _ in range(TRIALS_PER_EXAMPLE):
        trial = study.ask()
        try:
            candidate = sample(space(name), trial, task)
        except optuna.TrialPruned:
            assert trial.user_attrs["pruned_reason"]
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        arch = candidate.arch
        assert (arch.num_classes, arch.in_channels) == (task.num_classes, task.in_channels)
        assert space(name).constraints.violation(candidate, task) is None
        assert built_params(arch) == cost.params(arch) == trial.user_attrs["params"]
        study.tell(trial, float(cost.params(arch) % 1009))  # any value: TPE needs history


@pytest.mark.parametrize("name", TASKS)
def test_seeds_are_accepted_candidates(name: str) -> None:
    study = optuna.create_study()
    assert enqueue_seeds(study, space(name)) == len(space(name).seeds) >= 2
    for seed in space(name).seeds:
        trial = study.ask()
        sample(space(name), trial, TASKS[name])
        assert trial.params.items() >= seed.items()
        study.tell(trial, 0.0)


@pytest.mark.parametrize(
    ("name", "seed", "preset_name"),
    [
        ("densenet-bc-cifar", 0, "densenet-bc-100-12"),
        ("densenet-cifar-full", 0, "densenet-bc-100-12-c100"),
        ("densenet-cifar-full", 1, "densenet-40-12"),
        ("densenet-imagenet", 0, "densenet121"),
        ("densenet-imagenet", 1, "densenet169"),
        ("densenet-imagenet", 2, "densenet201"),
        ("densenet-imagenet", 3, "densenet161"),
    ],
)
def test_seeds_hold_the_reference_architectures(name: str, seed: int, preset_name: str) -> None:
    task = TASKS[name]
    study = optuna.create_study()
    study.enqueue_trial(dict(space(name).seeds[seed]))
    arch = sample(space(name), study.ask(), task).arch
    expected = preset(preset_name, num_classes=task.num_classes, in_channels=task.in_channels)
    assert arch.key == expected.key


def test_every_built_in_space_has_a_task_here() -> None:
    """The tests above cover the spaces in TASKS: that must be all of them."""
    assert set(TASKS) == set(builtin_names())


def test_digits_tiny_is_cpu_sized() -> None:
    task = TASKS["digits-tiny"]
    space("digits-tiny").check(task)
    limit = space("digits-tiny").constraints.max_params
    assert limit is not None and limit <= 200_000


def test_imagenet_space_trains_the_papers_imagenet_schedule() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    training = sample(space("densenet-imagenet"), study.ask(), TASKS["densenet-imagenet"]).training
    assert (training.epochs, training.batch_size, training.schedule) == (90, 256, "multistep")
    assert training.milestone_epochs() == [30, 60]  # lr / 10 at epochs 30 and 60 of 90

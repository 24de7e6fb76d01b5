"""The LightningModule: recipe, logging, real Trainer fit, checkpoint round trip."""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dense_nas.model.arch import DenseNetConfig, list_presets, preset
from dense_nas.model.module import DenseNetModule
from dense_nas.model.recipe import TrainingConfig


def _cifar_loader(n: int = 32, batch: int = 16) -> DataLoader[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    )
    return DataLoader(data, batch_size=batch)


def _trainer(root: Path, **kwargs: object) -> L.Trainer:
    options: dict[str, object] = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "default_root_dir": root,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
    }
    return L.Trainer(**(options | kwargs))  # type: ignore[arg-type]


def test_one_epoch_fit_on_cifar_shaped_data_logs_metrics(tmp_path: Path) -> None:
    module = DenseNetModule(DenseNetConfig(8, (2, 2, 2)), epochs=1)
    trainer = _trainer(tmp_path)
    trainer.fit(module, _cifar_loader(), _cifar_loader())
    metrics = trainer.callback_metrics
    for key in ("train/loss", "val/loss", "val/acc", "val/acc_top5"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert trainer.current_epoch == 1


def test_recipe_is_the_papers() -> None:
    module = DenseNetModule(preset("densenet-bc-100-12"), epochs=300)
    config = module.configure_optimizers()
    opt = config["optimizer"]
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.1,
        0.9,
        True,
        1e-4,
    )
    assert len(group["params"]) == len(list(module.parameters()))
    sched = config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(300):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[149] == pytest.approx(0.1) and lrs[150] == pytest.approx(0.01)
    assert lrs[224] == pytest.approx(0.01) and lrs[225] == pytest.approx(0.001)


def _lr_per_epoch(module: DenseNetModule) -> list[float]:
    """The lr of every epoch of the module's schedule, stepped once an epoch as Lightning does."""
    config = module.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "epoch"
    lrs = []
    for _ in range(module.training_config.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize(
    ("milestones", "epochs", "decays"),
    [
        ([30, 60], 90, [30, 60]),  # the paper's ImageNet schedule
        ((30, 60), 90, [30, 60]),
        ([0.25, 0.5], 8, [2, 4]),  # fractions of the schedule
        ([0.29], 100, [29]),  # floored, and not one lower through float error
        ([3], 4, [3]),
    ],
)
def test_step_schedule_divides_the_lr_by_10_at_each_milestone(
    milestones: list[float], epochs: int, decays: list[int]
) -> None:
    module = DenseNetModule(DenseNetConfig(4, (1,)), epochs=epochs, milestones=milestones)
    expected = [0.1 * 0.1 ** sum(epoch >= d for d in decays) for epoch in range(epochs)]
    assert _lr_per_epoch(module) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("milestones", "epochs", "message"),
    [
        ([60, 30], 90, "must increase, got [60, 30]"),
        ([30, 30], 90, "must increase"),
        ([30, 90], 90, "[30, 90] do not fit a schedule of 90 epochs; give epochs in [1, 89]"),
        ([0, 5], 10, "do not fit a schedule of 10 epochs"),
        ([0.5, 1.0], 10, "must hold fractions in (0, 1), got [0.5, 1.0]"),
        ([0.0, 0.5], 10, "must hold fractions in (0, 1)"),
        ([30, 0.75], 90, "not a mix, got [30, 0.75]"),
        ([], 90, "at least one epoch or fraction, got []"),
        (30, 90, "must be a list of epochs like [30, 60]"),
        (["30"], 90, "must be a list of epochs"),
        ([True], 90, "must be a list of epochs"),
    ],
)
def test_bad_milestones_are_one_line_errors_naming_the_fix(
    milestones: object, epochs: int, message: str
) -> None:
    with pytest.raises(ValueError, match=r"^milestones: ") as caught:
        TrainingConfig(epochs=epochs, milestones=milestones)  # type: ignore[arg-type]
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_milestones_survive_json_and_keep_one_spelling() -> None:
    recipe = TrainingConfig(epochs=90, milestones=[30, 60])  # type: ignore[arg-type]
    assert recipe.milestones == (30, 60)  # a list is kept as a tuple: configs compare equal
    stored = json.loads(json.dumps(recipe.to_dict()))  # how a study keeps its user attrs
    assert stored["milestones"] == [30, 60]
    assert TrainingConfig.from_dict(stored) == recipe
    assert TrainingConfig.from_dict(stored).to_dict() == recipe.to_dict()  # one training key


def test_a_shorter_or_longer_run_keeps_the_step_schedules_shape() -> None:
    imagenet = TrainingConfig(epochs=90, milestones=(30, 60))
    assert imagenet.with_epochs(90) == imagenet
    proxy = imagenet.with_epochs(9)
    assert proxy.milestone_epochs() == [3, 6]
    assert proxy.with_epochs(90).milestone_epochs() == [30, 60]
    assert imagenet.with_epochs(2).milestone_epochs() == [0, 1]  # short, yet a valid recipe
    assert TrainingConfig(epochs=300).with_epochs(40).milestone_epochs() == [20, 30]


def test_cosine_schedule_anneals_to_zero() -> None:
    module = DenseNetModule(DenseNetConfig(4, (1,)), epochs=10, schedule="cosine")
    config = module.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("recipe", "kind", "expected"),
    [
        (
            {"momentum": 0.5, "nesterov": False, "weight_decay": 0.0},
            torch.optim.SGD,
            {"lr": 0.1, "momentum": 0.5, "nesterov": False, "weight_decay": 0.0},
        ),
        (
            {"optimizer": "adamw", "lr": 1e-3, "betas": [0.8, 0.99], "eps": 1e-6},
            torch.optim.AdamW,
            {"lr": 1e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 1e-4},
        ),
        (
            {"optimizer": "adamw", "weight_decay": 0.05, "momentum": 0.0},  # momentum unread
            torch.optim.AdamW,
            {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.05},
        ),
    ],
)
def test_each_optimizer_is_built_with_its_own_fields(
    recipe: dict[str, Any], kind: type[torch.optim.Optimizer], expected: dict[str, Any]
) -> None:
    module = DenseNetModule(DenseNetConfig(4, (1,)), epochs=4, **recipe)
    optimizer = module.configure_optimizers()["optimizer"]
    assert type(optimizer) is kind
    (group,) = optimizer.param_groups
    assert {name: group[name] for name in expected} == expected
    assert len(group["params"]) == len(list(module.parameters()))


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        # thirds of the lr, then the step schedule at the epochs it always had
        ({"epochs": 8, "milestones": [4, 6]}, [0.025, 0.05, 0.075, 0.1, 0.01, 0.01, 1e-3, 1e-3]),
        ({"epochs": 5, "milestones": [1]}, [0.025, 0.005, 0.0075, 0.01, 0.01]),  # decayed early
        (
            {"epochs": 10, "schedule": "cosine"},
            [0.1 * min(e + 1, 4) / 4 * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(10)],
        ),
    ],
)
def test_a_warm_up_ramps_the_lr_linearly_into_the_schedule(
    recipe: dict[str, Any], expected: list[float]
) -> None:
    module = DenseNetModule(DenseNetConfig(4, (1,)), warmup_epochs=3, **recipe)
    assert _lr_per_epoch(module) == pytest.approx(expected)


class _LearningRates(L.Callback):
    """The lr each training epoch starts with, as the optimizer holds it."""

    def __init__(self) -> None:
        self.per_epoch: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.per_epoch.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_a_trainer_warms_up_adamw_and_resumes_the_ramp_from_a_checkpoint(
    tmp_path: Path,
) -> None:
    def module() -> DenseNetModule:
        return DenseNetModule(
            DenseNetConfig(4, (1,)),
            optimizer="adamw",
            lr=0.003,
            warmup_epochs=2,
            epochs=4,
            milestones=[3],
        )

    expected = [0.001, 0.002, 0.003, 0.0003]
    whole = _LearningRates()
    _trainer(tmp_path / "whole", max_epochs=4, callbacks=[whole]).fit(module(), _cifar_loader())
    assert whole.per_epoch == pytest.approx(expected)

    first, rest = _LearningRates(), _LearningRates()
    checkpoint = tmp_path / "two.ckpt"
    stopped = _trainer(tmp_path / "first", max_epochs=1, callbacks=[first])
    stopped.fit(module(), _cifar_loader())  # stopped inside the warm-up
    stopped.save_checkpoint(checkpoint)
    resumed = _trainer(tmp_path / "rest", max_epochs=4, callbacks=[rest])
    resumed.fit(module(), _cifar_loader(), ckpt_path=checkpoint, weights_only=True)
    assert first.per_epoch + rest.per_epoch == pytest.approx(expected)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"optimizer": "adam"}, "optimizer: must be one of sgd, adamw, got 'adam'"),
        ({"optimizer": "adamw", "betas": (0.9, 1.0)}, "betas: must be two numbers in [0, 1)"),
        ({"optimizer": "adamw", "betas": (-0.1, 0.9)}, "betas: must be two numbers in [0, 1)"),
        ({"optimizer": "adamw", "betas": (0.9,)}, "betas: must be two numbers"),
        ({"optimizer": "adamw", "eps": 0.0}, "eps: must be a positive number, got 0.0"),
        ({"eps": -1e-8}, "eps: must be a positive number"),
        ({"warmup_epochs": -1}, "warmup_epochs: must be a whole number of epochs >= 0, got -1"),
        ({"warmup_epochs": 1.5}, "warmup_epochs: must be a whole number"),
        ({"warmup_epochs": 10}, "warmup_epochs: 10 do not fit a schedule of 10 epochs"),
    ],
)
def test_bad_optimizer_and_warm_up_values_are_one_line_naming_the_field(
    recipe: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        DenseNetModule(DenseNetConfig(4, (1,)), epochs=10, **recipe)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_nan_loss_stops_training(tmp_path: Path) -> None:
    module = DenseNetModule(DenseNetConfig(4, (1,)), epochs=1, lr=1e30)
    with pytest.raises(FloatingPointError, match="train/loss"):
        _trainer(tmp_path, max_epochs=3).fit(module, _cifar_loader(64))


@pytest.mark.parametrize("name", list_presets())
def test_checkpoint_round_trip_under_weights_only(name: str, tmp_path: Path) -> None:
    cfg = preset(name)
    module = DenseNetModule(cfg, epochs=7, lr=0.05, label_smoothing=0.1, milestones=[2, 5])
    trainer = _trainer(tmp_path, max_epochs=0)
    trainer.strategy.connect(module)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    torch.load(path, weights_only=True)  # plain values only: must not raise
    loaded = DenseNetModule.load_from_checkpoint(path, weights_only=True)
    assert loaded.config == cfg
    assert loaded.training_config == module.training_config
    size = 32 if cfg.stem == "imagenet" else 16
    x = torch.randn(1, 3, size, size)
    module.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), module(x))


_REFAULT_PROBE = """
import resource, sys, lightning as L, torch
from torch.utils.data import DataLoader, TensorDataset
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.module import DenseNetModule
from dense_nas.study.process.trial import TrialSpec, run

if sys.argv[1] == "trial-process":  # what dense-nas runs in the processes it owns
    arch = DenseNetConfig(4, (1,), in_channels=1, num_classes=10)
    run(TrialSpec(0, arch.to_dict(), {"epochs": 1}, "digits"), lambda report: False)
else:  # a user's own Trainer fitting the module in the user's process
    data = DataLoader(
        TensorDataset(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))), batch_size=8
    )
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(DenseNetModule(DenseNetConfig(4, (1,)), epochs=1), data)
faults = []
for _ in range(4):  # an activation-sized buffer, allocated, written and freed each step
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(48 << 20, dtype=torch.uint8).fill_(1)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[1:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
@pytest.mark.parametrize(
    ("where", "allocator"),
    [("trial-process", "tuned"), ("trial-process", "default"), ("user-trainer", "tuned")],
)
def test_cpu_trial_processes_reuse_freed_memory_and_a_users_process_is_left_alone(
    where: str, allocator: str
) -> None:
    """dense-nas tunes malloc in the processes it owns, never in a user's own Trainer."""
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    tuned = where == "trial-process" and allocator == "tuned"
    if not tuned and thp.exists() and "[always]" in thp.read_text():
        pytest.skip("huge pages fault a fresh mapping in 2 MiB at a time")
    env = {**os.environ, "DENSE_NAS_CPU_ALLOCATOR": allocator, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _REFAULT_PROBE, where],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    faults = int(result.stdout.split()[-1])
    pages = (48 << 20) // resource.getpagesize()
    if tuned:  # after a trial on the CPU, a freed 48 MiB buffer is reused
        assert faults < pages // 10
    else:  # glibc as it comes: every 48 MiB buffer is a fresh mapping, faulted in page by page
        assert faults > pages // 2

"""The LightningModule: recipe, logging, real Trainer fit, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dense_nas.arch import DenseNetConfig, list_presets, preset
from dense_nas.module import DenseNetModule


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


def test_cosine_schedule_anneals_to_zero() -> None:
    module = DenseNetModule(DenseNetConfig(4, (1,)), epochs=10, schedule="cosine")
    config = module.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_no_top5_metric_with_few_classes() -> None:
    module = DenseNetModule(DenseNetConfig(4, (1,), num_classes=3))
    assert set(module.val_metrics) == {"acc"}


def test_nan_loss_stops_training(tmp_path: Path) -> None:
    module = DenseNetModule(DenseNetConfig(4, (1,)), epochs=1, lr=1e30)
    with pytest.raises(FloatingPointError, match="train/loss"):
        _trainer(tmp_path, max_epochs=3).fit(module, _cifar_loader(64))


@pytest.mark.parametrize("name", list_presets())
def test_checkpoint_round_trip_under_weights_only(name: str, tmp_path: Path) -> None:
    cfg = preset(name)
    module = DenseNetModule(cfg, epochs=7, lr=0.05, label_smoothing=0.1)
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

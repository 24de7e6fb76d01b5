"""Validation metrics: each equals scikit-learn's on the same predictions, over batches,
and DenseNetModule logs the chosen one as ``val/<metric>`` beside accuracy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    roc_auc_score,
    top_k_accuracy_score,
)
from torch.utils.data import DataLoader, TensorDataset

from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.metrics import METRICS, get_metric
from dense_nas.model.module import DenseNetModule

CLASSES = 7
Score = Callable[[NDArray[np.int64], NDArray[np.float64]], float]
LABELS = list(range(CLASSES))


def _predicted(probs: NDArray[np.float64]) -> NDArray[np.int64]:
    predicted: NDArray[np.int64] = probs.argmax(axis=1)
    return predicted


#: scikit-learn's score of labels and softmax probabilities, per registry name.
SKLEARN: dict[str, Score] = {
    "accuracy": lambda y, p: float(accuracy_score(y, _predicted(p))),
    "top5": lambda y, p: float(top_k_accuracy_score(y, p, k=5, labels=LABELS)),
    "balanced_accuracy": lambda y, p: float(balanced_accuracy_score(y, _predicted(p))),
    "f1": lambda y, p: float(
        f1_score(y, _predicted(p), average="macro", labels=LABELS, zero_division=0)
    ),
    "auroc": lambda y, p: float(
        roc_auc_score(y, p, multi_class="ovr", average="macro", labels=LABELS)
    ),
    "nll": lambda y, p: float(log_loss(y, p, labels=LABELS)),
}


def _fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """60 samples, every class among the labels, logits that get some right and some wrong."""
    g = torch.Generator().manual_seed(3)
    labels = torch.arange(60) % CLASSES
    logits = torch.randn(60, CLASSES, generator=g) * 2
    logits[torch.arange(30), labels[:30]] += 2.0  # half of them leaning to the right class
    return logits, labels


def test_the_registry_holds_the_six_metrics_with_their_directions() -> None:
    assert {name: spec.direction for name, spec in METRICS.items()} == {
        "accuracy": "maximize",
        "top5": "maximize",
        "balanced_accuracy": "maximize",
        "f1": "maximize",
        "auroc": "maximize",
        "nll": "minimize",
    }
    assert set(SKLEARN) == set(METRICS)
    with pytest.raises(ValueError, match=r"^metric: must be one of accuracy, .*, got 'acc'$"):
        get_metric("acc")


@pytest.mark.parametrize("name", list(METRICS))
def test_each_metric_equals_scikit_learns_over_two_batches(name: str) -> None:
    logits, labels = _fixed_batch()
    metric = get_metric(name).build(CLASSES)
    for part in (slice(0, 25), slice(25, None)):  # an epoch of two batches
        metric.update(logits[part], labels[part])
    probs = torch.softmax(logits.double(), dim=1).numpy()
    expected = SKLEARN[name](labels.numpy(), probs)
    assert 0.0 < expected < (10.0 if name == "nll" else 1.0)  # not a degenerate case
    assert metric.compute().item() == pytest.approx(expected, abs=1e-6)


def _loader(classes: int, n: int = 48) -> DataLoader[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(n) % classes
    return DataLoader(TensorDataset(torch.randn(n, 1, 8, 8, generator=g), labels), batch_size=16)


def _validate(module: DenseNetModule, root: Path) -> dict[str, float]:
    trainer = L.Trainer(
        accelerator="cpu",
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (logged,) = trainer.validate(module, _loader(module.config.num_classes), verbose=False)
    return {name: float(value) for name, value in logged.items()}


@pytest.mark.parametrize("name", list(METRICS))
def test_a_validation_epoch_logs_the_chosen_metric_as_scikit_learn_scores_it(
    name: str, tmp_path: Path
) -> None:
    module = DenseNetModule(
        DenseNetConfig(4, (1,), in_channels=1, num_classes=CLASSES), metric=name
    )
    logged = _validate(module, tmp_path)

    module.eval()
    with torch.no_grad():
        pairs = [(module(images), labels) for images, labels in _loader(CLASSES)]
    probs = torch.softmax(torch.cat([p for p, _ in pairs]).double(), dim=1).numpy()
    labels = torch.cat([y for _, y in pairs]).numpy()
    assert logged[f"val/{name}"] == pytest.approx(SKLEARN[name](labels, probs), abs=1e-5)
    # Accuracy is always beside it, under its old name too; so are the loss and top-5.
    accuracy = SKLEARN["accuracy"](labels, probs)
    assert logged["val/accuracy"] == logged["val/acc"] == pytest.approx(accuracy, abs=1e-6)
    assert logged["val/top5"] == logged["val/acc_top5"]
    assert set(logged) == {"val/loss", "val/accuracy", "val/acc", "val/top5", "val/acc_top5"} | {
        f"val/{name}"
    }


def test_few_classes_log_no_top5(tmp_path: Path) -> None:
    module = DenseNetModule(DenseNetConfig(4, (1,), in_channels=1, num_classes=3), metric="f1")
    assert set(_validate(module, tmp_path)) == {"val/loss", "val/accuracy", "val/acc", "val/f1"}


def test_an_unknown_metric_is_refused_before_anything_is_built() -> None:
    with pytest.raises(ValueError, match=r"^metric: must be one of .*, got 'recall'$"):
        DenseNetModule(DenseNetConfig(4, (1,)), metric="recall")

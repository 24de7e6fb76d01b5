"""The validation metrics a network can be judged by: name, direction and torchmetrics.

Each :class:`MetricSpec` names one score of a classifier's logits against the labels,
says whether higher or lower is better (in Optuna's words, ``"maximize"`` or
``"minimize"``) and builds the torchmetrics object that accumulates it over an epoch.
:class:`~dense_nas.model.module.DenseNetModule` logs the one it is given as
``val/<name>`` (and ``test/<name>``).

Example:
    >>> import torch
    >>> spec = get_metric("balanced_accuracy")
    >>> spec.direction, spec.logged("val")
    ('maximize', 'val/balanced_accuracy')
    >>> recall = spec.build(num_classes=3)
    >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    >>> round(recall(logits, torch.tensor([0, 1, 2, 2])).item(), 6)  # recalls 1, 1 and 1/2
    0.833333
    >>> get_metric("recall")
    Traceback (most recent call last):
    ...
    ValueError: metric: must be one of accuracy, top5, balanced_accuracy, f1, auroc, nll, got 'recall'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
    MulticlassRecall,
)

Direction = Literal["maximize", "minimize"]


class MeanCrossEntropy(Metric):
    """Mean cross-entropy of logits against labels, over every sample seen: the NLL.

    Unlike the training loss it never smooths the labels, so it scores the predicted
    probabilities alone.

    Example:
        >>> nll = MeanCrossEntropy()
        >>> nll.update(torch.zeros(4, 2), torch.tensor([0, 1, 1, 0]))
        >>> round(nll.compute().item(), 6)  # log 2: even odds on every sample
        0.693147
    """

    is_differentiable = True
    higher_is_better = False
    full_state_update = False
    total: Tensor
    count: Tensor

    def __init__(self) -> None:
        super().__init__()
        # float64 sums: a large validation set adds many small terms.
        self.add_state(
            "total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add a batch's summed cross-entropy and its size."""
        self.total += F.cross_entropy(logits.double(), labels, reduction="sum")
        self.count += labels.numel()

    def compute(self) -> Tensor:
        """The mean over every sample since the last reset."""
        return (self.total / self.count).float()


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the registry.

    Attributes:
        name: its name in flags, records and logs (``val/<name>``).
        direction: ``"maximize"`` when higher is better, ``"minimize"`` when lower is.
        description: what it measures, in a few words.
        factory: builds the torchmetrics object from the number of classes.
    """

    name: str
    direction: Direction
    description: str
    factory: Callable[[int], Metric]

    def build(self, num_classes: int) -> Metric:
        """A fresh torchmetrics object: ``update(logits, labels)`` per batch, then ``compute()``."""
        return self.factory(num_classes)

    def logged(self, stage: str) -> str:
        """The name it is logged under in a stage (``val`` or ``test``)."""
        return f"{stage}/{self.name}"


_SPECS = (
    MetricSpec(
        "accuracy",
        "maximize",
        "top-1 accuracy",
        lambda classes: MulticlassAccuracy(classes, average="micro"),
    ),
    MetricSpec(
        "top5",
        "maximize",
        "top-5 accuracy (1 with five classes or fewer)",
        lambda classes: MulticlassAccuracy(classes, top_k=min(5, classes), average="micro"),
    ),
    MetricSpec(
        "balanced_accuracy",
        "maximize",
        "mean recall over the classes",
        lambda classes: MulticlassRecall(classes, average="macro"),
    ),
    MetricSpec(
        "f1",
        "maximize",
        "F1 score averaged over the classes",
        lambda classes: MulticlassF1Score(classes, average="macro"),
    ),
    MetricSpec(
        "auroc",
        "maximize",
        "one-vs-rest area under the ROC curve, averaged over the classes",
        lambda classes: MulticlassAUROC(classes, average="macro"),
    ),
    MetricSpec(
        "nll",
        "minimize",
        "mean cross-entropy (negative log-likelihood)",
        lambda classes: MeanCrossEntropy(),
    ),
)

METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}
"""Every metric by name, accuracy (the default) first."""


def get_metric(name: str) -> MetricSpec:
    """The metric called ``name``.

    Raises:
        ValueError: ``"metric: must be one of ..."`` for a name not in :data:`METRICS`.

    Example:
        >>> get_metric("nll").direction
        'minimize'
    """
    if name not in METRICS:
        raise ValueError(f"metric: must be one of {', '.join(METRICS)}, got {name!r}")
    return METRICS[name]

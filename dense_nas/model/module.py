"""``DenseNetModule``: the LightningModule that trains a DenseNet with a recipe.

Hyperparameters are stored as plain values only (the architecture as a dict of ints,
floats, bools and strings), so ``DenseNetModule.load_from_checkpoint(path)`` rebuilds the
exact architecture even when the checkpoint is loaded with ``weights_only=True``.

Example:
    >>> import torch
    >>> from dense_nas.model.arch import DenseNetConfig
    >>> module = DenseNetModule(DenseNetConfig(growth_rate=4, block_layers=(2, 2),
    ...                                        in_channels=1), epochs=2)
    >>> module(torch.randn(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    >>> module.hparams["config"]["block_layers"]
    [2, 2]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.lr_scheduler import (
    ChainedScheduler,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
)
from torchmetrics import Metric

from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.graphs import CompiledForward
from dense_nas.model.metrics import get_metric
from dense_nas.model.network import DenseNet
from dense_nas.model.recipe import PAPER_MILESTONES, Optimizer, Schedule, TrainingConfig

_ALSO_LOGGED_AS = {"accuracy": "acc", "top5": "acc_top5"}
"""The names these metrics were logged under before the registry; still logged."""


class DenseNetModule(L.LightningModule):
    """A DenseNet plus its training recipe, ready for ``lightning.Trainer``.

    Args:
        config: the architecture, as a :class:`DenseNetConfig` or its ``to_dict()``.
        lr, optimizer, momentum, nesterov, betas, eps, weight_decay, schedule, milestones, warmup_epochs, epochs, label_smoothing, batch_size: the
            training recipe (see :class:`~dense_nas.model.recipe.TrainingConfig`).
        metric: the validation metric to compute besides accuracy, by its name in
            :data:`~dense_nas.model.metrics.METRICS` (``f1``, ``auroc``, ``nll``, ...).
        channels_last: run convs in NHWC layout; faster for DenseNet on CPUs and on GPUs
            with tensor cores.
        compile: run the network through ``torch.compile`` once the Trainer sets the
            model up: ``True`` for the default mode, or a mode such as
            ``"reduce-overhead"`` (CUDA graphs: launch-free steps on a GPU). Costs a minute
            or more of compile time; if compiling fails the module trains eager, with one
            warning (:class:`~dense_nas.model.graphs.CompiledForward`). Checkpoints keep the
            eager parameter names either way.

    The module changes nothing outside itself: the trial and retrain processes that
    dense-nas starts tune the C allocator for CPU training
    (:func:`~dense_nas.study.hardware.keep_freed_memory`); a user's own process may call
    it too.

    Logs ``train/loss`` and, every validation epoch, ``val/loss`` (the training loss),
    ``val/accuracy``, ``val/top5`` with more than five classes, and ``val/<metric>``; the
    accuracies also as ``val/acc`` and ``val/acc_top5``, as before there were other
    metrics. The same under ``test/`` in ``Trainer.test``.

    Example:
        >>> from dense_nas.model.arch import preset
        >>> module = DenseNetModule(preset("densenet-bc-100-12"), epochs=300)
        >>> module.training_config.milestone_epochs()
        [150, 225]
        >>> DenseNetModule(preset("densenet121"), epochs=90, milestones=[30, 60],
        ...                batch_size=256).training_config.milestone_epochs()
        [30, 60]
        >>> sorted(DenseNetModule(preset("densenet-40-12"), metric="f1").val_metrics)
        ['accuracy', 'f1', 'top5']
    """

    def __init__(
        self,
        config: DenseNetConfig | Mapping[str, Any],
        *,
        lr: float = 0.1,
        optimizer: Optimizer = "sgd",
        momentum: float = 0.9,
        nesterov: bool = True,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-4,
        schedule: Schedule = "multistep",
        milestones: Sequence[int] | Sequence[float] = PAPER_MILESTONES,
        warmup_epochs: int = 0,
        epochs: int = 300,
        label_smoothing: float = 0.0,
        batch_size: int = 64,
        metric: str = "accuracy",
        channels_last: bool = True,
        compile: bool | str = False,
    ) -> None:
        super().__init__()
        arch = config if isinstance(config, DenseNetConfig) else DenseNetConfig.from_dict(config)
        self.config = arch
        self.training_config = TrainingConfig(
            lr=lr,
            optimizer=optimizer,
            momentum=momentum,
            nesterov=nesterov,
            betas=tuple(betas),  # type: ignore[arg-type]  # TrainingConfig checks there are two
            eps=eps,
            weight_decay=weight_decay,
            schedule=schedule,
            milestones=tuple(milestones),
            warmup_epochs=warmup_epochs,
            epochs=epochs,
            label_smoothing=label_smoothing,
            batch_size=batch_size,
        )
        self.metric = get_metric(metric)
        self.channels_last = channels_last
        self.compile_model = compile
        self._forward: CompiledForward | None = None  # set up by configure_model
        # Plain values only: a checkpoint must load under torch.load(weights_only=True).
        self.save_hyperparameters(
            {
                "config": arch.to_dict(),
                **self.training_config.to_dict(),
                "metric": metric,
                "channels_last": channels_last,
                "compile": compile,
            }
        )
        self.model = DenseNet(arch)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # Accuracy always, top-5 where it says something (as before the registry), and
        # the chosen metric.
        names = dict.fromkeys(["accuracy", *(["top5"] if arch.num_classes > 5 else []), metric])
        self.val_metrics = _built(names, arch.num_classes)
        self.test_metrics = _built(names, arch.num_classes)

    @classmethod
    def from_candidate(
        cls, arch: DenseNetConfig, training: TrainingConfig, **options: Any
    ) -> DenseNetModule:
        """Build from an architecture and a :class:`TrainingConfig`.

        Example:
            >>> from dense_nas.model.arch import preset
            >>> m = DenseNetModule.from_candidate(preset("densenet-40-12"),
            ...                                   TrainingConfig(epochs=4))
            >>> m.training_config.epochs
            4
        """
        return cls(arch, **training.to_dict(), **options)

    def configure_model(self) -> None:
        if self.compile_model and self._forward is None:
            mode = None if self.compile_model is True else str(self.compile_model)
            self._forward = CompiledForward(self.model, mode)

    @property
    def compiled(self) -> bool:
        """Whether training steps run the compiled network (see ``compile``)."""
        return self._forward is not None and self._forward.compiled

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self._forward is not None:
            return self._forward(x)
        return self.model(x)  # type: ignore[no-any-return]

    def _loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.training_config.label_smoothing)
        return loss, logits, labels

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _, _ = self._loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train/loss is {loss.item()} at step {self.global_step}")
        # Per epoch only: loggers then get one train/loss series beside val/loss and val/acc.
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        loss, logits, labels = self._loss(batch)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True)
        # The progress bar shows val/acc, as it always did, and the chosen metric beside it.
        shown = {"acc", self.metric.name} - {"accuracy"}
        for name, metric in metrics.items():
            assert isinstance(metric, Metric)
            # update, not forward: the epoch's value is all that is logged, and a batch's
            # AUROC would cost a sort per batch for nothing.
            metric.update(logits.float(), labels)
            # Lightning computes, syncs and resets the metric at the epoch's end.
            for logged in dict.fromkeys([name, _ALSO_LOGGED_AS.get(name, name)]):
                self.log(
                    f"{stage}/{logged}",
                    metric,
                    on_step=False,
                    on_epoch=True,
                    prog_bar=logged in shown,
                )

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.training_config, self.parameters())
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": build_scheduler(self.training_config, optimizer),
                "interval": "epoch",
            },
        }


def _built(names: Iterable[str], num_classes: int) -> torch.nn.ModuleDict:
    return torch.nn.ModuleDict({name: get_metric(name).build(num_classes) for name in names})


def build_optimizer(recipe: TrainingConfig, parameters: Iterable[Tensor]) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``parameters``, with its own fields.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> adamw = build_optimizer(TrainingConfig(optimizer="adamw", lr=1e-3), net.parameters())
        >>> type(adamw).__name__, adamw.param_groups[0]["betas"]
        ('AdamW', (0.9, 0.999))
    """
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(
            parameters,
            lr=recipe.lr,
            betas=recipe.betas,
            eps=recipe.eps,
            weight_decay=recipe.weight_decay,
        )
    return torch.optim.SGD(
        parameters,
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )


def build_scheduler(recipe: TrainingConfig, optimizer: torch.optim.Optimizer) -> LRScheduler:
    """The recipe's lr schedule, stepped once an epoch, its warm-up multiplied in.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> sgd = build_optimizer(TrainingConfig(), net.parameters())
        >>> schedule = build_scheduler(TrainingConfig(epochs=6, warmup_epochs=3), sgd)
        >>> lrs = []
        >>> for _ in range(6):
        ...     lrs.append(round(sgd.param_groups[0]["lr"], 6))
        ...     sgd.step()
        ...     schedule.step()
        >>> lrs  # a quarter more per epoch up to 0.1; divided by 10 at epochs 3 and 4
        [0.025, 0.05, 0.075, 0.01, 0.001, 0.001]
    """
    scheduler: LRScheduler
    if recipe.schedule == "multistep":
        scheduler = MultiStepLR(optimizer, milestones=recipe.milestone_epochs(), gamma=0.1)
    else:
        scheduler = CosineAnnealingLR(optimizer, T_max=recipe.epochs)
    if recipe.warmup_epochs == 0:
        return scheduler  # as before warm-ups existed: checkpoints resume as they were saved
    warmup = recipe.warmup_epochs
    ramp = LinearLR(optimizer, start_factor=1 / (warmup + 1), total_iters=warmup)
    # Both schedulers scale the lr by a factor per epoch: chained, the factors multiply.
    return ChainedScheduler([ramp, scheduler], optimizer=optimizer)

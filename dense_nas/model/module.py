"""``DenseNetModule``: the LightningModule that trains a DenseNet with the paper's recipe.

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

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.graphs import CompiledForward
from dense_nas.model.network import DenseNet
from dense_nas.model.recipe import PAPER_MILESTONES, Schedule, TrainingConfig


class DenseNetModule(L.LightningModule):
    """A DenseNet plus its training recipe, ready for ``lightning.Trainer``.

    Args:
        config: the architecture, as a :class:`DenseNetConfig` or its ``to_dict()``.
        lr, momentum, nesterov, weight_decay, schedule, milestones, epochs, label_smoothing, batch_size: the
            training recipe (see :class:`~dense_nas.model.recipe.TrainingConfig`).
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

    Logs ``train/loss``, ``val/loss``, ``val/acc`` (and ``val/acc_top5`` with more than five
    classes), and the same under ``test/`` in ``Trainer.test``.

    Example:
        >>> from dense_nas.model.arch import preset
        >>> module = DenseNetModule(preset("densenet-bc-100-12"), epochs=300)
        >>> module.training_config.milestone_epochs()
        [150, 225]
        >>> DenseNetModule(preset("densenet121"), epochs=90, milestones=[30, 60],
        ...                batch_size=256).training_config.milestone_epochs()
        [30, 60]
    """

    def __init__(
        self,
        config: DenseNetConfig | Mapping[str, Any],
        *,
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 1e-4,
        schedule: Schedule = "multistep",
        milestones: Sequence[int] | Sequence[float] = PAPER_MILESTONES,
        epochs: int = 300,
        label_smoothing: float = 0.0,
        batch_size: int = 64,
        channels_last: bool = True,
        compile: bool | str = False,
    ) -> None:
        super().__init__()
        arch = config if isinstance(config, DenseNetConfig) else DenseNetConfig.from_dict(config)
        self.config = arch
        self.training_config = TrainingConfig(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            schedule=schedule,
            milestones=tuple(milestones),
            epochs=epochs,
            label_smoothing=label_smoothing,
            batch_size=batch_size,
        )
        self.channels_last = channels_last
        self.compile_model = compile
        self._forward: CompiledForward | None = None  # set up by configure_model
        # Plain values only: a checkpoint must load under torch.load(weights_only=True).
        self.save_hyperparameters(
            {
                "config": arch.to_dict(),
                **self.training_config.to_dict(),
                "channels_last": channels_last,
                "compile": compile,
            }
        )
        self.model = DenseNet(arch)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        metrics = {"acc": MulticlassAccuracy(arch.num_classes, average="micro")}
        if arch.num_classes > 5:
            metrics["acc_top5"] = MulticlassAccuracy(arch.num_classes, top_k=5, average="micro")
        self.val_metrics = torch.nn.ModuleDict(metrics)
        self.test_metrics = torch.nn.ModuleDict(
            {name: metric.clone() for name, metric in metrics.items()}
        )

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
        for name, metric in metrics.items():
            assert isinstance(metric, MulticlassAccuracy)
            metric(logits, labels)
            self.log(f"{stage}/{name}", metric, on_epoch=True, prog_bar=name == "acc")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> Any:
        recipe = self.training_config
        optimizer = torch.optim.SGD(
            self.parameters(),
            lr=recipe.lr,
            momentum=recipe.momentum,
            nesterov=recipe.nesterov,
            weight_decay=recipe.weight_decay,
        )
        scheduler: torch.optim.lr_scheduler.LRScheduler
        if recipe.schedule == "multistep":
            scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, milestones=recipe.milestone_epochs(), gamma=0.1
            )
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

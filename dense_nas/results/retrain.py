"""Retrain the best architecture from scratch and measure it on the test set.

The paper's protocol: the search selects on a validation split held out of the training
data; the chosen architecture is then trained from scratch with its full recipe on
training *and* validation images, and only that model touches the test set.

Retraining applies the study's ``--trainer-config`` (its Trainer options, callbacks and
loggers), as every trial did, and logs as a run ``retrain-trial-<N>`` to the loggers the
trial logged to (:func:`~dense_nas.study.loggers.retrain_logger`). Checkpoints go to ``<out>/retrain/<study>/`` (``last.ckpt`` after every epoch); running
the same retrain again resumes from ``last.ckpt``, provided it was made with the same
architecture and recipe. The test accuracy is printed and recorded on the study as user
attr ``"retrain"``.

Example:
    >>> result = retrain("sqlite:///runs/dense-nas.db", "demo", epochs=30)  # doctest: +SKIP
    >>> print(f"{result.test_accuracy:.2%}")  # doctest: +SKIP
    98.61%
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.model_helpers import is_overridden

from dense_nas.data import build_datamodule
from dense_nas.errors import UserInputError
from dense_nas.model.graphs import check_compile_choice, compile_mode, training_steps
from dense_nas.model.module import DenseNetModule
from dense_nas.paths import check_output_dir
from dense_nas.records import record_study, study_attrs, trial_attrs
from dense_nas.results.loading import (
    DEFAULT_OUT,
    differing_hparams,
    find_trial,
    read_checkpoint,
    trial_arch,
    trial_training,
)
from dense_nas.study.hardware import resolve_accelerator, resolve_precision, speed_defaults
from dense_nas.study.loggers import finish_runs, retrain_logger
from dense_nas.study.quiet import quiet_lightning
from dense_nas.study.trainer_config import trainer_kwargs

LAST = "last.ckpt"


@dataclass(frozen=True)
class RetrainResult:
    """What a retraining run gave.

    Attributes:
        trial: number of the trial whose architecture and recipe were retrained.
        arch_key: the architecture's canonical key.
        epochs: epochs of the schedule.
        resumed_from_epoch: epochs already done when this run started (0: from scratch).
        test_accuracy: accuracy on the test set (a fraction 0..1).
        checkpoint: the final ``last.ckpt``.
        precision: the Lightning precision it trained in.
    """

    trial: int
    arch_key: str
    epochs: int
    resumed_from_epoch: int
    test_accuracy: float
    checkpoint: Path
    precision: str

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as recorded on the study.

        Example:
            >>> done = RetrainResult(3, "k=8", 12, 0, 0.98, Path("last.ckpt"), "32-true")
            >>> done.to_dict()["checkpoint"]
            'last.ckpt'
        """
        return {**asdict(self), "checkpoint": str(self.checkpoint)}


def run_dir(out: Path, study_name: str) -> Path:
    """Where a study's retraining keeps its checkpoints.

    Example:
        >>> run_dir(Path("runs"), "demo").as_posix()
        'runs/retrain/demo'
    """
    return out / "retrain" / study_name


def _resume_point(last: Path, module: DenseNetModule) -> int:
    """Epochs done by ``last.ckpt`` (0 without one); refuse one of another run."""
    if not last.exists():
        return 0
    checkpoint = read_checkpoint(last)
    changed = differing_hparams(checkpoint, module.hparams)
    if changed:
        raise UserInputError(
            f"retrain: {last} belongs to another run ({', '.join(changed)} differ); "
            f"retrain the same trial with the same --epochs, or delete {last.parent} "
            "to start over"
        )
    # Saved at the end of each epoch, before Lightning counts it: "epoch" is its 0-based index.
    return int(checkpoint["epoch"]) + 1


def _trainer(
    directory: Path,
    epochs: int,
    accelerator: str,
    precision: str,
    verbose: bool,
    trainer_config: dict[str, Any],
    logger: Any,
) -> L.Trainer:
    """The retraining Trainer, with the study's ``--trainer-config`` options and callbacks."""
    user = trainer_kwargs(trainer_config)
    callbacks = user.pop("callbacks")
    options = {
        **speed_defaults(accelerator, precision),
        # Validation images are training images here: validating would measure nothing.
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        **user,
    }
    # One file, rewritten after every epoch (a version counter would add last-v1.ckpt).
    last = ModelCheckpoint(
        dirpath=directory, filename=LAST.removesuffix(".ckpt"), enable_version_counter=False
    )
    return L.Trainer(
        **options,
        accelerator=accelerator,
        devices=1,
        max_epochs=epochs,
        default_root_dir=directory,
        callbacks=[last, *callbacks],
        logger=logger,
        enable_progress_bar=verbose,
        enable_model_summary=verbose,
    )


def retrain(
    storage: str | None,
    study_name: str | None,
    *,
    epochs: int | None = None,
    trial: int | None = None,
    pick: str = "accuracy",
    max_params: int | None = None,
    out: Path = DEFAULT_OUT,
    accelerator: str = "auto",
    precision: str = "auto",
    compile: str = "auto",
    verbose: bool = False,
) -> RetrainResult:
    """Train the chosen trial's architecture from scratch on train + validation; test it.

    A user datamodule (``--data module:Name``) is rebuilt from the study's recorded
    import path and arguments; it trains on its ``train_dataloader`` and is measured on
    its ``test_dataloader`` (the split is the datamodule's own).

    Args:
        storage: the study's storage URL or journal path (``None``: SQLite in ``out``).
        study_name: the study; ``None``: the storage's only study.
        epochs: length of the schedule; ``None``: the trial's recipe's epochs. Step
            milestones keep their place in the schedule
            (:meth:`~dense_nas.model.recipe.TrainingConfig.with_epochs`).
        trial, pick, max_params: which trial (see :func:`dense_nas.results.loading.select_trial`).
        out: base directory; checkpoints go to ``<out>/retrain/<study>/``.
        accelerator: ``cpu``, ``gpu`` or ``auto`` (the GPU when one is visible).
        precision: Lightning precision; ``auto`` is ``bf16-mixed`` on a GPU and
            ``32-true`` on the CPU (:func:`~dense_nas.study.hardware.resolve_precision`).
        compile: ``auto`` (CUDA graphs on a GPU when the run repays the compile),
            ``on`` or ``off`` (:func:`~dense_nas.model.graphs.compile_mode`).
        verbose: show Lightning's progress bar and model summary.

    Returns:
        The test accuracy and where the checkpoint is; also recorded on the study.

    Raises:
        UserInputError: a missing or empty study, no such trial, a run directory that
            cannot be written, a ``last.ckpt`` of another architecture or recipe in it, or
            a datamodule without a ``test_dataloader``.
    """
    device = resolve_accelerator(accelerator)
    precision = resolve_precision(device, precision)  # bad input stops before any training
    check_compile_choice(compile)
    study, chosen = find_trial(
        storage, study_name, trial, pick=pick, max_params=max_params, out=out
    )
    arch, training = trial_arch(chosen), trial_training(chosen)
    if epochs is not None:
        training = training.with_epochs(epochs)  # a step schedule keeps its shape
    recorded = study_attrs(study)
    seed = recorded.get("seed", 0)
    directory = check_output_dir(run_dir(out, study.study_name), "out")
    data = recorded.get("data", "digits")
    datamodule = build_datamodule(
        data,
        recorded.get("data_dir"),
        recorded.get("data_args", {}),
        batch_size=training.batch_size,
        val_size=recorded.get("val_size"),
        seed=seed,
        full_train=True,
    )
    if not is_overridden("test_dataloader", datamodule, L.LightningDataModule):
        raise UserInputError(
            f"retrain: the study's datamodule {data!r} has no test_dataloader, so there is "
            "nothing to measure the retrained network on; define test_dataloader()"
        )
    steps = training_steps(datamodule, training.epochs) if device == "gpu" else None
    L.seed_everything(seed, verbose=False)  # before the module: its initial weights too
    module = DenseNetModule.from_candidate(
        arch, training, compile=compile_mode(compile, device, arch, steps)
    )
    done = _resume_point(directory / LAST, module)
    trainer_config = recorded.get("trainer_config", {})
    logs = trial_attrs(chosen).get("logs")
    logger = retrain_logger(logs, f"retrain-trial-{chosen.number}", trainer_config)
    with quiet_lightning(verbose):
        trainer = _trainer(
            directory, training.epochs, device, precision, verbose, trainer_config, logger
        )
        _fit(trainer, module, datamodule, directory / LAST if done else None)
        (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    finish_runs(logger)
    result = RetrainResult(
        trial=chosen.number,
        arch_key=arch.key,
        epochs=training.epochs,
        resumed_from_epoch=done,
        test_accuracy=float(metrics["test/acc"]),
        checkpoint=directory / LAST,
        precision=str(trainer.precision),
    )
    record_study(study, retrain=result.to_dict())
    return result


def _fit(
    trainer: L.Trainer,
    module: DenseNetModule,
    datamodule: L.LightningDataModule,
    resume: Path | None,
) -> None:
    try:
        with warnings.catch_warnings():
            # Expected when resuming: the directory holds the last.ckpt being resumed.
            warnings.filterwarnings("ignore", "Checkpoint directory .* is not empty")
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into sys.exit(1); the CLI says resume
            raise KeyboardInterrupt from None
        raise

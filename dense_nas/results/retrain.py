"""Retrain the best architectures from scratch, with several seeds, on the test set.

The paper's protocol: the search selects on a validation split held out of the training
data; the chosen architecture is then trained from scratch with its full recipe on
training *and* validation images, and only that model touches the test set. One seed
says little about a network when seeds move test accuracy by a few tenths of a per cent,
so :func:`retrain` trains each chosen trial (``trials``, or the ``top`` best
architectures) once per seed, ``workers`` runs at once, each in its own process
(:mod:`~dense_nas.results.retrain_workers`).

Every run applies the study's ``--trainer-config`` (its Trainer options, callbacks and
loggers), as every trial did, and logs with the loggers the study's trials logged with
(:func:`run_logs`). A run keeps its ``last.ckpt`` (written after every epoch)
in ``<out>/retrain/<study>/trial-<N>-seed-<S>-epochs-<E>/``; running it again resumes
from there. Every result is added to the study's ``retrains`` record
(:class:`~dense_nas.records.RetrainRecord`); ``retrain``, ``best`` and ``report`` show
each architecture's mean ± std over its seeds (:mod:`~dense_nas.results.retrained`).

Example:
    >>> results = retrain("sqlite:///runs/dense-nas.db", "demo", top=2, seeds=3)  # doctest: +SKIP
    >>> len(results), f"{results[0].test_accuracy:.2%}"  # doctest: +SKIP
    (6, '98.61%')
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.model_helpers import is_overridden

from dense_nas.data import build_datamodule
from dense_nas.errors import UserInputError
from dense_nas.model.graphs import check_compile_choice, compile_mode, training_steps
from dense_nas.model.module import DenseNetModule
from dense_nas.paths import check_output_dir
from dense_nas.records import (
    RetrainRecord,
    TrialLogs,
    record_study,
    study_attrs,
    trial_attrs,
)
from dense_nas.results.loading import (
    DEFAULT_OUT,
    differing_hparams,
    read_checkpoint,
    trial_arch,
    trial_training,
)
from dense_nas.results.selection import (
    best_architectures,
    check_pick,
    completed_trials,
    select_entry,
)
from dense_nas.study.hardware import resolve_accelerator, resolve_precision, speed_defaults
from dense_nas.study.lineage import LineageTrial, find_lineage_trial
from dense_nas.study.loggers import finished_logs, make_logger, prepare_reruns, rerun_logs
from dense_nas.study.quiet import quiet_lightning
from dense_nas.study.settings import MAX_SEED
from dense_nas.study.storage import open_study
from dense_nas.study.trainer_config import trainer_kwargs

LAST = "last.ckpt"
MAX_SEEDS = 100
"""The most seeds one ``retrain`` runs per trial."""


@dataclass(frozen=True)
class RetrainRun:
    """One run to make: a trial's architecture and recipe, trained with one seed.

    Example:
        >>> RetrainRun(trial=3, seed=1, epochs=30).name
        'trial-3-seed-1-epochs-30'
    """

    trial: int | str
    """The trial as ``--trial`` names it (``vK:N`` in a study's later versions)."""
    seed: int
    epochs: int

    @property
    def name(self) -> str:
        """The run's folder name (checkpoints) and log run name."""
        trial = str(self.trial).replace(":", "-")  # a file name on every system
        return f"trial-{trial}-seed-{self.seed}-epochs-{self.epochs}"


@dataclass(frozen=True)
class RetrainSettings:
    """What every run of one ``retrain`` shares: the study and the device, checked.

    Attributes:
        storage, study_name, out: where the study is (``study_name`` resolved).
        accelerator: ``cpu`` or ``gpu`` (resolved).
        precision: the Lightning precision (resolved).
        compile: ``auto``, ``on`` or ``off``.
        verbose: show Lightning's progress bar and model summary.
    """

    storage: str | None
    study_name: str
    out: Path
    accelerator: str
    precision: str
    compile: str
    verbose: bool


@dataclass(frozen=True)
class RetrainResult:
    """What a retraining run gave.

    Attributes:
        trial: number of the trial whose architecture and recipe were retrained.
        arch_key: the architecture's canonical key.
        seed: the run's seed.
        epochs: epochs of the schedule.
        resumed_from_epoch: epochs already done when this run started (0: from scratch).
        test_accuracy: accuracy on the test set (a fraction 0..1).
        checkpoint: the final ``last.ckpt``.
        precision: the Lightning precision it trained in.
        seconds: wall time of the run.
        finished: Unix time the run ended.
        logs: where it logged, one entry per logger (none: the study's trials logged
            nowhere).
    """

    trial: int | str
    arch_key: str
    seed: int
    epochs: int
    resumed_from_epoch: int
    test_accuracy: float
    checkpoint: Path
    precision: str
    seconds: float
    finished: float
    logs: list[TrialLogs]

    def to_record(self) -> RetrainRecord:
        """The run as recorded on the study.

        Example:
            >>> done = RetrainResult(3, "k=8", 0, 12, 0, 0.98, Path("last.ckpt"), "32-true",
            ...                      41.5, 1.7e9, [])
            >>> done.to_record()["checkpoint"]
            'last.ckpt'
        """
        return RetrainRecord(
            trial=self.trial,
            arch_key=self.arch_key,
            seed=self.seed,
            epochs=self.epochs,
            test_accuracy=self.test_accuracy,
            seconds=self.seconds,
            finished=self.finished,
            resumed_from_epoch=self.resumed_from_epoch,
            checkpoint=str(self.checkpoint),
            precision=self.precision,
            logs=self.logs,
        )


def run_dir(out: Path, study_name: str, run: RetrainRun) -> Path:
    """Where one run keeps its checkpoint.

    Example:
        >>> run_dir(Path("runs"), "demo", RetrainRun(3, 0, 30)).as_posix()
        'runs/retrain/demo/trial-3-seed-0-epochs-30'
    """
    return out / "retrain" / study_name / run.name


def run_logs(study: optuna.Study, out: Path, run: RetrainRun) -> list[TrialLogs]:
    """Where a run logs: with the loggers the study's latest logged trial used, as a run
    ``retrain-<run>`` (:func:`~dense_nas.study.loggers.rerun_logs`).

    csv and tensorboard runs go to ``<out>/logs/<study>/retrain-<run>/``, beside the
    trials' folders of a search with the same ``--out``; an MLflow run is nested under the study's parent run, a W&B run
    joins the study's project and group. None when no trial logged (``--logger none``).

    Example:
        >>> import optuna
        >>> study = optuna.create_study(study_name="demo")
        >>> study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={
        ...     "logs": {"logger": "csv", "location": "/runs/logs/demo/trial-0"}}))
        >>> (logs,) = run_logs(study, Path("/runs"), RetrainRun(0, 1, 2))
        >>> logs["logger"], Path(logs["location"]).as_posix()
        ('csv', '/runs/logs/demo/retrain-trial-0-seed-1-epochs-2')
    """
    logged = [t for t in study.get_trials(deepcopy=False) if "logs" in trial_attrs(t)]
    if not logged:
        return []
    directory = out / "logs" / study.study_name
    return rerun_logs(trial_attrs(logged[-1])["logs"], f"retrain-{run.name}", directory)


def _resume_point(last: Path, module: DenseNetModule) -> int:
    """Epochs done by ``last.ckpt`` (0 without one); refuse one of another run."""
    if not last.exists():
        return 0
    checkpoint = read_checkpoint(last)
    changed = differing_hparams(checkpoint, module.hparams)
    if changed:
        raise UserInputError(
            f"retrain: {last} belongs to another run ({', '.join(changed)} differ); "
            f"delete {last.parent} to start over"
        )
    # Saved at the end of each epoch, before Lightning counts it: "epoch" is its 0-based index.
    return int(checkpoint["epoch"]) + 1


def _trainer(
    directory: Path,
    epochs: int,
    settings: RetrainSettings,
    trainer_config: dict[str, Any],
    logger: Any,
) -> L.Trainer:
    """The retraining Trainer, with the study's ``--trainer-config`` options and callbacks."""
    user = trainer_kwargs(trainer_config)
    callbacks = user.pop("callbacks")
    options = {
        **speed_defaults(settings.accelerator, settings.precision),
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
        accelerator=settings.accelerator,
        devices=1,
        max_epochs=epochs,
        default_root_dir=directory,
        callbacks=[last, *callbacks],
        logger=logger,
        enable_progress_bar=settings.verbose,
        enable_model_summary=settings.verbose,
    )


def _datamodule(study: optuna.Study, batch_size: int, seed: int) -> L.LightningDataModule:
    """The study's data, training on train + validation; refuse one without a test set."""
    recorded = study_attrs(study)
    data = recorded.get("data", "digits")
    datamodule = build_datamodule(
        data,
        recorded.get("data_dir"),
        recorded.get("data_args", {}),
        batch_size=batch_size,
        val_size=recorded.get("val_size"),
        seed=seed,
        full_train=True,
    )
    if not is_overridden("test_dataloader", datamodule, L.LightningDataModule):
        raise UserInputError(
            f"retrain: the study's datamodule {data!r} has no test_dataloader, so there is "
            "nothing to measure the retrained network on; define test_dataloader()"
        )
    return datamodule


def train_run(settings: RetrainSettings, run: RetrainRun) -> RetrainResult:
    """Train one run from scratch (or from its ``last.ckpt``) and measure it on the test set.

    It records nothing: the one process that started the runs adds their results to the
    study (:func:`retrain`), so that runs in parallel cannot overwrite each other's.

    Raises:
        UserInputError: a ``last.ckpt`` of another architecture or recipe in the run's folder.
    """
    started = time.perf_counter()
    study = open_study(settings.storage, settings.study_name, settings.out)
    trial = find_lineage_trial(study, run.trial).trial
    arch, training = trial_arch(trial), trial_training(trial).with_epochs(run.epochs)
    datamodule = _datamodule(study, training.batch_size, run.seed)
    device = settings.accelerator
    steps = training_steps(datamodule, training.epochs) if device == "gpu" else None
    L.seed_everything(run.seed, verbose=False)  # before the module: its initial weights too
    module = DenseNetModule.from_candidate(
        arch, training, compile=compile_mode(settings.compile, device, arch, steps)
    )
    directory = run_dir(settings.out, settings.study_name, run)
    done = _resume_point(directory / LAST, module)
    logs = run_logs(study, settings.out, run)
    trainer_config = study_attrs(study).get("trainer_config", {})
    with quiet_lightning(settings.verbose):
        logger = make_logger(logs, trainer_config)
        trainer = _trainer(directory, training.epochs, settings, trainer_config, logger)
        _fit(trainer, module, datamodule, directory / LAST if done else None)
        (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    return RetrainResult(
        trial=run.trial,
        arch_key=arch.key,
        seed=run.seed,
        epochs=training.epochs,
        resumed_from_epoch=done,
        test_accuracy=float(metrics["test/acc"]),
        checkpoint=directory / LAST,
        precision=str(trainer.precision),
        seconds=round(time.perf_counter() - started, 3),
        finished=time.time(),
        logs=finished_logs(logs, logger),
    )


def _chosen_trials(
    study: optuna.Study,
    trials: Sequence[int | str],
    top: int | None,
    pick: str,
    max_params: int | None,
    max_latency_ms: float | None = None,
) -> list[LineageTrial]:
    """The trials to retrain: the numbered ones, the ``top`` best architectures, or the
    one ``pick`` chooses."""
    if trials and top is not None:
        raise UserInputError(
            "--top takes the best trials itself; give --top or --trial, not both", param="top"
        )
    if top is None:
        if not trials:
            return [
                select_entry(study, pick=pick, max_params=max_params, max_latency_ms=max_latency_ms)
            ]
        twice = sorted({n for n in trials if list(trials).count(n) > 1})
        if twice:
            raise UserInputError(f"trial {twice[0]} is given twice; give it once", param="trial")
        return [select_entry(study, trial=number) for number in trials]
    if top < 1:
        raise UserInputError(f"must be at least 1, got {top}", param="top")
    if pick != "accuracy":
        raise UserInputError(
            "--top ranks by the study's metric; --pick chooses one trial: give one of them",
            param="pick",
        )
    completed_trials(study)  # none: the usual one line
    best = best_architectures(study, max_params, max_latency_ms)
    if top > len(best):
        limits = [f"{max_params} parameters"] if max_params is not None else []
        limits += [f"{max_latency_ms:g} ms"] if max_latency_ms is not None else []
        within = f" within {' and '.join(limits)}" if limits else ""
        raise UserInputError(
            f"{top} trials asked for, but study {study.study_name!r} has {len(best)} to "
            f"retrain (completed, one per architecture{within}); use --top {len(best)} or less",
            param="top",
        )
    return best[:top]


def plan(
    storage: str | None,
    study_name: str | None,
    *,
    trials: Sequence[int | str] = (),
    top: int | None = None,
    seeds: int = 1,
    seed: int | None = None,
    epochs: int | None = None,
    pick: str = "accuracy",
    max_params: int | None = None,
    max_latency_ms: float | None = None,
    out: Path = DEFAULT_OUT,
    accelerator: str = "auto",
    precision: str = "auto",
    compile: str = "auto",
    verbose: bool = False,
) -> tuple[optuna.Study, RetrainSettings, list[RetrainRun]]:
    """Check every input of :func:`retrain` and list its runs, before anything is trained.

    Raises:
        UserInputError: see :func:`retrain`.
    """
    if not 1 <= seeds <= MAX_SEEDS:
        raise UserInputError(f"must be 1 to {MAX_SEEDS}, got {seeds}", param="seeds")
    device = resolve_accelerator(accelerator)
    precision = resolve_precision(device, precision)
    check_compile_choice(compile)
    check_pick(pick)  # bad input stops before the storage is opened (or created)
    study = open_study(storage, study_name, out)
    chosen = _chosen_trials(study, trials, top, pick, max_params, max_latency_ms)
    base = study_attrs(study).get("seed", 0) if seed is None else seed
    if not 0 <= base <= MAX_SEED - (seeds - 1):
        raise UserInputError(
            f"must be 0 to {MAX_SEED - (seeds - 1)} (--seeds {seeds}), got {base}", param="seed"
        )
    runs = [
        RetrainRun(
            entry.name,
            base + i,
            trial_training(entry.trial).epochs if epochs is None else epochs,
        )
        for entry in chosen
        for i in range(seeds)
    ]
    for run in runs:
        check_output_dir(run_dir(out, study.study_name, run), "out")
    _datamodule(study, trial_training(chosen[0].trial).batch_size, base)  # it has a test set
    prepare_reruns(run_logs(study, out, runs[0]))  # the packages are installed here too
    settings = RetrainSettings(storage, study.study_name, out, device, precision, compile, verbose)
    return study, settings, runs


def retrain(
    storage: str | None,
    study_name: str | None,
    *,
    trials: Sequence[int | str] = (),
    top: int | None = None,
    seeds: int = 1,
    seed: int | None = None,
    workers: int = 1,
    threads: int = 0,
    epochs: int | None = None,
    pick: str = "accuracy",
    max_params: int | None = None,
    max_latency_ms: float | None = None,
    out: Path = DEFAULT_OUT,
    accelerator: str = "auto",
    precision: str = "auto",
    compile: str = "auto",
    verbose: bool = False,
    on_result: Callable[[RetrainResult], None] | None = None,
) -> list[RetrainResult]:
    """Train chosen trials' architectures from scratch on train + validation, once per
    seed, and measure each on the test set.

    A user datamodule (``--data module:Name``) is rebuilt from the study's recorded
    import path and arguments; it trains on its ``train_dataloader`` and is measured on
    its ``test_dataloader`` (the split is the datamodule's own).

    Args:
        storage: the study's storage URL or journal path (``None``: SQLite in ``out``).
        study_name: the study; ``None``: the storage's only study.
        trials: the trial numbers to retrain (each COMPLETE).
        top: retrain the ``top`` best architectures instead
            (:func:`~dense_nas.results.selection.best_architectures`).
        seeds: runs per trial, 1 to 100: seed ``i`` is ``seed + i``.
        seed: the first seed; ``None``: the study's seed.
        workers: runs at once, each in its own process (1: in this process). On the CPU
            they share the cores, on GPUs they take the visible GPUs in turn
            (:mod:`~dense_nas.results.retrain_workers`).
        threads: torch threads per run on the CPU; 0: the cores shared out among
            ``workers`` (in this process, with one worker: torch's own choice).
        epochs: length of the schedule; ``None``: each trial's recipe's epochs. Step
            milestones keep their place in the schedule
            (:meth:`~dense_nas.model.recipe.TrainingConfig.with_epochs`).
        pick, max_params, max_latency_ms: without ``trials`` and ``top``, which one trial
            (see :func:`~dense_nas.results.selection.select_trial`); ``max_params`` and
            ``max_latency_ms`` also limit ``top``.
        out: base directory; checkpoints go to ``<out>/retrain/<study>/<run>/``.
        accelerator: ``cpu``, ``gpu`` or ``auto`` (the GPU when one is visible).
        precision: Lightning precision; ``auto`` is ``bf16-mixed`` on a GPU and
            ``32-true`` on the CPU (:func:`~dense_nas.study.hardware.resolve_precision`).
        compile: ``auto`` (CUDA graphs on a GPU when the run repays the compile),
            ``on`` or ``off`` (:func:`~dense_nas.model.graphs.compile_mode`).
        verbose: show Lightning's progress bar and model summary.
        on_result: called with each result as its run ends (after it is recorded).

    Returns:
        Each run's result, in the order they ended; each is added to the study's
        ``retrains`` as it ends.

    Raises:
        UserInputError: before anything is trained or stored: a missing or empty study,
            no such trial (or one given twice), ``top`` with ``trials``, ``top`` below 1
            or above the architectures there are, ``seeds`` outside 1 to 100, a seed
            outside 0 to 2**32 - 1, bad device
            settings, a run directory that cannot be written, or a datamodule without a
            ``test_dataloader``. While running: a ``last.ckpt`` of another architecture
            or recipe in a run's folder.
    """
    from dense_nas.results.retrain_workers import run_all

    if workers < 1:
        raise UserInputError(f"must be at least 1, got {workers}", param="workers")
    if threads < 0:
        raise UserInputError(
            f"must be 0 (cores shared out) or more, got {threads}", param="threads"
        )
    study, settings, runs = plan(
        storage,
        study_name,
        trials=trials,
        top=top,
        seeds=seeds,
        seed=seed,
        epochs=epochs,
        pick=pick,
        max_params=max_params,
        max_latency_ms=max_latency_ms,
        out=out,
        accelerator=accelerator,
        precision=precision,
        compile=compile,
        verbose=verbose,
    )
    results: list[RetrainResult] = []
    with contextlib.closing(run_all(settings, runs, workers, threads)) as finished:
        for result in finished:  # closing: an error here stops the workers too
            _add_record(study, result)
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def _add_record(study: optuna.Study, result: RetrainResult) -> None:
    """Append a run to the study's ``retrains``, read afresh: another retrain command on
    the same study may have added its own meanwhile."""
    earlier = study_attrs(study).get("retrains", [])
    record_study(study, retrains=[*earlier, result.to_record()])


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

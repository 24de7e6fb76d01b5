"""``search()``: create or resume an Optuna study and run its trials.

Data flows one way: a worker asks the study for a trial, the space samples a candidate,
constraints are checked with the cost model (a violation is pruned before any training),
a candidate already trained is answered from that trial, and otherwise a trial process
trains it, reporting validation accuracy every epoch; the worker reports it to Optuna,
decides pruning, and tells the study the outcome.

Example:
    >>> study = search(n_trials=2, epochs=1, out=tmp_dir)  # doctest: +SKIP
    >>> study.best_value > 0.5  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna

from dense_nas.space import SearchSpace
from dense_nas.study._open import prepare
from dense_nas.study._workers import run_workers
from dense_nas.study.budget import finished_and_running
from dense_nas.study.coordination.slots import SamplerSlot, sampler_seed
from dense_nas.study.events import EchoLines, SearchObserver
from dense_nas.study.samplers import make_sampler
from dense_nas.study.settings import SearchSettings
from dense_nas.study.storage import storage_url

Echo = Callable[[str], None]


def search(
    space: str | SearchSpace = "digits-tiny",
    data: str | Callable[..., Any] = "digits",
    data_dir: str | Path | None = None,
    val_size: int | float | None = None,
    n_trials: int = 24,
    timeout: float | None = None,
    epochs: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    sampler: str = "tpe",
    pruner: str = "hyperband",
    objective: str = "accuracy",
    max_params: int | None = None,
    accelerator: str = "auto",
    precision: str = "auto",
    devices: int = 1,
    workers: int = 1,
    seed: int = 0,
    out: str | Path = "dense-nas-runs",
    heartbeat: float = 30.0,
    retries: int = 2,
    threads: int = 0,
    compile: str = "auto",
    verbose: bool = False,
    logger: str = "csv",
    mlflow_uri: str | None = None,
    trainer_config: str | Path | Mapping[str, Any] | None = None,
    echo: Echo | None = None,
    data_args: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """Run (or resume) a study until it holds ``n_trials`` finished trials.

    The budget counts COMPLETE, PRUNED and FAILED trials, so a study whose every trial
    fails still ends. A FAILED try that is retried with the same parameters does not
    count: its process died of a signal or ran out of memory, or its worker went silent
    for ``heartbeat`` seconds (each up to ``retries`` times, after which the last failed
    try counts), or Ctrl-C stopped it. A trial that raises in training (a NaN loss, a bug)
    fails once and counts. A trial another machine made surplus does not count. Running
    the same call again resumes the study. A storage that cannot be written (a full disk)
    raises :class:`~dense_nas.errors.StorageError`.

    Args:
        space: built-in space name, YAML path, ``module:Class``, plugin name, or a
            :class:`~dense_nas.space.SearchSpace`.
        data: a built-in dataset (see :data:`dense_nas.data.DATASETS`), a plugin's
            datamodule name (entry-point group ``dense_nas.datamodules``), or your own
            ``LightningDataModule``: ``"package.module:Name"``, or the class (or a
            function returning one) itself, recorded by its import path. Search
            selects on its ``val_dataloader``; it needs a ``num_classes`` attribute.
        data_dir: where the built-in dataset's files are.
        val_size: built-in datasets: validation images held out of the training set,
            a count or a fraction (``None``: the dataset's default, see
            :func:`~dense_nas.data.make_datamodule`). Fixed for the study's life.
        n_trials: total finished trials the study should reach.
        timeout: stop starting new trials after this many seconds.
        epochs: epochs per trial; ``None`` uses the space's training ``epochs``. A step
            schedule keeps its shape (:meth:`~dense_nas.model.recipe.TrainingConfig.with_epochs`).
        storage: Optuna storage URL or journal file; default SQLite in ``out``.
        study_name: default ``"<space>-<data>"``; checkpoint files are named by it, so
            at most 128 bytes, with no ``/``, ``\\`` or control characters.
        sampler: tpe, random, cmaes, gp, nsga2 or qmc (seeded with ``seed``).
        pruner: hyperband, asha (successive halving), median, percentile or none;
            resources are epochs.
        objective: ``accuracy``, ``accuracy,params`` or ``accuracy,macs``.
        max_params: extra constraint on top of the space's own.
        accelerator: cpu, gpu or auto.
        precision: Lightning precision of each trial's training; ``auto`` is
            ``bf16-mixed`` on a GPU and ``32-true`` on the CPU (see
            :func:`~dense_nas.study.hardware.resolve_precision`). Each trial records it.
        devices: devices per trial; more than one trains with DDP.
        workers: trials run at once on this machine.
        seed: base of each trial's training seed, and the sampler seed of the first
            command on the study; a command sharing the study with others samples with
            ``seed + slot`` (see :mod:`dense_nas.study.slots`).
        out: directory for the default storage, checkpoints and logs; created when
            missing, and refused when it cannot be written.
        heartbeat: seconds of silence after which a RUNNING trial counts as dead
            (finite, at most a day).
        retries: how often a trial whose process died of a signal or ran out of memory
            (or whose worker went silent) is tried again with the same parameters, 0 to 100.
        threads: torch threads per trial process on the CPU; 0: the cores shared out
            among workers and devices.
        compile: ``auto`` (CUDA graphs on a GPU for trials long enough to repay the
            compile, see :func:`~dense_nas.model.graphs.compile_mode`), ``on`` or ``off``.
            Each trial records ``compiled``.
        verbose: show Lightning's own output.
        logger: each trial's Lightning logger: ``csv`` (needs nothing extra),
            ``tensorboard``, ``mlflow`` or ``none`` (see :mod:`dense_nas.study.loggers`).
        mlflow_uri: MLflow tracking URI (default: a local store under ``out/mlruns``).
        trainer_config: a LightningCLI-format YAML file (or its content) with Trainer
            options and callbacks for every trial and for ``retrain``; recorded on the
            study (see :mod:`dense_nas.study.trainer_config`).
        echo: called with a line per finished trial (``print`` in the CLI).
        data_args: your datamodule's keyword arguments, as plain values (strings,
            numbers, booleans, ``None``, lists and dicts of them): the study records
            them and every process rebuilds the datamodule with them.

    Returns:
        The ``optuna.Study``.
    """
    options = {name: value for name, value in locals().items() if name != "echo"}
    options["data_args"] = data_args or {}
    return run_search(SearchSettings(**options), EchoLines(echo) if echo else None)


def run_search(settings: SearchSettings, observer: SearchObserver | None = None) -> optuna.Study:
    """:func:`search` with its options as one :class:`~dense_nas.study.settings.SearchSettings`.

    Example:
        >>> run_search(SearchSettings(n_trials=2, epochs=1, out=tmp_dir))  # doctest: +SKIP
    """
    run = prepare(settings, observer or SearchObserver())
    with SamplerSlot(run.study, settings.heartbeat) as slot:
        seed = sampler_seed(settings.seed, slot.number)
        run.study.sampler = make_sampler(settings.sampler, seed, run.objective.multi)
        run.observer.begin(run.study)
        finished, running = finished_and_running(run.study.get_trials(deepcopy=False))
        where = storage_url(settings.storage, settings.out_dir)
        shared = f"; sampler seed {seed} (slot {slot.number}: another command shares the study)"
        run.observer.line(
            f"study {run.study.study_name!r} in {where}: "
            f"{finished} of {settings.n_trials} trials finished"
            + (f", {running} running elsewhere" if running else "")
            + (shared if slot.number else "")
        )
        for note in run.notes:
            run.observer.line(note)
        try:
            run_workers(run)
        finally:
            run.observer.close()
    return run.study

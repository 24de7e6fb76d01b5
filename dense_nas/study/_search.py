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

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dense_nas.errors import UserInputError
from dense_nas.model.arch import DenseNetConfig
from dense_nas.results.summary import trial_line
from dense_nas.space import (
    Candidate,
    Constraints,
    SearchSpace,
    Task,
    enqueue_seeds,
    find_duplicate,
    load_space,
    sample,
)
from dense_nas.study._runner import TrialProcess
from dense_nas.study.hardware import gpu_assignment, resolve_accelerator, resolve_precision
from dense_nas.study.heartbeats import COUNTS_ATTR, Heartbeat, fail_stale_trials, retry
from dense_nas.study.objectives import Objective, parse_objective
from dense_nas.study.samplers import make_pruner, make_sampler
from dense_nas.study.storage import make_storage, set_artifact_root, storage_url
from dense_nas.study.trial import TrialSpec

# Trials that use up the budget. A FAILED trial counts (a study whose every trial fails
# must still end), unless it was retried or was surplus: those carry counts=False.
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
Echo = Callable[[str], None]


@dataclass
class _Settings:
    """What every worker of one ``search()`` call shares."""

    study: optuna.Study
    space: SearchSpace
    task: Task
    objective: Objective
    data: str
    data_dir: str | None
    val_size: int | float | None
    n_trials: int
    epochs: int | None
    deadline: float
    accelerator: str
    precision: str
    devices: int
    seed: int
    out: Path
    heartbeat: float
    threads: int
    verbose: bool
    echo: Echo
    budget_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    runners: list[TrialProcess] = field(default_factory=list)
    #: each worker's CUDA_VISIBLE_DEVICES (GPU studies only)
    gpus: list[str] = field(default_factory=list)
    error: BaseException | None = None


def search(
    space: str | SearchSpace = "digits-tiny",
    data: str = "digits",
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
    threads: int = 0,
    verbose: bool = False,
    echo: Echo | None = None,
) -> optuna.Study:
    """Run (or resume) a study until it holds ``n_trials`` finished trials.

    Finished means COMPLETE or PRUNED; failed trials do not count, and a trial whose
    worker died (no heartbeat for ``heartbeat`` seconds) is marked FAILED and retried
    with the same parameters. Running the same call again resumes the study.

    Args:
        space: built-in space name, YAML path, ``module:Class``, plugin name, or a
            :class:`~dense_nas.space.SearchSpace`.
        data: dataset name (see :data:`dense_nas.data.DATASETS`).
        data_dir: where the dataset files are.
        val_size: validation images held out of the training set, a count or a
            fraction (``None``: the dataset's default, see
            :func:`~dense_nas.data.make_datamodule`). Fixed for the study's life.
        n_trials: total finished trials the study should reach.
        timeout: stop starting new trials after this many seconds.
        epochs: epochs per trial; ``None`` uses the space's training ``epochs``.
        storage: Optuna storage URL or journal file; default SQLite in ``out``.
        study_name: default ``"<space>-<data>"``.
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
        seed: sampler seed and base of each trial's training seed.
        out: directory for the default storage, checkpoints and logs.
        heartbeat: seconds of silence after which a RUNNING trial counts as dead.
        threads: torch threads per trial process on the CPU; 0: the cores shared out
            among workers and devices.
        verbose: show Lightning's own output.
        echo: called with a line per finished trial (``print`` in the CLI).

    Returns:
        The ``optuna.Study``.
    """
    settings = _prepare(**locals())
    finished, running = _finished_and_running(settings.study)
    settings.echo(
        f"study {settings.study.study_name!r} in {storage_url(storage, settings.out)}: "
        f"{finished} of {n_trials} trials finished"
        + (f", {running} running elsewhere" if running else "")
    )
    _run_workers(settings, workers)
    return settings.study


def _prepare(
    *,
    space: str | SearchSpace,
    data: str,
    data_dir: str | Path | None,
    val_size: int | float | None,
    n_trials: int,
    timeout: float | None,
    epochs: int | None,
    storage: str | None,
    study_name: str | None,
    sampler: str,
    pruner: str,
    objective: str,
    max_params: int | None,
    accelerator: str,
    precision: str,
    devices: int,
    workers: int,
    seed: int,
    out: str | Path,
    heartbeat: float,
    threads: int,
    verbose: bool,
    echo: Echo | None,
) -> _Settings:
    from dense_nas.data import make_datamodule

    for name, value in (("--trials", n_trials), ("--devices", devices), ("--workers", workers)):
        if value < 1:
            raise UserInputError(f"{name}: must be a positive integer, got {value}")
    out = Path(out)
    data_path = None if data_dir is None else str(Path(data_dir).resolve())
    chosen = load_space(space) if isinstance(space, (str, Path)) else space
    if max_params is not None:
        limits = chosen.constraints
        chosen.constraints = Constraints(
            max_params=min(max_params, limits.max_params or max_params),
            max_macs=limits.max_macs,
            max_activation_memory=limits.max_activation_memory,
        )
    parsed = parse_objective(objective)
    resolved = resolve_accelerator(accelerator)
    chosen_precision = resolve_precision(resolved, precision)
    gpus: list[str] = []
    if resolved == "gpu":
        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = gpu_assignment(workers, devices, torch.cuda.device_count(), visible)
    # checks the files and the split now: bad input exits 2 before anything is stored
    datamodule = make_datamodule(data, data_dir, seed=seed, val_size=val_size)
    if isinstance(val_size, int):
        datamodule.setup("fit")  # a count must leave training images: check it here
    task = Task(datamodule.num_classes, datamodule.in_channels, datamodule.image_size)
    chosen.check(task)
    name = study_name or f"{chosen.name}-{data}"
    study = optuna.create_study(
        study_name=name,
        storage=make_storage(storage, out),
        sampler=make_sampler(sampler, seed, multi_objective=parsed.multi),
        pruner=make_pruner(pruner, epochs or chosen.max_epochs),
        directions=parsed.directions,
        load_if_exists=True,
    )
    recorded = study.user_attrs.get("objective", parsed.name)
    if recorded != parsed.name or list(study.directions) != parsed.directions:
        raise UserInputError(
            f"--objective: study {name!r} was made with another objective "
            f"({recorded}); use --objective {recorded} or a new --study"
        )
    split = study.user_attrs.get("val_size", datamodule.val_size)
    if split != datamodule.val_size:  # trials on other validation images do not compare
        raise UserInputError(
            f"--val-size: study {name!r} validates on val size {split}; "
            f"use --val-size {split} or a new --study"
        )
    _describe(study, chosen, parsed, data, data_path, datamodule.val_size, seed, task, out)
    enqueue_seeds(study, chosen)
    return _Settings(
        study=study,
        space=chosen,
        task=task,
        objective=parsed,
        data=data,
        data_dir=data_path,
        val_size=datamodule.val_size,
        n_trials=n_trials,
        epochs=epochs,
        deadline=time.monotonic() + timeout if timeout else math.inf,
        accelerator=resolved,
        precision=chosen_precision,
        devices=devices,
        gpus=gpus,
        seed=seed,
        out=out,
        heartbeat=heartbeat,
        threads=threads,
        verbose=verbose,
        echo=echo or (lambda line: None),
    )


def _describe(
    study: optuna.Study,
    space: SearchSpace,
    objective: Objective,
    data: str,
    data_dir: str | None,
    val_size: int | float,
    seed: int,
    task: Task,
    out: Path,
) -> None:
    """Record on the study what later commands (best, load_best, retrain) need."""
    attrs = {
        "space": space.name,
        "data": data,
        "data_dir": data_dir,
        "val_size": val_size,
        "objective": objective.name,
        "seed": seed,
        "image_size": list(task.image_size),
    }
    for key, value in attrs.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    set_artifact_root(study, out / "artifacts")


def _run_workers(settings: _Settings, workers: int) -> None:
    done = threading.Semaphore(0)
    threads = [
        threading.Thread(
            target=_worker, args=(settings, index, workers, done), name=f"worker-{index}"
        )
        for index in range(workers)
    ]
    for thread in threads:
        thread.start()
    # Wait on a semaphore, not Thread.join: a Ctrl-C that interrupts join() can make
    # CPython (before 3.13) forget a thread that is still running, and exit under it.
    waiting = workers
    try:
        while waiting:
            if done.acquire(timeout=0.2):
                waiting -= 1
    except KeyboardInterrupt:
        settings.stop.set()
        for runner in settings.runners:
            runner.kill()  # the running trials end now and are recorded as interrupted
        for _ in range(waiting):
            done.acquire()
        raise
    finally:
        for thread in threads:
            thread.join()
    if settings.error is not None:
        raise settings.error


def _worker(settings: _Settings, index: int, workers: int, done: threading.Semaphore) -> None:
    # OpenMP threads that spin while waiting slow a loaded CPU down by orders of
    # magnitude (measured: 3 s instead of 40 ms a step); passive waiting costs nothing.
    env: dict[str, str] = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    threads = 0
    if settings.accelerator == "gpu":
        env["CUDA_VISIBLE_DEVICES"] = settings.gpus[index]
    else:
        share = (os.cpu_count() or 1) // (workers * settings.devices)
        threads = settings.threads or max(1, share)
    log = None if settings.verbose else settings.out / "logs" / f"worker-{index}.log"
    runner = TrialProcess(log, env)
    settings.runners.append(runner)
    try:
        while not settings.stop.is_set():
            trial = _next_trial(settings)
            if trial is None:
                return
            _run_trial(settings, runner, trial, threads)
    except BaseException as err:  # surfaced by the main thread
        settings.stop.set()
        settings.error = err
    finally:
        runner.close()
        done.release()


def _counted(study: optuna.Study, before: int | None = None) -> list[FrozenTrial]:
    """Trials that use up the budget (numbered below ``before``, when given)."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=BUDGET_STATES)
        if t.user_attrs.get(COUNTS_ATTR, True) and (before is None or t.number < before)
    ]


def _finished_and_running(study: optuna.Study) -> tuple[int, int]:
    trials = _counted(study)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return len(trials) - running, running


def _next_trial(settings: _Settings) -> optuna.Trial | None:
    """Ask for a trial while the budget allows; wait out RUNNING trials of dead workers."""
    study = settings.study
    while not settings.stop.is_set() and time.monotonic() < settings.deadline:
        with settings.budget_lock:
            fail_stale_trials(study, settings.heartbeat)
            finished, running = _finished_and_running(study)
            if finished + running < settings.n_trials:
                trial = study.ask()
                if not _surplus(settings, trial):
                    return trial
                continue
        if finished >= settings.n_trials or running == 0:
            return None
        # Budget held by RUNNING trials: they finish, or go stale and are retried.
        settings.stop.wait(min(5.0, settings.heartbeat / 4))
    return None


def _surplus(settings: _Settings, trial: optuna.Trial) -> bool:
    """Fail a trial that another machine's worker made redundant at the same moment.

    Workers on one machine share a lock; across machines the trial numbers decide:
    a trial is surplus when the trials numbered before it already fill the budget.
    """
    if len(_counted(settings.study, before=trial.number)) < settings.n_trials:
        return False
    reason = f"surplus: the study reached {settings.n_trials} trials as this one started"
    trial.set_user_attr("failure", reason)
    trial.set_user_attr(COUNTS_ATTR, False)
    settings.study.tell(trial, state=TrialState.FAIL)
    return True


def _run_trial(
    settings: _Settings, runner: TrialProcess, trial: optuna.Trial, threads: int
) -> None:
    study = settings.study
    started = time.perf_counter()
    with Heartbeat(study, trial, settings.heartbeat / 3):
        try:
            candidate = sample(settings.space, trial, settings.task)
        except optuna.TrialPruned:
            _tell(settings, trial, TrialState.PRUNED, None, started)
            return
        if settings.epochs is not None:
            candidate = Candidate(
                candidate.arch, candidate.training.replace(epochs=settings.epochs)
            )
        key = f"{candidate.arch.key}|{_training_key(candidate)}"
        for name, value in (
            ("arch", candidate.arch.to_dict()),
            ("training", candidate.training.to_dict()),
            ("arch_key", key),
        ):
            trial.set_user_attr(name, value)
        duplicate = find_duplicate(study, key)
        if duplicate is not None:
            _reuse(settings, trial, duplicate, started)
            return
        checkpoint = settings.out / "checkpoints" / f"{study.study_name}-trial-{trial.number}.ckpt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        spec = TrialSpec(
            number=trial.number,
            arch=candidate.arch.to_dict(),
            training=candidate.training.to_dict(),
            data=settings.data,
            data_dir=settings.data_dir,
            val_size=settings.val_size,
            seed=settings.seed,
            accelerator=settings.accelerator,  # resolved to cpu or gpu in _prepare
            devices=settings.devices,
            threads=threads,
            precision=settings.precision,
            checkpoint=str(checkpoint),
            verbose=settings.verbose,
        )
        decide = settings.objective.pruning_rule(study, trial, candidate.arch)
        result = runner.run(spec, decide, settings.out / "specs")
        _record(settings, trial, candidate.arch, result, started)


def _training_key(candidate: Candidate) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(candidate.training.to_dict().items()))


def _reuse(
    settings: _Settings, trial: optuna.Trial, duplicate: FrozenTrial, started: float
) -> None:
    trial.set_user_attr("duplicate_of", duplicate.number)
    for name in ("epochs", "images_per_second", "precision"):
        if name in duplicate.user_attrs:
            trial.set_user_attr(name, duplicate.user_attrs[name])
    _tell(settings, trial, TrialState.COMPLETE, duplicate.values, started)


def _record(
    settings: _Settings,
    trial: optuna.Trial,
    arch: DenseNetConfig,
    result: dict[str, Any],
    started: float,
) -> None:
    if result["type"] == "error":
        if settings.stop.is_set():
            # Ctrl-C: not the trial's fault; the next run of the command trains it again.
            trial.set_user_attr("failure", "interrupted (Ctrl-C); retried on resume")
            retry(settings.study, trial)
        else:
            trial.set_user_attr("failure", result["reason"])
        _tell(settings, trial, TrialState.FAIL, None, started)
        return
    trial.set_user_attr("epochs", result["epochs"])
    trial.set_user_attr("precision", result["precision"])
    trial.set_user_attr("ranks", result["ranks"])
    trial.set_user_attr("images_per_second", round(result["images_per_second"], 1))
    trial.set_user_attr("step_seconds", round(result["step_seconds"], 3))
    if settings.objective.multi:
        trial.set_user_attr(
            "intermediate", {str(i + 1): v for i, v in enumerate(result["history"])}
        )
    if result["pruned"]:
        _tell(settings, trial, TrialState.PRUNED, None, started)
        return
    if result.get("checkpoint"):
        from optuna.artifacts import upload_artifact

        from dense_nas.study.storage import artifact_store

        path = result["checkpoint"]
        artifact_id = upload_artifact(
            artifact_store=artifact_store(settings.study), file_path=path, study_or_trial=trial
        )
        trial.set_user_attr("checkpoint", artifact_id)
        with contextlib.suppress(OSError):
            os.remove(path)
    values = settings.objective.values(float(result["value"]), trial.user_attrs)
    _tell(settings, trial, TrialState.COMPLETE, values, started)


def _tell(
    settings: _Settings,
    trial: optuna.Trial,
    state: TrialState,
    values: list[float] | None,
    started: float,
) -> None:
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
    settings.study.tell(trial, values if state == TrialState.COMPLETE else None, state=state)
    settings.echo(trial_line(settings.study, trial.number))

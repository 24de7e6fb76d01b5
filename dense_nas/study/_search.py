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
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from dense_nas.errors import StorageError, UserInputError
from dense_nas.paths import check_output_dir
from dense_nas.records import (
    EpochMessage,
    EpochProgress,
    ErrorMessage,
    ResultMessage,
    WorkerInfo,
    record_study,
    record_trial,
    study_attrs,
    trial_attrs,
)
from dense_nas.results.summary import describe_arch, trial_line
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
from dense_nas.study.budget import counted_trials, finished_and_running
from dense_nas.study.events import EchoLines, SearchObserver
from dense_nas.study.hardware import gpu_assignment, resolve_accelerator, resolve_precision
from dense_nas.study.heartbeats import (
    Heartbeat,
    may_retry,
    retry,
    retry_note,
    retry_silent_trials,
)
from dense_nas.study.objectives import Objective, parse_objective
from dense_nas.study.samplers import make_pruner, make_sampler
from dense_nas.study.settings import SearchSettings
from dense_nas.study.storage import make_storage, set_artifact_root, storage_url
from dense_nas.study.trial import TrialSpec

Echo = Callable[[str], None]

STORAGE_FAILURES = (OSError, StorageInternalError, SQLAlchemyError)
"""What a failed storage write raises: a journal append (OSError, e.g. ENOSPC) or an RDB
commit ("database or disk is full", a lost server)."""

RETRIED_KINDS = ("signal", "out-of-memory")
"""Trial process failures that are not the trial's own fault: retried up to ``retries``."""


@dataclass
class _Run:
    """One ``search()`` call as its workers share it: the settings, resolved, and the state."""

    settings: SearchSettings
    study: optuna.Study
    space: SearchSpace
    task: Task
    objective: Objective
    data_dir: str | None
    val_size: int | float
    deadline: float
    accelerator: str
    precision: str
    observer: SearchObserver
    budget_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    runners: list[TrialProcess] = field(default_factory=list)
    #: each worker's CUDA_VISIBLE_DEVICES (GPU studies only)
    gpus: list[str] = field(default_factory=list)
    error: BaseException | None = None
    #: set by Ctrl-C: the trials then in flight failed because of it
    interrupted: bool = False


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
    retries: int = 2,
    threads: int = 0,
    verbose: bool = False,
    echo: Echo | None = None,
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
        data: dataset name (see :data:`dense_nas.data.DATASETS`).
        data_dir: where the dataset files are.
        val_size: validation images held out of the training set, a count or a
            fraction (``None``: the dataset's default, see
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
        seed: sampler seed and base of each trial's training seed.
        out: directory for the default storage, checkpoints and logs; created when
            missing, and refused when it cannot be written.
        heartbeat: seconds of silence after which a RUNNING trial counts as dead
            (finite, at most a day).
        retries: how often a trial whose process died of a signal or ran out of memory
            (or whose worker went silent) is tried again with the same parameters, 0 to 100.
        threads: torch threads per trial process on the CPU; 0: the cores shared out
            among workers and devices.
        verbose: show Lightning's own output.
        echo: called with a line per finished trial (``print`` in the CLI).

    Returns:
        The ``optuna.Study``.
    """
    options = {name: value for name, value in locals().items() if name != "echo"}
    return run_search(SearchSettings(**options), EchoLines(echo) if echo else None)


def run_search(settings: SearchSettings, observer: SearchObserver | None = None) -> optuna.Study:
    """:func:`search` with its options as one :class:`~dense_nas.study.settings.SearchSettings`.

    Example:
        >>> run_search(SearchSettings(n_trials=2, epochs=1, out=tmp_dir))  # doctest: +SKIP
    """
    run = _prepare(settings, observer or SearchObserver())
    run.observer.begin(run.study)
    finished, running = finished_and_running(run.study.get_trials(deepcopy=False))
    run.observer.line(
        f"study {run.study.study_name!r} in {storage_url(settings.storage, settings.out_dir)}: "
        f"{finished} of {settings.n_trials} trials finished"
        + (f", {running} running elsewhere" if running else "")
    )
    try:
        _run_workers(run)
    finally:
        run.observer.close()
    return run.study


def _prepare(settings: SearchSettings, observer: SearchObserver) -> _Run:
    from dense_nas.data import make_datamodule

    s = settings
    check_output_dir(s.out_dir, "out")  # checkpoints and logs go there: refuse a bad one now
    data_path = None if s.data_dir is None else str(Path(s.data_dir).resolve())
    chosen = load_space(s.space) if isinstance(s.space, (str, Path)) else s.space
    max_params = s.max_params
    if max_params is not None:
        limits = chosen.constraints
        chosen.constraints = Constraints(
            max_params=min(max_params, limits.max_params or max_params),
            max_macs=limits.max_macs,
            max_activation_memory=limits.max_activation_memory,
        )
    parsed = parse_objective(s.objective)
    resolved = resolve_accelerator(s.accelerator)
    chosen_precision = resolve_precision(resolved, s.precision)
    gpus: list[str] = []
    if resolved == "gpu":
        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = gpu_assignment(s.workers, s.devices, torch.cuda.device_count(), visible)
    # checks the files and the split now: bad input exits 2 before anything is stored
    datamodule = make_datamodule(s.data, s.data_dir, seed=s.seed, val_size=s.val_size)
    if isinstance(s.val_size, int):
        datamodule.setup("fit")  # a count must leave training images: check it here
    task = Task.from_datamodule(datamodule)
    chosen.check(task)
    name = s.study_name or f"{chosen.name}-{s.data}"
    with _storage_writes(s):
        study = _open_study(s, name, chosen, parsed, datamodule.val_size, data_path, task)
    return _Run(
        settings=s,
        study=study,
        space=chosen,
        task=task,
        objective=parsed,
        data_dir=data_path,
        val_size=datamodule.val_size,
        deadline=time.monotonic() + s.timeout if s.timeout else math.inf,
        accelerator=resolved,
        precision=chosen_precision,
        gpus=gpus,
        observer=observer,
    )


def _open_study(
    s: SearchSettings,
    name: str,
    chosen: SearchSpace,
    parsed: Objective,
    val_size: int | float,
    data_path: str | None,
    task: Task,
) -> optuna.Study:
    """Create or load the study, check it is the same search, and record this one's settings."""
    study = optuna.create_study(
        study_name=name,
        storage=make_storage(s.storage, s.out_dir),
        sampler=make_sampler(s.sampler, s.seed, multi_objective=parsed.multi),
        pruner=make_pruner(s.pruner, s.epochs or chosen.max_epochs),
        directions=parsed.directions,
        load_if_exists=True,
    )
    recorded = study_attrs(study).get("objective", parsed.name)
    if recorded != parsed.name or list(study.directions) != parsed.directions:
        raise UserInputError(
            f"study {name!r} was made with another objective "
            f"({recorded}); use --objective {recorded} or a new --study",
            param="objective",
        )
    split = study_attrs(study).get("val_size", val_size)
    if split != val_size:  # trials on other validation images do not compare
        raise UserInputError(
            f"study {name!r} validates on val size {split}; "
            f"use --val-size {split} or a new --study",
            param="val_size",
        )
    record_study(
        study,
        overwrite=False,
        space=chosen.name,
        data=s.data,
        data_dir=data_path,
        val_size=val_size,
        objective=parsed.name,
        seed=s.seed,
        image_size=list(task.image_size),
    )
    record_study(study, n_trials=s.n_trials)  # the budget this command goes for
    set_artifact_root(study, s.out_dir / "artifacts")
    enqueue_seeds(study, chosen)
    return study


@contextlib.contextmanager
def _storage_writes(settings: SearchSettings) -> Iterator[None]:
    """Turn a failed storage write into one :class:`StorageError` line (exit 1)."""
    try:
        yield
    except STORAGE_FAILURES as err:
        raise _storage_error(settings, err) from err


def _storage_error(settings: SearchSettings, err: BaseException) -> StorageError:
    root = err
    while root.__cause__ is not None:  # Optuna wraps the database's own error
        root = root.__cause__
    reason = (str(root) or type(root).__name__).splitlines()[0]
    where = settings.storage or f"the SQLite file in {settings.out}"
    return StorageError(
        f"cannot write the study to {where} ({reason}); free space or bring the storage "
        "back, then run the same command again to resume"
    )


def _run_workers(run: _Run) -> None:
    workers = run.settings.workers
    done = threading.Semaphore(0)
    threads = [
        threading.Thread(target=_worker, args=(run, index, done), name=f"worker-{index}")
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
        run.interrupted = True
        run.stop.set()
        for runner in run.runners:
            runner.kill()  # the running trials end now and are recorded as interrupted
        for _ in range(waiting):
            done.acquire()
        raise
    finally:
        for thread in threads:
            thread.join()
    if run.error is not None:
        raise run.error


def _worker(run: _Run, index: int, done: threading.Semaphore) -> None:
    s = run.settings
    # OpenMP threads that spin while waiting slow a loaded CPU down by orders of
    # magnitude (measured: 3 s instead of 40 ms a step); passive waiting costs nothing.
    env: dict[str, str] = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    threads = 0
    if run.accelerator == "gpu":
        env["CUDA_VISIBLE_DEVICES"] = run.gpus[index]
    else:
        share = (os.cpu_count() or 1) // (s.workers * s.devices)
        threads = s.threads or max(1, share)
    log = None if s.verbose else s.out_dir / "logs" / f"worker-{index}.log"
    runner = TrialProcess(log, env)
    run.runners.append(runner)
    try:
        while not run.stop.is_set():
            trial = _next_trial(run)
            if trial is None:
                return
            _run_trial(run, runner, trial, threads, index)
    except STORAGE_FAILURES as err:  # surfaced by the main thread as one line
        run.stop.set()
        run.error = _storage_error(s, err)
    except BaseException as err:  # surfaced by the main thread
        run.stop.set()
        run.error = err
    finally:
        runner.close()
        done.release()


def _next_trial(run: _Run) -> optuna.Trial | None:
    """Ask for a trial while the budget allows; wait out RUNNING trials of dead workers."""
    study, s = run.study, run.settings
    while not run.stop.is_set() and time.monotonic() < run.deadline:
        with run.budget_lock:
            retry_silent_trials(study, s.heartbeat, s.retries)
            finished, running = finished_and_running(study.get_trials(deepcopy=False))
            if finished + running < s.n_trials:
                trial = study.ask()
                if not _surplus(run, trial):
                    return trial
                continue
        if finished >= s.n_trials or running == 0:
            return None
        # Budget held by RUNNING trials: they finish, or go stale and are retried.
        run.stop.wait(min(5.0, s.heartbeat / 4))
    return None


def _surplus(run: _Run, trial: optuna.Trial) -> bool:
    """Fail a trial that another machine's worker made redundant at the same moment.

    Workers on one machine share a lock; across machines the trial numbers decide:
    a trial is surplus when the trials numbered before it already fill the budget.
    """
    n_trials = run.settings.n_trials
    trials = run.study.get_trials(deepcopy=False)
    if len(counted_trials(trials, before=trial.number)) < n_trials:
        return False
    reason = f"surplus: the study reached {n_trials} trials as this one started"
    record_trial(trial, failure=reason, counts=False)
    run.study.tell(trial, state=TrialState.FAIL)
    return True


def _run_trial(
    run: _Run, runner: TrialProcess, trial: optuna.Trial, threads: int, worker: int
) -> None:
    name = f"{run.study.study_name}-trial-{trial.number}.ckpt"
    checkpoint = run.settings.out_dir / "checkpoints" / name
    try:
        _train_trial(run, runner, trial, threads, worker, checkpoint)
    except STORAGE_FAILURES:
        _give_up(run, trial, checkpoint)
        raise


def _give_up(run: _Run, trial: optuna.Trial, checkpoint: Path) -> None:
    """Best effort once the storage failed mid-trial: leave no RUNNING trial behind.

    Free what the trial wrote (on a full disk that may be what lets the next writes
    through), then record why, enqueue a retry (the trial is not at fault) and tell FAIL.
    When even that fails the trial stays RUNNING in the storage; its heartbeat stops with
    this process, so after ``--heartbeat`` seconds the next worker on the study (or this
    command run again) fails it and retries it, as for a killed worker.
    """
    reason = "the study's storage could not be written"
    with contextlib.suppress(OSError):
        checkpoint.unlink(missing_ok=True)
    try:
        record_trial(trial, failure=reason)
    except UpdateFinishedTrialError:
        return  # it was told before the storage failed: nothing is left RUNNING
    except STORAGE_FAILURES:
        pass  # try the rest all the same
    with contextlib.suppress(*STORAGE_FAILURES):
        retry(run.study, trial, reason, new_attempt=False)
    with contextlib.suppress(*STORAGE_FAILURES, UpdateFinishedTrialError):
        run.study.tell(trial, state=TrialState.FAIL)


def _train_trial(
    run: _Run,
    runner: TrialProcess,
    trial: optuna.Trial,
    threads: int,
    worker: int,
    checkpoint: Path,
) -> None:
    study, s = run.study, run.settings
    started = time.perf_counter()
    host = WorkerInfo(host=socket.gethostname(), pid=os.getpid(), index=worker, grace=s.heartbeat)
    record_trial(trial, worker=host)
    with Heartbeat(trial, s.heartbeat / 3):
        try:
            candidate = sample(run.space, trial, run.task)
        except optuna.TrialPruned:
            _tell(run, trial, TrialState.PRUNED, None, started)
            return
        if s.epochs is not None:
            candidate = Candidate(candidate.arch, candidate.training.with_epochs(s.epochs))
        arch, training = candidate.arch.to_dict(), candidate.training.to_dict()
        record_trial(trial, arch=arch, training=training, arch_key=candidate.key)
        duplicate = find_duplicate(study, candidate.key)
        if duplicate is not None:
            _reuse(run, trial, duplicate, started)
            return
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        spec = TrialSpec(
            number=trial.number,
            arch=arch,
            training=training,
            data=s.data,
            data_dir=run.data_dir,
            val_size=run.val_size,
            seed=s.seed,
            accelerator=run.accelerator,  # resolved to cpu or gpu in _prepare
            devices=s.devices,
            threads=threads,
            precision=run.precision,
            checkpoint=str(checkpoint),
            verbose=s.verbose,
        )
        decide = run.objective.pruning_rule(study, trial, candidate.arch)
        epochs = candidate.training.epochs
        run.observer.trial_started(trial.number, worker, describe_arch(arch), epochs)

        def watch(report: EpochMessage) -> None:
            progress = EpochProgress(
                epoch=report["epoch"],
                epochs=epochs,
                accuracy=report["value"],
                loss=report["loss"],
                images_per_second=round(report["images_per_second"], 1),
                at=time.time(),
            )
            record_trial(trial, progress=progress)  # any reader of the storage sees it
            run.observer.epoch(trial.number, worker, progress)

        result = runner.run(spec, decide, s.out_dir / "specs", watch)
        if result["type"] == "error":
            with contextlib.suppress(OSError):  # what a killed process had written of it
                checkpoint.unlink(missing_ok=True)
            _record_failure(run, trial, result, started)
        else:
            _record_result(run, trial, result, started)


def _reuse(run: _Run, trial: optuna.Trial, duplicate: FrozenTrial, started: float) -> None:
    found = trial_attrs(duplicate)
    record_trial(trial, duplicate_of=duplicate.number)
    if "epochs" in found:
        record_trial(trial, epochs=found["epochs"])
    if "images_per_second" in found:
        record_trial(trial, images_per_second=found["images_per_second"])
    if "precision" in found:
        record_trial(trial, precision=found["precision"])
    _tell(run, trial, TrialState.COMPLETE, duplicate.values, started)


def _record_failure(run: _Run, trial: optuna.Trial, error: ErrorMessage, started: float) -> None:
    """Fail the trial with its reason; retry it when that was not its own fault."""
    retries = run.settings.retries
    if run.interrupted:
        # Ctrl-C: not the trial's fault, nor a try; the next run of the command trains it.
        record_trial(trial, failure="interrupted (Ctrl-C); retried on resume")
        retry(run.study, trial, "interrupted (Ctrl-C)", new_attempt=False)
    elif error["kind"] in RETRIED_KINDS and may_retry(trial, retries):
        # Killed from outside or out of memory: the retry (enqueued first, so the budget
        # never sees a gap) takes this try's place in the budget.
        record_trial(trial, failure=error["reason"], retried=retry_note(trial, retries))
        retry(run.study, trial, error["reason"])
    else:
        record_trial(trial, failure=error["reason"])
    _tell(run, trial, TrialState.FAIL, None, started)


def _record_result(run: _Run, trial: optuna.Trial, result: ResultMessage, started: float) -> None:
    record_trial(
        trial,
        epochs=result["epochs"],
        precision=result["precision"],
        ranks=result["ranks"],
        images_per_second=round(result["images_per_second"], 1),
        step_seconds=round(result["step_seconds"], 3),
    )
    if run.objective.multi:
        record_trial(trial, intermediate={str(i + 1): v for i, v in enumerate(result["history"])})
    if result["pruned"]:
        _tell(run, trial, TrialState.PRUNED, None, started)
        return
    path = result["checkpoint"]
    if path:
        from optuna.artifacts import upload_artifact

        from dense_nas.study.storage import artifact_store

        store = artifact_store(run.study)
        try:
            artifact_id = upload_artifact(
                artifact_store=store, file_path=path, study_or_trial=trial
            )
        except OSError as err:  # a full disk: the store left no partial file
            with contextlib.suppress(OSError):
                os.remove(path)
            reason = f"checkpoint not uploaded: {err}"
            _record_failure(
                run, trial, {"type": "error", "kind": "error", "reason": reason}, started
            )
            return
        try:
            record_trial(trial, checkpoint=artifact_id)
        except BaseException:
            with contextlib.suppress(OSError):  # nothing will ever point to it
                store.remove(artifact_id)
            raise
        with contextlib.suppress(OSError):
            os.remove(path)
    values = run.objective.values(float(result["value"]), trial_attrs(trial))
    _tell(run, trial, TrialState.COMPLETE, values, started)


def _tell(
    run: _Run,
    trial: optuna.Trial,
    state: TrialState,
    values: list[float] | None,
    started: float,
) -> None:
    record_trial(trial, seconds=round(time.perf_counter() - started, 3))
    run.study.tell(trial, values if state == TrialState.COMPLETE else None, state=state)
    run.observer.line(trial_line(run.study, trial.number))

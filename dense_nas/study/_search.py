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
from typing import Any

import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError
from typing_extensions import Unpack

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
    find_running_twin,
    load_space,
    sample,
    space_version,
)
from dense_nas.study import cpu_wait
from dense_nas.study._runner import TrialProcess
from dense_nas.study.budget import counted_trials, finished_and_running
from dense_nas.study.events import EchoLines, SearchObserver
from dense_nas.study.hardware import (
    gpu_assignment,
    resolve_accelerator,
    resolve_precision,
    trials_per_gpu,
)
from dense_nas.study.heartbeats import (
    Heartbeat,
    may_retry,
    retry,
    retry_note,
    retry_silent_trials,
)
from dense_nas.study.lineage import GoingOn, go_on
from dense_nas.study.loggers import prepare_experiment, trial_logs
from dense_nas.study.memory_fit import fit_to_memory, trial_budget
from dense_nas.study.objectives import Objective, parse_objective
from dense_nas.study.prestart import trial_process_env, trial_threads
from dense_nas.study.samplers import make_pruner, make_sampler
from dense_nas.study.settings import SearchOptions, SearchSettings
from dense_nas.study.slots import SamplerSlot, sampler_seed
from dense_nas.study.storage import (
    make_storage,
    remember_storage,
    set_artifact_root,
    storage_url,
)
from dense_nas.study.trainer_config import load_trainer_config
from dense_nas.study.trial import TrialSpec
from dense_nas.study.warm_start import open_warm_start, start_from

Echo = Callable[[str], None]

STORAGE_FAILURES = (OSError, StorageInternalError, SQLAlchemyError)
"""What a failed storage write raises: a journal append (OSError, e.g. ENOSPC) or an RDB
commit ("database or disk is full", a lost server)."""

RETRIED_KINDS = ("signal", "out-of-memory")
"""Trial process failures that are not the trial's own fault: retried up to ``retries``."""


@dataclass(frozen=True)
class _Checked:
    """What :func:`_prepare` checked before anything is stored, for the study it opens."""

    name: str
    space: SearchSpace
    objective: Objective
    task: Task
    data: str
    data_args: dict[str, Any]
    data_dir: str | None  # resolved
    val_size: int | float | None  # the datamodule's own, as the study records it
    trainer_config: dict[str, Any] | None  # this command's --trainer-config, if any
    warm_start: optuna.Study | None  # the --warm-start study, if any


@dataclass
class _Run:
    """One ``search()`` call as its workers share it: the settings, resolved, and the state."""

    settings: SearchSettings
    study: optuna.Study
    space: SearchSpace
    task: Task
    objective: Objective
    data: str
    data_args: dict[str, Any]
    data_dir: str | None
    val_size: int | float | None
    deadline: float
    accelerator: str
    precision: str
    observer: SearchObserver
    #: the study's recorded ``--trainer-config`` (plain values)
    trainer_config: dict[str, Any] = field(default_factory=dict)
    budget_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    runners: list[TrialProcess] = field(default_factory=list)
    #: each worker's CUDA_VISIBLE_DEVICES (GPU studies only)
    gpus: list[str] = field(default_factory=list)
    #: bytes each worker's trial may plan for on its GPU (GPU studies only)
    memory_budgets: list[int] = field(default_factory=list)
    error: BaseException | None = None
    #: lines to print under the study's header (a changed space)
    notes: list[str] = field(default_factory=list)
    #: set by Ctrl-C: the trials then in flight failed because of it
    interrupted: bool = False
    #: finished trials of the study's earlier versions that ``study`` holds no copy of:
    #: they count toward ``--trials`` too (:mod:`~dense_nas.study.lineage`)
    counted_elsewhere: int = 0


def search(*, echo: Echo | None = None, **options: Unpack[SearchOptions]) -> optuna.Study:
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
        echo: called with a line per finished trial (``print`` in the CLI).
        **options: the search options, one keyword per
            :class:`~dense_nas.study.settings.SearchSettings` field (typed by
            :class:`~dense_nas.study.settings.SearchOptions`); what each means and its
            default: :func:`~dense_nas.study.settings.options_table`, the same text as
            ``dense-nas search --help``. Bad input raises
            :class:`~dense_nas.errors.UserInputError` before anything is stored.

    Returns:
        The ``optuna.Study``.
    """
    return run_search(SearchSettings(**options), EchoLines(echo) if echo else None)


def run_search(settings: SearchSettings, observer: SearchObserver | None = None) -> optuna.Study:
    """:func:`search` with its options as one :class:`~dense_nas.study.settings.SearchSettings`.

    Example:
        >>> run_search(SearchSettings(n_trials=2, epochs=1, out=tmp_dir))  # doctest: +SKIP
    """
    run = _prepare(settings, observer or SearchObserver())
    with SamplerSlot(run.study, settings.heartbeat) as slot:
        seed = sampler_seed(settings.seed, slot.number)
        run.study.sampler = make_sampler(settings.sampler, seed, run.objective.multi)
        run.observer.begin(run.study)
        finished, running = finished_and_running(run.study.get_trials(deepcopy=False))
        finished += run.counted_elsewhere
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
            _run_workers(run)
        finally:
            run.observer.close()
    return run.study


def _prepare(settings: SearchSettings, observer: SearchObserver) -> _Run:
    from dense_nas.data import DenseNetDataModule, build_datamodule, data_facts
    from dense_nas.data._user import default_study_label

    s = settings
    check_output_dir(s.out_dir, "out")  # checkpoints and logs go there: refuse a bad one now
    given_config = None if s.trainer_config is None else load_trainer_config(s.trainer_config)
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
    budgets: list[int] = []
    if resolved == "gpu":
        gpus, budgets = _share_gpus(s.workers, s.devices)
    # checks the files and the split now: bad input exits 2 before anything is stored
    data, data_args = s.data_name, dict(s.data_args)
    datamodule = build_datamodule(data, s.data_dir, data_args, seed=s.seed, val_size=s.val_size)
    val_size = datamodule.val_size if isinstance(datamodule, DenseNetDataModule) else None
    if isinstance(s.val_size, int):
        datamodule.setup("fit")  # a count must leave training images: check it here
    facts = data_facts(datamodule, data)  # a user datamodule's first batch is read here
    task = Task(facts.num_classes, facts.in_channels, facts.image_size, facts.augmented)
    chosen.check(task)
    name = s.study_name or f"{chosen.name}-{default_study_label(data)}"
    with _storage_writes(s):
        warm = _open_warm_start(s)
        checked = _Checked(
            name, chosen, parsed, task, data, data_args, data_path, val_size, given_config, warm
        )
        going, trainer_config = _open_study(s, checked)
    return _Run(
        settings=s,
        study=going.study,
        space=chosen,
        task=task,
        objective=parsed,
        data=data,
        data_args=data_args,
        data_dir=data_path,
        val_size=val_size,
        deadline=time.monotonic() + s.timeout if s.timeout else math.inf,
        accelerator=resolved,
        precision=chosen_precision,
        gpus=gpus,
        memory_budgets=budgets,
        observer=observer,
        trainer_config=trainer_config,
        notes=going.notes,
        counted_elsewhere=going.counted_elsewhere,
    )


def _open_study(s: SearchSettings, checked: _Checked) -> tuple[GoingOn, dict[str, Any]]:
    """Create or load the study, check it is the same search, and record this one's settings.

    Returns:
        Where the search goes on (the study's latest version, or a new one for a space
        it cannot hold, with the lines to print), and the trainer config its trials apply.
    """
    sampler = make_sampler(s.sampler, s.seed, multi_objective=checked.objective.multi)
    pruner = make_pruner(s.pruner, s.epochs or checked.space.max_epochs)  # both before any file
    storage = make_storage(s.storage, s.out_dir)
    study = optuna.create_study(
        study_name=checked.name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        directions=checked.objective.directions,
        load_if_exists=True,
    )
    remember_storage(study, storage)  # its versions live there too
    recorded = study_attrs(study).get("objective", checked.objective.name)
    if recorded != checked.objective.name or list(study.directions) != checked.objective.directions:
        raise UserInputError(
            f"study {checked.name!r} was made with another objective "
            f"({recorded}); use --objective {recorded} or a new --study",
            param="objective",
        )
    _check_same_data(study, checked.data, checked.data_args)
    split = study_attrs(study).get("val_size", checked.val_size)
    if split != checked.val_size:  # trials on other validation images do not compare
        raise UserInputError(
            f"study {checked.name!r} validates on val size {split}; "
            f"use --val-size {split} or a new --study",
            param="val_size",
        )
    version = space_version(checked.space, checked.task)
    going = go_on(study, checked.space, checked.task, version, sampler=sampler, pruner=pruner)
    study = going.study
    record_study(
        study,
        overwrite=False,
        data=checked.data,
        data_args=checked.data_args,
        data_dir=checked.data_dir,
        objective=checked.objective.name,
        seed=s.seed,
        image_size=list(checked.task.image_size),
    )
    if checked.val_size is not None:  # a user datamodule holds out its own validation data
        record_study(study, overwrite=False, val_size=checked.val_size)
    trainer_config = _study_trainer_config(study, checked.trainer_config)
    prepare_experiment(s.logger, s.out_dir, study.study_name, s.mlflow_uri)
    record_study(study, n_trials=s.n_trials)  # the budget this command goes for
    set_artifact_root(study, s.out_dir / "artifacts")
    if checked.warm_start is not None:  # its trials go first: enqueued before the seeds
        going.notes.extend(
            start_from(
                study,
                checked.warm_start,
                checked.space,
                checked.task,
                top=s.warm_start_top,
                storage=s.warm_start_storage,
            )
        )
    enqueue_seeds(study, checked.space)
    return going, trainer_config


def _open_warm_start(s: SearchSettings) -> optuna.Study | None:
    """The ``--warm-start`` study, opened before anything is stored (a wrong name: exit 2)."""
    if s.warm_start is None:
        return None
    storage = s.warm_start_storage or s.storage
    where = storage_url(storage, s.out_dir)
    return open_warm_start(s.warm_start, make_storage(storage, s.out_dir), where)


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
    if "database is locked" in reason:
        from dense_nas.study.storage import SQLITE_LOCK_TIMEOUT

        return StorageError(
            f"cannot write the study to {where}: another process has held its lock for "
            f"{SQLITE_LOCK_TIMEOUT:g} s (a command paused with Ctrl-Z or SIGSTOP holds it until "
            "it resumes); resume or stop that process, then run the same command again to "
            "resume (commands that may pause share a study best in a journal file or PostgreSQL)"
        )
    return StorageError(
        f"cannot write the study to {where} ({reason}); free space or bring the storage "
        "back, then run the same command again to resume"
    )


def _share_gpus(workers: int, devices: int) -> tuple[list[str], list[int]]:
    """Each worker's GPUs (:func:`~dense_nas.study.hardware.gpu_assignment`) and the bytes
    its trial may plan for: its GPUs' memory shared out among the workers on them."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = torch.cuda.device_count()
    gpus = gpu_assignment(workers, devices, count, visible)
    ids = gpu_assignment(count, 1, count, visible)  # torch's index of each visible id
    shares = trials_per_gpu(gpus)
    budgets = [
        min(
            trial_budget(torch.cuda.get_device_properties(ids.index(gpu)).total_memory, shares[gpu])
            for gpu in own.split(",")
        )
        for own in gpus
    ]
    return gpus, budgets


def _check_same_data(study: optuna.Study, data: str, data_args: dict[str, Any]) -> None:
    """Refuse to resume a study on other data: its trials would not compare."""
    recorded = study_attrs(study)
    if "data" not in recorded:  # a new study
        return
    was = (recorded["data"], recorded.get("data_args", {}))
    if was != (data, data_args):
        args = " ".join(f"--data-arg {key}={value}" for key, value in was[1].items())
        raise UserInputError(
            f"study {study.study_name!r} trains on {was[0]} {args}".rstrip()
            + "; pass the same data or a new --study",
            param="data",
        )


def _study_trainer_config(study: optuna.Study, given: dict[str, Any] | None) -> dict[str, Any]:
    """The trainer config every trial of the study applies: the one recorded when the
    study was made (a later command may leave ``--trainer-config`` out, not change it)."""
    recorded = study_attrs(study).get("trainer_config")
    if recorded is None:
        config = given or load_trainer_config(None)
        record_study(study, trainer_config=config)
        return config
    if given is not None and given != recorded:
        raise UserInputError(
            f"study {study.study_name!r} was made with another trainer config; leave "
            "--trainer-config out to apply the recorded one, or use a new --study",
            param="trainer_config",
        )
    return recorded


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
    threads = 0
    if run.accelerator == "gpu":
        env = {"CUDA_VISIBLE_DEVICES": run.gpus[index], cpu_wait.CHOICE_ENV: "passive"}
    else:
        threads = trial_threads(s.workers, s.devices, s.threads)
        env = trial_process_env(s.workers, s.devices, s.threads)
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
            finished += run.counted_elsewhere
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
    if len(counted_trials(trials, before=trial.number)) + run.counted_elsewhere < n_trials:
        return False
    reason = f"surplus: the study reached {n_trials} trials as this one started"
    record_trial(trial, failure=reason, counts=False)
    run.study.tell(trial, state=TrialState.FAIL)
    return True


def _run_trial(
    run: _Run, runner: TrialProcess, trial: optuna.Trial, threads: int, worker: int
) -> None:
    """Run one trial to its end; drop it if another worker ended it first.

    A worker that was paused (SIGSTOP, a suspended machine) for longer than the heartbeat
    grace finds its trial FAILED as silent and retried elsewhere: every write to it then
    fails, and the retry's result is the one that counts.
    """
    try:
        _run_own_trial(run, runner, trial, threads, worker)
    except UpdateFinishedTrialError:
        run.observer.line(
            f"trial {trial.number} was finished by another worker while this one was paused; "
            "its result is dropped"
        )


def _run_own_trial(
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
        except UserInputError as err:  # a space that breaks its contract: the command stops
            record_trial(trial, failure=str(err), counts=False)
            run.study.tell(trial, state=TrialState.FAIL)  # not left RUNNING
            raise
        if s.epochs is not None:
            candidate = Candidate(candidate.arch, candidate.training.with_epochs(s.epochs))
        if run.memory_budgets:  # several trials may share this GPU: fit the step to a share
            try:
                candidate = fit_to_memory(
                    trial, candidate, run.task.image_size, run.memory_budgets[worker], run.precision
                )
            except optuna.TrialPruned:
                _tell(run, trial, TrialState.PRUNED, None, started)
                return
        arch, training = candidate.arch.to_dict(), candidate.training.to_dict()
        record_trial(trial, arch=arch, training=training, arch_key=candidate.key)
        try:
            duplicate = find_duplicate(study, candidate.key) or _await_twin(run, trial)
        except _StoppedWaiting as stopped:
            record_trial(trial, failure=str(stopped))
            retry(
                study, trial, str(stopped), new_attempt=False
            )  # not its fault: the next run answers it
            _tell(run, trial, TrialState.FAIL, None, started)
            return
        if duplicate is not None:
            _reuse(run, trial, duplicate, started)
            return
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        spec = TrialSpec(
            number=trial.number,
            arch=arch,
            training=training,
            data=run.data,
            data_args=run.data_args,
            data_dir=run.data_dir,
            val_size=run.val_size,
            seed=s.seed,
            accelerator=run.accelerator,  # resolved to cpu or gpu in _prepare
            devices=s.devices,
            threads=threads,
            precision=run.precision,
            compile=s.compile,
            checkpoint=str(checkpoint),
            verbose=s.verbose,
            logs=trial_logs(s.logger, s.out_dir, study.study_name, trial.number, s.mlflow_uri),
            trainer_config=run.trainer_config,
        )
        if spec.logs is not None:
            record_trial(trial, logs=spec.logs)
        rule = run.objective.pruning_rule(study, trial, candidate.arch)
        epochs = candidate.training.epochs
        run.observer.trial_started(trial.number, worker, describe_arch(arch), epochs)
        taken = threading.Event()  # ended by another worker: stop training, drop the result

        def decide(epoch: int, accuracy: float) -> bool:
            if not taken.is_set():
                try:
                    return rule(epoch, accuracy)
                except UpdateFinishedTrialError:
                    taken.set()
            return True

        def watch(report: EpochMessage) -> None:
            if taken.is_set():
                return
            progress = EpochProgress(
                epoch=report["epoch"],
                epochs=epochs,
                accuracy=report["value"],
                loss=report["loss"],
                images_per_second=round(report["images_per_second"], 1),
                at=time.time(),
            )
            try:
                record_trial(trial, progress=progress)  # any reader of the storage sees it
            except UpdateFinishedTrialError:
                taken.set()
                return
            run.observer.epoch(trial.number, worker, progress)

        result = runner.run(spec, decide, s.out_dir / "specs", watch)
        try:
            if taken.is_set():
                raise UpdateFinishedTrialError(
                    f"trial {trial.number} was ended by another worker"
                ) from None
            if result["type"] == "result" and "logs" in result:
                record_trial(trial, logs=result["logs"])  # with the MLflow run id
            if result["type"] == "error":
                with contextlib.suppress(OSError):  # what a killed process had written of it
                    checkpoint.unlink(missing_ok=True)
                _record_failure(run, trial, result, started)
            else:
                _record_result(run, trial, result, started)
        except UpdateFinishedTrialError:
            with contextlib.suppress(OSError):
                checkpoint.unlink()  # the result is dropped: so is its checkpoint
            raise


def _stop_reason(run: _Run) -> str:
    if run.interrupted:
        return "interrupted (Ctrl-C); retried on resume"
    return "the command stopped (another worker failed); retried on resume"


class _StoppedWaiting(Exception):
    """Ctrl-C or the deadline ended a trial's wait for its twin; the message says which."""


_TWIN_POLL = 0.5
"""Seconds between looks at the twin a trial waits for."""


def _await_twin(run: _Run, trial: optuna.Trial) -> FrozenTrial | None:
    """Wait while another RUNNING trial trains this trial's candidate.

    Returns:
        The twin, once COMPLETE or PRUNED (its result is this trial's too), or ``None``
        when there is none or it failed: then this trial trains the candidate itself.

    Raises:
        _StoppedWaiting: Ctrl-C, or ``--timeout`` passed while waiting.
    """
    study, key = run.study, trial_attrs(trial)["arch_key"]
    waiting_for: int | None = None
    while True:
        twin = find_running_twin(study, trial.number, key)
        if twin is None:
            if waiting_for is not None:
                if run.stop.is_set():  # the twin ended by Ctrl-C: do not start training now
                    raise _StoppedWaiting(_stop_reason(run))
                record_trial(trial, waits_for=None)  # others may now wait for this one
            return None
        if twin.number != waiting_for:
            waiting_for = twin.number
            record_trial(trial, waits_for=waiting_for)
            run.observer.line(
                f"trial {trial.number} waits for trial {waiting_for}, "
                "which trains the same candidate"
            )
        if run.stop.is_set():
            raise _StoppedWaiting(_stop_reason(run))
        if time.monotonic() >= run.deadline:
            raise _StoppedWaiting(
                f"--timeout passed while it waited for trial {waiting_for}; retried on resume"
            )
        run.stop.wait(_TWIN_POLL)
        with run.budget_lock:  # a twin whose worker died is failed and retried here
            retry_silent_trials(study, run.settings.heartbeat, run.settings.retries)
        (latest,) = (t for t in study.get_trials(deepcopy=False) if t.number == waiting_for)
        if latest.state in (TrialState.COMPLETE, TrialState.PRUNED):
            return latest
        if latest.state == TrialState.FAIL and not run.stop.is_set():
            record_trial(trial, waits_for=None)  # failed or retried: train it here
            return None


def _reuse(run: _Run, trial: optuna.Trial, duplicate: FrozenTrial, started: float) -> None:
    """Answer the trial from one that trained the same candidate: its values, or pruned."""
    found = trial_attrs(duplicate)
    record_trial(trial, duplicate_of=duplicate.number)
    if "epochs" in found:
        record_trial(trial, epochs=found["epochs"])
    if "images_per_second" in found:
        record_trial(trial, images_per_second=found["images_per_second"])
    if "precision" in found:
        record_trial(trial, precision=found["precision"])
    _tell(run, trial, duplicate.state, duplicate.values, started)


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
        compiled=result["compiled"],
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
    try:
        run.study.tell(trial, values if state == TrialState.COMPLETE else None, state=state)
    except ValueError:  # Optuna's "Cannot tell a FAIL trial": another worker ended it
        if _is_running(run.study, trial.number):
            raise
        raise UpdateFinishedTrialError(
            f"trial {trial.number} was ended by another worker"
        ) from None
    run.observer.line(trial_line(run.study, trial.number))


def _is_running(study: optuna.Study, number: int) -> bool:
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return any(t.number == number for t in running)

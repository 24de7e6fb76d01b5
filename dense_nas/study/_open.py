"""Opening a study for ``search()``: check the input, then create or resume the study.

Everything the user gave is checked before anything is stored (:func:`prepare`): the
output folder, the space and its constraints, the objective, the sampler's and pruner's
settings, the latency target, the data (its files, its split, its first batch) and the
trainer config. Only then is the study created or loaded, checked to be the same search
(objective, sampler and pruner, data, validation split, a space Optuna can mix with its
trials, trainer config) and given this command's settings. A storage
that cannot be written becomes one :class:`~dense_nas.errors.StorageError` line
(:func:`storage_writes`).

Example:
    >>> from dense_nas.study import SearchSettings
    >>> error = storage_error(SearchSettings(out="runs"), OSError(28, "No space left on device"))
    >>> str(error).startswith("cannot write the study to the SQLite file in runs")
    True
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.exceptions import StorageInternalError
from sqlalchemy.exc import SQLAlchemyError

from dense_nas.errors import StorageError, UserInputError
from dense_nas.model.latency import Target
from dense_nas.paths import check_output_dir
from dense_nas.records import ChoiceRecord, LatencyTargetRecord, record_study, study_attrs
from dense_nas.space import (
    SearchSpace,
    Task,
    enqueue_seeds,
    load_space,
    space_version,
)
from dense_nas.study._run import Run
from dense_nas.study.events import SearchObserver
from dense_nas.study.hardware import (
    gpu_assignment,
    resolve_accelerator,
    resolve_precision,
    trials_per_gpu,
    typical_step_macs,
)
from dense_nas.study.lineage import GoingOn, go_on
from dense_nas.study.loggers import prepare_loggers
from dense_nas.study.memory_fit import available_memory, trial_budget
from dense_nas.study.objectives import Objective, parse_objective
from dense_nas.study.samplers import (
    Kind,
    check_args,
    choice_record,
    describe_choice,
    make_pruner,
    make_sampler,
)
from dense_nas.study.settings import SearchSettings
from dense_nas.study.storage import make_storage, remember_storage, set_artifact_root, storage_url
from dense_nas.study.trainer_config import load_trainer_config
from dense_nas.study.warm_start import open_warm_start, start_from

Limit = TypeVar("Limit", int, float)

STORAGE_FAILURES = (OSError, StorageInternalError, SQLAlchemyError)
"""What a failed storage write raises: a journal append (OSError, e.g. ENOSPC) or an RDB
commit ("database or disk is full", a lost server)."""


@dataclass(frozen=True)
class Checked:
    """What :func:`prepare` checked before anything is stored, for the study it opens."""

    name: str
    space: SearchSpace
    objective: Objective
    task: Task
    data: str
    data_args: dict[str, Any]
    data_dir: str | None  # resolved
    val_size: int | float | None  # the datamodule's own, as the study records it
    trainer_config: dict[str, Any] | None  # this command's --trainer-config, if any
    latency: Target | None  # where candidates' latency is measured, when the study needs it
    warm_start: optuna.Study | None  # the --warm-start study, if any


def prepare(settings: SearchSettings, observer: SearchObserver) -> Run:
    """Check every input, then open the study: bad input exits 2 with nothing stored.

    Returns:
        The run its workers share, with the accelerator, precision and GPUs resolved.
    """
    from dense_nas.data import DenseNetDataModule, build_datamodule, data_facts
    from dense_nas.data._user import default_study_label, is_builtin

    s = settings
    check_output_dir(s.out_dir, "out")  # checkpoints and logs go there: refuse a bad one now
    given_config = None if s.trainer_config is None else load_trainer_config(s.trainer_config)
    data_path = None if s.data_dir is None else str(Path(s.data_dir).resolve())
    chosen = load_space(s.space) if isinstance(s.space, (str, Path)) else s.space
    if s.max_params is not None or s.max_latency_ms is not None:
        chosen = _with_limits(chosen, s.max_params, s.max_latency_ms)
    parsed = parse_objective(s.objective)
    if isinstance(s.sampler, str):
        check_args("sampler", s.sampler, s.sampler_args)
    if isinstance(s.pruner, str):
        check_args("pruner", s.pruner, s.pruner_args, s.epochs or chosen.max_epochs)
    # checks the files and the split now: bad input exits 2 before anything is stored
    data, data_args = s.data_name, dict(s.data_args)
    datamodule = build_datamodule(data, s.data_dir, data_args, seed=s.seed, val_size=s.val_size)
    # a user's datamodule holds out its own split, even one built on DenseNetDataModule
    val_size = (
        datamodule.val_size
        if is_builtin(data) and isinstance(datamodule, DenseNetDataModule)
        else None
    )
    if isinstance(s.val_size, int):
        datamodule.setup("fit")  # a count must leave training images: check it here
    facts = data_facts(datamodule, data)  # a user datamodule's first batch is read here
    task = Task(facts.num_classes, facts.in_channels, facts.image_size, facts.augmented)
    chosen.check(task)
    resolved = _accelerator(s.accelerator, chosen, task)
    chosen_precision = resolve_precision(resolved, s.precision)
    target = _latency_target(s, resolved)
    measures = parsed.needs_latency or chosen.constraints.max_latency_ms is not None
    gpus: list[str] = []
    if resolved == "gpu":
        gpus, budgets = _share_gpus(s.workers, s.devices)
    else:
        budgets = _share_cpu_memory(s.workers, s.devices)
    name = s.study_name or f"{chosen.name}-{default_study_label(data)}"
    with storage_writes(s):
        warm = _open_warm_start(s)
        checked = Checked(
            name,
            chosen,
            parsed,
            task,
            data,
            data_args,
            data_path,
            val_size,
            given_config,
            target if measures else None,
            warm,
        )
        going, trainer_config = _open_study(s, checked)
    loggers = prepare_loggers(s.logger, s.out_dir, going.study.study_name, s.mlflow_uri)
    run = Run(
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
        loggers=loggers,
        trainer_config=trainer_config,
        notes=going.notes + loggers.notes,
        counted_elsewhere=going.counted_elsewhere,
    )
    if checked.latency is not None:
        from dense_nas.study.latency_meter import LatencyMeter

        run.meter = LatencyMeter(
            going.study,
            checked.latency,
            task.image_size,
            chosen.constraints.max_latency_ms,
            run.stop,
            run.stop_reason,
        )
    return run


def _latency_target(s: SearchSettings, accelerator: str) -> Target:
    """The ``--latency-*`` target; refuses a GPU or onnxruntime this machine lacks, before
    any file is written, naming the flag."""
    try:
        return Target(
            device=s.latency_device or accelerator,
            batch=s.latency_batch,
            threads=s.latency_threads,
            runtime=s.latency_runtime,
        )
    except UserInputError as err:
        raise UserInputError(err.message, param=f"latency_{err.param}") from None


def _tighter(given: Limit | None, limit: Limit | None) -> Limit | None:
    """The lower of a flag's limit and the space's, either of which may be unset."""
    return limit if given is None else given if limit is None else min(given, limit)


def _open_study(s: SearchSettings, checked: Checked) -> tuple[GoingOn, dict[str, Any]]:
    """Create or load the study, check it is the same search, and record this one's settings.

    Returns:
        Where the search goes on (the study's latest version, or a new one for a space
        it cannot hold, with the lines to print), and the trainer config its trials apply.
    """
    sampler = make_sampler(s.sampler, s.seed, checked.objective.multi, s.sampler_args)
    max_epochs = s.epochs or checked.space.max_epochs
    pruner = make_pruner(s.pruner, max_epochs, s.pruner_args)  # both before any file
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
    _check_same_choice(study, "sampler", choice_record(s.sampler, s.sampler_args))
    _check_same_choice(study, "pruner", choice_record(s.pruner, s.pruner_args))
    _check_same_data(study, checked.data, checked.data_args)
    if checked.latency is not None:
        _check_same_latency_target(study, checked.latency, checked.objective)
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
        sampler=choice_record(s.sampler, s.sampler_args),
        pruner=choice_record(s.pruner, s.pruner_args),
        seed=s.seed,
        image_size=list(checked.task.image_size),
    )
    if checked.val_size is not None:  # a user datamodule holds out its own validation data
        record_study(study, overwrite=False, val_size=checked.val_size)
    trainer_config = _study_trainer_config(study, checked.trainer_config)
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
def storage_writes(settings: SearchSettings) -> Iterator[None]:
    """Turn a failed storage write into one :class:`StorageError` line (exit 1)."""
    try:
        yield
    except STORAGE_FAILURES as err:
        raise storage_error(settings, err) from err


def storage_error(settings: SearchSettings, err: BaseException) -> StorageError:
    """The one line a failed storage write ``err`` becomes, naming the storage and the fix."""
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


def _with_limits(
    space: SearchSpace, max_params: int | None, max_latency_ms: float | None
) -> SearchSpace:
    """A copy of ``space`` whose limits are also ``max_params`` and ``max_latency_ms`` (the
    caller's space object, and so its fingerprint, stay as they were)."""
    limits = space.constraints
    tightened = copy.copy(space)
    tightened.constraints = dataclasses.replace(
        limits,
        max_params=_tighter(max_params, limits.max_params),
        max_latency_ms=_tighter(max_latency_ms, limits.max_latency_ms),
    )
    return tightened


def _accelerator(accelerator: str, space: SearchSpace, task: Task) -> str:
    """``cpu`` or ``gpu``; ``auto`` weighs the space's typical training step
    (:func:`~dense_nas.study.hardware.resolve_accelerator`)."""
    import torch

    if accelerator == "auto" and torch.cuda.is_available():
        return resolve_accelerator(accelerator, typical_step_macs(space, task))
    return resolve_accelerator(accelerator)


def _share_cpu_memory(workers: int, devices: int) -> list[int]:
    """The bytes each worker's trial may plan for on the CPU: the memory available now,
    shared among the trial processes (ranks) that may train at once; none when the
    machine does not say."""
    available = available_memory()
    if available is None:
        return []
    return [trial_budget(available, workers * devices)] * workers


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


def _check_same_choice(study: optuna.Study, kind: Kind, given: ChoiceRecord) -> None:
    """Refuse to resume a study with another sampler or pruner, or other settings of it:
    every command and machine on a study samples and prunes alike.

    A study made with an object given in Python goes on with an object of the same class
    (its settings cannot be compared); a name is refused there, as an object is on a study
    made with a name.
    """
    recorded: ChoiceRecord | None = study_attrs(study).get(kind)
    if recorded is None:  # a new study, or one from before they were recorded
        return
    objects = recorded["args"] is None and given["args"] is None
    if recorded == given or (objects and recorded["name"] == given["name"]):
        return
    again = (
        f"pass {kind}= a {recorded['name']} again in Python"
        if recorded["args"] is None
        else "pass the same"
    )
    raise UserInputError(
        f"study {study.study_name!r} was made with {describe_choice(kind, recorded)}; "
        f"{again} or use a new --study",
        param=kind,
    )


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


def _check_same_latency_target(study: optuna.Study, target: Target, objective: Objective) -> None:
    """Record where the study measures latency; refuse another target when latency is an
    objective (latencies measured elsewhere do not compare)."""
    given = LatencyTargetRecord(
        device=target.device, batch=target.batch, threads=target.threads, runtime=target.runtime
    )
    recorded = study_attrs(study).get("latency_target")
    if recorded is None:
        record_study(study, latency_target=given)
    elif recorded != given and objective.needs_latency:
        flags = " ".join(f"--latency-{name} {value}" for name, value in recorded.items())
        raise UserInputError(
            f"study {study.study_name!r} measures latency with {flags}; pass the same or "
            "use a new --study",
            param="latency_device",
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

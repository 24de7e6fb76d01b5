"""Train one trial: the code that runs in the trial process, never in the study worker.

A :class:`TrialSpec` holds plain values only (architecture, recipe, data, devices). The
worker hands it over; this module builds the DenseNetModule, the datamodule and a
``lightning.Trainer``, reports the study's validation metric (and accuracy) after every
epoch over the channel,
stops when told to, and answers with a result. Under DDP (``devices > 1``) Lightning
re-runs ``python -m dense_nas.study.process.trial --spec FILE`` for every rank: each rank reads the same
spec file, so all build the same model, and only rank 0 talks to the worker.

Run as ``python -m dense_nas.study.process.trial --channel-fd N`` it serves specs one after another
(imports and data loading paid once per worker); with ``--spec FILE`` it runs one.

Example:
    >>> spec = TrialSpec(number=0, arch={"growth_rate": 4, "block_layers": [1]},
    ...                  training={"epochs": 2}, data="digits")
    >>> TrialSpec.from_dict(spec.to_dict()) == spec
    True
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import os
import signal
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from dense_nas.records import TrialLogs
from dense_nas.study.process import cpu_wait
from dense_nas.study.process.channel import Channel, ChannelClosed
from dense_nas.study.process.messages import (
    EpochMessage,
    ErrorKind,
    ErrorMessage,
    LogMessage,
    PruneReply,
    ResultMessage,
    SpecMessage,
)
from dense_nas.study.quiet import quiet_lightning

if TYPE_CHECKING:  # this module loads without torch: OpenMP's waiting is chosen first
    from dense_nas.study.process.pruning import Ask


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial process needs, as plain values.

    ``training`` is a :class:`~dense_nas.model.recipe.TrainingConfig` dict and must hold
    ``epochs``: the schedule's length is also the Trainer's ``max_epochs``. ``logs`` is
    where the trial logs (a :class:`~dense_nas.records.TrialLogs` per logger; none: no
    logger) and ``trainer_config`` the study's recorded ``--trainer-config``; ``metric``
    the validation metric the study optimises (:data:`~dense_nas.model.metrics.METRICS`),
    reported after every epoch. ``resume`` is the
    trial's resume checkpoint (``None``: not resumable), written every ``resume_every``
    epochs and gone on from when it exists (:mod:`dense_nas.study.process.resume`).
    """

    number: int
    arch: dict[str, Any]
    training: dict[str, Any]
    data: str
    data_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    data_dir: str | None = None
    val_size: int | float | None = None
    seed: int = 0
    accelerator: str = "cpu"
    devices: int = 1
    threads: int = 0
    precision: str = "auto"
    compile: str = "auto"
    checkpoint: str | None = None
    verbose: bool = False
    logs: list[TrialLogs] = field(default_factory=list)
    trainer_config: dict[str, Any] = field(default_factory=dict)
    metric: str = "accuracy"
    resume: str | None = None
    resume_every: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSpec:
        return cls(**data)


def _trainer_options(spec: TrialSpec, user: dict[str, Any]) -> dict[str, Any]:
    """Our defaults, then the user's ``--trainer-config`` options, then what we own."""
    from dense_nas.study.hardware import speed_defaults

    options: dict[str, Any] = {
        "num_sanity_val_steps": 0,
        **speed_defaults(spec.accelerator, spec.precision),
        **user,
        "accelerator": spec.accelerator,
        "devices": spec.devices,
        "max_epochs": spec.training["epochs"],
        "enable_checkpointing": False,
        "enable_progress_bar": spec.verbose,
        "enable_model_summary": spec.verbose,
    }
    if spec.devices > 1:
        options["strategy"] = "ddp"
    return options


class TrialError(Exception):
    """A failure of the trial whose message is the whole reason (no exception type)."""


_DATA_CACHE: dict[tuple[Any, ...], Any] = {}


def _datamodule(spec: TrialSpec, batch_size: int) -> Any:
    """The trial's datamodule; a serving process keeps it (and its tensors) between trials."""
    from dense_nas.data import build_datamodule

    arguments = json.dumps(spec.data_args, sort_keys=True)
    key = (spec.data, arguments, spec.data_dir, spec.val_size, batch_size, spec.seed)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = build_datamodule(
            spec.data,
            spec.data_dir,
            spec.data_args,
            batch_size=batch_size,
            val_size=spec.val_size,
            seed=spec.seed,
        )
    return _DATA_CACHE[key]


def run(spec: TrialSpec, ask: Ask) -> ResultMessage:
    """Train ``spec``; ``ask(report)`` is asked on rank 0 after each epoch: stop now?

    Returns the ``result`` message (on rank 0; other ranks return it too, unused).
    """
    import lightning as L
    import torch

    from dense_nas.model.arch import DenseNetConfig
    from dense_nas.model.graphs import compile_mode, training_steps
    from dense_nas.model.module import DenseNetModule
    from dense_nas.model.recipe import TrainingConfig
    from dense_nas.study.hardware import keep_freed_memory
    from dense_nas.study.loggers import finished_logs, make_logger
    from dense_nas.study.process.pruning import EpochReporter
    from dense_nas.study.process.resume import ResumeCheckpoint, checkpoint_to_resume, discard
    from dense_nas.study.process.timing import StepTimer
    from dense_nas.study.trainer_config import trainer_kwargs

    if spec.accelerator == "cpu":
        keep_freed_memory()  # about 1.5x faster steps on the CPU; this process is ours
    if spec.threads:
        torch.set_num_threads(spec.threads)
    L.seed_everything(spec.seed + spec.number, workers=True, verbose=False)
    arch = DenseNetConfig.from_dict(spec.arch)
    training = TrainingConfig.from_dict(spec.training)
    datamodule = _datamodule(spec, training.batch_size)
    steps = None
    if spec.accelerator == "gpu" and spec.compile == "auto":
        steps = training_steps(datamodule, training.epochs)
    compiled = compile_mode(spec.compile, spec.accelerator, arch, steps)
    module = DenseNetModule.from_candidate(arch, training, compile=compiled, metric=spec.metric)
    timer = StepTimer()
    reporter = EpochReporter(ask, timer, spec.metric)
    user = trainer_kwargs(spec.trainer_config)
    callbacks = [reporter, timer, *user.pop("callbacks")]
    if spec.resume is not None:
        callbacks.append(ResumeCheckpoint(spec.resume, spec.resume_every))
    resume_from = checkpoint_to_resume(spec.resume, dict(module.hparams))
    logger = make_logger(spec.logs, spec.trainer_config)
    trainer = L.Trainer(callbacks=callbacks, logger=logger, **_trainer_options(spec, user))
    with quiet_lightning(spec.verbose):
        trainer.fit(
            module,
            datamodule=datamodule,
            ckpt_path=resume_from.path if resume_from else None,
            weights_only=False,  # our own file, with the optimizer and random states
        )
    if not reporter.history or reporter.accuracy is None:
        raise RuntimeError("training ended before the first validation epoch")
    if spec.checkpoint and not reporter.pruned:
        _save_checkpoint(trainer, spec.checkpoint)
    if spec.resume is not None and trainer.is_global_zero:
        discard(spec.resume)  # completed or pruned: no try of this trial comes after
    result: ResultMessage = {
        "ranks": _gather({"arch_key": arch.key, "epochs": len(reporter.history)}),
        "type": "result",
        "value": reporter.history[-1],
        "history": reporter.history,
        "accuracy": reporter.accuracy,
        "pruned": reporter.pruned,
        "epochs": len(reporter.history),
        "precision": str(trainer.precision),
        "compiled": module.compiled,
        "step_seconds": timer.step_seconds,
        "images_per_second": timer.train_images / timer.train_seconds
        if timer.train_seconds
        else 0.0,
        "checkpoint": spec.checkpoint if not reporter.pruned else None,
        "resumed_from": resume_from.epoch if resume_from else None,
    }
    logs = finished_logs(spec.logs, logger)
    if logs:
        result["logs"] = logs
    return result


def _save_checkpoint(trainer: Any, path: str) -> None:
    """Write the checkpoint whole, or fail the trial with the reason and leave no file."""
    try:
        trainer.save_checkpoint(path)  # collective under DDP; rank 0 writes
    except OSError as err:  # a full disk, a lost mount: this trial fails, the study goes on
        with contextlib.suppress(OSError):
            os.remove(path)
        raise TrialError(f"checkpoint not written: {err}") from err


def _gather(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rank's record (what it built, how long it trained), for the worker to check."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [record]
    records: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(records, record)
    return records


def _error(err: BaseException) -> ErrorMessage:
    """The error message for an exception raised while training.

    Example:
        >>> _error(MemoryError("no room"))["kind"], _error(ValueError("NaN"))["reason"]
        ('out-of-memory', 'ValueError: NaN')
    """
    text = str(err) if isinstance(err, TrialError) else f"{type(err).__name__}: {err}"
    kind: ErrorKind = "out-of-memory" if _out_of_memory(err) else "error"
    if kind == "out-of-memory":
        _free_memory()  # the next trial this process serves starts with the memory back
    return {
        "type": "error",
        "kind": kind,
        "reason": text.splitlines()[0][:500],
        "traceback": traceback.format_exc()[-4000:],
    }


def _out_of_memory(err: BaseException) -> bool:
    """Did training run out of memory (CUDA, or the CPU allocator)? Such a trial is retried."""
    torch = sys.modules.get("torch")
    if isinstance(err, MemoryError) or (
        torch is not None and isinstance(err, torch.OutOfMemoryError)
    ):
        return True
    # The CPU allocator raises a plain RuntimeError: "DefaultCPUAllocator: can't allocate memory"
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


def _free_memory() -> None:
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _asker(channel: Channel) -> Ask:
    def ask(report: EpochMessage) -> bool:
        return cast(PruneReply, channel.request(report))["prune"]

    return ask


def serve(channel: Channel) -> None:
    """Run specs from the channel one after another until it closes."""
    while True:
        try:
            message = channel.receive()
        except ChannelClosed:
            return
        if "log" in message:  # adopted by a worker after starting early
            _write_output_to(cast(LogMessage, message)["log"])
            continue
        spec = TrialSpec.from_dict(cast(SpecMessage, message)["spec"])
        result: ResultMessage | ErrorMessage
        try:
            result = run(spec, _asker(channel))
        except ChannelClosed:
            return  # the worker is gone: nobody to report to
        except Exception as err:
            result = _error(err)
        channel.send(result)


def _preload() -> None:
    """Import what training needs now, before the first spec arrives."""
    import lightning  # noqa: F401
    import torch  # noqa: F401

    import dense_nas.data
    import dense_nas.model.module
    import dense_nas.study.process.pruning  # noqa: F401


def _write_output_to(path: str) -> None:
    """Send this process's stdout and stderr to ``path`` (appending) from now on."""
    sys.stdout.flush()
    sys.stderr.flush()
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (a SIGKILLed worker)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(argv: list[str] | None = None) -> int:
    """Entry point of the trial process (``python -m dense_nas.study.process.trial``)."""
    parser = argparse.ArgumentParser(prog="python -m dense_nas.study.process.trial")
    parser.add_argument("--channel-fd", type=int, help="socket to the study worker")
    parser.add_argument("--spec", type=Path, help="run this one spec (JSON) and exit")
    args = parser.parse_args(argv)
    _die_with_parent()
    cpu_wait.choose()  # before torch loads OpenMP
    _preload()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    rank_zero = "LOCAL_RANK" not in os.environ  # Lightning sets it in re-launched ranks
    channel = (
        Channel.from_fd(args.channel_fd) if args.channel_fd is not None and rank_zero else None
    )
    if args.spec is None:
        if channel is None:
            parser.error("--channel-fd is needed to serve")
        serve(channel)
        return 0
    spec = TrialSpec.from_dict(json.loads(args.spec.read_text()))
    result: ResultMessage | ErrorMessage
    try:
        result = run(spec, _asker(channel) if channel else (lambda report: False))
    except ChannelClosed:
        return 1
    except Exception as err:
        result = _error(err)
    if channel is not None:
        channel.send(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

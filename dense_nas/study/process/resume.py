"""Resumable trials: a checkpoint at epoch ends that the next try of a killed trial goes on from.

A trial process killed after 35 of 40 epochs (SIGKILL, the OOM killer, a preempted
machine) loses only the epoch it was in. While it trains, :class:`ResumeCheckpoint`
writes one file per running trial every ``every`` epochs, at the start of the next epoch
(the finished epoch's pruning answer is in and its LR step done, the next epoch's batch
order not drawn yet). Lightning's own checkpoint carries the weights, optimizer, LR
schedule, grad scaler, epoch counters, the reported history (a stateful callback) and a
stateful loader's shuffling (:class:`~dense_nas.data.TensorBatches`); it restores no random
generator, so this callback adds every rank's torch (CPU and CUDA), numpy and ``random``
states. Restored, the next try trains the same batches with the same augmentation and
dropout draws: on the CPU a resumed trial ends with the weights of one never killed.

Each write is whole or absent (a temporary file in the same folder, fsync, rename); the
one before is kept as ``<path>.prev``. :func:`checkpoint_to_resume` picks the newest of
the two that reads, and a torn or garbage file costs one warning line, never the trial.
The worker names the file (``TrialSpec.resume``, stable across a trial's tries) and calls
:func:`discard` once the trial has ended for good; a trial that completes or is pruned
removes its own.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "trial-3.ckpt").write_bytes(b"torn")
    >>> checkpoint_to_resume(folder / "trial-3.ckpt") is None  # logs one warning line
    True
    >>> discard(folder / "trial-3.ckpt")
    >>> sorted(folder.iterdir())
    []
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import lightning as L
import numpy as np
import torch

logger = logging.getLogger(__name__)

_PREVIOUS = ".prev"
_PARTIAL = ".partial"


def _previous(path: Path) -> Path:
    return path.with_name(path.name + _PREVIOUS)


def _partial(path: Path) -> Path:
    return path.with_name(path.name + _PARTIAL)


@dataclass(frozen=True)
class ResumePoint:
    """A readable resume checkpoint: the file, and the epochs done before it was written."""

    path: str
    epoch: int


def checkpoint_to_resume(
    path: str | os.PathLike[str] | None, expected: Mapping[str, Any] | None = None
) -> ResumePoint | None:
    """The readable resume checkpoint to go on from: ``path``, else its previous copy.

    Args:
        path: the trial's resume checkpoint (``None``: the trial is not resumable).
        expected: the module's hyperparameters (architecture and recipe); a checkpoint
            made with others (say, a resumed command with another ``--epochs``) is not
            gone on from, with one warning line.

    Returns:
        Where to go on from (pass its ``path`` to ``Trainer.fit(ckpt_path=...)``), or
        ``None`` to start from epoch 0: no file yet, or none that reads. Each unreadable
        file logs one line.
    """
    if path is None:
        return None
    for candidate in (Path(path), _previous(Path(path))):
        if not candidate.exists():
            continue
        try:
            return ResumePoint(str(candidate), _epochs_done(candidate, expected))
        except _Unreadable as err:
            logger.warning(
                "resume checkpoint %s unreadable (%s); not resuming from it", candidate, err
            )
    return None


class _Unreadable(Exception):
    """A file that is no whole resume checkpoint; the message says why."""


def _epochs_done(path: Path, expected: Mapping[str, Any] | None = None) -> int:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torn or garbage bytes raise anything from EOFError up
        first_line = (str(err).splitlines() or [""])[0]
        raise _Unreadable(f"{type(err).__name__}: {first_line[:200]}") from err
    callbacks = checkpoint.get("callbacks") if isinstance(checkpoint, dict) else None
    if not (isinstance(callbacks, dict) and ResumeCheckpoint.__qualname__ in callbacks):
        raise _Unreadable("not a resume checkpoint")
    if expected is not None:
        saved = checkpoint.get("hyper_parameters") or {}
        differing = sorted(k for k in expected if k in saved and saved[k] != expected[k])
        if differing:
            raise _Unreadable(f"made for another network or recipe ({', '.join(differing)})")
    return int(checkpoint["epoch"])


def discard(path: str | os.PathLike[str]) -> None:
    """Remove a trial's resume checkpoint, its previous copy and any half-written one.

    For the worker, once the trial will not be tried again (it failed in a way that is
    not retried, or its last retry is spent); a missing file is no error.
    """
    for leftover in (Path(path), _previous(Path(path)), _partial(Path(path))):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            leftover.unlink()


def random_state() -> dict[str, Any]:
    """This process's random generators, as plain values a checkpoint can hold."""
    numpy_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    kind, keys, position, has_gauss, gauss = numpy_state
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.copy()), position, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]  # a GPU trial; a CPU one never starts CUDA
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict[str, Any]) -> None:
    """Put back what :func:`random_state` took.

    Example:
        >>> saved = random_state()
        >>> first = torch.rand(2), np.random.rand(), random.random()
        >>> set_random_state(saved)
        >>> again = torch.rand(2), np.random.rand(), random.random()
        >>> bool(torch.equal(first[0], again[0])) and first[1:] == again[1:]
        True
    """
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), position, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _all_ranks(trainer: L.Trainer, record: dict[str, Any]) -> list[dict[str, Any]]:
    """``record`` of every rank, in rank order (a collective under DDP)."""
    import torch.distributed as dist

    if trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return [record]
    # As torch.save bytes: all_gather_object cannot pickle the CPU tensors gloo hands it.
    written = io.BytesIO()
    torch.save(record, written)
    records: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(records, written.getvalue())
    return [torch.load(io.BytesIO(data), weights_only=False) for data in records]


class ResumeCheckpoint(L.Callback):
    """Write the trial's resume checkpoint every ``every`` epochs; restore its generators.

    Args:
        path: the file (its folder is created); rank 0 writes it, every rank restores.
        every: epochs between writes (1: after every epoch).

    Writing fails soft: a full disk logs one line and the trial trains on, only less
    resumable.
    """

    def __init__(self, path: str | os.PathLike[str], every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every: must be at least 1 epoch, got {every}")
        self.path = Path(path)
        self.every = every
        self._rank = 0
        self._writing = False
        self._state: dict[str, Any] = {}  # what the checkpoint being written holds
        self._loaded: dict[str, Any] = {}  # what the checkpoint resumed from held, for this rank
        self._resumed_at = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._rank = trainer.global_rank  # known before a checkpoint's states are loaded

    def state_dict(self) -> dict[str, Any]:
        return self._state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks = state_dict["ranks"]
        self._loaded = ranks[self._rank if self._rank < len(ranks) else 0]
        self._resumed_at = state_dict["epoch"]
        # Now, before the training loader is first iterated (a DataLoader draws its
        # seeds there): the unbroken run iterates it after the same generator state.
        set_random_state(self._loaded["random"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader: Any = trainer.train_dataloader  # made after load_state_dict; no batch drawn yet
        if "loader" in self._loaded and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(self._loaded["loader"])

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not self._writing:
            return
        # Written as an epoch starts, Lightning's counters say "epoch ready, not begun",
        # which Lightning 2.6 resumes as one epoch too far on. Record it as what it is:
        # the last epoch finished, the next not yet begun.
        progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]
        for counts in (progress["total"], progress["current"]):
            counts["ready"] = counts["completed"]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.current_epoch
        if done == 0 or done % self.every or done == self._resumed_at:
            return
        record: dict[str, Any] = {"random": random_state()}
        loader: Any = trainer.train_dataloader
        if hasattr(loader, "state_dict"):  # a stateful loader: its next shuffle
            record["loader"] = loader.state_dict()
        self._state = {"epoch": done, "ranks": _all_ranks(trainer, record)}
        partial = _partial(self.path)
        self._writing = True
        try:
            if trainer.is_global_zero:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(partial)  # rank 0 writes, then every rank meets
        except OSError as err:  # only rank 0 writes, so only it gets here
            trainer.strategy.barrier("resume checkpoint")  # the meeting it did not reach
            self._failed(partial, err)
            return
        finally:
            self._writing = False
            self._state = {}
        if trainer.is_global_zero:
            try:
                _commit(partial, self.path)
            except OSError as err:
                self._failed(partial, err)

    def _failed(self, partial: Path, err: OSError) -> None:
        with contextlib.suppress(OSError):
            partial.unlink()
        logger.warning("resume checkpoint %s not written: %s", self.path, err)


def _commit(partial: Path, path: Path) -> None:
    """Make ``partial`` the checkpoint, whole: on disk first, then renamed over; keep one older."""
    with partial.open("rb") as written:
        os.fsync(written.fileno())
    if path.exists():
        os.replace(path, _previous(path))
    os.replace(partial, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the renames survive a crash of the machine too
    finally:
        os.close(folder)

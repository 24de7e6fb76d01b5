"""Each candidate's latency, measured in its worker before it trains, with the command's
other trials held still.

When a study's objective has latency (``--objective accuracy,latency``) or a latency limit
is set (``--max-latency-ms``, or the space's ``max_latency_ms`` constraint), every
candidate's latency on the study's :class:`~dense_nas.model.latency.Target` is known
before it trains: read from the study
(:mod:`~dense_nas.model.latency_cache`: one measurement per architecture and device
fingerprint, shared by duplicates and by every command on the same hardware), else
measured and stored; either way it is recorded on the trial.

Three things keep a measurement honest:

- **Not inside a trial's timing.** It runs in the worker, between sampling and training,
  so no trial's step timing includes it.
- **One at a time.** A command's workers measure one after another, and a second worker
  that wants the latency just measured reads it from the study instead.
- **Nothing of the command trains meanwhile.** A worker about to measure raises a flag;
  each other worker of the command holds its trial at its next epoch end (the trial
  process waits there for its pruning answer, outside its timed steps) and starts no
  new trial process until the measurement is stored. The measurement starts once every
  trial of the command is held or done. So a measurement waits up to one epoch of the
  slowest running trial, and the running trials wait for the measurement. Other commands
  and other programs on the machine are not held: measure where nothing else runs.

The timing runs in one measuring process per command (spawned when the command starts,
reused for every measurement), not in the worker's own process, so that neither the
command's threads nor its CUDA context sit beside the timed network.

Example:
    >>> import threading, optuna
    >>> from dense_nas.model.arch import DenseNetConfig
    >>> from dense_nas.model.latency import Target
    >>> meter = LatencyMeter(optuna.create_study(), Target(), (8, 8), None, threading.Event(),
    ...                      lambda: "stopped")
    >>> found = meter.latency(DenseNetConfig(4, (1,), in_channels=1))
    >>> found.median_ms > 0, meter.measured, meter.violation(found)
    (True, 1, None)
    >>> meter.latency(DenseNetConfig(4, (1,), in_channels=1)) == found, meter.measured
    (True, 1)
    >>> meter.close()
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.latency import (
    LatencyMeasurement,
    Target,
    device_fingerprint,
    measure_latency,
)
from dense_nas.model.latency_cache import cached_latency, store_latency

if TYPE_CHECKING:
    import optuna

STOPPING: dict[str, Any] = {
    "warmup": 5,
    "min_runs": 10,
    "max_runs": 1000,
    "max_seconds": 20.0,
    "precision": 0.02,
}
"""When one measurement stops timing (:func:`~dense_nas.model.latency.time_runs`): a
median to 2%, or 1,000 runs, or 20 seconds of timed runs. Read when a measurement starts."""

_POLL = 0.2
"""Seconds between looks at the stop event while waiting."""


class MeasurementStopped(Exception):
    """Ctrl-C or a failed worker ended a measurement (or the wait for one)."""


def _ready() -> None:
    """Run first in the measuring process: its imports are done before it is needed."""


class LatencyMeter:
    """The latencies of one command's candidates, and the gate that holds its trials.

    Args:
        study: where measurements are kept.
        target: where and how to measure.
        image_size: the study's ``(height, width)``.
        max_latency_ms: the limit a candidate's latency must meet, or ``None``.
        stop: set when the command stops; every wait here ends at it.
        stop_reason: why, as a trial's failure says it.
    """

    def __init__(
        self,
        study: optuna.Study,
        target: Target,
        image_size: tuple[int, int],
        max_latency_ms: float | None,
        stop: threading.Event,
        stop_reason: Callable[[], str],
    ) -> None:
        self.study = study
        self.target = target
        self.image_size = image_size
        self.max_latency_ms = max_latency_ms
        self.fingerprint = device_fingerprint(target)
        #: measurements this command made (a latency read from the study is not one)
        self.measured = 0
        self._stop = stop
        self._stop_reason = stop_reason
        self._one_at_a_time = threading.Lock()
        self._gate = threading.Condition()
        self._measuring = False
        self._training = 0  # trials of this command inside training()
        self._held = 0  # of them, those held at an epoch end
        self._pool: ProcessPoolExecutor | None = None
        self._process()  # spawned now: its imports overlap the command's start

    def latency(self, arch: DenseNetConfig) -> LatencyMeasurement:
        """The latency of ``arch``: read from the study, else measured alone and stored.

        Raises:
            MeasurementStopped: the command stopped while this waited or measured.
        """
        known = cached_latency(self.study, arch, self.image_size, self.fingerprint)
        if known is not None:
            return known
        with self._one_at_a_time:
            # the worker before may just have measured this one (a twin candidate)
            known = cached_latency(self.study, arch, self.image_size, self.fingerprint)
            if known is not None:
                return known
            with self._alone():
                found = self._measure(arch)
                store_latency(self.study, arch, found)  # before the held trials go on
        self.measured += 1
        return found

    def violation(self, found: LatencyMeasurement) -> str | None:
        """Why ``found`` breaks the latency limit, or ``None``: the ``pruned_reason``."""
        limit = self.max_latency_ms
        if limit is None or found.median_ms <= limit:
            return None
        return (
            f"latency {found.median_ms:.4g} ms > max_latency_ms {limit:g} ({found.fingerprint.key})"
        )

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Around a trial process's run: it starts once no measurement is under way."""
        with self._gate:
            while self._measuring and not self._stop.is_set():
                self._gate.wait(_POLL)
            self._training += 1
        try:
            yield
        finally:
            with self._gate:
                self._training -= 1
                self._gate.notify_all()

    def hold(self) -> None:
        """At a training trial's epoch end: wait while a measurement is wanted or under way."""
        with self._gate:
            if not self._measuring:
                return
            self._held += 1
            self._gate.notify_all()
            try:
                while self._measuring and not self._stop.is_set():
                    self._gate.wait(_POLL)
            finally:
                self._held -= 1

    def close(self) -> None:
        """End the measuring process (a measurement under way is abandoned)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _process(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # no copy of this process's state
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
            self._pool.submit(_ready)
        return self._pool

    @contextlib.contextmanager
    def _alone(self) -> Iterator[None]:
        """Hold the command's trials for the body: it starts once each is held or done."""
        with self._gate:
            self._measuring = True
            try:
                while self._held < self._training:
                    if self._stop.is_set():
                        raise MeasurementStopped(self._stop_reason())
                    self._gate.wait(_POLL)
            except BaseException:
                self._measuring = False
                self._gate.notify_all()
                raise
        try:
            yield
        finally:
            with self._gate:
                self._measuring = False
                self._gate.notify_all()

    def _measure(self, arch: DenseNetConfig) -> LatencyMeasurement:
        """Time ``arch`` in the measuring process."""
        try:
            future = self._process().submit(
                measure_latency, arch, self.image_size, self.target, **STOPPING
            )
            return future.result()
        except (KeyboardInterrupt, BrokenProcessPool) as err:
            # Ctrl-C reaches the measuring process too; a broken one is replaced next time.
            self.close()
            if self._stop.is_set():
                raise MeasurementStopped(self._stop_reason()) from None
            if isinstance(err, KeyboardInterrupt):  # before the command heard of it
                raise MeasurementStopped("interrupted (Ctrl-C); retried on resume") from None
            raise

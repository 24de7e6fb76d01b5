"""Measured inference latency of a DenseNet on a target: a device, batch, threads, runtime.

The cost model (:mod:`~dense_nas.model.cost`) counts parameters and MACs exactly, but
what a deployment waits for is time, and time depends on the hardware, the runtime and
the shape of the network as much as on its MACs. :func:`measure_latency` builds the
network of an architecture (weights do not matter for latency; random ones are used),
runs it on a :class:`Target`, and returns a :class:`LatencyMeasurement`: the median
milliseconds per batch, their spread, how many timed runs it took, and the
:class:`DeviceFingerprint` of where it ran, whose :attr:`~DeviceFingerprint.key` tells
whether two measurements are comparable.

One timed run is one batch from host memory to logits in host memory: on a GPU that
includes copying the images over and the logits back, the same for both runtimes.

- ``torch``: the plain :class:`~dense_nas.model.network.DenseNet` in eval mode under
  ``torch.inference_mode()``, eager, in the default (NCHW) memory layout.
- ``onnxruntime``: the file :mod:`dense_nas.results.export` writes for ``--format onnx``,
  in an onnxruntime session with ``intra_op_num_threads`` = the target's threads.

Timing stops once the median is known well enough: when the estimated standard error of
the median (``0.93 * IQR / sqrt(runs)``, exact for normally distributed times) is under
``precision`` of the median, or at a cap on runs or seconds (then ``converged`` is false).

Example:
    >>> from dense_nas.model.arch import DenseNetConfig
    >>> found = measure_latency(DenseNetConfig(4, (1, 1), in_channels=1), (8, 8))
    >>> found.median_ms > 0, found.fingerprint.runtime, found.fingerprint.threads
    (True, 'torch', 1)
"""

from __future__ import annotations

import contextlib
import functools
import math
import multiprocessing
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dense_nas.errors import UserInputError, check_choice
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.network import DenseNet
from dense_nas.records import FingerprintRecord, LatencyRecord

DEVICES: tuple[str, ...] = ("cpu", "gpu")
"""Where latency can be measured: the CPU, or the first CUDA GPU."""
RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime")
"""What runs the network: eager PyTorch, or onnxruntime on the exported ONNX file."""

ONNX_EXTRA = "pip install 'dense-nas[onnx]'"

#: The asymptotic standard error of a sample median is 1.2533 * sigma / sqrt(n) for normal
#: data, and sigma = IQR / 1.349 there: so 0.929 * IQR / sqrt(n).
_MEDIAN_ERROR_PER_IQR = 1.2533 / 1.349


def _positive(value: Any, param: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserInputError(f"must be a positive integer, got {value!r}", param=param)


def _onnxruntime() -> Any:
    """The onnxruntime module, or one line naming the extra that installs it."""
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  # the exporter dense-nas writes ONNX files with
    except ImportError:
        raise UserInputError(
            f"onnxruntime needs onnx, onnxscript and onnxruntime; {ONNX_EXTRA}",
            param="runtime",
        ) from None
    return onnxruntime


@dataclass(frozen=True)
class Target:
    """Where and how latency is measured; refused on construction if this machine cannot.

    Args:
        device: ``cpu`` or ``gpu`` (the first CUDA device).
        batch: images per timed run.
        threads: CPU threads torch (or onnxruntime's intra-op pool) may use; 1 is the
            usual deployment case and the least disturbed by other work on the machine.
        runtime: ``torch`` or ``onnxruntime``.

    Raises:
        UserInputError: a non-positive batch or thread count, an unknown device or
            runtime, ``gpu`` without CUDA, or ``onnxruntime`` without the package.

    Example:
        >>> Target().device, Target().batch, Target().threads, Target().runtime
        ('cpu', 1, 1, 'torch')
        >>> Target(batch=0)
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: batch: must be a positive integer, got 0
    """

    device: str = "cpu"
    batch: int = 1
    threads: int = 1
    runtime: str = "torch"

    def __post_init__(self) -> None:
        check_choice(self.device, DEVICES, "device")
        check_choice(self.runtime, RUNTIMES, "runtime")
        _positive(self.batch, "batch")
        _positive(self.threads, "threads")
        if self.device == "gpu" and not torch.cuda.is_available():
            raise UserInputError(
                "'gpu' needs CUDA, and torch sees no CUDA device here; use cpu, or measure "
                "where torch.cuda.is_available() is true",
                param="device",
            )
        if self.runtime == "onnxruntime":
            ort = _onnxruntime()
            if self.device == "gpu" and "CUDAExecutionProvider" not in (
                ort.get_available_providers()
            ):
                raise UserInputError(
                    "onnxruntime on gpu needs the CUDA build: pip install onnxruntime-gpu",
                    param="runtime",
                )


@dataclass(frozen=True)
class DeviceFingerprint:
    """What a latency depends on besides the network: hardware, settings, software.

    Attributes:
        device: ``cpu`` or ``gpu``.
        hardware: the CPU model (``/proc/cpuinfo``'s model name, else the platform's) or
            the GPU's name.
        threads, batch, runtime: as in the :class:`Target`.
        torch: torch's version.
        onnxruntime: onnxruntime's version when it is the runtime, else ``None``.

    Example:
        >>> fp = DeviceFingerprint("cpu", "AMD EPYC", 1, 1, "torch", "2.13.0+cpu")
        >>> fp.key
        'cpu=AMD EPYC;threads=1;batch=1;runtime=torch;torch=2.13.0+cpu'
        >>> DeviceFingerprint.from_record(fp.to_record()) == fp
        True
    """

    device: str
    hardware: str
    threads: int
    batch: int
    runtime: str
    torch: str
    onnxruntime: str | None = None

    @property
    def key(self) -> str:
        """A stable text key: equal for two fingerprints exactly when their fields are."""
        parts = [
            f"{self.device}={self.hardware}",
            f"threads={self.threads}",
            f"batch={self.batch}",
            f"runtime={self.runtime}",
            f"torch={self.torch}",
        ]
        if self.onnxruntime is not None:
            parts.append(f"onnxruntime={self.onnxruntime}")
        return ";".join(parts)

    def to_record(self) -> FingerprintRecord:
        """Plain values, as a study stores them."""
        return {
            "device": self.device,
            "hardware": self.hardware,
            "threads": self.threads,
            "batch": self.batch,
            "runtime": self.runtime,
            "torch": self.torch,
            "onnxruntime": self.onnxruntime,
        }

    @classmethod
    def from_record(cls, record: FingerprintRecord) -> DeviceFingerprint:
        """Rebuild a fingerprint from :meth:`to_record` output."""
        return cls(**record)


@functools.cache
def cpu_model() -> str:
    """The CPU's model name: ``/proc/cpuinfo`` on Linux, else what the platform says.

    Example:
        >>> isinstance(cpu_model(), str) and cpu_model() != ""
        True
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown cpu"


def device_fingerprint(target: Target) -> DeviceFingerprint:
    """The fingerprint of measuring on ``target`` on this machine.

    Example:
        >>> fp = device_fingerprint(Target(threads=2))
        >>> fp.hardware == cpu_model(), fp.key.startswith("cpu="), "threads=2" in fp.key
        (True, True, True)
    """
    hardware = torch.cuda.get_device_name(0) if target.device == "gpu" else cpu_model()
    ort_version = _onnxruntime().__version__ if target.runtime == "onnxruntime" else None
    return DeviceFingerprint(
        device=target.device,
        hardware=hardware,
        threads=target.threads,
        batch=target.batch,
        runtime=target.runtime,
        torch=torch.__version__,
        onnxruntime=ort_version,
    )


@dataclass(frozen=True)
class LatencyMeasurement:
    """Milliseconds per batch of one architecture on one target.

    Attributes:
        median_ms: median over the timed runs.
        iqr_ms: interquartile range of the timed runs.
        runs: timed runs (warm-up runs not counted).
        converged: whether the median met the precision asked for before a cap.
        image_size: ``(height, width)`` of the images.
        fingerprint: where and how it was measured.

    Example:
        >>> fp = DeviceFingerprint("cpu", "AMD EPYC", 1, 1, "torch", "2.13.0+cpu")
        >>> found = LatencyMeasurement(4.0, 0.2, 30, True, (32, 32), fp)
        >>> found.spread
        0.05
        >>> LatencyMeasurement.from_record(found.to_record("k=12")) == found
        True
    """

    median_ms: float
    iqr_ms: float
    runs: int
    converged: bool
    image_size: tuple[int, int]
    fingerprint: DeviceFingerprint

    @property
    def spread(self) -> float:
        """The relative spread of the runs: IQR over median."""
        return self.iqr_ms / self.median_ms

    def to_record(self, arch_key: str) -> LatencyRecord:
        """Plain values for a study, with the key of the architecture measured."""
        return {
            "arch_key": arch_key,
            "image_size": list(self.image_size),
            "device": self.fingerprint.key,
            "fingerprint": self.fingerprint.to_record(),
            "median_ms": self.median_ms,
            "iqr_ms": self.iqr_ms,
            "runs": self.runs,
            "converged": self.converged,
        }

    @classmethod
    def from_record(cls, record: LatencyRecord) -> LatencyMeasurement:
        """Rebuild a measurement from :meth:`to_record` output."""
        height, width = record["image_size"]
        return cls(
            median_ms=record["median_ms"],
            iqr_ms=record["iqr_ms"],
            runs=record["runs"],
            converged=record["converged"],
            image_size=(height, width),
            fingerprint=DeviceFingerprint.from_record(record["fingerprint"]),
        )


def inference_arch(config: DenseNetConfig) -> DenseNetConfig:
    """The architecture as inference runs it: no dropout (identity in eval mode, and the
    ONNX export drops it), so candidates that differ only in dropout share a latency.

    Example:
        >>> cfg = DenseNetConfig(12, (4, 4), dropout=0.2)
        >>> inference_arch(cfg).key == DenseNetConfig(12, (4, 4)).key
        True
    """
    return config.replace(dropout=0.0, memory_efficient=False)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the body with torch on ``threads`` intra-op threads, then restore the count.

    Example:
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


Run = Callable[[], None]
"""One timed batch: images in host memory to logits in host memory."""


def _torch_run(config: DenseNetConfig, images: torch.Tensor, target: Target) -> Run:
    device = torch.device("cuda" if target.device == "gpu" else "cpu")
    network = DenseNet(config).eval().to(device)

    def run() -> None:
        with torch.inference_mode():
            # .cpu() waits for the GPU, so the time covers the whole batch.
            network(images.to(device)).cpu()

    return run


def _onnx_run(config: DenseNetConfig, images: torch.Tensor, target: Target) -> Run:
    # Imported here: the export module pulls in Lightning, which torch runs need not.
    from dense_nas.model.module import DenseNetModule
    from dense_nas.results.export import export_network

    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = target.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    gpu = target.device == "gpu"
    providers = ["CUDAExecutionProvider"] if gpu else ["CPUExecutionProvider"]
    with tempfile.TemporaryDirectory(prefix="dense-nas-latency-") as folder:
        path = Path(folder) / "network.onnx"
        # Traced on two images whatever the target's batch: torch.export would fix a
        # batch axis of size 1 instead of keeping it dynamic.
        example = torch.zeros(2, *images.shape[1:])
        export_network(DenseNetModule(config), path, "onnx", example)
        session = ort.InferenceSession(str(path), options, providers=providers)
    name = session.get_inputs()[0].name
    batch = images.numpy()

    def run() -> None:
        session.run(None, {name: batch})

    return run


def _median_and_iqr(times_ms: list[float]) -> tuple[float, float]:
    low, median, high = np.percentile(times_ms, [25, 50, 75])
    return float(median), float(high - low)


def time_runs(
    run: Run,
    *,
    warmup: int = 5,
    min_runs: int = 10,
    max_runs: int = 1000,
    max_seconds: float = 20.0,
    precision: float = 0.02,
) -> tuple[list[float], bool]:
    """Time ``run`` until the median is known to ``precision`` or a cap is reached.

    Args:
        run: one batch.
        warmup: untimed runs first (allocations, kernel choice, caches).
        min_runs: timed runs before the median may be judged; always made, even past
            the caps.
        max_runs: the most timed runs (or ``min_runs``, if more).
        max_seconds: the most seconds of timed runs, once ``min_runs`` are done.
        precision: the estimated standard error of the median over the median at which
            timing stops.

    Returns:
        The milliseconds of each timed run, and whether ``precision`` was met.

    Example:
        >>> times, converged = time_runs(lambda: None, warmup=1, min_runs=5, max_seconds=0)
        >>> len(times), all(t >= 0 for t in times)
        (5, True)
    """
    for _ in range(warmup):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        began = time.perf_counter_ns()
        run()
        times.append((time.perf_counter_ns() - began) / 1e6)
        if len(times) < min_runs:
            continue  # the caps too wait for min_runs: a slow network still gets them
        median, iqr = _median_and_iqr(times)
        error = _MEDIAN_ERROR_PER_IQR * iqr / math.sqrt(len(times))
        if error <= precision * median:
            return times, True
        if len(times) >= max_runs or time.perf_counter() - start >= max_seconds:
            return times, False


def measure_latency(
    config: DenseNetConfig,
    image_size: tuple[int, int],
    target: Target | None = None,
    *,
    warmup: int = 5,
    min_runs: int = 10,
    max_runs: int = 1000,
    max_seconds: float = 20.0,
    precision: float = 0.02,
) -> LatencyMeasurement:
    """Measure milliseconds per batch of the network of ``config`` on ``target``.

    Args:
        config: the architecture; its ``in_channels`` are the images' channels.
        image_size: ``(height, width)`` of the images.
        target: where and how (default: CPU, batch 1, one thread, torch).
        warmup, min_runs, max_runs, max_seconds, precision: when timing stops
            (:func:`time_runs`).

    Raises:
        UserInputError: a bad image size (and see :class:`Target`).

    Example:
        >>> found = measure_latency(DenseNetConfig(4, (1,), in_channels=1), (8, 8),
        ...                         Target(batch=2), max_runs=20)
        >>> found.fingerprint.batch, 10 <= found.runs <= 20, found.image_size
        (2, True, (8, 8))
    """
    target = target or Target()
    for side in image_size:
        _positive(side, "image_size")
    fingerprint = device_fingerprint(target)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(target.batch, config.in_channels, *image_size, generator=generator)
    runner = _onnx_run if target.runtime == "onnxruntime" else _torch_run
    with torch_threads(target.threads):
        run = runner(inference_arch(config), images, target)
        times, converged = time_runs(
            run,
            warmup=warmup,
            min_runs=min_runs,
            max_runs=max_runs,
            max_seconds=max_seconds,
            precision=precision,
        )
    median, iqr = _median_and_iqr(times)
    height, width = image_size
    return LatencyMeasurement(median, iqr, len(times), converged, (height, width), fingerprint)


def measure_in_fresh_process(
    config: DenseNetConfig,
    image_size: tuple[int, int],
    target: Target | None = None,
    **stopping: Any,
) -> LatencyMeasurement:
    """:func:`measure_latency` in a new Python process, started and ended for it.

    A fresh process holds none of the caller's warmed caches, allocator state or thread
    pools, so measurements made this way are independent of each other and of the caller.

    Example:
        >>> found = measure_in_fresh_process(DenseNetConfig(4, (1,), in_channels=1), (8, 8),
        ...                                  max_runs=10)
        >>> found.median_ms > 0 and found.fingerprint == device_fingerprint(Target())
        True
    """
    target = target or Target()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure_latency, config, image_size, target, **stopping).result()

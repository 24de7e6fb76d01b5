"""What makes training fast on the device at hand, decided in one place.

On a GPU: bf16 autocast (``precision="bf16-mixed"``) and cuDNN autotuning; the model
runs channels_last everywhere (set by :class:`~dense_nas.model.module.DenseNetModule`). On the
CPU: fp32 unless asked otherwise, ``torch.compile`` stays off (minutes of cold compile for
about ±10%), and glibc's malloc keeps freed memory for reuse (:func:`keep_freed_memory`).

Example:
    >>> speed_defaults("cpu")
    {'precision': '32-true'}
    >>> speed_defaults("cpu", "bf16-mixed")
    {'precision': 'bf16-mixed'}
    >>> resolve_accelerator("cpu")
    'cpu'
"""

from __future__ import annotations

import ctypes
import os
from typing import TYPE_CHECKING, Any

from dense_nas.errors import UserInputError

if TYPE_CHECKING:
    from dense_nas.space import SearchSpace, Task

ACCELERATORS = ("cpu", "gpu", "cuda", "auto")


#: Training multiply-accumulates per step (forward and backward: three times the forward
#: pass's MACs, times the batch) below which ``--accelerator auto`` trains on the CPU.
#: Between two measured points: the digits space (median 0.22 G a step) ran its default
#: search 3x slower on an H200 than on that machine's CPUs (kernel launches and a CUDA
#: start per trial process dominate), while DenseNet-BC-100 at 32x32, batch 64 (55 G a
#: step) trains about 40x faster on a GPU than on the CPU (benchmarks/RESULTS.md).
GPU_WORTHWHILE_STEP_MACS = 5e9


def resolve_accelerator(accelerator: str, step_macs: float | None = None) -> str:
    """``cpu`` or ``gpu``.

    ``auto`` picks the GPU when one is visible and a training step is big enough to pay
    for it: ``step_macs`` (see :func:`typical_step_macs`) of at least
    :data:`GPU_WORTHWHILE_STEP_MACS`; ``None`` (unknown) counts as big enough.

    Example:
        >>> resolve_accelerator("cpu")
        'cpu'
        >>> resolve_accelerator("auto", step_macs=2e8)  # digits-sized: the CPU, GPU or not
        'cpu'
    """
    import torch

    if accelerator not in ACCELERATORS:
        raise UserInputError(
            f"must be one of cpu, gpu, auto; got {accelerator!r}", param="accelerator"
        )
    if accelerator == "auto":
        if step_macs is not None and step_macs < GPU_WORTHWHILE_STEP_MACS:
            return "cpu"
        return "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise UserInputError(
                "gpu asked for but no CUDA device is visible; use cpu", param="accelerator"
            )
        return "gpu"
    return "cpu"


def step_macs(forward_macs: int, batch_size: int) -> float:
    """Multiply-accumulates of one training step: forward plus a backward pass of about
    twice its cost, over the batch.

    Example:
        >>> step_macs(1_000_000, 64)
        192000000.0
    """
    return 3.0 * forward_macs * batch_size


def typical_step_macs(space: SearchSpace, task: Task, draws: int = 16) -> float | None:
    """The median :func:`step_macs` of ``draws`` candidates the space draws at random
    (constraint-breaking ones skipped), or ``None`` when it draws none that fit.

    Example:
        >>> from dense_nas.space import Task, load_space
        >>> typical_step_macs(load_space("digits-tiny"), Task(10, 1, (8, 8))) < 1e9
        True
    """
    import statistics

    import optuna

    from dense_nas.model.cost import macs
    from dense_nas.space import sample

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    finally:
        optuna.logging.set_verbosity(verbosity)
    found: list[float] = []
    for _ in range(4 * draws):  # a tight constraint rejects many draws
        try:
            candidate = sample(space, study.ask(), task)
        except optuna.TrialPruned:
            continue
        found.append(
            step_macs(macs(candidate.arch, task.image_size), candidate.training.batch_size)
        )
        if len(found) == draws:
            break
    return statistics.median(found) if found else None


def gpu_assignment(workers: int, devices: int, count: int, visible: str | None) -> list[str]:
    """Each worker's ``CUDA_VISIBLE_DEVICES``.

    The rule: with one device per trial (``devices == 1``), worker ``i`` trains on GPU
    ``i mod G`` of the ``G`` visible ones, so ``--workers`` may exceed the GPUs and each GPU
    runs ``N / G`` trials at once (rounded up or down), each planning for its share of the
    GPU's memory (:mod:`dense_nas.study.memory_fit`). A multi-device (DDP) trial gets
    ``devices`` GPUs of its own, never shared, so ``workers x devices`` must not exceed
    ``G``.

    ``count`` is how many GPUs torch sees; ``visible`` is the launcher's own
    ``CUDA_VISIBLE_DEVICES``, whose entries (indices or UUIDs) are handed out in order.

    Example:
        >>> gpu_assignment(2, 1, 2, None)
        ['0', '1']
        >>> gpu_assignment(5, 1, 2, None)
        ['0', '1', '0', '1', '0']
        >>> gpu_assignment(2, 2, 4, "3,2,1,0")
        ['3,2', '1,0']
        >>> gpu_assignment(2, 2, 2, None)
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: workers: 2 workers x 2 devices need 4 GPUs (a DDP trial does not share its GPUs) but 2 are visible; lower --workers or --devices
    """
    if visible is None:
        ids = [str(i) for i in range(count)]
    else:
        ids = [d.strip() for d in visible.split(",") if d.strip()][:count]
    if not ids:
        raise UserInputError(
            "no CUDA device is visible; use --accelerator cpu", param="accelerator"
        )
    if devices == 1:
        return [ids[w % len(ids)] for w in range(workers)]
    if workers * devices > len(ids):
        raise UserInputError(
            f"{workers} workers x {devices} devices need {workers * devices} GPUs "
            "(a DDP trial does not share its GPUs) "
            f"but {len(ids)} {'is' if len(ids) == 1 else 'are'} visible; lower --workers or --devices",
            param="workers",
        )
    return [",".join(ids[w * devices : (w + 1) * devices]) for w in range(workers)]


def trials_per_gpu(assignment: list[str]) -> dict[str, int]:
    """How many workers train on each GPU at once under ``assignment``.

    Example:
        >>> trials_per_gpu(gpu_assignment(5, 1, 2, None))
        {'0': 3, '1': 2}
    """
    shares: dict[str, int] = {}
    for gpus in assignment:
        for gpu in gpus.split(","):
            shares[gpu] = shares.get(gpu, 0) + 1
    return shares


#: what ``--precision`` accepts: ``auto`` or a Lightning ``precision``
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")


def resolve_precision(accelerator: str, precision: str = "auto") -> str:
    """The Lightning ``precision`` to train with on ``accelerator`` (``cpu`` or ``gpu``).

    ``auto`` is ``bf16-mixed`` on a GPU and ``32-true`` on the CPU. On a CPU that
    computes in bf16 natively (AVX512-BF16, AMX), ``bf16-mixed`` trained
    DenseNet-BC-100 1.4 to 1.7 times faster than fp32, while the tiny networks of the
    digits space gained nothing (benchmarks/RESULTS.md); CPUs without native bf16
    emulate it.

    Example:
        >>> resolve_precision("gpu")
        'bf16-mixed'
        >>> resolve_precision("cpu", "16-mixed")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: precision: 16-mixed needs a GPU; on the CPU use bf16-mixed or 32-true
    """
    if precision not in PRECISIONS:
        raise UserInputError(
            f"must be one of {', '.join(PRECISIONS)}; got {precision!r}", param="precision"
        )
    if precision == "auto":
        return "bf16-mixed" if accelerator == "gpu" else "32-true"
    if precision == "16-mixed" and accelerator != "gpu":
        raise UserInputError(
            "16-mixed needs a GPU; on the CPU use bf16-mixed or 32-true", param="precision"
        )
    return precision


def speed_defaults(accelerator: str, precision: str = "auto") -> dict[str, Any]:
    """Trainer keyword arguments for speed on ``accelerator`` (``cpu`` or ``gpu``).

    ``precision`` is resolved by :func:`resolve_precision`; a GPU also gets cuDNN
    autotuning.
    """
    options: dict[str, Any] = {"precision": resolve_precision(accelerator, precision)}
    if accelerator == "gpu":
        options["benchmark"] = True
    return options


#: glibc ``mallopt`` parameters and the values :func:`keep_freed_memory` sets
_MALLOPT = (
    (-3, 1 << 30),  # M_MMAP_THRESHOLD: blocks up to 1 GiB come from the heap, not mmap
    (-1, 2**31 - 1),  # M_TRIM_THRESHOLD: never hand the heap's top back to the OS
    (-2, 1 << 28),  # M_TOP_PAD: grow the heap 256 MiB at a time
)
#: set to ``default`` to leave the C allocator as it is
ALLOCATOR_ENV = "DENSE_NAS_CPU_ALLOCATOR"


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed activation buffers instead of unmapping them.

    A CPU training step allocates and frees hundreds of multi-megabyte activations. By
    default glibc serves each from a fresh ``mmap`` and unmaps it on free, so every step
    page-faults all of its activation memory back in, and two threads fault slower than
    one: DenseNet-BC-100 at batch 64 trains about 1.5x faster with the memory kept
    (benchmarks/RESULTS.md). The process then holds on to its peak memory. Affects the
    whole process; does nothing where the C library is not glibc, or when the
    environment sets ``DENSE_NAS_CPU_ALLOCATOR=default``.

    Returns:
        Whether the settings were applied.

    Example:
        >>> keep_freed_memory() in (True, False)
        True
    """
    if os.environ.get(ALLOCATOR_ENV, "tuned") == "default":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in _MALLOPT)

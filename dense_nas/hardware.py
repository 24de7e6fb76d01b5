"""What makes training fast on the device at hand, decided in one place.

On a GPU: bf16 autocast (``precision="bf16-mixed"``) and cuDNN autotuning; the model
runs channels_last everywhere (set by :class:`~dense_nas.module.DenseNetModule`). On the
CPU: fp32, and ``torch.compile`` stays off (minutes of cold compile for about ±10%).

Example:
    >>> speed_defaults("cpu")
    {'precision': '32-true'}
    >>> resolve_accelerator("cpu")
    'cpu'
"""

from __future__ import annotations

from typing import Any

from dense_nas.errors import UserInputError

ACCELERATORS = ("cpu", "gpu", "cuda", "auto")


def resolve_accelerator(accelerator: str) -> str:
    """``cpu`` or ``gpu``: ``auto`` picks the GPU when one is visible."""
    import torch

    if accelerator not in ACCELERATORS:
        raise UserInputError(f"--accelerator: must be one of cpu, gpu, auto; got {accelerator!r}")
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise UserInputError(
                "--accelerator: gpu asked for but no CUDA device is visible; use cpu"
            )
        return "gpu"
    return "cpu"


def gpu_assignment(workers: int, devices: int, count: int, visible: str | None) -> list[str]:
    """Each worker's ``CUDA_VISIBLE_DEVICES``: ``devices`` GPUs of its own, none shared.

    ``count`` is how many GPUs torch sees; ``visible`` is the launcher's own
    ``CUDA_VISIBLE_DEVICES``, whose entries (indices or UUIDs) are handed out in order.

    Example:
        >>> gpu_assignment(2, 1, 2, None)
        ['0', '1']
        >>> gpu_assignment(2, 2, 4, "3,2,1,0")
        ['3,2', '1,0']
        >>> gpu_assignment(2, 1, 1, None)
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: --workers: 2 workers x 1 devices need 2 GPUs but 1 is visible; lower --workers or --devices
    """
    ids = [d.strip() for d in (visible or "").split(",") if d.strip()][:count]
    if visible is None:
        ids = [str(i) for i in range(count)]
    if workers * devices > len(ids):
        raise UserInputError(
            f"--workers: {workers} workers x {devices} devices need {workers * devices} GPUs "
            f"but {len(ids)} {'is' if len(ids) == 1 else 'are'} visible; lower --workers or --devices"
        )
    return [",".join(ids[w * devices : (w + 1) * devices]) for w in range(workers)]


def speed_defaults(accelerator: str) -> dict[str, Any]:
    """Trainer keyword arguments for speed on ``accelerator`` (``cpu`` or ``gpu``)."""
    if accelerator == "gpu":
        return {"precision": "bf16-mixed", "benchmark": True}
    return {"precision": "32-true"}

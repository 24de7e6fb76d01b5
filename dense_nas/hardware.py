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


def speed_defaults(accelerator: str) -> dict[str, Any]:
    """Trainer keyword arguments for speed on ``accelerator`` (``cpu`` or ``gpu``)."""
    if accelerator == "gpu":
        return {"precision": "bf16-mixed", "benchmark": True}
    return {"precision": "32-true"}

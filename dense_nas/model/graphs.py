"""Launch-free training steps: compile the network, fall back to eager when that fails.

A DenseNet step on a GPU at small batches is bound by kernel launches (about ten per
layer and pass: BN, ReLU, conv, concatenation; some 1,000 for DenseNet-BC-100), not by
arithmetic. ``torch.compile(mode="reduce-overhead")`` fuses the small kernels and
replays the step as a CUDA graph, at a one-off compile cost of a minute or more.
:func:`worth_capturing` decides per trial whether the steps it will run earn that back;
:class:`CompiledForward` runs the compiled network and, if compiling fails, the eager one,
with one warning, so a trial never fails for it.

Example:
    >>> from dense_nas.model.arch import preset
    >>> worth_capturing("gpu", preset("densenet-bc-100-12"), steps=300 * 782)
    True
    >>> worth_capturing("gpu", preset("densenet-bc-100-12"), steps=100)
    False
    >>> worth_capturing("cpu", preset("densenet-bc-100-12"), steps=300 * 782)
    False
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn

from dense_nas.errors import check_choice
from dense_nas.model.arch import DenseNetConfig

logger = logging.getLogger(__name__)

#: kernel launches per conv layer and training step (forward and backward), eager
LAUNCHES_PER_LAYER = 10
#: seconds one eager launch costs when the step is launch-bound (DenseNet-BC-100, batch 64,
#: bf16 on an H100: about 58 ms a step for about 1,000 launches, benchmarks/RESULTS.md)
SECONDS_PER_LAUNCH = 50e-6
#: what compiling and capturing a DenseNet step costs once per trial process, in seconds
COMPILE_SECONDS = 90.0
#: the saving must repay the compile this many times over before a trial captures
MARGIN = 2.0


#: what ``--compile`` accepts
COMPILE_CHOICES = ("auto", "on", "off")


def check_compile_choice(choice: str) -> None:
    """Refuse a ``compile`` choice that is not one of :data:`COMPILE_CHOICES`.

    Example:
        >>> check_compile_choice("auto")
        >>> check_compile_choice("fast")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: compile: must be one of auto, on, off, got 'fast'
    """
    check_choice(choice, COMPILE_CHOICES, "compile")


def compile_mode(
    choice: str, accelerator: str, arch: DenseNetConfig, steps: int | None
) -> bool | str:
    """The ``compile`` argument of :class:`~dense_nas.model.module.DenseNetModule` for a run.

    ``off``: eager. ``on``: compiled; on a GPU with CUDA graphs (``reduce-overhead``).
    ``auto`` (the default): CUDA graphs where :func:`worth_capturing` says the run's
    ``steps`` repay the compile, else eager (always eager on the CPU, and when the
    number of steps is unknown).

    Example:
        >>> from dense_nas.model.arch import preset
        >>> compile_mode("auto", "gpu", preset("densenet-bc-100-12"), 300 * 782)
        'reduce-overhead'
        >>> compile_mode("auto", "gpu", preset("densenet-bc-100-12"), None)
        False
        >>> compile_mode("on", "cpu", preset("densenet-40-12"), 10)
        True
    """
    check_compile_choice(choice)
    if choice == "off":
        return False
    if choice == "on":
        return "reduce-overhead" if accelerator == "gpu" else True
    if steps is None or not worth_capturing(accelerator, arch, steps):
        return False
    return "reduce-overhead"


def training_steps(datamodule: Any, epochs: int) -> int | None:
    """Optimizer steps of ``epochs`` epochs on ``datamodule`` (``None``: its loader has no
    length). Sets the datamodule up for ``fit``, as the Trainer would."""
    datamodule.setup("fit")
    try:
        return len(datamodule.train_dataloader()) * epochs
    except TypeError:  # an iterable loader without a length
        return None


def worth_capturing(accelerator: str, arch: DenseNetConfig, steps: int) -> bool:
    """Whether a trial of ``steps`` training steps should train compiled (GPU only).

    The launches saved (:data:`LAUNCHES_PER_LAYER` per conv layer and step, at
    :data:`SECONDS_PER_LAUNCH` each) must repay :data:`COMPILE_SECONDS` :data:`MARGIN`
    times; a short trial, and every CPU trial, stays eager.
    """
    if accelerator != "gpu":
        return False
    saved = arch.depth * LAUNCHES_PER_LAYER * SECONDS_PER_LAUNCH * steps
    return saved >= MARGIN * COMPILE_SECONDS


class CompiledForward:
    """Call a network compiled, or eager if compiling it fails (once, with a warning).

    Held outside the module's registered children, so checkpoints keep the eager
    network's parameter names.

    Args:
        network: the eager network.
        mode: ``torch.compile`` mode (``reduce-overhead`` captures CUDA graphs).
        backend: ``torch.compile`` backend.

    Example:
        >>> net = nn.Linear(3, 2)
        >>> def broken(graph, inputs):
        ...     raise RuntimeError("no compiler here")
        >>> forward = CompiledForward(net, backend=broken)
        >>> torch.equal(forward(torch.ones(1, 3)), net(torch.ones(1, 3)))
        True
        >>> forward.compiled
        False
    """

    def __init__(
        self,
        network: nn.Module,
        mode: str | None = "reduce-overhead",
        backend: str | Callable[..., Any] = "inductor",
    ) -> None:
        self.network = network
        self._compiled: Callable[[Tensor], Tensor] | None
        try:
            self._compiled = torch.compile(network, mode=mode, backend=backend)
        except Exception as err:  # an unknown backend or mode: train eager
            self._fall_back(err)
        self._proven = False

    @property
    def compiled(self) -> bool:
        """Whether calls go to the compiled network."""
        return self._compiled is not None

    def _fall_back(self, err: BaseException) -> None:
        logger.warning("torch.compile failed, training eager: %s", str(err).splitlines()[0])
        self._compiled = None

    def __call__(self, x: Tensor) -> Tensor:
        if self._compiled is None:
            return cast(Tensor, self.network(x))
        if self._proven:
            return self._compiled(x)
        try:  # the first call compiles: a failure there leaves eager as it was
            out = self._compiled(x)
        except Exception as err:
            self._fall_back(err)
            return cast(Tensor, self.network(x))
        self._proven = True
        return out

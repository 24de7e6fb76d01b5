"""Will a candidate's training step fit in the memory its trial may use?

Before a trial trains, on a GPU or on the CPU, its step's memory is estimated from the
cost model: the
activations autograd keeps (:func:`~dense_nas.model.cost.activation_memory`) plus the
weights, their gradients and the optimizer's state (SGD with momentum: one more copy),
all in fp32 but the activations, which take the precision's bytes. The estimate is
compared with the trial's share of the device (:func:`trial_budget`): of its GPU, or on
the CPU of the memory the machine has available when the search starts
(:func:`available_memory`), so that a candidate the machine cannot hold is pruned with
its figures instead of being killed by the kernel's OOM killer:

* it fits: the candidate trains as drawn;
* only memory-efficient mode fits (recomputing each layer's concatenation in the backward
  pass instead of keeping it): it trains that way, which changes speed, not results;
* not even that fits: the trial is pruned before training, with the figures as reason.

Example:
    >>> from dense_nas.model.arch import preset
    >>> cfg = preset("densenet-bc-100-12")
    >>> plan_memory(cfg, (32, 32), batch_size=64, budget_bytes=4 << 30).decision
    'as drawn'
    >>> plan_memory(cfg, (32, 32), batch_size=64, budget_bytes=1 << 30).decision
    'memory-efficient'
    >>> plan = plan_memory(cfg, (32, 32), batch_size=64, budget_bytes=500 << 20)
    >>> plan.decision
    'too big'
    >>> plan.reason
    'needs about 769 MiB in memory-efficient mode (2134 MiB as drawn), the trial may use 500 MiB'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.cost import estimate
from dense_nas.records import record_trial

if TYPE_CHECKING:
    import optuna

    from dense_nas.space import Candidate

Decision = Literal["as drawn", "memory-efficient", "too big"]

#: fp32 copies of the weights a training step holds: weights, gradients, momentum
WEIGHT_COPIES = 3
#: what a CUDA context, cuDNN workspaces and the allocator's slack take, per trial
RESERVED_BYTES = 768 << 20
#: the share of a device's memory trials may plan to use (the rest: fragmentation)
USABLE_SHARE = 0.9


@dataclass(frozen=True)
class MemoryPlan:
    """How a candidate trains given a memory budget, and the figures behind it."""

    decision: Decision
    needed_bytes: int  #: the step as drawn
    efficient_bytes: int  #: the step in memory-efficient mode
    budget_bytes: int

    @property
    def reason(self) -> str | None:
        """Why the trial does not train as drawn (``None`` when it does)."""
        if self.decision == "as drawn":
            return None
        lean, drawn, budget = (
            _mib(self.efficient_bytes),
            _mib(self.needed_bytes),
            _mib(self.budget_bytes),
        )
        if self.decision == "memory-efficient":
            return f"needs about {drawn} as drawn, the trial may use {budget}: memory-efficient mode ({lean})"
        return f"needs about {lean} in memory-efficient mode ({drawn} as drawn), the trial may use {budget}"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def activation_bytes_per_element(precision: str) -> int:
    """Bytes of one saved activation: 2 under 16-bit mixed precision, else 4.

    Example:
        >>> activation_bytes_per_element("bf16-mixed"), activation_bytes_per_element("32-true")
        (2, 4)
    """
    return 2 if precision.startswith(("bf16", "16")) else 4


def step_bytes(
    cfg: DenseNetConfig, image_size: tuple[int, int], batch_size: int, precision: str = "32-true"
) -> int:
    """Estimated bytes one training step of ``cfg`` holds on the device.

    Example:
        >>> from dense_nas.model.arch import preset
        >>> cfg = preset("densenet-40-12")
        >>> step_bytes(cfg, (32, 32), 64, "bf16-mixed") < step_bytes(cfg, (32, 32), 64)
        True
    """
    cost = estimate(cfg, image_size, batch_size, activation_bytes_per_element(precision))
    return cost.activation_bytes + WEIGHT_COPIES * 4 * cost.params


def plan_memory(
    cfg: DenseNetConfig,
    image_size: tuple[int, int],
    batch_size: int,
    budget_bytes: int,
    precision: str = "32-true",
) -> MemoryPlan:
    """Decide how ``cfg`` trains within ``budget_bytes`` (see the module docstring)."""
    drawn = step_bytes(cfg.replace(memory_efficient=False), image_size, batch_size, precision)
    lean = step_bytes(cfg.replace(memory_efficient=True), image_size, batch_size, precision)
    own = lean if cfg.memory_efficient else drawn  # a space may ask for the lean mode itself
    if own <= budget_bytes:
        decision: Decision = "as drawn"
    elif lean <= budget_bytes:
        decision = "memory-efficient"
    else:
        decision = "too big"
    return MemoryPlan(decision, own, lean, budget_bytes)


def trial_budget(device_bytes: int, trials_on_device: int) -> int:
    """The bytes one trial may plan for when ``trials_on_device`` share a device.

    Example:
        >>> trial_budget(80 << 30, 4) >> 20  # an 80 GiB GPU shared by four trials
        17664
    """
    if trials_on_device < 1:
        raise ValueError(f"trials_on_device: must be at least 1, got {trials_on_device}")
    return max(0, int(device_bytes * USABLE_SHARE) // trials_on_device - RESERVED_BYTES)


def available_memory() -> int | None:
    """Bytes of memory this process's machine (or its container's cgroup limit) can still
    give, or ``None`` where it does not say (not Linux).

    Example:
        >>> found = available_memory()
        >>> found is None or found > 0
        True
    """
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    try:  # a container's limit may be far below the machine's memory
        with (
            open("/sys/fs/cgroup/memory.max") as limit,
            open("/sys/fs/cgroup/memory.current") as current,
        ):
            cap = limit.read().strip()
            if cap != "max":
                available = min(available, int(cap) - int(current.read()))
    except (OSError, ValueError):
        pass
    return max(0, available)


def fit_to_memory(
    trial: optuna.Trial,
    candidate: Candidate,
    image_size: tuple[int, int],
    budget_bytes: int,
    precision: str,
    device: str = "GPU",
) -> Candidate:
    """The candidate as it trains within ``budget_bytes`` of the ``device`` (``GPU`` or
    ``CPU``, as the reason names it); records the decision on the trial.

    Raises:
        optuna.TrialPruned: not even memory-efficient mode fits; ``pruned_reason`` says
            by how much.

    Example:
        >>> import optuna
        >>> from dense_nas.model.arch import preset
        >>> from dense_nas.model.recipe import TrainingConfig
        >>> from dense_nas.space import Candidate
        >>> trial = optuna.create_study().ask()
        >>> big = Candidate(preset("densenet-bc-100-12"), TrainingConfig(batch_size=64))
        >>> fit_to_memory(trial, big, (32, 32), 1 << 30, "32-true").arch.memory_efficient
        True
        >>> trial.user_attrs["memory_mode"]
        'memory-efficient'
    """
    import optuna

    plan = plan_memory(
        candidate.arch, image_size, candidate.training.batch_size, budget_bytes, precision
    )
    if plan.decision == "as drawn":
        return candidate
    assert plan.reason is not None
    if plan.decision == "too big":
        reason = f"out of {device} memory before training: {plan.reason}"
        record_trial(trial, pruned_reason=reason)
        raise optuna.TrialPruned(plan.reason)
    record_trial(trial, memory_mode="memory-efficient", memory_reason=plan.reason)
    return dataclasses.replace(candidate, arch=candidate.arch.replace(memory_efficient=True))

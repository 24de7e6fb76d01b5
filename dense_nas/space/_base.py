"""The search-space contract: :class:`SearchSpace`, its :class:`Candidate`, its limits.

A space turns an Optuna trial into a :class:`Candidate` (an architecture and a training
recipe) for a :class:`Task` (what the data looks like). :func:`sample` then rejects a
candidate that breaks the space's :class:`Constraints` before any training, and the
study helpers enqueue a space's seeds and find an architecture trained before.

Example:
    >>> import optuna
    >>> from dense_nas.model.arch import DenseNetConfig
    >>> from dense_nas.model.recipe import TrainingConfig
    >>> class Tiny(SearchSpace):
    ...     name = "tiny"
    ...     description = "k in 4..8, one block of two layers"
    ...     constraints = Constraints(max_params=5_000)
    ...     def suggest(self, trial, task):
    ...         k = trial.suggest_int("growth_rate", 4, 8)
    ...         arch = DenseNetConfig(k, (2,), num_classes=task.num_classes,
    ...                               in_channels=task.in_channels)
    ...         return Candidate(arch, TrainingConfig(epochs=3))
    >>> study = optuna.create_study()
    >>> study.enqueue_trial({"growth_rate": 4})
    >>> study.enqueue_trial({"growth_rate": 8})
    >>> sample(Tiny(), study.ask(), Task(10, 1, (8, 8))).arch.block_layers
    (2,)
    >>> sample(Tiny(), study.ask(), Task(10, 1, (8, 8)))
    Traceback (most recent call last):
    ...
    optuna.exceptions.TrialPruned: params 6,634 > max_params 5,000
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from dense_nas.errors import UserInputError
from dense_nas.model import cost
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.recipe import TrainingConfig
from dense_nas.records import record_trial

if TYPE_CHECKING:
    from dense_nas.data import DenseNetDataModule


@dataclass(frozen=True)
class Task:
    """What the data gives a space: classes, image channels, image size, augmentation.

    Args:
        num_classes: outputs the network needs.
        in_channels: channels of the images.
        image_size: ``(height, width)`` of the images.
        augmented: whether training batches are augmented; :func:`sample` resolves an
            unset dropout by it (the paper's rule, see
            :meth:`~dense_nas.model.arch.DenseNetConfig.resolve_dropout`).

    Example:
        >>> Task(num_classes=10, in_channels=1, image_size=(8, 8)).image_size
        (8, 8)
    """

    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    augmented: bool = True

    @classmethod
    def from_datamodule(cls, datamodule: DenseNetDataModule) -> Task:
        """The task a datamodule poses, as a study reads it before any pixel is loaded.

        Example:
            >>> from dense_nas.data import make_datamodule
            >>> Task.from_datamodule(make_datamodule("digits", augment=False))
            Task(num_classes=10, in_channels=1, image_size=(8, 8), augmented=False)
        """
        return cls(
            datamodule.num_classes,
            datamodule.in_channels,
            datamodule.image_size,
            augmented=datamodule.augment,
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(self.image_size))
        size_ok = len(self.image_size) == 2 and all(
            isinstance(s, int) and s >= 1 for s in self.image_size
        )
        if not size_ok:
            raise ValueError(f"image_size: must be two positive integers, got {self.image_size}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes: must be at least 2, got {self.num_classes}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels: must be at least 1, got {self.in_channels}")


@dataclass(frozen=True)
class Candidate:
    """One point of a space: the architecture and how to train it.

    Example:
        >>> c = Candidate(DenseNetConfig(12, (4, 4)), TrainingConfig(lr=0.05))
        >>> Candidate.from_dict(c.to_dict()) == c
        True
    """

    arch: DenseNetConfig
    training: TrainingConfig

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON/YAML-safe) that :meth:`from_dict` reads back."""
        return {"arch": self.arch.to_dict(), "training": self.training.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        """Rebuild a candidate from :meth:`to_dict` output."""
        return cls(
            DenseNetConfig.from_dict(data["arch"]), TrainingConfig.from_dict(data["training"])
        )

    @property
    def key(self) -> str:
        """Canonical key of the architecture and its recipe, ``"<arch key>|<recipe>"``.

        Two candidates with one key train the same network the same way, so a study
        answers the second from the first (the trial's ``arch_key``).

        Example:
            >>> c = Candidate(DenseNetConfig(12, (4, 4)), TrainingConfig(lr=0.05))
            >>> c.key.startswith(c.arch.key + "|") and "lr=0.05" in c.key
            True
        """
        return f"{self.arch.key}|{self.training.key}"


@dataclass(frozen=True)
class Constraints:
    """Limits a candidate must meet before it is trained; ``None`` means no limit.

    Args:
        max_params: trainable parameters.
        max_macs: multiply-accumulates for one image at the task's image size.
        max_activation_memory: bytes autograd keeps for one training step at the
            candidate's batch size.
        max_latency_ms: milliseconds per batch measured on the study's latency target
            (``--latency-*``). It cannot be known from the architecture alone, so
            :meth:`violation` leaves it out; the worker measures it after the other
            limits pass (:mod:`dense_nas.study.latency_meter`).

    Example:
        >>> limits = Constraints(max_params=100_000)
        >>> big = Candidate(DenseNetConfig.from_depth(100, 12), TrainingConfig())
        >>> limits.violation(big, Task(10, 3, (32, 32)))
        'params 769,162 > max_params 100,000'
    """

    max_params: int | None = None
    max_macs: int | None = None
    max_activation_memory: int | None = None
    max_latency_ms: float | None = None

    def violation(self, candidate: Candidate, task: Task) -> str | None:
        """Why the candidate cannot be trained for the task, or ``None`` if it can.

        Besides the limits, an input too small for the candidate's transitions (its
        feature maps would shrink to nothing) is a violation.
        """
        reason = input_violation(candidate.arch, task.image_size)
        if reason is not None:
            return reason
        found = cost.estimate(candidate.arch, task.image_size, candidate.training.batch_size)
        measured = {
            "params": found.params,
            "macs": found.macs,
            "activation_memory": found.activation_bytes,
        }
        for name, value in measured.items():
            limit: int | None = getattr(self, f"max_{name}")
            if limit is not None and value > limit:
                return f"{name} {value:,} > max_{name} {limit:,}"
        return None


def input_violation(arch: DenseNetConfig, image_size: tuple[int, int]) -> str | None:
    """Why feature maps would shrink to nothing before the last block, or ``None``.

    Each transition halves the maps (2x2 average pooling), so an 8x8 input leaves 1x1
    maps after three transitions and nothing after four.

    Example:
        >>> input_violation(DenseNetConfig(4, (1,) * 5, in_channels=1), (8, 8))
        'input 8x8 too small for 5 blocks: the maps before block 5 would be 0x0; use fewer blocks'
    """
    _, size = cost.stem_size(arch, image_size)
    for block in range(2, len(arch.block_layers) + 1):
        size = (size[0] // 2, size[1] // 2)
        if min(size) < 1:
            return (
                f"input {image_size[0]}x{image_size[1]} too small for "
                f"{len(arch.block_layers)} blocks: the maps before block {block} would be "
                f"{size[0]}x{size[1]}; use fewer blocks"
            )
    return None


class SearchSpace(abc.ABC):
    """A search space: turns an Optuna trial into a :class:`Candidate`.

    Subclass it to write a space in Python: set ``name`` and ``description``, optionally
    ``constraints`` and ``seeds`` (Optuna parameter dicts to try first), and implement
    :meth:`suggest`. The class must be constructible with no arguments, so that
    ``load_space("my_pkg.spaces:MySpace")`` and plugin entry points can build it.

    ``max_epochs`` is the most epochs any candidate trains. Hyperband sizes its brackets
    from it, so set it when you know it; left ``None``, Hyperband learns it from the first
    trial that finishes, which trains the earliest trials in full. YAML spaces set it from
    ``training.epochs`` (the fixed value, or the largest it can take).

    Example:
        >>> from dense_nas.model.arch import DenseNetConfig
        >>> from dense_nas.model.recipe import TrainingConfig
        >>> class Basic40(SearchSpace):
        ...     name = "basic-40"
        ...     description = "DenseNet L=40 with k in {12, 24}"
        ...     seeds = ({"growth_rate": 12},)
        ...     def suggest(self, trial, task):
        ...         k = trial.suggest_categorical("growth_rate", [12, 24])
        ...         arch = DenseNetConfig.from_depth(
        ...             40, k, bottleneck=False, compression=1.0,
        ...             num_classes=task.num_classes, in_channels=task.in_channels)
        ...         return Candidate(arch, TrainingConfig())
        >>> trial = optuna.trial.FixedTrial({"growth_rate": 24})
        >>> Basic40().suggest(trial, Task(10, 3, (32, 32))).arch.depth
        40
    """

    name: str = ""
    description: str = ""
    constraints: Constraints = Constraints()
    seeds: Sequence[Mapping[str, Any]] = ()
    max_epochs: int | None = None

    @abc.abstractmethod
    def suggest(self, trial: optuna.Trial, task: Task) -> Candidate:
        """Draw one candidate for the task from the trial's parameters.

        Only draw here (``trial.suggest_*``); :func:`sample` applies the constraints.
        """

    def check(self, task: Task) -> None:
        """Raise :class:`~dense_nas.errors.UserInputError` if no candidate can fit the task.

        The default checks nothing; spaces that can tell (the YAML spaces) override it, so
        that a study fails at once rather than pruning every trial.
        """
        return None


def sample(space: SearchSpace, trial: optuna.Trial, task: Task) -> Candidate:
    """Draw a candidate and reject it, before any training, if it breaks a constraint.

    A dropout the space left unset is resolved here, once, by the paper's rule for the
    task's data (0.2 without augmentation, 0 with it), so the candidate returned is the
    network that trains. The trial gets user attributes ``params`` and ``macs`` (at the
    task's image size); a rejected one also gets ``pruned_reason`` and raises
    :class:`optuna.TrialPruned`.

    Raises:
        optuna.TrialPruned: the candidate breaks a constraint.
        UserInputError: the space built a candidate for another task.

    Example:
        >>> import optuna
        >>> from dense_nas.space import load_space
        >>> study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        >>> trial = study.ask()
        >>> candidate = sample(load_space("digits-tiny"), trial, Task(10, 1, (8, 8)))
        >>> trial.user_attrs["params"] == cost.params(candidate.arch)
        True
        >>> sample(load_space("digits-tiny"), study.ask(), Task(10, 1, (8, 8), augmented=False)
        ...        ).arch.dropout
        0.2
    """
    drawn = space.suggest(trial, task)
    candidate = dataclasses.replace(drawn, arch=drawn.arch.resolve_dropout(task.augmented))
    _check_task_fields(space, candidate.arch, task)
    found = cost.estimate(candidate.arch, task.image_size)
    record_trial(trial, params=found.params, macs=found.macs)
    reason = space.constraints.violation(candidate, task)
    if reason is not None:
        record_trial(trial, pruned_reason=reason)
        raise optuna.TrialPruned(reason)
    return candidate


def _check_task_fields(space: SearchSpace, arch: DenseNetConfig, task: Task) -> None:
    for name in ("num_classes", "in_channels"):
        got, wanted = getattr(arch, name), getattr(task, name)
        if got != wanted:
            raise UserInputError(
                f"space {space.name or type(space).__name__}: suggest() built {name}={got} but "
                f"the data has {wanted}; take {name} from the task argument"
            )


def enqueue_seeds(study: optuna.Study, space: SearchSpace) -> int:
    """Enqueue the space's seeds into a study that has no trials yet.

    A study that already has trials other than enqueued ones (a resumed or shared study)
    gets nothing, so seeds run once per study however many times a search starts; a seed
    already enqueued is not enqueued again.

    Returns:
        How many trials were enqueued.

    Example:
        >>> import optuna
        >>> from dense_nas.space import load_space
        >>> study = optuna.create_study()
        >>> space = load_space("densenet-bc-cifar")
        >>> enqueue_seeds(study, space) == len(space.seeds), enqueue_seeds(study, space)
        (True, 0)
    """
    waiting = (optuna.trial.TrialState.WAITING,)  # a warm start's trials, enqueued first
    trials = study.get_trials(deepcopy=False)
    if any(t.state not in waiting for t in trials):
        return 0
    for params in space.seeds:
        study.enqueue_trial(dict(params), skip_if_exists=True)
    return len(study.get_trials(deepcopy=False, states=waiting)) - len(trials)

"""The best trials of a dense-nas study and the trained network behind them.

Every completed trial of a dense-nas study carries its accuracy (the first objective),
its size (user attrs ``params`` and ``macs``), its architecture as plain values (user attr
``arch``) and the artifact id of its Lightning checkpoint. This module picks a trial from
the Pareto front of accuracy against size and rebuilds its network safely: the
architecture comes from the plain values on the trial, the checkpoint is read with
``torch.load(weights_only=True)`` (nothing in the file is executed), and a checkpoint of
another architecture is refused.

A pick rule chooses one trial of the front (the non-dominated set of highest accuracy
against fewest parameters, or fewest MACs for an ``accuracy,macs`` study; single-objective
studies have a front too):

- ``"accuracy"`` (default): the most accurate trial; among equals, the smallest.
- ``"smallest"``: the smallest trial of the front.
- ``"knee"``: the trial of the front farthest from the straight line joining its two
  ends, with accuracy and log10(size) each scaled to [0, 1]: where a little more size
  stops buying much accuracy.

``max_params`` first drops every trial with more parameters, then the rule applies.

Example:
    >>> import optuna
    >>> from optuna.distributions import IntDistribution
    >>> study = optuna.create_study(directions=["maximize", "minimize"])
    >>> for acc, size in [(0.90, 1_000), (0.95, 2_000), (0.96, 50_000), (0.94, 9_000)]:
    ...     study.add_trial(optuna.trial.create_trial(
    ...         values=[acc, size], user_attrs={"params": size, "macs": 10 * size}))
    >>> [t.number for t in pareto_front(study.trials)]
    [0, 1, 2]
    >>> select_trial(study).number, select_trial(study, pick="smallest").number
    (2, 0)
    >>> select_trial(study, pick="knee").number, select_trial(study, max_params=5_000).number
    (1, 1)
"""

from __future__ import annotations

import math
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import optuna
import torch
from optuna.artifacts import download_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from dense_nas.errors import UserInputError
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.module import DenseNetModule
from dense_nas.model.recipe import TrainingConfig
from dense_nas.study.storage import ARTIFACT_ATTR, artifact_store, open_study

Pick = Literal["accuracy", "smallest", "knee"]
PICKS: tuple[str, ...] = get_args(Pick)
"""The pick rules :func:`select_trial` accepts."""

SizeMetric = Literal["params", "macs"]

DEFAULT_OUT = Path("dense-nas-runs")


def accuracy(trial: FrozenTrial) -> float:
    """Validation accuracy of a completed trial: the first objective of every dense-nas study.

    Example:
        >>> import optuna
        >>> accuracy(optuna.trial.create_trial(values=[0.93, 1200]))
        0.93
    """
    values = trial.values
    if not values:
        raise UserInputError(f"--trial: trial {trial.number} has no result ({trial.state.name})")
    return float(values[0])


def size_metric(study: optuna.Study) -> SizeMetric:
    """The size a study trades accuracy against: MACs for ``accuracy,macs``, else parameters.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> size_metric(study)
        'params'
        >>> study.set_user_attr("objective", "accuracy,macs")
        >>> size_metric(study)
        'macs'
    """
    return "macs" if study.user_attrs.get("objective") == "accuracy,macs" else "params"


def trial_size(trial: FrozenTrial, metric: SizeMetric = "params") -> int:
    """A trial's parameter or MAC count (user attr ``params`` / ``macs``).

    Example:
        >>> import optuna
        >>> trial_size(optuna.trial.create_trial(value=0.9, user_attrs={"params": 42}))
        42
    """
    size = trial.user_attrs.get(metric)
    if size is None:
        raise UserInputError(
            f"--study: trial {trial.number} records no {metric!r}; was it made by dense-nas?"
        )
    return int(size)


def learning_curve(trial: FrozenTrial) -> dict[int, float]:
    """Validation accuracy after each epoch, wherever the study kept it.

    Single-objective studies keep it as Optuna intermediate values; multi-objective ones
    (where Optuna has none) in the user attr ``intermediate``, keyed by the epoch as text.

    Example:
        >>> import optuna
        >>> t = optuna.trial.create_trial(values=[0.9, 10], user_attrs={
        ...     "intermediate": {"1": 0.5, "2": 0.9}})
        >>> learning_curve(t)
        {1: 0.5, 2: 0.9}
    """
    if trial.intermediate_values:
        return {int(step): float(v) for step, v in sorted(trial.intermediate_values.items())}
    stored: Mapping[str, float] = trial.user_attrs.get("intermediate") or {}
    return {int(step): float(v) for step, v in sorted(stored.items(), key=lambda kv: int(kv[0]))}


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The completed trials, or one line saying the study has none yet.

    Example:
        >>> import optuna
        >>> completed_trials(optuna.create_study(study_name="empty"))
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: --study: study 'empty' has no completed trials yet; run dense-nas search (or wait for a running one) first
    """
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        raise UserInputError(
            f"--study: study {study.study_name!r} has no completed trials yet; "
            "run dense-nas search (or wait for a running one) first"
        )
    return trials


def pareto_front(trials: Sequence[FrozenTrial], metric: SizeMetric = "params") -> list[FrozenTrial]:
    """Trials no other trial beats on both accuracy (higher) and size (lower), smallest first.

    Of several trials with equal accuracy and size (a duplicate architecture) only the
    first is kept. Along the returned list size and accuracy both strictly increase.

    Example:
        >>> import optuna
        >>> trials = [optuna.trial.create_trial(value=a, user_attrs={"params": p})
        ...           for a, p in [(0.9, 100), (0.8, 200), (0.95, 300), (0.9, 100)]]
        >>> [(t.value, trial_size(t)) for t in pareto_front(trials)]
        [(0.9, 100), (0.95, 300)]
    """
    ordered = sorted(trials, key=lambda t: (trial_size(t, metric), -accuracy(t), t.number))
    front: list[FrozenTrial] = []
    for trial in ordered:
        if not front or accuracy(trial) > accuracy(front[-1]):
            front.append(trial)
    return front


def _knee(front: Sequence[FrozenTrial], metric: SizeMetric) -> FrozenTrial:
    """The point of the front farthest from the chord between its ends (scaled axes)."""
    if len(front) < 3:
        return front[-1]  # no bend to find: the most accurate
    xs = [math.log10(max(trial_size(t, metric), 1)) for t in front]
    ys = [accuracy(t) for t in front]
    x_span, y_span = (xs[-1] - xs[0]) or 1.0, (ys[-1] - ys[0]) or 1.0
    points = [((x - xs[0]) / x_span, (y - ys[0]) / y_span) for x, y in zip(xs, ys, strict=True)]
    # The chord runs from (0, 0) to (1, 1) after scaling; distance is |y - x| / sqrt(2).
    distances = [abs(y - x) for x, y in points]
    return front[distances.index(max(distances))]


def _trial_by_number(study: optuna.Study, number: int) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.number == number:
            return trial
    raise UserInputError(
        f"--trial: study {study.study_name!r} has no trial {number} "
        f"(it has trials 0 to {len(trials) - 1})"
    )


def select_trial(
    study: optuna.Study,
    *,
    trial: int | None = None,
    pick: str = "accuracy",
    max_params: int | None = None,
) -> FrozenTrial:
    """The completed trial to load: the one numbered ``trial``, or the front's by ``pick``.

    Args:
        study: a dense-nas study.
        trial: a trial number; it must be COMPLETE. ``pick`` and ``max_params`` then
            do not apply.
        pick: ``"accuracy"``, ``"smallest"`` or ``"knee"`` (see the module docstring).
        max_params: consider only trials with at most this many parameters.

    Raises:
        UserInputError: no completed trial, no such trial, an unknown pick, or no trial
            within ``max_params``.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(study_name="demo")
        >>> study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={"params": 10}))
        >>> select_trial(study, pick="largest")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: --pick: must be one of accuracy, smallest, knee, got 'largest'
    """
    if pick not in PICKS:
        raise UserInputError(f"--pick: must be one of {', '.join(PICKS)}, got {pick!r}")
    if trial is not None:
        chosen = _trial_by_number(study, trial)
        if chosen.state != TrialState.COMPLETE:
            raise UserInputError(
                f"--trial: trial {trial} is {chosen.state.name}; only completed trials "
                "can be loaded"
            )
        return chosen
    candidates = completed_trials(study)
    if max_params is not None:
        candidates = [t for t in candidates if trial_size(t) <= max_params]
        if not candidates:
            smallest = min(trial_size(t) for t in completed_trials(study))
            raise UserInputError(
                f"--max-params: no completed trial has at most {max_params} parameters "
                f"(the smallest has {smallest})"
            )
    metric = size_metric(study)
    front = pareto_front(candidates, metric)
    if pick == "smallest":
        return front[0]
    if pick == "knee":
        return _knee(front, metric)
    return front[-1]


def trial_arch(trial: FrozenTrial) -> DenseNetConfig:
    """The trial's architecture, rebuilt from the plain values in user attr ``arch``.

    Example:
        >>> import optuna
        >>> t = optuna.trial.create_trial(value=0.9, user_attrs={
        ...     "arch": {"growth_rate": 8, "block_layers": [2, 2], "in_channels": 1}})
        >>> trial_arch(t).depth
        11
    """
    return DenseNetConfig.from_dict(_plain_attr(trial, "arch"))


def trial_training(trial: FrozenTrial) -> TrainingConfig:
    """The trial's training recipe, rebuilt from the plain values in user attr ``training``.

    Example:
        >>> import optuna
        >>> t = optuna.trial.create_trial(value=0.9, user_attrs={"training": {"epochs": 12}})
        >>> trial_training(t).milestones()
        [6, 9]
    """
    return TrainingConfig.from_dict(_plain_attr(trial, "training"))


def _plain_attr(trial: FrozenTrial, name: str) -> Mapping[str, Any]:
    value = trial.user_attrs.get(name)
    if not isinstance(value, Mapping):
        raise UserInputError(
            f"--study: trial {trial.number} records no {name!r}; was it made by dense-nas?"
        )
    return value


def checkpoint_owner(study: optuna.Study, trial: FrozenTrial) -> FrozenTrial:
    """The trial whose checkpoint holds ``trial``'s weights (following ``duplicate_of``).

    A trial that repeated an architecture already trained reuses that trial's result
    and has no checkpoint of its own.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> study.add_trial(optuna.trial.create_trial(value=0.9))
        >>> study.add_trial(optuna.trial.create_trial(value=0.9,
        ...                                           user_attrs={"duplicate_of": 0}))
        >>> checkpoint_owner(study, study.trials[1]).number
        0
    """
    seen = {trial.number}
    while "duplicate_of" in trial.user_attrs:
        trial = _trial_by_number(study, int(trial.user_attrs["duplicate_of"]))
        if trial.number in seen:
            raise UserInputError(f"--study: trials {sorted(seen)} name each other as duplicate_of")
        seen.add(trial.number)
    return trial


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint read weights-only: tensors and plain values, no code run.

    Raises:
        UserInputError: the file is not a weights-only checkpoint (or is corrupt).

    Example:
        >>> import pathlib, tempfile, torch
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.ckpt"
        >>> torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, path)
        >>> read_checkpoint(path)["epoch"]
        3
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserInputError(
            f"checkpoint: {path} is not a weights-only checkpoint ({reason})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserInputError(f"checkpoint: {path} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


def differing_hparams(checkpoint: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Names of the hyperparameters whose value in the checkpoint is not the expected one.

    Example:
        >>> differing_hparams({"hyper_parameters": {"lr": 0.1, "epochs": 3}},
        ...                   {"lr": 0.1, "epochs": 5})
        ['epochs']
    """
    stored = checkpoint.get("hyper_parameters") or {}
    return [name for name in expected if stored.get(name) != expected[name]]


def module_from_checkpoint(
    checkpoint: Mapping[str, Any], arch: DenseNetConfig, training: TrainingConfig
) -> DenseNetModule:
    """A module built from ``arch`` and ``training`` holding the checkpoint's weights.

    Raises:
        UserInputError: the checkpoint was trained for another architecture.

    Example:
        >>> trained = DenseNetModule(DenseNetConfig(4, (1,), in_channels=1))
        >>> checkpoint = {"hyper_parameters": dict(trained.hparams),
        ...               "state_dict": trained.state_dict()}
        >>> module_from_checkpoint(checkpoint, trained.config, TrainingConfig()).training
        False
        >>> module_from_checkpoint(checkpoint, DenseNetConfig(6, (1,), in_channels=1),
        ...                        TrainingConfig())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: checkpoint: holds another architecture (...k=4...) than the trial (...k=6...); the study and its artifact store do not match
    """
    stored = _arch_key((checkpoint.get("hyper_parameters") or {}).get("config"))
    if stored != arch.key:
        raise UserInputError(
            f"checkpoint: holds another architecture ({stored}) than the trial "
            f"({arch.key}); the study and its artifact store do not match"
        )
    module = DenseNetModule.from_candidate(arch, training)
    # A network trained under torch.compile saves its weights under "_orig_mod.".
    state = {key.replace("._orig_mod.", "."): v for key, v in checkpoint["state_dict"].items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserInputError(
            f"checkpoint: its weights do not fit architecture {arch.key} "
            f"({str(err).splitlines()[0]})"
        ) from None
    return module.eval()


def _arch_key(config: Any) -> str:
    """The key of a checkpoint's stored architecture (what decides its weights' shapes)."""
    try:
        return DenseNetConfig.from_dict(config).key
    except (TypeError, ValueError):
        return "unreadable"


def load_trial(study: optuna.Study, trial: FrozenTrial) -> DenseNetModule:
    """The trained module of a completed trial, in eval mode on the CPU.

    The checkpoint is downloaded from the study's artifact store to a temporary file
    and read weights-only; the architecture is rebuilt from the trial's plain values.

    Raises:
        UserInputError: no checkpoint recorded or found, an unsafe or corrupt file, or
            weights of another architecture.

    Example:
        >>> study = optuna.load_study(study_name="demo",
        ...                           storage="sqlite:///runs/dense-nas.db")  # doctest: +SKIP
        >>> load_trial(study, study.trials[3]).config.growth_rate  # doctest: +SKIP
        12
    """
    owner = checkpoint_owner(study, trial)
    artifact_id = owner.user_attrs.get("checkpoint")
    if not artifact_id:
        raise UserInputError(f"--trial: trial {owner.number} has no checkpoint recorded")
    store = artifact_store(study)
    with tempfile.TemporaryDirectory(prefix="dense-nas-") as tmp:
        path = Path(tmp) / f"trial-{owner.number}.ckpt"
        try:
            download_artifact(artifact_store=store, file_path=str(path), artifact_id=artifact_id)
        except (ArtifactNotFound, ValueError):  # ValueError: an id that is not a plain name
            root = study.user_attrs.get(ARTIFACT_ATTR)
            raise UserInputError(
                f"checkpoint: artifact {artifact_id} of trial {owner.number} is not in the "
                f"artifact store {root}; is that directory reachable from this machine?"
            ) from None
        checkpoint = read_checkpoint(path)
    return module_from_checkpoint(checkpoint, trial_arch(trial), trial_training(trial))


def study_image_size(study: optuna.Study) -> tuple[int, int]:
    """The ``(height, width)`` of the study's images (user attr ``image_size``).

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> study.set_user_attr("image_size", [8, 8])
        >>> study_image_size(study)
        (8, 8)
    """
    size = study.user_attrs.get("image_size")
    if not isinstance(size, Sequence) or len(size) != 2:
        raise UserInputError(
            f"--study: study {study.study_name!r} records no image_size; was it made by dense-nas?"
        )
    return int(size[0]), int(size[1])


def find_trial(
    storage: str | None,
    study_name: str | None,
    trial: int | None = None,
    *,
    pick: str = "accuracy",
    max_params: int | None = None,
    out: Path = DEFAULT_OUT,
) -> tuple[optuna.Study, FrozenTrial]:
    """Open a study and choose a trial (:func:`select_trial`): what every command starts with.

    Example:
        >>> study, trial = find_trial("sqlite:///runs/dense-nas.db", "demo")  # doctest: +SKIP
        >>> trial.number  # doctest: +SKIP
        7
    """
    study = open_study(storage, study_name, out)
    return study, select_trial(study, trial=trial, pick=pick, max_params=max_params)


def load_best(
    storage: str | None,
    study_name: str | None,
    trial: int | None = None,
    *,
    pick: str = "accuracy",
    max_params: int | None = None,
    out: Path = DEFAULT_OUT,
) -> DenseNetModule:
    """The best trial's trained :class:`~dense_nas.model.module.DenseNetModule`, in eval mode.

    Works from any machine that reaches the storage and the study's artifact store.

    Args:
        storage: the study's storage URL or journal path (``None``: SQLite in ``out``).
        study_name: the study; ``None``: the storage's only study.
        trial: load this trial number instead of picking one.
        pick: ``"accuracy"`` (default), ``"smallest"`` or ``"knee"``: which trial of the
            Pareto front of accuracy against size (see the module docstring).
        max_params: pick only among trials with at most this many parameters.
        out: where the default storage lives when ``storage`` is ``None``.

    Returns:
        The module on the CPU, in eval mode, with the trial's weights. Its inputs are
        batches normalised as the study's datamodule normalises them.

    Raises:
        UserInputError: a missing study, no completed trial, no matching trial, or a
            checkpoint that is missing, unsafe, or of another architecture.

    Example:
        >>> import torch
        >>> module = load_best("sqlite:///runs/dense-nas.db", "demo")  # doctest: +SKIP
        >>> module(torch.randn(4, 1, 8, 8)).argmax(dim=1)  # doctest: +SKIP
        tensor([3, 8, 1, 1])
    """
    study, chosen = find_trial(
        storage, study_name, trial, pick=pick, max_params=max_params, out=out
    )
    return load_trial(study, chosen)

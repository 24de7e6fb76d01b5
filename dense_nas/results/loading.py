"""The chosen trial's trained network, rebuilt safely, from any machine.

The trial is chosen by :func:`~dense_nas.results.selection.select_trial`. Its
architecture comes from the plain values on the trial (user attr ``arch``), its
checkpoint from the study's artifact store, read with ``torch.load(weights_only=True)``
(nothing in the file is executed), and a checkpoint of another architecture is refused.

Example:
    >>> module = load_best("sqlite:///runs/dense-nas.db", "demo")  # doctest: +SKIP
    >>> module.training  # doctest: +SKIP
    False
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import download_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

from dense_nas.errors import UserInputError
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.module import DenseNetModule
from dense_nas.model.recipe import TrainingConfig
from dense_nas.records import ARTIFACT_ROOT_ATTR, study_attrs, trial_attrs
from dense_nas.results.selection import check_pick, select_entry, trial_by_number
from dense_nas.study.storage import artifact_store, open_study

DEFAULT_OUT = Path("dense-nas-runs")


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
        >>> trial_training(t).milestone_epochs()
        [6, 9]
    """
    return TrainingConfig.from_dict(_plain_attr(trial, "training"))


def _plain_attr(trial: FrozenTrial, name: str) -> Mapping[str, Any]:
    value = trial.user_attrs.get(name)  # "arch" or "training" (records.TrialAttrs)
    if not isinstance(value, Mapping):
        raise UserInputError(
            f"trial {trial.number} records no {name!r}; was it made by dense-nas?",
            param="study_name",
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
    while (earlier := trial_attrs(trial).get("duplicate_of")) is not None:
        trial = trial_by_number(study, earlier)
        if trial.number in seen:
            raise UserInputError(
                f"trials {sorted(seen)} name each other as duplicate_of", param="study_name"
            )
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
    artifact_id = trial_attrs(owner).get("checkpoint")
    if not artifact_id:
        raise UserInputError(f"trial {owner.number} has no checkpoint recorded", param="trial")
    store = artifact_store(study)
    with tempfile.TemporaryDirectory(prefix="dense-nas-") as tmp:
        path = Path(tmp) / f"trial-{owner.number}.ckpt"
        try:
            download_artifact(artifact_store=store, file_path=str(path), artifact_id=artifact_id)
        except (ArtifactNotFound, ValueError):  # ValueError: an id that is not a plain name
            root = study.user_attrs.get(ARTIFACT_ROOT_ATTR)
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
    size = study_attrs(study).get("image_size")
    if not isinstance(size, Sequence) or len(size) != 2:
        raise UserInputError(
            f"study {study.study_name!r} records no image_size; was it made by dense-nas?",
            param="study_name",
        )
    return int(size[0]), int(size[1])


def find_trial(
    storage: str | None,
    study_name: str | None,
    trial: int | str | None = None,
    *,
    pick: str = "accuracy",
    max_params: int | None = None,
    max_latency_ms: float | None = None,
    out: Path = DEFAULT_OUT,
) -> tuple[optuna.Study, FrozenTrial]:
    """Open a study and choose a trial (:func:`select_trial`): what every command starts with.

    Returns:
        The Optuna study that holds the trial (for a study that grew, the version that
        trained it: its checkpoint is in that study's artifact store) and the trial.

    Example:
        >>> study, trial = find_trial("sqlite:///runs/dense-nas.db", "demo")  # doctest: +SKIP
        >>> trial.number  # doctest: +SKIP
        7
    """
    check_pick(pick)  # bad input stops before the storage is opened (or created)
    study = open_study(storage, study_name, out)
    chosen = select_entry(
        study, trial=trial, pick=pick, max_params=max_params, max_latency_ms=max_latency_ms
    )
    return chosen.study, chosen.trial


def load_best(
    storage: str | None,
    study_name: str | None,
    trial: int | str | None = None,
    *,
    pick: str = "accuracy",
    max_params: int | None = None,
    max_latency_ms: float | None = None,
    out: Path = DEFAULT_OUT,
) -> DenseNetModule:
    """The best trial's trained :class:`~dense_nas.model.module.DenseNetModule`, in eval mode.

    Works from any machine that reaches the storage and the study's artifact store.

    Args:
        storage: the study's storage URL or journal path (``None``: SQLite in ``out``).
        study_name: the study; ``None``: the storage's only study.
        trial: load this trial instead of picking one: its number, or ``vK:N`` for
            trial N of the study's version K (a study that grew).
        pick: ``"accuracy"`` (default: the best metric), ``"smallest"`` or ``"knee"``:
            which trial of the Pareto front of the study's metric against size (see
            :mod:`~dense_nas.results.selection`).
        max_params: pick only among trials with at most this many parameters.
        max_latency_ms: pick only among trials whose latency, measured on the study's
            target before they trained, is at most this many milliseconds per batch.
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
        storage,
        study_name,
        trial,
        pick=pick,
        max_params=max_params,
        max_latency_ms=max_latency_ms,
        out=out,
    )
    return load_trial(study, chosen)

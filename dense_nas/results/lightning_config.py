"""A LightningCLI config for a trial: ``dense-nas best --config PATH``.

The file trains the trial's network with its recipe outside dense-nas, under
``python -m dense_nas.lightning fit --config PATH`` or a user's own
``LightningCLI(DenseNetModule)`` script:

- ``model:`` the arguments of :class:`~dense_nas.model.module.DenseNetModule`: the
  architecture as ``config`` and the recipe's fields beside it (:func:`model_section`);
- ``data:`` the study's datamodule as ``class_path``/``init_args``
  (:func:`datamodule_section`);
- ``trainer:`` the recipe's epochs as ``max_epochs``, plus the study's
  ``--trainer-config`` options and callbacks;
- ``seed_everything:`` the seed the trial trained with.

Example:
    >>> datamodule_section({"data": "digits", "val_size": 0.1, "seed": 0}, batch_size=64)
    {'class_path': 'dense_nas.data.DigitsDataModule', 'init_args': {'batch_size': 64, 'val_size': 0.1, 'seed': 0}}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial

from dense_nas.data import DATAMODULE_CLASSES
from dense_nas.data._user import call_arguments, datamodule_target, is_builtin
from dense_nas.errors import UserInputError
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.recipe import TrainingConfig
from dense_nas.records import study_attrs
from dense_nas.results.loading import trial_arch, trial_training

_HEADER = """\
# LightningCLI config of trial {number} of study {study!r}, written by dense-nas best --config.
# Train it: python -m dense_nas.lightning fit --config {name}
# (or with a script of your own that calls LightningCLI(DenseNetModule)).
"""


def model_section(arch: DenseNetConfig, training: TrainingConfig) -> dict[str, Any]:
    """DenseNetModule's arguments: the architecture and the recipe fields the recipe reads.

    The other optimizer's fields (and a cosine schedule's milestones) are left out: the
    file shows how the trial trained, not settings that played no part.

    Example:
        >>> section = model_section(DenseNetConfig(4, (1,)),
        ...                         TrainingConfig(optimizer="adamw", lr=1e-3, epochs=3))
        >>> section["optimizer"], section["betas"], "momentum" in section
        ('adamw', [0.9, 0.999], False)
    """
    unused = training.unused_fields()
    recipe = {name: value for name, value in training.to_dict().items() if name not in unused}
    return {"config": arch.to_dict(), **recipe}


def datamodule_section(recorded: Mapping[str, Any], batch_size: int) -> dict[str, Any]:
    """The study's datamodule as a LightningCLI ``class_path``/``init_args`` mapping.

    ``recorded`` is the study's attributes (:class:`~dense_nas.records.StudyAttrs`). A
    built-in dataset gives its DataModule class with the split the study recorded and
    the trial's batch size; a user's own datamodule (``data`` as ``module:Class`` with
    recorded ``data_args``) gives that class with those arguments.

    Raises:
        UserInputError: a ``folder`` dataset (its datamodule is built from a scan of the
            folder, not from arguments) or a factory function, which LightningCLI cannot
            name as a class.
    """
    data = str(recorded.get("data", "digits"))
    if not is_builtin(data):  # a plugin name or module:Name, resolved as the trials did
        target = datamodule_target(data)
        if not isinstance(target, type):
            raise UserInputError(
                f"{data} is not a class: a LightningCLI config names a LightningDataModule "
                "class; write its data: section by hand",
                param="config",
            )
        arguments = call_arguments(target, dict(recorded.get("data_args", {})), batch_size)
        return {"class_path": f"{target.__module__}.{target.__qualname__}", "init_args": arguments}
    if data not in DATAMODULE_CLASSES:
        raise UserInputError(
            f"the study's {data!r} dataset has no LightningDataModule class to name in a "
            "LightningCLI config; write its data: section by hand",
            param="config",
        )
    init_args: dict[str, Any] = {}
    if data != "digits":
        init_args["data_dir"] = recorded.get("data_dir")
    init_args.update(
        batch_size=batch_size, val_size=recorded.get("val_size"), seed=recorded.get("seed", 0)
    )
    class_path = f"dense_nas.data.{DATAMODULE_CLASSES[data].__name__}"  # as the package exports it
    return {"class_path": class_path, "init_args": init_args}


def lightning_config(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    """The LightningCLI config (plain values) that trains ``trial`` of ``study``."""
    recorded = study_attrs(study)
    arch, training = trial_arch(trial), trial_training(trial)
    extra = recorded.get("trainer_config", {})
    trainer: dict[str, Any] = {"max_epochs": training.epochs, **extra.get("trainer", {})}
    if extra.get("callbacks"):
        trainer["callbacks"] = extra["callbacks"]
    return {
        "seed_everything": recorded.get("seed", 0) + trial.number,  # as the trial seeded
        "model": model_section(arch, training),
        "data": datamodule_section(recorded, training.batch_size),
        "trainer": trainer,
    }


def write_lightning_config(path: Path, study: optuna.Study, trial: FrozenTrial) -> Path:
    """Write :func:`lightning_config` as YAML to ``path``; returns ``path``."""
    config = lightning_config(study, trial)
    header = _HEADER.format(number=trial.number, study=study.study_name, name=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    except OSError as err:
        raise UserInputError(
            f"cannot write {path}: {err.strerror or err}", param="config"
        ) from None
    return path

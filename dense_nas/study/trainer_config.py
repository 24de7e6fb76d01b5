"""``--trainer-config``: a user's callbacks, loggers and Trainer options, in LightningCLI's
format.

The file holds a ``trainer:`` mapping of ``lightning.Trainer`` options and callbacks as
``class_path``/``init_args`` entries, under ``trainer.callbacks`` or a top-level
``callbacks:`` list (both are read, in that order), and the user's own loggers in a
top-level ``logger:`` section (one entry or a list), added to ``--logger``'s::

    trainer:
      gradient_clip_val: 1.0
    callbacks:
      - class_path: lightning.pytorch.callbacks.LearningRateMonitor
        init_args: {logging_interval: epoch}
    logger:
      - class_path: lightning.pytorch.loggers.CSVLogger
        init_args: {save_dir: my-logs}

jsonargparse (what ``LightningCLI`` parses with) checks the options against the Trainer's
signature and imports the callbacks and loggers; options that dense-nas sets itself are
refused with the flag that sets them. :func:`load_trainer_config` returns plain values,
as the study records them; :func:`trainer_kwargs` turns them into keyword arguments of
``lightning.Trainer`` (the callbacks instantiated) and :func:`config_loggers` makes the
loggers, in every trial process and in retrain.

Example:
    >>> config = load_trainer_config({"trainer": {"gradient_clip_val": "0.5"}})
    >>> config
    {'trainer': {'gradient_clip_val': 0.5}, 'callbacks': []}
    >>> trainer_kwargs(config)
    {'gradient_clip_val': 0.5, 'callbacks': []}
    >>> load_trainer_config({"trainer": {"max_epochs": 3}})
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: trainer_config: trainer.max_epochs is set by dense-nas (--epochs); remove it from the file
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import yaml

from dense_nas.errors import UserInputError

#: Trainer options dense-nas sets for every trial, and the flag (or reason) that sets them.
OWNED: dict[str, str] = {
    "max_epochs": "--epochs",
    "min_epochs": "--epochs",
    "max_steps": "--epochs",
    "min_steps": "--epochs",
    "max_time": "--timeout",
    "fast_dev_run": "--epochs",
    "accelerator": "--accelerator",
    "devices": "--devices",
    "num_nodes": "--devices; a trial runs on one machine",
    "strategy": "--devices: more than one trains with DDP",
    "plugins": "--devices and --precision",
    "precision": "--precision",
    "logger": "--logger; add your own in a top-level logger: section",
    "enable_checkpointing": "dense-nas: it checkpoints every trial itself",
    "default_root_dir": "--out",
    "enable_progress_bar": "--verbose",
    "enable_model_summary": "--verbose",
    # Every trial validates once an epoch: the pruner and the selection read that value.
    "limit_val_batches": "dense-nas: every trial validates on all of the validation data",
    "check_val_every_n_epoch": "dense-nas: the pruner needs one validation per epoch",
    "val_check_interval": "dense-nas: the pruner needs one validation per epoch",
    "barebones": "--logger none (a barebones Trainer takes no logger or callbacks)",
}

_SECTIONS = ("trainer", "callbacks", "logger")


def load_trainer_config(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """Read and check a trainer config (a YAML file, or its content as a mapping).

    Returns ``{"trainer": options, "callbacks": [{"class_path": ..., "init_args": ...}]}``
    with plain values only, and ``"logger"`` (entries as the callbacks') when the file
    has loggers; ``None`` gives the empty config.

    Raises:
        UserInputError: (``trainer_config``) a missing or unreadable file, another
            section, an option dense-nas owns, an unknown Trainer option, or a callback
            or logger that does not import, is not a Callback or Logger, or does not take
            its arguments.
    """
    if source is None:
        return {"trainer": {}, "callbacks": []}
    content = _read(source) if isinstance(source, (str, Path)) else source
    if not isinstance(content, Mapping):
        _refuse("the file must hold a mapping with trainer:, callbacks: or logger:")
    other = sorted(set(content) - set(_SECTIONS))
    if other:
        _refuse(
            f"section {other[0]!r} is not read; only trainer:, callbacks: and logger: are "
            "(the model and data come from the study)"
        )
    trainer = content.get("trainer") or {}
    if not isinstance(trainer, Mapping):
        _refuse("trainer: must be a mapping of lightning.Trainer options")
    options = dict(trainer)
    callbacks = _callback_list(options.pop("callbacks", None), "trainer.callbacks")
    callbacks += _callback_list(content.get("callbacks"), "callbacks")
    loggers = _callback_list(content.get("logger"), "logger")
    for name in options:
        if name in OWNED:
            _refuse(f"trainer.{name} is set by dense-nas ({OWNED[name]}); remove it from the file")
    parsed = _parse({**options, "callbacks": callbacks}, loggers)
    found = {"trainer": {name: parsed[name] for name in options}, "callbacks": parsed["callbacks"]}
    if loggers:  # absent otherwise: configs recorded before loggers compare equal
        found["logger"] = parsed["logger"]
    try:  # it is stored on the study and sent to every trial process: plain values only
        config: dict[str, Any] = json.loads(json.dumps(found))
    except (TypeError, ValueError) as err:
        _refuse(f"holds a value that is not plain data ({err}); use YAML scalars, lists and maps")
    _check_instantiates(config)
    return config


def _callback_list(value: Any, where: str) -> list[Any]:
    """A ``callbacks`` entry as a list: one callback (a mapping or class path) or a list."""
    if value is None:
        return []
    if isinstance(value, (Mapping, str)):
        return [value]
    if isinstance(value, list):
        return list(value)
    _refuse(f"{where}: must be a list of class_path/init_args entries, got {value!r}")


def trainer_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """``lightning.Trainer`` keyword arguments of a :func:`load_trainer_config` result:
    its options, and its callbacks instantiated by jsonargparse.

    Example:
        >>> kwargs = trainer_kwargs(load_trainer_config({"callbacks": [
        ...     {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}]}))
        >>> type(kwargs["callbacks"][0]).__name__
        'LearningRateMonitor'
    """
    options = dict(config.get("trainer") or {})
    callbacks = list(config.get("callbacks") or [])
    if not callbacks:
        return {**options, "callbacks": []}
    parser = _parser()
    try:  # e.g. a callback module importable where the study was made but not here
        namespace = parser.parse_object({"trainer": {"callbacks": callbacks}}, defaults=False)
        instances = parser.instantiate(namespace).trainer.callbacks
    except Exception as err:
        cause = err.__cause__ or err
        _refuse(f"the study's callbacks: {_first_reason(str(cause))}")
    return {**options, "callbacks": list(instances)}


def config_loggers(config: Mapping[str, Any]) -> list[Any]:
    """The loggers of a :func:`load_trainer_config` result's ``logger:`` section, made
    anew (each trial and retrain gets its own).

    Example:
        >>> config = load_trainer_config({"logger": {
        ...     "class_path": "lightning.pytorch.loggers.CSVLogger",
        ...     "init_args": {"save_dir": "my-logs"}}})
        >>> [type(logger).__name__ for logger in config_loggers(config)]
        ['CSVLogger']
    """
    entries = list(config.get("logger") or [])
    if not entries:
        return []
    parser = _parser()
    try:  # e.g. a logger module importable where the study was made but not here
        namespace = parser.parse_object({"trainer": {"logger": entries}}, defaults=False)
        return list(parser.instantiate(namespace).trainer.logger)
    except Exception as err:
        cause = err.__cause__ or err
        _refuse(f"the study's loggers: {_first_reason(str(cause))}")


def _read(path: str | Path) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as err:
        _refuse(f"cannot read {path}: {err.strerror or err}")
    except yaml.YAMLError as err:
        _refuse(f"{path} is not YAML: {str(err).splitlines()[0]}")


def _parser() -> Any:
    from jsonargparse import ArgumentParser
    from lightning.pytorch import Trainer

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(Trainer, "trainer", fail_untyped=False, instantiate=False)
    return parser


def _parse(options: dict[str, Any], loggers: list[Any]) -> dict[str, Any]:
    """Options checked and converted against the Trainer's signature, by jsonargparse;
    ``loggers`` as its ``logger`` argument (a list of Logger subclasses)."""
    try:
        namespace = _parser().parse_object({"trainer": options}, defaults=False)
    except Exception as err:  # jsonargparse's ArgumentError: its message says what failed
        _refuse(_first_reason(str(err)))
    parsed: dict[str, Any] = namespace.as_dict()["trainer"]
    parsed["callbacks"] = [_entry(callback) for callback in parsed.get("callbacks") or []]
    parsed["logger"] = []
    if loggers:  # parsed apart, so that an error says it is about a logger
        try:
            given = _parser().parse_object({"trainer": {"logger": loggers}}, defaults=False)
        except Exception as err:
            _refuse(f"logger: {_first_reason(str(err))}")
        parsed["logger"] = [_entry(logger) for logger in given.as_dict()["trainer"]["logger"]]
    return parsed


def _entry(callback: Any) -> dict[str, Any]:
    if isinstance(callback, str):
        return {"class_path": callback, "init_args": {}}
    return {"class_path": callback["class_path"], "init_args": dict(callback.get("init_args", {}))}


def _check_instantiates(config: dict[str, Any]) -> None:
    """Build the callbacks and loggers and a Trainer with them now: one that raises in its
    ``__init__`` or that the Trainer rejects fails here, not in every trial."""
    from lightning.pytorch import Trainer

    from dense_nas.study.quiet import quiet_lightning

    try:
        with quiet_lightning(verbose=False):
            Trainer(
                **trainer_kwargs(config),
                accelerator="cpu",
                devices=1,
                logger=config_loggers(config) or False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
    except Exception as err:
        cause = err.__cause__ or err  # jsonargparse wraps what the callback raised
        _refuse(f"{type(cause).__name__}: {_first_reason(str(cause))}")


def _first_reason(message: str) -> str:
    """The most specific line of a (multi-line) jsonargparse error."""
    lines = [line.strip().lstrip("- ") for line in message.splitlines() if line.strip()]
    unknown = re.match(r"Group 'trainer' does not accept option '([^']+)'", message)
    if unknown:
        return f"trainer.{unknown.group(1)} is not an option of lightning.Trainer"
    for at, line in enumerate(lines):
        if line.startswith("Problem with given class_path") and at + 1 < len(lines):
            return f"{line} {lines[at + 1]}"
        if line.startswith(("Import path", "No module named", "Option ")):
            return line
    key = re.match(r'Parser key "([^"]+)"', lines[0]) if lines else None
    given = next((line for line in lines if line.startswith("Given value:")), None)
    if key and given:
        return f"{key.group(1)} does not take that value ({given.lower()})"
    return lines[0] if lines else message


def _refuse(message: str) -> NoReturn:
    raise UserInputError(message, param="trainer_config")

"""A user's own datamodule: found by import path or plugin name, built from plain arguments.

``--data`` names a built-in dataset (:data:`~dense_nas.data.DATASETS`), then an entry
point of the group ``dense_nas.datamodules`` that a plugin package registers, then a
``package.module:Name`` import path. ``Name`` is a ``LightningDataModule`` subclass or a
callable returning one, called with the study's ``data_args`` as keyword arguments. The
study records the name and the arguments, never the object, so every process rebuilds
the same datamodule from them.

Example:
    >>> dm = user_datamodule("dense_nas.data:DigitsDataModule", {"augment": False})
    >>> type(dm).__name__, dm.augment
    ('DigitsDataModule', False)
    >>> [info.source for info in list_datasets() if info.name == "digits"]
    ['built-in']
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any

import lightning as L
from lightning.pytorch.utilities.model_helpers import is_overridden

from dense_nas._plugins import (
    entry_points_in,
    import_object,
    list_plugins,
    load_entry_point,
    owner,
)
from dense_nas.data._factory import DATASETS, DESCRIPTIONS
from dense_nas.errors import UserInputError

ENTRY_POINT_GROUP = "dense_nas.datamodules"
"""Plugin packages register datamodules in this entry-point group (name = ``module:attr``)."""


@dataclass(frozen=True)
class DataInfo:
    """One dataset that ``--data`` finds by name.

    Attributes:
        name: what to pass as ``--data``.
        description: one line about it.
        source: ``"built-in"``, or ``"plugin <distribution name>"``.
    """

    name: str
    description: str
    source: str


def list_datasets() -> list[DataInfo]:
    """The built-in datasets, then the installed plugins' datamodules.

    A plugin entry that fails to load is listed with the reason as its description, so
    that one broken plugin does not hide the others.

    Example:
        >>> for info in list_datasets()[:2]:
        ...     print(f"{info.name:10} {info.source}")
        digits     built-in
        cifar10    built-in
    """
    builtin = {name: DESCRIPTIONS[name] for name in DATASETS}
    return list_plugins(
        ENTRY_POINT_GROUP, builtin, "dataset", lambda ep: _describe(_load(ep)), DataInfo
    )


def is_builtin(data: str) -> bool:
    """Whether ``data`` is a dataset dense-nas ships (its own datamodules and options)."""
    return data in DATASETS


def default_study_label(data: str) -> str:
    """The short name a study name is made of: ``pkg.mod:Name`` gives ``Name``.

    Example:
        >>> default_study_label("my_data:Quadrants"), default_study_label("digits")
        ('Quadrants', 'digits')
    """
    return data.rpartition(":")[2].rpartition(".")[2]


def user_datamodule(
    data: str, data_args: dict[str, Any], *, batch_size: int | None = None
) -> L.LightningDataModule:
    """Build the datamodule ``data`` names, called with ``data_args``.

    Args:
        data: a plugin entry-point name or ``package.module:Name``.
        data_args: keyword arguments of ``Name``.
        batch_size: passed as ``batch_size=`` when ``Name`` takes that argument and
            ``data_args`` does not set it (so a space can search the batch size).

    Raises:
        UserInputError: one line naming ``--data`` or ``--data-arg`` and the fix.
    """
    origin = f"{data!r}"
    target = datamodule_target(data)
    if not callable(target):
        raise UserInputError(
            f"{origin} is {target!r}, not a LightningDataModule subclass or a function "
            "returning one",
            param="data",
        )
    arguments = call_arguments(target, data_args, batch_size)
    try:
        datamodule = target(**arguments)
    except Exception as err:  # user code; TypeError when the arguments do not fit
        shown = ", ".join(f"{key}={value!r}" for key, value in data_args.items()) or "no arguments"
        raise UserInputError(
            f"{origin} refused {shown} ({type(err).__name__}: {err}); "
            "check the --data-arg names and values",
            param="data_args",
        ) from None
    if not isinstance(datamodule, L.LightningDataModule):
        raise UserInputError(
            f"{origin} gave {type(datamodule).__name__}, not a LightningDataModule; pass a "
            "LightningDataModule subclass or a function returning one",
            param="data",
        )
    if not is_overridden("val_dataloader", datamodule, L.LightningDataModule):
        raise UserInputError(
            f"{origin} has no val_dataloader; the search selects on validation data, so "
            "define val_dataloader() (never the test set)",
            param="data",
        )
    return datamodule


def call_arguments(
    target: Any, data_args: dict[str, Any], batch_size: int | None
) -> dict[str, Any]:
    """The keyword arguments ``target`` is called with: ``data_args``, plus the trial's
    ``batch_size`` when ``target`` takes one and ``data_args`` does not set it.

    Example:
        >>> def make(root, batch_size=32): ...
        >>> call_arguments(make, {"root": "/data"}, 64)
        {'root': '/data', 'batch_size': 64}
    """
    arguments = dict(data_args)
    if batch_size is not None and "batch_size" not in arguments and _takes_batch_size(target):
        arguments["batch_size"] = batch_size
    return arguments


def datamodule_target(data: str) -> Any:
    """What a plugin name or ``package.module:Name`` points at (a class or a factory).

    Raises:
        UserInputError: (``data``) unknown, ambiguous or not importable here.
    """
    found = [ep for ep in entry_points_in(ENTRY_POINT_GROUP) if ep.name == data]
    if len(found) > 1:
        owners = " and ".join(owner(ep) for ep in found)
        raise UserInputError(
            f"{data!r} is registered by both {owners}; uninstall one of them", param="data"
        )
    if found:
        return _load(found[0])
    if ":" not in data:
        plugins = [ep.name for ep in entry_points_in(ENTRY_POINT_GROUP)]
        known = ", ".join([*DATASETS, *plugins])
        raise UserInputError(
            f"unknown dataset {data!r}; choose one of {known}, or pass your own "
            "LightningDataModule as package.module:Name",
            param="data",
        )
    return import_object(data, f"{data!r}", param="data")


def _load(ep: EntryPoint) -> Any:
    origin = f"{owner(ep)}: entry point {ep.name!r} ({ep.value})"
    return load_entry_point(ep, origin, param="data")


def _takes_batch_size(target: Any) -> bool:
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    return "batch_size" in parameters


def _describe(target: Any) -> str:
    doc = inspect.getdoc(target) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ") or f"{getattr(target, '__qualname__', '')}"

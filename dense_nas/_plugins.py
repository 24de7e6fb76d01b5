"""What finding user code shares: ``module:attribute`` import paths and entry points.

Spaces (``dense_nas.search_spaces``) and datamodules (``dense_nas.datamodules``) are both
found by an import path or by an entry point a plugin package registers; this module
resolves both, and turns every failure into one line that names the fix.

Example:
    >>> import_object("dense_nas.data:make_datamodule", "data 'x'").__name__
    'make_datamodule'
    >>> import_object("dense_nas.data:nothing", "data 'x'")
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: data 'x': dense_nas.data has no nothing; check the name
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from dense_nas.errors import UserInputError

T = TypeVar("T")


def import_object(spec: str, origin: str, *, param: str | None = None) -> Any:
    """The object ``package.module:Name`` (``Name`` may be dotted) names.

    Args:
        spec: the import path.
        origin: how error messages name what is being loaded (``"space 'x'"``).
        param: the parameter errors are about (``None``: ``origin`` says it).

    Raises:
        UserInputError: a malformed path, a module that does not import, a missing name.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UserInputError(f"{origin}: write it as package.module:Name", param=param)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as err:  # user code may fail in any way while importing
        raise UserInputError(
            f"{origin}: cannot import {module_name} ({type(err).__name__}: {err}); install it "
            "or add it to PYTHONPATH",
            param=param,
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UserInputError(
                f"{origin}: {module_name} has no {attribute}; check the name", param=param
            )
        target = getattr(target, part)
    return target


def import_path(target: Any, origin: str, *, param: str | None = None) -> str:
    """The ``module:qualname`` that imports ``target`` back, for other processes to use.

    Raises:
        UserInputError: ``target`` lives in ``__main__`` or a local scope, or its path
            leads to another object.

    Example:
        >>> from dense_nas.data import DigitsDataModule
        >>> import_path(DigitsDataModule, "data")
        'dense_nas.data.digits:DigitsDataModule'
    """
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    fix = "define it at the top level of a module on PYTHONPATH and pass that module"
    if not isinstance(module, str) or not isinstance(qualname, str) or "<locals>" in qualname:
        raise UserInputError(f"{origin}: {target!r} has no import path; {fix}", param=param)
    if module == "__main__":
        raise UserInputError(
            f"{origin}: {qualname} is defined in __main__, which other processes cannot "
            f"import; {fix}",
            param=param,
        )
    spec = f"{module}:{qualname}"
    if import_object(spec, origin, param=param) is not target:
        raise UserInputError(f"{origin}: {spec} imports another object; {fix}", param=param)
    return spec


def entry_points_in(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group``, by name."""
    return sorted(entry_points(group=group), key=lambda ep: ep.name)


def owner(ep: EntryPoint) -> str:
    """``"plugin <distribution>"``: where an entry point comes from, as listings show it."""
    return f"plugin {ep.dist.name}" if ep.dist is not None else "plugin (unknown distribution)"


def list_plugins(
    group: str,
    builtin: Mapping[str, str],
    kind: str,
    describe: Callable[[EntryPoint], str],
    make: Callable[[str, str, str], T],
) -> list[T]:
    """The built-in entries, then the installed plugins of ``group``, for a listing.

    Each entry is ``make(name, description, source)``. A plugin that fails to load is
    listed with the reason as its description, so that one broken plugin does not hide the
    others; one with a built-in's name is listed as hidden (the built-in wins).

    Args:
        group: the entry-point group.
        builtin: the built-in names and their descriptions, in listing order.
        kind: what the entries are, for the hidden line (``"space"``).
        describe: a plugin's description; raises :class:`UserInputError` when it is broken.
        make: the listing's record.

    Example:
        >>> list_plugins("dense_nas.none", {"a": "the first"}, "thing", str, lambda *f: f)
        [('a', 'the first', 'built-in')]
    """
    infos = [make(name, description, "built-in") for name, description in builtin.items()]
    for ep in entry_points_in(group):
        if ep.name in builtin:
            description = f"(hidden: a built-in {kind} has this name)"
        else:
            try:
                description = describe(ep)
            except UserInputError as err:
                description = f"(broken: {err})"
        infos.append(make(ep.name, description, owner(ep)))
    return infos


def load_entry_point(ep: EntryPoint, origin: str, *, param: str | None = None) -> Any:
    """The object an entry point names; a plugin that fails to load is one line."""
    try:
        return ep.load()
    except Exception as err:  # plugin code may fail in any way; report it in one line
        raise UserInputError(
            f"{origin}: cannot load it ({type(err).__name__}: {err}); fix or reinstall the plugin",
            param=param,
        ) from None


_PLAIN = (str, int, float, bool, type(None))


def plain_arguments(values: Any, param: str) -> dict[str, Any]:
    """``values`` as a dict of plain values (what a study stores as JSON), or one line why not.

    Keys must be Python identifiers (they become keyword arguments); values are strings,
    numbers, booleans, ``None``, or lists and dicts of those.

    Example:
        >>> plain_arguments({"size": 12, "root": "/data", "shape": (8, 8)}, "data_args")
        {'size': 12, 'root': '/data', 'shape': [8, 8]}
        >>> plain_arguments({"when": object()}, "data_args")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: data_args: 'when' is <object object at ...>, not a plain value; ...
    """
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise UserInputError(f"must be a dict of keyword arguments, got {values!r}", param=param)
    for key, value in values.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise UserInputError(
                f"{key!r} is not a keyword argument name; use a Python identifier", param=param
            )
        if not _is_plain(value):
            raise UserInputError(
                f"{key!r} is {value!r}, not a plain value; the study stores the arguments so "
                "that every process rebuilds the datamodule: pass strings (quote a --data-arg "
                "value to keep it text), numbers, booleans, "
                "None, or lists and dicts of them",
                param=param,
            )
    # As the storage gives them back (tuples become lists): a resumed study compares equal.
    plain: dict[str, Any] = json.loads(json.dumps(dict(values)))
    return plain


def _is_plain(value: Any) -> bool:
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")  # JSON has no NaN or infinity
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_plain(item) for key, item in value.items())
    return False

"""Finding spaces: built-in names, YAML files, ``module:Class`` and plugin entry points.

Example:
    >>> load_space("digits-tiny").name
    'digits-tiny'
    >>> [info.source for info in list_spaces() if info.name == "digits-tiny"]
    ['built-in']
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from importlib.resources import files
from pathlib import Path
from typing import Any

from dense_nas._plugins import (
    entry_points_in,
    import_object,
    list_plugins,
    load_entry_point,
    owner,
)
from dense_nas.errors import UserInputError
from dense_nas.space._base import Constraints, SearchSpace
from dense_nas.space._yaml import YamlSearchSpace

ENTRY_POINT_GROUP = "dense_nas.search_spaces"
"""Plugin packages register spaces in this entry-point group."""

BUILTIN_PACKAGE = "dense_nas.search_spaces"
"""The package whose YAML files are the built-in spaces (the repository's ``search_spaces/``)."""


def builtin_names() -> list[str]:
    """Names of the built-in spaces (each file's name without ``.yaml``), sorted.

    Example:
        >>> "digits-tiny" in builtin_names()
        True
    """
    entries = files(BUILTIN_PACKAGE).iterdir()
    return sorted(e.name.removesuffix(".yaml") for e in entries if e.name.endswith(".yaml"))


def builtin_path(name: str) -> Path:
    """The file of the built-in space ``name`` (which may not exist).

    Example:
        >>> builtin_path("digits-tiny").name
        'digits-tiny.yaml'
    """
    return Path(str(files(BUILTIN_PACKAGE).joinpath(f"{name}.yaml")))


@dataclass(frozen=True)
class SpaceInfo:
    """One space that :func:`load_space` can find by name.

    Attributes:
        name: what to pass to :func:`load_space` (and ``--space``).
        description: one line about the space.
        source: ``"built-in"``, or ``"plugin <distribution name>"``.

    Example:
        >>> SpaceInfo("digits-tiny", "CPU-sized DenseNets", "built-in").source
        'built-in'
    """

    name: str
    description: str
    source: str


def load_space(spec: str | Path) -> SearchSpace:
    """The space named by ``spec``, checked.

    ``spec`` is one of: a YAML file path (a :class:`~pathlib.Path`, or a string ending in
    ``.yaml``/``.yml`` or holding a ``/``); ``package.module:ClassName`` naming a
    :class:`SearchSpace` subclass (built with no arguments); a built-in space name; the
    name of an entry point in the group ``dense_nas.search_spaces``.

    Raises:
        UserInputError: one line naming the space, the problem and the fix.

    Example:
        >>> load_space("densenet-bc-cifar").seeds[0]
        {'growth_rate': 12, 'depth': 100, 'lr': 0.1}
        >>> load_space("no-such-space")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: space 'no-such-space': not a built-in name, ...
    """
    if isinstance(spec, Path) or _looks_like_path(spec):
        return YamlSearchSpace.from_file(spec)
    if ":" in spec:
        return _from_class(spec)
    if spec in builtin_names():
        return YamlSearchSpace.from_file(builtin_path(spec))
    found = [ep for ep in _entry_points() if ep.name == spec]
    if len(found) > 1:
        owners = " and ".join(owner(ep) for ep in found)
        raise UserInputError(f"space {spec!r}: registered by both {owners}; uninstall one of them")
    if found:
        return _from_entry_point(found[0])
    raise UserInputError(
        f"space {spec!r}: not a built-in name, an installed plugin space, a YAML file or "
        f"module:Class; built-in spaces: {', '.join(builtin_names())}"
    )


def list_spaces() -> list[SpaceInfo]:
    """The built-in spaces, then the installed plugins' spaces.

    A plugin space that fails to load is listed with the reason as its description, so
    that one broken plugin does not hide the others.

    Example:
        >>> for info in list_spaces()[:2]:
        ...     print(f"{info.name:20} {info.source}")
        densenet-bc-cifar    built-in
        densenet-cifar-full  built-in
    """
    builtin = {name: load_space(name).description for name in builtin_names()}
    return list_plugins(
        ENTRY_POINT_GROUP, builtin, "space", lambda ep: _from_entry_point(ep).description, SpaceInfo
    )


def _looks_like_path(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml")) or "/" in spec or "\\" in spec


def _entry_points() -> list[EntryPoint]:
    return entry_points_in(ENTRY_POINT_GROUP)


def _from_class(spec: str) -> SearchSpace:
    if spec.startswith(":") or spec.endswith(":"):
        raise UserInputError(f"space {spec!r}: write a class as package.module:ClassName")
    return _instantiate(import_object(spec, f"space {spec!r}"), f"space {spec!r}")


def _from_entry_point(ep: EntryPoint) -> SearchSpace:
    origin = f"{owner(ep)}: entry point {ep.name!r} ({ep.value})"
    target = load_entry_point(ep, origin)
    if isinstance(target, (str, Path)):
        path = Path(target)
        if not path.is_absolute():  # relative to the module that names it
            module_file = getattr(sys.modules.get(ep.module), "__file__", None) or "."
            path = Path(module_file).parent / path
        space: SearchSpace = YamlSearchSpace.from_file(path)
    else:
        space = _instantiate(target, origin)
    if space.name != ep.name:
        raise UserInputError(
            f"{origin}: loads a space named {space.name!r}; make the entry point name and the "
            "space name equal"
        )
    return space


def _instantiate(target: Any, origin: str) -> SearchSpace:
    """A space from a SearchSpace subclass (built with no arguments) or instance."""
    if isinstance(target, type) and issubclass(target, SearchSpace):
        try:
            target = target()
        except TypeError as err:
            raise UserInputError(
                f"{origin}: cannot build it with no arguments ({err}); give every __init__ "
                "argument a default and implement suggest()"
            ) from None
    if not isinstance(target, SearchSpace):
        raise UserInputError(
            f"{origin}: {target!r} is not a SearchSpace subclass; subclass "
            "dense_nas.space.SearchSpace"
        )
    _check_attributes(target, origin)
    return target


def _check_attributes(space: SearchSpace, origin: str) -> None:
    if not isinstance(space.name, str) or not space.name:
        raise UserInputError(f"{origin}: has no name; set the class attribute name = 'my-space'")
    if not isinstance(space.description, str):
        raise UserInputError(f"{origin}: description must be a string; set description = '...'")
    if not isinstance(space.constraints, Constraints):
        raise UserInputError(f"{origin}: constraints must be a dense_nas.space.Constraints")
    seeds_ok = isinstance(space.seeds, Sequence) and all(
        isinstance(seed, Mapping) for seed in space.seeds
    )
    if not seeds_ok:
        raise UserInputError(f"{origin}: seeds must be a list of Optuna parameter dicts")

"""The built-in search spaces, one YAML file each, shipped in the wheel.

The format is described in ``README.md`` beside this file; load a space with
:func:`dense_nas.space.load_space`.

Example:
    >>> "digits-tiny" in builtin_names()
    True
    >>> builtin_path("digits-tiny").name
    'digits-tiny.yaml'
"""

from __future__ import annotations

from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
"""The folder that holds the built-in space files."""


def builtin_names() -> list[str]:
    """Names of the built-in spaces (each file's name without ``.yaml``), sorted."""
    return sorted(path.stem for path in DIRECTORY.glob("*.yaml"))


def builtin_path(name: str) -> Path:
    """The file of the built-in space ``name`` (which may not exist)."""
    return DIRECTORY / f"{name}.yaml"


__all__ = ["DIRECTORY", "builtin_names", "builtin_path"]

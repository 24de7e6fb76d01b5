"""Old module paths from before the package had folders, kept importable with a warning.

Plugins and scripts written against the flat layout (``from dense_nas.arch import
DenseNetConfig``) keep working: importing an old path imports the module at its new home
and warns once that the old name will go away.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     from dense_nas.arch import DenseNetConfig
    >>> DenseNetConfig.__module__, "dense_nas.model.arch" in str(caught[0].message)
    ('dense_nas.model.arch', True)
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

MOVED = {
    "dense_nas.arch": "dense_nas.model.arch",
    "dense_nas.cost": "dense_nas.model.cost",
    "dense_nas.module": "dense_nas.model.module",
    "dense_nas.recipe": "dense_nas.model.recipe",
    "dense_nas.export": "dense_nas.results.export",
    "dense_nas.retrain": "dense_nas.results.retrain",
    "dense_nas.report": "dense_nas.results.report",
    "dense_nas.storage": "dense_nas.study.storage",
}
"""Old module path -> where the module lives now."""


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths in :data:`MOVED` and hands out the module at its new home."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; import from there (or from dense_nas)",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """The module was executed at its new home already."""


def install() -> None:
    """Make the old paths importable (idempotent)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())

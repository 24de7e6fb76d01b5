"""Re-export a package's public names on first use, so importing the package stays cheap.

``dense-nas --help`` and the light modules (``model.arch``, ``model.cost``) must not pay for
importing torch or Lightning; a package's ``__init__`` therefore names where each public
name lives and imports it only when someone asks for it.

Example:
    >>> getattr_ = lazy_exports("demo", {"sqrt": "math"})
    >>> getattr_("sqrt")(9.0)
    3.0
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each name in ``homes`` from its module."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name]), name)
        module = sys.modules.get(package)
        if module is not None:
            setattr(module, name, value)  # the next lookup is a plain attribute
        return value

    return __getattr__

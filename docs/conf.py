"""Sphinx configuration of the dense-nas docs site (``sphinx-build -W -b html docs docs/_build/html``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]  # the package as checked out, and ours

# Packages that import their public names on first use (dense_nas._lazy) show autodoc
# only what is already imported: resolve every name in their __all__ first.
for _package in ("dense_nas", "dense_nas.results", "dense_nas.study"):
    _module = importlib.import_module(_package)
    for _name in _module.__all__:
        getattr(_module, _name)

project = "dense-nas"
author = "the dense-nas authors"
copyright = "2026, the dense-nas authors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "cli_reference",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# _generated holds the CLI reference that cli_reference writes; pages include it.
exclude_patterns = ["_build", "_generated", "conftest.py"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # links such as lightning.md#loggers

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
# Lightning's own docstrings (of hooks we override) use directives this site does not load.
autodoc_inherit_docstrings = False
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = "dense-nas"

"""Sphinx extension: write the CLI reference from ``dense_nas.cli.build_parser()`` at every
build, so ``reference/cli.md`` (which includes it) never drifts from ``dense-nas --help``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

GENERATED = Path("_generated") / "cli.md"


def write_cli_reference(app: Sphinx) -> None:
    """Write ``_generated/cli.md`` in the source folder, only when its text changed (an
    unchanged file keeps Sphinx from re-reading the page that includes it)."""
    from dense_nas.cli import build_parser
    from dense_nas.cli.reference import cli_reference_markdown

    path = Path(app.srcdir) / GENERATED
    text = cli_reference_markdown(build_parser())
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", write_cli_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

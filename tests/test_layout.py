"""The package's shape: what ships in the wheel, no import cycles, public Optuna API only."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "dense_nas"
PIP = [sys.executable, "-m", "pip", "-q"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, modules: set[str]) -> set[str]:
    """dense-nas modules a module imports when it is imported (not in functions or
    ``if TYPE_CHECKING:`` blocks)."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path.parent)
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for child in sorted(graph[node]):
            found = visit(child, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for node in sorted(graph):
        found = visit(node, [])
        if found:
            return found
    return None


def test_the_package_has_no_import_cycle() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(path) for path in files}
    graph = {_module_name(path): _top_level_imports(path, modules) for path in files}
    for name, imported in graph.items():  # a package imports its parent packages anyway
        imported.discard(name)
        imported.difference_update(n for n in list(imported) if name.startswith(n + "."))
    assert _cycle(graph) is None


@pytest.mark.parametrize("private", ["._storage", "._trial_id", "._study_id"])
def test_only_public_optuna_api(private: str) -> None:
    users = [
        str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py") if private in path.read_text()
    ]
    assert users == []


def test_the_wheel_ships_the_spaces_inside_dense_nas_and_they_list(tmp_path: Path) -> None:
    subprocess.run(
        [
            *PIP,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("dense_nas-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"dense_nas"}  # no top-level search_spaces beside it
    builtin = sorted(p.name for p in (ROOT / "search_spaces").glob("*.yaml"))
    shipped = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("dense_nas/search_spaces/"))
    assert set(builtin) <= set(shipped) and builtin
    site = tmp_path / "site"
    subprocess.run(
        [*PIP, "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert not (site / "search_spaces").exists()
    listed = subprocess.run(
        [sys.executable, "-c", "from dense_nas.cli import main; main(['spaces'])"],
        cwd=tmp_path,  # not the checkout: only the installed wheel is importable as dense_nas
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for name in builtin:
        assert f"{name.removesuffix('.yaml'):24s} built-in" in listed.stdout


@pytest.mark.parametrize("old", ["dense_nas.arch", "dense_nas.recipe", "dense_nas.storage"])
def test_the_never_released_flat_module_paths_do_not_import(old: str) -> None:
    sys.modules.pop(old, None)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)

"""Every malformed space gives one line naming the file, the field and the fix.

Each file in ``tests/spaces/`` starts with ``# expect: <text>``: a part of the message
(the field's path, mostly) that the error must contain.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dense_nas.errors import UserInputError
from dense_nas.space import YamlSearchSpace, load_space

MALFORMED = sorted((Path(__file__).parent / "spaces").glob("*.yaml"))
EXECUTED_MARKER = Path("/tmp/dense-nas-space-test-executed")  # python_object.yaml's target


def expected_fragment(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <text>'"
    return first.removeprefix("# expect: ")


def test_there_are_enough_malformed_files() -> None:
    assert len(MALFORMED) >= 15


@pytest.mark.parametrize("path", MALFORMED, ids=lambda p: p.stem)
def test_malformed_space_gives_one_clear_line(path: Path) -> None:
    with pytest.raises(UserInputError) as caught:
        load_space(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    said = message.removeprefix(f"{path}: ")  # the path holds the file's name: "name" is in it
    assert expected_fragment(path) in said
    assert "; " in said, "the message must say how to fix it, after a '; '"


def test_python_tags_are_never_executed() -> None:
    EXECUTED_MARKER.unlink(missing_ok=True)
    with pytest.raises(UserInputError, match="not allowed"):
        load_space(Path(__file__).parent / "spaces" / "python_object.yaml")
    assert not EXECUTED_MARKER.exists()


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(UserInputError, match=r"nope\.yaml: cannot read the file .*; check"):
        load_space(missing)


BASE = {"name": "s", "architecture": {"growth_rate": 12, "depth": 40}}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"architecture": {"growth_rate": 12}}, "architecture: no depth or layers_per_block"),
        ({"architecture": {"depth": 40}}, "architecture.growth_rate: missing"),
        ({"name": "my.yaml"}, "name: 'my.yaml' is not a usable name"),
        ({"colour": "red"}, "colour: unknown key"),
        ({"seeds": {"growth_rate": 12}}, "seeds: expected a list"),
        ({"seeds": [{"growth_rate": 12, "lr": 0.5}]}, "seeds[0].lr: not searched in this space"),
        ({"constraints": {"max_flops": 5}}, "constraints.max_flops: unknown key"),
        ({"description": ["a"]}, "description: must be text"),
    ],
)
def test_document_errors(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(UserInputError) as caught:
        YamlSearchSpace({**BASE, **change}, source="doc.yaml")
    assert str(caught.value).startswith("doc.yaml: ")
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("architecture", "fragment"),
    [
        (
            {"layers_per_block": {"low": 1, "high": 3, "per_block": "yes"}},
            "per_block: 'yes' is not allowed",
        ),
        ({"layers_per_block": []}, "layers_per_block: lists no blocks"),
        ({"layers_per_block": [2, {"value": 2, "when": {"stem": "cifar"}}]}, "[1].when"),
        ({"depth": {"low": 40, "high": 100, "log": True}}, "depth.log: legal depths"),
        ({"depth": {"value": 40, "when": {"stem": "cifar"}}}, "depth.when: the layers cannot"),
        ({"depth": 40, "bottleneck_width": {"value": 2, "when": {"depth": 40}}}, "when.depth"),
        ({"depth": 40, "dropout": {"choices": [0.1, 0.1]}}, "0.1 appears twice"),
        ({"depth": 40, "dropout": {"value": 0.1, "low": 0}}, "low does not go with value"),
        (
            {"depth": 40, "compression": {"low": 0.5, "high": 1.0, "step": 0}},
            "step: 0 is not allowed",
        ),
        ({"depth": 40, "stem": {"when": {"bottleneck": True}}}, "needs value, choices"),
    ],
)
def test_architecture_errors(architecture: dict[str, object], fragment: str) -> None:
    doc = {"name": "s", "architecture": {"growth_rate": 12, **architecture}}
    with pytest.raises(UserInputError) as caught:
        YamlSearchSpace(doc, source="doc.yaml")
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)

"""Reading a space file: safe YAML only, with one-line errors that name file and line.

The loader is PyYAML's ``SafeLoader`` (plain data: mappings, lists, strings, numbers,
booleans), so nothing in a file is ever executed; a ``!!python/...`` tag is an error that
names the field holding it. Two things differ from plain ``yaml.safe_load``: a key given
twice in one mapping is an error (PyYAML would keep the last silently), and ``1e-4``
reads as a number (YAML 1.1 would read a string without a dot in the mantissa).

Example:
    >>> read_yaml_text("training: {weight_decay: 1e-4}", "s.yaml")
    {'training': {'weight_decay': 0.0001}}
    >>> read_yaml_text("lr: !!python/object/apply:os.system [echo]", "s.yaml")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: s.yaml: lr: tag !!python/object/apply:os.system is not ...
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from dense_nas.space._values import Where

_SAFE_TAGS = "str|int|float|bool|null|binary|timestamp|map|seq|omap|pairs|set|merge"
_STANDARD_TAG = re.compile(rf"^tag:yaml\.org,2002:({_SAFE_TAGS})$")


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if not isinstance(key, Hashable):
                continue  # SafeLoader itself reports an unhashable key
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml_file(path: Path) -> Any:
    """The plain data in a YAML file.

    Raises:
        UserInputError: the file cannot be read or is not safe, valid YAML.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise Where(str(path)).error(f"cannot read the file ({reason}); check the path") from None
    return read_yaml_text(text, str(path))


def read_yaml_text(text: str, source: str) -> Any:
    """The plain data in YAML text; ``source`` names it in errors."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as err:
        raise _explain(err, text, source) from None
    except yaml.YAMLError as err:
        raise Where(source).error(f"not valid YAML ({err}); fix the syntax") from None


def _explain(err: yaml.MarkedYAMLError, text: str, source: str) -> Exception:
    problem = err.problem or err.context or "invalid"
    line = err.problem_mark.line + 1 if err.problem_mark else None
    tag = _foreign_tag(text)
    if "constructor for the tag" in problem and tag is not None:
        path, name = tag
        return Where(source, path or f"line {line}").error(
            f"tag {name} is not allowed (space files hold plain data, nothing is executed); "
            "remove the tag"
        )
    where = Where(source, f"line {line}") if line else Where(source)
    if "appears twice" in problem:
        return where.error(f"{problem}; keep one of them")
    return where.error(f"not valid YAML: {problem}; fix the syntax")


def _foreign_tag(text: str) -> tuple[str, str] | None:
    """(field path, tag) of the first node with a non-standard tag, found without
    constructing anything (composing only builds the node tree)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    return _find_tag(root, "") if root is not None else None


def _find_tag(node: yaml.Node, path: str) -> tuple[str, str] | None:
    if not _STANDARD_TAG.match(node.tag):
        return path, node.tag.replace("tag:yaml.org,2002:", "!!")
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = f"{path}.{key.value}" if path else str(key.value)
            found = _find_tag(key, path) or _find_tag(value, here)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found = _find_tag(item, f"{path}[{index}]")
            if found:
                return found
    return None

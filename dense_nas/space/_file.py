"""Reading a space file: safe YAML only, with one-line errors that name file and line.

The loader is PyYAML's ``SafeLoader`` (plain data: mappings, lists, strings, numbers,
booleans), so nothing in a file is ever executed; a ``!!python/...`` tag is an error that
names the field holding it. Two things differ from plain ``yaml.safe_load``: a key given
twice in one mapping is an error (PyYAML would keep the last silently), and ``1e-4``
reads as a number (YAML 1.1 would read a string without a dot in the mantissa).

A space is a few kB, so a hostile or mistaken file is refused before it costs much: a
file over :data:`MAX_FILE_BYTES` is not read past that, and a document whose aliases
(``*name``) expand beyond :data:`MAX_NODES` values, or refer to themselves, is refused
before anything is built from it (a few hundred bytes of nested aliases would otherwise
expand to gigabytes).

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

#: Largest space file read, in bytes (the built-in spaces are about 1 kB).
MAX_FILE_BYTES = 1_000_000
#: Most values (scalars, lists and mappings) a document may hold once aliases are expanded.
MAX_NODES = 10_000

_SAFE_TAGS = "str|int|float|bool|null|binary|timestamp|map|seq|omap|pairs|set|merge"
_STANDARD_TAG = re.compile(rf"^tag:yaml\.org,2002:({_SAFE_TAGS})$")


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and documents that aliases blow up."""

    def construct_document(self, node: yaml.Node) -> Any:
        _expanded_size(node, {}, set())
        return super().construct_document(node)  # type: ignore[no-untyped-call]

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


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Values under ``node`` with every alias expanded, counting each shared node once
    per use but visiting it once (so a billion laughs costs microseconds to measure).

    Raises:
        yaml.constructor.ConstructorError: more than :data:`MAX_NODES`, or a node that
            holds itself through an alias.
    """
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise yaml.constructor.ConstructorError(
            None, None, "an alias refers to a value that holds it", node.start_mark
        )
    open_nodes.add(key)
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    size = 1 + sum(_expanded_size(child, sizes, open_nodes) for child in children)
    open_nodes.discard(key)
    if size > MAX_NODES:
        raise yaml.constructor.ConstructorError(
            None, None, f"aliases expand it to more than {MAX_NODES} values", node.start_mark
        )
    sizes[key] = size
    return size


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
    where = Where(str(path))
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # never more, whatever the file's size
        if len(data) > MAX_FILE_BYTES:
            raise where.error(
                f"larger than {MAX_FILE_BYTES:,} bytes; a space file is a few kB: "
                "check that this is the right file"
            )
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise where.error(f"cannot read the file ({reason}); check the path") from None
    return read_yaml_text(text, str(path))


def read_yaml_text(text: str, source: str) -> Any:
    """The plain data in YAML text; ``source`` names it in errors."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as err:
        raise _explain(err, text, source) from None
    except yaml.YAMLError as err:
        raise Where(source).error(f"not valid YAML ({err}); fix the syntax") from None
    except RecursionError:  # PyYAML composes nested lists and mappings recursively
        raise Where(source).error(
            "nested too deeply to read; a space file needs a few levels at most"
        ) from None


def _explain(err: yaml.MarkedYAMLError, text: str, source: str) -> Exception:
    problem = err.problem or err.context or "invalid"
    line = err.problem_mark.line + 1 if err.problem_mark else None
    # Only now: the search walks every alias, which is safe once their expansion is checked.
    tag = _foreign_tag(text) if "constructor for the tag" in problem else None
    if tag is not None:
        path, name = tag
        return Where(source, path or f"line {line}").error(
            f"tag {name} is not allowed (space files hold plain data, nothing is executed); "
            "remove the tag"
        )
    where = Where(source, f"line {line}") if line else Where(source)
    if "appears twice" in problem:
        return where.error(f"{problem}; keep one of them")
    if "alias" in problem:
        return where.error(f"{problem}; write the values out instead")
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

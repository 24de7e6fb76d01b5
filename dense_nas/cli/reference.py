"""The command-line reference as Markdown, written from the argument parser itself.

The docs site includes what :func:`cli_reference_markdown` writes for
:func:`dense_nas.cli.build_parser`, at every build, so the reference lists exactly the
subcommands, flags, defaults and help texts that ``dense-nas --help`` shows.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="tool")
    >>> sub = parser.add_subparsers()
    >>> run = sub.add_parser("run", help="run it", description="Run the thing.")
    >>> _ = run.add_argument("--times", type=int, default=3, help="how often; a|b")
    >>> _ = run.add_argument("--mode", choices=("fast", "safe"), help="how")
    >>> _ = run.add_argument("--dry", action="store_true", help="only say what <it> would do")
    >>> print(cli_reference_markdown(parser))
    ## `tool run`
    <BLANKLINE>
    Run the thing.
    <BLANKLINE>
    | flag | meaning |
    |---|---|
    | `--times TIMES` | how often; a\\|b (default: `3`) |
    | `--mode {fast,safe}` | how (one of `fast`, `safe`) |
    | `--dry` | only say what \\<it\\> would do |
    <BLANKLINE>
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import PurePath


def cli_reference_markdown(parser: argparse.ArgumentParser) -> str:
    """One section per subcommand of ``parser``: its description and a table of its flags.

    Args:
        parser: a parser whose subcommands are added with ``add_subparsers``.

    Returns:
        Markdown: a ``##`` heading per subcommand, in the order they were added, then its
        description (or its one-line help) and a row per flag: the flag's names and
        metavar, and its help with its choices and its default appended (the default
        only where the help does not already state one).
    """
    sections = []
    for name, command, summary in _subcommands(parser):
        rows = [_flag_row(command, action) for action in command._actions if _documented(action)]
        sections.append(
            "\n".join(
                [
                    f"## `{parser.prog} {name}`",
                    "",
                    _text(command.description or summary),
                    "",
                    "| flag | meaning |",
                    "|---|---|",
                    *rows,
                    "",
                ]
            )
        )
    return "\n".join(sections)


def _subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    """Each subcommand's name, parser and one-line help, as ``--help`` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, command in action.choices.items():
                yield name, command, summaries.get(name, "")


def _documented(action: argparse.Action) -> bool:
    return not isinstance(action, argparse._HelpAction) and action.help != argparse.SUPPRESS


def _flag_row(command: argparse.ArgumentParser, action: argparse.Action) -> str:
    return f"| `{_flag(action)}` | {_meaning(command, action)} |"


def _flag(action: argparse.Action) -> str:
    """The flag as ``--help`` spells it: its names, then what it takes, if anything."""
    formatter = argparse.HelpFormatter("")
    if not action.option_strings:
        return formatter._get_default_metavar_for_positional(action)
    names = ", ".join(action.option_strings)
    if action.nargs == 0:
        return names
    metavar = formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
    return f"{names} {metavar}"


def _default(action: argparse.Action) -> str:
    """The default as a user would type it; blank for none, an empty list, or a switch."""
    value = action.default
    if value is None or value == argparse.SUPPRESS or action.nargs == 0 or value == []:
        return ""
    if isinstance(value, PurePath):
        value = value.as_posix()
    return f"(default: `{value}`)"


def _meaning(command: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = argparse.HelpFormatter(command.prog)._expand_help(action) if action.help else ""
    if action.choices is not None:
        listed = ", ".join(f"`{choice}`" for choice in action.choices)
        text = f"{text} (one of {listed})".strip()
    if not re.search(r"\(default\b|default:", text):  # a help that states it keeps its words
        text = f"{text} {_default(action)}".strip()
    return _text(text)


def _text(text: str) -> str:
    """Help text safe in a Markdown table cell: one line, and outside code spans no ``|``,
    ``<`` or ``*`` that Markdown would read as a cell border, HTML or emphasis."""
    parts = " ".join(text.split()).split("`")
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        parts[i] = re.sub(r"([|<>*])", r"\\\1", parts[i])
    return "`".join(part.replace("|", "\\|") if i % 2 else part for i, part in enumerate(parts))

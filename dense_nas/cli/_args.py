"""What the subcommands share: the parser that fails in one line, value types, common flags.

Example:
    >>> positive_int("3")
    3
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from dense_nas.errors import UserInputError
from dense_nas.study.settings import OPTIONS


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def print_listing(entries: Any) -> None:
    """Print named things one a line: name, where it comes from, description.

    Example:
        >>> from dense_nas.space import SpaceInfo
        >>> print_listing([SpaceInfo("tiny", "a small space", "built-in")])
        tiny                     built-in                     a small space
    """
    for info in entries:
        print(f"{info.name:24s} {info.source:28s} {info.description}")


def positive_float(text: str) -> float:
    """A positive, finite number (``inf`` and ``nan`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {value}")
    return value


def trial_name(text: str) -> int | str:
    """A ``--trial`` value: a trial number, or ``vK:N`` for trial N of the study's version K.

    Example:
        >>> trial_name("3"), trial_name("v2:3")
        (3, 'v2:3')
    """
    from dense_nas.study.lineage import parse_trial_name

    try:
        version, number = parse_trial_name(text)
    except UserInputError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("trial: ")) from None
    return number if version == 1 and ":" not in text else text


class Parser(argparse.ArgumentParser):
    """argparse, but bad arguments are one line and exit code 2 (as argparse already uses)."""

    def error(self, message: str) -> Any:
        # ``main`` prints the "dense-nas: error: " prefix; a subcommand adds its own name.
        command = self.prog.partition(" ")[2]
        where = f"{command}: " if command else ""
        raise UserInputError(f"{where}{message}; see {self.prog} --help")


def study_args(parser: argparse.ArgumentParser) -> None:
    """``--study``, ``--storage`` and ``--out`` of a command on a study made before
    (``--study`` lands in ``args.study_name``)."""
    parser.add_argument(
        "--study", dest="study_name", help="study name (default: the only study in the storage)"
    )
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (sqlite:///..., postgresql://..., or a journal file path "
        "ending in .log / .journal); default: sqlite in --out",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("dense-nas-runs"),
        help="directory for the default storage, checkpoints and logs",
    )


def device_args(parser: argparse.ArgumentParser) -> None:
    """``--accelerator``, ``--precision`` and ``--compile`` outside a search (``retrain``):
    what a training run runs on, and in what, as the search's settings explain them."""
    accelerator = OPTIONS["accelerator"]  # its values are checked where it is resolved
    parser.add_argument(accelerator.flag, default=accelerator.default, help=accelerator.help)
    for option in (OPTIONS["precision"], OPTIONS["compile"]):
        parser.add_argument(
            option.flag, choices=option.choices, default=option.default, help=option.help
        )


# Spelled out rather than imported so that ``--help`` need not import torch; the tests
# check they equal dense_nas.results.export.FORMATS and dense_nas.results.loading.PICKS.
FORMAT_CHOICES = ("onnx", "torchscript", "state-dict", "exported-program")
PICK_CHOICES = ("accuracy", "smallest", "knee")
TRIAL_HELP = (
    "its number N, or vK:N for trial N of version K of a study whose space grew (the "
    "number optuna shows for <study>@vK)"
)


def choice_args(parser: argparse.ArgumentParser, *, many: bool = False) -> None:
    """Flags that choose the trial: a number, or a rule on the Pareto front; with ``many``,
    ``--trial`` may be given more than once (a list in ``args.trial``)."""
    if many:
        parser.add_argument(
            "--trial",
            type=trial_name,
            action="append",
            help=f"use this trial (repeat for more): {TRIAL_HELP}",
        )
    else:
        parser.add_argument(
            "--trial", type=trial_name, help=f"use this trial instead of picking one: {TRIAL_HELP}"
        )
    parser.add_argument(
        "--pick",
        choices=PICK_CHOICES,
        default="accuracy",
        help="which trial of the Pareto front of the study's metric (--objective) vs size "
        "(vs latency in a latency study): the best metric, the most accurate in an accuracy "
        "study (default), the smallest, or the knee of the front",
    )
    parser.add_argument(
        "--max-params", type=positive_int, help="pick only among trials with at most N parameters"
    )
    parser.add_argument(
        "--max-latency-ms",
        type=positive_float,
        metavar="X",
        help="pick only among trials whose measured latency is at most X ms per batch",
    )


def choice(args: argparse.Namespace) -> dict[str, Any]:
    """The trial-choosing flags as keyword arguments of ``find_trial``."""
    return {
        "trial": args.trial,
        "pick": args.pick,
        "max_params": args.max_params,
        "max_latency_ms": args.max_latency_ms,
        "out": args.out,
    }

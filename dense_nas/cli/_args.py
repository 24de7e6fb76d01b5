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

import yaml

from dense_nas.errors import UserInputError
from dense_nas.study.hardware import PRECISIONS


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def val_size_arg(text: str) -> int | float:
    """A count (``500``) or a fraction (``0.2``); the datamodule checks the range."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an image count or a fraction in (0, 1), got {text!r}"
        ) from None


def data_arg(text: str) -> tuple[str, Any]:
    """One ``--data-arg KEY=VALUE``; the value is read as a YAML scalar.

    Example:
        >>> data_arg("size=12"), data_arg("root=/data"), data_arg("shuffle=false")
        (('size', 12), ('root', '/data'), ('shuffle', False))
    """
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"must be KEY=VALUE with KEY a Python identifier, got {text!r}"
        )
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as err:
        reason = str(err).splitlines()[0]
        raise argparse.ArgumentTypeError(
            f"{key}: {value!r} is not a YAML value ({reason}); quote it"
        ) from None


def data_args(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The ``--data-arg`` pairs as keyword arguments; a key given twice is refused.

    Example:
        >>> data_args([("size", 12), ("seed", 1)])
        {'size': 12, 'seed': 1}
    """
    arguments: dict[str, Any] = {}
    for key, value in pairs:
        if key in arguments:
            raise UserInputError(f"{key} is given twice; give it once", param="data_args")
        arguments[key] = value
    return arguments


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


class Parser(argparse.ArgumentParser):
    """argparse, but bad arguments are one line and exit code 2 (as argparse already uses)."""

    def error(self, message: str) -> Any:
        # ``main`` prints the "dense-nas: error: " prefix; a subcommand adds its own name.
        command = self.prog.partition(" ")[2]
        where = f"{command}: " if command else ""
        raise UserInputError(f"{where}{message}; see {self.prog} --help")


def study_args(parser: argparse.ArgumentParser, *, search: bool = False) -> None:
    """``--study``, ``--storage`` and ``--out`` (``--study`` lands in ``args.study_name``)."""
    parser.add_argument(
        "--study",
        dest="study_name",
        help="study name (default: <space>-<data>); it names checkpoint files, so at most "
        "128 bytes and no '/'"
        if search
        else "study name (default: the only study in the storage)",
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
    """``--accelerator`` and ``--precision``: what a training run runs on, and in what."""
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="training precision; auto: bf16-mixed on a GPU, 32-true on the CPU "
        "(bf16-mixed pays on CPUs with native bf16; 16-mixed needs a GPU)",
    )
    parser.add_argument(
        "--compile",
        choices=COMPILE_CHOICES,
        default="auto",
        help="torch.compile the training step; auto: CUDA graphs on a GPU when the run is long "
        "enough to repay the compile (about 3,600 steps for a 100-layer net), else eager",
    )


# Spelled out rather than imported so that ``--help`` need not import torch; the tests
# check they equal dense_nas.results.export.FORMATS and dense_nas.results.loading.PICKS.
FORMAT_CHOICES = ("onnx", "torchscript", "state-dict", "exported-program")
COMPILE_CHOICES = ("auto", "on", "off")
PICK_CHOICES = ("accuracy", "smallest", "knee")


def choice_args(parser: argparse.ArgumentParser) -> None:
    """Flags that choose the trial: a number, or a rule on the Pareto front."""
    parser.add_argument("--trial", type=int, help="use this trial number instead of picking one")
    parser.add_argument(
        "--pick",
        choices=PICK_CHOICES,
        default="accuracy",
        help="which trial of the Pareto front of accuracy vs size: the most accurate "
        "(default), the smallest, or the knee of the front",
    )
    parser.add_argument(
        "--max-params", type=positive_int, help="pick only among trials with at most N parameters"
    )


def choice(args: argparse.Namespace) -> dict[str, Any]:
    """The trial-choosing flags as keyword arguments of ``find_trial``."""
    return {"trial": args.trial, "pick": args.pick, "max_params": args.max_params, "out": args.out}

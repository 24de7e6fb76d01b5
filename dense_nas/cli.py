"""The ``dense-nas`` command.

Exit codes: 0 done, 2 bad input (one line on stderr, no traceback), 1 anything else,
130 interrupted with Ctrl-C.

Example:
    >>> main(["spaces", "--help"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dense_nas.errors import UserInputError
from dense_nas.hardware import PRECISIONS

Handler = Callable[[argparse.Namespace], int]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _val_size(text: str) -> int | float:
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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but bad arguments are one line and exit code 2 (as argparse already uses)."""

    def error(self, message: str) -> Any:
        raise UserInputError(f"{self.prog}: {message}; see --help")


def _study_args(parser: argparse.ArgumentParser, *, search: bool = False) -> None:
    parser.add_argument(
        "--study",
        help="study name (default: <space>-<data>)"
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


def _device_args(parser: argparse.ArgumentParser) -> None:
    """``--accelerator`` and ``--precision``: what a training run runs on, and in what."""
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="training precision; auto: bf16-mixed on a GPU, 32-true on the CPU "
        "(bf16-mixed pays on CPUs with native bf16; 16-mixed needs a GPU)",
    )


def _search_parser(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="run (or resume) a search study",
        description="Run or resume an Optuna study over DenseNet architectures.",
    )
    p.add_argument(
        "--space",
        default="digits-tiny",
        help="built-in space name, YAML file, module:Class, or plugin name",
    )
    p.add_argument("--data", default="digits", help="dataset name (digits, cifar10, ...)")
    p.add_argument("--data-dir", type=Path, help="where dataset files live or are downloaded")
    p.add_argument(
        "--val-size",
        type=_val_size,
        help="validation images held out of training: a count or a fraction "
        "(default: 5000 for CIFAR, 0.1 elsewhere)",
    )
    p.add_argument(
        "--trials",
        type=_positive_int,
        default=24,
        help="total finished trials the study should reach (resumes count)",
    )
    p.add_argument("--timeout", type=_positive_float, help="stop starting trials after S seconds")
    p.add_argument("--epochs", type=_positive_int, help="epochs per trial (default: the space's)")
    _study_args(p, search=True)
    p.add_argument("--sampler", default="tpe", help="tpe, random, cmaes, gp, nsga2 or qmc")
    p.add_argument(
        "--pruner",
        default="hyperband",
        help="hyperband, asha (successive halving), median, percentile or none",
    )
    p.add_argument(
        "--objective", default="accuracy", help="accuracy, accuracy,params or accuracy,macs"
    )
    p.add_argument("--max-params", type=_positive_int, help="reject larger architectures")
    _device_args(p)
    p.add_argument(
        "--devices",
        type=_positive_int,
        default=1,
        help="devices per trial (DDP when more than one)",
    )
    p.add_argument("--workers", type=_positive_int, default=1, help="trials run at once")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed")
    p.add_argument(
        "--heartbeat",
        type=_positive_float,
        default=30.0,
        help="seconds after which a silent RUNNING trial counts as dead and is retried",
    )
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch threads per trial on the CPU (default: cores / (workers x devices))")
    p.add_argument("--verbose", action="store_true", help="show Lightning's own output")
    p.set_defaults(handler=_run_search)


def _run_search(args: argparse.Namespace) -> int:
    from dense_nas.study import search

    study = search(
        space=args.space,
        data=args.data,
        data_dir=args.data_dir,
        val_size=args.val_size,
        n_trials=args.trials,
        timeout=args.timeout,
        epochs=args.epochs,
        storage=args.storage,
        study_name=args.study,
        sampler=args.sampler,
        pruner=args.pruner,
        objective=args.objective,
        max_params=args.max_params,
        accelerator=args.accelerator,
        precision=args.precision,
        devices=args.devices,
        workers=args.workers,
        seed=args.seed,
        out=args.out,
        heartbeat=args.heartbeat,
        threads=args.threads or 0,
        verbose=args.verbose,
        echo=print,
    )
    from dense_nas.summary import best_table

    print(best_table(study))
    return 0


def _best_parser(sub: Any) -> None:
    p = sub.add_parser("best", help="show the best trial(s) of a study")
    _study_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_run_best)


def _run_best(args: argparse.Namespace) -> int:
    from dense_nas.storage import open_study
    from dense_nas.summary import best_json, best_table

    study = open_study(args.storage, args.study, args.out)
    print(best_json(study) if args.json else best_table(study))
    return 0


def _spaces_parser(sub: Any) -> None:
    p = sub.add_parser("spaces", help="list built-in and plugin search spaces")
    p.set_defaults(handler=_run_spaces)


def _run_spaces(args: argparse.Namespace) -> int:
    from dense_nas.space import list_spaces

    for info in list_spaces():
        print(f"{info.name:24s} {info.source:28s} {info.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (also what ``--help`` shows)."""
    parser = _Parser(prog="dense-nas", description="Neural architecture search over DenseNet.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_search_parser, _best_parser, _spaces_parser, *_extra_parsers()):
        add(sub)
    return parser


def _extra_parsers() -> list[Callable[[Any], None]]:
    """Subcommands that live next to their implementation (results, export, report)."""
    from dense_nas import commands

    return commands.PARSERS


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import optuna

    # Optuna's INFO lines would break "bad input is one line"; search prints its own.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
    except UserInputError as err:
        print(f"dense-nas: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dense-nas: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

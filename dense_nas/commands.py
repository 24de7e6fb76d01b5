"""The subcommands for the best architecture: ``export``, ``retrain`` and ``report``.

Each adder takes the CLI's subparsers and adds one subcommand whose handler returns the
exit code. Heavy imports (torch, plotting) happen inside the handlers, so ``--help``
stays fast.

Example:
    >>> from dense_nas.cli import build_parser
    >>> args = build_parser().parse_args(
    ...     ["export", "--study", "demo", "--format", "onnx", "--output", "m.onnx"])
    >>> args.format, args.pick, args.trial
    ('onnx', 'accuracy', None)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dense_nas.cli import _device_args, _positive_int, _study_args

# Spelled out rather than imported so that ``--help`` need not import torch; the tests
# check they equal dense_nas.export.FORMATS and dense_nas.results.PICKS.
FORMAT_CHOICES = ("onnx", "torchscript", "state-dict", "exported-program")
PICK_CHOICES = ("accuracy", "smallest", "knee")


def _choice_args(parser: argparse.ArgumentParser) -> None:
    """Flags that choose the trial: a number, or a rule on the Pareto front."""
    parser.add_argument("--trial", type=int, help="use this trial number instead of picking one")
    parser.add_argument(
        "--pick", choices=PICK_CHOICES, default="accuracy",
        help="which trial of the Pareto front of accuracy vs size: the most accurate "
        "(default), the smallest, or the knee of the front",
    )
    parser.add_argument("--max-params", type=_positive_int,
                        help="pick only among trials with at most N parameters")


def _choice(args: argparse.Namespace) -> dict[str, Any]:
    return {"trial": args.trial, "pick": args.pick, "max_params": args.max_params,
            "out": args.out}


def _export_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="export the best trial's network and check the file",
        description="Write the chosen trial's trained network to a file, then run the file "
        "on a batch and compare its outputs with the module's (exit 1 if they differ).",
    )
    _study_args(p)
    p.add_argument("--format", required=True, choices=FORMAT_CHOICES,
                   help="onnx (onnxruntime), torchscript, state-dict (of dense_nas.DenseNet) "
                   "or exported-program (torch.export)")
    p.add_argument("--output", required=True, type=Path, help="file to write")
    _choice_args(p)
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from dense_nas.export import ExportMismatch, export_checked
    from dense_nas.results import find_trial, load_trial, study_image_size

    study, trial = find_trial(args.storage, args.study, **_choice(args))
    module = load_trial(study, trial)
    try:
        difference = export_checked(module, args.output, args.format, study_image_size(study))
    except ExportMismatch as err:
        print(f"dense-nas: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({args.format}) of trial {trial.number}; its outputs match "
          f"the module's (largest difference {difference:.2g})")
    return 0


def _retrain_parser(sub: Any) -> None:
    p = sub.add_parser(
        "retrain", help="train the best architecture on train + validation; test accuracy",
        description="Train the chosen trial's architecture from scratch with its recipe on "
        "the training and validation images, then measure test accuracy. Checkpoints go to "
        "<out>/retrain/<study>/; the same command resumes an interrupted run.",
    )
    _study_args(p)
    p.add_argument("--epochs", type=_positive_int,
                   help="length of the schedule (default: the trial's recipe)")
    _choice_args(p)
    _device_args(p)
    p.add_argument("--verbose", action="store_true", help="show Lightning's own output")
    p.set_defaults(handler=_run_retrain)


def _run_retrain(args: argparse.Namespace) -> int:
    from dense_nas.retrain import retrain

    result = retrain(args.storage, args.study, epochs=args.epochs, accelerator=args.accelerator,
                     precision=args.precision, verbose=args.verbose, **_choice(args))
    done = result.resumed_from_epoch
    resumed = f", resumed after epoch {done}" if done else ""
    print(f"trial {result.trial}: test accuracy {result.test_accuracy:.4f} after "
          f"{result.epochs} epochs{resumed}; checkpoint {result.checkpoint}")
    return 0


def _report_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report", help="plots (HTML and PNG) and summary.md of a study",
        description="Write optimisation history, learning curves, parameter importances, "
        "the Pareto front and an accuracy-vs-size scatter as HTML and PNG, plus summary.md.",
    )
    _study_args(p)
    p.add_argument("--output", required=True, type=Path, help="directory to write into")
    p.add_argument("--top", type=_positive_int, default=10,
                   help="trials in the summary's top table")
    p.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from dense_nas.report import report

    files = report(args.storage, args.study, args.output, out=args.out, top=args.top)
    print(f"wrote {len(files)} files to {args.output}; start with {files[-1]}")
    return 0


PARSERS: list[Callable[[Any], None]] = [_export_parser, _retrain_parser, _report_parser]
"""Adders of the ``export``, ``retrain`` and ``report`` subcommands (read by the CLI)."""

"""``dense-nas retrain``: the chosen architecture trained anew, with test accuracy."""

from __future__ import annotations

import argparse
from typing import Any

from dense_nas.cli._args import choice, choice_args, device_args, positive_int, study_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "retrain",
        help="train the best architecture on train + validation; test accuracy",
        description="Train the chosen trial's architecture from scratch with its recipe on "
        "the training and validation images, then measure test accuracy. Checkpoints go to "
        "<out>/retrain/<study>/; the same command resumes an interrupted run.",
    )
    study_args(p)
    p.add_argument(
        "--epochs",
        type=positive_int,
        help="length of the schedule (default: the trial's recipe); step milestones keep "
        "their place",
    )
    choice_args(p)
    device_args(p)
    p.add_argument("--verbose", action="store_true", help="show Lightning's own output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.results.retrain import retrain
    from dense_nas.study.hardware import keep_freed_memory, resolve_accelerator

    if resolve_accelerator(args.accelerator) == "cpu":
        keep_freed_memory()  # about 1.5x faster CPU steps; this process is dense-nas's own
    result = retrain(
        args.storage,
        args.study_name,
        epochs=args.epochs,
        accelerator=args.accelerator,
        precision=args.precision,
        compile=args.compile,
        verbose=args.verbose,
        **choice(args),
    )
    done = result.resumed_from_epoch
    resumed = f", resumed after epoch {done}" if done else ""
    print(
        f"trial {result.trial}: test accuracy {result.test_accuracy:.4f} after "
        f"{result.epochs} epochs{resumed}; checkpoint {result.checkpoint}"
    )
    return 0

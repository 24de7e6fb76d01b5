"""``dense-nas retrain``: chosen architectures trained anew with several seeds, test accuracy."""

from __future__ import annotations

import argparse
from typing import Any

from dense_nas.cli._args import choice_args, device_args, positive_int, study_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "retrain",
        help="train the best architectures on train + validation; test accuracy over seeds",
        description="Train chosen trials' architectures from scratch with their recipes on "
        "the training and validation images, once per seed, then measure test accuracy. "
        "Every result is kept on the study; each architecture's mean ± std over its seeds "
        "is printed (and shown by best and report). Checkpoints go to "
        "<out>/retrain/<study>/<run>/; the same command resumes an interrupted run.",
    )
    study_args(p)
    p.add_argument(
        "--top",
        type=int,
        help="retrain the K best trials, one per architecture (instead of --trial / --pick)",
    )
    p.add_argument(
        "--seeds", type=int, default=1, help="runs per trial, 1 to 100, seeds --seed + i"
    )
    p.add_argument("--seed", type=int, help="the first seed (default: the study's seed)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="runs at once, each in its own process; on GPUs they take the GPUs in turn",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=0,
        help="torch threads per run on the CPU (default: cores / workers)",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        help="length of the schedule (default: the trial's recipe); step milestones keep "
        "their place",
    )
    choice_args(p, many=True)
    device_args(p)
    p.add_argument("--verbose", action="store_true", help="show Lightning's own output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.results.retrain import RetrainResult, retrain
    from dense_nas.results.summary import retrained_table
    from dense_nas.study.hardware import keep_freed_memory, resolve_accelerator
    from dense_nas.study.storage import open_study

    if resolve_accelerator(args.accelerator) == "cpu":
        keep_freed_memory()  # about 1.5x faster CPU steps; this process is dense-nas's own

    def say(result: RetrainResult) -> None:
        done = result.resumed_from_epoch
        resumed = f", resumed after epoch {done}" if done else ""
        print(
            f"trial {result.trial} seed {result.seed}: test accuracy "
            f"{result.test_accuracy:.4f} after {result.epochs} epochs{resumed} "
            f"({result.seconds:.1f} s); checkpoint {result.checkpoint}",
            flush=True,
        )

    results = retrain(
        args.storage,
        args.study_name,
        trials=args.trial or (),
        top=args.top,
        seeds=args.seeds,
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        epochs=args.epochs,
        pick=args.pick,
        max_params=args.max_params,
        max_latency_ms=args.max_latency_ms,
        out=args.out,
        accelerator=args.accelerator,
        precision=args.precision,
        compile=args.compile,
        verbose=args.verbose,
        on_result=say,
    )
    del results  # printed one by one; the table reads every run the study keeps
    study = open_study(args.storage, args.study_name, args.out)
    print(
        "\nretrained on train + validation, test accuracy over seeds (every run kept):\n"
        + (retrained_table(study) or "")
    )
    return 0

"""``dense-nas search``: run or resume a study."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dense_nas.cli._args import device_args, positive_float, positive_int, study_args, val_size_arg


def add_parser(sub: Any) -> None:
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
        type=val_size_arg,
        help="validation images held out of training: a count or a fraction "
        "(default: 5000 for CIFAR, 0.1 elsewhere)",
    )
    p.add_argument(
        "--trials",
        type=positive_int,
        default=24,
        help="total finished trials the study should reach (resumes count)",
    )
    p.add_argument("--timeout", type=positive_float, help="stop starting trials after S seconds")
    p.add_argument("--epochs", type=positive_int, help="epochs per trial (default: the space's)")
    study_args(p, search=True)
    p.add_argument("--sampler", default="tpe", help="tpe, random, cmaes, gp, nsga2 or qmc")
    p.add_argument(
        "--pruner",
        default="hyperband",
        help="hyperband, asha (successive halving), median, percentile or none",
    )
    p.add_argument(
        "--objective", default="accuracy", help="accuracy, accuracy,params or accuracy,macs"
    )
    p.add_argument("--max-params", type=positive_int, help="reject larger architectures")
    device_args(p)
    p.add_argument(
        "--devices",
        type=positive_int,
        default=1,
        help="devices per trial (DDP when more than one)",
    )
    p.add_argument("--workers", type=positive_int, default=1, help="trials run at once")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed")
    p.add_argument(
        "--heartbeat",
        type=positive_float,
        default=30.0,
        help="seconds after which a silent RUNNING trial counts as dead and is retried",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads per trial on the CPU (default: cores / (workers x devices))",
    )
    p.add_argument("--verbose", action="store_true", help="show Lightning's own output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.study._search import search

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
    from dense_nas.results.summary import best_table

    print(best_table(study))
    return 0

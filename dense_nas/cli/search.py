"""``dense-nas search``: run or resume a study."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from dense_nas.cli._args import (
    data_arg,
    data_args,
    device_args,
    positive_float,
    positive_int,
    study_args,
    val_size_arg,
)


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
    p.add_argument(
        "--data",
        default="digits",
        help="built-in dataset (digits, cifar10, ...; see `dense-nas data`), a plugin's "
        "datamodule name, or your own LightningDataModule as package.module:Name (a class "
        "or a function returning one, importable in every process)",
    )
    p.add_argument(
        "--data-arg",
        dest="data_args",
        metavar="KEY=VALUE",
        type=data_arg,
        action="append",
        default=[],
        help="keyword argument of your datamodule (repeatable); VALUE is read as a YAML "
        "scalar: 12 is a number, true a boolean, '12' (quoted) a string",
    )
    p.add_argument(
        "--data-dir", type=Path, help="where a built-in dataset's files live or are downloaded"
    )
    p.add_argument(
        "--val-size",
        type=val_size_arg,
        help="built-in datasets: validation images held out of training, a count or a "
        "fraction (default: 5000 for CIFAR, 0.1 elsewhere); your datamodule holds out its own",
    )
    p.add_argument(
        "--trials",
        dest="n_trials",
        type=positive_int,
        default=24,
        help="finished trials the study should hold: COMPLETE, PRUNED and FAILED count, a "
        "FAILED try that is retried does not (see --retries); a resumed study goes on to N",
    )
    p.add_argument("--timeout", type=positive_float, help="stop starting trials after S seconds")
    p.add_argument(
        "--epochs",
        type=positive_int,
        help="epochs per trial (default: the space's); step milestones keep their place",
    )
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
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed, and the sampler seed of the first command on the study (a "
        "command sharing it with others samples with seed + its slot number)",
    )
    p.add_argument(
        "--heartbeat",
        type=positive_float,
        default=30.0,
        help="seconds after which a silent RUNNING trial counts as dead and is retried "
        "(at most 86400, a day)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="retries (same parameters) of a trial whose process died of a signal or ran "
        "out of memory, or whose worker went silent; only its last failed try counts "
        "toward --trials; a trial that raises in training fails once (0 to 100, default 2)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=0,
        help="torch threads per trial on the CPU (default: cores / (workers x devices))",
    )
    p.add_argument(
        "--logger",
        default="csv",
        help="each trial's Lightning logger: csv (default, in <out>/logs/<study>/trial-<N>/), "
        "tensorboard (the same place; pip install 'dense-nas[tensorboard]'), mlflow (one run "
        "per trial; pip install 'dense-nas[mlflow]') or none",
    )
    p.add_argument(
        "--mlflow-uri",
        help="MLflow tracking URI for --logger mlflow (default: a local store in <out>/mlruns)",
    )
    p.add_argument(
        "--trainer-config",
        type=Path,
        help="YAML in LightningCLI's format: trainer: options and callbacks: "
        "(class_path/init_args) for every trial and retrain; recorded on the study",
    )
    p.add_argument("--verbose", action="store_true", help="show Lightning's own output")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print only the final table (default: a live view on a terminal, else a line "
        "per finished trial and per epoch)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.study.process import prestart

    if args.devices == 1 and prestart.cpu_only(args.accelerator):
        # Trial processes import torch and Lightning while this command does the same.
        env = prestart.trial_process_env(args.workers, 1, args.threads)
        prestart.start(min(args.workers, os.cpu_count() or 1), env, verbose=args.verbose)
    try:
        return _search(args)
    finally:
        prestart.discard()


def _search(args: argparse.Namespace) -> int:
    from dense_nas.cli._progress import make_view
    from dense_nas.results.summary import best_table
    from dense_nas.study import run_search
    from dense_nas.study.settings import SearchSettings

    # The flags' destinations are the settings' field names (the --help names may differ).
    names = {f.name for f in dataclasses.fields(SearchSettings)}
    options = {k: v for k, v in vars(args).items() if k in names}
    options["data_args"] = data_args(args.data_args)
    settings = SearchSettings(**options)
    view = make_view(quiet=args.quiet, terminal=sys.stdout.isatty())
    study = run_search(settings, view)
    print(best_table(study))
    return 0

"""``dense-nas best``: the best trial(s) of a study as a table or JSON; with ``--config``,
a LightningCLI config of the chosen trial too."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dense_nas.cli._args import choice_args, study_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser("best", help="show the best trial(s) of a study")
    study_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--config",
        type=Path,
        help="also write a LightningCLI config of the chosen trial (model, data, trainer) to "
        "PATH; train it with: python -m dense_nas.lightning fit --config PATH",
    )
    choice_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.results.selection import check_pick, select_entry
    from dense_nas.results.summary import best_json, best_table
    from dense_nas.study.storage import open_study

    check_pick(args.pick)  # bad input stops before the storage is opened
    study = open_study(args.storage, args.study_name, args.out)
    # No completed trial yet: one line and exit 2, as for export and retrain.
    chosen = select_entry(
        study,
        trial=args.trial,
        pick=args.pick,
        max_params=args.max_params,
        max_latency_ms=args.max_latency_ms,
    )
    if args.config is not None:
        from dense_nas.results.lightning_config import write_lightning_config

        write_lightning_config(args.config, chosen.study, chosen.trial)
    if args.json:
        print(best_json(study, chosen.name))
        return 0
    print(best_table(study))
    if (args.trial, args.pick, args.max_params, args.max_latency_ms) != (
        None,
        "accuracy",
        None,
        None,
    ):
        print(f"chosen: trial {chosen.name} (by {_how_chosen(args)})")
    if args.config is not None:
        print(
            f"wrote the LightningCLI config of trial {chosen.name} to {args.config}; "
            f"train it with: python -m dense_nas.lightning fit --config {args.config}"
        )
    return 0


def _how_chosen(args: argparse.Namespace) -> str:
    if args.trial is not None:
        return f"--trial {args.trial}"
    limit = f" --max-params {args.max_params}" if args.max_params is not None else ""
    if args.max_latency_ms is not None:
        limit += f" --max-latency-ms {args.max_latency_ms:g}"
    return f"--pick {args.pick}{limit}"

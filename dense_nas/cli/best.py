"""``dense-nas best``: the best trial(s) of a study as a table or JSON, and the trial
``--trial`` / ``--pick`` / ``--max-params`` / ``--max-latency-ms`` choose (as ``export``
and ``retrain`` would); with ``--config``, a LightningCLI config of that trial too."""

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
        help="also write a LightningCLI config of the trial load_best takes (model, data, "
        "trainer) to PATH; train it with: python -m dense_nas.lightning fit --config PATH",
    )
    choice_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.results.selection import completed_trials, select_trial
    from dense_nas.results.summary import best_json, best_table, trial_table
    from dense_nas.study.storage import open_study

    study = open_study(args.storage, args.study_name, args.out)
    completed_trials(study)  # none yet: one line and exit 2, as for export and retrain
    chosen = select_trial(
        study,
        trial=args.trial,
        pick=args.pick,
        max_params=args.max_params,
        max_latency_ms=args.max_latency_ms,
    )
    if args.config is not None:
        from dense_nas.results.lightning_config import write_lightning_config

        write_lightning_config(args.config, study, chosen)
    print(best_json(study, chosen.number) if args.json else best_table(study))
    asked = (args.trial, args.max_params, args.max_latency_ms) != (None, None, None)
    if not args.json and (asked or args.pick != "accuracy"):
        print(f"\nthe trial chosen (--pick {args.pick}):\n" + trial_table([chosen]))
    if args.config is not None and not args.json:
        print(
            f"wrote the LightningCLI config of trial {chosen.number} to {args.config}; "
            f"train it with: python -m dense_nas.lightning fit --config {args.config}"
        )
    return 0

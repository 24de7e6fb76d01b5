"""``dense-nas best``: the best trial(s) of a study as a table or JSON; with ``--config``,
a LightningCLI config of the chosen trial too."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dense_nas.cli._args import study_args


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
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.results.selection import completed_trials
    from dense_nas.results.summary import best_json, best_table
    from dense_nas.study.storage import open_study

    study = open_study(args.storage, args.study_name, args.out)
    completed_trials(study)  # none yet: one line and exit 2, as for export and retrain
    if args.config is not None:
        from dense_nas.results.lightning_config import write_lightning_config
        from dense_nas.results.selection import select_trial

        chosen = select_trial(study)
        write_lightning_config(args.config, study, chosen)
    print(best_json(study) if args.json else best_table(study))
    if args.config is not None and not args.json:
        print(
            f"wrote the LightningCLI config of trial {chosen.number} to {args.config}; "
            f"train it with: python -m dense_nas.lightning fit --config {args.config}"
        )
    return 0

"""``dense-nas best``: the best trial(s) of a study as a table or JSON."""

from __future__ import annotations

import argparse
from typing import Any

from dense_nas.cli._args import study_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser("best", help="show the best trial(s) of a study")
    study_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.results.selection import completed_trials
    from dense_nas.results.summary import best_json, best_table
    from dense_nas.study.storage import open_study

    study = open_study(args.storage, args.study_name, args.out)
    completed_trials(study)  # none yet: one line and exit 2, as for export and retrain
    print(best_json(study) if args.json else best_table(study))
    return 0

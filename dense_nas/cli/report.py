"""``dense-nas report``: plots and a summary of a study."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dense_nas.cli._args import positive_int, study_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="plots (HTML and PNG) and summary.md of a study",
        description="Write optimisation history, learning curves, parameter importances, "
        "the Pareto front and an accuracy-vs-size scatter as HTML and PNG, plus summary.md.",
    )
    study_args(p)
    p.add_argument("--output", required=True, type=Path, help="directory to write into")
    p.add_argument("--top", type=positive_int, default=10, help="trials in the summary's top table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.results.report import report

    files = report(args.storage, args.study_name, args.output, out=args.out, top=args.top)
    print(f"wrote {len(files)} files to {args.output}; start with {files[-1]}")
    return 0

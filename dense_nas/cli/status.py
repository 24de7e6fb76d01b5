"""``dense-nas status``: where a study stands, from its storage, on any machine."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Any

from dense_nas.cli._args import positive_float, study_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="running trials (host, epoch, accuracy, heartbeat), counts, best, budget left",
        description="Read a study from its storage (SQLite, PostgreSQL or a journal file) and "
        "show every worker's RUNNING trial on every machine, the trials by state, the best "
        "trial and the budget left with an ETA. Trials silent for longer than their "
        "worker's --heartbeat are flagged STALE.",
    )
    study_args(p)
    p.add_argument("--json", action="store_true", help="print JSON (one object per snapshot)")
    p.add_argument(
        "--watch",
        type=positive_float,
        metavar="S",
        help="show a new snapshot every S seconds until Ctrl-C",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.results.status import status_json, status_text, study_status
    from dense_nas.study.storage import open_study

    study = open_study(args.storage, args.study_name, args.out)
    if args.watch is not None and not args.json and sys.stdout.isatty():
        return _watch_live(study, args.watch)
    while True:
        status = study_status(study)
        if args.json:
            print(json.dumps(asdict(status)) if args.watch else status_json(status), flush=True)
        else:
            print(status_text(status), flush=True)
        if args.watch is None:
            return 0
        time.sleep(args.watch)


def _watch_live(study: Any, seconds: float) -> int:
    from rich.live import Live
    from rich.text import Text

    from dense_nas.results.status import status_text, study_status

    with Live(Text(status_text(study_status(study))), auto_refresh=False) as live:
        while True:
            time.sleep(seconds)
            live.update(Text(status_text(study_status(study))), refresh=True)

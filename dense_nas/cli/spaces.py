"""``dense-nas spaces``: the built-in and plugin search spaces."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("spaces", help="list built-in and plugin search spaces")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.space import list_spaces

    for info in list_spaces():
        print(f"{info.name:24s} {info.source:28s} {info.description}")
    return 0

"""``dense-nas spaces``: the built-in and plugin search spaces."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("spaces", help="list built-in and plugin search spaces")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.cli._args import print_listing
    from dense_nas.space import list_spaces

    print_listing(list_spaces())
    return 0

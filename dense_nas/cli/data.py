"""``dense-nas data``: the built-in datasets and the plugins' datamodules."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "data",
        help="list built-in datasets and plugin datamodules",
        description="List what --data finds by name: the built-in datasets, then the "
        "datamodules plugin packages register in the entry-point group "
        "dense_nas.datamodules. Your own datamodule needs no registration: pass "
        "--data package.module:Name.",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.cli._args import print_listing
    from dense_nas.data import list_datasets

    print_listing(list_datasets())
    return 0

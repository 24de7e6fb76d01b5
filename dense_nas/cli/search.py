"""``dense-nas search``: run or resume a study.

Its flags are made from the :class:`~dense_nas.study.settings.SearchSettings` fields
(:data:`~dense_nas.study.settings.OPTIONS`); a settings file (``--config``) gives the
same options, and the flags given beside it override it.

Example:
    >>> from dense_nas.cli._args import Parser
    >>> parser = Parser(prog="dense-nas")
    >>> add_parser(parser.add_subparsers())
    >>> args = parser.parse_args(["search", "--trials", "3", "--data-arg", "size=8"])
    >>> settings(args).n_trials, settings(args).data_args
    (3, {'size': 8})
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dense_nas.errors import UserInputError
from dense_nas.space._values import Where
from dense_nas.study.settings import OPTIONS, Option, SearchSettings, gather_pairs


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="run (or resume) a search study",
        description="Run or resume an Optuna study over DenseNet architectures.",
    )
    for option in OPTIONS.values():
        _add_flag(p, option)
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print only the final table (default: a live view on a terminal, else a line "
        "per finished trial and per epoch)",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="read the settings from this YAML file, keyed by search()'s keywords (as "
        "--print-config writes it); the flags given beside it override it",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the settings this command would search with as YAML, for --config, "
        "and exit without searching",
    )
    p.set_defaults(handler=run)


def _add_flag(parser: argparse.ArgumentParser, option: Option) -> None:
    # SUPPRESS: only the flags given land in the namespace, so a settings file's value is
    # overridden by a flag given, never by a flag's default.
    help_text = option.help.replace("%", "%%")  # argparse formats help with %
    if option.read is None:
        parser.add_argument(
            option.flag,
            dest=option.name,
            action="store_true",
            default=argparse.SUPPRESS,
            help=help_text,
        )
        return
    parser.add_argument(
        option.flag,
        dest=option.name,
        type=_flag_type(option.read),
        action="append" if option.repeated else "store",
        default=argparse.SUPPRESS,
        metavar=option.metavar,
        help=help_text,
    )


def _flag_type(read: Callable[[str], Any]) -> Callable[[str], Any]:
    """``read`` as an argparse type: its one-line refusal becomes the flag's error."""

    def flag_type(text: str) -> Any:
        try:
            return read(text)
        except UserInputError as err:
            raise argparse.ArgumentTypeError(err.message) from None

    return flag_type


def settings(args: argparse.Namespace) -> SearchSettings:
    """The search's settings: the defaults, then ``--config``'s file, then the flags given.

    A value from the file that the settings refuse is named by the file and its key.
    """
    from dense_nas.study.settings_file import read_settings_file

    from_file = read_settings_file(args.config) if args.config else {}
    given = {name: value for name, value in vars(args).items() if name in OPTIONS}
    for name, value in given.items():
        if OPTIONS[name].repeated:
            given[name] = gather_pairs(value, name)
    try:
        return SearchSettings(**{**from_file, **given})
    except UserInputError as err:
        if err.param in from_file and err.param not in given:
            raise Where(str(args.config)).at(err.param).error(err.message) from None
        raise


def run(args: argparse.Namespace) -> int:
    from dense_nas.study.process import prestart

    chosen = settings(args)
    if args.print_config:
        from dense_nas.study.settings_file import settings_yaml

        print(settings_yaml(chosen), end="")
        return 0
    if chosen.devices == 1 and prestart.cpu_only(chosen.accelerator):
        # Trial processes import torch and Lightning while this command does the same.
        env = prestart.trial_process_env(chosen.workers, 1, chosen.threads)
        prestart.start(min(chosen.workers, os.cpu_count() or 1), env, verbose=chosen.verbose)
    try:
        return _search(chosen, quiet=args.quiet)
    finally:
        prestart.discard()


def _search(chosen: SearchSettings, *, quiet: bool) -> int:
    from dense_nas.cli._progress import make_view
    from dense_nas.results.summary import best_table
    from dense_nas.study import run_search

    view = make_view(quiet=quiet, terminal=sys.stdout.isatty())
    study = run_search(chosen, view)
    print(best_table(study))
    return 0

"""The ``dense-nas`` command.

Exit codes: 0 done, 2 bad input (one line on stderr, no traceback), 1 anything else
(a storage that cannot be written is one line too), 130 interrupted with Ctrl-C.

Example:
    >>> main(["spaces", "--help"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import NoReturn

from dense_nas.cli import best, data, export, report, retrain, search, spaces, status
from dense_nas.cli._args import Parser
from dense_nas.errors import StorageError, UserInputError, cli_message

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (also what ``--help`` shows)."""
    parser = Parser(prog="dense-nas", description="Neural architecture search over DenseNet.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in (search, status, best, export, retrain, report, spaces, data):
        command.add_parser(sub)
    return parser


def installed_version() -> str:
    """The version of the installed ``dense-nas`` distribution (its metadata).

    Example:
        >>> installed_version() == metadata.version("dense-nas")
        True
    """
    try:
        return metadata.version("dense-nas")
    except metadata.PackageNotFoundError:  # imported from a source tree never installed
        from dense_nas import __version__

        return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import optuna

    # Optuna's INFO lines would break "bad input is one line"; search prints its own.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
    except UserInputError as err:
        print(f"dense-nas: error: {cli_message(err)}", file=sys.stderr)
        return 2
    except StorageError as err:  # a full disk or a lost server: one line, not a traceback
        print(f"dense-nas: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `dense-nas status --json | head`: the reader has had enough
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        return 0
    except KeyboardInterrupt:
        print("dense-nas: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def command() -> NoReturn:
    """The ``dense-nas`` executable: :func:`main`, then exit without tearing down the
    interpreter.

    Once the command is done, the exit handlers run (logging, temporary files, anything a
    library registered) and the output is flushed; the process then ends at once instead
    of unloading torch, Lightning and their modules one object at a time, which took
    1.5-3 s of every command on the 2-core development machine. An exception that escapes
    :func:`main` exits the usual way, with its traceback.
    """
    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing left to say
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    command()

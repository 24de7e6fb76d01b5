"""What a running search tells whoever shows it: lines, trials starting, epochs.

:func:`~dense_nas.study.search` calls a :class:`SearchObserver` from its worker
threads; the command line's live view, its plain lines and ``--quiet`` are observers
(``dense_nas.cli._progress``), and ``search(echo=print)`` is :class:`EchoLines`.

Example:
    >>> lines = []
    >>> observer = EchoLines(lines.append)
    >>> observer.line("trial   0  COMPLETE ...")
    >>> lines
    ['trial   0  COMPLETE ...']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dense_nas.records import EpochProgress

if TYPE_CHECKING:
    import optuna


class SearchObserver:
    """Hears a search; every method does nothing unless a subclass says otherwise.

    Methods are called from the workers' threads: implementations must be thread-safe.
    """

    def begin(self, study: optuna.Study) -> None:
        """The study is open and its trials are about to run."""

    def line(self, text: str) -> None:
        """A permanent line: the study's header, or a finished trial."""

    def trial_started(self, number: int, worker: int, arch: str, epochs: int) -> None:
        """Trial ``number`` starts training on ``worker`` for ``epochs`` epochs."""

    def epoch(self, number: int, worker: int, progress: EpochProgress) -> None:
        """Trial ``number`` finished an epoch."""

    def close(self) -> None:
        """The search is over (or interrupted)."""


class EchoLines(SearchObserver):
    """The permanent lines, handed to a callable such as ``print``."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo

    def line(self, text: str) -> None:
        self.echo(text)

"""How ``dense-nas search`` shows a running study: a live view, plain lines, or quiet.

On a terminal the live view (rich) redraws, in place, the same picture ``dense-nas status``
prints (:mod:`dense_nas.results.status`): the study line and one line per running trial,
read from the storage, so it shows the other machines' trials too. Finished trials print
their permanent line above it. Elsewhere (a pipe, CI, ``nohup``) it prints plain lines,
at most one per epoch per trial; ``--quiet`` prints only the final table.

rich rather than tqdm: the view is a block of several lines redrawn together with
permanent lines printed above it, which rich's ``Live`` does directly; tqdm draws one bar
per line.

Example:
    >>> lines = []
    >>> view = PlainLines(lines.append)
    >>> view.epoch(3, 0, {"epoch": 2, "epochs": 5, "accuracy": 0.9, "loss": 0.3,
    ...                   "images_per_second": 850.0, "at": 0.0})
    >>> lines
    ['trial   3  epoch 2/5  acc 0.9000  loss 0.3000  850 img/s  (worker 0)']
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dense_nas.records import EpochProgress
from dense_nas.results.summary import metric_text
from dense_nas.study.events import SearchObserver

if TYPE_CHECKING:
    import optuna
    from rich.live import Live
    from rich.text import Text


class PlainLines(SearchObserver):
    """Permanent lines and one line per epoch per trial, for logs and pipes."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self.write(text)

    def epoch(self, number: int, worker: int, progress: EpochProgress) -> None:
        metric, accuracy = progress.get("metric", "accuracy"), progress["accuracy"]
        self.line(
            f"trial {number:>3}  epoch {progress['epoch']}/{progress['epochs']}  "
            f"{metric_text(metric, progress.get('value', accuracy), accuracy)}  "
            f"loss {progress['loss']:.4f}  "
            f"{progress['images_per_second']:.0f} img/s  (worker {worker})"
        )


class LiveView(SearchObserver):
    """The study's status redrawn in place on a terminal, finished trials printed above."""

    def __init__(self, refresh_seconds: float = 0.5) -> None:
        self.refresh_seconds = refresh_seconds
        self._study: optuna.Study | None = None
        self._live: Live | None = None
        self._started = time.monotonic()
        self._shown: Text | None = None
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def begin(self, study: optuna.Study) -> None:
        from rich.live import Live

        self._study = study
        self._live = Live(
            get_renderable=self._render, refresh_per_second=4, transient=True, redirect_stdout=False
        )
        self._live.start()

    def _render(self) -> Text:
        from rich.text import Text

        from dense_nas.results.status import status_text, study_status

        with self._lock:
            now = time.monotonic()
            if self._study is not None and (
                self._shown is None or now - self._read_at >= self.refresh_seconds
            ):
                elapsed = int(now - self._started)
                text = status_text(study_status(self._study))
                first, _, rest = text.partition("\n")
                lines = [f"{first}, elapsed {elapsed // 60}m{elapsed % 60:02d}s"]
                self._shown = Text("\n".join(lines + ([rest] if rest else [])))
                self._read_at = now
            return self._shown if self._shown is not None else Text("")

    def line(self, text: str) -> None:
        if self._live is None:
            print(text, flush=True)
        else:
            self._live.console.print(text, highlight=False, markup=False)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def make_view(quiet: bool, terminal: bool) -> SearchObserver:
    """The observer for ``dense-nas search``: quiet, live on a terminal, else plain lines."""
    if quiet:
        return SearchObserver()
    if terminal:
        return LiveView()
    return PlainLines(lambda text: print(text, flush=True))

"""One storage write repeated on a background thread while a block runs.

Trial heartbeats (:class:`~dense_nas.study.coordination.heartbeats.Heartbeat`) and
sampler slots (:class:`~dense_nas.study.coordination.slots.SamplerSlot`) both keep a
record fresh this way: entering the block writes the record first (:meth:`begin`), a
daemon thread then writes it every ``interval`` seconds until the block ends, a write
that fails (a busy or briefly unreachable storage) is tried again at the next beat, and
one that finds the record no longer this process's ends the thread. Leaving the block
stops the thread, then lets the record go (:meth:`end`).

Example:
    >>> import threading
    >>> class Counter(PeriodicWrite):
    ...     def __init__(self) -> None:
    ...         super().__init__(interval=0.2, name="counter")
    ...         self.writes = 0
    ...         self.last = threading.Event()
    ...     def write(self) -> bool:
    ...         self.writes += 1
    ...         if self.writes < 2:
    ...             return True
    ...         self.last.set()
    ...         return False  # the second write is the last
    >>> with Counter() as counter:
    ...     counter.last.wait(timeout=60)  # however slow the machine
    True
    >>> counter.writes
    2
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from typing_extensions import Self

logger = logging.getLogger(__name__)

MIN_INTERVAL = 0.2
"""Seconds: the shortest interval between two writes."""


class PeriodicWrite:
    """Context manager: :meth:`begin`, then :meth:`write` every ``interval`` seconds on a
    daemon thread until the block ends, then :meth:`end`.

    Args:
        interval: seconds between writes (at least :data:`MIN_INTERVAL`).
        name: the thread's name, also used in the debug line of a failed write.
    """

    def __init__(self, interval: float, name: str) -> None:
        self.interval = max(MIN_INTERVAL, interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._repeat, daemon=True, name=name)

    def begin(self) -> None:
        """Write the record as the block starts (an error here leaves the block unentered)."""

    def write(self) -> bool:
        """Write the record once; ``False``: it is no longer ours, stop writing it."""
        raise NotImplementedError

    def end(self) -> None:
        """Let the record go once the writes have stopped."""

    def _repeat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.write():
                    return
            except Exception as err:  # a busy or briefly unreachable storage: try again
                logger.debug("%s not written: %s", self._thread.name, err)

    def __enter__(self) -> Self:
        self.begin()
        self._thread.start()  # the first repeated write comes after one interval
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()  # a write in progress ends first
        self.end()

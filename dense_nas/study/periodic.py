"""One storage write repeated on a background thread while a block runs.

Trial heartbeats (:class:`~dense_nas.study.heartbeats.Heartbeat`) and sampler slots
(:class:`~dense_nas.study.slots.SamplerSlot`) both keep a record fresh this way: a
daemon thread writes it every ``interval`` seconds until the block ends, a write that
fails (a busy or briefly unreachable storage) is tried again at the next beat, and one
that finds the record no longer this process's ends the thread.

Example:
    >>> class Counter(PeriodicWrite):
    ...     def __init__(self) -> None:
    ...         super().__init__(interval=0.2, name="counter")
    ...         self.writes = 0
    ...     def write(self) -> bool:
    ...         self.writes += 1
    ...         return self.writes < 2  # the second write is the last
    >>> counter = Counter()
    >>> counter.start()
    >>> import time; time.sleep(0.7)
    >>> counter.stop()
    >>> counter.writes
    2
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)

MIN_INTERVAL = 0.2
"""Seconds: the shortest interval between two writes."""


class PeriodicWrite:
    """Call :meth:`write` every ``interval`` seconds on a daemon thread, from
    :meth:`start` to :meth:`stop`.

    Args:
        interval: seconds between writes (at least :data:`MIN_INTERVAL`).
        name: the thread's name, also used in the debug line of a failed write.
    """

    def __init__(self, interval: float, name: str) -> None:
        self.interval = max(MIN_INTERVAL, interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._repeat, daemon=True, name=name)

    def write(self) -> bool:
        """Write the record once; ``False``: it is no longer ours, stop writing it."""
        raise NotImplementedError

    def _repeat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.write():
                    return
            except Exception as err:  # a busy or briefly unreachable storage: try again
                logger.debug("%s not written: %s", self._thread.name, err)

    def start(self) -> None:
        """Start writing (the first write comes after one interval)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop writing, and wait for a write in progress to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

"""Keep Lightning's banner, device lines and third-party warnings off the terminal.

Example:
    >>> import logging
    >>> with quiet_lightning(verbose=False):
    ...     logging.getLogger("lightning.pytorch").getEffectiveLevel() == logging.ERROR
    True
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


@contextlib.contextmanager
def quiet_lightning(verbose: bool) -> Iterator[None]:
    """Silence Lightning's info lines and all warnings inside the block, unless ``verbose``."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)

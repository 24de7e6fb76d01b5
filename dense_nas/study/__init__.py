"""Running a study: settings, workers, trial processes, heartbeats, pruning and storages.

- :func:`search` creates or resumes a study and runs its trials (``_search``).
- :mod:`~dense_nas.study.storage`: storage URLs, the artifact store, opening a study;
  :mod:`~dense_nas.study.journal`: journal files that survive a torn write.
- :mod:`~dense_nas.study.samplers`, :mod:`~dense_nas.study.objectives`: Optuna samplers
  and pruners by name; the accuracy and accuracy-vs-size objectives.
- :mod:`~dense_nas.study.process`: the trial process and the worker's side of the
  channel to it (runner, channel, messages, prestart, OpenMP waiting, pruning relay).
- :mod:`~dense_nas.study.coordination`: what commands sharing a study coordinate
  through it: heartbeats of RUNNING trials (and the retry of trials whose worker died),
  sampler slots, trials that train the same candidate.
- :mod:`~dense_nas.study.hardware`: accelerator, precision and GPU assignment.
- :mod:`~dense_nas.study.loggers`: each trial's Lightning logger (``--logger``);
  :mod:`~dense_nas.study.trainer_config`: the user's callbacks and Trainer options
  (``--trainer-config``).

Example:
    >>> from dense_nas.study import search
    >>> search.__name__
    'search'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dense_nas._lazy import lazy_exports

if TYPE_CHECKING:
    from dense_nas.study._search import search
    from dense_nas.study.storage import open_study

__all__ = ["open_study", "search"]

__getattr__ = lazy_exports(
    __name__,
    {"search": "dense_nas.study._search", "open_study": "dense_nas.study.storage"},
)

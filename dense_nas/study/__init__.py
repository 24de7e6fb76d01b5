"""Running a study: settings, workers, trial processes, coordination and storages.

The extension points: :func:`search` (keyword arguments) and :func:`run_search` (one
:class:`SearchSettings`) create or resume a study and run its trials, telling a
:class:`SearchObserver` what happens (:class:`EchoLines`: each line to a callable);
:func:`open_study` opens one for reading. Inside, a search follows a trial's life:

- ``_search``: :func:`search` and :func:`run_search`, which only orchestrate;
  ``_open``: checking the input and opening the study (nothing is stored before the
  input is checked); ``_run``: the state its workers share; ``_workers``: the worker
  threads and the budget; ``_attempt``: one trial from asked to told
  (``TrialAttempt``: candidate, twin, spec, each epoch, settle).
- :mod:`~dense_nas.study.process`: the trial process and the worker's side of the
  channel to it (runner, channel, messages, prestart, OpenMP waiting, pruning relay).
- :mod:`~dense_nas.study.coordination`: what commands sharing a study coordinate
  through it: heartbeats of RUNNING trials (and the retry of trials whose worker died),
  sampler slots, trials that train the same candidate.
- :mod:`~dense_nas.study.settings`: the options; :mod:`~dense_nas.study.events`: the
  observer; :mod:`~dense_nas.study.budget`: which trials count.
- :mod:`~dense_nas.study.storage`: storage URLs, the artifact store, opening a study;
  :mod:`~dense_nas.study.journal`: journal files that survive a torn write.
- :mod:`~dense_nas.study.samplers`, :mod:`~dense_nas.study.objectives`: Optuna samplers
  and pruners by name; the accuracy and accuracy-vs-size objectives.
- :mod:`~dense_nas.study.hardware`: accelerator, precision and GPU assignment;
  :mod:`~dense_nas.study.memory_fit`: a trial's step fitted to its GPU memory share;
  :mod:`~dense_nas.study.latency_meter`: each candidate's latency, measured before it
  trains while the command's other trials are held.
- :mod:`~dense_nas.study.loggers`: each trial's Lightning logger (``--logger``);
  :mod:`~dense_nas.study.trainer_config`: the user's callbacks and Trainer options
  (``--trainer-config``).

Example:
    >>> from dense_nas.study import SearchSettings, run_search, search
    >>> search.__name__, run_search.__name__, SearchSettings(n_trials=3).n_trials
    ('search', 'run_search', 3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dense_nas._lazy import lazy_exports

if TYPE_CHECKING:
    from dense_nas.study._search import run_search, search
    from dense_nas.study.events import EchoLines, SearchObserver
    from dense_nas.study.settings import SearchSettings
    from dense_nas.study.storage import open_study

__all__ = ["EchoLines", "SearchObserver", "SearchSettings", "open_study", "run_search", "search"]

__getattr__ = lazy_exports(
    __name__,
    {
        "search": "dense_nas.study._search",
        "run_search": "dense_nas.study._search",
        "SearchSettings": "dense_nas.study.settings",
        "SearchObserver": "dense_nas.study.events",
        "EchoLines": "dense_nas.study.events",
        "open_study": "dense_nas.study.storage",
    },
)

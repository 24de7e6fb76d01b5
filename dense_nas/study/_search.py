"""``search()``: create or resume an Optuna study and run its trials.

Data flows one way: a worker asks the study for a trial, the space samples a candidate,
constraints are checked with the cost model (a violation is pruned before any training),
a candidate already trained is answered from that trial, and otherwise a trial process
trains it, reporting the study's validation metric every epoch; the worker reports it to Optuna,
decides pruning, and tells the study the outcome.

Example:
    >>> study = search(n_trials=2, epochs=1, out=tmp_dir)  # doctest: +SKIP
    >>> study.best_value > 0.5  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
from typing_extensions import Unpack

from dense_nas.study._open import prepare
from dense_nas.study._workers import run_workers
from dense_nas.study.budget import finished_and_running
from dense_nas.study.coordination.slots import SamplerSlot, sampler_seed
from dense_nas.study.events import EchoLines, SearchObserver
from dense_nas.study.samplers import make_sampler
from dense_nas.study.settings import SearchOptions, SearchSettings
from dense_nas.study.storage import storage_url

Echo = Callable[[str], None]


def search(*, echo: Echo | None = None, **options: Unpack[SearchOptions]) -> optuna.Study:
    """Run (or resume) a study until it holds ``n_trials`` finished trials.

    The budget counts COMPLETE, PRUNED and FAILED trials, so a study whose every trial
    fails still ends. A FAILED try that is retried with the same parameters does not
    count: its process died of a signal or ran out of memory, or its worker went silent
    for ``heartbeat`` seconds (until ``retries`` tries in a row made no progress, after
    which the last failed try counts; a retry goes on from the killed try's resume
    checkpoint, see ``resume_every``), or Ctrl-C stopped it. A trial that raises in
    training (a NaN loss, a bug) fails once and counts. A trial another machine made surplus does not count. Running
    the same call again resumes the study. A storage that cannot be written (a full disk)
    raises :class:`~dense_nas.errors.StorageError`.

    Args:
        echo: called with a line per finished trial (``print`` in the CLI).
        **options: the search options, one keyword per
            :class:`~dense_nas.study.settings.SearchSettings` field (typed by
            :class:`~dense_nas.study.settings.SearchOptions`); what each means and its
            default: :func:`~dense_nas.study.settings.options_table`, the same text as
            ``dense-nas search --help``. Bad input raises
            :class:`~dense_nas.errors.UserInputError` before anything is stored.

    Returns:
        The ``optuna.Study``.
    """
    return run_search(SearchSettings(**options), EchoLines(echo) if echo else None)


def run_search(settings: SearchSettings, observer: SearchObserver | None = None) -> optuna.Study:
    """:func:`search` with its options as one :class:`~dense_nas.study.settings.SearchSettings`.

    Example:
        >>> run_search(SearchSettings(n_trials=2, epochs=1, out=tmp_dir))  # doctest: +SKIP
    """
    run = prepare(settings, observer or SearchObserver())
    with SamplerSlot(run.study, settings.heartbeat) as slot:
        seed = sampler_seed(settings.seed, slot.number)
        run.study.sampler = make_sampler(
            settings.sampler, seed, run.objective.multi, settings.sampler_args
        )
        run.observer.begin(run.study)
        finished, running = finished_and_running(run.study.get_trials(deepcopy=False))
        finished += run.counted_elsewhere
        where = storage_url(settings.storage, settings.out_dir)
        shared = f"; sampler seed {seed} (slot {slot.number}: another command shares the study)"
        run.observer.line(
            f"study {run.study.study_name!r} in {where}: "
            f"{finished} of {settings.n_trials} trials finished"
            + (f", {running} running elsewhere" if running else "")
            + (shared if slot.number else "")
        )
        for note in run.notes:
            run.observer.line(note)
        try:
            run_workers(run)
        finally:
            run.observer.close()
    return run.study

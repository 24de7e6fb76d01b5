"""Start a study from another one (``search --warm-start STUDY``).

The other study's best trials (by the one meaning of best,
:func:`~dense_nas.results.selection.ranked`; ``--warm-start-top`` of them) that lie
inside this space are enqueued before anything else, so they are the first trained here;
those outside it are named in one line and skipped. When the other study trained on the
same data (the same recorded data, arguments and validation split), its finished trials
that fit are also added as history (:func:`~dense_nas.study.lineage.copy_trial`), so the
sampler and the pruner learn from them at once; history does not use up ``--trials``
and is not among this study's results. The study records where it started from
(:class:`~dense_nas.records.WarmStartRecord`), once.

Example:
    >>> import optuna
    >>> storage = optuna.storages.InMemoryStorage()
    >>> study = optuna.create_study(study_name="other", storage=storage)
    >>> open_warm_start("other", storage, "sqlite:///s.db").study_name
    'other'
    >>> open_warm_start("nowhere", storage, "sqlite:///s.db")
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: warm_start: no study named 'nowhere' in sqlite:///s.db (studies there: other); name one of them
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from dense_nas.records import TrialRef, WarmStartRecord, record_study, study_attrs
from dense_nas.study.lineage import FINISHED, copy_trial, fit, lineage_trials, user_study
from dense_nas.study.storage import load_named_study

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from dense_nas.space import SearchSpace, Task

SAME_DATA_ATTRS = ("data", "data_args", "val_size")
"""What must agree for another study's results to be history here: the same images,
split the same way."""


def open_warm_start(name: str, storage: BaseStorage, where: str) -> optuna.Study:
    """The study to start from, or one line listing the studies ``where`` holds.

    Called before anything is stored, so a wrong name stores nothing.
    """
    return load_named_study(storage, where, name, param="warm_start", fix="name one of them")


def start_from(
    study: optuna.Study,
    other: optuna.Study,
    space: SearchSpace,
    task: Task,
    *,
    top: int,
    storage: str | None,
) -> list[str]:
    """Enqueue ``other``'s best ``top`` trials that fit this space, add its history on
    the same data, and record it on ``study`` (once: a resumed study is left as it is).

    Returns:
        The lines to print under the study's header.
    """
    from dense_nas.results.selection import ranked, size_metric

    if "warm_start" in study_attrs(study):
        return []
    source = user_study(other)
    finished = lineage_trials(source, states=FINISHED)
    complete = {id(e.trial): e for e in finished if e.trial.state == TrialState.COMPLETE}
    best = ranked([e.trial for e in complete.values()], size_metric(source))[:top]
    enqueued: list[int] = []
    skipped: list[int] = []
    for trial in best:
        fitted = fit(trial, space, task)
        if fitted is None:
            skipped.append(trial.number)
            continue
        origin = TrialRef(study=complete[id(trial)].study.study_name, number=trial.number)
        study.enqueue_trial(fitted[0], user_attrs={"warm_start_of": origin})
        enqueued.append(trial.number)
    history = 0
    if _same_data(study, source):
        copies = []
        for entry in finished:
            fitted = fit(entry.trial, space, task)
            if fitted is not None:
                copies.append(copy_trial(entry.study, entry.trial, *fitted, counts=False))
        study.add_trials(copies)
        history = len(copies)
    record = WarmStartRecord(
        study=source.study_name,
        storage=storage,
        enqueued=enqueued,
        skipped=skipped,
        history=history,
    )
    record_study(study, warm_start=record)
    return [_line(record, len(best))]


def _same_data(study: optuna.Study, other: optuna.Study) -> bool:
    mine, theirs = study_attrs(study), study_attrs(other)
    recorded: list[Any] = [mine.get(key) for key in SAME_DATA_ATTRS]
    return "data" in theirs and recorded == [theirs.get(key) for key in SAME_DATA_ATTRS]


def _line(record: WarmStartRecord, best: int) -> str:
    """One line: what was enqueued, what was skipped, what history was added."""
    numbers = ", ".join(f"#{n}" for n in record["enqueued"]) or "none"
    line = f"warm start from {record['study']!r}: of its best {best} trials, {numbers} go first"
    if record["skipped"]:
        outside = ", ".join(f"#{n}" for n in record["skipped"])
        line += f"; {outside} lie outside this space and are skipped"
    if record["history"]:
        line += f"; {record['history']} of its trials added as history (the same data)"
    return line

"""The resume checkpoint a trial's tries share, seen from the worker.

Every try of one set of parameters (the first try and each retry, each its own Optuna
trial with its own number) names the same file, after the first try's number, so a
retry goes on where the killed try's process stopped
(:mod:`dense_nas.study.process.resume` writes and reads it). Here the worker decides
with it: did a failed try make progress (its checkpoint now holds more epochs than it
started from: then the try uses up no retry), and which validation accuracies of the
earlier tries a resumed retry takes over.

Example:
    >>> import optuna
    >>> from pathlib import Path
    >>> study = optuna.create_study(study_name="s")
    >>> study.enqueue_trial({}, user_attrs={"retry_of": 0, "first_try": 0})
    >>> resume_path(Path("runs/resume"), study, study.ask()).as_posix()
    'runs/resume/s-trial-0.ckpt'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from dense_nas.records import trial_attrs


def first_try(trial: optuna.Trial | FrozenTrial) -> int:
    """The number of the first try of the trial's parameters (the trial's own on a first try).

    Example:
        >>> import optuna
        >>> first_try(optuna.trial.create_trial(value=1.0, user_attrs={"first_try": 4}))
        4
    """
    return int(trial_attrs(trial).get("first_try", trial.number))


def resume_path(folder: Path, study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> Path:
    """The resume checkpoint every try of ``trial``'s parameters writes and goes on from."""
    return folder / f"{study.study_name}-trial-{first_try(trial)}.ckpt"


def made_progress(trial: optuna.Trial | FrozenTrial, checkpoint: Path | None) -> bool:
    """Whether a failed try left its resume checkpoint further on than it started.

    A try that reported no epoch wrote none (it is written as the epoch after a reported
    one starts); else the file says. Reading it logs one warning when it is torn.
    """
    attrs = trial_attrs(trial)
    started = attrs.get("resumed_from", 0)
    progress = attrs.get("progress")
    if checkpoint is None or progress is None or progress["epoch"] <= started:
        return False
    from dense_nas.study.process.resume import checkpoint_to_resume

    point = checkpoint_to_resume(checkpoint)
    return point is not None and point.epoch > started


def discard_resume(checkpoint: Path) -> None:
    """Remove a resume checkpoint once its trial has ended for good."""
    from dense_nas.study.process.resume import discard

    discard(checkpoint)


def earlier_curve(
    trials: Sequence[FrozenTrial], trial: optuna.Trial | FrozenTrial, before: int
) -> dict[int, float]:
    """Validation accuracy after each epoch below ``before``, from the trial's earlier tries.

    Where two tries reported one epoch (the later went on from an older checkpoint) the
    later try's value is taken: it is the one the resumed training continues.

    Example:
        >>> import optuna
        >>> from optuna.trial import TrialState, create_trial
        >>> study = optuna.create_study()
        >>> study.add_trial(create_trial(state=TrialState.FAIL,
        ...                              intermediate_values={1: 0.5, 2: 0.6, 3: 0.7}))
        >>> study.enqueue_trial({}, user_attrs={"retry_of": 0, "first_try": 0})
        >>> earlier_curve(study.get_trials(), study.ask(), before=3)
        {1: 0.5, 2: 0.6}
    """
    first = first_try(trial)
    tries = sorted(
        (t for t in trials if t.number < trial.number and first_try(t) == first),
        key=lambda t: t.number,
    )
    curve: dict[int, float] = {}
    for earlier in tries:
        for step, value in earlier.intermediate_values.items():
            if step < before:
                curve[int(step)] = float(value)
    return dict(sorted(curve.items()))

"""Where a study stands, read from its storage alone: for any machine, while it runs.

:func:`study_status` takes a snapshot (RUNNING trials with their host, epoch, last
metric, accuracy and heartbeat age; counts by state; the best trial by the study's
metric; the budget left; an ETA);
:func:`status_text` and :func:`status_json` show it. ``dense-nas status`` prints it, and
the live view of ``dense-nas search`` redraws the same text.

The ETA is the epochs still to train (the rest of each running trial, and the trials the
budget still holds at the mean length of the finished ones) times the mean seconds an
epoch has taken, shared among the trials running at once.

Example:
    >>> import optuna
    >>> study = optuna.create_study(study_name="demo", direction="maximize")
    >>> status = study_status(study, now=0.0)
    >>> status.running, status.counts, status.best
    ((), {}, None)
    >>> print(status_text(status).splitlines()[0])
    study 'demo': 0 finished (budget not recorded)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from dense_nas.records import (
    LATENCY_ATTR_PREFIX,
    SpaceVersionRecord,
    VersionRecord,
    study_attrs,
    trial_attrs,
)
from dense_nas.results.selection import best_entries, study_goal
from dense_nas.results.summary import describe_arch, metric_text
from dense_nas.study.lineage import lineage_finished, lineage_trials, version_studies


@dataclass(frozen=True)
class RunningTrial:
    """One RUNNING trial as the storage shows it."""

    number: int
    host: str | None
    pid: int | None
    worker: int | None
    arch: str
    epoch: int
    """Epochs done (0 before the first one ends)."""
    epochs: int | None
    accuracy: float | None
    """Validation accuracy after the last epoch."""
    images_per_second: float | None
    elapsed: float
    """Seconds since the trial started."""
    heartbeat_age: float
    """Seconds since its worker last said it is alive."""
    stale: bool
    """Silent for longer than its worker's grace: the worker is probably dead."""
    metric: str = "accuracy"
    """The study's metric."""
    value: float | None = None
    """The metric after the last epoch (the accuracy, in an accuracy study)."""


@dataclass(frozen=True)
class StudyStatus:
    """A snapshot of a study."""

    study: str
    counts: dict[str, int]
    """Trials by state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
    running: tuple[RunningTrial, ...]
    best: tuple[int | str, float] | None
    """Name (as ``--trial`` takes it) and metric of the trial ``load_best`` would take."""
    n_trials: int | None
    """The budget the last search asked for."""
    finished: int
    """Finished trials that count toward the budget."""
    eta_seconds: float | None
    space_versions: tuple[SpaceVersionRecord, ...] = ()
    """Every version of the space the study's latest version searched, oldest first."""
    versions: tuple[VersionRecord, ...] = ()
    """Every version of a study that grew (:mod:`dense_nas.study.lineage`), oldest first."""
    latency_measured: dict[str, int] = field(default_factory=dict)
    """Architectures whose latency the study keeps, by device fingerprint key."""
    best_latency_ms: float | None = None
    """The best trial's measured latency, when it has one."""
    metric: str = "accuracy"
    """The study's metric (what ``best`` is by)."""


def _running(trial: FrozenTrial, now: float) -> RunningTrial:
    attrs = trial_attrs(trial)
    worker, progress = attrs.get("worker"), attrs.get("progress")
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    age = now - attrs.get("heartbeat", started)
    return RunningTrial(
        number=trial.number,
        host=worker["host"] if worker else None,
        pid=worker["pid"] if worker else None,
        worker=worker["index"] if worker else None,
        arch=describe_arch(attrs.get("arch") or {}),
        epoch=progress["epoch"] if progress else 0,
        epochs=progress["epochs"] if progress else attrs.get("training", {}).get("epochs"),
        accuracy=progress["accuracy"] if progress else None,
        images_per_second=progress["images_per_second"] if progress else None,
        elapsed=max(0.0, now - started),
        heartbeat_age=max(0.0, age),
        stale=worker is not None and age > worker["grace"],
        metric=progress.get("metric", "accuracy") if progress else "accuracy",
        value=progress.get("value", progress["accuracy"]) if progress else None,
    )


def _eta(trials: list[FrozenTrial], running: tuple[RunningTrial, ...], left: int) -> float | None:
    trained = [
        trial_attrs(t)
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        and trial_attrs(t).get("epochs")
        and "duplicate_of" not in trial_attrs(t)
        and "seconds" in trial_attrs(t)
    ]
    if not trained:
        return None
    epochs_done = sum(a["epochs"] for a in trained)
    per_epoch = sum(a["seconds"] for a in trained) / epochs_done
    mean_epochs = epochs_done / len(trained)
    to_train: float = sum(max(0, (r.epochs or r.epoch) - r.epoch) for r in running)
    to_train += max(0, left - len(running)) * mean_epochs
    return to_train * per_epoch / max(1, len(running))


def study_status(study: optuna.Study, now: float | None = None) -> StudyStatus:
    """A snapshot of ``study`` (every version of it, once it grew) from its storage."""
    now = time.time() if now is None else now
    versions = version_studies(study)
    user, latest = versions[0], versions[-1]
    trials = [entry.trial for entry in lineage_trials(user)]  # each trained trial once
    running = tuple(_running(t, now) for t in trials if t.state == TrialState.RUNNING)
    finished = lineage_finished(user)
    n_trials = study_attrs(latest).get("n_trials")  # what the last search went for
    left = max(0, n_trials - finished) if n_trials is not None else 0
    best = best_entries(user, top=1)
    kept = {  # each version keeps what it measured; a name is one architecture and device
        name: record
        for version in versions
        for name, record in version.user_attrs.items()
        if name.startswith(LATENCY_ATTR_PREFIX)
    }
    measured = Counter(str(record["device"]) for record in kept.values())
    return StudyStatus(
        study=user.study_name,
        counts=dict(Counter(t.state.name for t in trials)),
        running=running,
        best=(best[0].name, float(best[0].trial.values[0])) if best else None,
        n_trials=n_trials,
        finished=finished,
        eta_seconds=_eta(trials, running, left) if left else 0.0 if n_trials else None,
        space_versions=tuple(study_attrs(latest).get("space_versions", [])),
        versions=tuple(study_attrs(user).get("versions", [])),
        latency_measured=dict(measured),
        best_latency_ms=trial_attrs(best[0].trial).get("latency_ms") if best else None,
        metric=study_goal(user).metric,
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def running_line(trial: RunningTrial) -> str:
    """One line for a running trial: worker, number, architecture, epoch, accuracy, speed.

    Example:
        >>> t = RunningTrial(3, "box", 7, 0, "k=4 blocks=1 basic theta=0.5", 2, 5, 0.91,
        ...                  850.0, 12.0, 1.0, False, value=0.91)
        >>> running_line(t)
        'worker 0@box  trial   3  epoch 2/5  acc 0.9100    850 img/s  0m12s  k=4 blocks=1 basic theta=0.5'
        >>> from dataclasses import replace
        >>> running_line(replace(t, metric="f1", value=0.5)).split("  ")[4]
        'f1 0.5000'
    """
    where = f"worker {trial.worker}@{trial.host}" if trial.host else "worker ?"
    acc = metric_text(trial.metric, trial.value, trial.accuracy)
    speed = f"{trial.images_per_second:5.0f} img/s" if trial.images_per_second else "    - img/s"
    stale = f"  STALE (silent {trial.heartbeat_age:.0f} s)" if trial.stale else ""
    return (
        f"{where}  trial {trial.number:>3}  epoch {trial.epoch}/{trial.epochs or '?'}  "
        f"{acc}  {speed}  {_duration(trial.elapsed)}  {trial.arch}{stale}"
    )


def study_line(status: StudyStatus) -> str:
    """The study's line: finished of total, pruned, failed, best, ETA."""
    total = f" of {status.n_trials}" if status.n_trials is not None else " (budget not recorded)"
    parts = [f"study {status.study!r}: {status.finished} finished{total}"]
    for state, word in (("PRUNED", "pruned"), ("FAIL", "failed"), ("RUNNING", "running")):
        if status.counts.get(state):
            parts.append(f"{status.counts[state]} {word}")
    if status.best is not None:
        latency = "" if status.best_latency_ms is None else f", {status.best_latency_ms:.3g} ms"
        best = "best" if status.metric == "accuracy" else f"best {status.metric}"
        parts.append(f"{best} {status.best[1]:.4f} (#{status.best[0]}{latency})")
    if status.eta_seconds is not None and status.n_trials is not None:
        parts.append(f"ETA {_duration(status.eta_seconds)}")
    return ", ".join(parts)


def versions_line(status: StudyStatus) -> str | None:
    """The space's versions, when the study searched more than one.

    Example:
        >>> v = [{"name": "a", "fingerprint": "09a7a7fd26af", "first_trial": 0},
        ...      {"name": "a", "fingerprint": "5c1e22b0aa31", "first_trial": 12}]
        >>> versions_line(StudyStatus("s", {}, (), None, None, 0, None, tuple(v)))
        'space versions: a 09a7a7fd from #0, a 5c1e22b0 from #12'
    """
    if len(status.space_versions) < 2:
        return None
    return "space versions: " + ", ".join(
        f"{v['name']} {v['fingerprint'][:8]} from #{v['first_trial']}"
        for v in status.space_versions
    )


def lineage_line(status: StudyStatus) -> str | None:
    """The study's versions, once it grew: each version's study, what changed, and how
    many earlier trials it carried.

    Example:
        >>> v = [{"study": "s", "space": "a", "fingerprint": "09a7a7fd", "changes": [],
        ...       "carried": 0, "earlier": 0},
        ...      {"study": "s@v2", "space": "a", "fingerprint": "5c1e22b0",
        ...       "changes": ["batch_size gained 32"], "carried": 14, "earlier": 15}]
        >>> print(lineage_line(StudyStatus("s", {}, (), None, None, 0, None, (), tuple(v))))
        versions: 1 s; 2 s@v2 (batch_size gained 32; 14 of 15 earlier trials carried)
    """
    if len(status.versions) < 2:
        return None
    shown = [f"1 {status.versions[0]['study']}"]
    for number, v in enumerate(status.versions[1:], start=2):
        changed = "; ".join(v["changes"])
        carried = f"{v['carried']} of {v['earlier']} earlier trials carried"
        shown.append(f"{number} {v['study']} ({changed}; {carried})")
    return "versions: " + "; ".join(shown)


def latency_line(status: StudyStatus) -> str | None:
    """The architectures whose latency the study measured, by device, when it measured any.

    Example:
        >>> s = StudyStatus("s", {}, (), None, None, 0, None, latency_measured={"cpu=EPYC": 7})
        >>> latency_line(s)
        'latency measured for 7 architectures on cpu=EPYC'
    """
    if not status.latency_measured:
        return None
    return "latency measured for " + ", ".join(
        f"{count} architectures on {device}" for device, count in status.latency_measured.items()
    )


def status_text(status: StudyStatus) -> str:
    """The snapshot as lines: the study line, its versions once it grew, the space's
    versions when it changed, the latencies measured, then one line per running trial."""
    lines = (lineage_line(status), versions_line(status), latency_line(status))
    extra = [line for line in lines if line]
    return "\n".join([study_line(status), *extra, *map(running_line, status.running)])


def status_json(status: StudyStatus) -> str:
    """The snapshot as JSON, for scripts."""
    return json.dumps(asdict(status), indent=2)

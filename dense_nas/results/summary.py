"""Text views of a study: a line per finished trial, the best trial(s) as a table or JSON.

:func:`table` is the one table writer: the same rows become aligned text for the
terminal (``dense-nas best``) or Markdown (the report's ``summary.md``), and
:func:`trial_table` is the table of trials both show.

Example:
    >>> import optuna
    >>> study = optuna.create_study(study_name="demo", direction="maximize")
    >>> best_table(study)
    'no completed trials yet'
    >>> arch = {"growth_rate": 12, "block_layers": [6, 6], "bottleneck": False, "compression": 1}
    >>> for acc, epochs in [(0.9, 3), (0.95, 5)]:
    ...     study.add_trial(optuna.trial.create_trial(value=acc, user_attrs={
    ...         "params": 12_000, "macs": 480_000, "epochs": epochs, "arch": arch}))
    >>> print(best_table(study))
    best trials of study 'demo' (load_best, export and retrain take the first):
    trial  val accuracy  params     MACs  epochs  seconds  architecture                   note
        1        0.9500  12,000  480,000       5        -  k=12 blocks=6-6 basic theta=1
        0        0.9000  12,000  480,000       3        -  k=12 blocks=6-6 basic theta=1
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dense_nas.records import failure_reason, retrain_records, trial_attrs
from dense_nas.results.retrained import retrained_archs
from dense_nas.results.selection import ACCURACY, Goal, best_entries, study_goal
from dense_nas.study.lineage import user_study


def describe_arch(arch: dict[str, Any]) -> str:
    """A short human description of an architecture dict.

    Example:
        >>> describe_arch({"growth_rate": 12, "block_layers": [16, 16, 16], "bottleneck": True,
        ...                "bottleneck_width": 4, "compression": 0.5})
        'k=12 blocks=16-16-16 BC(4) theta=0.5'
        >>> describe_arch({})
        '-'
    """
    if not arch:
        return "-"
    blocks = "-".join(str(n) for n in arch.get("block_layers", []))
    kind = f"BC({arch.get('bottleneck_width')})" if arch.get("bottleneck") else "basic"
    return f"k={arch.get('growth_rate')} blocks={blocks} {kind} theta={arch.get('compression'):g}"


def _is_number(cell: str) -> bool:
    return cell.replace(",", "").replace(".", "", 1).removeprefix("-").isdigit()


def _right_aligned(column: Sequence[str]) -> bool:
    """A column of numbers (``-`` marks a missing one) reads best aligned right."""
    return all(cell == "-" or _is_number(cell) for cell in column)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, markdown: bool = False) -> str:
    """Rows as an aligned text table, or as a Markdown table: the one table writer.

    Cells are written with ``str``, ``None`` as ``-``. A column of numbers is aligned
    right, in both forms.

    Args:
        headers: the column titles.
        rows: one sequence of cells per row, as many as ``headers``.
        markdown: a GitHub Markdown table instead of columns padded with spaces.

    Example:
        >>> rows = [(3, "0.9500", "k=12"), (10, None, "k=4")]
        >>> print(table(("trial", "val accuracy", "architecture"), rows))
        trial  val accuracy  architecture
            3        0.9500  k=12
           10             -  k=4
        >>> print(table(("trial", "val accuracy", "architecture"), rows, markdown=True))
        | trial | val accuracy | architecture |
        |---:|---:|---|
        | 3 | 0.9500 | k=12 |
        | 10 | - | k=4 |
    """
    cells = [["-" if cell is None else str(cell) for cell in row] for row in rows]
    columns = list(zip(*cells, strict=True)) if cells else [() for _ in headers]
    right = [_right_aligned(column) for column in columns]
    if markdown:
        rule = "|" + "".join("---:|" if r else "---|" for r in right)
        body = ["| " + " | ".join(line) + " |" for line in [list(headers), *cells]]
        return "\n".join([body[0], rule, *body[1:]])
    widths = [
        max(map(len, [title, *column])) for title, column in zip(headers, columns, strict=True)
    ]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if r else cell.ljust(width)
            for cell, width, r in zip(line, widths, right, strict=True)
        ).rstrip()
        for line in [list(headers), *cells]
    )


_TRIAL_HEADERS = ("params", "MACs", "epochs", "seconds", "architecture", "note")


def _count(value: int | None) -> str | None:
    return None if value is None else f"{value:,}"


def _value_headers(goal: Goal) -> tuple[str, ...]:
    """The metric's column, and accuracy's beside it when the metric is another."""
    if goal.metric == "accuracy":
        return ("val accuracy",)
    return (f"val {goal.metric}", "val accuracy")


def _value_cells(trial: FrozenTrial, goal: Goal) -> tuple[str | None, ...]:
    if goal.metric == "accuracy":
        return (f"{trial.values[0]:.4f}",)
    accuracy = goal.accuracy(trial)
    return (f"{trial.values[0]:.4f}", None if accuracy is None else f"{accuracy:.4f}")


def _same_version(name: int | str, number: int) -> int | str:
    """Trial ``number`` of the version that holds the trial named ``name`` (``vK:N``)."""
    return f"{name.partition(':')[0]}:{number}" if isinstance(name, str) else number


def _latency(trial: FrozenTrial) -> str | None:
    found = trial_attrs(trial).get("latency_ms")
    return None if found is None else f"{found:.3g}"


def _trial_cells(trial: FrozenTrial, name: int | str, goal: Goal, latency: bool) -> tuple[Any, ...]:
    attrs = trial_attrs(trial)
    seconds = attrs.get("seconds")
    same = attrs.get("duplicate_of")
    return (
        name,
        *_value_cells(trial, goal),
        _count(attrs.get("params")),
        _count(attrs.get("macs")),
        *((_latency(trial),) if latency else ()),
        attrs.get("epochs"),
        None if seconds is None else f"{seconds:.1f}",
        describe_arch(attrs.get("arch") or {}),
        "" if same is None else f"same as trial {_same_version(name, same)}",
    )


def trial_table(
    trials: Sequence[FrozenTrial],
    *,
    markdown: bool = False,
    names: Sequence[int | str] | None = None,
    goal: Goal = ACCURACY,
) -> str:
    """Completed trials, one row each in the given order, as text or Markdown (:func:`table`):
    the study's metric (``goal``), and accuracy beside it when the metric is another; with
    a ``latency ms`` column after MACs when any of them measured its latency.

    ``names``: how ``--trial`` names each (``vK:N`` in a study's later versions); by
    default their numbers.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> for seconds in (3.25, 0.01):
        ...     study.add_trial(optuna.trial.create_trial(value=0.95, user_attrs={
        ...         "params": 12_000, "seconds": seconds, "duplicate_of": 0}))
        >>> print(trial_table(study.trials[1:], markdown=True))
        | trial | val accuracy | params | MACs | epochs | seconds | architecture | note |
        |---:|---:|---:|---:|---:|---:|---:|---|
        | 1 | 0.9500 | 12,000 | - | - | 0.0 | - | same as trial 0 |
        >>> study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={"latency_ms": 0.4213}))
        >>> print(trial_table(study.trials[2:]))
        trial  val accuracy  params  MACs  latency ms  epochs  seconds  architecture  note
            2        0.9000       -     -       0.421       -        -             -
        >>> study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={
        ...     "params": 100, "accuracy": 0.8}))
        >>> print(trial_table(study.trials[3:], goal=Goal("f1")))
        trial  val f1  val accuracy  params  MACs  epochs  seconds  architecture  note
            3  0.5000        0.8000     100     -       -        -             -
    """
    headers: tuple[str, ...] = ("trial", *_value_headers(goal), *_TRIAL_HEADERS)
    shown = [t.number for t in trials] if names is None else names
    latency = any("latency_ms" in trial_attrs(t) for t in trials)
    if latency:
        at = headers.index("MACs") + 1
        headers = (*headers[:at], "latency ms", *headers[at:])
    rows = [_trial_cells(t, name, goal, latency) for t, name in zip(trials, shown, strict=True)]
    return table(headers, rows, markdown=markdown)


_RETRAINED_HEADERS = ("trials", "epochs", "seeds", "test accuracy", "architecture")


def retrained_table(study: optuna.Study, *, markdown: bool = False) -> str | None:
    """Each retrained architecture's test accuracy, mean ± std over its seeds (n of them),
    best first; ``None`` before any retrain (:func:`~dense_nas.results.retrained.retrained_archs`).

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> arch = {"growth_rate": 12, "block_layers": [6, 6], "bottleneck": False,
        ...         "compression": 1}
        >>> study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={"arch": arch}))
        >>> retrained_table(study) is None
        True
        >>> study.set_user_attr("retrains", [{"trial": 0, "arch_key": "a", "seed": s,
        ...     "epochs": 3, "test_accuracy": acc} for s, acc in [(0, 0.9), (1, 0.92)]])
        >>> print(retrained_table(study))
        trials  epochs  seeds  test accuracy    architecture
             0       3      2  0.9100 ± 0.0141  k=12 blocks=6-6 basic theta=1
    """
    archs = retrained_archs(retrain_records(study))
    if not archs:
        return None
    described = {
        t.number: describe_arch(trial_attrs(t).get("arch") or {})
        for t in study.get_trials(deepcopy=False)
    }
    rows = [
        (
            ",".join(map(str, arch.trials)),
            arch.epochs,
            arch.n,
            arch.accuracy_text(),
            described.get(arch.trials[0], "-"),
        )
        for arch in archs
    ]
    return table(_RETRAINED_HEADERS, rows, markdown=markdown)


def _row(trial: FrozenTrial, name: int | str, goal: Goal) -> dict[str, Any]:
    attrs = trial_attrs(trial)
    return {
        "trial": name,
        "metric": goal.metric,
        "value": trial.values[0],
        "accuracy": goal.accuracy(trial),
        "params": attrs.get("params"),
        "macs": attrs.get("macs"),
        "latency_ms": attrs.get("latency_ms"),
        "latency_spread": attrs.get("latency_spread"),
        "latency_device": attrs.get("latency_device"),
        "epochs": attrs.get("epochs"),
        "arch": attrs.get("arch"),
        "training": attrs.get("training"),
        "duplicate_of": attrs.get("duplicate_of"),
    }


def best_json(study: optuna.Study, chosen: int | str | None = None) -> str:
    """The best trial(s) (the Pareto front for multi-objective studies) as JSON.

    ``chosen`` is the trial a ``--pick``, ``--trial`` or ``--max-params`` chose, named as
    ``--trial`` takes it; by default the one ``load_best``, ``export`` and ``retrain`` use:
    the first of ``best``. Each ``trial`` is named the same way: its number, or ``"vK:N"``
    for a trial of version K of a study that grew; each row holds the study's ``metric``,
    its ``value`` and the validation ``accuracy`` (the same as ``value`` in an accuracy
    study). ``retrained`` holds each retrained architecture's test accuracy over its seeds
    (:meth:`~dense_nas.results.retrained.RetrainedArch.to_dict`), best mean first.
    """
    entries = best_entries(study)
    if chosen is None and entries:
        chosen = entries[0].name
    goal = study_goal(study)
    rows = [_row(e.trial, e.name, goal) for e in entries]
    retrained = [arch.to_dict() for arch in retrained_archs(retrain_records(study))]
    name = user_study(study).study_name
    return json.dumps(
        {"study": name, "chosen": chosen, "best": rows, "retrained": retrained}, indent=2
    )


def best_table(study: optuna.Study) -> str:
    """The best trial(s) as an aligned text table (:func:`trial_table`), best first; then
    the retrained architectures' test accuracy (:func:`retrained_table`), once retrained."""
    entries = best_entries(study)
    if not entries:
        return "no completed trials yet"
    title = "Pareto front" if len(study.directions) > 1 else "best trials"
    text = (
        f"{title} of study {user_study(study).study_name!r} "
        "(load_best, export and retrain take the first):\n"
        + trial_table(
            [e.trial for e in entries], names=[e.name for e in entries], goal=study_goal(study)
        )
    )
    retrained = retrained_table(study)
    if retrained is not None:
        text += "\n\nretrained on train + validation, test accuracy over seeds:\n" + retrained
    return text


def metric_text(metric: str, value: float | None, accuracy: float | None) -> str:
    """A metric in a line (``acc`` for accuracy, as lines always said), with accuracy
    beside another metric; ``-`` for a value not known.

    Example:
        >>> metric_text("accuracy", 0.9, 0.9), metric_text("f1", 0.52, None)
        ('acc 0.9000', 'f1 0.5200  acc -')
    """

    def shown(number: float | None) -> str:
        return "-" if number is None else f"{number:.4f}"

    if metric == "accuracy":
        return f"acc {shown(value)}"
    return f"{metric} {shown(value)}  acc {shown(accuracy)}"


def trial_line(study: optuna.Study, number: int) -> str:
    """One line for a just-finished trial: number, state, metric (accuracy beside another),
    params, best so far.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(direction="minimize")
        >>> study.set_user_attr("objective", "nll")
        >>> for nll in (0.5, 0.3):
        ...     study.add_trial(optuna.trial.create_trial(value=nll, user_attrs={
        ...         "params": 900, "epochs": 2, "accuracy": 0.9}))
        >>> trial_line(study, 0)
        'trial   0  COMPLETE  nll 0.5000  acc 0.9000  params       900  epochs   2  best 0.3000 (#1)'
    """
    trials = study.get_trials(deepcopy=False)
    trial = next(t for t in trials if t.number == number)
    attrs = trial_attrs(trial)
    goal = study_goal(study)
    value = trial.values[0] if trial.values else None
    shown = metric_text(goal.metric, value, goal.accuracy(trial) if trial.values else None)
    failed = trial.state == TrialState.FAIL  # only then the study's records are read
    why = (
        attrs.get("pruned_reason")
        or failure_reason(trial, trials, study.user_attrs if failed else None)
        or ""
    )
    if "duplicate_of" in attrs:
        why = f"same as trial {attrs['duplicate_of']}"
    best = best_entries(study, top=1)
    best_text = f"best {best[0].trial.values[0]:.4f} (#{best[0].name})" if best else "best -"
    epochs = attrs.get("epochs", 0)
    latency = _latency(trial)
    return (
        f"trial {number:>3}  {trial.state.name:<8}  {shown}  "
        f"params {attrs.get('params', 0):>9,}  "
        + (f"latency {latency:>6} ms  " if latency is not None else "")
        + f"epochs {epochs:>3}  {best_text}{'  ' + why if why else ''}"
    )

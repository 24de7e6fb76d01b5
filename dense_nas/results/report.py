"""Plots and a summary of a dense-nas study, for any storage Optuna reads.

:func:`write_report` writes into one directory:

- ``history``: every completed trial's validation accuracy by trial number, and the best
  so far;
- ``intermediate``: validation accuracy after each epoch, one curve per trial, pruned
  trials in their own colour (their curves stop where they were pruned);
- ``importances``: parameter importances for accuracy (Optuna's default evaluator),
  skipped with a note when fewer than two completed trials or no varying parameter;
- ``pareto``: the completed trials and their non-dominated set of accuracy against
  parameters (MACs for an ``accuracy,macs`` study), drawn for single-objective studies too;
- ``scatter``: every trial with an accuracy (pruned ones at their last epoch) against its
  parameter count, by state;
- ``summary.md``: the study, the top trials, the Pareto front, importances, retraining.

Each plot is an interactive HTML file (plotly; the shared ``plotly.min.js`` is written
once beside them, so the report opens offline) and a PNG drawn with matplotlib. Both
are drawn from one description of the chart, so they always show the same data. The
plotting libraries are the ``report`` extra: ``pip install 'dense-nas[report]'``. The
tables of ``summary.md`` are :func:`~dense_nas.results.summary.table`'s, and its top
trials are ranked by :func:`~dense_nas.results.selection.ranked`, so the report's first
trial is the one ``dense-nas best`` and ``load_best`` choose.

Example:
    >>> files = report("sqlite:///runs/dense-nas.db", "demo", Path("report"))  # doctest: +SKIP
    >>> sorted(p.name for p in files)[:3]  # doctest: +SKIP
    ['history.html', 'history.png', 'importances.html']
"""

from __future__ import annotations

import itertools
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dense_nas.errors import UserInputError
from dense_nas.records import learning_curve, study_attrs, trial_attrs
from dense_nas.results.loading import DEFAULT_OUT
from dense_nas.results.selection import (
    SizeMetric,
    accuracy,
    completed_trials,
    pareto_front,
    ranked,
    select_trial,
    size_metric,
    trial_size,
)
from dense_nas.results.summary import describe_arch, table, trial_table
from dense_nas.study.storage import open_study

STATE_COLORS = {
    "COMPLETE": "#1f77b4",
    "PRUNED": "#ff7f0e",
    "FAIL": "#d62728",
    "RUNNING": "#7f7f7f",
    "WAITING": "#7f7f7f",
}
BEST_COLOR = "#d62728"
FRONT_COLOR = "#2ca02c"
MUTED_COLOR = "#9e9e9e"
SIZE_TITLES = {"params": "parameters", "macs": "MACs per image"}


@dataclass(frozen=True)
class Series:
    """Points of one chart, drawn alike in plotly and matplotlib.

    Attributes:
        name: legend entry.
        x, y: coordinates.
        color: a CSS hex colour.
        lines: join the points; ``steps`` joins them as a staircase.
        markers: draw the points.
        labels: hover text per point (HTML only).
        legend: list in the legend (``False`` for a second series of the same name).

    Example:
        >>> Series("trial", (0.0, 1.0), (0.5, 0.7), "#1f77b4", lines=True).markers
        True
    """

    name: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    color: str
    lines: bool = False
    steps: bool = False
    markers: bool = True
    labels: tuple[str, ...] = ()
    legend: bool = True


@dataclass(frozen=True)
class Chart:
    """One plot: point series, or horizontal bars ``(name, value)``.

    Example:
        >>> Chart("importances", "Importances", "importance", "parameter",
        ...       bars=(("lr", 0.7), ("growth_rate", 0.3))).stem
        'importances'
    """

    stem: str
    title: str
    x_title: str
    y_title: str
    series: tuple[Series, ...] = ()
    bars: tuple[tuple[str, float], ...] = ()
    log_x: bool = False
    integer_x: bool = False


# ----------------------------------------------------------------------------- data


def observed_accuracy(trial: FrozenTrial) -> float | None:
    """A trial's accuracy: its result if it has one, else its last reported epoch.

    Example:
        >>> import optuna
        >>> t = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED,
        ...                               intermediate_values={1: 0.3, 2: 0.4})
        >>> observed_accuracy(t)
        0.4
    """
    if trial.values:
        return float(trial.values[0])
    curve = learning_curve(trial)
    return curve[max(curve)] if curve else None


def _arch_text(trial: FrozenTrial) -> str:
    return describe_arch(trial_attrs(trial).get("arch") or {})


def _label(trial: FrozenTrial) -> str:
    return f"trial {trial.number}: {_arch_text(trial)}"


def _history_chart(trials: Sequence[FrozenTrial]) -> Chart:
    """Accuracy of each completed trial by number, and the best so far."""
    numbers = tuple(float(t.number) for t in trials)
    accs = tuple(accuracy(t) for t in trials)
    best = tuple(itertools.accumulate(accs, max))
    return Chart(
        "history",
        "Optimisation history",
        "trial",
        "validation accuracy",
        (
            Series(
                "trial",
                numbers,
                accs,
                STATE_COLORS["COMPLETE"],
                labels=tuple(_label(t) for t in trials),
            ),
            Series("best so far", numbers, best, BEST_COLOR, lines=True, steps=True, markers=False),
        ),
        integer_x=True,
    )


def _intermediate_chart(trials: Sequence[FrozenTrial]) -> Chart | None:
    """One learning curve per trial, coloured by state; ``None`` when none was recorded."""
    series: list[Series] = []
    named: set[str] = set()
    for trial in trials:
        curve = learning_curve(trial)
        if not curve:
            continue
        state = trial.state.name
        series.append(
            Series(
                state.lower(),
                tuple(float(epoch) for epoch in curve),
                tuple(curve.values()),
                STATE_COLORS.get(state, MUTED_COLOR),
                lines=True,
                labels=(f"trial {trial.number}",) * len(curve),
                legend=state not in named,
            )
        )
        named.add(state)
    if not series:
        return None
    return Chart(
        "intermediate",
        "Validation accuracy per epoch",
        "epoch",
        "validation accuracy",
        tuple(series),
        integer_x=True,
    )


def importances(study: optuna.Study, trials: Sequence[FrozenTrial]) -> tuple[dict[str, float], str]:
    """Parameter importances for accuracy, or an empty dict and why there are none.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> study.add_trial(optuna.trial.create_trial(value=0.9))
        >>> importances(study, study.trials)
        ({}, 'needs at least 2 completed trials, the study has 1')
    """
    if len(trials) < 2:
        return {}, f"needs at least 2 completed trials, the study has {len(trials)}"
    shared = set.intersection(*(set(t.params) for t in trials))
    varying = sorted(name for name in shared if len({repr(t.params[name]) for t in trials}) > 1)
    if not varying:
        return {}, "no parameter takes more than one value across the completed trials"
    try:
        # Optuna's default evaluator (PED-ANOVA) ranks parameters by how they reach *low*
        # target values: hand it the error rate, so it explains high accuracy.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "PedAnovaImportanceEvaluator computes")  # done
            found = optuna.importance.get_param_importances(
                study, params=varying, target=lambda t: 1.0 - accuracy(t)
            )
    except (ValueError, RuntimeError) as err:  # e.g. every trial scored the same
        return {}, f"Optuna could not compute them ({str(err).splitlines()[0]})"
    return dict(found), ""


def _importance_chart(found: dict[str, float]) -> Chart:
    """Horizontal bars, most important first."""
    bars = tuple(sorted(found.items(), key=lambda item: -item[1]))
    return Chart(
        "importances", "Parameter importances for accuracy", "importance", "parameter", bars=bars
    )


def _pareto_chart(trials: Sequence[FrozenTrial], metric: SizeMetric) -> Chart:
    """Completed trials against size, with their non-dominated set joined."""
    front = pareto_front(trials, metric)
    return Chart(
        "pareto",
        f"Pareto front: accuracy vs {SIZE_TITLES[metric]}",
        SIZE_TITLES[metric],
        "validation accuracy",
        (
            _points("completed trials", trials, metric, MUTED_COLOR),
            _points("Pareto front", front, metric, FRONT_COLOR, lines=True),
        ),
        log_x=True,
    )


def _points(
    name: str,
    trials: Sequence[FrozenTrial],
    metric: SizeMetric,
    color: str,
    *,
    lines: bool = False,
) -> Series:
    kept: list[tuple[FrozenTrial, float]] = []
    for trial in trials:
        acc = observed_accuracy(trial)
        if acc is not None and trial_attrs(trial).get(metric) is not None:
            kept.append((trial, acc))
    return Series(
        name,
        tuple(float(trial_size(t, metric)) for t, _ in kept),
        tuple(acc for _, acc in kept),
        color,
        lines=lines,
        labels=tuple(_label(t) for t, _ in kept),
    )


def _scatter_chart(trials: Sequence[FrozenTrial]) -> Chart:
    """Every trial with an accuracy against its parameter count, one series per state."""
    series = []
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING):
        chosen = [t for t in trials if t.state == state]
        points = _points(state.name.lower(), chosen, "params", STATE_COLORS[state.name])
        if points.x:
            series.append(points)
    return Chart(
        "scatter",
        "Accuracy vs size of every trial",
        SIZE_TITLES["params"],
        "validation accuracy (pruned: last epoch)",
        tuple(series),
        log_x=True,
    )


# ----------------------------------------------------------------------------- drawing


def _plotly_figure(chart: Chart) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    if chart.bars:
        names, values = zip(*chart.bars, strict=True)
        figure.add_trace(
            go.Bar(x=values, y=names, orientation="h", marker_color=STATE_COLORS["COMPLETE"])
        )
        figure.update_yaxes(autorange="reversed")
    for s in chart.series:
        mode = "+".join(m for m, on in (("lines", s.lines), ("markers", s.markers)) if on)
        figure.add_trace(
            go.Scatter(
                x=s.x,
                y=s.y,
                mode=mode,
                name=s.name,
                legendgroup=s.name,
                showlegend=s.legend,
                marker={"color": s.color},
                text=list(s.labels) or None,
                line={"color": s.color, "shape": "hv" if s.steps else "linear"},
            )
        )
    figure.update_layout(
        title=chart.title,
        xaxis_title=chart.x_title,
        yaxis_title=chart.y_title,
        template="plotly_white",
    )
    if chart.log_x:
        figure.update_xaxes(type="log")
    if chart.integer_x:
        figure.update_xaxes(tickformat="d")
    return figure


def _draw_png(chart: Chart, path: Path) -> None:
    # Figure without pyplot: no global backend or state; savefig renders with Agg.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 5), dpi=100)
    axes = figure.subplots()
    if chart.bars:
        names, values = zip(*chart.bars, strict=True)
        axes.barh(names, values, color=STATE_COLORS["COMPLETE"])
        axes.invert_yaxis()
    for s in chart.series:
        axes.plot(
            s.x,
            s.y,
            color=s.color,
            label=s.name if s.legend else "_nolegend_",
            linestyle="-" if s.lines else "none",
            marker="o" if s.markers else None,
            markersize=4,
            linewidth=1.5,
            drawstyle="steps-post" if s.steps else "default",
        )
    if chart.log_x:
        axes.set_xscale("log")
    if chart.integer_x:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(title=chart.title, xlabel=chart.x_title, ylabel=chart.y_title)
    axes.grid(alpha=0.3)
    if any(s.legend for s in chart.series):
        axes.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path)


def draw(chart: Chart, output: Path) -> list[Path]:
    """Write ``<stem>.html`` and ``<stem>.png`` of a chart into ``output``.

    Example:
        >>> import tempfile
        >>> chart = Chart("demo", "Demo", "x", "y", (Series("s", (1.0, 2.0), (3.0, 4.0), "#000000"),))
        >>> [p.name for p in draw(chart, Path(tempfile.mkdtemp()))]
        ['demo.html', 'demo.png']
    """
    html, png = output / f"{chart.stem}.html", output / f"{chart.stem}.png"
    _plotly_figure(chart).write_html(html, include_plotlyjs="directory")
    _draw_png(chart, png)
    return [html, png]


# ----------------------------------------------------------------------------- summary


def _overview(study: optuna.Study, trials: Sequence[FrozenTrial]) -> str:
    states = Counter(t.state.name.lower() for t in trials)
    counted = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    attrs = study_attrs(study)
    rows = [
        ("data", attrs.get("data")),
        ("space", attrs.get("space")),
        ("objective", attrs.get("objective")),
        ("seed", attrs.get("seed")),
        ("trials", f"{len(trials)} ({counted})"),
        ("chosen", f"trial {select_trial(study).number} (what load_best, export and retrain take)"),
    ]
    return f"# dense-nas study `{study.study_name}`\n\n" + table(("", ""), rows, markdown=True)


def _retrained(study: optuna.Study) -> str:
    done = study_attrs(study).get("retrain")
    if not isinstance(done, dict):
        return (
            "## Retrained\n\nNot yet: `dense-nas retrain` trains the best architecture "
            "on train + validation and measures test accuracy."
        )
    return "## Retrained\n\n" + table(
        ("trial", "epochs", "test accuracy", "checkpoint"),
        [
            (
                done.get("trial"),
                done.get("epochs"),
                f"{done.get('test_accuracy', 0):.4f}",
                done.get("checkpoint"),
            )
        ],
        markdown=True,
    )


def _summary_markdown(
    study: optuna.Study,
    found: dict[str, float],
    notes: Sequence[str],
    files: Sequence[Path],
    top: int = 10,
) -> str:
    """The text of ``summary.md``."""
    complete = completed_trials(study)
    metric = size_metric(study)
    best = ranked(complete, metric)[:top]
    parts = [
        _overview(study, study.get_trials(deepcopy=False)),
        f"## Top {len(best)} trials by validation accuracy\n\n" + trial_table(best, markdown=True),
        f"## Pareto front: accuracy vs {SIZE_TITLES[metric]}\n\n"
        + trial_table(pareto_front(complete, metric), markdown=True),
        "## Parameter importances for accuracy\n\n"
        + (
            table(
                ("parameter", "importance"),
                [(name, f"{v:.3f}") for name, v in sorted(found.items(), key=lambda i: -i[1])],
                markdown=True,
            )
            if found
            else "Not computed; see the notes below."
        ),
        _retrained(study),
    ]
    if notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {note}" for note in notes))
    parts.append("## Files\n\n" + "\n".join(f"- [{p.name}]({p.name})" for p in files))
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- entry points


def write_report(study: optuna.Study, output: Path, top: int = 10) -> list[Path]:
    """Write every plot (HTML and PNG) and ``summary.md`` of a study into ``output``.

    Args:
        study: a dense-nas study with at least one completed trial.
        output: directory (created if missing).
        top: rows in the summary's table of top trials.

    Returns:
        The files written, ``summary.md`` last.

    Raises:
        UserInputError: the study has no completed trial, or the plotting libraries
            are missing.

    Example:
        >>> import tempfile
        >>> study = optuna.create_study(direction="maximize")
        >>> for n, acc in enumerate([0.5, 0.8]):
        ...     study.add_trial(optuna.trial.create_trial(
        ...         value=acc, intermediate_values={1: acc / 2, 2: acc},
        ...         params={"lr": 0.1 * (n + 1)},
        ...         distributions={"lr": optuna.distributions.FloatDistribution(0.01, 1)},
        ...         user_attrs={"params": 1000 * (n + 1), "macs": 9000 * (n + 1)}))
        >>> files = write_report(study, Path(tempfile.mkdtemp()))
        >>> [p.name for p in files if p.suffix != ".html"]
        ['history.png', 'intermediate.png', 'importances.png', 'pareto.png', 'scatter.png', 'summary.md']
    """
    complete = completed_trials(study)
    _check_plot_libraries()
    trials = study.get_trials(deepcopy=False)
    output.mkdir(parents=True, exist_ok=True)
    found, why_not = importances(study, complete)
    notes = [f"Parameter importances skipped: {why_not}."] if why_not else []
    curves = _intermediate_chart(trials)
    if curves is None:
        notes.append("Learning curves skipped: no trial reported accuracy per epoch.")
    charts = [
        _history_chart(complete),
        curves,
        _importance_chart(found) if found else None,
        _pareto_chart(complete, size_metric(study)),
        _scatter_chart(trials),
    ]
    files = [path for chart in charts if chart is not None for path in draw(chart, output)]
    summary = output / "summary.md"
    summary.write_text(_summary_markdown(study, found, notes, files, top), encoding="utf-8")
    return [*files, summary]


def _check_plot_libraries() -> None:
    try:
        import matplotlib  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:
        raise UserInputError(
            "report: needs plotly and matplotlib; pip install 'dense-nas[report]'"
        ) from None


def report(
    storage: str | None,
    study_name: str | None,
    output: Path,
    *,
    out: Path = DEFAULT_OUT,
    top: int = 10,
) -> list[Path]:
    """Open a study in any storage and write its report (see :func:`write_report`).

    Example:
        >>> files = report("runs/study.journal", "demo", Path("report"))  # doctest: +SKIP
        >>> files[-1].name  # doctest: +SKIP
        'summary.md'
    """
    return write_report(open_study(storage, study_name, out), output, top)

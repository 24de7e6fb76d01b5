"""Plots and a summary of a dense-nas study, for any storage Optuna reads.

:func:`write_report` writes into one directory:

- ``history``: every completed trial's validation metric (the study's: accuracy unless
  ``--objective`` chose another) by trial number, and the best so far;
- ``intermediate``: the metric after each epoch, one curve per trial, pruned
  trials in their own colour (their curves stop where they were pruned);
- ``importances``: parameter importances for the metric (Optuna's default evaluator),
  skipped with a note when fewer than two completed trials or no varying parameter;
- ``pareto``: the completed trials and their non-dominated set of the metric against
  parameters (MACs for a ``METRIC,macs`` study, the measured latency for a
  ``METRIC,latency`` one), drawn for single-objective studies too;
- ``pareto-latency``: the same against the measured latency, for a study of another
  objective whose trials measured it (``--max-latency-ms``);
- ``scatter``: every trial with a metric (pruned ones at their last epoch) against its
  parameter count, by state;
- ``summary.md``: the study, the top trials, the Pareto front, importances, retraining.

Each plot is drawn once, with matplotlib, and written twice: as a PNG and as an HTML
page that holds the same figure as inline SVG (no script and no other file, so it opens
offline), where hovering over a point names its trial and architecture, and over a bar
its value. matplotlib is the ``report`` extra: ``pip install 'dense-nas[report]'``; it
needs nothing outside Python, where plotly's PNG export (kaleido) needs a Chrome on the
machine. The tables of ``summary.md``
are :func:`~dense_nas.results.summary.table`'s, and its top trials are ranked by
:func:`~dense_nas.results.selection.ranked`, so the report's first trial is the one
``dense-nas best`` and ``load_best`` choose.

Example:
    >>> files = report("sqlite:///runs/dense-nas.db", "demo", Path("report"))  # doctest: +SKIP
    >>> sorted(p.name for p in files)[:3]  # doctest: +SKIP
    ['history.html', 'history.png', 'importances.html']
"""

from __future__ import annotations

import html
import io
import itertools
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dense_nas.errors import UserInputError
from dense_nas.paths import check_output_dir
from dense_nas.records import (
    ChoiceRecord,
    learning_curve,
    retrain_records,
    study_attrs,
    trial_attrs,
)
from dense_nas.results.loading import DEFAULT_OUT
from dense_nas.results.selection import (
    Goal,
    SizeMetric,
    completed_entries,
    pareto_front,
    ranked,
    select_entry,
    size_metric,
    study_goal,
    trial_size,
)
from dense_nas.results.summary import describe_arch, retrained_table, table, trial_table
from dense_nas.study.lineage import lineage_trials, version_studies
from dense_nas.study.loggers import recorded_logs
from dense_nas.study.samplers import Kind, describe_choice
from dense_nas.study.storage import open_study

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
SIZE_TITLES = {
    "params": "parameters",
    "macs": "MACs per image",
    "latency_ms": "latency (ms per batch)",
}


@dataclass(frozen=True)
class Series:
    """Points of one chart.

    Attributes:
        name: legend entry.
        x, y: coordinates.
        color: a CSS hex colour.
        lines: join the points; ``steps`` joins them as a staircase.
        markers: draw the points.
        tips: hover text of each point (HTML only), shown over its marker.
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
    tips: tuple[str, ...] = ()
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


def observed_metric(trial: FrozenTrial) -> float | None:
    """A trial's metric: its result if it has one, else its last reported epoch.

    Example:
        >>> import optuna
        >>> t = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED,
        ...                               intermediate_values={1: 0.3, 2: 0.4})
        >>> observed_metric(t)
        0.4
    """
    if trial.values:
        return float(trial.values[0])
    curve = learning_curve(trial)
    return curve[max(curve)] if curve else None


def _label(trial: FrozenTrial) -> str:
    return f"trial {trial.number}: {describe_arch(trial_attrs(trial).get('arch') or {})}"


def _axis(goal: Goal) -> str:
    """The metric's axis title."""
    return f"validation {goal.metric}"


def _history_chart(trials: Sequence[FrozenTrial], goal: Goal) -> Chart:
    """The metric of each completed trial by number, and the best so far."""
    numbers = tuple(float(t.number) for t in trials)
    accs = tuple(float(t.values[0]) for t in trials)
    best = tuple(itertools.accumulate(accs, max if goal.maximize else min))
    return Chart(
        "history",
        "Optimisation history",
        "trial",
        _axis(goal),
        (
            Series(
                "trial",
                numbers,
                accs,
                STATE_COLORS["COMPLETE"],
                tips=tuple(_label(t) for t in trials),
            ),
            Series("best so far", numbers, best, BEST_COLOR, lines=True, steps=True, markers=False),
        ),
        integer_x=True,
    )


def _intermediate_chart(trials: Sequence[FrozenTrial], goal: Goal) -> Chart | None:
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
                tips=tuple(f"trial {trial.number}, epoch {e}: {v:.4f}" for e, v in curve.items()),
                legend=state not in named,
            )
        )
        named.add(state)
    if not series:
        return None
    return Chart(
        "intermediate",
        f"Validation {goal.metric} per epoch",
        "epoch",
        _axis(goal),
        tuple(series),
        integer_x=True,
    )


def importances(study: optuna.Study, trials: Sequence[FrozenTrial]) -> tuple[dict[str, float], str]:
    """Parameter importances for the study's metric, or an empty dict and why there are none.

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
        # target values: hand it the metric signed so that lower is better (for accuracy
        # the error rate, shifted), so it explains a good metric.
        goal = study_goal(study)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "PedAnovaImportanceEvaluator computes")  # done
            found = optuna.importance.get_param_importances(
                study, params=varying, target=lambda t: -goal.score(t)
            )
    except (ValueError, RuntimeError) as err:  # e.g. every trial scored the same
        return {}, f"Optuna could not compute them ({str(err).splitlines()[0]})"
    return dict(found), ""


def _importance_chart(found: dict[str, float], goal: Goal) -> Chart:
    """Horizontal bars, most important first."""
    bars = tuple(sorted(found.items(), key=lambda item: -item[1]))
    title = f"Parameter importances for {goal.metric}"
    return Chart("importances", title, "importance", "parameter", bars=bars)


def _pareto_chart(
    trials: Sequence[FrozenTrial], metric: SizeMetric, goal: Goal, stem: str = "pareto"
) -> Chart:
    """Completed trials against size, with their non-dominated set joined."""
    front = pareto_front(trials, metric, goal)
    return Chart(
        stem,
        f"Pareto front: {goal.metric} vs {SIZE_TITLES[metric]}",
        SIZE_TITLES[metric],
        _axis(goal),
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
        acc = observed_metric(trial)
        if acc is not None and trial_attrs(trial).get(metric) is not None:
            kept.append((trial, acc))
    return Series(
        name,
        tuple(float(trial_size(t, metric)) for t, _ in kept),
        tuple(acc for _, acc in kept),
        color,
        lines=lines,
        tips=tuple(_label(t) for t, _ in kept),
    )


def _scatter_chart(trials: Sequence[FrozenTrial], goal: Goal) -> Chart:
    """Every trial with a metric against its parameter count, one series per state."""
    series = []
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING):
        chosen = [t for t in trials if t.state == state]
        points = _points(state.name.lower(), chosen, "params", STATE_COLORS[state.name])
        if points.x:
            series.append(points)
    return Chart(
        "scatter",
        f"{goal.metric.capitalize()} vs size of every trial",
        SIZE_TITLES["params"],
        f"{_axis(goal)} (pruned: last epoch)",
        tuple(series),
        log_x=True,
    )


# ----------------------------------------------------------------------------- drawing

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>body {{ font-family: sans-serif; }} svg {{ max-width: 100%; height: auto; }}</style>
</head>
<body>
{svg}
<p>Hover over a mark to see what it is.</p>
</body>
</html>
"""


def _tip(tips: list[str], text: str) -> str:
    """Keep a mark's hover text; it travels as the mark's URL, which the SVG writes as a
    link around the mark, until :func:`_html` turns the link into a title."""
    tips.append(text)
    return f"tip:{len(tips) - 1}"


def _draw_bars(axes: Axes, bars: Sequence[tuple[str, float]], tips: list[str]) -> None:
    names, values = zip(*bars, strict=True)
    for bar, name, value in zip(
        axes.barh(names, values, color=STATE_COLORS["COMPLETE"]), names, values, strict=True
    ):
        bar.set_url(_tip(tips, f"{name}: {value:.3f}"))
    axes.invert_yaxis()  # most important on top


def _draw_series(axes: Axes, series: Sequence[Series], tips: list[str]) -> None:
    from matplotlib.lines import Line2D

    legend = []
    marks: list[tuple[float, float, str, str]] = []  # x, y, colour and tip of each point
    for s in series:
        look: dict[str, Any] = {
            "color": s.color,
            "linestyle": "-" if s.lines else "none",
            "marker": "o" if s.markers else None,
            "markersize": 4,
            "linewidth": 1.5,
        }
        steps = "steps-post" if s.steps else "default"
        axes.plot(s.x, s.y, **({**look, "marker": None} if s.tips else look), drawstyle=steps)
        if s.tips:
            marks += zip(s.x, s.y, [s.color] * len(s.x), s.tips, strict=True)
        if s.legend:
            legend.append(Line2D([], [], label=s.name, **look))
    if marks:  # one collection for all: an element per point, each with its own tip
        xs, ys, colours, texts = zip(*marks, strict=True)
        points = axes.scatter(xs, ys, s=16, c=colours, zorder=2.5)
        points.set_urls([_tip(tips, text) for text in texts])
    if legend:
        axes.legend(handles=legend, loc="best")


def _figure(chart: Chart) -> tuple[Figure, list[str]]:
    """The chart drawn once with matplotlib, and the hover texts of its marks."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 5), dpi=100)  # no pyplot: no global backend or state
    axes = figure.subplots()
    tips: list[str] = []
    if chart.bars:
        _draw_bars(axes, chart.bars, tips)
    _draw_series(axes, chart.series, tips)
    if chart.log_x:
        axes.set_xscale("log")
    if chart.integer_x:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(title=chart.title, xlabel=chart.x_title, ylabel=chart.y_title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure, tips


def _html(chart: Chart, figure: Figure, tips: Sequence[str]) -> str:
    """A page with the figure as inline SVG: no script, no other file, opens offline."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # inline SVG takes no XML prolog or DOCTYPE
    # A tip's link becomes a plain group with a <title>: the hover text of what it holds.
    svg = re.sub(
        r'<a xlink:href="tip:(\d+)"[^>]*>',
        lambda found: f"<a><title>{html.escape(tips[int(found[1])])}</title>",
        svg,
    )
    return _PAGE.format(title=html.escape(chart.title), svg=svg)


def draw(chart: Chart, output: Path) -> list[Path]:
    """Write ``<stem>.html`` (the figure as inline SVG) and ``<stem>.png`` into ``output``.

    Example:
        >>> import tempfile
        >>> chart = Chart("demo", "Demo", "x", "y",
        ...               (Series("s", (1.0, 2.0), (3.0, 4.0), "#000000", tips=("a", "b")),))
        >>> html_file, png_file = draw(chart, Path(tempfile.mkdtemp()))
        >>> html_file.name, png_file.name
        ('demo.html', 'demo.png')
        >>> "<title>b</title>" in html_file.read_text(encoding="utf-8")
        True
    """
    figure, tips = _figure(chart)
    html_file, png_file = output / f"{chart.stem}.html", output / f"{chart.stem}.png"
    html_file.write_text(_html(chart, figure, tips), encoding="utf-8")
    figure.savefig(png_file)
    return [html_file, png_file]


# ----------------------------------------------------------------------------- summary


def _overview(study: optuna.Study, trials: Sequence[FrozenTrial]) -> str:
    states = Counter(t.state.name.lower() for t in trials)
    counted = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    attrs = study_attrs(study)
    rows = [
        ("data", attrs.get("data")),
        ("space", attrs.get("space")),
        ("objective", attrs.get("objective")),
        ("sampler", _choice("sampler", attrs.get("sampler"))),
        ("pruner", _choice("pruner", attrs.get("pruner"))),
        ("seed", attrs.get("seed")),
        ("trials", f"{len(trials)} ({counted})"),
        ("chosen", f"trial {select_entry(study).name} (what load_best, export and retrain take)"),
    ]
    return f"# dense-nas study `{study.study_name}`\n\n" + table(("", ""), rows, markdown=True)


def _choice(kind: Kind, record: ChoiceRecord | None) -> str | None:
    """A recorded sampler or pruner as the command line chooses it (``None``: not recorded)."""
    return None if record is None else describe_choice(kind, record)


def _retrained(study: optuna.Study) -> str:
    """Each retrained architecture's test accuracy over seeds, then every run."""
    archs = retrained_table(study, markdown=True)
    if archs is None:
        return (
            "## Retrained\n\nNot yet: `dense-nas retrain` trains the best architectures "
            "on train + validation and measures test accuracy (`--top K --seeds S`)."
        )
    runs = [
        (
            run["trial"],
            run["seed"],
            run["epochs"],
            f"{run['test_accuracy']:.4f}",
            None if run["seconds"] is None else f"{run['seconds']:.1f}",
            ", ".join(logs["location"] for logs in recorded_logs(run["logs"])) or None,
            run["checkpoint"],
        )
        for run in retrain_records(study)
    ]
    headers = ("trial", "seed", "epochs", "test accuracy", "seconds", "logs", "checkpoint")
    return (
        "## Retrained\n\nTest accuracy after training on train + validation: mean ± "
        "standard deviation over the seeds of each architecture.\n\n"
        + archs
        + "\n\n### Every run\n\n"
        + table(headers, runs, markdown=True)
    )


def _measured_latency(study: optuna.Study, complete: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The completed trials with a latency, when the study's own front is on another size."""
    if size_metric(study) == "latency_ms":
        return []
    return [t for t in complete if "latency_ms" in trial_attrs(t)]


def _summary_markdown(
    study: optuna.Study,
    found: dict[str, float],
    notes: Sequence[str],
    files: Sequence[Path],
    top: int = 10,
) -> str:
    """The text of ``summary.md``."""
    entries = completed_entries(study)
    names = {id(entry.trial): entry.name for entry in entries}
    complete = [entry.trial for entry in entries]
    metric, goal = size_metric(study), study_goal(study)
    best = ranked(complete, metric, goal)[:top]
    front = pareto_front(complete, metric, goal)
    timed = _measured_latency(study, complete)

    def named(trials: Sequence[FrozenTrial]) -> str:
        return trial_table(trials, markdown=True, names=[names[id(t)] for t in trials], goal=goal)

    parts = [
        _overview(study, [entry.trial for entry in lineage_trials(study)]),
        f"## Top {len(best)} trials by {_axis(goal)}\n\n" + named(best),
        f"## Pareto front: {goal.metric} vs {SIZE_TITLES[metric]}\n\n" + named(front),
        *(
            [
                f"## Pareto front: {goal.metric} vs {SIZE_TITLES['latency_ms']}\n\n"
                + named(pareto_front(timed, "latency_ms", goal))
            ]
            if timed
            else []
        ),
        f"## Parameter importances for {goal.metric}\n\n"
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
    complete = [entry.trial for entry in completed_entries(study)]
    _check_plot_libraries()
    trials = [entry.trial for entry in lineage_trials(study)]  # every version's, each once
    check_output_dir(output, "output")
    output.mkdir(parents=True, exist_ok=True)
    goal = study_goal(study)
    # Importances need one study's distributions: the latest version holds the trials
    # of the earlier ones that fit its space.
    latest = version_studies(study)[-1]
    found, why_not = importances(
        latest, latest.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    )
    notes = [f"Parameter importances skipped: {why_not}."] if why_not else []
    timed = _measured_latency(study, complete)
    curves = _intermediate_chart(trials, goal)
    if curves is None:
        notes.append(f"Learning curves skipped: no trial reported {goal.metric} per epoch.")
    charts = [
        _history_chart(complete, goal),
        curves,
        _importance_chart(found, goal) if found else None,
        _pareto_chart(complete, size_metric(study), goal),
        _pareto_chart(timed, "latency_ms", goal, "pareto-latency") if timed else None,
        _scatter_chart(trials, goal),
    ]
    files = [path for chart in charts if chart is not None for path in draw(chart, output)]
    summary = output / "summary.md"
    summary.write_text(_summary_markdown(study, found, notes, files, top), encoding="utf-8")
    return [*files, summary]


def _check_plot_libraries() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserInputError("report: needs matplotlib; pip install 'dense-nas[report]'") from None


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
    check_output_dir(output, "output")  # a bad place is refused before the study is read
    return write_report(open_study(storage, study_name, out), output, top)

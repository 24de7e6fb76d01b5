"""``dense-nas report``: every plot as HTML and PNG, a summary, graceful gaps, any storage."""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from PIL import Image

from dense_nas.cli import main
from dense_nas.results.report import write_report
from dense_nas.results.selection import best_trials, select_trial
from dense_nas.results.summary import best_table, describe_arch
from tests._study_fixtures import BuiltStudy, Spec, build_study, empty_study, shared_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
COMPLETE, PRUNED = TrialState.COMPLETE, TrialState.PRUNED

PLOTS = ("history", "intermediate", "importances", "pareto", "scatter")
SVG = "{http://www.w3.org/2000/svg}"


def assert_real_plot(path: Path) -> None:
    """A PNG that shows data: many colours, ink on the page, and coloured marks.

    Axes, ticks and text are black or grey; only the data series are in colour, so
    saturated pixels prove that something was plotted.
    """
    image = Image.open(path)
    assert image.format == "PNG", path
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    height, width, _ = pixels.shape
    flat = pixels.reshape(-1, 3)
    colours = len(np.unique(flat, axis=0))
    ink = float((flat.min(axis=1) < 200).mean())
    coloured = int((flat.max(axis=1) - flat.min(axis=1) > 80).sum())
    assert width >= 400 and height >= 300, path
    assert colours >= 20, f"{path.name}: {colours} colours"
    assert ink >= 0.01, f"{path.name}: only {ink:.2%} of the image is drawn on"
    assert coloured >= 50, f"{path.name}: {coloured} coloured pixels: no data drawn"


def page_chart(path: Path) -> ElementTree.Element:
    """The chart of an HTML page: one well-formed inline SVG, and nothing loaded from elsewhere."""
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>"), path.name
    assert page.count("<svg") == 1 and page.count("</svg>") == 1, path.name
    assert not re.search(r"<script|<link|<img|src=|url\(http", page), f"{path.name} loads a file"
    svg = ElementTree.fromstring(page[page.index("<svg") : page.index("</svg>") + len("</svg>")])
    links = {v for e in svg.iter() for k, v in e.attrib.items() if k.endswith("href")}
    assert links and all(link.startswith("#") for link in links), links  # marks of its own only
    return svg


def hover_texts(path: Path) -> list[str]:
    """What hovering over the marks of an HTML chart shows, in drawing order."""
    return [str(title.text) for title in page_chart(path).iter(f"{SVG}title")]


def assert_report(output: Path, plots: tuple[str, ...] = PLOTS) -> str:
    """Every plot as a non-blank PNG and the same figure on a self-contained HTML page,
    and nothing else beside summary.md; returns summary.md's text."""
    for name in plots:
        png = Image.open(output / f"{name}.png")
        assert_real_plot(output / f"{name}.png")
        svg = page_chart(output / f"{name}.html")
        width, height = (float(svg.attrib[side].removesuffix("pt")) for side in ("width", "height"))
        assert width / height == pytest.approx(png.width / png.height), name
        assert hover_texts(output / f"{name}.html"), f"{name}.html: nothing to hover over"
    written = {f"{name}.{ext}" for name in plots for ext in ("html", "png")} | {"summary.md"}
    assert {p.name for p in output.iterdir()} == written  # no script or library beside them
    return (output / "summary.md").read_text(encoding="utf-8")


def label(trial: optuna.trial.FrozenTrial) -> str:
    return f"trial {trial.number}: {describe_arch(trial.user_attrs['arch'])}"


def _report_args(built: BuiltStudy, output: Path) -> list[str]:
    return ["report", "--study", built.name, "--storage", built.storage, "--output", str(output)]


def test_report_of_a_single_objective_study(
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    built = shared_study(tmp_path_factory.getbasetemp(), "single")
    assert main(_report_args(built, tmp_path)) == 0
    assert f"start with {tmp_path / 'summary.md'}" in capsys.readouterr().out
    summary = assert_report(tmp_path)
    study = built.load()
    best = select_trial(study)
    top = summary.split("## Top")[1].split("##")[0]
    rows = [line for line in top.splitlines() if re.match(r"\| \d+ \|", line)]
    assert rows[0].startswith(f"| {best.number} | {best.values[0]:.4f} |")
    completed, pruned = (study.get_trials(states=(state,)) for state in (COMPLETE, PRUNED))
    assert hover_texts(tmp_path / "history.html") == [label(t) for t in completed]
    assert hover_texts(tmp_path / "scatter.html") == [label(t) for t in completed + pruned]
    curves = [t for t in study.trials if t.intermediate_values]
    assert len(curves) == 4  # two epochs of trials 0, 1 and 3; one of the pruned trial 2
    assert hover_texts(tmp_path / "intermediate.html") == [
        f"trial {t.number}, epoch {epoch}: {value:.4f}"
        for t in curves
        for epoch, value in sorted(t.intermediate_values.items())
    ]
    for bar in hover_texts(tmp_path / "importances.html"):
        name, value = bar.split(": ")
        assert f"| {name} | {value} |" in summary
    assert "same as trial 0" in summary  # the duplicate is marked
    assert "## Pareto front: accuracy vs parameters" in summary
    assert "| parameter | importance |" in summary
    assert "(4 complete, 1 fail, 1 pruned)" in summary


def test_report_of_a_multi_objective_study_in_a_journal_file(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    built = shared_study(tmp_path_factory.getbasetemp(), "multi")
    journal = str(tmp_path / "copy.journal")
    optuna.copy_study(
        from_study_name=built.name,
        from_storage=built.storage,
        to_storage=JournalStorage(JournalFileBackend(journal)),
    )
    output = tmp_path / "report"
    assert (
        main(["report", "--study", built.name, "--storage", journal, "--output", str(output)]) == 0
    )
    summary = assert_report(output)
    front = summary.split("## Pareto front")[1].split("##")[0]
    completed = built.load().get_trials(states=(COMPLETE,))
    for trial in completed:  # sizes and accuracies both rise here: all on the front
        assert f"| {trial.number} | {trial.values[0]:.4f} |" in front
    # Every completed trial is drawn twice: among the completed ones and on the front.
    assert hover_texts(output / "pareto.html") == [label(t) for t in completed] * 2


def test_report_ranks_trials_as_best_and_load_best_do(tmp_path: Path) -> None:
    """Of two equally accurate trials the smaller is the better, in every view of "best"."""
    study = optuna.create_study(study_name="ties", direction="maximize")
    for acc, size in [(0.9, 100), (0.95, 300), (0.95, 200)]:
        study.add_trial(
            optuna.trial.create_trial(value=acc, user_attrs={"params": size, "macs": 10 * size})
        )
    write_report(study, tmp_path)
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    top = summary.split("## Top")[1].split("##")[0]
    assert re.findall(r"^\| (\d+) \| (0\.\d+) \| ([\d,]+) \|", top, re.MULTILINE) == [
        ("2", "0.9500", "200"),
        ("1", "0.9500", "300"),
        ("0", "0.9000", "100"),
    ]
    assert "| chosen | trial 2 (what load_best, export and retrain take) |" in summary
    assert select_trial(study).number == best_trials(study)[0].number == 2
    assert best_table(study).splitlines()[2].split()[:2] == ["2", "0.9500"]


@pytest.mark.parametrize(
    ("specs", "why"),
    [
        ((Spec(),), "needs at least 2 completed trials, the study has 1"),
        ((Spec(), Spec(duplicate_of=0)), "no parameter takes more than one value"),
    ],
    ids=["one trial", "no varying parameter"],
)
def test_importances_are_skipped_with_a_note(
    specs: tuple[Spec, ...], why: str, tmp_path: Path
) -> None:
    built = build_study(tmp_path / "study", "few", specs)
    files = write_report(built.load(), tmp_path / "report")
    assert {f.name for f in files} == {
        f"{name}.{ext}" for name in PLOTS if name != "importances" for ext in ("html", "png")
    } | {"summary.md"}
    summary = assert_report(tmp_path / "report", tuple(p for p in PLOTS if p != "importances"))
    assert f"Parameter importances skipped: {why}" in summary


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_missing_or_empty_study_exits_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    built = empty_study(tmp_path)
    args = _report_args(built, tmp_path / "report")
    if case == "missing":
        args[2] = "nope"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("no study named 'nope'" if case == "missing" else "no completed trials") in err
    assert not (tmp_path / "report").exists()


def test_a_page_that_loads_a_script_fails_the_page_check(tmp_path: Path) -> None:
    """The HTML check itself: a page that needs another file does not open offline."""
    page = tmp_path / "plotly.html"
    page.write_text(
        '<!DOCTYPE html><html><body><script src="plotly.min.js"></script>'
        '<svg xmlns="http://www.w3.org/2000/svg"><use href="#m"/></svg></body></html>',
        encoding="utf-8",
    )
    with pytest.raises(AssertionError, match="loads a file"):
        page_chart(page)


def test_blank_image_fails_the_plot_check(tmp_path: Path) -> None:
    """The PNG check itself: a white page, or one with only black axes, is not a plot."""
    blank = tmp_path / "blank.png"
    Image.new("RGB", (800, 500), "white").save(blank)
    with pytest.raises(AssertionError):
        assert_real_plot(blank)

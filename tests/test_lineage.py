"""A study that grows: versions for space changes one study cannot hold, and warm starts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, cast

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from dense_nas.records import record_study, study_attrs, trial_attrs
from dense_nas.results.loading import load_best
from dense_nas.results.selection import metric_value, ranked, trial_size
from dense_nas.results.status import study_status
from dense_nas.space import Task, load_space, sample, space_version
from dense_nas.study.lineage import lineage_finished, version_studies
from dense_nas.study.storage import make_storage, open_study
from tests.helpers import TINY_SPACE, Ran, main_in_process, search_args

optuna.logging.set_verbosity(optuna.logging.WARNING)

DIGITS = Task(10, 1, (8, 8))  # what the embedded digits data poses a space
BEFORE_ANY_TRIAL = "1e-9"  # --timeout: the command sets the study up and trains nothing
OPTUNA = "/work/main/.venv/bin/optuna"


def _space(tmp_path: Path, name: str, batch_sizes: str, compression: str = "0.5") -> str:
    """The tiny space with ``batch_size`` drawn from these choices, in a file of its own."""
    text = Path(TINY_SPACE).read_text()
    text = text.replace("batch_size: 128", f"batch_size: {{choices: [{batch_sizes}]}}")
    text = text.replace("compression: 0.5", f"compression: {compression}")
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _setup(capsys: pytest.CaptureFixture[str], out: Path, space: str, *extra: str) -> Ran:
    return main_in_process(
        capsys, "search", "--space", space, "--study", "g", "--out", str(out),
        "--accelerator", "cpu", "--timeout", BEFORE_ANY_TRIAL, *extra,
    )  # fmt: skip


def _add_trial(study: optuna.Study, space: str, batch_size: int, state: TrialState) -> None:
    """A finished trial drawn from ``space`` as search records it (params, arch, recipe)."""
    distributions = space_version(load_space(space), DIGITS).distributions
    params: dict[str, Any] = {"num_blocks": 1, "bottleneck": True, "growth_rate": 4}
    params |= {"layers_per_block": 1, "lr": 0.1, "batch_size": batch_size}
    drawn = optuna.trial.FixedTrial(params)
    candidate = sample(load_space(space), cast(optuna.Trial, drawn), DIGITS)
    attrs = {**drawn.user_attrs, **candidate.to_dict(), "arch_key": candidate.key, "epochs": 1}
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            value=0.5 if state == TrialState.COMPLETE else None,
            params=params,
            distributions={k: distributions[k] for k in params},
            user_attrs=attrs,
            intermediate_values={1: 0.25},
        )
    )


def test_choices_gained_and_lost_go_on_as_version_2_with_the_trials_that_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _space(tmp_path, "a.yaml", "64, 128")
    assert _setup(capsys, tmp_path, first).returncode == 0
    storage = make_storage(None, tmp_path)
    user = open_study(None, "g", tmp_path)
    _add_trial(user, first, 64, TrialState.COMPLETE)
    _add_trial(user, first, 64, TrialState.PRUNED)
    _add_trial(user, first, 128, TrialState.COMPLETE)

    grown = _setup(capsys, tmp_path, _space(tmp_path, "b.yaml", "32, 64"))
    assert grown.returncode == 0, grown.stderr
    assert (
        "space changed: batch_size gained 32 and lost 128; study 'g' goes on as version 2 "
        "(g@v2) with 2 of 3 earlier trials"
    ) in grown.stdout.splitlines()
    v2 = optuna.load_study(study_name="g@v2", storage=storage)
    carried = v2.get_trials()
    assert [t.state for t in carried] == [TrialState.COMPLETE, TrialState.PRUNED]
    for number, trial in enumerate(carried):
        assert trial.distributions["batch_size"] == CategoricalDistribution([32, 64])
        assert trial.params["batch_size"] == 64
        assert trial_attrs(trial)["copied_from"] == {"study": "g", "number": number}
        assert trial.intermediate_values == {1: 0.25}  # the pruner learns from them
    assert carried[0].value == 0.5
    # the trial outside the new space stays in version 1, readable, and nothing moved
    assert len(optuna.load_study(study_name="g", storage=storage).trials) == 3
    versions = study_attrs(optuna.load_study(study_name="g", storage=storage))["versions"]
    assert [(v["study"], v["changes"], v["carried"], v["earlier"]) for v in versions] == [
        ("g", [], 0, 0),
        ("g@v2", ["batch_size gained 32 and lost 128"], 2, 3),
    ]
    assert lineage_finished(user) == 3  # each trained trial once, copies or not
    # the same space again: the same version, no new one
    again = _setup(capsys, tmp_path, _space(tmp_path, "b.yaml", "32, 64"))
    assert again.returncode == 0 and "space changed" not in again.stdout
    assert len(version_studies(user)) == 2


def test_a_new_parameter_carries_the_trials_whose_recorded_value_lies_inside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _space(tmp_path, "a.yaml", "64, 128")
    assert _setup(capsys, tmp_path, first).returncode == 0
    storage = make_storage(None, tmp_path)
    _add_trial(optuna.load_study(study_name="g", storage=storage), first, 64, TrialState.COMPLETE)
    wider = _space(tmp_path, "c.yaml", "64, 128", compression="{low: 0.5, high: 1.0}")
    grown = _setup(capsys, tmp_path, wider)
    assert grown.returncode == 0, grown.stderr
    assert "compression added" in grown.stdout and "with 1 of 1 earlier trials" in grown.stdout
    (carried,) = optuna.load_study(study_name="g@v2", storage=storage).trials
    assert carried.params["compression"] == 0.5  # its recorded, then fixed, value
    assert carried.distributions["compression"] == FloatDistribution(0.5, 1.0)
    # a value the new parameter cannot take: the trial stays behind
    narrow = _space(tmp_path, "d.yaml", "64, 128", compression="{choices: [0.75, 1.0]}")
    again = _setup(capsys, tmp_path, narrow)
    assert again.returncode == 0, again.stderr
    assert "goes on as version 3 (g@v3) with 0 of 1 earlier trials" in again.stdout
    assert optuna.load_study(study_name="g@v3", storage=storage).trials == []


def _optuna_studies(tmp_path: Path) -> str:
    listed = subprocess.run(
        [OPTUNA, "studies", "--storage", f"sqlite:///{tmp_path / 'dense-nas.db'}", "-f", "yaml"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


@pytest.mark.slow
def test_a_grown_study_is_searched_ranked_and_loaded_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path)]
    spaces = [
        _space(tmp_path, "a.yaml", "64, 128"),
        _space(tmp_path, "b.yaml", "32, 64, 128"),  # gained 32
        _space(tmp_path, "c.yaml", "32, 64"),  # lost 128
        _space(tmp_path, "d.yaml", "32, 64", compression="{low: 0.5, high: 1.0}"),  # added
    ]
    for trials, space in enumerate(spaces, start=2):
        args = search_args("--space", space, trials=trials, study="g", pruner="none", quiet=True)
        ran = main_in_process(capsys, *args, *out)
        assert ran.returncode == 0, ran.stderr
    user = open_study(None, "g", tmp_path)
    versions = version_studies(user)
    assert [v.study_name for v in versions] == ["g", "g@v2", "g@v3", "g@v4"]
    # --trials counts the lineage: every search trained one trial more, copies count once
    assert lineage_finished(user) == 5 and study_status(user).finished == 5
    own = [
        (v, t)
        for v in versions
        for t in v.get_trials(states=(TrialState.COMPLETE,))
        if "copied_from" not in trial_attrs(t)
    ]
    assert (
        sum(len(v.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) for v in versions)
        > 5
    )
    listed = _optuna_studies(tmp_path)
    for version in versions:
        assert f"name: {version.study_name}" in listed
    # best ranks every version's own trials as one: the same order by hand
    shown = main_in_process(capsys, "best", "--study", "g", "--json", *out)
    assert shown.returncode == 0, shown.stderr
    expected = ranked([t for _, t in own])
    names = {
        id(t): (t.number if v is user else f"v{versions.index(v) + 1}:{t.number}") for v, t in own
    }
    import json

    best = json.loads(shown.stdout)
    assert [row["trial"] for row in best["best"]] == [names[id(t)] for t in expected[:5]]
    assert best["chosen"] == names[id(expected[0])]
    top = expected[0]
    module = load_best(None, "g", out=tmp_path)
    assert module.config.growth_rate == trial_attrs(top)["arch"]["growth_rate"]
    # a trial of version 1 is loadable by its plain number
    first = user.get_trials(states=(TrialState.COMPLETE,))[0]
    loaded = load_best(None, "g", trial=first.number, out=tmp_path)
    assert loaded.config.growth_rate == trial_attrs(first)["arch"]["growth_rate"]
    assert metric_value(first) <= metric_value(top) and trial_size(first) > 0


def _source_study(tmp_path: Path, space: str, results: list[tuple[int, int, float]]) -> None:
    """A finished study 'src' on other data (another validation split): trials of
    (batch size, growth rate, accuracy)."""
    storage = make_storage(None, tmp_path)
    source = optuna.create_study(study_name="src", storage=storage, direction="maximize")
    record_study(source, data="digits", data_args={}, val_size=0.25, objective="accuracy")
    distributions = space_version(load_space(space), DIGITS).distributions
    for batch_size, growth_rate, value in results:
        params: dict[str, Any] = {"num_blocks": 1, "bottleneck": True, "lr": 0.1}
        params |= {"layers_per_block": 1, "batch_size": batch_size, "growth_rate": growth_rate}
        params = {k: v for k, v in params.items() if k in distributions}  # a fixed batch
        drawn = optuna.trial.FixedTrial(params)
        candidate = sample(load_space(space), cast(optuna.Trial, drawn), DIGITS)
        attrs = {**drawn.user_attrs, **candidate.to_dict(), "arch_key": candidate.key}
        source.add_trial(
            optuna.trial.create_trial(
                value=value,
                params=params,
                distributions={k: distributions[k] for k in params},
                user_attrs=attrs,
            )
        )


def test_a_warm_start_trains_the_other_studys_best_trials_that_fit_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # its best trial trained with batch 64, which this space (batch 128) cannot build
    _source_study(
        tmp_path,
        _space(tmp_path, "a.yaml", "64, 128"),
        [(64, 4, 0.9), (128, 6, 0.8), (128, 8, 0.7), (128, 4, 0.6)],
    )
    args = search_args(
        "--warm-start",
        "src",
        "--warm-start-top",
        "3",
        trials=2,
        study="w",
        pruner="none",
        quiet=True,
    )
    ran = main_in_process(capsys, *args, "--out", str(tmp_path))
    assert ran.returncode == 0, ran.stderr
    storage = make_storage(None, tmp_path)
    study = optuna.load_study(study_name="w", storage=storage)
    source = optuna.load_study(study_name="src", storage=storage)
    trained = sorted(
        study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)), key=lambda t: t.number
    )
    expected = [source.trials[1].params, source.trials[2].params]
    assert [{k: t.params[k] for k in expected[0] if k != "batch_size"} for t in trained] == [
        {k: p[k] for k in p if k != "batch_size"} for p in expected
    ]
    assert [trial_attrs(t)["warm_start_of"] for t in trained] == [
        {"study": "src", "number": 1},
        {"study": "src", "number": 2},
    ]
    record = study_attrs(study)["warm_start"]
    assert (record["enqueued"], record["skipped"], record["history"]) == ([1, 2], [0], 0)
    assert len(study.trials) == 2  # other data: no history added


def test_a_warm_start_on_the_same_data_adds_its_finished_trials_as_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _source_study(tmp_path, TINY_SPACE, [(128, 4, 0.9), (128, 6, 0.8)])
    source = optuna.load_study(study_name="src", storage=make_storage(None, tmp_path))
    source.set_user_attr("val_size", 0.1)  # the split this search's digits data makes
    ran = main_in_process(
        capsys, "search", "--space", TINY_SPACE, "--study", "w", "--out", str(tmp_path),
        "--accelerator", "cpu", "--timeout", BEFORE_ANY_TRIAL, "--warm-start", "src",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "2 of its trials added as history (the same data)" in ran.stdout
    study = optuna.load_study(study_name="w", storage=make_storage(None, tmp_path))
    history = study.get_trials(states=(TrialState.COMPLETE,))
    assert [trial_attrs(t)["copied_from"]["number"] for t in history] == [0, 1]
    assert [t.value for t in history] == [0.9, 0.8]
    assert study_status(study).finished == 0  # history does not use up --trials
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 2  # its best, first


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--warm-start", "nowhere"],
            "dense-nas: error: --warm-start: no study named 'nowhere' in sqlite:///{db} "
            "(studies there: src); name one of them",
        ),
        (
            ["--warm-start", "src", "--warm-start-top", "0"],
            "dense-nas: error: --warm-start-top: must be a positive integer, got 0",
        ),
    ],
)
def test_bad_warm_start_input_is_one_line_and_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    _source_study(tmp_path, TINY_SPACE, [(128, 4, 0.9)])
    ran = main_in_process(capsys, *search_args(*extra, study="w"), "--out", str(tmp_path))
    assert ran.returncode == 2
    db = (tmp_path / "dense-nas.db").resolve()
    assert ran.stderr.strip().splitlines() == [message.format(db=db)]
    assert optuna.get_all_study_names(make_storage(None, tmp_path)) == ["src"]


def test_a_trial_name_across_versions_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _source_study(tmp_path, TINY_SPACE, [(128, 4, 0.9)])
    shown = main_in_process(capsys, "export", "--study", "src", "--out", str(tmp_path),
                            "--trial", "v2:0", "--format", "onnx", "--output", str(tmp_path / "x.onnx"))  # fmt: skip
    assert shown.returncode == 2
    assert shown.stderr.strip() == (
        "dense-nas: error: --trial: study 'src' has 1 version; name a trial N or v1:N"
    )

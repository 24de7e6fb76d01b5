"""``--objective METRIC``: the study optimises the user's validation metric, in its direction,
and everything that ranks (pruning, best, load_best, status) goes by it.

The studies train on ``tests/user_data/imbalanced.py`` (classes at 75 %, 20 % and 5 %),
where accuracy and macro F1 tell different stories.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sklearn.metrics import f1_score

from dense_nas import load_best, search
from dense_nas.records import trial_attrs
from dense_nas.results.status import status_text, study_status
from dense_nas.study.objectives import parse_objective
from dense_nas.study.storage import make_storage
from tests.helpers import TINY_SPACE, main_in_process
from tests.test_user_data import user_path
from tests.user_data.imbalanced import Imbalanced

__all__ = ["user_path"]  # the fixture: tests/user_data on every process's path

DATA = "imbalanced:Imbalanced"
#: A timeout that ends a study before it starts a trial: what it records up front, cheaply.
BEFORE_ANY_TRIAL = 1e-9


def _study(
    out: Path, name: str, objective: str, trials: int = 3, epochs: int = 1, **options: object
) -> optuna.Study:
    return search(
        space=TINY_SPACE,
        data=DATA,
        objective=objective,
        n_trials=trials,
        epochs=epochs,
        study_name=name,
        out=out,
        accelerator="cpu",
        threads=1,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def imbalanced(user_path: str) -> Iterator[Imbalanced]:
    data = Imbalanced()
    data.setup("validate")
    yield data


@pytest.mark.slow  # three trials in a trial process: about 25 s on 2 busy cores
def test_an_f1_study_records_the_macro_f1_of_its_best_network_and_ranks_by_it(
    tmp_path: Path, imbalanced: Imbalanced, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _study(tmp_path, "f1", "f1", pruner="none")
    assert study.user_attrs["objective"] == "f1" and study.directions == [StudyDirection.MAXIMIZE]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3

    shown = main_in_process(capsys, "best", "--study", "f1", "--out", str(tmp_path), "--json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)["best"]
    assert [row["value"] for row in rows] == sorted((t.values[0] for t in complete), reverse=True)
    assert {row["metric"] for row in rows} == {"f1"} and all(row["accuracy"] for row in rows)
    (chosen,) = (t for t in complete if t.number == json.loads(shown.stdout)["chosen"])
    assert chosen.values[0] == max(t.values[0] for t in complete)

    module = load_best(f"sqlite:///{tmp_path / 'dense-nas.db'}", "f1", out=tmp_path)
    labels, predicted = [], []
    with torch.no_grad():
        for images, targets in imbalanced.val_dataloader():
            predicted.append(module(images).argmax(dim=1))
            labels.append(targets)
    truth, guess = torch.cat(labels), torch.cat(predicted)
    expected = f1_score(truth, guess, average="macro", zero_division=0)
    assert chosen.values[0] == pytest.approx(expected, abs=1e-6)
    accuracy = float((truth == guess).float().mean())
    assert trial_attrs(chosen)["accuracy"] == pytest.approx(accuracy, abs=1e-6)  # shown beside
    assert abs(expected - accuracy) > 0.01  # the data tell the two apart
    table = main_in_process(capsys, "best", "--study", "f1", "--out", str(tmp_path))
    assert "val f1  val accuracy" in table.stdout


@pytest.mark.slow  # two trials in a trial process: about 20 s on 2 busy cores
def test_an_nll_study_minimises_and_prunes_on_the_nll(tmp_path: Path, user_path: str) -> None:
    # Upper 0: every NLL is above it, so the pruner stops each trial after its first epoch
    # of two, on the value it hears, which must be the NLL (accuracy is below 1 too).
    study = _study(
        tmp_path,
        "nll",
        "nll",
        trials=2,
        epochs=2,
        pruner=optuna.pruners.ThresholdPruner(upper=0.0),
        sampler=optuna.samplers.RandomSampler(seed=1),
    )
    assert study.directions == [StudyDirection.MINIMIZE]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    for trial in trials:
        progress = trial_attrs(trial)["progress"]
        assert progress["metric"] == "nll" and trial.intermediate_values == {1: progress["value"]}
        assert progress["value"] != progress["accuracy"]
    assert study.user_attrs["sampler"] == {"name": "RandomSampler", "args": None}
    assert study.user_attrs["pruner"] == {"name": "ThresholdPruner", "args": None}


@pytest.mark.slow  # three trials in a trial process: about 25 s on 2 busy cores
def test_best_and_status_of_an_nll_study_take_the_lowest(
    tmp_path: Path, user_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _study(tmp_path, "low", "nll", pruner="none")
    values = {t.number: t.values[0] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    lowest = min(values, key=values.__getitem__)
    shown = main_in_process(capsys, "best", "--study", "low", "--out", str(tmp_path), "--json")
    assert json.loads(shown.stdout)["chosen"] == lowest
    assert [row["value"] for row in json.loads(shown.stdout)["best"]] == sorted(values.values())
    assert f"best nll {values[lowest]:.4f} (#{lowest})" in status_text(study_status(study))


def test_the_multi_objective_rule_is_dominated_by_a_lower_nll() -> None:
    objective = parse_objective("nll,params")
    assert objective.directions == [StudyDirection.MINIMIZE, StudyDirection.MINIMIZE]
    study = optuna.create_study(directions=objective.directions)
    for _ in range(objective.startup_trials):
        study.add_trial(
            optuna.trial.create_trial(
                values=[0.5, 100], user_attrs={"params": 100, "intermediate": {"1": 0.5}}
            )
        )
    assert objective.dominated(study, size=200, epoch=1, value=0.9)  # worse, and larger
    assert not objective.dominated(study, size=200, epoch=1, value=0.3)  # better: goes on
    assert not objective.dominated(study, size=50, epoch=1, value=0.9)  # smaller than all


def test_resuming_with_another_metric_is_refused(
    tmp_path: Path, user_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _study(tmp_path, "m", "f1", timeout=BEFORE_ANY_TRIAL)  # the objective is set up front
    again = main_in_process(
        capsys,
        "search",
        *("--space", TINY_SPACE, "--data", DATA, "--study", "m", "--out", str(tmp_path)),
        *("--objective", "balanced_accuracy"),
    )
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        "dense-nas: error: --objective: study 'm' was made with another objective (f1); "
        "use --objective f1 or a new --study"
    ]
    study = optuna.load_study(study_name="m", storage=make_storage(None, tmp_path))
    assert study.trials == [] and study.user_attrs["objective"] == "f1"


def test_an_unknown_metric_is_one_line_and_nothing_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = main_in_process(capsys, "search", "--objective", "recall", "--out", str(tmp_path / "o"))
    assert ran.returncode == 2
    assert ran.stderr.startswith("dense-nas: error: --objective: must be METRIC or METRIC,SIZE")
    assert ran.stderr.count("\n") == 1 and not (tmp_path / "o").exists()

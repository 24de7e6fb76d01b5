"""Every ``--sampler`` and ``--pruner`` name, each in a study long enough to matter.

A sampler's test runs past its random start-up trials and checks that later trials carry
the mark the sampler itself leaves on what it samples (Optuna's system attributes); a
pruner's test checks that it really stopped a trial after a reported epoch. Every study
exits 0 and leaves nothing RUNNING.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from dense_nas.study.samplers import SAMPLERS, make_sampler
from dense_nas.study.storage import make_storage
from tests.helpers import main_in_process, search_args

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str, trials: int, epochs: int
) -> optuna.Study:
    """A finished `dense-nas search` of the tiny space, checked to exit 0 with no trial left
    RUNNING; the study, reloaded from its storage."""
    args = search_args(*extra, trials=trials, epochs=epochs, out=tmp_path, study="s", quiet=True)
    ran = main_in_process(capsys, *args)
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    study = optuna.load_study(study_name="s", storage=make_storage(None, tmp_path))
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert TrialState.RUNNING not in states and len(states) == trials
    return study


def _trained(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that trained themselves (not a twin's reused result), in order."""
    return [t for t in study.get_trials(deepcopy=False) if "duplicate_of" not in t.user_attrs]


def _marked(trial: FrozenTrial, key: str) -> bool:
    return any(name.startswith(key) for name in trial.system_attrs)


# The sampler's own mark on a trial it sampled (random start-up trials carry none), and
# how many trials it samples at random first (samplers.py's settings, Optuna's defaults).
SAMPLER_MARKS = {
    "tpe": ("tpe:relative_params", 8),
    "gp": ("gp:relative_params", 10),
    "cmaes": ("cma:generation", 1),
}


@pytest.mark.parametrize("sampler", sorted(SAMPLER_MARKS))
def test_sampler_samples_past_its_startup_trials(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sampler: str
) -> None:
    key, startup = SAMPLER_MARKS[sampler]
    trials = startup + 1  # the last one is the first the sampler draws itself
    study = _study(
        capsys, tmp_path, "--sampler", sampler, "--pruner", "none", trials=trials, epochs=1
    )
    marked = [t.number for t in _trained(study) if _marked(t, key)]
    assert marked, f"{sampler} never sampled a trial itself"
    assert min(marked) >= startup  # start-up trials are random, the rest are the sampler's


def test_cmaes_without_its_package_is_one_line_naming_the_extra(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cmaes", None)  # `import cmaes` now fails, as uninstalled
    out = tmp_path / "runs"
    ran = main_in_process(capsys, *search_args("--sampler", "cmaes", out=out, trials=2))
    assert ran.returncode == 2
    assert ran.stderr.count("\n") == 1 and "pip install 'dense-nas[cmaes]'" in ran.stderr
    assert not (out / "dense-nas.db").exists()


def test_random_sampler_draws_distinct_candidates(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    study = _study(capsys, tmp_path, "--sampler", "random", "--pruner", "none", trials=5, epochs=1)
    learning_rates = {t.params["lr"] for t in study.get_trials(deepcopy=False)}
    assert len(learning_rates) == 5


def test_qmc_sampler_walks_its_sequence(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _study(capsys, tmp_path, "--sampler", "qmc", "--pruner", "none", trials=5, epochs=1)
    # QMC samples every trial after the first from one low-discrepancy sequence and
    # counts the points it has handed out on the study.
    storage = make_storage(None, tmp_path)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name("s"))
    counters = [value for key, value in attrs.items() if key.startswith("qmc:")]
    assert counters and max(counters) >= 3


def test_nsga2_sampler_runs_a_multi_objective_study(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    study = _study(
        capsys,
        tmp_path,
        *("--sampler", "nsga2", "--pruner", "none", "--objective", "accuracy,params"),
        trials=4,
        epochs=1,
    )
    # NSGA-II places every trial in a generation; its first one (50 trials) is random.
    assert all(_marked(t, "NSGAIISampler:generation") for t in _trained(study))
    assert study.best_trials


@pytest.mark.slow  # its first generation is 50 random trials
def test_nsga2_breeds_a_second_generation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # One objective and no pruner: a generation counts only COMPLETE trials, and a
    # multi-objective study stops dominated ones early whatever the pruner.
    study = _study(capsys, tmp_path, "--sampler", "nsga2", "--pruner", "none", trials=52, epochs=1)
    generations = [t.system_attrs["NSGAIISampler:generation"] for t in _trained(study)]
    assert generations[:50] == [0] * 50 and set(generations[50:]) == {1}


def _pruned_by_the_pruner(study: optuna.Study) -> list[FrozenTrial]:
    """PRUNED trials stopped after a reported epoch (not before training)."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
        if t.intermediate_values
    ]


@pytest.mark.parametrize(
    "pruner", ["hyperband", "asha", "successive-halving", "median", "percentile"]
)
def test_pruner_stops_weak_trials(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pruner: str
) -> None:
    study = _study(capsys, tmp_path, "--pruner", pruner, "--sampler", "random", trials=8, epochs=3)
    assert _pruned_by_the_pruner(study), f"{pruner} pruned nothing"


def test_no_pruner_trains_every_trial_to_the_end(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    study = _study(capsys, tmp_path, "--pruner", "none", "--sampler", "random", trials=5, epochs=2)
    assert all(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    assert all(t.user_attrs["epochs"] == 2 for t in _trained(study))


def test_a_pruners_answer_is_a_plain_bool() -> None:
    from dense_nas.model.arch import DenseNetConfig
    from dense_nas.study.objectives import parse_objective

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(0, 0))
    for accuracy in (0.8, 0.9):
        done = study.ask()
        done.report(accuracy, 1)
        study.tell(done, accuracy)
    trial = study.ask()
    arch = DenseNetConfig.from_depth(40, growth_rate=12, bottleneck=True, compression=0.5)
    answer = parse_objective("accuracy").pruning_rule(study, trial, arch)(1, 0.1)
    assert answer is True  # a numpy bool would not be `True`, nor JSON


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_samplers_are_made_without_a_warning(sampler: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # qmc's ExperimentalWarning reached the terminal
        make_sampler(sampler, seed=0)

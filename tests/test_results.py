"""Best trials and load_best: picking from the Pareto front, safe loading, clear errors."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.artifacts import download_artifact
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from dense_nas.cli import main
from dense_nas.cli._args import PICK_CHOICES
from dense_nas.errors import UserInputError
from dense_nas.model.module import DenseNetModule
from dense_nas.results.loading import load_best, read_checkpoint
from dense_nas.results.selection import PICKS, pareto_front, select_trial, trial_size
from dense_nas.results.selection import metric_value as accuracy
from dense_nas.study.storage import artifact_store
from tests._study_fixtures import (
    BuiltStudy,
    Spec,
    build_study,
    digits_batch,
    predictions,
    shared_study,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
MAXIMIZE, MINIMIZE = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE


def _stored_module(built: BuiltStudy, number: int, tmp_path: Path) -> DenseNetModule:
    """The trial's checkpoint, loaded the plain Lightning way (the reference to match)."""
    study = built.load()
    path = tmp_path / "reference.ckpt"
    download_artifact(
        artifact_store=artifact_store(study),
        file_path=str(path),
        artifact_id=study.trials[number].user_attrs["checkpoint"],
    )
    return DenseNetModule.load_from_checkpoint(path, weights_only=True)


def _synthetic(points: list[tuple[float, int]], objective: str = "accuracy,params") -> optuna.Study:
    """A study of told trials only (no training): enough for the pick rules."""
    directions = [MAXIMIZE, MINIMIZE] if "," in objective else [MAXIMIZE]
    study = optuna.create_study(study_name="synthetic", directions=directions)
    study.set_user_attr("objective", objective)
    for acc, size in points:
        values = [acc, float(size)] if "," in objective else [acc]
        study.add_trial(
            create_trial(values=values, user_attrs={"params": size, "macs": 1000 * size})
        )
    return study


# ----------------------------------------------------------------------------- picking


def _dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
    better_or_equal = accuracy(a) >= accuracy(b) and trial_size(a) <= trial_size(b)
    return bool(better_or_equal and (accuracy(a) > accuracy(b) or trial_size(a) < trial_size(b)))


@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_is_exactly_the_non_dominated_set(seed: int) -> None:
    rng = random.Random(seed)
    points = [
        (rng.choice([0.5, 0.6, 0.7, 0.8, 0.9]), rng.choice([10, 20, 40, 80])) for _ in range(25)
    ]
    trials = _synthetic(points).trials
    front = pareto_front(trials)
    for trial in trials:
        dominated = any(_dominates(other, trial) for other in trials)
        same_as_front = any(
            (accuracy(f), trial_size(f)) == (accuracy(trial), trial_size(trial)) for f in front
        )
        assert dominated != same_as_front
    assert len({(accuracy(t), trial_size(t)) for t in front}) == len(front)  # no repeats


def test_pick_rules_on_a_multi_objective_front() -> None:
    study = _synthetic([(0.90, 1_000), (0.95, 2_000), (0.96, 50_000), (0.94, 9_000)])
    assert select_trial(study).number == 2
    assert select_trial(study, pick="smallest").number == 0
    assert select_trial(study, pick="knee").number == 1
    assert select_trial(study, max_params=5_000).number == 1
    assert select_trial(study, trial=3).number == 3  # any completed trial, even dominated


def test_macs_study_picks_along_macs() -> None:
    study = _synthetic([(0.9, 100), (0.8, 200)], objective="accuracy,macs")
    study.add_trial(create_trial(values=[0.8, 5.0], user_attrs={"params": 300, "macs": 5}))
    assert select_trial(study, pick="smallest").number == 2  # fewest MACs, not params


def test_accuracy_pick_breaks_ties_by_size() -> None:
    study = _synthetic([(0.9, 500), (0.9, 100)], objective="accuracy")
    assert select_trial(study).number == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pick": "largest"}, "^pick: must be one of accuracy, smallest, knee"),
        ({"trial": 9}, "^trial: study 'synthetic' has no trial 9"),
        ({"max_params": 10}, "^max_params: no completed trial has at most 10 parameters"),
    ],
)
def test_bad_choices_are_one_line_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UserInputError, match=message) as caught:
        select_trial(_synthetic([(0.9, 500)]), **kwargs)  # type: ignore[arg-type,unused-ignore]
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("objective", ["accuracy", "accuracy,params"])
def test_best_and_load_best_name_the_same_trial_on_ties(
    objective: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Equal accuracies: ``dense-nas best`` and ``load_best``/``export``/``retrain`` agree."""
    storage = f"sqlite:///{tmp_path / 'ties.db'}"
    memory = _synthetic([(0.9, 300), (0.95, 500), (0.95, 200), (0.95, 200), (0.8, 50)], objective)
    study = optuna.create_study(
        study_name="ties", storage=storage, directions=list(memory.directions)
    )
    study.set_user_attr("objective", objective)
    for trial in memory.trials:
        study.add_trial(trial)
    assert main(["best", "--storage", storage, "--study", "ties", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    chosen = select_trial(study)  # what load_best, export and retrain load
    assert shown["chosen"] == shown["best"][0]["trial"] == chosen.number == 2
    assert main(["best", "--storage", storage, "--study", "ties"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2].split()[0] == "2"  # the first row under the header


def test_a_bad_pick_names_the_parameter_in_python_and_the_flag_on_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UserInputError, match=r"^pick: must be one of"):
        load_best(f"sqlite:///{tmp_path / 'none.db'}", "none", pick="largest")
    assert not (tmp_path / "none.db").exists()  # refused before anything is opened
    flags = ["--storage", "x.db", "--format", "onnx", "--output", "m.onnx", "--pick", "largest"]
    code = main(["export", *flags])
    err = capsys.readouterr().err
    assert code == 2 and "--pick: invalid choice: 'largest'" in err and len(err.splitlines()) == 1


def test_unfinished_trial_and_empty_study_are_refused() -> None:
    study = _synthetic([])
    with pytest.raises(UserInputError, match="has no completed trials yet"):
        select_trial(study)
    study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.5}))
    with pytest.raises(UserInputError, match="trial 0 is PRUNED"):
        select_trial(study, trial=0)


def test_every_pick_rule_is_offered_by_the_command_and_every_offer_is_a_rule(
    multi: BuiltStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    study = multi.load()
    front = {t.number for t in pareto_front(study.get_trials(states=(TrialState.COMPLETE,)))}
    for pick in PICKS:  # each rule the selection knows, as a user would ask for it
        args = ["best", "--storage", multi.storage, "--study", multi.name, "--json"]
        assert main([*args, "--pick", pick]) == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["chosen"] in front
    for offered in PICK_CHOICES:  # each choice the command offers picks a front trial
        assert select_trial(study, pick=offered).number in front


# ----------------------------------------------------------------------------- loading


def test_load_best_gives_the_best_trials_weights_in_eval_mode(
    single: BuiltStudy, tmp_path: Path
) -> None:
    module = load_best(single.storage, single.name)
    study = single.load()
    best = max(study.get_trials(states=(TrialState.COMPLETE,)), key=accuracy)
    assert isinstance(module, DenseNetModule) and not module.training
    assert module.config.to_dict() == best.user_attrs["arch"]
    images = digits_batch()
    torch.testing.assert_close(
        predictions(module, images),
        predictions(_stored_module(single, best.number, tmp_path), images),
        rtol=0,
        atol=0,
    )


def test_duplicate_trial_loads_the_weights_it_reused(single: BuiltStudy) -> None:
    duplicate = next(t for t in single.load().trials if "duplicate_of" in t.user_attrs)
    original = duplicate.user_attrs["duplicate_of"]
    images = digits_batch()
    torch.testing.assert_close(
        predictions(load_best(single.storage, single.name, trial=duplicate.number), images),
        predictions(load_best(single.storage, single.name, trial=original), images),
        rtol=0,
        atol=0,
    )


def test_multi_objective_pick_loads_the_chosen_architecture(multi: BuiltStudy) -> None:
    study = multi.load()
    front = pareto_front(study.get_trials(states=(TrialState.COMPLETE,)))
    for pick, expected in (("smallest", front[0]), ("accuracy", front[-1])):
        module = load_best(multi.storage, multi.name, pick=pick)
        assert module.config.to_dict() == expected.user_attrs["arch"]


def _load_best_elsewhere(storage: str, name: str, images: torch.Tensor, tmp: Path) -> torch.Tensor:
    """Predictions of ``load_best`` run in a fresh Python process (as on another machine)."""
    torch.save(images, tmp / "images.pt")
    script = textwrap.dedent(f"""
        import torch
        from dense_nas.results.loading import load_best
        module = load_best({storage!r}, {name!r})
        assert not module.training
        with torch.no_grad():
            torch.save(module(torch.load({str(tmp / "images.pt")!r})), {str(tmp / "out.pt")!r})
    """)
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return torch.load(tmp / "out.pt")  # type: ignore[no-any-return]


def test_load_best_in_a_fresh_process_matches_the_checkpoint(
    single: BuiltStudy, tmp_path: Path
) -> None:
    images = digits_batch()
    best = select_trial(single.load())
    torch.testing.assert_close(
        _load_best_elsewhere(single.storage, single.name, images, tmp_path),
        predictions(_stored_module(single, best.number, tmp_path), images),
        rtol=0,
        atol=0,
    )


def test_checkpoint_of_another_architecture_is_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    built = shared_study(tmp_path_factory.getbasetemp(), "mixed-up")
    with pytest.raises(UserInputError, match="holds another architecture") as caught:
        load_best(built.storage, built.name, trial=1)
    assert "\n" not in str(caught.value)


class _Payload:
    """Pickles to a call that would create ``marker``: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))


def test_checkpoint_with_code_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, path)
    with pytest.raises(UserInputError, match="is not a weights-only checkpoint"):
        read_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_missing_from_the_store_is_a_clear_error(tmp_path: Path) -> None:
    built = build_study(tmp_path, "moved", [Spec()])
    study = built.load()
    store = artifact_store(study)
    store.remove(study.trials[0].user_attrs["checkpoint"])
    with pytest.raises(UserInputError, match="is not in the artifact store"):
        load_best(built.storage, built.name)


def test_missing_study_names_the_studies_that_exist(single: BuiltStudy) -> None:
    with pytest.raises(UserInputError, match=r"no study named 'nope'.*studies there: .*single"):
        load_best(single.storage, "nope")


@pytest.mark.slow
def test_tiny_real_search_then_load_best_in_a_fresh_process(tmp_path: Path) -> None:
    """End to end: ``search()`` writes the study; another process loads its best trial."""
    from dense_nas.study import search

    out = tmp_path / "runs"
    search(
        n_trials=2, epochs=1, pruner="none", accelerator="cpu", threads=1, study_name="e2e", out=out
    )
    storage = f"sqlite:///{(out / 'dense-nas.db').resolve()}"
    built = BuiltStudy(storage, "e2e", out)
    images = digits_batch()
    best = select_trial(built.load())
    torch.testing.assert_close(
        _load_best_elsewhere(storage, built.name, images, tmp_path),
        predictions(_stored_module(built, best.number, tmp_path), images),
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize(
    "choose",
    [["--pick", "knee"], ["--pick", "smallest"], ["--trial", "1"], ["--max-params", "600"]],
)
def test_best_config_writes_the_chosen_trials_lightning_config(
    multi: BuiltStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str], choose: list[str]
) -> None:
    study = multi.load()
    flag, value = choose[0].removeprefix("--").replace("-", "_"), choose[1]
    chosen = select_trial(study, **{flag: value if flag == "pick" else int(value)})  # type: ignore[arg-type]
    assert chosen.number != select_trial(study).number  # the flag changes the choice
    config = tmp_path / "chosen.yaml"
    where = ["--storage", multi.storage, "--study", multi.name]
    assert main(["best", *where, "--config", str(config), *choose]) == 0
    written = yaml.safe_load(config.read_text())
    assert written["model"]["config"] == chosen.user_attrs["arch"]
    assert f"trial {chosen.number} " in capsys.readouterr().out
    assert main(["best", *where, "--json", *choose]) == 0
    assert json.loads(capsys.readouterr().out)["chosen"] == chosen.number

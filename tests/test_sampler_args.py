"""``--sampler-arg`` / ``--pruner-arg``: the user's settings of the Optuna sampler and
pruner, checked before anything is stored, recorded on the study, and the same for every
command on it; and in Python, sampler and pruner objects."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from dense_nas import search
from dense_nas.study.samplers import make_pruner, make_sampler
from dense_nas.study.storage import make_storage
from tests.helpers import TINY_SPACE, main_in_process

#: A timeout that ends a study before it starts a trial: what it records up front, cheaply.
BEFORE_ANY_TRIAL = "1e-9"


def _search(out: Path, *extra: str) -> list[str]:
    return ["search", "--space", TINY_SPACE, "--study", "s", "--out", str(out), *extra]


def _recorded(out: Path) -> dict[str, object]:
    return optuna.load_study(study_name="s", storage=make_storage(None, out)).user_attrs


def _brackets(pruner: optuna.pruners.BasePruner) -> int:
    """Hyperband's bracket count, which it works out when it first prunes a trial."""
    probe = optuna.create_study(pruner=pruner, direction="maximize")
    trial = probe.ask()
    trial.report(0.5, 1)
    trial.should_prune()
    return int(vars(pruner)["_n_brackets"])


def test_a_pruner_arg_changes_hyperbands_brackets_and_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ("--epochs", "4", "--timeout", BEFORE_ANY_TRIAL, "--pruner", "hyperband")
    ran = main_in_process(capsys, *_search(tmp_path, *flags, "--pruner-arg", "reduction_factor=2"))
    assert ran.returncode == 0, ran.stderr
    recorded = _recorded(tmp_path)["pruner"]
    assert recorded == {"name": "hyperband", "args": {"reduction_factor": 2}}
    used = make_pruner("hyperband", 4, {"reduction_factor": 2})  # as every command builds it
    assert vars(used)["_reduction_factor"] == 2
    assert _brackets(used) == 3 and _brackets(make_pruner("hyperband", 4)) == 2  # 1-2-4 vs 1-3

    study = search(
        space=TINY_SPACE, epochs=4, study_name="py", out=tmp_path, timeout=float(BEFORE_ANY_TRIAL),
        pruner_args={"reduction_factor": 2},
    )  # fmt: skip
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)  # the one search used
    assert _brackets(study.pruner) == 3


def test_a_sampler_arg_reaches_the_sampler_that_samples(tmp_path: Path) -> None:
    study = search(
        space=TINY_SPACE,
        study_name="s",
        out=tmp_path,
        timeout=float(BEFORE_ANY_TRIAL),
        sampler_args={"n_startup_trials": 2},
    )
    assert _recorded(tmp_path)["sampler"] == {"name": "tpe", "args": {"n_startup_trials": 2}}
    assert isinstance(study.sampler, optuna.samplers.TPESampler)  # the one search used
    assert _third_trial_by_tpe(study.sampler)
    assert not _third_trial_by_tpe(make_sampler("tpe", 0))  # 8 start-up trials: at random


def _third_trial_by_tpe(sampler: optuna.samplers.BaseSampler) -> bool:
    """Whether the sampler draws a study's third trial from its model of the first two
    (multivariate TPE's relative sampling) rather than at random, as start-up trials are."""
    probe = optuna.create_study(sampler=sampler)
    for _ in range(2):
        trial = probe.ask()
        probe.tell(trial, trial.suggest_float("x", 0.0, 1.0))
    third = probe.ask()
    third.suggest_float("x", 0.0, 1.0)
    return bool(third.relative_params)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (("--sampler-arg", "n_startup=2"), "--sampler-arg: TPESampler takes no 'n_startup'"),
        (("--sampler-arg", "seed=3"), "--sampler-arg: seed: dense-nas sets it for tpe"),
        (("--sampler-arg", "gamma=1"), "--sampler-arg: gamma takes a Python object"),
        (("--pruner-arg", "reduction_factor=two"), "--pruner-arg: reduction_factor must be int"),
        (("--pruner-arg", "max_resource=9"), "--pruner-arg: max_resource: dense-nas sets it"),
        (
            ("--pruner", "percentile", "--pruner-arg", "percentile=150"),
            "--pruner-arg: PercentilePruner refuses percentile=150: Percentile must be between",
        ),
        (
            ("--epochs", "4", "--pruner-arg", "reduction_factor=1"),
            "--pruner-arg: HyperbandPruner refuses reduction_factor=1",
        ),
        (("--pruner-arg", "reduction_factor"), "--pruner-arg: must be KEY=VALUE"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_and_nothing_is_stored(
    flags: tuple[str, ...], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = main_in_process(capsys, *_search(tmp_path / "out", *flags))
    assert ran.returncode == 2
    assert ran.stderr.count("\n") == 1 and "Traceback" not in ran.stderr
    assert says in ran.stderr, ran.stderr
    assert not (tmp_path / "out").exists()


def test_a_resume_with_other_settings_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _search(tmp_path, "--timeout", BEFORE_ANY_TRIAL, "--pruner-arg", "reduction_factor=2")
    assert main_in_process(capsys, *first).returncode == 0
    for other in (("--pruner-arg", "reduction_factor=4"), (), ("--pruner", "median")):
        again = main_in_process(capsys, *_search(tmp_path, "--timeout", BEFORE_ANY_TRIAL, *other))
        assert again.returncode == 2
        assert again.stderr.strip().splitlines() == [
            "dense-nas: error: --pruner: study 's' was made with --pruner hyperband "
            "--pruner-arg reduction_factor=2; pass the same or use a new --study"
        ]
    assert main_in_process(capsys, *first).returncode == 0  # the same settings go on


def test_a_study_made_with_a_sampler_object_goes_on_with_one_and_refuses_a_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def made(**options: object) -> optuna.Study:
        return search(
            space=TINY_SPACE, study_name="s", out=tmp_path, timeout=float(BEFORE_ANY_TRIAL),
            **options,  # type: ignore[arg-type]
        )  # fmt: skip

    study = made(sampler=optuna.samplers.RandomSampler(seed=1))
    assert isinstance(study.sampler, optuna.samplers.RandomSampler)  # used as it is
    assert _recorded(tmp_path)["sampler"] == {"name": "RandomSampler", "args": None}
    made(sampler=optuna.samplers.RandomSampler(seed=2))  # its settings are its own
    by_name = main_in_process(capsys, *_search(tmp_path, "--sampler", "random"))
    assert by_name.returncode == 2
    assert by_name.stderr.strip() == (
        "dense-nas: error: --sampler: study 's' was made with a RandomSampler object given "
        "in Python (its settings are not recorded); pass sampler= a RandomSampler again in "
        "Python or use a new --study"
    )
    with pytest.raises(Exception, match="settings apply to a sampler by name"):
        made(sampler=optuna.samplers.RandomSampler(seed=1), sampler_args={"seed": 1})

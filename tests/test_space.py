"""The space contract: sampling under constraints, seeds, duplicates, YAML semantics, loading."""

from __future__ import annotations

import doctest
import importlib
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, cast

import optuna
import pytest

from dense_nas.data import DenseNetDataModule, make_datamodule
from dense_nas.errors import UserInputError
from dense_nas.model import cost
from dense_nas.model.arch import DenseNetConfig, preset, valid_depths
from dense_nas.model.recipe import TrainingConfig
from dense_nas.space import (
    ENTRY_POINT_GROUP,
    Candidate,
    Constraints,
    SearchSpace,
    Task,
    YamlSearchSpace,
    enqueue_seeds,
    list_spaces,
    load_space,
    sample,
)
from dense_nas.space._registry import builtin_names
from tests.test_data_files import (
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    cifar_records,
    random_images,
    write_folder,
    write_svhn,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

DIGITS = Task(num_classes=10, in_channels=1, image_size=(8, 8))
CIFAR = Task(num_classes=10, in_channels=3, image_size=(32, 32))


def yaml_space(architecture: dict[str, Any], **rest: Any) -> YamlSearchSpace:
    return YamlSearchSpace({"name": "t", "architecture": architecture, **rest}, source="t.yaml")


def fixed(params: dict[str, Any]) -> optuna.Trial:
    """A FixedTrial: it answers suggest_* from ``params`` (how a best trial is rebuilt)."""
    return cast(optuna.Trial, optuna.trial.FixedTrial(params))


def random_study(seed: int = 0) -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))


# ----------------------------------------------------------------------------- sample
def test_sample_records_params_and_macs() -> None:
    trial = random_study().ask()
    candidate = sample(load_space("digits-tiny"), trial, DIGITS)
    assert trial.user_attrs["params"] == cost.params(candidate.arch)
    assert trial.user_attrs["macs"] == cost.macs(candidate.arch, (8, 8))
    assert "pruned_reason" not in trial.user_attrs


def test_sample_prunes_a_violating_candidate_before_training() -> None:
    space = yaml_space(
        {"growth_rate": {"choices": [4, 48]}, "depth": 40},
        constraints={"max_params": 100_000},
    )
    study = random_study()
    study.enqueue_trial({"growth_rate": 48})
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="max_params"):
        sample(space, trial, CIFAR)
    assert trial.user_attrs["pruned_reason"].startswith("params ")
    assert trial.user_attrs["params"] > 100_000
    assert trial.user_attrs["macs"] > 0


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        (Constraints(), None),
        (Constraints(max_params=769_162), None),
        (Constraints(max_params=769_161), "params 769,162 > max_params 769,161"),
        (Constraints(max_macs=10**8), "macs "),
        (Constraints(max_activation_memory=10**6), "activation_memory "),
    ],
)
def test_constraint_limits(limits: Constraints, reason: str | None) -> None:
    candidate = Candidate(preset("densenet-bc-100-12"), TrainingConfig())
    found = limits.violation(candidate, CIFAR)
    assert found == reason if reason is None else found is not None and found.startswith(reason)


def test_activation_limit_uses_the_training_batch_size() -> None:
    arch = DenseNetConfig(8, (2, 2), in_channels=1)
    small = Candidate(arch, TrainingConfig(batch_size=8))
    large = Candidate(arch, TrainingConfig(batch_size=256))
    limit = Constraints(max_activation_memory=cost.activation_memory(arch, (8, 8), 64))
    assert limit.violation(small, DIGITS) is None
    assert limit.violation(large, DIGITS) is not None


def test_input_too_small_for_the_transitions_is_a_violation() -> None:
    arch = DenseNetConfig(4, (1, 1, 1), stem="imagenet", in_channels=1)
    reason = Constraints().violation(Candidate(arch, TrainingConfig()), DIGITS)
    assert reason is not None and "too small for 3 blocks" in reason
    fits = arch.replace(block_layers=(1, 1))
    assert Constraints().violation(Candidate(fits, TrainingConfig()), DIGITS) is None


def test_sample_refuses_a_candidate_built_for_another_task() -> None:
    class Forgetful(SearchSpace):
        name = "forgetful"

        def suggest(self, trial: optuna.Trial, task: Task) -> Candidate:
            return Candidate(DenseNetConfig(4, (1,)), TrainingConfig())  # ignores the task

    with pytest.raises(UserInputError, match="take num_classes from the task"):
        sample(Forgetful(), random_study().ask(), Task(100, 3, (32, 32)))


def test_task_is_validated() -> None:
    assert Task(10, 1, [8, 8]).image_size == (8, 8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes"):
        Task(1, 1, (8, 8))
    with pytest.raises(ValueError, match="image_size"):
        Task(10, 1, (8, 0))


def _datamodule_on_files(name: str, root: Path) -> DenseNetDataModule:
    """The dataset's datamodule, read from small files written in its official format."""
    images, labels = random_images(8, seed=0)
    if name == "cifar10":
        for member in (*CIFAR10_TRAIN, CIFAR10_TEST):
            (root / member).parent.mkdir(parents=True, exist_ok=True)
            (root / member).write_bytes(cifar_records(images, labels))
    elif name == "cifar100":
        (root / "cifar-100-binary").mkdir(parents=True)
        for split in ("train", "test"):
            records = cifar_records(images, labels, labels * 9)
            (root / "cifar-100-binary" / f"{split}.bin").write_bytes(records)
    elif name == "svhn":
        for split in ("train", "test"):
            write_svhn(root, f"{split}_32x32.mat", 8, seed=0)
    elif name == "folder":
        write_folder(root / "train", {"cat": 4, "dog": 4}, seed=0)
    return make_datamodule(name, root, download=False)


@pytest.mark.parametrize(
    ("data", "dropout"),
    [("digits", 0.0), ("cifar10", 0.0), ("cifar100", 0.0), ("svhn", 0.2), ("folder", 0.0)],
)
def test_unset_dropout_follows_the_papers_rule_for_the_data(
    data: str, dropout: float, tmp_path: Path
) -> None:
    datamodule = _datamodule_on_files(data, tmp_path)
    assert datamodule.augment == (dropout == 0.0)  # the paper: SVHN is not augmented
    task = Task.from_datamodule(datamodule)
    space = yaml_space({"growth_rate": 4, "layers_per_block": [1, 1], "compression": 1.0})
    candidate = sample(space, random_study().ask(), task)
    assert candidate.arch.dropout == dropout
    assert f"drop={dropout:g};" in candidate.arch.key  # what duplicate detection compares


def test_dropout_rule_reads_augmentation_not_the_dataset() -> None:
    space = load_space("digits-tiny")
    for augment, dropout in ((False, 0.2), (True, 0.0)):
        task = Task.from_datamodule(make_datamodule("digits", augment=augment))
        assert sample(space, random_study().ask(), task).arch.dropout == dropout


def test_dropout_a_space_sets_is_kept_whatever_the_data() -> None:
    space = yaml_space({"growth_rate": 4, "layers_per_block": 1, "dropout": 0.1})
    for augmented in (False, True):
        task = Task(10, 1, (8, 8), augmented=augmented)
        assert sample(space, random_study().ask(), task).arch.dropout == 0.1


# ----------------------------------------------------------------------------- study helpers
def test_seeds_enqueue_once_into_a_new_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    space = load_space("densenet-bc-cifar")
    study = optuna.create_study(storage=storage, study_name="s")
    assert enqueue_seeds(study, space) == len(space.seeds) == 4
    assert enqueue_seeds(study, space) == 0
    resumed = optuna.load_study(study_name="s", storage=storage)
    assert enqueue_seeds(resumed, space) == 0
    assert len(resumed.trials) == 4
    first = sample(space, resumed.ask(), CIFAR)
    assert first.arch.key == preset("densenet-bc-100-12").key
    assert first.training.lr == 0.1


def test_partial_seed_leaves_the_rest_to_the_sampler() -> None:
    space = load_space("densenet-bc-cifar")  # its seeds fix k, L and lr only
    study = random_study()
    enqueue_seeds(study, space)
    candidate = sample(space, study.ask(), CIFAR)
    assert candidate.arch.growth_rate == 12 and candidate.arch.depth == 100


# ----------------------------------------------------------------------------- YAML semantics
def test_when_draws_a_field_only_under_its_condition() -> None:
    space = load_space("densenet-cifar-full")
    study = random_study(seed=1)
    seen = set()
    for _ in range(30):
        trial = study.ask()
        arch = space.suggest(trial, CIFAR).arch
        seen.add(arch.bottleneck)
        if arch.bottleneck:
            assert {"bottleneck_width", "depth_bc"} <= trial.params.keys()
            assert arch.init_channels == 2 * arch.growth_rate
        else:
            assert "bottleneck_width" not in trial.params and "depth_basic" in trial.params
            assert arch.init_channels == 16 and arch.bottleneck_width == 4
        study.tell(trial, 0.0)
    assert seen == {True, False}


def test_depth_draws_only_legal_values_per_block_type() -> None:
    space = yaml_space(
        {
            "growth_rate": 4,
            "num_blocks": {"choices": [2, 3]},
            "bottleneck": {"choices": [True, False]},
            "depth": {"low": 20, "high": 80},
        }
    )
    study = random_study(seed=2)
    names = set()
    for _ in range(40):
        trial = study.ask()
        arch = space.suggest(trial, CIFAR).arch
        (name, value), *_ = (p for p in trial.params.items() if p[0].startswith("depth"))
        names.add(name)
        blocks = len(arch.block_layers)
        assert name == f"depth_{'bc' if arch.bottleneck else 'basic'}_{blocks}blocks"
        assert value == arch.depth
        assert value in valid_depths(20, 80, bottleneck=arch.bottleneck, num_blocks=blocks)
        study.tell(trial, 0.0)
    assert len(names) == 4


@pytest.mark.parametrize(
    ("layers", "params", "expected"),
    [
        (3, {}, (3, 3)),
        ({"low": 1, "high": 4}, {"layers_per_block": 2}, (2, 2)),
        (
            {"low": 1, "high": 4, "per_block": True},
            {"layers_block1": 1, "layers_block2": 4},
            (1, 4),
        ),
        ([6, {"choices": [8, 12]}], {"layers_block2": 12}, (6, 12)),
    ],
)
def test_layers_per_block_forms(
    layers: Any, params: dict[str, int], expected: tuple[int, ...]
) -> None:
    architecture = {"growth_rate": 4, "layers_per_block": layers}
    if not isinstance(layers, list):
        architecture["num_blocks"] = 2
    candidate = yaml_space(architecture).suggest(fixed(params), CIFAR)
    assert candidate.arch.block_layers == expected


def test_unset_fields_keep_the_config_defaults() -> None:
    candidate = yaml_space({"growth_rate": 12, "depth": 100}).suggest(fixed({}), CIFAR)
    assert candidate.arch == preset("densenet-bc-100-12")
    assert candidate.training == TrainingConfig()


@pytest.mark.parametrize(
    ("milestones", "schedule", "decays"),
    [
        ([30, 60], "multistep", [30, 60]),
        ([0.5, 0.75], "multistep", [45, 67]),
        ({"value": [30, 60], "when": {"schedule": "multistep"}}, "multistep", [30, 60]),
        ({"value": [30, 60], "when": {"schedule": "multistep"}}, "cosine", [45, 67]),
    ],
)
def test_milestones_are_read_as_one_list(
    milestones: object, schedule: str, decays: list[int]
) -> None:
    training = {
        "epochs": 90,
        "milestones": milestones,
        "schedule": {"choices": ["multistep", "cosine"]},
    }
    space = yaml_space({"growth_rate": 4, "layers_per_block": 1}, training=training)
    recipe = space.suggest(fixed({"schedule": schedule}), CIFAR).training
    assert recipe.schedule == schedule
    assert recipe.milestone_epochs() == decays  # unset under cosine: the paper's default


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        ({"epochs": 9}, 9),
        ({"epochs": {"choices": [6, 18, 12]}}, 18),
        ({"epochs": {"low": 3, "high": 30, "step": 3}}, 30),
        ({}, TrainingConfig().epochs),
    ],
)
def test_max_epochs_is_the_most_a_candidate_trains(training: dict[str, Any], expected: int) -> None:
    """Hyperband sizes its brackets from it (see test_study)."""
    assert yaml_space({"growth_rate": 12, "depth": 40}, training=training).max_epochs == expected


def test_scientific_notation_is_a_number(tmp_path: Path) -> None:
    path = tmp_path / "sci.yaml"
    path.write_text(
        "name: sci\narchitecture: {growth_rate: 4, depth: 16}\n"
        "training: {weight_decay: 1e-4, lr: {low: 1e-3, high: 1e-1, log: true}}\n"
    )
    candidate = load_space(path).suggest(fixed({"lr": 0.01}), CIFAR)
    assert candidate.training.weight_decay == 1e-4


def test_seeds_name_fields_and_become_optuna_params() -> None:
    digits, full = load_space("digits-tiny"), load_space("densenet-cifar-full")
    assert digits.seeds[1] == {
        "num_blocks": 2,
        "bottleneck": True,
        "growth_rate": 8,
        "layers_block1": 3,
        "layers_block2": 3,
        "bottleneck_width": 4,
        "compression": 0.5,
        "lr": 0.1,
        "batch_size": 64,
    }
    assert full.seeds[0]["depth_bc"] == 100 and full.seeds[1]["depth_basic"] == 40


def test_smallest_architecture_decides_max_params_exactly() -> None:
    architecture = {
        "growth_rate": {"low": 4, "high": 8},
        "num_blocks": {"choices": [1, 2]},
        "layers_per_block": {"low": 1, "high": 2},
    }
    smallest = cost.params(DenseNetConfig(4, (1,), num_classes=2, in_channels=1))
    yaml_space(architecture, constraints={"max_params": smallest})  # loads
    with pytest.raises(UserInputError, match=f"at least {smallest} "):
        yaml_space(architecture, constraints={"max_params": smallest - 1})


def test_check_tells_when_nothing_fits_the_task() -> None:
    load_space("digits-tiny").check(DIGITS)
    with pytest.raises(UserInputError, match="architecture: nothing in the space fits 8x8"):
        load_space("densenet-imagenet").check(DIGITS)
    tight = yaml_space({"growth_rate": 12, "depth": 40}, constraints={"max_macs": "1M"})
    with pytest.raises(UserInputError, match=r"constraints: .*\(macs [0-9,]+ > max_macs"):
        tight.check(CIFAR)


# ----------------------------------------------------------------------------- loading
def test_builtins_are_listed_and_named_after_their_files() -> None:
    infos = {info.name: info for info in list_spaces()}
    for name in builtin_names():
        assert infos[name].source == "built-in" and infos[name].description
        assert load_space(name).name == name
    assert {"digits-tiny", "densenet-bc-cifar", "densenet-cifar-full", "densenet-imagenet"} <= (
        set(builtin_names())
    )


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(UserInputError, match="built-in spaces: densenet-bc-cifar, "):
        load_space("digits-tinyy")


def test_load_a_file_by_str_or_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\narchitecture: {growth_rate: 4, depth: 16}\n")
    assert load_space(str(path)).name == load_space(path).name == "mine"


PLUGIN_MODULE = """
import optuna
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.recipe import TrainingConfig
from dense_nas.space import Candidate, SearchSpace

class Good(SearchSpace):
    name = "good"
    description = "k in 4..8"
    seeds = ({"growth_rate": 4},)

    def suggest(self, trial, task):
        k = trial.suggest_int("growth_rate", 4, 8)
        arch = DenseNetConfig(k, (2,), num_classes=task.num_classes,
                              in_channels=task.in_channels)
        return Candidate(arch, TrainingConfig())

class Nameless(Good):
    name = ""

class Abstract(SearchSpace):
    name = "abstract"

class NotASpace:
    pass

SPACE_FILE = "fake.yaml"
OTHER_NAME = Good
"""


@pytest.fixture
def fake_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module ``fake_plugin`` holding spaces, and a YAML file beside it."""
    (tmp_path / "fake_plugin.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    (tmp_path / "fake.yaml").write_text(
        "name: fake-yaml\narchitecture: {growth_rate: 4, depth: 16}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "fake_plugin"


def test_load_a_python_class(fake_plugin: str) -> None:
    space = load_space(f"{fake_plugin}:Good")
    assert space.name == "good"
    assert sample(space, random_study().ask(), DIGITS).arch.block_layers == (2,)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("fake_plugin:Missing", "fake_plugin has no Missing; check the name"),
        ("no_such_module_xyz:Space", "cannot import no_such_module_xyz"),
        ("fake_plugin:NotASpace", "is not a SearchSpace subclass"),
        ("fake_plugin:Abstract", "cannot build it with no arguments"),
        ("fake_plugin:Nameless", "has no name"),
        (":Good", "write a class as package.module:ClassName"),
    ],
)
def test_python_class_errors(fake_plugin: str, spec: str, fragment: str) -> None:
    with pytest.raises(UserInputError) as caught:
        load_space(spec)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, **targets: str) -> None:
    points = [EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in targets.items()]
    monkeypatch.setattr(
        "dense_nas._plugins.entry_points",
        lambda group: points if group == ENTRY_POINT_GROUP else [],
    )


def test_entry_points_give_classes_and_yaml_files(
    fake_plugin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points(
        monkeypatch,
        good="fake_plugin:Good",
        **{"fake-yaml": "fake_plugin:SPACE_FILE", "digits-tiny": "fake_plugin:Good"},
    )
    assert load_space("good").name == "good"
    assert isinstance(load_space("fake-yaml"), YamlSearchSpace)
    assert load_space("digits-tiny").description.startswith("CPU-sized")  # built-in first
    listed = {(info.name, info.source): info.description for info in list_spaces()}
    assert listed[("good", "plugin (unknown distribution)")] == "k in 4..8"
    assert listed[("digits-tiny", "plugin (unknown distribution)")].startswith("(hidden")


@pytest.mark.parametrize(
    ("targets", "fragment"),
    [
        ({"other": "fake_plugin:OTHER_NAME"}, "make the entry point name and the space name equal"),
        ({"other": "fake_plugin:Gone"}, "cannot load it (AttributeError"),
        ({"other": "broken_module_xyz:Space"}, "cannot load it (ModuleNotFoundError"),
    ],
)
def test_broken_entry_points(
    fake_plugin: str, monkeypatch: pytest.MonkeyPatch, targets: dict[str, str], fragment: str
) -> None:
    fake_entry_points(monkeypatch, **targets)
    with pytest.raises(UserInputError) as caught:
        load_space("other")
    assert fragment in str(caught.value)
    broken = [info for info in list_spaces() if info.name == "other"]
    assert broken[0].description.startswith("(broken: ") and fragment in broken[0].description


def test_one_name_from_two_plugins_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [EntryPoint("twin", f"pkg{i}:Space", ENTRY_POINT_GROUP) for i in (1, 2)]
    monkeypatch.setattr("dense_nas._plugins.entry_points", lambda group: points)
    with pytest.raises(UserInputError, match="registered by both"):
        load_space("twin")


# ----------------------------------------------------------------------------- examples
SPACE_MODULES = [
    "dense_nas.space",
    "dense_nas.space._base",
    "dense_nas.space._file",
    "dense_nas.space._nodes",
    "dense_nas.space._probe",
    "dense_nas.space._registry",
    "dense_nas.space._values",
    "dense_nas.space._yaml",
    "dense_nas.search_spaces",
]


@pytest.mark.parametrize("name", SPACE_MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


README = Path(__file__).parent.parent / "search_spaces" / "README.md"


def readme_blocks(language: str) -> list[str]:
    parts = README.read_text(encoding="utf-8").split(f"```{language}\n")[1:]
    return [part.split("```", 1)[0] for part in parts]


def test_readme_worked_example_loads(tmp_path: Path) -> None:
    (example,) = [block for block in readme_blocks("yaml") if block.startswith("name:")]
    path = tmp_path / "my-small-cifar.yaml"
    path.write_text(example)
    space = load_space(path)
    study = random_study()
    assert enqueue_seeds(study, space) == 1
    assert sample(space, study.ask(), CIFAR).arch.key == preset("densenet-bc-100-12").key


def test_readme_python_space_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = readme_blocks("python")
    (tmp_path / "my_spaces.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    space = load_space("my_spaces:Widening")
    study = random_study()
    enqueue_seeds(study, space)
    assert sample(space, study.ask(), CIFAR).arch.block_layers == (8, 4, 2)

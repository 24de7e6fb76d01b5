"""The recipe beyond the paper's: AdamW and a warm-up, from a YAML space to a trial's
record, and from the record into ``retrain`` and ``best --config``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import optuna
import pytest
import torch
import yaml
from lightning.pytorch.cli import LightningCLI

from dense_nas.model.module import DenseNetModule
from dense_nas.model.recipe import TrainingConfig
from dense_nas.records import trial_attrs
from dense_nas.results.retrain import retrain
from dense_nas.space import Task, YamlSearchSpace
from tests._study_fixtures import Spec, build_study
from tests.helpers import main_in_process, search_args

optuna.logging.set_verbosity(optuna.logging.WARNING)

DIGITS = Task(num_classes=10, in_channels=1, image_size=(8, 8))

#: Both optimizers, each with a field of its own searched under a condition.
BOTH = {
    "name": "both-optimizers",
    "architecture": {"growth_rate": 4, "layers_per_block": 1, "num_blocks": 1},
    "training": {
        "optimizer": {"choices": ["sgd", "adamw"]},
        "lr": {"low": 1e-3, "high": 0.1, "log": True},
        "momentum": {"low": 0.8, "high": 0.99, "when": {"optimizer": "sgd"}},
        "eps": {"low": 1e-9, "high": 1e-6, "log": True, "when": {"optimizer": "adamw"}},
        "warmup_epochs": 1,
        "epochs": 2,
        "batch_size": 128,
    },
}


def test_recipes_recorded_before_optimizers_were_a_choice_read_back_and_key_as_then() -> None:
    # The key of the paper's recipe as versions without optimizer and warm-up wrote it:
    # duplicate trials and space fingerprints of existing studies still match.
    before = (
        "batch_size=64;epochs=300;label_smoothing=0.0;lr=0.1;milestones=[0.5, 0.75];"
        "momentum=0.9;nesterov=True;schedule=multistep;weight_decay=0.0001"
    )
    assert TrainingConfig().key == before
    old_record = {
        "lr": 0.05,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "milestones": [0.5, 0.75],
        "epochs": 2,
        "label_smoothing": 0.0,
        "batch_size": 128,
    }
    recipe = TrainingConfig.from_dict(old_record)
    assert (recipe.optimizer, recipe.warmup_epochs) == ("sgd", 0)
    assert recipe.key == (
        "batch_size=128;epochs=2;label_smoothing=0.0;lr=0.05;momentum=0.9;nesterov=True;"
        "schedule=cosine;weight_decay=0.0001"
    )


def test_an_adamw_recipe_round_trips_through_json_and_keys_by_what_it_reads() -> None:
    recipe = TrainingConfig(optimizer="adamw", lr=1e-3, betas=(0.8, 0.99), warmup_epochs=5)
    stored = json.loads(json.dumps(recipe.to_dict()))  # how a trial records it
    assert stored["optimizer"] == "adamw" and stored["betas"] == [0.8, 0.99]
    assert TrainingConfig.from_dict(stored) == recipe
    assert "optimizer=adamw" in recipe.key and "warmup_epochs=5" in recipe.key
    # SGD's fields play no part in AdamW training: two such recipes are one candidate.
    assert recipe.replace(momentum=0.5, nesterov=False).key == recipe.key
    assert recipe.replace(eps=1e-6).key != recipe.key


def test_a_space_searching_the_optimizer_samples_both_with_their_own_fields() -> None:
    space = YamlSearchSpace(BOTH, source="both.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, int] = {"sgd": 0, "adamw": 0}
    for _ in range(16):
        trial = study.ask()
        recipe = space.suggest(trial, DIGITS).training
        study.tell(trial, 0.0)
        assert recipe.optimizer == trial.params["optimizer"]
        seen[recipe.optimizer] += 1
        own, other = ("momentum", "eps") if recipe.optimizer == "sgd" else ("eps", "momentum")
        assert own in trial.params and other not in trial.params  # tuned for its own only
        assert getattr(recipe, own) == trial.params[own]
        assert recipe.warmup_epochs == 1 and recipe.lr == trial.params["lr"]
    assert seen["sgd"] >= 3 and seen["adamw"] >= 3


@pytest.mark.parametrize(
    ("training", "message"),
    [
        (
            {"optimizer": "adamw", "momentum": {"low": 0.8, "high": 0.9}},
            "training.momentum: only the sgd optimizer reads it, and optimizer is fixed at "
            "adamw here; remove it or draw optimizer sgd",
        ),
        (
            {"optimizer": {"choices": ["sgd", "adamw"]}, "nesterov": {"choices": [True, False]}},
            "training.nesterov: is searched, but only sgd reads it and optimizer can be adamw",
        ),
        (
            {"optimizer": {"choices": ["sgd", "adamw"]}, "eps": {"low": 1e-9, "high": 1e-6}},
            "training.eps: is searched, but only adamw reads it and optimizer can be sgd; "
            "add when: {optimizer: adamw}",
        ),
        ({"epochs": 4, "warmup_epochs": 4}, "training.warmup_epochs: can be 4 epochs"),
        ({"optimizer": "adamw", "betas": [0.9]}, "training.betas: [0.9] is not allowed"),
    ],
)
def test_a_field_the_drawn_optimizer_never_reads_is_one_line(
    training: dict[str, Any], message: str
) -> None:
    doc = {**BOTH, "training": training}
    with pytest.raises(Exception, match=r"^both\.yaml: ") as caught:
        YamlSearchSpace(doc, source="both.yaml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow  # a study of two trials, each in its own process: about 17 s
def test_a_search_records_each_trials_optimizer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    space = tmp_path / "both.yaml"
    seeded = {**BOTH, "seeds": [{"optimizer": "sgd"}, {"optimizer": "adamw"}]}
    space.write_text(yaml.safe_dump(seeded))
    out = tmp_path / "out"
    args = search_args("--space", str(space), trials=2, epochs=1, out=out, quiet=True)
    assert main_in_process(capsys, *args).returncode == 0
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'dense-nas.db'}")
    recorded = [trial_attrs(t)["training"] for t in study.trials]
    assert sorted(r["optimizer"] for r in recorded) == ["adamw", "sgd"]
    for trial, training in zip(study.trials, recorded, strict=True):
        assert training["optimizer"] == trial.params["optimizer"]
        assert training["lr"] == trial.params["lr"]
        assert training["warmup_epochs"] == 0  # --epochs 1 leaves no room for a warm-up


def test_an_adamw_trial_retrains_and_writes_a_lightning_config_with_adamw(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    trial = Spec(lr=0.02, optimizer="adamw", warmup_epochs=1, epochs=2)
    built = build_study(tmp_path, "adamw", [trial])

    config = tmp_path / "best.yaml"
    where = ["--storage", built.storage, "--study", built.name]
    assert main_in_process(capsys, "best", *where, "--config", str(config)).returncode == 0
    model = yaml.safe_load(config.read_text())["model"]
    assert (model["optimizer"], model["warmup_epochs"]) == ("adamw", 1)
    assert "momentum" not in model and "nesterov" not in model  # SGD's: not how it trained
    cli = LightningCLI(DenseNetModule, args=["--config", str(config)], run=False)
    configured = cast(dict[str, Any], cli.model.configure_optimizers())
    optimizer = configured["optimizer"]
    assert type(optimizer) is torch.optim.AdamW
    group = optimizer.param_groups[0]
    assert (group["betas"], group["eps"]) == ((0.9, 0.999), 1e-8)
    assert group["lr"] == pytest.approx(0.01)  # the first epoch of the warm-up: half the lr

    (result,) = retrain(built.storage, built.name, epochs=2, out=built.out, accelerator="cpu")
    saved = torch.load(result.checkpoint, weights_only=True)
    assert saved["hyper_parameters"]["optimizer"] == "adamw"
    (state,) = saved["optimizer_states"]
    assert {"betas", "eps"} <= state["param_groups"][0].keys()  # AdamW's state, not SGD's
    assert "momentum" not in state["param_groups"][0]

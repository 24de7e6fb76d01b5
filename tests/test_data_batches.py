"""Batches: on-device augmentation and normalisation, sharding, the Trainer hook, digits."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from dense_nas.data import (
    DATASETS,
    DenseNetDataModule,
    LabelledImages,
    TensorBatches,
    make_datamodule,
)
from dense_nas.data.augment import augment, channel_stats, normalize
from dense_nas.errors import UserInputError

# ---------------------------------------------------------------------------- augmentation


def position_images(n: int, height: int, width: int) -> Tensor:
    """Images whose two channels hold each pixel's row + 1 and column + 1 (0: padding)."""
    rows = torch.arange(1, height + 1)[:, None].expand(height, width)
    cols = torch.arange(1, width + 1)[None, :].expand(height, width)
    return torch.stack([rows, cols]).to(torch.uint8).expand(n, 2, height, width).contiguous()


def crop_of(image: Tensor, padding: int) -> tuple[int, int, bool]:
    """The (row shift, column shift, mirrored) that made ``image`` out of a position image,
    checking that every pixel agrees with it and that the padding reads exactly zero."""
    _, height, width = image.shape
    r = torch.arange(height)[:, None].expand(height, width)
    c = torch.arange(width)[None, :].expand(height, width)
    centre_row, centre_col = (int(v) - 1 for v in image[:, height // 2, width // 2])
    dr = centre_row - height // 2  # the centre is never in the padding
    for mirrored in (False, True):
        source_c = width - 1 - c if mirrored else c
        dc = centre_col - int(source_c[0, width // 2])
        src_r, src_c = r + dr, source_c + dc
        inside = (src_r >= 0) & (src_r < height) & (src_c >= 0) & (src_c < width)
        expected = torch.stack([(src_r + 1) * inside, (src_c + 1) * inside]).float()
        if torch.equal(image, expected) and max(abs(dr), abs(dc)) <= padding:
            return dr, dc, mirrored
    raise AssertionError("an output image is no crop of its zero-padded input")


# (12, 10, 3): one table for every offset; (200, 180, 25): too big, indices per batch.
@pytest.mark.parametrize(("height", "width", "padding"), [(12, 10, 3), (200, 180, 25)])
@pytest.mark.parametrize("flip", [True, False])
def test_each_image_is_a_random_crop_of_its_zero_padded_self(
    height: int, width: int, padding: int, flip: bool
) -> None:
    torch.manual_seed(0)
    images = position_images(64, height, width)
    identity = ([0.0, 0.0], [1 / 255, 1 / 255])  # normalising leaves pixel values as they are
    out = augment(images, *identity, padding=padding, flip=flip)
    assert out.shape == images.shape and out.dtype == torch.float32
    crops = [crop_of(image, padding) for image in out]
    mirrored = [m for _, _, m in crops]
    assert any(mirrored) == flip and not all(mirrored)
    assert len({(dr, dc) for dr, dc, _ in crops}) > len(crops) // 2  # offsets vary per image


def test_without_augmentation_batches_are_only_normalised() -> None:
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    out = augment(images, [0.2, 0.3, 0.4], [0.1, 0.2, 0.3], padding=0, flip=False)
    assert torch.equal(out, normalize(images, [0.2, 0.3, 0.4], [0.1, 0.2, 0.3]))


def test_normalised_batches_have_zero_mean_and_unit_std_per_channel() -> None:
    images = torch.stack([torch.randint(lo, lo + 100, (200, 16, 16)) for lo in (0, 50, 150)], 1)
    images = images.to(torch.uint8)
    mean, std = channel_stats(images)
    reference = images.double().permute(1, 0, 2, 3).reshape(3, -1) / 255
    assert mean == pytest.approx(reference.mean(1).tolist(), abs=1e-12)
    assert std == pytest.approx(reference.std(1, unbiased=False).tolist(), abs=1e-12)
    out = normalize(images, mean, std)
    assert out.dtype == torch.float32
    assert out.mean((0, 2, 3)).tolist() == pytest.approx([0, 0, 0], abs=1e-5)
    assert out.std((0, 2, 3), unbiased=False).tolist() == pytest.approx([1, 1, 1], abs=1e-5)


def test_a_constant_channel_does_not_divide_by_zero() -> None:
    images = torch.full((2, 1, 4, 4), 7, dtype=torch.uint8)
    assert torch.isfinite(normalize(images, *channel_stats(images))).all()


# ---------------------------------------------------------------------------- sharding


def shards(n: int, world_size: int, *, shuffle: bool, batch_size: int = 4) -> list[list[int]]:
    data = LabelledImages(torch.zeros(n, 1, 1, 1, dtype=torch.uint8), torch.arange(n))
    out = []
    for rank in range(world_size):
        loader = TensorBatches(
            data,
            torch.arange(n),
            batch_size=batch_size,
            shuffle=shuffle,
            seed=3,
            rank=rank,
            world_size=world_size,
        )
        batches = [labels.tolist() for _, labels in loader]
        assert len(batches) == len(loader)
        out.append(list(itertools.chain.from_iterable(batches)))
    return out


def test_training_shards_are_disjoint_and_equally_long() -> None:
    rank0, rank1 = shards(35, 2, shuffle=True)
    assert len(rank0) == len(rank1) == 16  # 17 each, incomplete last batch dropped
    assert not set(rank0) & set(rank1)


def test_evaluation_shards_cover_everything_in_the_same_number_of_steps() -> None:
    rank0, rank1, rank2 = shards(10, 3, shuffle=False)
    assert len(rank0) == len(rank1) == len(rank2) == 4
    assert set(rank0) | set(rank1) | set(rank2) == set(range(10))


def test_every_epoch_draws_a_new_order_the_same_on_every_run() -> None:
    data = LabelledImages(torch.zeros(50, 1, 1, 1, dtype=torch.uint8), torch.arange(50))

    def two_epochs() -> list[list[int]]:
        loader = TensorBatches(data, torch.arange(50), batch_size=50, shuffle=True, seed=1)
        return [next(iter(loader))[1].tolist() for _ in range(2)]

    first, second = two_epochs()
    assert first != second and sorted(first) == sorted(second) == list(range(50))
    assert two_epochs() == [first, second]


def test_a_dataset_smaller_than_a_batch_still_trains() -> None:
    (rank0,) = shards(3, 1, shuffle=True, batch_size=8)
    assert sorted(rank0) == [0, 1, 2]


# ---------------------------------------------------------------------------- the Trainer


class Recorder(L.LightningModule):
    """A tiny model that writes down every batch it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(64, 10)
        self.seen: dict[str, list[tuple[Tensor, Tensor]]] = {"train": [], "val": [], "test": []}

    def _record(self, stage: str, batch: tuple[Tensor, Tensor]) -> Tensor:
        images, labels = batch
        self.seen[stage].append((images.clone(), labels.clone()))
        return F.cross_entropy(self.layer(images.flatten(1)), labels)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._record("train", batch)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._record("val", batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._record("test", batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def quiet_trainer(**options: Any) -> L.Trainer:
    defaults: dict[str, Any] = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**defaults, **options})


def raw_batches(dm: DenseNetDataModule, stage: str, n: int) -> list[tuple[Tensor, Tensor]]:
    dm.setup("fit")
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader}[stage]()
    return list(itertools.islice(loader, n))


@pytest.mark.parametrize("augment", [True, False])
def test_trainer_batches_are_normalised_on_transfer_and_augmented_only_in_training(
    augment: bool,
) -> None:
    L.seed_everything(0, verbose=False)
    dm = make_datamodule("digits", batch_size=32, augment=augment, seed=7)
    model = Recorder()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=2)
    trainer.fit(model, dm)
    trainer.test(model, dm, verbose=False)
    twin = make_datamodule("digits", batch_size=32, augment=augment, seed=7)
    for stage, n in (("train", 3), ("val", 2)):
        seen = model.seen[stage][-n:]  # validation also ran in the sanity check before
        for (images, labels), (raw, raw_labels) in zip(
            seen, raw_batches(twin, stage, n), strict=True
        ):
            assert images.dtype == torch.float32 and labels.dtype == torch.int64
            assert torch.equal(labels, raw_labels)
            plain = normalize(raw, dm.mean, dm.std)
            assert torch.equal(images, plain) != (stage == "train" and augment)
    test_images, _ = model.seen["test"][0]
    assert abs(float(test_images.mean())) < 0.5  # normalised: pixel values were 0..255


class ShardRecorder(Recorder):
    """Writes the label and pixel sum of each image it sees to a file per rank."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def on_train_end(self) -> None:
        record = {
            stage: [
                [int(label), float(image.sum())]
                for images, labels in batches
                for image, label in zip(images, labels, strict=True)
            ]
            for stage, batches in self.seen.items()
        }
        Path(self.out, f"rank{self.global_rank}.json").write_text(json.dumps(record))


def test_under_ddp_each_rank_reads_its_own_shard(tmp_path: Path) -> None:
    dm = make_datamodule("digits", batch_size=16, val_size=40, augment=False)
    trainer = quiet_trainer(
        devices=2,
        # Forked ranks start at once; spawned ones import torch, Lightning and this
        # module again (34 s against 0.7 s here). Sharding is the same either way.
        strategy="ddp_fork",
        max_epochs=1,
        limit_train_batches=4,
        num_sanity_val_steps=0,
    )
    trainer.fit(ShardRecorder(str(tmp_path)), dm)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for stage, expected in (("train", 4 * 16), ("val", 20)):
        assert [len(rank[stage]) for rank in ranks] == [expected, expected]
        a, b = ({tuple(x) for x in rank[stage]} for rank in ranks)
        assert not a & b, f"ranks shared {stage} images"


# ---------------------------------------------------------------------------- digits


def test_digits_splits_are_disjoint_repeatable_and_test_never_moves() -> None:
    def splits(seed: int) -> list[set[bytes]]:
        dm = make_datamodule("digits", seed=seed, batch_size=1)
        dm.setup("fit")
        loaders = (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader())
        return [
            {images.numpy().tobytes() + labels.numpy().tobytes() for images, labels in loader}
            for loader in loaders
        ]

    train, val, test = splits(0)
    assert (len(val), len(test)) == (144, 359)
    assert len(train) >= 1290  # a few of the 1,797 digits are exact duplicates
    assert not train & val and not train & test and not val & test
    assert splits(0) == [train, val, test]
    _, val1, test1 = splits(1)
    assert val1 != val and test1 == test


def test_digits_pixels_are_scaled_to_0_255() -> None:
    dm = make_datamodule("digits")
    dm.setup("fit")
    pixels = torch.cat([images for images, _ in dm.val_dataloader()])
    assert pixels.dtype == torch.uint8 and int(pixels.max()) == 255
    levels = set(np.unique(pixels.numpy()).tolist())
    assert levels <= {round(v * 255 / 16) for v in range(17)}


# ---------------------------------------------------------------------------- the factory


@pytest.mark.parametrize("name", DATASETS)
def test_every_listed_name_is_a_dataset(name: str, tmp_path: Path) -> None:
    try:
        dm = make_datamodule(name, tmp_path, download=False)
    except UserInputError as err:  # no files in tmp_path: that is what it must say
        assert str(err).startswith("data_dir:")
    else:
        assert dm.name == name == "digits"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "imagenet"}, "data:"),
        ({"name": "svhn"}, "data_dir:"),
        ({"name": "digits", "val_size": 1.5}, "val_size:"),
        ({"name": "digits", "val_size": True}, "val_size:"),
        ({"name": "digits", "batch_size": 0}, "batch_size:"),
        ({"name": "digits", "image_size": 16}, "image_size/in_memory:"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(UserInputError) as info:
        make_datamodule(**kwargs)
    assert str(info.value).startswith(field) and "\n" not in str(info.value)


def test_a_validation_size_too_large_for_the_data_is_reported_at_setup() -> None:
    dm = make_datamodule("digits", val_size=5000)
    with pytest.raises(UserInputError, match="val_size: 5000 leaves no training"):
        dm.setup("fit")

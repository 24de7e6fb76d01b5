"""The dataset files: official formats written small, read back through make_datamodule.

Every test writes real files (CIFAR binary records in the official .tar.gz layout, SVHN
.mat files, PNG/JPEG folders) into a temporary directory and loads them through the same
code users use. Downloads come from a real HTTP server on localhost; "offline" is a URL on
a closed localhost port.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from dense_nas.data import DenseNetDataModule, StreamingFolderDataModule, make_datamodule
from dense_nas.data import download as dl
from dense_nas.errors import UserInputError

CLOSED_PORT_URL = "http://127.0.0.1:9/"  # the discard port: nothing listens, refused at once
CIFAR10 = "cifar-10-binary.tar.gz"
CIFAR100 = "cifar-100-binary.tar.gz"
CIFAR10_TRAIN = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
CIFAR10_TEST = "cifar-10-batches-bin/test_batch.bin"


# ---------------------------------------------------------------------------- writers


def random_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n)


def cifar_records(images: np.ndarray, *labels: np.ndarray) -> bytes:
    """Official binary records: the label byte(s), then 3,072 channel-major pixel bytes."""
    heads = np.stack(labels, axis=1).astype(np.uint8)
    return np.concatenate([heads, images.reshape(len(images), -1)], axis=1).tobytes()


def write_tar_gz(path: Path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.md5(path.read_bytes()).hexdigest()


class Expected:
    """What a test dataset holds: image bytes -> label, for the pool and the test split."""

    def __init__(self) -> None:
        self.pool: dict[bytes, int] = {}
        self.test: dict[bytes, int] = {}

    def add(self, split: str, images: np.ndarray, labels: np.ndarray) -> None:
        target = self.pool if split == "pool" else self.test
        target.update((img.tobytes(), int(lab)) for img, lab in zip(images, labels, strict=True))


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 15) -> tuple[str, Expected]:
    expected = Expected()
    members = {}
    for i, name in enumerate(CIFAR10_TRAIN):
        images, labels = random_images(per_batch, seed=i)
        members[name] = cifar_records(images, labels)
        expected.add("pool", images, labels)
    images, labels = random_images(n_test, seed=99)
    members[CIFAR10_TEST] = cifar_records(images, labels)
    expected.add("test", images, labels)
    root.mkdir(parents=True, exist_ok=True)
    return write_tar_gz(root / CIFAR10, members), expected


@pytest.fixture
def cifar10_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Expected]:
    """A data directory holding a small CIFAR-10 archive, registered under its own MD5."""
    root = tmp_path / "data"
    md5, expected = write_cifar10(root)
    monkeypatch.setitem(dl.SOURCES, CIFAR10, dl.Source(CLOSED_PORT_URL + CIFAR10, md5))
    return root, expected


def write_svhn(root: Path, name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An official-format SVHN file; returns the images as N x 3 x 32 x 32 and labels 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    digits = rng.integers(0, 10, n)
    digits[:2] = 0  # make sure the "10 means 0" rule is exercised
    y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
    root.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / name, {"X": x, "y": y})
    return x.transpose(3, 2, 0, 1), digits


# ---------------------------------------------------------------------------- readers


def read_split(loader: Any) -> dict[bytes, int]:
    """Raw uint8 images (as loaders yield them, before the device transform) -> labels."""
    seen: dict[bytes, int] = {}
    count = 0
    for images, labels in loader:
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        for image, label in zip(images.numpy(), labels.tolist(), strict=True):
            seen[image.tobytes()] = label
            count += 1
    assert count == len(seen), "a loader repeated an image within one pass"
    return seen


def read_all(dm: DenseNetDataModule) -> tuple[dict[bytes, int], dict[bytes, int], dict[bytes, int]]:
    dm.setup("fit")
    return (
        read_split(dm.train_dataloader()),
        read_split(dm.val_dataloader()),
        read_split(dm.test_dataloader()),
    )


def no_leftovers(root: Path) -> list[str]:
    """Temporary download/unpack files that a finished call must not leave behind."""
    return [p.name for p in root.rglob(".*")]


# ---------------------------------------------------------------------------- CIFAR


def test_cifar10_round_trips_labels_and_pixels_with_disjoint_splits(
    cifar10_dir: tuple[Path, Expected],
) -> None:
    root, expected = cifar10_dir
    dm = make_datamodule("cifar10", root, val_size=20, batch_size=16)
    assert (dm.num_classes, dm.in_channels, dm.image_size, dm.augment) == (10, 3, (32, 32), True)
    train, val, test = read_all(dm)
    assert len(train) == 80 and len(val) == 20
    assert not train.keys() & val.keys()
    assert {**train, **val} == expected.pool  # pixels and labels exactly as written
    assert test == expected.test
    assert dm.mean == pytest.approx((125.3 / 255, 123.0 / 255, 113.9 / 255))  # the paper's
    assert no_leftovers(root) == []


def test_split_is_repeatable_and_moves_only_with_the_seed(
    cifar10_dir: tuple[Path, Expected],
) -> None:
    root, _ = cifar10_dir

    def val_of(seed: int) -> set[bytes]:
        dm = make_datamodule("cifar10", root, val_size=20, seed=seed)
        dm.setup("fit")
        return set(read_split(dm.val_dataloader()))

    assert val_of(0) == val_of(0)
    assert val_of(0) != val_of(1)


def test_full_train_covers_training_and_validation(cifar10_dir: tuple[Path, Expected]) -> None:
    root, expected = cifar10_dir
    dm = make_datamodule("cifar10", root, val_size=20, batch_size=20, full_train=True)
    train, val, _ = read_all(dm)
    assert train == expected.pool
    assert len(val) == 20  # validation still there, for monitoring


def test_cifar100_reads_the_fine_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, fine = random_images(30, seed=5)
    fine = fine * 9 + 7  # spread over 0..88, unlike the coarse labels
    coarse = np.full(30, 3)
    test_images, test_fine = random_images(6, seed=6)
    md5 = write_tar_gz(
        tmp_path / CIFAR100,
        {
            "cifar-100-binary/train.bin": cifar_records(images, coarse, fine),
            "cifar-100-binary/test.bin": cifar_records(test_images, np.zeros(6), test_fine),
        },
    )
    monkeypatch.setitem(dl.SOURCES, CIFAR100, dl.Source(CLOSED_PORT_URL + CIFAR100, md5))
    dm = make_datamodule("cifar100", tmp_path, val_size=0.2, batch_size=8)
    assert dm.num_classes == 100
    train, val, test = read_all(dm)
    expected = Expected()
    expected.add("pool", images, fine)
    expected.add("test", test_images, test_fine)
    assert len(val) == 6 and not train.keys() & val.keys()
    assert set(train.items()) | set(val.items()) <= set(expected.pool.items())
    assert test == expected.test


def test_unpacked_files_are_used_without_the_archive(cifar10_dir: tuple[Path, Expected]) -> None:
    root, expected = cifar10_dir
    make_datamodule("cifar10", root, val_size=20)
    (root / CIFAR10).write_bytes(b"not an archive any more")  # never read again
    dm = make_datamodule("cifar10", root, val_size=20, batch_size=16, download=False)
    train, val, _ = read_all(dm)
    assert {**train, **val} == expected.pool


def test_a_damaged_unpacked_file_is_reported(cifar10_dir: tuple[Path, Expected]) -> None:
    root, _ = cifar10_dir
    dm = make_datamodule("cifar10", root, val_size=20)
    with (root / CIFAR10_TRAIN[2]).open("ab") as file:
        file.write(b"\0" * 100)
    with pytest.raises(UserInputError, match=r"data_batch_3\.bin is not a CIFAR binary file"):
        dm.setup("fit")


# ---------------------------------------------------------------------------- checksums


def test_archive_with_a_wrong_checksum_is_rejected_and_nothing_unpacked(
    cifar10_dir: tuple[Path, Expected], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = cifar10_dir
    monkeypatch.setitem(dl.SOURCES, CIFAR10, dl.Source(CLOSED_PORT_URL, "0" * 32))
    with pytest.raises(UserInputError, match="fails its MD5 check") as info:
        make_datamodule("cifar10", root)
    assert "\n" not in str(info.value) and str(root / CIFAR10) in str(info.value)
    assert sorted(p.name for p in root.iterdir()) == [CIFAR10]


def test_truncated_archive_leaves_no_half_written_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    write_cifar10(root, per_batch=200)
    archive = root / CIFAR10
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    # Register the truncated file's own MD5, so the unpacking itself meets the damage.
    md5 = dl.md5sum(archive)
    monkeypatch.setitem(dl.SOURCES, CIFAR10, dl.Source(CLOSED_PORT_URL, md5))
    with pytest.raises(UserInputError, match="is not a valid archive") as info:
        make_datamodule("cifar10", root)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in root.iterdir()) == [CIFAR10]


def test_the_official_checksums_are_the_published_ones() -> None:
    published = {
        CIFAR10: "c32a1d4ab5d03f1284b67883e8d87530",
        CIFAR100: "03b5dce01913d631647c71ecec9e9cb8",
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    }
    assert {name: source.md5 for name, source in dl.SOURCES.items()} == published


# ---------------------------------------------------------------------------- downloads


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on localhost serving the files put in the returned directory."""
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(_QuietHandler, directory=str(served))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
        httpd.shutdown()


def test_missing_archive_is_downloaded_verified_and_unpacked(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = server
    md5, expected = write_cifar10(served)
    monkeypatch.setitem(dl.SOURCES, CIFAR10, dl.Source(url + CIFAR10, md5))
    root = tmp_path / "fresh" / "dir"
    dm = make_datamodule("cifar10", root, val_size=20, batch_size=16)
    assert dl.md5sum(root / CIFAR10) == md5
    train, val, test = read_all(dm)
    assert {**train, **val} == expected.pool and test == expected.test
    assert no_leftovers(root) == []


def test_download_with_a_wrong_checksum_keeps_nothing(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = server
    write_cifar10(served)
    monkeypatch.setitem(dl.SOURCES, CIFAR10, dl.Source(url + CIFAR10, "f" * 32))
    root = tmp_path / "data"
    with pytest.raises(UserInputError, match="fails its MD5 check"):
        make_datamodule("cifar10", root)
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_offline_with_no_files_names_the_directory_and_the_files(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for file, source in list(dl.SOURCES.items()):
        monkeypatch.setitem(dl.SOURCES, file, dl.Source(CLOSED_PORT_URL + file, source.md5))
    with pytest.raises(UserInputError) as info:
        make_datamodule(name, tmp_path)
    message = str(info.value)
    assert "\n" not in message and message.startswith("data_dir:")
    assert str(tmp_path) in message and "could not be downloaded" in message
    expected_file = {"cifar10": CIFAR10, "cifar100": CIFAR100, "svhn": "train_32x32.mat"}[name]
    assert expected_file in message
    assert list(tmp_path.iterdir()) == []


def test_no_download_allowed_and_no_files(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"lacks cifar-10-binary\.tar\.gz .*data_batch_1\.bin"):
        make_datamodule("cifar10", tmp_path, download=False)


# ---------------------------------------------------------------------------- SVHN


def test_svhn_round_trips_and_maps_label_10_to_digit_0(tmp_path: Path) -> None:
    pool_images, pool_digits = write_svhn(tmp_path, "train_32x32.mat", 40, seed=1)
    test_images, test_digits = write_svhn(tmp_path, "test_32x32.mat", 12, seed=2)
    dm = make_datamodule("svhn", tmp_path, batch_size=9, download=False)
    assert (dm.num_classes, dm.augment) == (10, False)  # the paper: no augmentation
    train, val, test = read_all(dm)
    expected = Expected()
    expected.add("pool", pool_images, pool_digits)
    expected.add("test", test_images, test_digits)
    assert len(val) == 4  # 10% by default
    assert not train.keys() & val.keys()
    assert set(train.items()) | set(val.items()) <= set(expected.pool.items())
    assert test == expected.test
    assert 0 in test.values()
    # Normalisation comes from the training split, not from constants.
    train_pixels = np.stack([np.frombuffer(k, np.uint8) for k in train]).reshape(-1, 3, 1024)
    assert dm.mean == pytest.approx(tuple(train_pixels.mean(axis=(0, 2)) / 255), abs=1e-9)


def test_svhn_is_downloaded_and_checked(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = server
    for name, seed in (("train_32x32.mat", 1), ("test_32x32.mat", 2)):
        write_svhn(served, name, 20, seed)
        md5 = dl.md5sum(served / name)
        monkeypatch.setitem(dl.SOURCES, name, dl.Source(url + name, md5))
    root = tmp_path / "data"
    make_datamodule("svhn", root)
    for name in ("train_32x32.mat", "test_32x32.mat"):
        assert (root / name).read_bytes() == (served / name).read_bytes()
    assert no_leftovers(root) == []


def test_a_corrupt_svhn_file_is_reported(tmp_path: Path) -> None:
    write_svhn(tmp_path, "train_32x32.mat", 20, seed=1)
    write_svhn(tmp_path, "test_32x32.mat", 5, seed=2)
    path = tmp_path / "train_32x32.mat"
    path.write_bytes(path.read_bytes()[:1000])
    dm = make_datamodule("svhn", tmp_path)
    with pytest.raises(UserInputError, match=r"is not an SVHN \.mat file") as info:
        dm.setup("fit")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------- folders


def write_image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_folder(root: Path, classes: dict[str, int], seed: int) -> dict[bytes, int]:
    """PNG images at 16x16 (the size the tests load at): pixels must survive exactly."""
    rng = np.random.default_rng(seed)
    written = {}
    for label, (name, count) in enumerate(sorted(classes.items())):
        for i in range(count):
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            write_image(root / name / f"{i}.png", pixels)
            written[pixels.transpose(2, 0, 1).tobytes()] = label
    return written


@pytest.mark.parametrize("in_memory", [True, False])
def test_folder_with_train_and_test_round_trips(tmp_path: Path, in_memory: bool) -> None:
    pool = write_folder(tmp_path / "train", {"cat": 12, "dog": 8, "eel": 10}, seed=1)
    test = write_folder(tmp_path / "test", {"cat": 3, "eel": 2}, seed=2)
    dm = make_datamodule(
        "folder", tmp_path, image_size=16, in_memory=in_memory, num_workers=0, batch_size=6
    )
    assert (dm.num_classes, dm.in_channels, dm.image_size, dm.augment) == (3, 3, (16, 16), True)
    train, val, test_read = read_all(dm)
    assert len(val) == 3 and not train.keys() & val.keys()
    assert set(train.items()) | set(val.items()) <= set(pool.items())
    # "eel" is class 2 in train/; its test images must carry 2 although test/ lacks "dog".
    assert test_read == {k: {0: 0, 1: 2}[v] for k, v in test.items()}


def test_streamed_folder_reads_through_worker_processes(tmp_path: Path) -> None:
    pool = write_folder(tmp_path, {"a": 10, "b": 10}, seed=3)
    dm = make_datamodule("folder", tmp_path, image_size=16, in_memory=False, num_workers=1)
    assert isinstance(dm, StreamingFolderDataModule)
    train, val, test = read_all(dm)
    assert {**train, **val, **test} == pool  # flat layout: 20% held out as test
    assert len(test) == 4 and not (train.keys() | val.keys()) & test.keys()


def test_folder_resizes_any_image_to_the_fixed_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_image(tmp_path / "wide" / "a.jpg", rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    write_image(tmp_path / "wide" / "b.jpeg", rng.integers(0, 256, (60, 20, 3), dtype=np.uint8))
    write_image(tmp_path / "odd" / "c.png", rng.integers(0, 256, (9, 9), dtype=np.uint8))
    write_image(tmp_path / "odd" / "d.PNG", rng.integers(0, 256, (12, 7, 4), dtype=np.uint8))
    dm = make_datamodule("folder", tmp_path, image_size=24, val_size=1, num_workers=0)
    dm.setup("fit")
    images, _ = next(iter(dm.train_dataloader()))
    assert images.shape[1:] == (3, 24, 24)  # grey and RGBA images come out as RGB too


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "has no class folders"),
        ({"cat/readme.txt": b"no images"}, r"cat holds no \.jpg/\.jpeg/\.png images"),
        ({"train/cat/a.png": None, "test/dog/b.png": None}, "has classes missing from"),
    ],
)
def test_bad_folders_raise_one_line(tmp_path: Path, layout: dict[str, Any], message: str) -> None:
    for name, content in layout.items():
        path = tmp_path / name
        if content is None:
            write_image(path, np.zeros((4, 4, 3), np.uint8))
        else:
            path.parent.mkdir(parents=True)
            path.write_bytes(content)
    with pytest.raises(UserInputError, match=message) as info:
        make_datamodule("folder", tmp_path)
    assert "\n" not in str(info.value)


def test_an_unreadable_image_is_named_before_the_datamodule_is_made(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": 5, "b": 5}, seed=4)
    (tmp_path / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserInputError, match=r"broken\.jpg is not a readable image"):
        make_datamodule("folder", tmp_path, num_workers=2)

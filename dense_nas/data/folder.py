"""ImageNet-style folders of JPEG/PNG images, one subfolder per class.

Two layouts are understood:

* ``DIR/train/<class>/*.jpg`` with ``DIR/test/<class>/`` (or ImageNet's ``DIR/val/``,
  which then serves as the test set, since validation is held out of ``train/``);
* ``DIR/<class>/*.jpg``: a fixed 20% is held out as test set, as for digits.

Every image is converted to RGB and resized to a fixed square size (shorter side scaled,
then centre-cropped) when it is decoded. Before the datamodule is made, up to
:data:`CHECKED_IMAGES` files spread over the dataset (all of a small one) are decoded, so
a folder of files that are not images is refused before any study or training starts. A dataset whose decoded pixels fit in
:data:`IN_MEMORY_BYTES` is decoded once into memory and served like CIFAR; a larger one
streams through a ``DataLoader`` with worker processes. Either way the batches are
augmented (random crop after zero padding, horizontal flip) and normalised on the device.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("cat", "dog"):
    ...     (root / name).mkdir()
    ...     Image.new("RGB", (40, 30), name == "dog").save(root / name / "1.png")
    >>> dm = folder_datamodule(root, image_size=16)
    >>> dm.classes, dm.num_classes, dm.image_size
    (('cat', 'dog'), 2, (16, 16))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from dense_nas.data._base import check_positive, hold_out_test
from dense_nas.data.augment import channel_stats
from dense_nas.data.tensor_data import LabelledImages, TensorDataModule
from dense_nas.errors import UserInputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
#: Side of the square images are resized to: CIFAR's, so the CIFAR-stem spaces fit.
DEFAULT_IMAGE_SIZE = 32
#: Decoded pixels (training pool plus test set) up to this size are held in memory.
IN_MEMORY_BYTES = 2 * 1024**3
#: Training images decoded to estimate the normalisation of a streamed dataset.
STATS_SAMPLE = 1000
#: Files decoded up front, spread evenly over the dataset, to refuse non-images early.
CHECKED_IMAGES = 256
_LAYOUT_HINT = "put images in DIR/<class>/*.jpg, or DIR/train/<class>/ and DIR/test/<class>/"


@dataclass(frozen=True)
class FolderIndex:
    """The image files of a folder dataset and their class numbers.

    Attributes:
        classes: class folder names, sorted; a label is an index into this.
        pool_files: training images (validation is held out of these).
        pool_labels: their labels.
        test_files: test images.
        test_labels: their labels.
    """

    classes: tuple[str, ...]
    pool_files: tuple[Path, ...]
    pool_labels: tuple[int, ...]
    test_files: tuple[Path, ...]
    test_labels: tuple[int, ...]


def _class_images(
    root: Path, names: Sequence[str], classes: Sequence[str]
) -> tuple[list[Path], list[int]]:
    """Image files under ``root/<name>`` for each name, labelled by position in ``classes``."""
    files: list[Path] = []
    labels: list[int] = []
    for name in names:
        images = sorted(
            path
            for path in (root / name).iterdir()
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        )
        if not images:
            raise UserInputError(
                f"{root / name} holds no .jpg/.jpeg/.png images; add some or remove the folder",
                param="data_dir",
            )
        files += images
        labels += [classes.index(name)] * len(images)
    return files, labels


def _class_names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_image_folder(root: Path) -> FolderIndex:
    """Find the classes and image files of a folder dataset (no image is opened).

    Raises:
        UserInputError: the directory is missing, has no class folders, has an empty
            class folder, or its test set names a class the training set lacks.
    """
    if not root.is_dir():
        raise UserInputError(f"{root} is not a directory; {_LAYOUT_HINT}", param="data_dir")
    pool_root, test_root = root, None
    if (root / "train").is_dir():
        pool_root = root / "train"
        test_root = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    classes = _class_names(pool_root)
    if not classes:
        raise UserInputError(f"{pool_root} has no class folders; {_LAYOUT_HINT}", param="data_dir")
    files, labels = _class_images(pool_root, classes, classes)
    if test_root is None:
        pool, test = (part.tolist() for part in hold_out_test(len(files)))
        pool_files, test_files = [files[i] for i in pool], [files[i] for i in test]
        pool_labels, test_labels = [labels[i] for i in pool], [labels[i] for i in test]
    else:
        test_classes = _class_names(test_root)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise UserInputError(
                f"{test_root} has classes missing from {pool_root}: "
                f"{', '.join(unknown)}; both need the same class folders",
                param="data_dir",
            )
        pool_files, pool_labels = files, labels
        test_files, test_labels = _class_images(test_root, test_classes, classes)
    return FolderIndex(
        tuple(classes),
        tuple(pool_files),
        tuple(pool_labels),
        tuple(test_files),
        tuple(test_labels),
    )


def load_image(path: Path, size: int) -> Tensor:
    """Decode an image file to a uint8 ``(3, size, size)`` tensor.

    The shorter side is scaled to ``size`` and the centre cropped, so no image is
    distorted.

    Raises:
        UserInputError: the file is not a readable image.
    """
    try:
        with Image.open(path) as image:
            square = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError) as err:
        raise UserInputError(
            f"{path} is not a readable image ({err}); replace or delete it", param="data_dir"
        ) from err
    return torch.from_numpy(np.asarray(square).copy()).permute(2, 0, 1).contiguous()


def check_images(index: FolderIndex, size: int, workers: int = 1) -> None:
    """Decode up to :data:`CHECKED_IMAGES` files spread evenly over the dataset (every
    file of a small one).

    Raises:
        UserInputError: the first file that is not a readable image, named.
    """
    files = index.pool_files + index.test_files
    count = min(len(files), CHECKED_IMAGES)
    sample = [files[i * len(files) // count] for i in range(count)]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for _ in pool.map(lambda path: load_image(path, size), sample):
            pass  # map raises the first file's error, in file order


class ImageFiles(Dataset[tuple[Tensor, int]]):
    """Per-image reading for the streamed path: decode and resize, nothing else.

    Augmentation and normalisation happen later, on the device, for the whole batch.
    """

    def __init__(self, files: Sequence[Path], labels: Sequence[int], size: int) -> None:
        self.files = files
        self.labels = labels
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return load_image(self.files[index], self.size), self.labels[index]


def default_workers() -> int:
    """One loader worker per CPU core, at most 8."""
    return min(8, os.cpu_count() or 1)


class FolderDataModule(TensorDataModule):
    """A folder dataset decoded once into memory.

    Args:
        index: the files, from :func:`scan_image_folder`.
        image_size: side of the square every image is resized to.
        num_workers: threads that decode the images (``None``: one per core, at most 8).
        **kwargs: the shared options of :class:`~dense_nas.data.DenseNetDataModule`.
    """

    name = "folder"
    in_channels = 3
    flip = True
    default_augment = True

    def __init__(
        self,
        index: FolderIndex,
        *,
        image_size: int = DEFAULT_IMAGE_SIZE,
        num_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_positive("image_size", image_size)
        self.index = index
        self.classes = index.classes
        self.num_classes = len(index.classes)
        self.image_size = (image_size, image_size)
        self.crop_padding = image_size // 8  # CIFAR's 4 pixels at 32
        self.num_workers = default_workers() if num_workers is None else num_workers

    def _decode(self, files: Sequence[Path], labels: Sequence[int]) -> LabelledImages:
        # Threads, not processes: Pillow decodes and resizes without holding the GIL, and
        # a bad file's UserInputError reaches the caller as it was raised.
        size = self.image_size[0]
        with ThreadPoolExecutor(max(1, self.num_workers)) as pool:
            images = list(pool.map(lambda path: load_image(path, size), files))
        return LabelledImages(torch.stack(images), torch.tensor(labels, dtype=torch.long))

    def _load_pool(self) -> LabelledImages:
        return self._decode(self.index.pool_files, self.index.pool_labels)

    def _load_test(self) -> LabelledImages:
        return self._decode(self.index.test_files, self.index.test_labels)


class StreamingFolderDataModule(FolderDataModule):
    """A folder dataset too large for memory, read through DataLoader worker processes.

    The workers only decode and resize; batches are augmented and normalised on the
    device as for in-memory data. Under DDP Lightning gives each rank its shard through a
    DistributedSampler. Normalisation is estimated from :data:`STATS_SAMPLE` training
    images.

    Args:
        index: the files, from :func:`scan_image_folder`.
        image_size: side of the square every image is resized to.
        num_workers: DataLoader worker processes (``None``: one per core, at most 8).
        **kwargs: the shared options of :class:`~dense_nas.data.DenseNetDataModule`.
    """

    def setup(self, stage: str | None = None) -> None:
        """Split off validation and estimate the normalisation from a fixed sample."""
        if self.mean:
            return
        self._train_idx, self._val_idx = self._split(len(self.index.pool_files))
        order = torch.randperm(len(self._train_idx), generator=torch.Generator().manual_seed(0))
        chosen = self._train_idx[order[:STATS_SAMPLE]].tolist()
        files = [self.index.pool_files[i] for i in chosen]
        self.mean, self.std = channel_stats(self._decode(files, [0] * len(files)).images)

    def _loader(self, files: ImageFiles, indices: Tensor, *, shuffle: bool) -> DataLoader[Any]:
        return DataLoader(
            Subset(files, indices.tolist()),
            batch_size=self.batch_size,
            shuffle=shuffle,
            # As in memory: drop the incomplete last training batch unless it is the only one.
            drop_last=shuffle and len(indices) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self._device().type == "cuda",
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )

    def _pool_files(self) -> ImageFiles:
        self.setup()
        return ImageFiles(self.index.pool_files, self.index.pool_labels, self.image_size[0])

    def train_dataloader(self) -> DataLoader[Any]:  # type: ignore[override]
        """Shuffled training batches (training plus validation images with ``full_train``)."""
        files = self._pool_files()
        return self._loader(files, self._fit_indices(), shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:  # type: ignore[override]
        """Validation batches in a fixed order."""
        files = self._pool_files()
        return self._loader(files, self._val_idx, shuffle=False)

    def test_dataloader(self) -> DataLoader[Any]:  # type: ignore[override]
        """Test batches in a fixed order."""
        self.setup()
        files = ImageFiles(self.index.test_files, self.index.test_labels, self.image_size[0])
        return self._loader(files, torch.arange(len(files)), shuffle=False)


def folder_datamodule(
    data_dir: str | Path, *, in_memory: bool | None = None, **kwargs: Any
) -> FolderDataModule:
    """The folder datamodule for ``data_dir``: in memory when it fits, else streamed.

    Args:
        data_dir: the dataset's root folder (layouts in the module docstring).
        in_memory: force one path; ``None`` decides by :data:`IN_MEMORY_BYTES`.
        **kwargs: ``image_size``, ``num_workers`` and the shared options of
            :class:`~dense_nas.data.DenseNetDataModule`.

    Raises:
        UserInputError: a bad layout (see :func:`scan_image_folder`), or a file that is
            not a readable image among those :func:`check_images` decodes.
    """
    index = scan_image_folder(Path(data_dir))
    side = kwargs.get("image_size", DEFAULT_IMAGE_SIZE)
    if in_memory is None:
        n_images = len(index.pool_files) + len(index.test_files)
        in_memory = n_images * 3 * side * side <= IN_MEMORY_BYTES
    kind = FolderDataModule if in_memory else StreamingFolderDataModule
    datamodule = kind(index, **kwargs)
    check_images(index, datamodule.image_size[0], datamodule.num_workers)
    return datamodule

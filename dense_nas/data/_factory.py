"""One factory for every dataset, by the names the CLI's ``--data`` accepts."""

from __future__ import annotations

from pathlib import Path

from dense_nas.data._base import DenseNetDataModule
from dense_nas.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from dense_nas.data.digits import DigitsDataModule
from dense_nas.data.folder import folder_datamodule
from dense_nas.data.svhn import SVHNDataModule
from dense_nas.data.tensor_data import FileDataModule
from dense_nas.errors import UserInputError

#: Names :func:`make_datamodule` accepts; ``digits`` (embedded, no download) is the default.
DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "svhn", "folder")

#: One line about each of :data:`DATASETS`, as ``dense-nas data`` lists them.
DESCRIPTIONS: dict[str, str] = {
    "digits": "scikit-learn's 8x8 handwritten digits, embedded: no download (the default)",
    "cifar10": "CIFAR-10, 32x32 colour, 10 classes (downloaded to --data-dir)",
    "cifar100": "CIFAR-100, 32x32 colour, 100 classes (downloaded to --data-dir)",
    "svhn": "SVHN street-view digits, 32x32 colour (downloaded to --data-dir)",
    "folder": "your JPEG/PNG images in --data-dir, one subfolder per class",
}

_OFFICIAL: dict[str, type[FileDataModule]] = {
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "svhn": SVHNDataModule,
}

#: The datasets of :data:`DATASETS` that have a DataModule class of their own (``folder``
#: is built from a scan of its directory), by name.
DATAMODULE_CLASSES: dict[str, type[DenseNetDataModule]] = {"digits": DigitsDataModule, **_OFFICIAL}


def make_datamodule(
    name: str = "digits",
    data_dir: str | Path | None = None,
    *,
    batch_size: int = 64,
    val_size: int | float | None = None,
    seed: int = 0,
    augment: bool | None = None,
    full_train: bool = False,
    num_workers: int | None = None,
    download: bool = True,
    image_size: int | None = None,
    in_memory: bool | None = None,
) -> DenseNetDataModule:
    """The datamodule called ``name``, its files checked (and fetched) before it returns.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: where the dataset's files are, or go when downloaded; ``digits`` needs
            none (and ignores it).
        batch_size: images per batch.
        val_size: validation images held out of the training set, as a count or a
            fraction; ``None``: 5,000 for CIFAR (as in the paper), 10% elsewhere.
        seed: fixes the validation split and the order of the training batches.
        augment: augment training batches; ``None``: the dataset's default (CIFAR and
            folders yes, SVHN no as in the paper, digits by one-pixel shifts).
        full_train: train on training plus validation images (the final retraining);
            ``val_dataloader`` still serves the validation split.
        num_workers: image-decoding workers for ``folder`` (``None``: one per core, at
            most 8); the in-memory datasets need none.
        download: fetch missing official files (MD5-checked); offline, a missing file is
            an error naming the directory and the files expected.
        image_size: ``folder`` only: side of the square images are resized to (32).
        in_memory: ``folder`` only: force decoding into memory (``True``) or streaming
            (``False``); ``None`` decides by size.

    Returns:
        A :class:`DenseNetDataModule`; ``num_classes``, ``in_channels``, ``image_size``
        and ``augment`` are set already, the pixels are read by ``setup()``.

    Raises:
        UserInputError: any bad input, with one line naming the field and the fix:
            unknown name, missing files offline, a corrupt archive, a bad option.

    Example:
        >>> dm = make_datamodule("digits", batch_size=32, seed=1)
        >>> dm.name, dm.num_classes, dm.in_channels, dm.image_size
        ('digits', 10, 1, (8, 8))
        >>> try:
        ...     make_datamodule("mnist")
        ... except ValueError as err:
        ...     print(err)
        data: unknown dataset 'mnist'; choose one of digits, cifar10, cifar100, svhn, folder
    """
    if name not in DATASETS:
        raise UserInputError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}", param="data"
        )
    if name != "folder" and (image_size is not None or in_memory is not None):
        raise UserInputError(
            f"image_size/in_memory: only the folder dataset takes them; drop them for {name}"
        )
    shared = {
        "batch_size": batch_size,
        "val_size": val_size,
        "seed": seed,
        "augment": augment,
        "full_train": full_train,
    }
    if name == "digits":
        return DigitsDataModule(**shared)  # type: ignore[arg-type]
    if data_dir is None:
        raise UserInputError(
            f"{name} reads its files from a directory; pass one (missing "
            "official files are downloaded there)",
            param="data_dir",
        )
    if name == "folder":
        options = {"image_size": image_size, "num_workers": num_workers}
        given = {key: value for key, value in options.items() if value is not None}
        return folder_datamodule(data_dir, in_memory=in_memory, **given, **shared)
    datamodule = _OFFICIAL[name](data_dir, download=download, **shared)
    datamodule.prepare_data()
    return datamodule

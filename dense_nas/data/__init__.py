"""LightningDataModules for DenseNet search: digits, CIFAR-10/100, SVHN, image folders, yours.

Every datamodule offers train, validation and test loaders; validation is held out of
the training set with a fixed seed, search reads only validation, and the test set is
for the final retraining. Datasets that fit live in memory as uint8 tensors on the
training device, and batches are normalised and augmented there as whole batches. A
user's own ``LightningDataModule`` (``package.module:Name`` or a plugin's entry point in
``dense_nas.datamodules``) is built by the same :func:`build_datamodule`.

Example:
    >>> from dense_nas.data import DATASETS, make_datamodule
    >>> DATASETS
    ('digits', 'cifar10', 'cifar100', 'svhn', 'folder')
    >>> dm = make_datamodule("digits")
    >>> dm.setup("fit")
    >>> images, labels = next(iter(dm.train_dataloader()))
    >>> images.dtype, images.shape, labels.dtype
    (torch.uint8, torch.Size([64, 1, 8, 8]), torch.int64)
"""

from dense_nas.data._base import DenseNetDataModule
from dense_nas.data._build import build_datamodule
from dense_nas.data._factory import DATAMODULE_CLASSES, DATASETS, make_datamodule
from dense_nas.data._user import ENTRY_POINT_GROUP, DataInfo, list_datasets, user_datamodule
from dense_nas.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from dense_nas.data.digits import DigitsDataModule
from dense_nas.data.facts import DataFacts, data_facts
from dense_nas.data.folder import FolderDataModule, StreamingFolderDataModule
from dense_nas.data.svhn import SVHNDataModule
from dense_nas.data.tensor_data import LabelledImages, TensorBatches, TensorDataModule

__all__ = [
    "DATAMODULE_CLASSES",
    "DATASETS",
    "ENTRY_POINT_GROUP",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DataFacts",
    "DataInfo",
    "DenseNetDataModule",
    "DigitsDataModule",
    "FolderDataModule",
    "LabelledImages",
    "SVHNDataModule",
    "StreamingFolderDataModule",
    "TensorBatches",
    "TensorDataModule",
    "build_datamodule",
    "data_facts",
    "list_datasets",
    "make_datamodule",
    "user_datamodule",
]

"""The one way every process builds a study's datamodule: built-in or the user's own.

``search`` checks the data with it, every trial process and DDP rank rebuilds the data
with it from the trial's spec, and ``retrain`` from the study's recorded attributes.

Example:
    >>> build_datamodule("digits").name
    'digits'
    >>> build_datamodule("dense_nas.data:DigitsDataModule", data_args={"seed": 3}).seed
    3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from dense_nas.data._factory import make_datamodule
from dense_nas.data._user import is_builtin, user_datamodule
from dense_nas.errors import UserInputError


def build_datamodule(
    data: str,
    data_dir: str | Path | None = None,
    data_args: dict[str, Any] | None = None,
    *,
    batch_size: int = 64,
    val_size: int | float | None = None,
    seed: int = 0,
    full_train: bool = False,
) -> L.LightningDataModule:
    """The datamodule ``data`` names.

    Args:
        data: a built-in dataset (:data:`~dense_nas.data.DATASETS`), a plugin's entry
            point name in ``dense_nas.datamodules``, or ``package.module:Name``.
        data_dir: built-in datasets only: where their files are.
        data_args: user datamodules only: keyword arguments of ``Name``.
        batch_size: images per batch; a user datamodule gets it when it takes a
            ``batch_size`` argument that ``data_args`` leaves unset.
        val_size, seed, full_train: built-in datasets only (see
            :func:`~dense_nas.data.make_datamodule`); a user datamodule owns its split.

    Raises:
        UserInputError: one line naming the flag and the fix.
    """
    if is_builtin(data):
        if data_args:
            raise UserInputError(
                f"the built-in dataset {data} takes no arguments; use --data-dir and "
                "--val-size, or pass your own datamodule as --data package.module:Name",
                param="data_args",
            )
        return make_datamodule(
            data,
            data_dir,
            batch_size=batch_size,
            val_size=val_size,
            seed=seed,
            full_train=full_train,
        )
    if data_dir is not None:
        raise UserInputError(
            f"{data!r} is your own datamodule, which reads its own files; pass its "
            "directory as a --data-arg (e.g. --data-arg root=DIR)",
            param="data_dir",
        )
    if val_size is not None:
        raise UserInputError(
            f"{data!r} is your own datamodule, which holds out its own validation data; "
            "drop --val-size (pass the split as a --data-arg if it takes one)",
            param="val_size",
        )
    return user_datamodule(data, data_args or {}, batch_size=batch_size)

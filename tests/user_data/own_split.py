"""own_split.py: a user's datamodule built on dense-nas's own (a DenseNetDataModule subclass)."""

from __future__ import annotations

from dense_nas.data.digits import DigitsDataModule


class QuarterValidation(DigitsDataModule):
    """The digits with a quarter of the images held out: the user's split, not --val-size."""

    def __init__(self, batch_size: int = 64) -> None:
        super().__init__(batch_size=batch_size, val_size=0.25)

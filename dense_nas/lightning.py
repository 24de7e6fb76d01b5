"""``python -m dense_nas.lightning``: LightningCLI over :class:`~dense_nas.DenseNetModule`.

The subcommands are LightningCLI's own (``fit``, ``validate``, ``test``, ``predict``);
``--config`` takes the file ``dense-nas best --config PATH`` writes, or any LightningCLI
config whose ``model:`` holds DenseNetModule's arguments. The ``data:`` section names any
LightningDataModule as ``class_path``/``init_args``. A script of your own that calls
``LightningCLI(DenseNetModule)`` reads the same files.

Example:
    >>> cli = main(["--model.config", "{growth_rate: 4, block_layers: [1], in_channels: 1}",
    ...             "--model.epochs", "1", "--trainer.logger", "false"], run=False)
    >>> cli.model.config.growth_rate, cli.trainer.max_epochs
    (4, None)
"""

from __future__ import annotations

import sys
from typing import Any

from dense_nas.model.module import DenseNetModule


def main(args: list[str] | None = None, *, run: bool = True) -> Any:
    """Run LightningCLI with DenseNetModule as the model (``args``: ``sys.argv[1:]``).

    Returns the ``LightningCLI`` object (its ``trainer``, ``model`` and ``datamodule``).
    """
    from lightning.pytorch.cli import LightningCLI

    return LightningCLI(
        DenseNetModule,
        args=args,
        run=run,
        # A second fit in the same folder rewrites the saved config rather than failing.
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":
    main(sys.argv[1:])

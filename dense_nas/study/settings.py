"""What a search is asked to do: one frozen, checked settings object.

:func:`~dense_nas.study.search` builds it from its keyword arguments and the CLI from its
flags (whose destinations are these field names); everything below takes it as it is.
Adding an option means one field here, one flag in ``cli/search.py`` and one keyword of
``search()``.

Example:
    >>> SearchSettings(n_trials=4, epochs=1).n_trials
    4
    >>> SearchSettings(n_trials=0)
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: n_trials: must be a positive integer, got 0
    >>> SearchSettings(retries=-1)
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: retries: must be a whole number from 0 to 100, got -1
    >>> SearchSettings(study_name="runs/a")
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: study_name: 'runs/a' holds '/'; file names are made from the study name: use letters, digits, '-', '_' or '.'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dense_nas._plugins import import_path, plain_arguments
from dense_nas.errors import UserInputError
from dense_nas.model.graphs import check_compile_choice

if TYPE_CHECKING:
    from dense_nas.space import SearchSpace

#: Longest study name, in UTF-8 bytes: checkpoint file names start with it.
MAX_STUDY_NAME = 128
#: Most retries of one trial (``retries``): enough for any flaky machine, not a loop.
MAX_RETRIES = 100
#: Longest heartbeat, in seconds (a day): waits longer than the clock's range would crash.
MAX_HEARTBEAT = 86_400.0


@dataclass(frozen=True)
class SearchSettings:
    """The options of one search; see :func:`~dense_nas.study.search` for each one."""

    space: str | SearchSpace = "digits-tiny"
    #: a name or ``module:Name``; a class or function given here becomes its import path
    data: str | Callable[..., Any] = "digits"
    data_args: Mapping[str, Any] = field(default_factory=dict)
    data_dir: str | Path | None = None
    val_size: int | float | None = None
    n_trials: int = 24
    timeout: float | None = None
    epochs: int | None = None
    storage: str | None = None
    study_name: str | None = None
    sampler: str = "tpe"
    pruner: str = "hyperband"
    objective: str = "accuracy"
    max_params: int | None = None
    accelerator: str = "auto"
    precision: str = "auto"
    devices: int = 1
    workers: int = 1
    seed: int = 0
    out: str | Path = "dense-nas-runs"
    heartbeat: float = 30.0
    retries: int = 2
    threads: int = 0
    compile: str = "auto"
    verbose: bool = False
    logger: str = "csv"
    mlflow_uri: str | None = None
    trainer_config: str | Path | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, str):  # other processes rebuild it from the path
            object.__setattr__(self, "data", import_path(self.data, "data", param="data"))
        object.__setattr__(self, "data_args", plain_arguments(self.data_args, "data_args"))
        from dense_nas.study.loggers import check_logger

        check_logger(self.logger, self.mlflow_uri)
        for name in ("n_trials", "devices", "workers"):
            _positive_int(name, getattr(self, name))
        for name in ("epochs", "max_params"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if (
            isinstance(self.retries, bool)
            or not isinstance(self.retries, int)
            or not (0 <= self.retries <= MAX_RETRIES)
        ):
            raise UserInputError(
                f"must be a whole number from 0 to {MAX_RETRIES}, got {self.retries!r}",
                param="retries",
            )
        if self.threads < 0:
            raise UserInputError(
                f"must be 0 (automatic) or more, got {self.threads}", param="threads"
            )
        for name in ("timeout", "heartbeat"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, (int, float)) and value > 0 and math.isfinite(value)
            ):
                raise UserInputError(
                    f"must be a positive, finite number, got {value!r}", param=name
                )
        if self.heartbeat > MAX_HEARTBEAT:
            raise UserInputError(
                f"must be at most {MAX_HEARTBEAT:.0f} seconds (a day), got {self.heartbeat}",
                param="heartbeat",
            )
        if self.study_name:
            _check_study_name(self.study_name)
        check_compile_choice(self.compile)

    @property
    def data_name(self) -> str:
        """``data`` as the study records it: a dataset name or ``module:Name``."""
        return self.data if isinstance(self.data, str) else import_path(self.data, "data")

    @property
    def out_dir(self) -> Path:
        """``out`` as a path."""
        return Path(self.out)


def _check_study_name(name: str) -> None:
    """A study name must fit in a file name: checkpoints and retrain folders are named by it."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_STUDY_NAME:
        raise UserInputError(
            f"a name of {size} bytes is too long for the file names made from it; "
            f"use at most {MAX_STUDY_NAME}",
            param="study_name",
        )
    bad = next((c for c in name if c in "/\\" or not c.isprintable()), None)
    if bad is not None or name in (".", ".."):
        what = f"holds {bad!r}" if bad is not None else "is not a name"
        raise UserInputError(
            f"{name!r} {what}; file names are made from the study name: use letters, "
            "digits, '-', '_' or '.'",
            param="study_name",
        )


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserInputError(f"must be a positive integer, got {value!r}", param=name)

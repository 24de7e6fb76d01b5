"""``--logger``: each trial is one run of a Lightning logger.

``csv`` (the default, no extra package) and ``tensorboard`` write under
``<out>/logs/<study>/trial-<N>/``; ``mlflow`` makes one run per trial, named
``trial-<N>``, in an experiment named after the study, in a local store under
``<out>/mlruns`` unless ``--mlflow-uri`` names another tracking server or store. Every run
holds the trial's architecture and recipe as hyperparameters (the module's ``hparams``)
and ``train/loss``, ``val/loss`` and ``val/acc`` per epoch.

The worker decides where a trial logs (:func:`trial_logs`, recorded on the trial as
:class:`~dense_nas.records.TrialLogs`); the trial process builds the logger from that
(:func:`make_logger`).

Example:
    >>> logs = trial_logs("csv", Path("runs"), "demo", 3)
    >>> logs["logger"], Path(logs["location"]).relative_to(Path("runs").resolve()).as_posix()
    ('csv', 'logs/demo/trial-3')
    >>> trial_logs("none", Path("runs"), "demo", 3) is None
    True
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from dense_nas.errors import UserInputError
from dense_nas.records import TrialLogs

#: The names ``--logger`` accepts.
LOGGERS: tuple[str, ...] = ("csv", "tensorboard", "mlflow", "none")

#: What each logger needs beyond dense-nas's own dependencies: (modules, extra to install).
_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "mlflow": (("mlflow",), "mlflow"),
}


def check_logger(name: str, mlflow_uri: str | None = None) -> None:
    """Refuse an unknown logger, or one whose package is not installed.

    Example:
        >>> check_logger("csv")
        >>> check_logger("wandb")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: logger: unknown logger 'wandb'; choose one of csv, tensorboard, mlflow, none
    """
    if name not in LOGGERS:
        raise UserInputError(
            f"unknown logger {name!r}; choose one of {', '.join(LOGGERS)}", param="logger"
        )
    if mlflow_uri is not None and name != "mlflow":
        raise UserInputError(f"only --logger mlflow uses it, not {name}", param="mlflow_uri")
    if name in _NEEDS:
        modules, extra = _NEEDS[name]
        if not any(importlib.util.find_spec(module) for module in modules):
            raise UserInputError(
                f"{name} needs its package: pip install 'dense-nas[{extra}]'", param="logger"
            )


def trial_logs(
    name: str, out: Path, study: str, number: int, mlflow_uri: str | None = None
) -> TrialLogs | None:
    """Where trial ``number`` of ``study`` logs (``None`` for ``--logger none``)."""
    if name == "none":
        return None
    if name == "mlflow":
        uri = mlflow_uri or (out / "mlruns").resolve().as_uri()
        return TrialLogs(logger=name, location=uri, experiment=study, run_name=f"trial-{number}")
    location = (out / "logs" / study / f"trial-{number}").resolve()
    return TrialLogs(logger=name, location=str(location))


def _allow_file_store(uri: str) -> None:
    if uri.startswith("file:"):
        # MLflow 3 keeps its file store in maintenance mode behind this switch; a local
        # store needs no server and no database, which is what a study on a laptop wants.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def prepare_experiment(name: str, out: Path, study: str, mlflow_uri: str | None = None) -> None:
    """Create the study's MLflow experiment once, before any trial (``--logger mlflow``).

    Lightning's MLflow logger looks the experiment up and creates it when missing, so two
    workers starting their first trials together would race to create it; here one
    command creates it and a command that loses the race to another finds it.

    Raises:
        UserInputError: (``mlflow_uri``) the tracking store cannot be reached.
    """
    if name != "mlflow":
        return
    uri = mlflow_uri or (out / "mlruns").resolve().as_uri()
    _allow_file_store(uri)
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        if client.get_experiment_by_name(study) is None:
            try:
                client.create_experiment(study)
            except MlflowException:
                if client.get_experiment_by_name(study) is None:  # not a lost race
                    raise
    except MlflowException as err:
        raise UserInputError(
            f"cannot use MLflow tracking store {uri} ({str(err).splitlines()[0]})",
            param="mlflow_uri",
        ) from None


def make_logger(logs: TrialLogs | None) -> Any:
    """The Lightning logger for ``logs`` (``False``: no logger), in the trial process."""
    if logs is None:
        return False
    from lightning.pytorch import loggers

    # name="" and version="": the files go straight into the trial's own directory.
    if logs["logger"] == "csv":
        return loggers.CSVLogger(logs["location"], name="", version="")
    if logs["logger"] == "tensorboard":
        return loggers.TensorBoardLogger(
            logs["location"], name="", version="", default_hp_metric=False
        )
    _allow_file_store(logs["location"])
    return loggers.MLFlowLogger(
        experiment_name=logs["experiment"],
        run_name=logs["run_name"],
        tracking_uri=logs["location"],
        tags={"dense_nas.trial": logs["run_name"]},
    )


def finished_logs(logs: TrialLogs | None, logger: Any) -> TrialLogs | None:
    """``logs`` with what is known only after training: the MLflow run id."""
    if logs is None or logs["logger"] != "mlflow" or logger is False:
        return logs
    return TrialLogs(**logs, run_id=logger.run_id)

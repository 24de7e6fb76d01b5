"""``--logger``: each trial is one run of every Lightning logger the study lists.

``--logger`` takes a comma list of ``csv`` (the default, no extra package),
``tensorboard``, ``mlflow`` and ``wandb``, or ``none`` alone:

- ``csv`` and ``tensorboard`` write under ``<out>/logs/<study>/trial-<N>/``;
- ``mlflow`` keeps one parent run per study, named after it, with each trial a nested
  run (tag ``mlflow.parentRunId``) named ``trial-<N>``, in an experiment named after the
  study, in a local store under ``<out>/mlruns`` unless ``--mlflow-uri`` names another;
- ``wandb`` makes one run per trial, named ``trial-<N>``, in a W&B project named after
  the study and grouped by it, its files under ``$WANDB_DIR`` (else ``<out>``)``/wandb/``.
  ``WANDB_MODE`` chooses online or offline; left unset, the runs are offline unless an
  API key is known (``WANDB_API_KEY`` or ``wandb login``), so a study never waits on a
  login prompt. ``wandb sync`` uploads offline runs later.

Every run holds the trial's architecture and recipe as hyperparameters (the module's
``hparams``) and ``train/loss``, ``val/loss`` and ``val/acc`` per epoch. A ``logger:``
section of ``--trainer-config`` adds the user's own loggers to every trial.

The command prepares the study's loggers once (:func:`prepare_loggers`: the MLflow
experiment and parent run, the W&B mode) and decides where each trial logs
(:meth:`StudyLoggers.trial_logs`, recorded on the trial as a list of
:class:`~dense_nas.records.TrialLogs`); the trial process builds the loggers from that
(:func:`make_logger`). ``retrain`` logs with the loggers the trials logged with
(:func:`rerun_logs`).

Example:
    >>> logger_names("csv, tensorboard"), logger_names("none")
    (('csv', 'tensorboard'), ())
    >>> (logs,) = prepare_loggers("csv", Path("runs"), "demo").trial_logs(3)
    >>> logs["logger"], Path(logs["location"]).relative_to(Path("runs").resolve()).as_posix()
    ('csv', 'logs/demo/trial-3')
"""

from __future__ import annotations

import importlib.util
import netrc
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

from dense_nas.errors import UserInputError
from dense_nas.records import TrialLogs

#: The loggers ``--logger`` combines; ``none`` (alone) is no logger.
LOGGERS: tuple[str, ...] = ("csv", "tensorboard", "mlflow", "wandb")

#: What each logger needs beyond dense-nas's own dependencies: (modules, extra to install).
_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "mlflow": (("mlflow",), "mlflow"),
    "wandb": (("wandb",), "wandb"),
}

#: Characters W&B refuses in a project name; a study name may hold them.
_NOT_IN_PROJECT = "#?%:"


def logger_names(text: str) -> tuple[str, ...]:
    """The loggers a ``--logger`` value lists (``none``: no logger at all).

    Raises:
        UserInputError: (``logger``) an unknown name, one listed twice, or ``none``
            beside another logger.

    Example:
        >>> logger_names("mlflow,wandb")
        ('mlflow', 'wandb')
        >>> logger_names("none,csv")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: logger: none means no logger and stands alone; drop none or the others
    """
    names = tuple(name.strip() for name in text.split(","))
    if names == ("none",):
        return ()
    for at, name in enumerate(names):
        if name == "none":
            raise UserInputError(
                "none means no logger and stands alone; drop none or the others", param="logger"
            )
        if name not in LOGGERS:
            raise UserInputError(
                f"unknown logger {name!r}; list some of {', '.join(LOGGERS)} "
                "(comma-separated), or none",
                param="logger",
            )
        if name in names[:at]:
            raise UserInputError(f"{name} is listed twice; list it once", param="logger")
    return names


def check_loggers(text: str, mlflow_uri: str | None = None) -> str:
    """Refuse a bad ``--logger`` list, or a logger whose package is not installed.

    Returns the list as canonical text (``csv,wandb``; ``none``).

    Example:
        >>> check_loggers(" csv,tensorboard ")
        'csv,tensorboard'
        >>> check_loggers("csv", mlflow_uri="file:/tmp/runs")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: mlflow_uri: only --logger mlflow uses it, and csv does not list it
    """
    names = logger_names(text)
    if mlflow_uri is not None and "mlflow" not in names:
        listed = ",".join(names) or "none"
        raise UserInputError(
            f"only --logger mlflow uses it, and {listed} does not list it", param="mlflow_uri"
        )
    for name in names:
        if name in _NEEDS:
            modules, extra = _NEEDS[name]
            if not any(importlib.util.find_spec(module) for module in modules):
                raise UserInputError(
                    f"{name} needs its package: pip install 'dense-nas[{extra}]'", param="logger"
                )
    return ",".join(names) or "none"


@dataclass(frozen=True)
class StudyLoggers:
    """Where the trials of one command on a study log (made by :func:`prepare_loggers`)."""

    names: tuple[str, ...]
    #: the study's log directory, ``<out>/logs/<study>`` (csv, tensorboard)
    directory: Path
    study: str
    #: the MLflow tracking URI and the study's parent run (``mlflow``)
    mlflow_uri: str | None = None
    mlflow_parent: str | None = None
    #: where W&B keeps its run files, and ``online`` or ``offline`` (``wandb``)
    wandb_dir: str | None = None
    wandb_mode: str | None = None

    def trial_logs(self, number: int) -> list[TrialLogs]:
        """Where trial ``number`` logs, one record per logger (empty: ``--logger none``)."""
        return [self._logs(name, f"trial-{number}") for name in self.names]

    def _logs(self, name: str, run: str) -> TrialLogs:
        if name == "mlflow":
            assert self.mlflow_uri is not None and self.mlflow_parent is not None
            return TrialLogs(
                logger=name,
                location=self.mlflow_uri,
                experiment=self.study,
                run_name=run,
                parent_run_id=self.mlflow_parent,
            )
        if name == "wandb":
            assert self.wandb_dir is not None and self.wandb_mode is not None
            return TrialLogs(
                logger=name,
                location=self.wandb_dir,
                experiment=_wandb_project(self.study),
                run_name=run,
                run_id=_new_wandb_id(),
                group=self.study,
                mode=self.wandb_mode,
            )
        return TrialLogs(logger=name, location=str(self.directory / run))

    @property
    def notes(self) -> list[str]:
        """Lines for the study's header: where offline W&B runs go, and how to upload them."""
        if self.wandb_mode != "offline" or os.environ.get("WANDB_MODE"):
            return []
        return [
            f"wandb: no API key known, so the runs are offline in {self.wandb_dir}/wandb "
            "(wandb sync uploads them; set WANDB_MODE to choose)"
        ]


def prepare_loggers(
    logger: str, out: Path, study: str, mlflow_uri: str | None = None
) -> StudyLoggers:
    """Prepare the study's loggers once per command, before any trial.

    ``mlflow``: the experiment and the study's parent run are made here, not by the
    first trials (two workers starting together would race to make them); a command
    that loses the race to another command adopts the older parent run. ``wandb``: the
    mode is decided here, so every trial of the command logs alike.

    Raises:
        UserInputError: (``mlflow_uri``) the tracking store cannot be reached.
    """
    names = logger_names(logger)
    directory = (out / "logs" / study).resolve()
    uri = parent = wandb_dir = wandb_mode = None
    if "mlflow" in names:
        uri = mlflow_uri or (out / "mlruns").resolve().as_uri()
        parent = _mlflow_parent(uri, study)
    if "wandb" in names:
        wandb_dir = str(Path(os.environ.get("WANDB_DIR") or out).resolve())
        wandb_mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_key() else "offline")
    return StudyLoggers(names, directory, study, uri, parent, wandb_dir, wandb_mode)


def _allow_file_store(uri: str) -> None:
    if uri.startswith("file:"):
        # MLflow 3 keeps its file store in maintenance mode behind this switch; a local
        # store needs no server and no database, which is what a study on a laptop wants.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


#: Tags of a study's MLflow parent run: how a later command finds it.
_PARENT_TAG = "dense_nas.study"


def _mlflow_parent(uri: str, study: str) -> str:
    """The id of the study's MLflow parent run, made (with its experiment) when missing."""
    _allow_file_store(uri)
    from mlflow.entities import RunStatus
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)

    def parents(experiment: str) -> list[Any]:
        found = client.search_runs(
            [experiment], f"tags.`{_PARENT_TAG}` = 'parent'", order_by=["attributes.start_time"]
        )
        return sorted(found, key=lambda run: (run.info.start_time, run.info.run_id))

    try:
        experiment = client.get_experiment_by_name(study)
        if experiment is None:
            try:
                client.create_experiment(study)
            except MlflowException:
                if client.get_experiment_by_name(study) is None:  # not a lost race
                    raise
            experiment = client.get_experiment_by_name(study)
        assert experiment is not None
        found = parents(experiment.experiment_id)
        if found:
            return str(found[0].info.run_id)
        made = client.create_run(
            experiment.experiment_id, tags={_PARENT_TAG: "parent"}, run_name=study
        )
        # It logs nothing itself: it holds the trials' runs, which may come for days.
        client.set_terminated(made.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
        oldest = parents(experiment.experiment_id)[0].info.run_id
        if oldest != made.info.run_id:  # another command made one at the same moment
            client.delete_run(made.info.run_id)
        return str(oldest)
    except MlflowException as err:
        raise UserInputError(
            f"cannot use MLflow tracking store {uri} ({str(err).splitlines()[0]})",
            param="mlflow_uri",
        ) from None


def _wandb_key() -> bool:
    """Is a W&B API key known (the environment, or ``wandb login``'s netrc entry)?"""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _wandb_project(study: str) -> str:
    """A W&B project name for ``study``.

    Example:
        >>> _wandb_project("cifar:run#2")
        'cifar-run-2'
    """
    return "".join("-" if char in _NOT_IN_PROJECT else char for char in study)


def _new_wandb_id() -> str:
    """A fresh W&B run id: a trial number alone would clash with a remade study's runs."""
    return uuid.uuid4().hex[:16]


def recorded_logs(logs: Sequence[TrialLogs] | TrialLogs | None) -> list[TrialLogs]:
    """A trial's recorded ``logs`` as a list (studies made before ``--logger`` took a list
    recorded one :class:`~dense_nas.records.TrialLogs`).

    Example:
        >>> recorded_logs({"logger": "csv", "location": "/runs/logs/demo/trial-0"})
        [{'logger': 'csv', 'location': '/runs/logs/demo/trial-0'}]
        >>> recorded_logs(None)
        []
    """
    if logs is None:
        return []
    if isinstance(logs, Mapping):
        return [cast(TrialLogs, dict(logs))]
    return [cast(TrialLogs, dict(entry)) for entry in logs]


def make_logger(logs: Sequence[TrialLogs], trainer_config: Mapping[str, Any]) -> Any:
    """The Trainer's ``logger``: one per ``logs`` entry, then the ``--trainer-config``
    ``logger:`` section's (``False`` when there is none), in the trial process."""
    from dense_nas.study.trainer_config import config_loggers

    built = [_logger(entry) for entry in logs]
    return [*built, *config_loggers(trainer_config)] or False


def _logger(logs: TrialLogs) -> Any:
    from lightning.pytorch import loggers

    # name="" and version="": the files go straight into the trial's own directory.
    if logs["logger"] == "csv":
        return loggers.CSVLogger(logs["location"], name="", version="")
    if logs["logger"] == "tensorboard":
        return loggers.TensorBoardLogger(
            logs["location"], name="", version="", default_hp_metric=False
        )
    if logs["logger"] == "wandb":
        _finish_wandb_run()
        import wandb

        return loggers.WandbLogger(
            name=logs["run_name"],
            save_dir=logs["location"],
            project=logs["experiment"],
            id=logs["run_id"],
            group=logs["group"],
            mode=logs["mode"],
            settings=wandb.Settings(console="off"),  # the trial's output has its own log
        )
    _allow_file_store(logs["location"])
    tags = {"dense_nas.trial": logs["run_name"]}
    if "parent_run_id" in logs:  # runs of studies logged before parent runs stand alone
        tags["mlflow.parentRunId"] = logs["parent_run_id"]
    return loggers.MLFlowLogger(
        experiment_name=logs["experiment"],
        run_name=logs["run_name"],
        tracking_uri=logs["location"],
        tags=tags,
    )


def _finish_wandb_run() -> None:
    """End this process's W&B run, if one is open: a trial process serves trial after
    trial (one that failed left its run open), and Lightning's WandbLogger would log the
    next trial into an open run."""
    import wandb

    if wandb.run is not None:
        wandb.finish()


def finished_logs(logs: Sequence[TrialLogs], logger: Any) -> list[TrialLogs]:
    """``logs`` once training ended: the W&B run finished, the MLflow run's id added."""
    if logger is False:
        return list(logs)
    done = []
    for entry, built in zip(logs, logger, strict=False):  # the study's come first
        if entry["logger"] == "mlflow":
            entry = TrialLogs(**entry, run_id=built.run_id)
        done.append(entry)
    if any(entry["logger"] == "wandb" for entry in logs):
        _finish_wandb_run()  # W&B's run outlives its Trainer; the others end with it
    return done


def rerun_logs(
    trial_logs: Sequence[TrialLogs] | TrialLogs | None, run: str, directory: Path
) -> list[TrialLogs]:
    """Where a new run named ``run`` (a retrain's) logs, with the loggers a trial logged
    with: csv and tensorboard in ``directory/run``, MLflow nested under the study's parent
    run, W&B in the study's project and group (a new run id).

    Example:
        >>> recorded = [{"logger": "csv", "location": "/runs/logs/demo/trial-3"}]
        >>> rerun_logs(recorded, "retrain-trial-3", Path("/copy/logs/demo"))
        [{'logger': 'csv', 'location': '/copy/logs/demo/retrain-trial-3'}]
    """
    runs = []
    for entry in recorded_logs(trial_logs):
        if entry["logger"] in ("csv", "tensorboard"):
            location = str((directory / run).resolve())
            runs.append(TrialLogs(logger=entry["logger"], location=location))
            continue
        fresh = cast(TrialLogs, {**entry, "run_name": run})
        fresh.pop("run_id", None)  # MLflow makes the run's id
        if entry["logger"] == "wandb":
            fresh["run_id"] = _new_wandb_id()
        runs.append(fresh)
    return runs


def prepare_reruns(logs: Sequence[TrialLogs]) -> None:
    """Before :func:`rerun_logs` runs start: their packages are installed here, and the
    MLflow experiment they join exists (runs in parallel would race to make it).

    Raises:
        UserInputError: (``logger``) a package is missing; (``mlflow_uri``) the tracking
            store cannot be reached.
    """
    check_loggers(",".join(entry["logger"] for entry in logs) or "none")
    for entry in logs:
        if entry["logger"] == "mlflow":
            _mlflow_parent(entry["location"], entry["experiment"])

"""Typed records: what a study and its trials store.

A dense-nas study is a plain Optuna study; everything dense-nas adds lives in user
attributes. This module is the one place their names and types are spelled:

- :class:`StudyAttrs`: the study's own attributes (written once when the study is made).
- :class:`TrialAttrs`: a trial's attributes, written as the trial goes (candidate, cost,
  outcome, heartbeats).

The messages between a worker and its trial process are in
:mod:`dense_nas.study.process.messages`.

Readers get a typed view (:func:`study_attrs`, :func:`trial_attrs`); writers go through
:func:`record_study` and :func:`record_trial`, which mypy checks against these
definitions, so a misspelt or mistyped attribute is a type error, not a silent ``None``.

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> record_trial(trial, params=1200, macs=34000)
    >>> trial_attrs(study.trials[0])["params"]
    1200
    >>> record_study(study, objective="accuracy")
    >>> study_attrs(study).get("objective")
    'accuracy'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict, cast

from typing_extensions import NotRequired, Unpack

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


class ChoiceRecord(TypedDict):
    """The sampler or pruner a study was made with (:mod:`dense_nas.study.samplers`)."""

    name: str
    """Its command-line name, or the class name of an object given in Python."""
    args: dict[str, Any] | None
    """The ``--sampler-arg`` / ``--pruner-arg`` settings; ``None`` for an object, whose
    settings cannot be recorded."""


class SpaceVersionRecord(TypedDict):
    """One version of the space a study searched (see :mod:`dense_nas.space._version`)."""

    name: str
    fingerprint: str
    """sha256 (hex) of the space's canonical form."""
    first_trial: int
    """The first trial number drawn from this version (earlier ones: the versions before)."""
    parameters: NotRequired[dict[str, str]]
    """Each parameter the space can draw, with its Optuna distribution as JSON
    (``optuna.distributions.distribution_to_json``): what a later version is compared with."""


class TrialRef(TypedDict):
    """A trial named by its study and its number there."""

    study: str
    number: int


class VersionRecord(TypedDict):
    """One version of a study that grew (see :mod:`dense_nas.study.lineage`).

    A space change that one Optuna study cannot hold (other categorical choices, another
    kind or log scale, a parameter added or removed) goes on in a new plain Optuna study;
    the user's study (version 1) lists every version in ``versions``."""

    study: str
    """The Optuna study that holds the version's trials (``<name>@v<N>`` from version 2)."""
    space: str
    """The space's name."""
    fingerprint: str
    """sha256 (hex) of the space's canonical form."""
    changes: list[str]
    """What changed from the version before, e.g. ``batch_size gained 32``."""
    carried: int
    """Finished trials of earlier versions added to this one (they lie inside its space)."""
    earlier: int
    """Finished trials the earlier versions held (each trained network once)."""


class WarmStartRecord(TypedDict):
    """Where a study started from (``search --warm-start``)."""

    study: str
    """The other study's name."""
    storage: str | None
    """Its storage (``None``: this study's own)."""
    enqueued: list[int]
    """Numbers of its best trials that were enqueued first (they lie inside this space)."""
    skipped: list[int]
    """Numbers of its best trials that lie outside this space."""
    history: int
    """Its finished trials added as history (the same data; ``0`` on other data)."""


class RetrainRecord(TypedDict):
    """One ``dense-nas retrain`` run: a trial's architecture and recipe trained from
    scratch on train + validation with one seed, then measured on the test set."""

    trial: int | str
    """The trial whose architecture and recipe were retrained, as ``--trial`` names it
    (``vK:N`` for a trial of a study's later version)."""
    arch_key: str
    """That trial's ``arch_key``: runs of duplicate trials train the same network."""
    seed: int
    """The run's seed (weights, data order, augmentation)."""
    epochs: int
    """Epochs of the schedule."""
    test_accuracy: float
    """Accuracy on the test set (a fraction 0..1)."""
    seconds: float | None
    """Wall time of the run; ``None`` for a result recorded before runs were timed."""
    finished: float | None
    """Unix time the run ended; ``None`` for a result recorded before it was kept."""
    resumed_from_epoch: int
    """Epochs a checkpoint of an interrupted run had done when this run started."""
    checkpoint: str
    """The run's ``last.ckpt``."""
    precision: str
    """The Lightning precision it trained in."""
    logs: list[TrialLogs]
    """Where the run logged, one entry per logger the study's trials logged with."""


class LatencyTargetRecord(TypedDict):
    """Where a study measures its candidates' latency (:class:`~dense_nas.model.latency.Target`)."""

    device: str
    batch: int
    threads: int
    runtime: str


class StudyAttrs(TypedDict, total=False):
    """What ``search()`` records on a study, for every later command and machine."""

    space: str
    """Name of the search space (of its latest version)."""
    space_versions: list[SpaceVersionRecord]
    """Every version of the space the study searched, oldest first."""
    versions: list[VersionRecord]
    """On the user's study once it grew: every version of it, oldest (itself) first."""
    version_of: str
    """On a version from the second on: the user's study it is a version of."""
    warm_start: WarmStartRecord
    """Where the study started from (``search --warm-start``)."""
    data: str
    """Dataset name (see :data:`dense_nas.data.DATASETS`), a plugin datamodule's name
    (entry-point group ``dense_nas.datamodules``) or a user datamodule's ``module:Name``."""
    data_args: dict[str, Any]
    """Keyword arguments of a user datamodule, as plain values (``{}`` for built-in data)."""
    data_dir: str | None
    """Absolute path of the dataset files, or ``None`` for embedded data."""
    val_size: int | float
    """Validation images held out of training: fixed for the study's life (built-in data
    only; a user datamodule holds out its own)."""
    objective: str
    """The validation metric (``accuracy``, ``f1``, ``nll``, ...; see
    :data:`~dense_nas.model.metrics.METRICS`), alone or with ``,params``, ``,macs`` or
    ``,latency``; the study's directions say which way each goes."""
    sampler: ChoiceRecord
    """The sampler every command on the study samples with."""
    pruner: ChoiceRecord
    """The pruner every command on the study prunes with."""
    latency_target: LatencyTargetRecord
    """Where the first search that measured latency measured it (``--latency-*``)."""
    seed: int
    """Sampler seed and base of every trial's training seed."""
    image_size: list[int]
    """Height and width of the images the study trained on."""
    retrains: list[RetrainRecord]
    """Every ``retrain`` run, oldest first: a new retrain adds to it (:func:`retrain_records`)."""
    retrain: dict[str, Any]
    """The one result studies kept before ``retrains``: read by :func:`retrain_records`,
    never written any more."""
    n_trials: int
    """The budget the last ``search`` on the study was asked to reach (``--trials``)."""
    trainer_config: dict[str, Any]
    """The ``--trainer-config`` every trial and ``retrain`` apply, as plain values:
    ``{"trainer": options, "callbacks": [{"class_path": ..., "init_args": ...}]}``
    (:func:`~dense_nas.study.trainer_config.load_trainer_config`)."""


ARTIFACT_ROOT_ATTR = "dense_nas:artifact_store"
"""Study attribute: the root folder of the study's artifact store (the trial checkpoints).

It is not in :class:`StudyAttrs` because its name is not a Python identifier."""


LAST_TRY_FAILURE_PREFIX = "dense_nas:failure:"
"""Study attributes ``dense_nas:failure:<n>``: why trial ``n``, a last try whose worker
went silent, failed (another worker ended it, and a FAILED trial cannot be written)."""
SLOT_ATTR_PREFIX = "dense_nas:slot:"
"""Study attributes ``dense_nas:slot:<n>``: the :class:`SlotHolder` of sampler slot ``n``
(see :mod:`dense_nas.study.coordination.slots`); not in :class:`StudyAttrs` for the same reason."""


LATENCY_ATTR_PREFIX = "dense_nas:latency:"
"""Study attributes ``dense_nas:latency:<hash>``: one :class:`LatencyRecord` each, for one
architecture, image size and device fingerprint (see :mod:`dense_nas.model.latency_cache`);
the hash keeps the name short enough for every storage."""


class FingerprintRecord(TypedDict):
    """Where a latency was measured (:class:`~dense_nas.model.latency.DeviceFingerprint`)."""

    device: str
    """``cpu`` or ``gpu``."""
    hardware: str
    """The CPU model or the GPU name."""
    threads: int
    batch: int
    runtime: str
    """``torch`` or ``onnxruntime``."""
    torch: str
    """torch's version."""
    onnxruntime: str | None
    """onnxruntime's version when it ran the network."""


class LatencyRecord(TypedDict):
    """One measured latency (:class:`~dense_nas.model.latency.LatencyMeasurement`)."""

    arch_key: str
    """Key of the architecture as inference runs it
    (:func:`~dense_nas.model.latency.inference_arch`)."""
    image_size: list[int]
    device: str
    """The fingerprint's key."""
    fingerprint: FingerprintRecord
    median_ms: float
    """Median milliseconds per batch."""
    iqr_ms: float
    """Interquartile range of the timed runs, in milliseconds."""
    runs: int
    converged: bool
    """Whether the median met the precision asked for before a cap on runs or time."""


class SlotHolder(TypedDict):
    """The ``search`` command that holds a sampler slot, and when it last said so."""

    host: str
    pid: int
    token: str
    """Unique to the holding command: tells its own claim from another's."""
    heartbeat: float
    """Unix time the holder last renewed the slot; ``0`` once it let the slot go."""


class WorkerInfo(TypedDict):
    """Who runs a trial: for ``dense-nas status`` on any machine."""

    host: str
    pid: int
    index: int
    """The worker's number in its ``search`` command (``--workers``)."""
    grace: float
    """Seconds of heartbeat silence after which the trial counts as dead (``--heartbeat``)."""


class EpochProgress(TypedDict):
    """The latest epoch of a running trial, as its worker heard it."""

    epoch: int
    epochs: int
    """Epochs the trial's schedule trains."""
    accuracy: float
    """Validation accuracy after ``epoch``."""
    metric: NotRequired[str]
    """The study's metric, by name (absent on records from before there were others: then
    it is ``accuracy``)."""
    value: NotRequired[float]
    """The study's metric after ``epoch`` (absent with ``metric``)."""
    loss: float
    """Validation loss after ``epoch``."""
    images_per_second: float
    """Training throughput so far."""
    at: float
    """Unix time the epoch ended."""


class TrialLogs(TypedDict):
    """Where one of a trial's Lightning loggers wrote (see :mod:`dense_nas.study.loggers`)."""

    logger: str
    """``csv``, ``tensorboard``, ``mlflow`` or ``wandb``."""
    location: str
    """The trial's log directory (csv, tensorboard), the MLflow tracking URI, or the
    directory W&B keeps its run files under (in ``wandb/``)."""
    experiment: NotRequired[str]
    """MLflow: the experiment; W&B: the project; both named after the study."""
    run_name: NotRequired[str]
    """MLflow, W&B: the run's name, ``trial-<N>``."""
    run_id: NotRequired[str]
    """MLflow: the run's id, once the trial process has made the run; W&B: the run's id."""
    parent_run_id: NotRequired[str]
    """MLflow: the study's parent run, which the trial's run is nested under."""
    group: NotRequired[str]
    """W&B: the run group, the study's name."""
    mode: NotRequired[str]
    """W&B: ``online`` or ``offline`` (``WANDB_MODE``, or offline without an API key)."""


class TrialAttrs(TypedDict, total=False):
    """What a trial of a dense-nas study records, in the order it is written."""

    retry_of: int
    """Number of the trial this one retries with the same parameters."""
    retry_reason: str
    """Why the trial in ``retry_of`` failed and was retried."""
    attempt: int
    """Which try of its parameters this trial is: absent (1) on a first try, 2 on its
    first retry, and so on (``--retries`` caps it for trial processes that died)."""
    first_try: int
    """On a retry: the number of its parameters' first try, which names the resume
    checkpoint all their tries share."""
    stalled_tries: int
    """On a retry: how many tries right before it failed without progress (without
    moving the resume checkpoint on); ``--retries`` bounds it. Absent on a retry
    made before progress counted: ``attempt - 1``."""
    heartbeat: float
    """Unix time the worker last said it is alive (RUNNING trials)."""
    worker: WorkerInfo
    """The host, process and worker that runs (or ran) the trial."""
    params: int
    """Exact trainable parameter count of the candidate."""
    macs: int
    """Multiply-accumulates of one forward pass at the study's image size."""
    latency_ms: float
    """Measured median milliseconds per batch of the candidate's network on the study's
    latency target (:mod:`dense_nas.model.latency`)."""
    latency_spread: float
    """Relative spread (IQR over median) of the runs behind ``latency_ms``."""
    latency_device: str
    """Key of the device fingerprint ``latency_ms`` was measured on."""
    pruned_reason: str
    """Why the candidate was pruned before training (a broken constraint, or a step that
    would not fit in the GPU memory the trial may use)."""
    memory_mode: str
    """``memory-efficient`` when the drawn candidate only fits its GPU memory share in that
    mode (:mod:`dense_nas.study.memory_fit`); with the reason in ``memory_reason``."""
    memory_reason: str
    """Why the trial trains in ``memory_mode``: the estimated and available bytes."""
    arch: dict[str, Any]
    """The architecture, :meth:`~dense_nas.model.arch.DenseNetConfig.to_dict`."""
    training: dict[str, Any]
    """The recipe, :meth:`~dense_nas.model.recipe.TrainingConfig.to_dict`."""
    arch_key: str
    """Canonical key of architecture and recipe (:attr:`~dense_nas.space.Candidate.key`):
    two trials with one key train the same network the same way."""
    duplicate_of: int
    """The earlier trial with the same ``arch_key`` whose result this trial reuses."""
    waits_for: int | None
    """The RUNNING trial with the same ``arch_key`` this one waits for, to reuse its result;
    ``None`` once it stopped waiting to train the candidate itself."""
    progress: EpochProgress
    """The latest epoch: written after every epoch, so any reader sees a trial advance."""
    resumed_from: int
    """Epochs an earlier try trained that this one went on from (its resume checkpoint);
    absent on a try that started at epoch 0. Their validation accuracies are copied onto
    this trial's intermediate values before its own."""
    epochs: int
    """Epochs trained (fewer than the recipe's when pruned)."""
    precision: str
    """The Lightning precision the Trainer trained in."""
    compiled: bool
    """Whether the training steps ran compiled (CUDA graphs on a GPU; ``--compile``)."""
    ranks: list[dict[str, Any]]
    """What each DDP rank built and trained (one entry on a single device)."""
    images_per_second: float
    """Training throughput inside training steps."""
    step_seconds: float
    """Seconds inside training and validation steps: the rest of ``seconds`` is overhead."""
    intermediate: dict[str, float]
    """The study's metric per epoch (keyed by the epoch as text) for multi-objective
    studies, where Optuna keeps no intermediate values."""
    accuracy: float
    """Validation accuracy after the last epoch, shown beside the study's metric (absent
    on trials from before there were others: then the first value is the accuracy)."""
    logs: list[TrialLogs] | TrialLogs
    """Where the trial's training logs are, one entry per ``--logger`` (absent with
    ``--logger none``); a study made before ``--logger`` took a list recorded one entry
    (:func:`dense_nas.study.loggers.recorded_logs` reads both)."""
    checkpoint: str
    """Artifact id of the trial's Lightning checkpoint in the study's artifact store."""
    copied_from: TrialRef
    """On a trial added as history (a study that grew, or a warm start): the trial it is
    a copy of, where it was trained (always the first, never a copy itself)."""
    warm_start_of: TrialRef
    """On a trial enqueued by ``--warm-start``: the other study's trial it tries again."""
    failure: str
    """Why the trial FAILED."""
    retried: str
    """On a FAILED try that another trial retries with the same parameters: why it was
    retried, and which try that is (it does not use up the budget)."""
    counts: bool
    """False on a FAILED trial that does not use up the budget (surplus)."""
    seconds: float
    """Wall time of the trial in its worker, from ask to tell."""


def study_attrs(study: optuna.Study) -> StudyAttrs:
    """The study's user attributes, typed.

    Example:
        >>> import optuna
        >>> study_attrs(optuna.create_study()).get("data", "digits")
        'digits'
    """
    return cast(StudyAttrs, study.user_attrs)


def retrain_records(study: optuna.Study) -> list[RetrainRecord]:
    """Every retrain run recorded on the study, oldest first.

    A study retrained before dense-nas kept every run holds its one result in the old
    ``retrain`` attr; it is read as the first run (its seed was the study's seed).

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> record_study(study, seed=3, retrain={"trial": 1, "arch_key": "k=4", "epochs": 2,
        ...     "test_accuracy": 0.9, "resumed_from_epoch": 0, "checkpoint": "last.ckpt",
        ...     "precision": "32-true"})
        >>> [(r["trial"], r["seed"], r["seconds"]) for r in retrain_records(study)]
        [(1, 3, None)]
    """
    attrs = study_attrs(study)
    records = list(attrs.get("retrains", []))
    old = attrs.get("retrain")
    if isinstance(old, dict):
        migrated = RetrainRecord(
            trial=int(old["trial"]),
            arch_key=str(old.get("arch_key", "")),
            seed=int(attrs.get("seed", 0)),
            epochs=int(old["epochs"]),
            test_accuracy=float(old["test_accuracy"]),
            seconds=None,
            finished=None,
            resumed_from_epoch=int(old.get("resumed_from_epoch", 0)),
            checkpoint=str(old.get("checkpoint", "")),
            precision=str(old.get("precision", "")),
            logs=[],
        )
        records.insert(0, migrated)
    return records


def record_study(
    study: optuna.Study, *, overwrite: bool = True, **attrs: Unpack[StudyAttrs]
) -> None:
    """Write study attributes; with ``overwrite=False`` only those not yet recorded.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> record_study(study, seed=1)
        >>> record_study(study, overwrite=False, seed=2)
        >>> study_attrs(study)["seed"]
        1
    """
    present = study.user_attrs
    for name, value in attrs.items():
        if overwrite or name not in present:
            study.set_user_attr(name, value)


def trial_attrs(trial: FrozenTrial | optuna.Trial) -> TrialAttrs:
    """A trial's user attributes, typed.

    Example:
        >>> import optuna
        >>> trial = optuna.trial.create_trial(value=0.9, user_attrs={"epochs": 3})
        >>> trial_attrs(trial)["epochs"]
        3
    """
    return cast(TrialAttrs, trial.user_attrs)


def record_trial(trial: optuna.Trial, **attrs: Unpack[TrialAttrs]) -> None:
    """Write trial attributes (each is one storage write).

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> trial = study.ask()
        >>> record_trial(trial, failure="NaN loss")
        >>> trial.user_attrs["failure"]
        'NaN loss'
    """
    for name, value in attrs.items():
        trial.set_user_attr(name, value)


def failure_reason(
    trial: FrozenTrial, trials: list[FrozenTrial], study_attrs: dict[str, Any] | None = None
) -> str | None:
    """Why a trial failed: its own ``failure``, the ``retry_reason`` on its retry, or the
    study's :data:`LAST_TRY_FAILURE_PREFIX` record.

    A trial failed by another worker (its own worker went silent) cannot be written any
    more once it is FAILED, so the reason travels on the retry that replaces it, or, for
    a last try that is not retried, on the study (``study_attrs``: its user attrs).

    Example:
        >>> import optuna
        >>> from optuna.trial import TrialState
        >>> study = optuna.create_study()
        >>> study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
        >>> study.enqueue_trial({}, user_attrs={"retry_of": 0, "retry_reason": "silent"})
        >>> failure_reason(study.trials[0], study.trials)
        'silent'
    """
    own = trial_attrs(trial).get("failure")
    if own is not None:
        return own
    for other in trials:
        attrs = trial_attrs(other)
        if attrs.get("retry_of") == trial.number and "retry_reason" in attrs:
            return attrs["retry_reason"]
    last_try = (study_attrs or {}).get(f"{LAST_TRY_FAILURE_PREFIX}{trial.number}")
    return None if last_try is None else str(last_try)


def learning_curve(trial: FrozenTrial) -> dict[int, float]:
    """The study's metric after each epoch, wherever the study kept it.

    Single-objective studies keep it as Optuna intermediate values; multi-objective ones
    (where Optuna has none) in the user attr ``intermediate``, keyed by the epoch as text.

    Example:
        >>> import optuna
        >>> t = optuna.trial.create_trial(values=[0.9, 10], user_attrs={
        ...     "intermediate": {"1": 0.5, "2": 0.9}})
        >>> learning_curve(t)
        {1: 0.5, 2: 0.9}
    """
    if trial.intermediate_values:
        return {int(step): float(v) for step, v in sorted(trial.intermediate_values.items())}
    stored = trial_attrs(trial).get("intermediate") or {}
    return {int(step): float(v) for step, v in sorted(stored.items(), key=lambda kv: int(kv[0]))}

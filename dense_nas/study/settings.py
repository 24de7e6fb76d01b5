"""What a search is asked to do: one frozen, checked settings object, and where each
option is declared.

Each :class:`SearchSettings` field is the one declaration of a search option: its type,
its default, and (in the field's metadata) an :class:`Option` with its one-line doc, its
choices, its command-line flag and how it reads from text. The ``dense-nas search``
flags, the keywords of :func:`~dense_nas.study.search` (:class:`SearchOptions`), the
``--config`` files (:mod:`~dense_nas.study.settings_file`) and the options table
(:func:`options_table`) are made from these fields; ``tests/test_settings.py`` fails when
one of them drifts. Adding an option means one field here and one key of
:class:`SearchOptions`.

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
    >>> SearchSettings(seed=2**32)
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: seed: must be a whole number from 0 to 4294967295, got 4294967296
    >>> OPTIONS["n_trials"].flag, OPTIONS["n_trials"].shown_default
    ('--trials', '24')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import yaml
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

from dense_nas._plugins import import_path, plain_arguments
from dense_nas.errors import UserInputError, check_choice
from dense_nas.study.hardware import ACCELERATORS, PRECISIONS
from dense_nas.study.samplers import PRUNERS, SAMPLERS

if TYPE_CHECKING:
    from dense_nas.space import SearchSpace

#: Longest study name, in UTF-8 bytes: checkpoint file names start with it.
MAX_STUDY_NAME = 128
#: Most retries of one trial (``retries``): enough for any flaky machine, not a loop.
MAX_RETRIES = 100
#: Most epochs between two resume checkpoints (``resume_every``).
MAX_RESUME_EVERY = 10_000
#: Longest heartbeat, in seconds (a day): waits longer than the clock's range would crash.
MAX_HEARTBEAT = 86_400.0
#: Largest seed: numpy's generators (which the samplers use) take 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1

# Spelled out rather than imported so that building the command line need not import
# torch; tests/test_graphs.py and tests/test_settings.py check they equal
# dense_nas.model.graphs.COMPILE_CHOICES and dense_nas.model.metrics.METRICS.
COMPILE_CHOICES = ("auto", "on", "off")
METRIC_CHOICES = ("accuracy", "top5", "balanced_accuracy", "f1", "auroc", "nll")
#: The second objectives, as dense_nas.study.objectives.SIZE_ATTRS names them.
SIZE_CHOICES = ("params", "macs", "latency")
# The same for dense_nas.model.latency.DEVICES and RUNTIMES (checked in tests/test_settings.py).
LATENCY_DEVICES = ("cpu", "gpu")
LATENCY_RUNTIMES = ("torch", "onnxruntime")


def check_objective(text: str) -> tuple[str, ...]:
    """The objective's names, metric first, or one line saying what it may be.

    Example:
        >>> check_objective("f1, params")
        ('f1', 'params')
        >>> check_objective("loss")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: objective: must be METRIC or METRIC,SIZE with METRIC one of accuracy, top5, balanced_accuracy, f1, auroc, nll and SIZE one of params, macs, latency; got 'loss'
    """
    names = tuple(part.strip() for part in text.split(","))
    metric, sizes = names[0], names[1:]
    if metric not in METRIC_CHOICES or len(sizes) > 1 or not set(sizes) <= set(SIZE_CHOICES):
        raise UserInputError(
            f"must be METRIC or METRIC,SIZE with METRIC one of {', '.join(METRIC_CHOICES)} "
            f"and SIZE one of {', '.join(SIZE_CHOICES)}; got {text!r}",
            param="objective",
        )
    return names


def whole_number(text: str) -> int:
    """An integer from its text (the setting's own check judges its range).

    Example:
        >>> whole_number("12")
        12
        >>> whole_number("1.5")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: must be a whole number, got '1.5'
    """
    try:
        return int(text)
    except ValueError:
        raise UserInputError(f"must be a whole number, got {text!r}") from None


def number(text: str) -> float:
    """A number from its text (the setting's own check judges its range)."""
    try:
        return float(text)
    except ValueError:
        raise UserInputError(f"must be a number, got {text!r}") from None


def count_or_fraction(text: str) -> int | float:
    """A count (``500``) or a fraction (``0.2``); the datamodule checks the range.

    Example:
        >>> count_or_fraction("500"), count_or_fraction("0.2")
        (500, 0.2)
    """
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise UserInputError(
            f"must be an image count or a fraction in (0, 1), got {text!r}"
        ) from None


def key_value(text: str) -> tuple[str, Any]:
    """One ``KEY=VALUE`` pair; the value is read as a YAML scalar.

    Example:
        >>> key_value("size=12"), key_value("root=/data"), key_value("shuffle=false")
        (('size', 12), ('root', '/data'), ('shuffle', False))
    """
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals or not key.isidentifier():
        raise UserInputError(f"must be KEY=VALUE with KEY a Python identifier, got {text!r}")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as err:
        reason = str(err).splitlines()[0]
        raise UserInputError(f"{key}: {value!r} is not a YAML value ({reason}); quote it") from None


def gather_pairs(pairs: list[tuple[str, Any]], param: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as one mapping; a key given twice is refused.

    Example:
        >>> gather_pairs([("size", 12), ("seed", 1)], "data_args")
        {'size': 12, 'seed': 1}
    """
    gathered: dict[str, Any] = {}
    for key, value in pairs:
        if key in gathered:
            raise UserInputError(f"{key} is given twice; give it once", param=param)
        gathered[key] = value
    return gathered


@dataclass(frozen=True)
class Option:
    """One search option as the command line, settings files and the docs show it.

    Declared on a :class:`SearchSettings` field with :func:`_option`; :data:`OPTIONS`
    holds each with its ``name``, ``flag`` and ``default`` filled in.
    """

    #: what it means, one line (``--help`` and :func:`options_table`)
    doc: str
    #: the value from its text: a flag's argument, or a settings file's scalar;
    #: ``None``: a switch (a flag without argument, ``true``/``false`` in a file)
    read: Callable[[str], Any] | None = str
    #: the values it takes, when they are a fixed few
    choices: tuple[str, ...] = ()
    #: given once per ``KEY=VALUE`` pair, gathered into a mapping
    repeated: bool = False
    #: the default in words, where the value alone would not tell (``None``, ``0``)
    default_text: str = ""
    #: the flag's argument in ``--help``
    metavar: str | None = None
    #: the field's name: the ``search()`` keyword and the settings file's key
    name: str = ""
    #: the command-line flag (``--`` and the name with dashes, unless declared)
    flag: str = ""
    #: the value when it is not given
    default: Any = None

    @property
    def shown_default(self) -> str:
        """The default as ``--help`` and the table say it."""
        if self.default_text:
            return self.default_text
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        return "none" if self.default is None else str(self.default)

    @property
    def help(self) -> str:
        """The flag's ``--help`` text: the doc, the choices and the default."""
        choices = f"choices: {', '.join(self.choices)}; " if self.choices else ""
        return f"{self.doc} ({choices}default: {self.shown_default})"


def _option(default: Any, **declared: Any) -> Any:
    """A :class:`SearchSettings` field whose metadata is its :class:`Option`.

    A mutable default (``{}``) is given as a factory.
    """
    option = Option(**declared)
    if isinstance(default, dict):
        return dataclasses.field(default_factory=dict, metadata={"option": option})
    return dataclasses.field(default=default, metadata={"option": option})


@dataclass(frozen=True)
class SearchSettings:
    """The options of one search; :func:`options_table` explains each one."""

    space: str | SearchSpace = _option(
        "digits-tiny",
        doc="built-in space name, YAML file, module:Class or plugin name (in Python also a "
        "SearchSpace)",
    )
    data: str | Callable[..., Any] = _option(
        "digits",
        doc="built-in dataset (digits, cifar10, ...; see `dense-nas data`), a plugin's "
        "datamodule name, or your own LightningDataModule as package.module:Name (a class "
        "or a function returning one, importable in every process; in Python also the "
        "class itself, recorded by its import path)",
    )
    data_args: Mapping[str, Any] = _option(
        {},
        doc="keyword argument of your datamodule, recorded on the study (repeatable); VALUE "
        "is read as a YAML scalar: 12 is a number, true a boolean, '12' (quoted) a string",
        read=key_value,
        repeated=True,
        default_text="none",
        flag="--data-arg",
        metavar="KEY=VALUE",
    )
    data_dir: str | Path | None = _option(
        None,
        doc="where a built-in dataset's files live or are downloaded",
        default_text="the dataset's own",
    )
    val_size: int | float | None = _option(
        None,
        doc="built-in datasets: validation images held out of training, a count or a "
        "fraction, fixed for the study's life; your datamodule holds out its own",
        read=count_or_fraction,
        default_text="5000 for CIFAR, 0.1 elsewhere",
    )
    n_trials: int = _option(
        24,
        doc="finished trials the study should hold: COMPLETE, PRUNED and FAILED count, a "
        "FAILED try that is retried does not (see --retries); a resumed study goes on to N",
        read=whole_number,
        flag="--trials",
        metavar="N",
    )
    timeout: float | None = _option(
        None, doc="stop starting trials after this many seconds", read=number, metavar="S"
    )
    epochs: int | None = _option(
        None,
        doc="epochs per trial; step milestones keep their place",
        read=whole_number,
        default_text="the space's",
    )
    storage: str | None = _option(
        None,
        doc="Optuna storage URL (sqlite:///..., postgresql://..., or a journal file path "
        "ending in .log / .journal)",
        default_text="SQLite in --out",
        metavar="URL",
    )
    study_name: str | None = _option(
        None,
        doc="study name; it names checkpoint files, so at most 128 bytes and no '/'",
        flag="--study",
        default_text="<space>-<data>",
        metavar="NAME",
    )
    sampler: str | BaseSampler = _option(
        "tpe",
        doc="Optuna sampler, seeded with --seed (in Python also a sampler object, used as "
        "it is: its class is recorded, not its settings)",
        choices=tuple(SAMPLERS),
    )
    sampler_args: Mapping[str, Any] = _option(
        {},
        doc="a keyword argument of the sampler's Optuna class over dense-nas's own "
        "(repeatable, e.g. n_startup_trials=2); VALUE is a YAML scalar; checked against the "
        "class and recorded on the study",
        read=key_value,
        repeated=True,
        default_text="none",
        flag="--sampler-arg",
        metavar="KEY=VALUE",
    )
    pruner: str | BasePruner = _option(
        "hyperband",
        doc="Optuna pruner; its resources are epochs (asha: successive halving; in Python "
        "also a pruner object, used as it is: its class is recorded, not its settings)",
        choices=tuple(PRUNERS),
    )
    pruner_args: Mapping[str, Any] = _option(
        {},
        doc="a keyword argument of the pruner's Optuna class over dense-nas's own "
        "(repeatable, e.g. reduction_factor=2); VALUE is a YAML scalar; checked against the "
        "class and recorded on the study",
        read=key_value,
        repeated=True,
        default_text="none",
        flag="--pruner-arg",
        metavar="KEY=VALUE",
    )
    objective: str = _option(
        "accuracy",
        doc="METRIC, or METRIC,SIZE for a Pareto front of the metric against SIZE: params, "
        "macs or latency (measured on the --latency-* target); METRIC (on the validation "
        "set): accuracy (top-1), top5, balanced_accuracy, f1 (macro), auroc (macro, "
        "one-vs-rest) or nll (minimised)",
        metavar="METRIC[,params|macs|latency]",
    )
    max_params: int | None = _option(
        None,
        doc="reject larger architectures (on top of the space's constraints)",
        read=whole_number,
        metavar="N",
    )
    max_latency_ms: float | None = _option(
        None,
        doc="prune, before training, architectures whose latency measured on the --latency-* "
        "target is above X milliseconds per batch (on top of the space's max_latency_ms)",
        read=number,
        metavar="X",
    )
    latency_device: str | None = _option(
        None,
        doc="where latency is measured (with --objective accuracy,latency or a max latency): "
        "the CPU or the first GPU",
        choices=LATENCY_DEVICES,
        default_text="the training accelerator",
    )
    latency_batch: int = _option(
        1, doc="images per timed batch of a latency measurement", read=whole_number, metavar="N"
    )
    latency_threads: int = _option(
        1,
        doc="CPU threads of a latency measurement (1: the usual deployment case)",
        read=whole_number,
        metavar="N",
    )
    latency_runtime: str = _option(
        "torch",
        doc="what runs the network for a latency measurement: eager PyTorch, or onnxruntime "
        "on the ONNX export (pip install 'dense-nas[onnx]')",
        choices=LATENCY_RUNTIMES,
    )
    accelerator: str = _option(
        "auto",
        doc="what training runs on; auto: a GPU when one is visible and the space's median "
        "training step is at least 5 G multiply-accumulates, else the CPU",
        choices=ACCELERATORS,
    )
    precision: str = _option(
        "auto",
        doc="training precision; auto: bf16-mixed on a GPU, 32-true on the CPU (bf16-mixed "
        "pays on CPUs with native bf16; 16-mixed needs a GPU)",
        choices=PRECISIONS,
    )
    devices: int = _option(
        1, doc="devices per trial (DDP when more than one)", read=whole_number, metavar="N"
    )
    workers: int = _option(1, doc="trials run at once", read=whole_number, metavar="N")
    seed: int = _option(
        0,
        doc="training seed, and the sampler seed of the first command on the study (a "
        f"command sharing it with others samples with seed + its slot number); 0 to {MAX_SEED}",
        read=whole_number,
    )
    out: str | Path = _option(
        "dense-nas-runs",
        doc="directory for the default storage, checkpoints and logs",
        metavar="DIR",
    )
    heartbeat: float = _option(
        30.0,
        doc="seconds after which a silent RUNNING trial counts as dead and is retried "
        "(at most 86400, a day)",
        read=number,
        metavar="S",
    )
    retries: int = _option(
        2,
        doc="retries (same parameters) of a trial whose process died of a signal or ran "
        "out of memory, or whose worker went silent, counted in a row: a try that moved "
        "its resume checkpoint on (see --resume-every) uses up none; only its last failed "
        f"try counts toward --trials; a trial that raises in training fails once (0 to "
        f"{MAX_RETRIES})",
        read=whole_number,
        metavar="N",
    )
    resume_every: int = _option(
        1,
        doc="write each running trial's resume checkpoint every N epochs (in <out>/resume/): "
        "a retry of a killed trial goes on from it; a write costs about 70 ms on the CPU, "
        "about a tenth of a digits epoch and under 0.1% of a CIFAR one; 0: none, retries "
        f"start at epoch 0 (0 to {MAX_RESUME_EVERY})",
        read=whole_number,
        metavar="N",
    )
    threads: int = _option(
        0,
        doc="torch threads per trial on the CPU",
        read=whole_number,
        default_text="0: cores / (workers x devices)",
        metavar="N",
    )
    compile: str = _option(
        "auto",
        doc="torch.compile the training step; auto: CUDA graphs on a GPU when the run is long "
        "enough to repay the compile (about 3,600 steps for a 100-layer net), else eager",
        choices=COMPILE_CHOICES,
    )
    verbose: bool = _option(False, doc="show Lightning's own output", read=None)
    logger: str = _option(
        "csv",
        doc="each trial's Lightning loggers, a comma list (csv,wandb) of csv (in "
        "<out>/logs/<study>/trial-<N>/), tensorboard (the same place; pip install "
        "'dense-nas[tensorboard]'), mlflow (a nested run per trial under the study's run; "
        "pip install 'dense-nas[mlflow]') and wandb (a run per trial in a project named "
        "after the study; offline without an API key or with WANDB_MODE=offline; pip "
        "install 'dense-nas[wandb]'), or none",
        metavar="NAMES",
    )
    mlflow_uri: str | None = _option(
        None,
        doc="MLflow tracking URI for --logger mlflow",
        default_text="a local store in <out>/mlruns",
        metavar="URI",
    )
    trainer_config: str | Path | Mapping[str, Any] | None = _option(
        None,
        doc="YAML in LightningCLI's format: trainer: options and callbacks: "
        "(class_path/init_args) for every trial and retrain; recorded on the study (in "
        "Python also its content as a dict)",
        metavar="FILE",
    )
    warm_start: str | None = _option(
        None,
        doc="start a new study from another one: its best --warm-start-top trials that lie "
        "inside this space are trained first, and on the same data its finished trials "
        "that fit are added as history; recorded on the study",
        metavar="STUDY",
    )
    warm_start_storage: str | None = _option(
        None,
        doc="storage of the --warm-start study (URL or journal path)",
        default_text="this study's",
        metavar="URL",
    )
    warm_start_top: int = _option(
        5,
        doc="how many of the --warm-start study's best trials to train first",
        read=whole_number,
        metavar="K",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.data, str):  # other processes rebuild it from the path
            object.__setattr__(self, "data", import_path(self.data, "data", param="data"))
        object.__setattr__(self, "data_args", plain_arguments(self.data_args, "data_args"))
        for kind, chosen in (("sampler", self.sampler), ("pruner", self.pruner)):
            args = plain_arguments(getattr(self, f"{kind}_args"), f"{kind}_args")
            object.__setattr__(self, f"{kind}_args", args)
            if args and not isinstance(chosen, str):
                raise UserInputError(
                    f"settings apply to a {kind} by name; give the {kind} object its own",
                    param=f"{kind}_args",
                )
        check_objective(self.objective)
        from dense_nas.study.loggers import check_loggers

        object.__setattr__(self, "logger", check_loggers(self.logger, self.mlflow_uri))
        for name in (
            "n_trials",
            "devices",
            "workers",
            "warm_start_top",
            "latency_batch",
            "latency_threads",
        ):
            _positive_int(name, getattr(self, name))
        for name in ("epochs", "max_params"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        _whole_number_in("retries", self.retries, MAX_RETRIES)
        _whole_number_in("resume_every", self.resume_every, MAX_RESUME_EVERY)
        _whole_number_in("seed", self.seed, MAX_SEED)
        if self.threads < 0:
            raise UserInputError(
                f"must be 0 (automatic) or more, got {self.threads}", param="threads"
            )
        for name in ("timeout", "heartbeat", "max_latency_ms"):
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
        for option in OPTIONS.values():  # before anything is stored, not when first used
            value = getattr(self, option.name)
            # None: a default said in words; in Python a sampler or pruner may be an object
            if option.choices and isinstance(value, str):
                check_choice(value, option.choices, option.name)

    @property
    def data_name(self) -> str:
        """``data`` as the study records it: a dataset name or ``module:Name``."""
        return self.data if isinstance(self.data, str) else import_path(self.data, "data")

    @property
    def out_dir(self) -> Path:
        """``out`` as a path."""
        return Path(self.out)

    @property
    def resume_dir(self) -> Path | None:
        """Where the resume checkpoints of running trials go (``None``: none are written)."""
        return self.out_dir / "resume" if self.resume_every else None


def _declared_options() -> dict[str, Option]:
    options = {}
    for field in dataclasses.fields(SearchSettings):
        declared: Option = field.metadata["option"]
        factory = field.default_factory
        default = field.default if factory is dataclasses.MISSING else factory()
        flag = declared.flag or "--" + field.name.replace("_", "-")
        options[field.name] = dataclasses.replace(
            declared, name=field.name, flag=flag, default=default
        )
    return options


#: Every search option by its field name, in the fields' order.
OPTIONS: dict[str, Option] = _declared_options()


class SearchOptions(TypedDict, total=False):
    """The keywords of :func:`~dense_nas.study.search`: the :class:`SearchSettings` fields
    with their types (``tests/test_settings.py`` checks they agree); see
    :func:`options_table` for what each one means."""

    space: str | SearchSpace
    data: str | Callable[..., Any]
    data_args: Mapping[str, Any]
    data_dir: str | Path | None
    val_size: int | float | None
    n_trials: int
    timeout: float | None
    epochs: int | None
    storage: str | None
    study_name: str | None
    sampler: str | BaseSampler
    sampler_args: Mapping[str, Any]
    pruner: str | BasePruner
    pruner_args: Mapping[str, Any]
    objective: str
    max_params: int | None
    max_latency_ms: float | None
    latency_device: str | None
    latency_batch: int
    latency_threads: int
    latency_runtime: str
    accelerator: str
    precision: str
    devices: int
    workers: int
    seed: int
    out: str | Path
    heartbeat: float
    retries: int
    resume_every: int
    threads: int
    compile: str
    verbose: bool
    logger: str
    mlflow_uri: str | None
    trainer_config: str | Path | Mapping[str, Any] | None
    warm_start: str | None
    warm_start_storage: str | None
    warm_start_top: int


def options_table() -> str:
    """The search options as a Markdown table: flag, keyword, default, choices, meaning.

    Example:
        >>> table = options_table().splitlines()
        >>> table[0]
        '| Flag | `search()` keyword | Default | Choices | Meaning |'
        >>> print(next(row for row in table if row.startswith("| `--trials")))  # doctest: +ELLIPSIS
        | `--trials N` | `n_trials` | `24` |  | finished trials the study should hold: ... |
        >>> print(next(row for row in table if row.startswith("| `--study")))  # doctest: +ELLIPSIS
        | `--study NAME` | `study_name` | &lt;space&gt;-&lt;data&gt; |  | study name; ... |
    """
    rows = [
        "| Flag | `search()` keyword | Default | Choices | Meaning |",
        "|---|---|---|---|---|",
    ]
    for option in OPTIONS.values():
        flag = f"{option.flag} {option.metavar}" if option.metavar else option.flag
        default = _markdown(option.default_text) or f"`{option.shown_default}`"
        choices = ", ".join(f"`{choice}`" for choice in option.choices)
        cells = (f"`{flag}`", f"`{option.name}`", default, choices, _markdown(option.doc))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _markdown(text: str) -> str:
    """Plain text as a table cell: ``<out>`` is not an HTML tag, ``|`` not a column."""
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


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


def _whole_number_in(name: str, value: object, most: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value <= most):
        raise UserInputError(f"must be a whole number from 0 to {most}, got {value!r}", param=name)

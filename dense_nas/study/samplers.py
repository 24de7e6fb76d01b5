"""Optuna samplers and pruners by the names the command line uses, with the user's settings.

Each name is an Optuna class and the settings dense-nas gives it (:class:`Named`); the
user's ``--sampler-arg`` / ``--pruner-arg`` settings go on top of those
(:func:`check_args` checks them against the class's signature and builds it once, so
Optuna's own checks run before anything is stored). Pruner resources are epochs:
Hyperband and successive halving start at one epoch and grow by a factor of 3 up to the
trial's full schedule. In Python a sampler or pruner object may be given instead of a
name; its settings are its own (:func:`choice_record`).

Example:
    >>> type(make_sampler("tpe", seed=0)).__name__
    'TPESampler'
    >>> type(make_pruner("asha", max_epochs=12)).__name__
    'SuccessiveHalvingPruner'
    >>> make_pruner("hyperband", 9, {"reduction_factor": 2})._reduction_factor
    2
    >>> make_pruner("early", max_epochs=12)
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: pruner: unknown 'early'; choose hyperband, asha, successive-halving, median, percentile, none
    >>> check_args("sampler", "tpe", {"n_startup": 2})
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: sampler_args: TPESampler takes no 'n_startup'; it takes consider_prior, prior_weight, consider_magic_clip, consider_endpoints, n_startup_trials, n_ei_candidates, multivariate, group, warn_independent_sampling, constant_liar
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

from dense_nas.errors import UserInputError
from dense_nas.records import ChoiceRecord

Kind = Literal["sampler", "pruner"]


@dataclass(frozen=True)
class Named:
    """One sampler or pruner name: its Optuna class and what dense-nas sets on it.

    Attributes:
        cls: the Optuna class.
        defaults: dense-nas's settings for it; the user's settings override them.
        owned: settings dense-nas always sets itself (the seed, the epochs), never the user.
        experimental: Optuna marks the class or the defaults experimental; the user chose
            them, so its ExperimentalWarning is kept out of their terminal.
        extra: a package Optuna imports only once the first trial asks (after the study
            is stored and a trial is RUNNING), and the dense-nas extra that installs it.
    """

    cls: type[BaseSampler] | type[BasePruner]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    owned: tuple[str, ...] = ()
    experimental: bool = False
    extra: str = ""

    def check_extra(self, name: str, kind: Kind) -> None:
        """Refuse the name while a missing package is still one line, before anything runs."""
        if self.extra:
            try:
                importlib.import_module(self.extra)
            except ImportError:
                raise UserInputError(
                    f"{name} needs the {self.extra} package: pip install 'dense-nas[{self.extra}]'",
                    param=kind,
                ) from None

    def build(self, settings: Mapping[str, Any]) -> Any:
        """The object with dense-nas's defaults, then ``settings``."""
        with warnings.catch_warnings():
            if self.experimental:
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return self.cls(**{**self.defaults, **settings})


_SEEDED = ("seed",)  # --seed, and the command's sampler slot (study.coordination.slots)

SAMPLERS: dict[str, Named] = {
    # Conditional spaces (bottleneck width only with a bottleneck) want a grouped,
    # multivariate TPE; Optuna marks those options experimental.
    "tpe": Named(
        optuna.samplers.TPESampler,
        {"multivariate": True, "group": True, "n_startup_trials": 8, "constant_liar": True},
        _SEEDED,
        experimental=True,
    ),
    "random": Named(optuna.samplers.RandomSampler, {}, _SEEDED),
    "cmaes": Named(
        optuna.samplers.CmaEsSampler,
        {"warn_independent_sampling": False},
        _SEEDED,
        extra="cmaes",
    ),
    "gp": Named(optuna.samplers.GPSampler, {}, _SEEDED, experimental=True),
    "nsga2": Named(optuna.samplers.NSGAIISampler, {}, _SEEDED),
    "qmc": Named(
        optuna.samplers.QMCSampler,
        {"warn_independent_sampling": False},
        _SEEDED,
        experimental=True,
    ),
}

_HALVING = {"min_resource": 1, "reduction_factor": 3}

PRUNERS: dict[str, Named] = {
    # max_resource is the trial's schedule: --epochs, or the space's.
    "hyperband": Named(optuna.pruners.HyperbandPruner, _HALVING, ("max_resource",)),
    "asha": Named(optuna.pruners.SuccessiveHalvingPruner, _HALVING),
    "successive-halving": Named(optuna.pruners.SuccessiveHalvingPruner, _HALVING),
    "median": Named(optuna.pruners.MedianPruner, {"n_startup_trials": 4, "n_warmup_steps": 1}),
    "percentile": Named(
        optuna.pruners.PercentilePruner,
        {"percentile": 25.0, "n_startup_trials": 4, "n_warmup_steps": 1},
    ),
    "none": Named(optuna.pruners.NopPruner),
}


def choice_record(chosen: str | BaseSampler | BasePruner, args: Mapping[str, Any]) -> ChoiceRecord:
    """What a study records of a sampler or pruner given by name or as an object.

    Example:
        >>> choice_record("tpe", {"n_startup_trials": 2})
        {'name': 'tpe', 'args': {'n_startup_trials': 2}}
        >>> choice_record(optuna.samplers.RandomSampler(seed=1), {})
        {'name': 'RandomSampler', 'args': None}
    """
    if isinstance(chosen, str):
        return ChoiceRecord(name=chosen, args=dict(args))
    return ChoiceRecord(name=type(chosen).__name__, args=None)


def describe_choice(kind: Kind, record: ChoiceRecord) -> str:
    """A recorded sampler or pruner in the words that would choose it again.

    Example:
        >>> describe_choice("pruner", {"name": "hyperband", "args": {"reduction_factor": 2}})
        '--pruner hyperband --pruner-arg reduction_factor=2'
        >>> describe_choice("sampler", {"name": "RandomSampler", "args": None})
        'a RandomSampler object given in Python (its settings are not recorded)'
    """
    if record["args"] is None:
        return f"a {record['name']} object given in Python (its settings are not recorded)"
    pairs = (f" --{kind}-arg {key}={value}" for key, value in record["args"].items())
    return f"--{kind} {record['name']}" + "".join(pairs)


def _named(kind: Kind, name: str) -> Named:
    table = SAMPLERS if kind == "sampler" else PRUNERS
    if name not in table:
        raise UserInputError(f"unknown {name!r}; choose {', '.join(table)}", param=kind)
    return table[name]


# Annotations whose values a YAML scalar can give; anything else (a callable, a sampler)
# is a Python object, which only a sampler or pruner object given in Python can carry.
_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "None": (type(None),),
}


def _takes_scalars(parameter: inspect.Parameter) -> tuple[type, ...] | None:
    """The value types a parameter takes, when all are plain scalars (else ``None``)."""
    annotation = parameter.annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    kinds: tuple[type, ...] = ()
    for part in (piece.strip() for piece in str(text).split("|")):
        if part not in _SCALAR_TYPES:
            return None
        kinds += _SCALAR_TYPES[part]
    return kinds


def check_args(
    kind: Kind, name: str, args: Mapping[str, Any], max_epochs: int | None = None
) -> None:
    """Refuse settings the named sampler or pruner does not take, before anything is stored.

    Each key must be a keyword of the Optuna class that dense-nas does not set itself,
    with a value of the type its signature names; then the object is built once with
    them (and ``max_epochs``, as :func:`make_pruner` builds it) and given a trial, so
    that Optuna's own checks run too.

    Raises:
        UserInputError: ``sampler_args`` / ``pruner_args``, one line naming the key.
    """
    param = f"{kind}_args"
    named = _named(kind, name)
    signature = inspect.signature(named.cls)
    settable = [key for key in signature.parameters if key not in named.owned]
    for key, value in args.items():
        if key in named.owned:
            why = "--seed sets it" if key == "seed" else "--epochs (or the space) sets it"
            raise UserInputError(f"{key}: dense-nas sets it for {name} ({why})", param=param)
        if key not in signature.parameters:
            raise UserInputError(
                f"{named.cls.__name__} takes no {key!r}; it takes "
                + ", ".join(k for k in settable if _takes_scalars(signature.parameters[k])),
                param=param,
            )
        kinds = _takes_scalars(signature.parameters[key])
        if kinds is None:
            raise UserInputError(
                f"{key} takes a Python object; in Python give {kind}= an Optuna {kind} object",
                param=param,
            )
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            wanted = str(signature.parameters[key].annotation).replace("'", "")
            raise UserInputError(f"{key} must be {wanted}, got {value!r}", param=param)
    if args:
        _try(kind, name, args, param, max_epochs)


def _try(kind: Kind, name: str, args: Mapping[str, Any], param: str, epochs: int | None) -> None:
    """Build the object with ``args`` and let it sample or prune one trial of a study in
    memory: Optuna checks most settings only when it first uses them."""
    given = " ".join(f"{key}={value}" for key, value in args.items())
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the throwaway study's warnings are not news
            if kind == "sampler":
                study = optuna.create_study(sampler=make_sampler(name, 0, args=args))
                study.ask().suggest_float("x", 0.0, 1.0)
            else:
                pruner = make_pruner(name, epochs, args)
                study = optuna.create_study(pruner=pruner, direction="maximize")
                trial = study.ask()
                trial.report(0.5, 1)
                trial.should_prune()
    except Exception as err:  # Optuna's checks raise ValueError, TypeError, ZeroDivisionError
        reason = (str(err) or type(err).__name__).splitlines()[0]
        cls = _named(kind, name).cls.__name__
        raise UserInputError(f"{cls} refuses {given}: {reason}", param=param) from None
    finally:
        optuna.logging.set_verbosity(verbosity)


def make_sampler(
    chosen: str | BaseSampler,
    seed: int,
    multi_objective: bool = False,
    args: Mapping[str, Any] | None = None,
) -> BaseSampler:
    """A seeded sampler by name with the user's ``args``; an object is returned as it is."""
    if isinstance(chosen, BaseSampler):
        return chosen
    named = _named("sampler", chosen)
    named.check_extra(chosen, "sampler")
    if multi_objective and chosen in ("cmaes", "gp"):
        raise UserInputError(
            f"{chosen} handles one objective only; use tpe or nsga2 for a multi-objective study",
            param="sampler",
        )
    sampler: BaseSampler = named.build({**(args or {}), "seed": seed})
    return sampler


def make_pruner(
    chosen: str | BasePruner, max_epochs: int | None, args: Mapping[str, Any] | None = None
) -> BasePruner:
    """A pruner by name with the user's ``args``, its resources counted in epochs; an
    object is returned as it is.

    ``max_epochs`` is the most epochs a trial trains (``--epochs``, or the space's
    :attr:`~dense_nas.space.SearchSpace.max_epochs`). With ``None`` (a space that does not
    say) Hyperband reads the maximum from the first trial that trains to the end.
    """
    if isinstance(chosen, BasePruner):
        return chosen
    named = _named("pruner", chosen)
    owned = {"max_resource": max_epochs or "auto"} if "max_resource" in named.owned else {}
    pruner: BasePruner = named.build({**(args or {}), **owned})
    return pruner

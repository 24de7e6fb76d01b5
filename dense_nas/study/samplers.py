"""Optuna samplers and pruners by the names the command line uses.

Pruner resources are epochs: Hyperband and successive halving start at one epoch and
grow by a factor of 3 up to the trial's full schedule.

Example:
    >>> type(make_sampler("tpe", seed=0)).__name__
    'TPESampler'
    >>> type(make_pruner("asha", max_epochs=12)).__name__
    'SuccessiveHalvingPruner'
    >>> make_pruner("early", max_epochs=12)
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: pruner: unknown 'early'; choose hyperband, asha, successive-halving, median, percentile, none
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

from dense_nas.errors import UserInputError


def _quietly(make: Callable[[], BaseSampler]) -> BaseSampler:
    """``make()`` without Optuna's ExperimentalWarning: the user chose the option, and the
    warning would land in their terminal on every command."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return make()


def _tpe(seed: int, multi: bool) -> BaseSampler:
    # Conditional spaces (bottleneck width only with a bottleneck) want a grouped,
    # multivariate TPE; Optuna marks those options experimental.
    return _quietly(
        lambda: optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=8, constant_liar=True
        )
    )


def _cmaes(seed: int, multi: bool) -> BaseSampler:
    # Optuna imports cmaes only when the first trial asks, after the study is stored and
    # a trial is RUNNING: check it now, while a missing package is still one line.
    try:
        import cmaes  # noqa: F401
    except ImportError:
        raise UserInputError(
            "cmaes needs the cmaes package: pip install 'dense-nas[cmaes]'", param="sampler"
        ) from None
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


SAMPLERS: dict[str, Callable[[int, bool], BaseSampler]] = {
    "tpe": _tpe,
    "random": lambda seed, multi: optuna.samplers.RandomSampler(seed=seed),
    "cmaes": _cmaes,
    "gp": lambda seed, multi: optuna.samplers.GPSampler(seed=seed),
    "nsga2": lambda seed, multi: optuna.samplers.NSGAIISampler(seed=seed),
    "qmc": lambda seed, multi: _quietly(  # QMCSampler itself is experimental
        lambda: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    ),
}

PRUNERS: dict[str, Callable[[int | None], BasePruner]] = {
    "hyperband": lambda epochs: optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=epochs or "auto", reduction_factor=3
    ),
    "asha": lambda epochs: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=3
    ),
    "successive-halving": lambda epochs: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=3
    ),
    "median": lambda epochs: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
    "percentile": lambda epochs: optuna.pruners.PercentilePruner(
        25.0, n_startup_trials=4, n_warmup_steps=1
    ),
    "none": lambda epochs: optuna.pruners.NopPruner(),
}


def make_sampler(name: str, seed: int, multi_objective: bool = False) -> BaseSampler:
    """A seeded sampler by name."""
    if name not in SAMPLERS:
        raise UserInputError(f"unknown {name!r}; choose {', '.join(SAMPLERS)}", param="sampler")
    if multi_objective and name in ("cmaes", "gp"):
        raise UserInputError(
            f"{name} handles one objective only; use tpe or nsga2 for a multi-objective study",
            param="sampler",
        )
    return SAMPLERS[name](seed, multi_objective)


def make_pruner(name: str, max_epochs: int | None) -> BasePruner:
    """A pruner by name, its resources counted in epochs.

    ``max_epochs`` is the most epochs a trial trains (``--epochs``, or the space's
    :attr:`~dense_nas.space.SearchSpace.max_epochs`). With ``None`` (a space that does not
    say) Hyperband reads the maximum from the first trial that trains to the end.
    """
    if name not in PRUNERS:
        raise UserInputError(f"unknown {name!r}; choose {', '.join(PRUNERS)}", param="pruner")
    return PRUNERS[name](max_epochs)

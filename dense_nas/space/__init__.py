"""Search spaces: what a study searches, and the rules a candidate must meet.

A space turns an Optuna trial into a :class:`Candidate` (a
:class:`~dense_nas.model.arch.DenseNetConfig` and a :class:`~dense_nas.model.recipe.TrainingConfig`)
for a :class:`Task` (the data's classes, channels and image size). Spaces come from
YAML files (:class:`YamlSearchSpace`, format in ``search_spaces/README.md``), from
Python classes (subclass :class:`SearchSpace`), or from plugin packages (entry-point group
``dense_nas.search_spaces``); :func:`load_space` finds any of them, and
:func:`list_spaces` lists the built-in and plugin ones.

A study calls :func:`sample`, which draws a candidate and rejects one that breaks the
space's :class:`Constraints` before any training; :func:`enqueue_seeds` puts the space's
seed trials first into a new study. :func:`space_version` fingerprints a space, and
:func:`incompatibility` tells whether a study's trials can mix with it.

Example:
    >>> import optuna
    >>> space = load_space("digits-tiny")
    >>> study = optuna.create_study(direction="maximize",
    ...                             sampler=optuna.samplers.RandomSampler(seed=0))
    >>> enqueue_seeds(study, space) > 0
    True
    >>> trial = study.ask()
    >>> candidate = sample(space, trial, Task(num_classes=10, in_channels=1, image_size=(8, 8)))
    >>> candidate.arch.in_channels, candidate.arch.num_classes
    (1, 10)
"""

from __future__ import annotations

from dense_nas.space._base import (
    Candidate,
    Constraints,
    SearchSpace,
    Task,
    enqueue_seeds,
    input_violation,
    sample,
)
from dense_nas.space._registry import ENTRY_POINT_GROUP, SpaceInfo, list_spaces, load_space
from dense_nas.space._version import (
    SpaceVersion,
    incompatibility,
    show_distribution,
    space_version,
)
from dense_nas.space._yaml import YamlSearchSpace

__all__ = [
    "ENTRY_POINT_GROUP",
    "Candidate",
    "Constraints",
    "SearchSpace",
    "SpaceInfo",
    "SpaceVersion",
    "Task",
    "YamlSearchSpace",
    "enqueue_seeds",
    "incompatibility",
    "input_violation",
    "list_spaces",
    "load_space",
    "sample",
    "show_distribution",
    "space_version",
]

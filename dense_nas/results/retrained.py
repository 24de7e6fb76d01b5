"""What the study's retrains measured: each architecture's test accuracy over its seeds.

Every ``dense-nas retrain`` run is kept on the study (:func:`~dense_nas.records.retrain_records`).
Runs of one architecture and recipe (its ``arch_key``, shared by duplicate trials) with
one schedule length are one sample: :func:`retrained_archs` gives their mean and sample
standard deviation over seeds. A seed run twice (the second time its finished checkpoint
is measured again) counts once, with its latest result.

Example:
    >>> runs = [{"trial": 3, "arch_key": "a", "seed": s, "epochs": 2, "test_accuracy": acc}
    ...         for s, acc in [(0, 0.90), (1, 0.94), (1, 0.94)]]
    >>> (arch,) = retrained_archs(runs)
    >>> arch.n, arch.accuracy_text()
    (2, '0.9200 ± 0.0283')
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RetrainedArch:
    """The test accuracies of one architecture and recipe retrained for ``epochs``.

    Attributes:
        arch_key: the architecture's canonical key.
        trials: the trials whose runs these are (duplicates share an ``arch_key``).
        epochs: epochs of the schedule.
        seeds: the seeds, in the order of ``accuracies``.
        accuracies: test accuracy of each seed's run.
    """

    arch_key: str
    trials: tuple[int, ...]
    epochs: int
    seeds: tuple[int, ...]
    accuracies: tuple[float, ...]

    @property
    def n(self) -> int:
        """How many seeds were run."""
        return len(self.accuracies)

    @property
    def mean(self) -> float:
        """Mean test accuracy over the seeds."""
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over the seeds; ``None`` for a single seed."""
        return statistics.stdev(self.accuracies) if self.n > 1 else None

    def accuracy_text(self) -> str:
        """``mean ± std`` with four decimals (only the mean for one seed).

        Example:
            >>> RetrainedArch("a", (0,), 1, (0,), (0.9,)).accuracy_text()
            '0.9000'
        """
        std = self.std
        return f"{self.mean:.4f}" if std is None else f"{self.mean:.4f} ± {std:.4f}"

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for JSON.

        Example:
            >>> RetrainedArch("a", (0,), 1, (5,), (0.9,)).to_dict()["std"] is None
            True
        """
        return {
            "arch_key": self.arch_key,
            "trials": list(self.trials),
            "epochs": self.epochs,
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "seeds": list(self.seeds),
            "test_accuracies": list(self.accuracies),
        }


def retrained_archs(records: Sequence[Mapping[str, Any]]) -> list[RetrainedArch]:
    """Retrain runs grouped by architecture and schedule length, best mean first.

    Args:
        records: the study's :class:`~dense_nas.records.RetrainRecord` runs, oldest first
            (any mapping with their ``trial``, ``arch_key``, ``seed``, ``epochs`` and
            ``test_accuracy``).
    """
    latest: dict[tuple[str, int, int], Mapping[str, Any]] = {}
    trials: dict[tuple[str, int], set[int]] = {}
    for record in records:
        key = record["arch_key"] or f"trial {record['trial']}"
        latest[(key, record["epochs"], record["seed"])] = record  # a later run replaces it
        trials.setdefault((key, record["epochs"]), set()).add(record["trial"])
    groups: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for (key, epochs, seed), record in latest.items():
        groups.setdefault((key, epochs), []).append((seed, float(record["test_accuracy"])))
    archs = [
        RetrainedArch(
            arch_key=key,
            trials=tuple(sorted(trials[(key, epochs)])),
            epochs=epochs,
            seeds=tuple(seed for seed, _ in sorted(runs)),
            accuracies=tuple(acc for _, acc in sorted(runs)),
        )
        for (key, epochs), runs in groups.items()
    ]
    return sorted(archs, key=lambda arch: (-arch.mean, arch.trials, arch.epochs))

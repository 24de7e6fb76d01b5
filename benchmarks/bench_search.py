"""What pruning buys a search, and what a trial costs beyond its training steps.

Runs, in one process and on the same machine, two studies over the ``digits-tiny``
space with the same seed and the same number of trials: one with the Hyperband pruner
(the default) and one without pruning. Prints each study's best validation accuracy and
the epochs it trained in total, the ratios, and the per-trial overhead: the share of a
trial's wall time spent outside training and validation steps (trial process hand-off,
Trainer set-up, data hand-over, checkpoint upload, storage writes).

The space's seed architectures are left out by default, so that both studies start from
the sampler alone and the comparison is about pruning (``--with-seeds`` keeps them).

Usage::

    python benchmarks/bench_search.py --trials 30 --seeds 0 1 2 3 4 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from dense_nas.data import make_datamodule
from dense_nas.results.loading import load_trial
from dense_nas.space import load_space
from dense_nas.study import search


def _trained(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that really trained (not rejected by a constraint, not a reused duplicate)."""
    return [
        t
        for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
        if "epochs" in t.user_attrs and "duplicate_of" not in t.user_attrs
    ]


@torch.no_grad()
def test_accuracy(study: optuna.Study, val_size: float | None, seed: int) -> float:
    """Accuracy on the digits test split of the study's best trial (its own checkpoint).

    The best validation value is the maximum over every fully trained trial, so it is
    biased upwards, and more so the more trials train to the end (the unpruned study);
    the chosen trial's test accuracy is not.
    """
    module = load_trial(study, study.best_trial)
    data = make_datamodule("digits", val_size=val_size, seed=seed)
    data.setup("test")
    correct = total = 0
    for batch in data.test_dataloader():
        images, labels = data.on_after_batch_transfer(batch, 0)
        correct += int((module(images).argmax(dim=1) == labels).sum())
        total += len(labels)
    return correct / total


def run(pruner: str, args: argparse.Namespace, seed: int, out: Path) -> dict[str, float]:
    space = load_space("digits-tiny")
    if not args.with_seeds:
        space.seeds = ()
    started = time.perf_counter()
    study = search(
        space=space,
        n_trials=args.trials,
        epochs=args.epochs,
        val_size=args.val_size,
        threads=args.threads,
        pruner=pruner,
        seed=seed,
        out=out / pruner,
        accelerator="cpu",
        study_name=f"bench-{pruner}",
    )
    wall = time.perf_counter() - started
    trained = _trained(study)
    overheads = [
        (t.user_attrs["seconds"] - t.user_attrs["step_seconds"]) / t.user_attrs["seconds"]
        for t in trained
    ]
    return {
        "best": study.best_value,
        "test": test_accuracy(study, args.val_size, seed),
        "epochs": sum(t.user_attrs["epochs"] for t in trained),
        "pruned": len(study.get_trials(states=(TrialState.PRUNED,))),
        "overhead": statistics.median(overheads),
        "trial_seconds": statistics.median(t.user_attrs["seconds"] for t in trained),
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="one pair of studies each"
    )
    parser.add_argument("--with-seeds", action="store_true", help="keep the space's seed trials")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the space's)")
    parser.add_argument(
        "--val-size", type=float, help="validation fraction (default: the dataset's, 0.1)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads per trial (0: all)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    print(
        f"digits-tiny, {args.trials} trials, sampler seeds {args.seeds}, TPE, cpu "
        f"({platform.machine()}, {args.threads or torch.get_num_threads()} threads a trial), "
        f"val size {args.val_size or 0.1}, torch {torch.__version__}, "
        f"optuna {optuna.__version__}"
    )
    differences, test_differences, ratios, overheads = [], [], [], []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            results = {p: run(p, args, seed, Path(tmp)) for p in ("hyperband", "none")}
        for pruner, r in results.items():
            print(
                f"  seed {seed} {pruner:10s} best {r['best']:.4f}  its test acc {r['test']:.4f}  epochs {r['epochs']:4.0f}  "
                f"pruned {r['pruned']:3.0f}  median trial {r['trial_seconds']:.2f} s  "
                f"overhead {r['overhead']:.1%}  wall {r['wall']:.0f} s"
            )
        pruned, full = results["hyperband"], results["none"]
        differences.append(100 * (pruned["best"] - full["best"]))
        test_differences.append(100 * (pruned["test"] - full["test"]))
        ratios.append(pruned["epochs"] / full["epochs"])
        overheads.append(pruned["overhead"])
    print(
        "best accuracy difference (hyperband - none), points: "
        + ", ".join(f"{d:+.2f}" for d in differences)
        + f"  (mean {statistics.mean(differences):+.2f})"
    )
    print(
        "test accuracy of the best trial, difference (hyperband - none), points: "
        + ", ".join(f"{d:+.2f}" for d in test_differences)
        + f"  (mean {statistics.mean(test_differences):+.2f})"
    )
    print(
        "epochs ratio hyperband / none: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f"  (mean {statistics.mean(ratios):.2f})"
    )
    print(
        f"per-trial overhead (median share of trial time outside steps): {statistics.median(overheads):.1%}"
    )


if __name__ == "__main__":
    main()

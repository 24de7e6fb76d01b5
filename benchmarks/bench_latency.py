"""How well MACs and parameters rank measured latency, and how far a measurement moves.

Draws candidates from a built-in space the way a study does (Optuna's RandomSampler, then
``dense_nas.space.sample``, here with a MACs cap so the whole run stays short; a drawn
candidate over the cap is rejected by the space's own constraint check and the next one
drawn), measures each once in this process with ``dense_nas.model.latency`` and prints:

* a table of the candidates: growth rate, depth, params, MACs, median ms, IQR, runs;
* the Spearman rank correlation of MACs with latency and of params with latency;
* the run-to-run spread: the smallest, middle and largest candidate by MACs, each
  measured several times, each time in a fresh process.

Usage::

    python benchmarks/bench_latency.py --candidates 30 --seed 0 --max-macs 1.5e9

Wall-clock latency on a shared CPU includes the other processes' load: the script prints
the load average before and after, to say how much.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass

import optuna
import scipy
import torch
from optuna.trial import TrialState
from scipy.stats import spearmanr

from dense_nas.model import cost
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.latency import (
    LatencyMeasurement,
    Target,
    device_fingerprint,
    measure_in_fresh_process,
    measure_latency,
)
from dense_nas.space import Constraints, Task, load_space, sample


@dataclass(frozen=True)
class Measured:
    arch: DenseNetConfig
    params: int
    macs: int
    latency: LatencyMeasurement


def draw(
    space_name: str, count: int, seed: int, max_macs: int, task: Task
) -> tuple[list[DenseNetConfig], int]:
    """``count`` distinct architectures of the space under the MACs cap, and how many
    draws the cap rejected."""
    space = load_space(space_name)
    space.constraints = Constraints(max_macs=max_macs)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    found: dict[str, DenseNetConfig] = {}
    rejected = 0
    while len(found) < count:
        trial = study.ask()
        try:
            candidate = sample(space, trial, task)
        except optuna.TrialPruned:
            rejected += 1
            study.tell(trial, state=TrialState.PRUNED)
            continue
        found.setdefault(candidate.arch.key, candidate.arch)
        study.tell(trial, 0.0)
    return list(found.values()), rejected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="densenet-bc-cifar")
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-macs", type=float, default=1.5e9, help="MACs cap per image")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"))
    parser.add_argument("--max-seconds", type=float, default=6.0, help="cap per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per candidate")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    started = time.perf_counter()
    load_before = os.getloadavg()
    target = Target(batch=args.batch, threads=args.threads, runtime=args.runtime)
    fp = device_fingerprint(target)
    size = (args.image_size, args.image_size)
    task = Task(num_classes=args.classes, in_channels=3, image_size=size)
    stopping = {"max_seconds": args.max_seconds}
    print(f"# {fp.key}")
    print(
        f"# python {platform.python_version()}, optuna {optuna.__version__}, "
        f"scipy {scipy.__version__}, {os.cpu_count()} CPUs"
    )
    print(f"# load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")

    archs, rejected = draw(args.space, args.candidates, args.seed, int(args.max_macs), task)
    print(
        f"# {len(archs)} distinct candidates of {args.space} (seed {args.seed}); "
        f"{rejected} draws over {args.max_macs:.3g} MACs rejected\n"
    )
    print("|  # |  k |   L |     params |   MMACs | median ms | IQR/median | runs | converged |")
    print("|---|---|---|---|---|---|---|---|---|")
    measured: list[Measured] = []
    for index, arch in enumerate(archs):
        found = cost.estimate(arch, size)
        latency = measure_latency(arch, size, target, **stopping)
        measured.append(Measured(arch, found.params, found.macs, latency))
        print(
            f"| {index:2d} | {arch.growth_rate:2d} | {arch.depth:3d} | {found.params:10,d} "
            f"| {found.macs / 1e6:7.1f} | {latency.median_ms:9.2f} | {latency.spread:10.1%} "
            f"| {latency.runs:4d} | {latency.converged!s:>9} |",
            flush=True,
        )

    times = [m.latency.median_ms for m in measured]
    rho_macs = spearmanr([m.macs for m in measured], times).statistic
    rho_params = spearmanr([m.params for m in measured], times).statistic
    converged = sum(m.latency.converged for m in measured)
    print(f"\nSpearman rho, MACs vs latency:   {rho_macs:.3f}")
    print(f"Spearman rho, params vs latency: {rho_params:.3f}")
    print(
        f"converged (median to 2%) before the {args.max_seconds:g} s cap: "
        f"{converged} of {len(measured)}"
    )

    by_macs = sorted(measured, key=lambda m: m.macs)
    chosen = [by_macs[0], by_macs[len(by_macs) // 2], by_macs[-1]]
    print(f"\nRun-to-run: each candidate measured {args.repeats} times, each in a fresh process\n")
    print(
        "|  k |   L |   MMACs | in-process ms | fresh-process medians, ms | (max - min) / median |"
    )
    print("|---|---|---|---|---|---|")
    for m in chosen:
        fresh = [
            measure_in_fresh_process(m.arch, size, target, **stopping).median_ms
            for _ in range(args.repeats)
        ]
        span = (max(fresh) - min(fresh)) / statistics.median(fresh)
        print(
            f"| {m.arch.growth_rate:2d} | {m.arch.depth:3d} | {m.macs / 1e6:7.1f} "
            f"| {m.latency.median_ms:13.2f} | {', '.join(f'{t:.2f}' for t in fresh):>25} "
            f"| {span:20.1%} |",
            flush=True,
        )

    load_after = os.getloadavg()
    print(f"\n# load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print(f"# torch {torch.__version__}, {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()

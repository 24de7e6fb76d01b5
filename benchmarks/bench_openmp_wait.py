"""OpenMP's waiting on the CPU: spinning (its default) against passive, idle and loaded.

Trains the digits-tiny seed candidates (Lightning ``fit``, the trial process's path) in
a fresh process per setting, since OpenMP reads its settings when torch loads: with
``OMP_WAIT_POLICY`` unset (OpenMP spins a while, then sleeps), ``PASSIVE`` and
``ACTIVE`` on an idle machine, then unset and ``PASSIVE`` with ``--hogs`` busy loops
started beside it (another program on the same cores). Prints each setting's fit seconds and its ratio to
passive waiting; ``dense_nas/study/process/cpu_wait.py`` chooses between the first two by load.

Usage::

    python benchmarks/bench_openmp_wait.py --fits 4 --repeats 2 --hogs 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {"default": None, "passive": "PASSIVE", "active": "ACTIVE"}

_FITS = """
import sys, time
import lightning as L, optuna
from dense_nas.data import make_datamodule
from dense_nas.model.module import DenseNetModule
from dense_nas.space import Task, enqueue_seeds, load_space, sample
from dense_nas.study.hardware import keep_freed_memory
from dense_nas.study.quiet import quiet_lightning

keep_freed_memory()  # as in a trial process
optuna.logging.set_verbosity(optuna.logging.WARNING)
fits, epochs = int(sys.argv[1]), int(sys.argv[2])
space = load_space("digits-tiny")
datamodule = make_datamodule("digits", seed=0)
task = Task.from_datamodule(datamodule)
study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
enqueue_seeds(study, space)
seconds = 0.0
done = 0
while done < fits:
    trial = study.ask()
    try:
        candidate = sample(space, trial, task)
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        continue
    datamodule.batch_size = candidate.training.batch_size
    L.seed_everything(done, verbose=False)
    module = DenseNetModule.from_candidate(candidate.arch, candidate.training.with_epochs(epochs))
    with quiet_lightning(False):
        trainer = L.Trainer(
            accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        )
        started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        seconds += time.perf_counter() - started
    study.tell(trial, 0.0)
    done += 1
print(seconds)
"""


def fit_seconds(policy: str | None, fits: int, epochs: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    printed = subprocess.run(
        [sys.executable, "-c", _FITS, str(fits), str(epochs)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(printed.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hogs", type=int, default=1, help="busy loops for the loaded case")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, {args.fits} fits x {args.epochs} epochs, torch's threads")
    for load in ("idle", "loaded"):
        hogs = []
        if load == "loaded":
            hogs = [
                subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(args.hogs)
            ]
            time.sleep(0.5)
        try:
            # ACTIVE never sleeps: beside a busy loop it takes minutes, so idle only
            chosen = (
                SETTINGS if load == "idle" else {k: SETTINGS[k] for k in ("default", "passive")}
            )
            times: dict[str, list[float]] = {name: [] for name in chosen}
            for _ in range(args.repeats):
                for name, policy in chosen.items():
                    times[name].append(fit_seconds(policy, args.fits, args.epochs))
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        passive = statistics.median(times["passive"])
        label = load if load == "idle" else f"loaded ({args.hogs} busy loop(s) beside it)"
        for name, runs in times.items():
            print(
                f"  {label:32s} {name:8s} "
                + " ".join(f"{t:6.2f}" for t in runs)
                + f" s   median / passive {statistics.median(runs) / passive:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

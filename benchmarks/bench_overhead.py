"""Seconds per trained epoch: ``dense-nas search`` against the same study hand-wired.

Runs, in one invocation and alternating which goes first, two studies over the same space,
data, seed architectures and sampler seed:

* **dense-nas**: :func:`dense_nas.search` with its defaults (SQLite storage, a warm trial
  process, checkpoints uploaded as artifacts, heartbeats).
* **peer**: what a user writes by hand after Optuna's own Lightning example: one process,
  an in-memory Optuna study, one ``lightning.Trainer`` per trial with
  ``optuna_integration.PyTorchLightningPruningCallback``, no checkpoints. It trains the
  same :class:`~dense_nas.model.module.DenseNetModule` on the same datamodule (built once),
  with the space's own suggest calls, so both studies draw the same candidates.

Each prints its wall time, the epochs it trained (a duplicate candidate reused by
dense-nas trains nothing), and the seconds per trained epoch; the last line is the ratio
dense-nas / peer per repeat and its median. The dense-nas breakdown splits its wall time
into training and validation steps, the rest of each trial (trial hand-off, Trainer
set-up, checkpoint, storage writes) and the study's own set-up.

Needs ``optuna-integration`` (the ``bench`` extra).

Usage::

    python benchmarks/bench_overhead.py --trials 12 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import optuna
import torch
from optuna.trial import TrialState

from dense_nas import search
from dense_nas.data import make_datamodule
from dense_nas.model.module import DenseNetModule
from dense_nas.space import Task, enqueue_seeds, load_space, sample
from dense_nas.study.quiet import quiet_lightning


@dataclass
class Run:
    """One study's timing."""

    wall: float
    epochs: int
    steps: float = 0.0  # seconds inside training and validation steps (dense-nas only)
    trials: float = 0.0  # seconds inside its trials, as the worker measured them

    @property
    def per_epoch(self) -> float:
        return self.wall / max(1, self.epochs)


def run_dense_nas(args: argparse.Namespace, seed: int, out: Path) -> Run:
    started = time.perf_counter()
    study = search(
        space=args.space,
        n_trials=args.trials,
        epochs=args.epochs,
        seed=seed,
        out=out,
        accelerator="cpu",
        threads=args.threads,
        study_name="bench-overhead",
    )
    wall = time.perf_counter() - started
    trained = [
        t.user_attrs
        for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
        if "epochs" in t.user_attrs and "duplicate_of" not in t.user_attrs
    ]
    return Run(
        wall=wall,
        epochs=sum(int(a["epochs"]) for a in trained),
        steps=sum(float(a.get("step_seconds", 0.0)) for a in trained),
        trials=sum(float(a.get("seconds", 0.0)) for a in trained),
    )


class _EpochCounter(L.Callback):
    """Counts validated epochs (the benchmark's bookkeeping, not part of the peer)."""

    def __init__(self) -> None:
        self.history: list[int] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.history.append(trainer.current_epoch)


def run_peer(args: argparse.Namespace, seed: int) -> Run:
    """The hand-wired study, as a user would write it."""
    from optuna_integration import PyTorchLightningPruningCallback

    started = time.perf_counter()
    space = load_space(args.space)
    epochs = args.epochs or space.max_epochs
    datamodule = make_datamodule("digits", seed=seed)
    task = Task.from_datamodule(datamodule)
    trained_epochs = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal trained_epochs
        candidate = sample(space, trial, task)  # raises TrialPruned on a constraint
        training = candidate.training.with_epochs(epochs) if args.epochs else candidate.training
        datamodule.batch_size = training.batch_size
        model = DenseNetModule.from_candidate(candidate.arch, training)
        with quiet_lightning(False):
            trainer = L.Trainer(
                accelerator="cpu",
                max_epochs=training.epochs,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                callbacks=[
                    PyTorchLightningPruningCallback(trial, monitor="val/acc"),
                    epochs_seen := _EpochCounter(),
                ],
            )
        try:
            with quiet_lightning(False):
                trainer.fit(model, datamodule=datamodule)
        finally:  # a pruned trial stops inside fit, after its last validation
            trained_epochs += len(epochs_seen.history)
        return float(trainer.callback_metrics["val/acc"])

    study = optuna.create_study(
        study_name="bench-overhead",  # Hyperband's brackets hash the study name
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs or "auto", reduction_factor=3
        ),
    )
    enqueue_seeds(study, space)
    study.optimize(objective, n_trials=args.trials)
    return Run(wall=time.perf_counter() - started, epochs=trained_epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="digits-tiny")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the space's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"{args.space} on digits, {args.trials} trials, sampler seed {args.seed}, TPE + "
        f"Hyperband, cpu ({platform.machine()}, {torch.get_num_threads()} threads), "
        f"torch {torch.__version__}, lightning {L.__version__}, optuna {optuna.__version__}"
    )
    ratios = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            order = ("dense-nas", "peer") if repeat % 2 == 0 else ("peer", "dense-nas")
            runs = {
                who: run_dense_nas(args, args.seed, Path(tmp))
                if who == "dense-nas"
                else run_peer(args, args.seed)
                for who in order
            }
        ours, peer = runs["dense-nas"], runs["peer"]
        ratio = ours.per_epoch / peer.per_epoch
        ratios.append(ratio)
        for who in order:
            r = runs[who]
            print(
                f"  run {repeat + 1} {who:9s} wall {r.wall:6.1f} s  epochs {r.epochs:4d}  "
                f"{r.per_epoch:.3f} s/epoch"
            )
        print(
            f"  run {repeat + 1} dense-nas breakdown: steps {ours.steps:.1f} s, rest of the "
            f"trials {ours.trials - ours.steps:.1f} s, study set-up and hand-offs "
            f"{ours.wall - ours.trials:.1f} s; ratio {ratio:.3f}"
        )
    print(
        "seconds per trained epoch, dense-nas / peer: "
        + ", ".join(f"{r:.3f}" for r in ratios)
        + f"  (median {statistics.median(ratios):.3f})"
    )


if __name__ == "__main__":
    main()

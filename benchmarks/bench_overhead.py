"""Seconds per trained epoch: ``dense-nas search`` against the same study hand-wired.

Runs, in one invocation and alternating which goes first, two studies over the same space,
data, seed architectures, sampler settings and seeds, each as a user runs it: a command
started from the shell, timed from its start to its exit (imports included).

* **dense-nas**: ``dense-nas search`` with its defaults (SQLite storage, warm trial
  processes started while the command imports, checkpoints uploaded as artifacts,
  heartbeats, a CSV logger per trial).
* **peer**: what a user writes by hand after Optuna's own Lightning example (this file
  run with ``--peer``): one process, an in-memory Optuna study, one ``lightning.Trainer``
  per trial with ``optuna_integration.PyTorchLightningPruningCallback``, no checkpoints,
  no logger. It trains the same :class:`~dense_nas.model.module.DenseNetModule` on the
  same datamodule (built once) with the space's own suggest calls and the same TPE
  options.

By default the peer **replays** the trials dense-nas trained, in order. Its sampler is
TPE with dense-nas's options, which proposes each trial's parameters from the peer's
history as it would (so the peer pays for sampling), and then the parameters of
dense-nas's trial of the same number replace the proposal. Each trial is seeded as
dense-nas seeded it, and a pruner stops it after the epochs dense-nas trained it for
where dense-nas pruned it (raised through the pruning callback as any pruner's verdict
is); a trial dense-nas trained nothing for (a duplicate, a constraint) is pruned before
training. So both train the same networks for the same epochs, and the per-epoch figure
compares what each spends around the same steps. The peer runs after dense-nas on even
repeats and, replaying the previous repeat's trials, before it on odd ones; the line
"same trials" then says whether dense-nas trained exactly those trials again (a seeded
study does on one machine).

``--peer-searches`` lets the peer run its own Hyperband search instead. The two then
prune at different epochs (the pruning callback reports Lightning's 0-based epoch,
dense-nas the number of epochs trained), their TPE histories part after the start-up
trials, and the per-epoch figures compare different mixes of networks.

Each prints its wall time, the epochs it trained (a duplicate candidate reused by
dense-nas trains nothing), and the seconds per trained epoch; the last line is the ratio
dense-nas / peer per repeat and its median. The dense-nas breakdown splits its wall time
into training and validation steps, the rest of each trial as its worker timed it
(hand-off, Trainer set-up, checkpoint, storage writes, and on the first trial the wait
for the trial process's imports) and the command's own start, set-up and exit; the
peer's, into its steps (timed by the same callback) and everything else.

Needs ``optuna-integration`` (the ``bench`` extra).

Usage::

    python benchmarks/bench_overhead.py --repeats 1
    python benchmarks/bench_overhead.py --trials 8 --epochs 6 --pruner none --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState


@dataclass(frozen=True)
class Replayed:
    """One trial of the dense-nas study, as the peer replays it."""

    number: int  # dense-nas's trial number, which seeded its training
    params: dict[str, object]
    epochs: int  # epochs dense-nas trained it for
    pruned: bool  # dense-nas pruned it after those epochs


@dataclass
class Run:
    """One study's timing."""

    wall: float
    epochs: int
    steps: float = 0.0  # seconds inside training and validation steps (dense-nas only)
    trials: float = 0.0  # seconds inside its trials, as the worker measured them
    trials_ended: tuple[Replayed, ...] = ()  # its trials, in order (dense-nas only)

    @property
    def per_epoch(self) -> float:
        return self.wall / max(1, self.epochs)


def _study_options(args: argparse.Namespace) -> list[str]:
    options = ["--space", args.space, "--trials", str(args.trials), "--seed", str(args.seed)]
    options += ["--pruner", args.pruner, "--study", args.study]
    if args.epochs:
        options += ["--epochs", str(args.epochs)]
    if args.threads:
        options += ["--threads", str(args.threads)]
    return options


def run_dense_nas(args: argparse.Namespace, out: Path) -> Run:
    command = [sys.executable, "-m", "dense_nas", "search", *_study_options(args)]
    command += ["--out", str(out), "--accelerator", "cpu"]
    started = time.perf_counter()
    subprocess.run([*command, "--quiet"], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=args.study, storage=f"sqlite:///{out}/dense-nas.db")
    ended = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    trained = [t for t in ended if "epochs" in t.user_attrs and "duplicate_of" not in t.user_attrs]
    return Run(
        wall=wall,
        epochs=sum(int(t.user_attrs["epochs"]) for t in trained),
        steps=sum(float(t.user_attrs.get("step_seconds", 0.0)) for t in trained),
        trials=sum(float(t.user_attrs.get("seconds", 0.0)) for t in trained),
        trials_ended=tuple(
            Replayed(
                number=t.number,
                params=t.params,
                epochs=int(t.user_attrs["epochs"]) if t in trained else 0,
                pruned=t.state == TrialState.PRUNED,
            )
            for t in sorted(ended, key=lambda t: t.number)
        ),
    )


def run_peer(args: argparse.Namespace, replay: tuple[Replayed, ...], out: Path) -> Run:
    command = [sys.executable, __file__, "--peer", *_study_options(args)]
    if not args.peer_searches:
        trials_file = out / "replay.json"
        trials_file.write_text(json.dumps([dataclasses.asdict(t) for t in replay]))
        command += ["--replay", str(trials_file)]
    started = time.perf_counter()
    printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - started
    counted = json.loads(printed.splitlines()[-1])
    return Run(wall=wall, epochs=counted["epochs"], steps=counted["step_seconds"])


class ReplaySampler(optuna.samplers.BaseSampler):
    """TPE as the peer's sampler, whose proposals are computed (and paid for) but replaced
    by the parameters dense-nas's trial of the same number had."""

    def __init__(self, tpe: optuna.samplers.BaseSampler, replay: list[Replayed]) -> None:
        self.tpe = tpe
        self.replay = replay

    def infer_relative_search_space(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial
    ) -> dict[str, optuna.distributions.BaseDistribution]:
        return self.tpe.infer_relative_search_space(study, trial)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        search_space: dict[str, optuna.distributions.BaseDistribution],
    ) -> dict[str, object]:
        self.tpe.sample_relative(study, trial, search_space)
        params = self.replay[trial.number].params
        return {name: params[name] for name in search_space if name in params}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> object:
        self.tpe.sample_independent(study, trial, param_name, param_distribution)
        return self.replay[trial.number].params[param_name]

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.tpe.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.tpe.after_trial(study, trial, state, values)


class ReplayPruner(optuna.pruners.BasePruner):
    """Prunes a replayed trial after the epochs dense-nas trained it for, where it pruned it."""

    def __init__(self, replay: list[Replayed]) -> None:
        self.replay = replay

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        replayed = self.replay[trial.number]
        step = trial.last_step  # the pruning callback reports the 0-based epoch
        return replayed.pruned and step is not None and step + 1 >= replayed.epochs


def peer_study(args: argparse.Namespace) -> None:
    """The hand-wired study, as a user would write it; prints the epochs it trained."""
    import lightning as L
    from optuna_integration import PyTorchLightningPruningCallback

    from dense_nas.data import make_datamodule
    from dense_nas.model.module import DenseNetModule
    from dense_nas.space import Task, enqueue_seeds, load_space, sample
    from dense_nas.study.process.timing import StepTimer
    from dense_nas.study.quiet import quiet_lightning

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(args.space)
    epochs = args.epochs or space.max_epochs
    datamodule = make_datamodule("digits", seed=args.seed)
    task = Task.from_datamodule(datamodule)
    trained_epochs = 0
    step_seconds = 0.0

    class EpochCounter(StepTimer):
        """Times steps and counts validated epochs (bookkeeping, not part of the peer)."""

        def __init__(self) -> None:
            super().__init__()
            self.seen = 0

        def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            self.seen += 1

    replay = (
        [Replayed(**t) for t in json.loads(Path(args.replay).read_text())] if args.replay else []
    )

    def objective(trial: optuna.Trial) -> float:
        nonlocal trained_epochs, step_seconds
        candidate = sample(space, trial, task)  # raises TrialPruned on a constraint
        if replay and not replay[trial.number].epochs:  # dense-nas reused a duplicate's result
            raise optuna.TrialPruned()
        training = (
            candidate.training.with_epochs(args.epochs) if args.epochs else candidate.training
        )
        datamodule.batch_size = training.batch_size
        seed = args.seed + (replay[trial.number].number if replay else trial.number)
        L.seed_everything(seed, workers=True, verbose=False)
        model = DenseNetModule.from_candidate(candidate.arch, training)
        counter = EpochCounter()
        with quiet_lightning(False):
            trainer = L.Trainer(
                accelerator="cpu",
                max_epochs=training.epochs,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                callbacks=[PyTorchLightningPruningCallback(trial, monitor="val/acc"), counter],
            )
        try:
            with quiet_lightning(False):
                trainer.fit(model, datamodule=datamodule)
        finally:  # a pruned trial stops inside fit, after its last validation
            trained_epochs += counter.seen
            step_seconds += counter.step_seconds
        return float(trainer.callback_metrics["val/acc"])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
            seed=args.seed, multivariate=True, group=True, n_startup_trials=8, constant_liar=True
        )
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs or "auto", reduction_factor=3
        )
        if args.pruner == "hyperband"
        else optuna.pruners.NopPruner()
    )
    if replay:
        sampler, pruner = ReplaySampler(sampler, replay), ReplayPruner(replay)
    study = optuna.create_study(
        study_name=args.study,  # Hyperband's brackets hash the study name
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
    )
    if not replay:
        enqueue_seeds(study, space)
    study.optimize(objective, n_trials=len(replay) or args.trials)
    print(json.dumps({"epochs": trained_epochs, "step_seconds": step_seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="digits-tiny")
    parser.add_argument("--trials", type=int, default=24, help="default: dense-nas search's")
    parser.add_argument(
        "--study",
        help="study name, which picks each trial's Hyperband bracket (default: dense-nas "
        "search's, <space>-digits)",
    )
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the space's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all)")
    parser.add_argument(
        "--pruner",
        choices=("hyperband", "none"),
        default="hyperband",
        help="none: every trial trains all its epochs, so both studies train the same epochs",
    )
    parser.add_argument(
        "--peer-searches",
        action="store_true",
        help="the peer runs its own search instead of replaying the trials dense-nas trained",
    )
    parser.add_argument("--peer", action="store_true", help="run the hand-wired study only")
    parser.add_argument("--replay", help=argparse.SUPPRESS)  # the peer's: trials to replay
    args = parser.parse_args()
    args.study = args.study or f"{args.space}-digits"
    if args.peer:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        peer_study(args)
        return
    import lightning
    import torch

    print(
        f"{args.space} on digits, {args.trials} trials, seed {args.seed}, TPE, {args.pruner}, "
        f"cpu ({platform.machine()}, {args.threads or torch.get_num_threads()} threads), "
        f"torch {torch.__version__}, lightning {lightning.__version__}, optuna {optuna.__version__}"
    )
    ratios = []
    replay: tuple[Replayed, ...] = ()
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            # the peer replays dense-nas's trials, so it goes second until there are some
            peer_first = repeat % 2 == 1 and (bool(replay) or args.peer_searches)
            order = ("peer", "dense-nas") if peer_first else ("dense-nas", "peer")
            runs: dict[str, Run] = {}
            for who in order:
                if who == "dense-nas":
                    runs[who] = run_dense_nas(args, Path(tmp) / "dense-nas")
                else:
                    trials = replay if peer_first else runs["dense-nas"].trials_ended
                    runs[who] = run_peer(args, trials, Path(tmp))
        ours, peer = runs["dense-nas"], runs["peer"]
        if peer_first and not args.peer_searches:
            same = "yes" if ours.trials_ended == replay else "no"
            print(f"  run {repeat + 1} same trials as the peer replayed: {same}")
        replay = ours.trials_ended
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
            f"trials {ours.trials - ours.steps:.1f} s, command start, set-up and exit "
            f"{ours.wall - ours.trials:.1f} s; peer: steps {peer.steps:.1f} s, the rest "
            f"{peer.wall - peer.steps:.1f} s; ratio {ratio:.3f}",
            flush=True,
        )
    print(
        "seconds per trained epoch, dense-nas / peer: "
        + ", ".join(f"{r:.3f}" for r in ratios)
        + f"  (median {statistics.median(ratios):.3f})"
    )


if __name__ == "__main__":
    main()

"""Real dense-nas studies built by hand, for the tests of results, export, retrain and report.

Each study is a real Optuna study in SQLite whose trials hold what ``search()`` records:
a real :class:`DenseNetModule` trained a few epochs on the digits data with a real
``lightning.Trainer``, its checkpoint uploaded to the study's artifact store, and the
user attrs of the study contract. Built studies are cached for the whole session (under
pytest's base temp dir), so tests must treat them as read-only; a test that writes to a
study builds its own.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import optuna
import torch
from optuna.artifacts import upload_artifact
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

from dense_nas.data import make_datamodule
from dense_nas.model import cost
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.module import DenseNetModule
from dense_nas.model.recipe import TrainingConfig
from dense_nas.records import TrialLogs, record_study, record_trial, study_attrs, trial_attrs
from dense_nas.space import Candidate
from dense_nas.study.loggers import make_logger, prepare_loggers
from dense_nas.study.objectives import parse_objective
from dense_nas.study.storage import artifact_store, set_artifact_root

IMAGE_SIZE = (8, 8)
BUILT_ATTR = "test:built"  # set last: a study without it is a build that crashed
DISTRIBUTIONS = {
    "growth_rate": IntDistribution(2, 16, step=2),
    "layers": IntDistribution(1, 4),
    "lr": FloatDistribution(0.01, 0.3, log=True),
}


@dataclass(frozen=True)
class Spec:
    """One trial to make.

    Attributes:
        growth_rate, layers: the architecture: two blocks of ``layers`` BC layers.
        lr: learning rate.
        optimizer, warmup_epochs: the rest of the recipe (a cosine schedule).
        epochs: epochs to train (a pruned trial stops after them).
        state: COMPLETE, PRUNED or FAIL (a failed trial trains nothing).
        duplicate_of: answer from that earlier trial instead of training.
        checkpoint_of: record that earlier trial's checkpoint instead of its own (a
            store that does not match the study).
    """

    growth_rate: int = 4
    layers: int = 1
    lr: float = 0.1
    optimizer: str = "sgd"
    warmup_epochs: int = 0
    epochs: int = 1
    state: TrialState = TrialState.COMPLETE
    duplicate_of: int | None = None
    checkpoint_of: int | None = None

    def arch(self) -> DenseNetConfig:
        return DenseNetConfig(
            self.growth_rate, (self.layers, self.layers), in_channels=1, num_classes=10
        )

    def training(self) -> TrainingConfig:
        return TrainingConfig(
            lr=self.lr,
            optimizer=self.optimizer,  # type: ignore[arg-type]  # TrainingConfig checks it
            warmup_epochs=self.warmup_epochs,
            epochs=self.epochs,
            schedule="cosine",
        )


@dataclass(frozen=True)
class BuiltStudy:
    """Where a built study lives."""

    storage: str
    name: str
    out: Path
    specs: tuple[Spec, ...] = field(default=())

    def load(self) -> optuna.Study:
        return optuna.load_study(study_name=self.name, storage=self.storage)


class _Curve(L.Callback):
    """Collects validation accuracy after every epoch (what the trial reports)."""

    def __init__(self) -> None:
        self.values: dict[int, float] = {}

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.values[trainer.current_epoch + 1] = float(trainer.callback_metrics["val/acc"])


def ctrl_c_reaches_it() -> None:
    """``preexec_fn`` for a child that a test sends SIGINT: undo an inherited SIG_IGN.

    A shell without job control starts background commands with SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler in the children of such a run.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: on a shared, busy CPU two threads of tiny convolutions
    spin against each other (measured: 0.5 s against 11 s for the same training)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train(spec: Spec, ckpt: Path, logs: list[TrialLogs]) -> dict[int, float]:
    L.seed_everything(0, verbose=False)
    module = DenseNetModule.from_candidate(spec.arch(), spec.training())
    curve = _Curve()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=spec.epochs,
        callbacks=[curve],
        logger=make_logger(logs, {}),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=make_datamodule("digits", batch_size=64, seed=0))
    trainer.save_checkpoint(ckpt)
    return curve.values


def _describe(study: optuna.Study, spec: Spec, trial: optuna.Trial) -> None:
    candidate = Candidate(spec.arch(), spec.training())
    record_trial(
        trial,
        params=cost.params(candidate.arch),
        macs=cost.macs(candidate.arch, IMAGE_SIZE),
        arch=candidate.arch.to_dict(),
        training=candidate.training.to_dict(),
        arch_key=candidate.key,
        epochs=spec.epochs,
    )


def _report(study: optuna.Study, trial: optuna.Trial, curve: dict[int, float]) -> None:
    if len(study.directions) > 1:
        record_trial(trial, intermediate={str(epoch): acc for epoch, acc in curve.items()})
    else:
        for epoch, acc in curve.items():
            trial.report(acc, epoch)


def _values(study: optuna.Study, trial: optuna.Trial, accuracy: float) -> list[float]:
    objective = parse_objective(study_attrs(study).get("objective", "accuracy"))
    return objective.values(accuracy, trial_attrs(trial))


def _add_trial(study: optuna.Study, spec: Spec, tmp: Path, logs: list[TrialLogs]) -> None:
    study.enqueue_trial({"growth_rate": spec.growth_rate, "layers": spec.layers, "lr": spec.lr})
    trial = study.ask(DISTRIBUTIONS)
    _describe(study, spec, trial)
    if spec.state == TrialState.FAIL:
        record_trial(trial, failure="FloatingPointError: train/loss is nan at step 3")
        study.tell(trial, state=TrialState.FAIL)
        return
    if spec.duplicate_of is not None:
        record_trial(trial, duplicate_of=spec.duplicate_of)
        study.tell(trial, study.trials[spec.duplicate_of].values)
        return
    started = time.perf_counter()
    ckpt = tmp / f"trial-{trial.number}.ckpt"
    curve = _train(spec, ckpt, logs)
    if logs:
        record_trial(trial, logs=logs)
    _report(study, trial, curve)
    record_trial(trial, seconds=round(time.perf_counter() - started, 3))
    if spec.state == TrialState.PRUNED:
        record_trial(trial, pruned_reason="pruned by the test at epoch 1")
        study.tell(trial, state=TrialState.PRUNED)
        return
    artifact = upload_artifact(
        artifact_store=artifact_store(study), file_path=str(ckpt), study_or_trial=trial
    )
    if spec.checkpoint_of is not None:
        artifact = trial_attrs(study.trials[spec.checkpoint_of])["checkpoint"]
    record_trial(trial, checkpoint=artifact)
    study.tell(trial, _values(study, trial, curve[spec.epochs]))


def build_study(
    root: Path,
    name: str,
    specs: Sequence[Spec],
    objective: str = "accuracy",
    logger: str = "none",
) -> BuiltStudy:
    """Make (or, when ``root`` already holds it, reuse) a study with a trial per spec.

    Args:
        root: directory for the SQLite file, the artifact store and ``out``.
        name: study name.
        specs: the trials, in order.
        objective: ``accuracy``, ``accuracy,params`` or ``accuracy,macs``.
        logger: what each trained trial logs to (``--logger``), in ``root`` as ``search``
            would log.
    """
    root.mkdir(parents=True, exist_ok=True)
    built = BuiltStudy(f"sqlite:///{root / 'studies.db'}", name, root, tuple(specs))
    if name in optuna.get_all_study_names(built.storage):
        if BUILT_ATTR in built.load().user_attrs:
            return built
        optuna.delete_study(study_name=name, storage=built.storage)  # a build that crashed
    directions = [StudyDirection.MAXIMIZE]
    if "," in objective:
        directions.append(StudyDirection.MINIMIZE)
    study = optuna.create_study(study_name=name, storage=built.storage, directions=directions)
    set_artifact_root(study, root / "artifacts")
    datamodule = make_datamodule("digits", seed=0)
    record_study(
        study,
        space="test-digits",
        data="digits",
        data_dir=None,
        val_size=datamodule.val_size,
        objective=objective,
        seed=0,
        image_size=list(IMAGE_SIZE),
    )
    with tempfile.TemporaryDirectory() as tmp, one_thread():
        loggers = prepare_loggers(logger, root, name)
        for spec in specs:
            _add_trial(study, spec, Path(tmp), loggers.trial_logs(len(study.trials)))
    study.set_user_attr(BUILT_ATTR, True)
    return built


#: A single-objective study: three completed sizes, a pruned trial, a failed one and a
#: duplicate of the first.
SINGLE = (
    Spec(growth_rate=4, layers=1, lr=0.1, epochs=2),
    Spec(growth_rate=8, layers=2, lr=0.2, epochs=2),
    Spec(growth_rate=2, layers=1, lr=0.05, epochs=1, state=TrialState.PRUNED),
    Spec(growth_rate=6, layers=1, lr=0.03, epochs=2),
    Spec(growth_rate=4, layers=3, state=TrialState.FAIL),
    Spec(growth_rate=4, layers=1, lr=0.1, epochs=2, duplicate_of=0),
)

#: A multi-objective (accuracy, params) study of three completed sizes.
MULTI = (
    Spec(growth_rate=2, layers=1, lr=0.1, epochs=2),
    Spec(growth_rate=6, layers=2, lr=0.1, epochs=2),
    Spec(growth_rate=4, layers=1, lr=0.05, epochs=1, state=TrialState.PRUNED),
    Spec(growth_rate=10, layers=2, lr=0.1, epochs=2),
)


#: Trial 1 records trial 0's checkpoint: a store that does not match the study.
MIXED_UP = (Spec(growth_rate=2), Spec(growth_rate=4, checkpoint_of=0))

_SHARED = {
    "single": (SINGLE, "accuracy"),
    "multi": (MULTI, "accuracy,params"),
    "mixed-up": (MIXED_UP, "accuracy"),
}


def shared_study(base: Path, kind: str) -> BuiltStudy:
    """The session's read-only ``single``, ``multi`` or ``mixed-up`` study (built on first use)."""
    specs, objective = _SHARED[kind]
    return build_study(base / "shared-studies", kind, specs, objective)


def empty_study(root: Path) -> BuiltStudy:
    """A dense-nas study that has no trial yet (as right after ``search`` started)."""
    built = BuiltStudy(f"sqlite:///{root / 'empty.db'}", "empty", root)
    study = optuna.create_study(study_name=built.name, storage=built.storage, direction="maximize")
    set_artifact_root(study, root / "artifacts")
    return built


def predictions(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class scores of a module on a batch, without gradients, in eval mode."""
    with torch.no_grad():
        return module.eval()(images)  # type: ignore[no-any-return]


def digits_batch(n: int = 32) -> torch.Tensor:
    """A real, normalised batch of validation digits (what the module was trained on)."""
    datamodule = make_datamodule("digits", batch_size=n, seed=0)
    datamodule.setup("fit")
    images, _ = datamodule.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)
    return images  # type: ignore[no-any-return]


def searched_study(base: Path) -> BuiltStudy:
    """The session's read-only study made by a real ``search()`` (built on first use).

    Four trials of the tiny test space, one epoch each, on the digits data: what a user's
    study holds, written by the code that writes it, for the results, export, retrain and
    report tests to read.
    """
    from dense_nas.study import search
    from tests.helpers import TINY_SPACE

    root = base / "searched-study"
    built = BuiltStudy(f"sqlite:///{root / 'dense-nas.db'}", "searched", root)
    if root.exists() and BUILT_ATTR in built.load().user_attrs:
        return built
    shutil.rmtree(root, ignore_errors=True)  # a build that crashed
    study = search(
        space=TINY_SPACE,
        n_trials=4,
        epochs=1,
        study_name=built.name,
        pruner="none",
        out=root,
        threads=1,
    )
    study.set_user_attr(BUILT_ATTR, True)
    return built

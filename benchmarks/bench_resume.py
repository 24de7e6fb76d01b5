"""What a trial's resume checkpoint costs per epoch, against the epoch itself.

Trains with :class:`~dense_nas.study.resume.ResumeCheckpoint` writing after every epoch
(to a file in ``--folder``: the disk a study's ``--out`` would be on) and times each write
(Lightning's checkpoint, every rank's random states, fsync, rename) and each epoch without
its write. Two cases:

* **digits**: the default ``digits-tiny`` space's two seed candidates on the embedded
  digits data, as a default study trains them (CPU, batch 64): the write against a real
  epoch.
* **L=100**: DenseNet-BC L=100 k=12 (769,162 parameters) at 32x32 on the CPU, trained on
  two batches of random images per "epoch" so the optimizer holds its momentum buffers;
  the write is set against a CIFAR-10 search epoch (45,000 training images) at the
  images per second given by ``--l100-images-per-second`` (default: the median of
  ``bench_model.py`` in ``benchmarks/RESULTS.md``, 2 threads).

Prints one line per write (``--repeats`` writes a case) and each case's medians.

Usage::

    python benchmarks/bench_resume.py --repeats 7
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from dense_nas.data import LabelledImages, TensorDataModule, make_datamodule
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.module import DenseNetModule
from dense_nas.model.recipe import TrainingConfig
from dense_nas.study.hardware import keep_freed_memory
from dense_nas.study.process.resume import ResumeCheckpoint
from dense_nas.study.quiet import quiet_lightning

CIFAR_SEARCH_TRAIN_IMAGES = 45_000  # CIFAR-10's 50,000 less the 5,000 held out for validation


class TimedResume(ResumeCheckpoint):
    """The real callback, with the seconds each of its writes took."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        started = time.perf_counter()
        super().on_train_epoch_start(trainer, pl_module)
        if trainer.current_epoch:
            self.writes.append(time.perf_counter() - started)


class EpochClock(L.Callback):
    """When each epoch (training and validation) ended."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ends.append(time.perf_counter())

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ends.append(time.perf_counter())


class RandomImages(TensorDataModule):
    """CIFAR-shaped random images: as many as two training batches and one validation one."""

    name = "random"
    num_classes = 10
    in_channels = 3
    image_size = (32, 32)

    def _load_pool(self) -> LabelledImages:
        return self._random(3 * self.batch_size)

    def _load_test(self) -> LabelledImages:
        return self._random(self.batch_size)

    @staticmethod
    def _random(n: int) -> LabelledImages:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
        return LabelledImages(images, torch.randint(0, 10, (n,), generator=generator))


def _train(
    arch: DenseNetConfig, datamodule: Any, repeats: int, folder: Path
) -> tuple[list[float], list[float]]:
    """``(write seconds, epoch seconds without the write)`` of ``repeats`` epochs after the first."""
    module = DenseNetModule.from_candidate(arch, TrainingConfig(epochs=repeats + 1, batch_size=64))
    resume, clock = TimedResume(folder / "resume.ckpt"), EpochClock()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=repeats + 1,
        callbacks=[resume, clock],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with quiet_lightning(False):
        trainer.fit(module, datamodule=datamodule)
    epochs = [end - start for start, end in itertools.pairwise(clock.ends)]
    # epoch i + 1 began with write i: the epoch's own time is what is left
    return resume.writes, [
        epoch - write for epoch, write in zip(epochs[1:], resume.writes, strict=True)
    ]


def _report(name: str, writes: list[float], epochs: list[float], size: int) -> None:
    for i, (write, epoch) in enumerate(zip(writes, epochs, strict=True), 1):
        print(f"{name} write {i}: {write * 1000:.1f} ms, epoch {epoch:.3f} s, {write / epoch:.2%}")
    write, epoch = statistics.median(writes), statistics.median(epochs)
    print(
        f"{name}: median write {write * 1000:.1f} ms ({size / 1e6:.2f} MB), "
        f"median epoch {epoch:.3f} s, write/epoch {write / epoch:.2%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="writes timed per case")
    parser.add_argument("--folder", type=Path, default=None, help="where the file goes")
    parser.add_argument("--l100-images-per-second", type=float, default=72.0)
    args = parser.parse_args()
    keep_freed_memory()  # as a CPU trial process does
    print(
        f"torch {torch.__version__}, lightning {L.__version__}, python {platform.python_version()},"
        f" {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    seeds = {
        "digits 3x4 k=12": DenseNetConfig(growth_rate=12, block_layers=(4, 4, 4), in_channels=1),
        "digits 2x3 k=8": DenseNetConfig(growth_rate=8, block_layers=(3, 3), in_channels=1),
    }
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        for name, arch in seeds.items():
            L.seed_everything(0, verbose=False)
            writes, epochs = _train(
                arch, make_datamodule("digits", batch_size=64), args.repeats, Path(folder)
            )
            _report(name, writes, epochs, _size(Path(folder)))
        l100 = DenseNetConfig.from_depth(100, growth_rate=12, bottleneck=True, compression=0.5)
        writes, _ = _train(
            l100, RandomImages(batch_size=64, val_size=64), args.repeats, Path(folder)
        )
        epoch = CIFAR_SEARCH_TRAIN_IMAGES / args.l100_images_per_second
        print(
            f"L=100 k=12: a CIFAR search epoch at {args.l100_images_per_second} images/s is {epoch:.0f} s"
        )
        _report("L=100 k=12", writes, [epoch] * len(writes), _size(Path(folder)))


def _size(folder: Path) -> int:
    return (folder / "resume.ckpt").stat().st_size


if __name__ == "__main__":
    main()

"""Images/s of dense-nas's whole-batch augmentation against a per-image DataLoader pipeline.

Both pipelines do the same work on CIFAR-shaped data (random uint8 images in memory): a
shuffled epoch of batches, each image normalised to float32 with per-channel statistics,
zero-padded by 4, randomly cropped back to 32x32 and mirrored with probability 1/2 (the
paper's code's order).

* ours: :class:`dense_nas.data.TensorBatches` batches, then the function the datamodule's
  ``on_after_batch_transfer`` hook runs on training batches (``augment``);
* baseline: a ``torch.utils.data.Dataset`` that does the same to one image per
  ``__getitem__`` (as a torchvision ``Compose`` of ``Normalize``, ``RandomCrop`` and
  ``RandomHorizontalFlip`` would), batched by a ``DataLoader`` with 0 and with
  ``--workers`` processes.

Run (prints one table and the ratio; the median of ``--runs`` epochs per pipeline)::

    python benchmarks/bench_data.py --images 50000 --batch-size 64 --runs 3

On a machine shared with other busy processes, ``--threads 1`` avoids torch's OpenMP
threads waiting for each other (which slows small-tensor operations a hundredfold).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dense_nas.data import LabelledImages, TensorBatches
from dense_nas.data.augment import augment, channel_stats

PADDING = 4


class PerImageAugment(Dataset[tuple[Tensor, Tensor]]):
    """The baseline: normalise, pad, crop and flip one image at a time."""

    def __init__(self, data: LabelledImages, mean: Tensor, std: Tensor) -> None:
        self.data = data
        self.mean = mean.view(-1, 1, 1)
        self.std = std.view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = (self.data.images[index] / 255.0 - self.mean) / self.std
        padded = F.pad(image, (PADDING,) * 4)
        top, left = torch.randint(0, 2 * PADDING + 1, (2,)).tolist()
        crop = padded[:, top : top + 32, left : left + 32]
        if torch.rand(()) < 0.5:
            crop = crop.flip(2)
        return crop, self.data.labels[index]


def ours(data: LabelledImages, batch_size: int) -> Callable[[], Iterable[tuple[Tensor, Tensor]]]:
    mean, std = channel_stats(data.images)
    batches = TensorBatches(data, torch.arange(len(data)), batch_size=batch_size, shuffle=True)

    def epoch() -> Iterable[tuple[Tensor, Tensor]]:
        for images, labels in batches:
            yield augment(images, mean, std, padding=PADDING, flip=True), labels

    return epoch


def baseline(
    data: LabelledImages, batch_size: int, workers: int
) -> Callable[[], Iterable[tuple[Tensor, Tensor]]]:
    mean, std = channel_stats(data.images)
    loader = DataLoader(
        PerImageAugment(data, torch.tensor(mean), torch.tensor(std)),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    return lambda: loader


@dataclass(frozen=True)
class Rate:
    """Images per second of wall clock, and per second of this process's CPU time
    (meaningless when worker processes do the work)."""

    wall: float
    cpu: float


def measure(epoch: Callable[[], Iterable[tuple[Tensor, Tensor]]], runs: int) -> Rate:
    """Medians over ``runs`` full epochs; a few batches first start workers and caches.

    CPU time counts only while this process runs, so it holds steady on a machine that
    other jobs share; wall clock is what a user waits.
    """
    for _, _ in zip(range(5), epoch(), strict=False):
        pass
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        seen = 0
        for images, _ in epoch():
            assert images.dtype == torch.float32
            seen += len(images)
        walls.append(seen / (time.perf_counter() - wall))
        cpus.append(seen / (time.process_time() - cpu))
    return Rate(statistics.median(walls), statistics.median(cpus))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="baseline DataLoader workers")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    data = LabelledImages(
        torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8),
        torch.randint(0, 10, (args.images,)),
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, load average "
        f"{os.getloadavg()[0]:.1f}; {args.images} images 3x32x32 uint8, batch "
        f"{args.batch_size}, median of {args.runs} epochs, float32, CPU"
    )
    ours_rate = measure(ours(data, args.batch_size), args.runs)
    baselines = {
        workers: measure(baseline(data, args.batch_size, workers), args.runs)
        for workers in sorted({0, args.workers})
    }
    print(f"{'pipeline':<40} {'images/s':>12} {'images/CPU-s':>14}")
    print(f"{'ours: whole-batch, on device':<40} {ours_rate.wall:>12,.0f} {ours_rate.cpu:>14,.0f}")
    for workers, rate in baselines.items():
        cpu = f"{rate.cpu:,.0f}" if workers == 0 else "(in workers)"
        print(f"{f'baseline: per-image, {workers} workers':<40} {rate.wall:>12,.0f} {cpu:>14}")
    best = max(rate.wall for rate in baselines.values())
    print(f"speed-up, wall clock, over the best baseline: {ours_rate.wall / best:.1f}x")
    print(
        "speed-up, per CPU-second, over the 0-worker baseline: "
        f"{ours_rate.cpu / baselines[0].cpu:.1f}x"
    )


if __name__ == "__main__":
    main()

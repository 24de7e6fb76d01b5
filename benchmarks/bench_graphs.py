"""Launch-bound steps on a GPU: eager, CUDA-graph-captured and compiled, and trials at once.

Two measurements, each in one invocation:

* ``steps``: images/s of a DenseNet training step (dense-nas's network, SGD with
  momentum, bf16 autocast, channels_last) for each preset and batch size, eager, under
  ``torch.compile(mode="reduce-overhead")`` (CUDA graphs) and under ``torch.compile``'s
  default mode, with the first (compiling) steps excluded and their seconds printed; the
  ratios are against eager.
* ``concurrent``: the aggregate images/s of 1, 2, 4, ... processes each training the same
  preset on the one GPU at once (what ``--workers N`` on a one-GPU machine does), and the
  ratio to one process.

Usage::

    python benchmarks/bench_graphs.py steps --presets densenet-bc-100-12 densenet-bc-40-12 \\
        --batch-sizes 64 256
    python benchmarks/bench_graphs.py concurrent --preset densenet-bc-40-12 --processes 1 2 4 8

On the CPU (``--device cpu``) the same code runs, to check it; the figures mean nothing
there.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from dense_nas.model.arch import PRESETS, DenseNetConfig, preset
from dense_nas.model.network import DenseNet

Step = Callable[[], None]


def config(name: str) -> DenseNetConfig:
    """A preset, or ``densenet-bc-DEPTH-K`` for a DenseNet-BC of that depth and growth rate."""
    if name.startswith("densenet-bc-") and name not in PRESETS:
        depth, growth = name.removeprefix("densenet-bc-").split("-")
        return DenseNetConfig.from_depth(int(depth), int(growth))
    return preset(name)


def make_step(
    preset_name: str, batch: int, device: str, mode: str | None
) -> tuple[Step, Callable[[], None]]:
    """One training step of the preset on random CIFAR-shaped data, and a sync."""
    cfg = config(preset_name)
    net = DenseNet(cfg).to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model = net if mode == "eager" else torch.compile(net, mode=None if mode == "default" else mode)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    size = (batch, cfg.in_channels, 32, 32)
    x = torch.randn(size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, cfg.num_classes, (batch,), device=device)
    bf16 = device == "cuda"

    def step() -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    return step, sync


def images_per_second(
    preset_name: str, batch: int, device: str, mode: str, steps: int, warmup: int
) -> tuple[float, float]:
    """(images/s over ``steps`` timed steps, seconds the ``warmup`` steps took)."""
    step, sync = make_step(preset_name, batch, device, mode)
    start = time.perf_counter()
    for _ in range(warmup):  # compiles and captures the graphs
        step()
    sync()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - start), warm


def run_steps(args: argparse.Namespace) -> None:
    for name in args.presets:
        for batch in args.batch_sizes:
            rates: dict[str, float] = {}
            for mode in ("eager", "reduce-overhead", "default"):
                try:
                    rate, warm = images_per_second(
                        name, batch, args.device, mode, args.steps, args.warmup
                    )
                except Exception as err:  # a compile that fails is a result too
                    print(f"{name} batch {batch} {mode:15s} failed: {str(err).splitlines()[0]}")
                    continue
                rates[mode] = rate
                ratio = f"  x{rate / rates['eager']:.2f} eager" if "eager" in rates else ""
                print(
                    f"{name} batch {batch} {mode:15s} {rate:9.0f} images/s "
                    f"(first {args.warmup} steps {warm:.1f} s){ratio}",
                    flush=True,
                )


def _train(
    preset_name: str,
    batch: int,
    device: str,
    mode: str,
    steps: int,
    warmup: int,
    ready: mp.Barrier,
    out: mp.Queue,
) -> None:  # type: ignore[type-arg]
    step, sync = make_step(preset_name, batch, device, mode)
    for _ in range(warmup):
        step()
    sync()
    ready.wait()  # every process is warm: time them together
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    out.put((start, time.perf_counter()))


def run_concurrent(args: argparse.Namespace) -> None:
    context = mp.get_context("spawn")
    single = None
    for n in args.processes:
        rates = []
        for _ in range(args.runs):
            ready, out = context.Barrier(n), context.Queue()
            procs = [
                context.Process(
                    target=_train,
                    args=(
                        args.preset,
                        args.batch_size,
                        args.device,
                        args.mode,
                        args.steps,
                        args.warmup,
                        ready,
                        out,
                    ),
                )
                for _ in range(n)
            ]
            for p in procs:
                p.start()
            spans = [out.get() for _ in procs]
            for p in procs:
                p.join()
            wall = max(end for _, end in spans) - min(start for start, _ in spans)
            rates.append(n * args.batch_size * args.steps / wall)
        rate = statistics.median(rates)
        single = single or rate
        print(
            f"{args.preset} batch {args.batch_size} {args.mode}: {n} at once "
            f"{rate:9.0f} images/s in all (median of {args.runs}), x{rate / single:.2f} one",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed first steps")
    sub = parser.add_subparsers(dest="what", required=True)
    steps = sub.add_parser("steps")
    steps.add_argument("--presets", nargs="+", default=["densenet-bc-100-12", "densenet-bc-40-12"])
    steps.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    concurrent = sub.add_parser("concurrent")
    concurrent.add_argument("--preset", default="densenet-bc-40-12")
    concurrent.add_argument("--batch-size", type=int, default=64)
    concurrent.add_argument("--mode", default="eager", help="eager, reduce-overhead or default")
    concurrent.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    concurrent.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
    )
    (run_steps if args.what == "steps" else run_concurrent)(args)


if __name__ == "__main__":
    main()

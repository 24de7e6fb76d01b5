"""Training-step speed and memory of our DenseNet against torchvision's, in one process.

Runs, on the same architecture (DenseNet-BC L=100 k=12 by default, CIFAR stem), batch and
device, the way each library is used out of the box:

* ``ours``: :class:`dense_nas.DenseNet` as :class:`dense_nas.DenseNetModule` trains it
  (channels_last; bf16 autocast on a GPU);
* ``torchvision``: ``torchvision.models.DenseNet`` with its stem swapped for the CIFAR
  3x3 conv (its default NCHW layout; bf16 autocast on a GPU too);

and prints images/s per training step (forward, backward, SGD step) and the ratio. On the
CPU the process first makes glibc keep freed memory, as dense-nas's CPU training does
(``--allocator default`` leaves it alone); the two models share the process, so the
baseline trains with the same allocator. Then
it compares our memory-efficient mode with our plain mode: bytes autograd saves for
backward (CPU and GPU) and peak allocated memory (GPU only), and the ratio.

Usage (torchvision does not import beside the 2.13 CPU torch; tox has an env for it)::

    tox -e bench -- --runs 3
    python benchmarks/bench_model.py --device cuda --batch-size 64 --runs 5
    python benchmarks/bench_model.py --memory-only   # no torchvision needed
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from dense_nas.model.arch import DenseNetConfig, preset
from dense_nas.model.measure import saved_tensor_bytes
from dense_nas.model.network import DenseNet
from dense_nas.study.hardware import keep_freed_memory


def torchvision_densenet(cfg: DenseNetConfig) -> nn.Module:
    """torchvision's DenseNet with the same blocks, growth, width and CIFAR stem."""
    from torchvision.models import DenseNet as TVDenseNet

    if not cfg.bottleneck or cfg.compression != 0.5:
        raise SystemExit("torchvision's DenseNet is always BC with theta=0.5; pick such a config")
    model = TVDenseNet(
        growth_rate=cfg.growth_rate,
        block_config=cfg.block_layers,
        num_init_features=cfg.init_channels,
        bn_size=cfg.bottleneck_width,
        num_classes=cfg.num_classes,
    )
    features = model.features
    features.conv0 = nn.Conv2d(cfg.in_channels, cfg.init_channels, 3, padding=1, bias=False)
    for name in ("norm0", "relu0", "pool0"):
        delattr(features, name)
    return model


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[object]:
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_step(
    model: nn.Module, x: Tensor, y: Tensor, channels_last: bool, bf16: bool
) -> Callable[[], None]:
    """One SGD training step of ``model`` on a fixed batch (under bf16 autocast), as a closure."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4
    )
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(x.device, bf16):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(
    step: Callable[[], None], batch: int, steps: int, device: torch.device
) -> float:
    """Throughput of ``steps`` training steps after two warm-up steps."""
    for _ in range(2):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


@contextlib.contextmanager
def _peak_cuda(device: torch.device) -> Iterator[list[int]]:
    box = [0]
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    yield box
    if device.type == "cuda":
        box[0] = torch.cuda.max_memory_allocated(device) - base


def memory_figures(cfg: DenseNetConfig, x: Tensor, y: Tensor, bf16: bool) -> tuple[int, int]:
    """(saved-for-backward bytes, peak GPU bytes of one step or 0 on CPU) for ``cfg``."""
    model = DenseNet(cfg).to(x.device).to(memory_format=torch.channels_last).train()
    xs = x.contiguous(memory_format=torch.channels_last)
    with _autocast(x.device, bf16):
        saved = saved_tensor_bytes(model, xs)
    step = make_step(model, x, y, channels_last=True, bf16=bf16)
    step()
    with _peak_cuda(x.device) as peak:
        step()
    return saved, peak[0]


def compare_speed(
    cfg: DenseNetConfig, x: Tensor, y: Tensor, bf16: bool, args: argparse.Namespace
) -> None:
    """Print images/s of ours and torchvision's training step, interleaved runs, medians."""
    device = x.device
    torch.manual_seed(0)
    steps = {
        "ours (channels_last)": make_step(DenseNet(cfg).to(device), x, y, True, bf16),
        "torchvision (NCHW)": make_step(torchvision_densenet(cfg).to(device), x, y, False, bf16),
    }
    if args.compile:
        compiled = torch.compile(DenseNet(cfg).to(device))
        steps["ours (compiled)"] = make_step(compiled, x, y, True, bf16)  # type: ignore[arg-type]
    results: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(args.runs):  # interleaved, so drift in machine load hits both alike
        for label, step in steps.items():
            results[label].append(images_per_second(step, args.batch_size, args.steps, device))
    medians = {label: statistics.median(values) for label, values in results.items()}
    for label, value in medians.items():
        print(
            f"  {label:24s} {value:9.1f} images/s  (runs: {', '.join(f'{v:.1f}' for v in results[label])})"
        )
    theirs = medians["torchvision (NCHW)"]
    for label, value in medians.items():
        if label.startswith("ours"):
            print(f"speed ratio {label} / torchvision: {value / theirs:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="densenet-bc-100-12")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per model; the median is kept")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time our model under torch.compile"
    )
    parser.add_argument(
        "--allocator",
        choices=("tuned", "default"),
        default="tuned",
        help="tuned: the process keeps freed memory, as dense-nas's CPU training does "
        "(both models share the process, so both get it); default: glibc as it comes",
    )
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="skip the speed comparison (and torchvision): plain against memory-efficient "
        "memory only, which runs beside the 2.13 CPU torch",
    )
    parser.add_argument(
        "--cpu-bf16",
        action="store_true",
        help="bf16 autocast on the CPU for both models, as `--precision bf16-mixed` trains "
        "(dense-nas's CPU default is fp32)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    bf16 = device.type == "cuda" or args.cpu_bf16
    tuned = args.allocator == "tuned" and device.type == "cpu" and keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cfg = preset(args.preset)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, cfg.in_channels, args.image_size, args.image_size, generator=g)
    y = torch.randint(0, cfg.num_classes, (args.batch_size,), generator=g)
    x, y = x.to(device), y.to(device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"{args.preset}, batch {args.batch_size}, {args.image_size}x{args.image_size}, "
        f"{device.type} ({name or platform.machine()}), {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, precision {'bf16 autocast' if bf16 else 'fp32'}"
        + ("" if args.memory_only else f", {args.runs} runs x {args.steps} steps (median)")
        + (", C allocator keeps freed memory" if tuned else "")
    )
    if not args.memory_only:
        compare_speed(cfg, x, y, bf16, args)

    plain_saved, plain_peak = memory_figures(cfg, x, y, bf16)
    lean_saved, lean_peak = memory_figures(cfg.replace(memory_efficient=True), x, y, bf16)
    print(f"  plain             saved for backward {plain_saved / 2**20:8.1f} MiB")
    print(f"  memory-efficient  saved for backward {lean_saved / 2**20:8.1f} MiB")
    print(f"activation memory ratio memory-efficient / plain: {lean_saved / plain_saved:.2f}")
    if device.type == "cuda":
        print(
            f"  peak step memory plain {plain_peak / 2**20:.1f} MiB, "
            f"memory-efficient {lean_peak / 2**20:.1f} MiB, "
            f"ratio {lean_peak / plain_peak:.2f}"
        )


if __name__ == "__main__":
    main()

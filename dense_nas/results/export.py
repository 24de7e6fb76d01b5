"""Export a trained DenseNet to a file, then prove the file computes what the module does.

Formats (:data:`FORMATS`):

- ``onnx``: an ONNX graph (one file, dynamic batch axis, input ``images``, output
  ``logits``), checked with onnxruntime. Needs ``pip install 'dense-nas[onnx]'``.
- ``torchscript``: a traced TorchScript module, checked with ``torch.jit.load``
  (TorchScript is deprecated upstream in favour of ``torch.export``; still widely read).
- ``state-dict``: the plain ``DenseNet`` state dict (``torch.save``), checked by loading it
  weights-only into a fresh :class:`~dense_nas.model.network.DenseNet` built from the architecture.
- ``exported-program``: a ``torch.export`` program (``.pt2``, dynamic batch axis),
  checked with ``torch.export.load``.

What is exported is the plain network (``module.model``), so the file needs neither
Lightning nor dense-nas (except ``state-dict``, which needs the architecture). Inputs
are normalised image batches, as the study's datamodule feeds them.

Example:
    >>> import pathlib, tempfile
    >>> from dense_nas.model.arch import DenseNetConfig
    >>> from dense_nas.model.module import DenseNetModule
    >>> module = DenseNetModule(DenseNetConfig(4, (1, 1), in_channels=1)).eval()
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "net.pt"
    >>> export_checked(module, path, "state-dict", (8, 8)) < 1e-4
    True
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from dense_nas.errors import UserInputError, check_choice
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.module import DenseNetModule
from dense_nas.model.network import DenseNet
from dense_nas.paths import check_output_file, copy_whole

#: Outputs may differ from the module's by ``ATOL + RTOL * |module output|`` (float32
#: kernels differ between runtimes; a wrong weight differs by orders of magnitude more).
ATOL = 1e-4
RTOL = 1e-3


class ExportMismatch(RuntimeError):
    """The exported file's outputs differ from the module's: the export is wrong."""


@dataclass(frozen=True)
class _Format:
    write: Callable[[nn.Module, Path, Tensor], None]
    run: Callable[[Path, DenseNetConfig, Tensor], Tensor]


def _batch_dim() -> dict[int, torch.export.Dim]:
    return {0: torch.export.Dim("batch")}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence exporters' chatter (deprecations, optional-op notes) around one export."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        onnx_log.setLevel(level)


def _write_onnx(network: nn.Module, path: Path, example: Tensor) -> None:
    _needs_onnx()
    torch.onnx.export(
        network,
        (example,),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=(_batch_dim(),),
        external_data=False,  # one self-contained file; DenseNets stay far below 2 GB
        dynamo=True,  # the torch.export-based exporter (the default from torch 2.9 on)
        verbose=False,
    )


def _run_onnx(path: Path, config: DenseNetConfig, images: Tensor) -> Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (logits,) = session.run(None, {name: images.numpy()})
    return torch.from_numpy(logits)


def _needs_onnx() -> None:
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise UserInputError(
            "--format onnx: needs onnx, onnxscript and onnxruntime; pip install 'dense-nas[onnx]'"
        ) from None


def _write_torchscript(network: nn.Module, path: Path, example: Tensor) -> None:
    traced = torch.jit.trace(network, example)  # type: ignore[no-untyped-call]
    torch.jit.save(traced, str(path))


def _run_torchscript(path: Path, config: DenseNetConfig, images: Tensor) -> Tensor:
    loaded = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    return loaded(images)  # type: ignore[no-any-return]


def _write_state_dict(network: nn.Module, path: Path, example: Tensor) -> None:
    torch.save(network.state_dict(), path)


def _run_state_dict(path: Path, config: DenseNetConfig, images: Tensor) -> Tensor:
    network = DenseNet(config)
    network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return network.eval()(images)  # type: ignore[no-any-return]


def _write_exported_program(network: nn.Module, path: Path, example: Tensor) -> None:
    program = torch.export.export(network, (example,), dynamic_shapes=(_batch_dim(),))
    torch.export.save(program, path)


def _run_exported_program(path: Path, config: DenseNetConfig, images: Tensor) -> Tensor:
    return torch.export.load(path).module()(images)  # type: ignore[no-any-return]


_FORMATS: dict[str, _Format] = {
    "onnx": _Format(_write_onnx, _run_onnx),
    "torchscript": _Format(_write_torchscript, _run_torchscript),
    "state-dict": _Format(_write_state_dict, _run_state_dict),
    "exported-program": _Format(_write_exported_program, _run_exported_program),
}
FORMATS: tuple[str, ...] = tuple(_FORMATS)
"""The formats :func:`export_network` writes."""


def _format(fmt: str) -> _Format:
    check_choice(fmt, FORMATS, "format")
    return _FORMATS[fmt]


def plain_network(module: DenseNetModule) -> DenseNet:
    """A standalone copy of the module's network in eval mode, in the default memory layout.

    The copy keeps the module untouched; the contiguous layout keeps exporters from
    warning about (and files from storing) channels-last strides.

    Example:
        >>> module = DenseNetModule(DenseNetConfig(4, (1,), in_channels=1))
        >>> network = plain_network(module)
        >>> type(network).__name__, network.training, module.training
        ('DenseNet', False, True)
    """
    network = copy.deepcopy(module.model).cpu().eval()
    network.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return network


def sample_images(config: DenseNetConfig, image_size: tuple[int, int], batch: int = 8) -> Tensor:
    """A fixed batch of normalised-looking images (standard normal) for the checks.

    Example:
        >>> sample_images(DenseNetConfig(4, (1,), in_channels=1), (8, 8), batch=3).shape
        torch.Size([3, 1, 8, 8])
    """
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, config.in_channels, *image_size, generator=generator)


def export_network(module: DenseNetModule, path: Path, fmt: str, example: Tensor) -> None:
    """Write the module's network to ``path`` in ``fmt``, traced on ``example``.

    Example:
        >>> import pathlib, tempfile
        >>> module = DenseNetModule(DenseNetConfig(4, (1,), in_channels=1))
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "net.pt2"
        >>> export_network(module, path, "exported-program", torch.randn(2, 1, 8, 8))
        >>> path.stat().st_size > 0
        True
    """
    writer = _format(fmt).write
    check_output_file(path, "path")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporters fail on a full disk with their own errors (torch's are RuntimeErrors)
    # and leave what they wrote: they write to scratch space, the copy is whole or absent.
    with tempfile.TemporaryDirectory(prefix="dense-nas-export-") as scratch:
        made = Path(scratch) / path.name
        with _quiet(), torch.no_grad():
            writer(plain_network(module), made, example)
        copy_whole(made, path)


def check_export(module: DenseNetModule, path: Path, fmt: str, images: Tensor) -> float:
    """Run the exported file on ``images`` and compare with the module.

    Returns:
        The largest absolute difference of the logits.

    Raises:
        ExportMismatch: the outputs differ beyond ``ATOL + RTOL * |expected|``, or have
            another shape.

    Example:
        >>> import pathlib, tempfile
        >>> module = DenseNetModule(DenseNetConfig(4, (1,), in_channels=1))
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "net.ts"
        >>> export_network(module, path, "torchscript", torch.randn(2, 1, 8, 8))
        >>> check_export(module, path, "torchscript", torch.randn(5, 1, 8, 8)) < ATOL
        True
    """
    runner = _format(fmt).run
    with _quiet(), torch.no_grad():
        expected = module.eval().cpu()(images)
        got = runner(path, module.config, images).to(expected.dtype)
    if got.shape != expected.shape:
        raise ExportMismatch(
            f"export check failed: {fmt} file {path} gives outputs of shape "
            f"{tuple(got.shape)}, the module {tuple(expected.shape)}"
        )
    difference = (got - expected).abs()
    if not bool((difference <= ATOL + RTOL * expected.abs()).all()):
        raise ExportMismatch(
            f"export check failed: {fmt} file {path} differs from the module by up to "
            f"{difference.max().item():.3g} (allowed {ATOL:g} + {RTOL:g}*|output|)"
        )
    return float(difference.max().item()) if difference.numel() else 0.0


def export_checked(
    module: DenseNetModule, path: Path, fmt: str, image_size: tuple[int, int], batch: int = 8
) -> float:
    """Export, then check the file on a larger batch than the one it was traced on.

    Checking on another batch size proves the batch axis of the file is really dynamic.

    Returns:
        The largest absolute difference between the file's and the module's logits.

    Raises:
        ExportMismatch: the file computes something else.
        UserInputError: an unknown format, or a missing optional dependency.
    """
    images = sample_images(module.config, image_size, batch)
    export_network(module, path, fmt, images[:2])
    return check_export(module, path, fmt, images)

"""``dense-nas export``: every format is written, runs, and computes what the module does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import numpy as np
import optuna
import pytest
import torch

from dense_nas.cli import main
from dense_nas.cli._args import FORMAT_CHOICES
from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.module import DenseNetModule
from dense_nas.model.network import DenseNet
from dense_nas.results.export import FORMATS, ExportMismatch, check_export, export_network
from dense_nas.results.loading import load_best
from tests._study_fixtures import BuiltStudy, digits_batch, empty_study, shared_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _export_args(built: BuiltStudy, fmt: str, output: Path) -> list[str]:
    return [
        "export",
        "--study",
        built.name,
        "--storage",
        built.storage,
        "--format",
        fmt,
        "--output",
        str(output),
    ]


def _run_file(fmt: str, path: Path, config: DenseNetConfig, images: torch.Tensor) -> torch.Tensor:
    """Run an exported file with its format's own runtime (the test's oracle)."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (logits,) = session.run(["logits"], {"images": images.numpy()})
        return torch.from_numpy(np.asarray(logits))
    if fmt == "torchscript":
        return torch.jit.load(str(path))(images)  # type: ignore[no-untyped-call,no-any-return]
    if fmt == "exported-program":
        return torch.export.load(path).module()(images)  # type: ignore[no-any-return]
    network = DenseNet(config)
    network.load_state_dict(torch.load(path, weights_only=True))
    return network.eval()(images)  # type: ignore[no-any-return]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("fmt", FORMATS)
def test_export_writes_a_file_that_matches_the_module(
    fmt: str, single: BuiltStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / f"best.{fmt}"
    assert main(_export_args(single, fmt, output)) == 0
    assert output.is_file() and output.stat().st_size > 0
    assert f"wrote {output} ({fmt})" in capsys.readouterr().out
    module = load_best(single.storage, single.name)
    images = digits_batch(13)  # real data, and a batch size the file was not traced with
    with torch.no_grad():
        torch.testing.assert_close(
            _run_file(fmt, output, module.config, images), module(images), atol=1e-4, rtol=1e-3
        )


def test_export_of_another_network_is_caught(tmp_path: Path) -> None:
    config = DenseNetConfig(4, (1, 1), in_channels=1)
    path = tmp_path / "other.pt2"
    images = torch.randn(4, 1, 8, 8)
    export_network(DenseNetModule(config), path, "exported-program", images[:2])
    torch.manual_seed(1)
    with pytest.raises(ExportMismatch, match=r"exported-program file .* differs from the module"):
        check_export(DenseNetModule(config), path, "exported-program", images)


def test_a_wrong_export_exits_1_with_one_line(
    single: BuiltStudy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dense_nas.results import export

    def broken_writer(network: torch.nn.Module, path: Path, example: torch.Tensor) -> None:
        config = cast(DenseNet, network).config
        torch.save(DenseNet(config).state_dict(), path)  # fresh weights: an exporter bug

    original = export._FORMATS["state-dict"]
    monkeypatch.setitem(export._FORMATS, "state-dict", export._Format(broken_writer, original.run))
    assert main(_export_args(single, "state-dict", tmp_path / "bad.pt")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dense-nas: error: export check failed: state-dict file")
    assert "\n" not in err


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "--study: no study named 'nope'"),
        ("empty", "--study: study 'empty' has no completed trials yet"),
        ("mixed-up", "checkpoint: holds another architecture"),
    ],
)
def test_bad_studies_exit_2_with_one_line(
    case: str,
    expected: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = tmp_path_factory.getbasetemp()
    built = (
        empty_study(tmp_path)
        if case == "empty"
        else shared_study(base, "single" if case == "missing" else case)
    )
    output = tmp_path / "m.onnx"
    args = _export_args(built, "onnx", output)
    if case == "missing":
        args[2] = "nope"
    if case == "mixed-up":
        args += ["--trial", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dense-nas: error: {expected}") and err.count("\n") == 1
    assert not output.exists()


def test_missing_study_through_python_dash_m(single: BuiltStudy, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dense_nas",
            "export",
            "--study",
            "nope",
            "--storage",
            single.storage,
            "--format",
            "onnx",
            "--output",
            str(tmp_path / "m.onnx"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("dense-nas: error: --study: no study named 'nope'")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--study", "x", "--format", "pickle", "--output", "m"]) == 2
    assert "invalid choice: 'pickle'" in capsys.readouterr().err


# Every format the command offers reaches an exporter here (a choice it knows nothing of
# would be exit 2), and every exporter is offered: the test above runs each via the CLI.
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("fmt", FORMAT_CHOICES)
def test_a_full_disk_is_one_line_and_exit_1(
    single: BuiltStudy, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    code = main(_export_args(single, fmt, Path("/dev/full")))
    err = capsys.readouterr().err
    assert (code, err.count("\n")) == (1, 1), err
    assert err.startswith("dense-nas: error: cannot write /dev/full: No space left on device")


def test_a_write_cut_short_leaves_no_partial_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    import resource
    import signal

    from dense_nas.errors import StorageError
    from dense_nas.paths import copy_whole

    source, target = tmp_path / "made.bin", tmp_path / "out" / "model.bin"
    source.write_bytes(os.urandom(1 << 16))
    target.parent.mkdir()
    target.write_bytes(b"the last export")
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 12, limits[1]))  # a disk full at 4 KiB
    try:
        with pytest.raises(StorageError, match=f"cannot write {target}: File too large"):
            copy_whole(source, target)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert [p.name for p in target.parent.iterdir()] == ["model.bin"]
    assert target.read_bytes() == b"the last export"
    copy_whole(source, target)
    assert target.read_bytes() == source.read_bytes()

"""Compiled (CUDA-graph) training steps: when a run compiles, and eager when compiling fails.

The decision rule and the fallback run on the CPU; whether graphs pay on a GPU is measured
by ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dense_nas.errors import UserInputError
from dense_nas.model.arch import DenseNetConfig, preset
from dense_nas.model.graphs import (
    COMPILE_CHOICES,
    COMPILE_SECONDS,
    MARGIN,
    CompiledForward,
    compile_mode,
    worth_capturing,
)
from dense_nas.model.module import DenseNetModule
from dense_nas.study.settings import COMPILE_CHOICES as CLI_CHOICES
from dense_nas.study.settings import SearchSettings
from tests.helpers import ROOT, main_in_process

TINY = DenseNetConfig(4, (2, 2), in_channels=1, init_channels=8, num_classes=4)


def test_the_cli_offers_the_choices_the_rule_knows() -> None:
    assert CLI_CHOICES == COMPILE_CHOICES


@pytest.mark.parametrize("name", ["densenet-40-12", "densenet-bc-100-12", "densenet-bc-250-24"])
def test_a_gpu_run_captures_once_its_steps_repay_the_compile(name: str) -> None:
    arch = preset(name)
    steps = [10, 100, 1_000, 3_000, 10_000, 100_000, 1_000_000]
    decisions = [worth_capturing("gpu", arch, n) for n in steps]
    assert decisions == sorted(decisions)  # never off again once on
    assert decisions[0] is False and decisions[-1] is True
    # deeper networks launch more kernels a step, so they earn the compile back sooner
    first = steps[decisions.index(True)]
    assert worth_capturing("gpu", preset("densenet-bc-250-24"), first)
    assert COMPILE_SECONDS * MARGIN > 0


def test_cpu_runs_and_unknown_lengths_stay_eager_unless_asked() -> None:
    big = preset("densenet-bc-100-12")
    assert compile_mode("auto", "cpu", big, 10**9) is False
    assert compile_mode("auto", "gpu", big, None) is False
    assert compile_mode("auto", "gpu", big, 10**6) == "reduce-overhead"
    assert compile_mode("on", "gpu", big, 1) == "reduce-overhead"
    assert compile_mode("on", "cpu", big, 1) is True
    assert compile_mode("off", "gpu", big, 10**9) is False


def test_a_bad_compile_choice_is_refused_up_front(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserInputError, match="compile: must be one of auto, on, off"):
        SearchSettings(compile="always")
    ran = main_in_process(
        capsys, "search", "--compile", "always", "--out", "/nonexistent-never-made"
    )
    assert ran.returncode == 2
    assert "--compile" in ran.stderr and "Traceback" not in ran.stderr
    assert not Path("/nonexistent-never-made").exists()


def _loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 4, (32,), generator=g)
    )
    return DataLoader(data, batch_size=16)


def _fit(module: DenseNetModule, root: Path) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(module, _loader(), _loader())
    return trainer


def test_a_compile_that_fails_trains_eager_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    eager, failing = (
        DenseNetModule(TINY, epochs=1),
        DenseNetModule(TINY, epochs=1, compile="no-such-mode"),
    )
    failing.load_state_dict(eager.state_dict())
    with caplog.at_level(logging.WARNING, logger="dense_nas.model.graphs"):
        _fit(failing, tmp_path / "failing")
    torch.manual_seed(0)
    assert not failing.compiled
    assert [r.message.split(":")[0] for r in caplog.records] == [
        "torch.compile failed, training eager"
    ]
    assert list(failing.state_dict()) == list(eager.state_dict())  # checkpoints load as eager ones


def test_a_network_whose_first_compiled_call_fails_answers_eager() -> None:
    calls: list[int] = []

    def broken_backend(graph: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> object:
        calls.append(1)
        raise RuntimeError("no compiler on this machine")

    net = DenseNetModule(TINY).model.eval()
    forward = CompiledForward(net, mode=None, backend=broken_backend)
    images = torch.randn(2, 1, 8, 8)
    assert torch.equal(forward(images), net(images))
    assert calls and not forward.compiled
    assert torch.equal(forward(images), net(images))  # and stays eager, without retrying
    assert len(calls) == 1


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path: Path) -> None:
    """A real compile (inductor on the CPU): same weights after one epoch, same keys."""
    results = {}
    for compiled in (False, True):
        L.seed_everything(0, verbose=False)
        module = DenseNetModule(TINY, epochs=1, compile=compiled)
        L.seed_everything(1, verbose=False)
        _fit(module, tmp_path / str(compiled))
        assert module.compiled is compiled
        results[compiled] = module.state_dict()
    assert list(results[True]) == list(results[False])
    for name, value in results[False].items():
        torch.testing.assert_close(results[True][name], value, rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.parametrize("script", sorted((ROOT / "benchmarks").glob("*.sh")), ids=lambda p: p.name)
def test_the_gpu_scripts_parse(script: Path) -> None:
    """The lent-GPU scripts cannot run here; they must at least be valid bash."""
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.slow
def test_the_graph_benchmark_runs_its_eager_path_on_the_cpu() -> None:
    """bench_graphs.py on the CPU, eager only, one step: its code paths stay runnable."""
    ran = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_graphs.py"),
            "--device",
            "cpu",
            "--steps",
            "1",
            "--warmup",
            "0",
            "concurrent",
            "--preset",
            "densenet-bc-10-4",
            "--batch-size",
            "2",
            "--processes",
            "1",
            "2",
            "--runs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    assert "2 at once" in ran.stdout

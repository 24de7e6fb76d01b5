#!/usr/bin/env bash
# One pass over everything dense-nas does differently on a GPU, for a lent GPU machine:
# the model benchmark (ours against torchvision, memory-efficient against plain), a short
# `dense-nas search` on the embedded digits data with the GPU defaults (bf16 autocast,
# channels_last, cuDNN autotuning, data on the GPU), `best`, and the model and module
# tests on a machine where CUDA is visible; train steps eager vs CUDA graphs vs compiled
# and 1-8 concurrent trainings on one GPU (benchmarks/bench_graphs.py); a densenet-bc-cifar
# search on CIFAR-shaped data in the official binary format.
#
# Usage, from the repository root, with torch, torchvision and lightning installed:
#     bash benchmarks/gpu_check.sh OUT_DIR
# Logs go to OUT_DIR; the figures are in benchmarks/RESULTS.md.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

step() { echo "== $1"; shift; "$@" 2>&1; echo "== exit $?"; }

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
    $py -c "import torch, torchvision, lightning, optuna; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'lightning', lightning.__version__, 'optuna', optuna.__version__)"
    nproc
} 2>&1 | tee "$out/machine.txt"

for batch in 64 256; do
    step "bench_model batch $batch" \
        $py benchmarks/bench_model.py --device cuda --batch-size "$batch" --runs 5 --steps 20 \
        | tee "$out/bench_model_b$batch.txt"
done

runs=$(mktemp -d)
step "dense-nas search on the GPU" \
    $py -m dense_nas search --trials 8 --out "$runs" | tee "$out/search.txt"
step "dense-nas best" $py -m dense_nas best --out "$runs" | tee -a "$out/search.txt"
step "one GPU, four workers sharing it" \
    $py -m dense_nas search --trials 16 --workers 4 --study shared-gpu --out "$runs" | tee -a "$out/search.txt"

step "train steps: eager vs CUDA graphs vs compiled, BC-100-12 and BC-40-12, batch 64 and 256" \
    timeout 900 $py benchmarks/bench_graphs.py --steps 50 --warmup 10 steps \
        --presets densenet-bc-100-12 densenet-bc-40-12 --batch-sizes 64 256 \
    | tee "$out/bench_graphs_steps.txt"
step "1, 2, 4 and 8 concurrent BC-40-12 trainings on one GPU" \
    timeout 600 $py benchmarks/bench_graphs.py --steps 100 --warmup 10 concurrent \
        --preset densenet-bc-40-12 --batch-size 64 --processes 1 2 4 8 \
    | tee "$out/bench_graphs_concurrent.txt"

# A densenet-bc-cifar search on CIFAR-10-shaped data in the official binary format
# (random pixels: the point is the path and its speed, not the accuracy).
cifar=$(mktemp -d)
$py - "$cifar" <<'EOF_CIFAR'
import sys
from pathlib import Path
import numpy as np
root = Path(sys.argv[1]) / "cifar-10-batches-bin"
root.mkdir(parents=True)
rng = np.random.default_rng(0)
for name, n in [*((f"data_batch_{i}.bin", 2000) for i in range(1, 6)), ("test_batch.bin", 2000)]:
    records = rng.integers(0, 256, size=(n, 1 + 3072), dtype=np.uint8)
    records[:, 0] %= 10
    records.tofile(root / name)
EOF_CIFAR
step "densenet-bc-cifar search on CIFAR-shaped binary data" \
    timeout 900 $py -m dense_nas search --space densenet-bc-cifar --data cifar10 --data-dir "$cifar" \
        --trials 4 --epochs 2 --workers 2 --study bc-cifar --out "$runs" | tee "$out/search_cifar.txt"

step "model and module tests with CUDA visible" \
    $py -m pytest -q -p no:cacheprovider -n 8 tests/test_model.py tests/test_module.py tests/test_data_batches.py \
    | tee "$out/tests.txt"

step "bench_model with torch.compile" \
    timeout 240 $py benchmarks/bench_model.py --device cuda --batch-size 64 --runs 3 --steps 20 --compile \
    | tee "$out/bench_model_compile.txt"

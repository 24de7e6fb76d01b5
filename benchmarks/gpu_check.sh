#!/usr/bin/env bash
# One pass over everything dense-nas does differently on a GPU, for a lent GPU machine:
# the model benchmark (ours against torchvision, memory-efficient against plain), a short
# `dense-nas search` on the embedded digits data with the GPU defaults (bf16 autocast,
# channels_last, cuDNN autotuning, data on the GPU), `best`, and the model and module
# tests on a machine where CUDA is visible.
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
step "one GPU, two workers: refused" \
    $py -m dense_nas search --trials 8 --workers 2 --out "$runs" | tee -a "$out/search.txt"

step "model and module tests with CUDA visible" \
    $py -m pytest -q -p no:cacheprovider -n 8 tests/test_model.py tests/test_module.py tests/test_data_batches.py \
    | tee "$out/tests.txt"

step "bench_model with torch.compile" \
    timeout 240 $py benchmarks/bench_model.py --device cuda --batch-size 64 --runs 3 --steps 20 --compile \
    | tee "$out/bench_model_compile.txt"

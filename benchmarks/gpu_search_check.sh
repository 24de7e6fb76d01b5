#!/usr/bin/env bash
# The search on a lent one-GPU machine, in one call: the default `dense-nas search` on the
# GPU (bf16 autocast by default, Hyperband), `best`, `retrain` on the GPU, the precision
# each recorded, the same default search as 8 CPU workers on the machine's cores, and the
# study, retrain and module tests with CUDA visible.
#
# Usage, from the repository root, with torch, lightning and optuna installed:
#     bash benchmarks/gpu_search_check.sh OUT_DIR
# Logs go to OUT_DIR; the figures are in benchmarks/RESULTS.md.
set -uo pipefail
out=${1:?usage: gpu_search_check.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

step() {
    echo "== $1"
    shift
    local start=$SECONDS
    "$@" 2>&1
    echo "== exit $? after $((SECONDS - start)) s"
}

summary() {  # trials by state, epochs trained, best value, precisions recorded
    $py - "$1" <<'EOF'
import collections, sys
from pathlib import Path
import optuna
from dense_nas.study.storage import make_storage
storage = make_storage(None, Path(sys.argv[1]))
(summary,) = optuna.get_all_study_summaries(storage)
study = optuna.load_study(study_name=summary.study_name, storage=storage)
states = collections.Counter(t.state.name for t in study.trials)
epochs = sum(t.user_attrs.get("epochs", 0) for t in study.trials)
precisions = collections.Counter(t.user_attrs.get("precision") for t in study.trials)
print(f"trials {dict(states)}, epochs trained {epochs}, best {study.best_value:.4f}")
print(f"precisions {dict(precisions)}, retrain {study.user_attrs.get('retrain')}")
EOF
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    $py -c "import torch, lightning, optuna; print('torch', torch.__version__, 'lightning', lightning.__version__, 'optuna', optuna.__version__)"
    nproc
} 2>&1 | tee "$out/machine.txt"

gpu=$(mktemp -d)
{
    step "dense-nas search (no flags) on the GPU" timeout 200 $py -m dense_nas search --out "$gpu"
    step "dense-nas best" $py -m dense_nas best --out "$gpu"
    step "dense-nas retrain on the GPU" timeout 60 $py -m dense_nas retrain --epochs 10 --out "$gpu"
    summary "$gpu"
} | tee "$out/search_gpu.txt"

cpu=$(mktemp -d)
{
    step "dense-nas search, 8 CPU workers x 2 threads" \
        timeout 120 $py -m dense_nas search --accelerator cpu --workers 8 --threads 2 --out "$cpu"
    summary "$cpu"
} | tee "$out/search_cpu_workers.txt"

step "study, retrain and module tests with CUDA visible" \
    timeout 150 $py -m pytest -q -p no:cacheprovider -n 8 -m "not slow" \
    tests/test_study.py tests/test_retrain.py tests/test_module.py | tee "$out/tests.txt"

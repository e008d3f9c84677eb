#!/usr/bin/env bash
# The GPU check of issue 11 (see benchmarks/speed/gpu_check.py): the CUDA tests; steady-state paper-scale training
# steps of both stages in float32 and bf16 (mean and min s/step, loss share, allocated and reserved peak memory at
# two batches, the loss of every step of both precisions on the same batches, the batch predicted to fit 24 GiB);
# PoSFeat extraction of a 1600×1200 image; mutual NN at 20480×20480; ~90 s of real stage-1 then ~90 s of real
# stage-2 training on rendered photographs; a 2-process DDP step when 2 GPUs are visible. ≤ 8 minutes on one GPU.
# Needs only `pip install -r requirements.txt -e .` (no pycolmap, DVC or ruamel is imported).
#
#   benchmarks/speed/gpu_check.sh                          # → benchmarks/results/gpu_check-<time>.json
#   benchmarks/speed/gpu_check.sh --out benchmarks/results/gpu_check-h100.json
#   benchmarks/speed/gpu_check.sh --device cpu --tiny      # dry run of every part on a CPU, at a tiny size
#
# Exit status: 0 all sections ran, 1 a section failed (the report says which), 2 no CUDA, 124 overall timeout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch, posfeat" 2>/dev/null; then
  echo "gpu_check: cannot import torch and posfeat with $PY; run 'pip install -r requirements.txt -e .' first" >&2
  exit 2
fi
LIMIT=${GPU_CHECK_TIMEOUT:-480}
if ! [[ "$LIMIT" =~ ^[0-9]+$ ]] || (( LIMIT < 60 )); then
  echo "gpu_check: GPU_CHECK_TIMEOUT must be a whole number of seconds ≥ 60, got '$LIMIT'" >&2
  exit 2
fi
# the real training shortens itself to the budget: the limit less 20 s for the last writes
exec timeout --signal=TERM --kill-after=10 "$LIMIT" "$PY" -m benchmarks.speed.gpu_check --budget $((LIMIT - 20)) "$@"

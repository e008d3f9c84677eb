#!/usr/bin/env bash
# The GPU check of issue 11 (see benchmarks/gpu_check.py): CUDA tests, one paper-scale training step of each
# stage in bf16 and float32 (s/step, loss share, peak memory), PoSFeat extraction of a 1600×1200 image,
# mutual NN at 20480×20480, a 2-process DDP step when 2 GPUs are visible. ≤ 8 minutes on one GPU.
#
#   benchmarks/gpu_check.sh                          # → benchmarks/results/gpu_check-<time>.json
#   benchmarks/gpu_check.sh --out benchmarks/results/gpu_check-h100.json
#   benchmarks/gpu_check.sh --device cpu --tiny      # dry run of every part on a CPU, at a tiny size
#
# Exit status: 0 all sections ran, 1 a section failed (the report says which), 2 no CUDA, 124 overall timeout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python}
if ! "$PY" -c "import torch, posfeat" 2>/dev/null; then
  echo "gpu_check: cannot import torch and posfeat with $PY; run 'pip install -r requirements.txt -e .' first" >&2
  exit 2
fi
exec timeout --signal=TERM --kill-after=10 "${GPU_CHECK_TIMEOUT:-480}" "$PY" benchmarks/gpu_check.py "$@"

#!/usr/bin/env bash
# The prepared GPU check: runs `repsim bench all --gpu` (repsim/bench/gpu.py) under a time limit; the
# suite prints its markdown report (measurements + projection of the study's full scale) when done.
# It sets nothing up: run it from the repository root with the environment already installed.
#
#   bash tests/benchmarks/gpu_check.sh            # report in $OUT/bench-gpu/ (or bench-results/bench-gpu/)
#   GPU_CHECK_TIMEOUT=400 bash tests/benchmarks/gpu_check.sh
#
# Target: at most 5 minutes on one H100 (the default limit is 300 s of suite time).
set -u
cd "$(dirname "$0")/../.."
LIMIT="${GPU_CHECK_TIMEOUT:-300}"
DEST="${OUT:-bench-results}/bench-gpu"
if [ -x .venv/bin/repsim ]; then REPSIM=.venv/bin/repsim PY=.venv/bin/python; else REPSIM=repsim PY=python; fi

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi not found"
"${PY}" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>/dev/null || true

echo "== repsim bench all --gpu (limit ${LIMIT} s) -> ${DEST}"
start=$(date +%s)
timeout --signal=INT --kill-after=20 "${LIMIT}" "${REPSIM}" bench all --gpu --out "${DEST}"
rc=$?
echo "== suite exit status ${rc} after $(( $(date +%s) - start )) s"
if [ "${rc}" -eq 124 ]; then
  echo "the suite ran past ${LIMIT} s: it misses the 5-minute target; partial logs above"
fi
# on success (or a failed part, exit status 1) the report above is also in ${DEST}/bench-gpu.{md,json}
exit "${rc}"

#!/usr/bin/env bash
# The prepared GPU check (issue 16): one script, under 5 minutes on one H100/H200, that measures
#   - extraction: whole path against forward-only (resnet50, vit_base, vit_large_clip), and the
#     decode-once (chunk-major) path against the per-model path (images decoded, images/s);
#   - the similarity of the study's 64 models at n = 10,000 (linear CKA, RBF CKA, RSA);
#   - the probe sweep: n = 10,000 and one larger full probe, seconds per training step of each
#     phase at the study's sizes (n 100k / 300k / 1.28M x d 384 / 1024 / 1536, 1,000 classes) in
#     float32 and with bfloat16 matmuls, and bfloat16 accuracies against float32 (limit 0.2 points);
# then prints the projection of the full study (GPU-hours, 1 and 8 GPUs) with a table of which
# figures are measured and which extrapolated. It runs `repsim bench all --gpu` (repsim/bench/gpu.py)
# with the project's .venv when there is one, else with python3 and the repository on PYTHONPATH
# (a GPU image with PyTorch needs no install of the project). Packages the suite cannot import are
# named before anything is measured; wheels of them in .whl/ (tests/benchmarks/device_wheels.sh,
# made where pip reaches the index) are installed into a temporary folder first.
#
#   bash tests/benchmarks/gpu_check.sh            # report in $OUT/bench-gpu/ (or bench-results/bench-gpu/)
#   GPU_CHECK_TIMEOUT=400 bash tests/benchmarks/gpu_check.sh
#
# Without CUDA the same script is a dry run: the suite picks its tiny CPU sizes (about a minute on
# two cores; tests/benchmarks/test_bench.py runs it that way). Its numbers then say nothing about a GPU.
set -u
cd "$(dirname "$0")/../.."
LIMIT="${GPU_CHECK_TIMEOUT:-300}"
DEST="${OUT:-bench-results}/bench-gpu"
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY="${PYTHON:-python3}"; fi
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
ready() { "${PY}" -c 'import sys; from repsim.bench.gpu import PART_IMPORTS, missing_modules; sys.exit(bool(missing_modules(list(PART_IMPORTS))))' 2>/dev/null; }
if ! ready && compgen -G ".whl/*.whl" >/dev/null; then
  SITE="$(mktemp -d)"; trap 'rm -rf "${SITE}"' EXIT
  echo "== installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into a temporary folder"
  "${PY}" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "${SITE}" .whl/*.whl \
    && export PYTHONPATH="${PYTHONPATH}:${SITE}"
fi

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi not found"
"${PY}" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>/dev/null || true

echo "== repsim bench all --gpu (limit ${LIMIT} s) -> ${DEST}"
start=$(date +%s)
timeout --signal=INT --kill-after=20 "${LIMIT}" "${PY}" -m repsim.cli bench all --gpu --out "${DEST}"
rc=$?
echo "== suite exit status ${rc} after $(( $(date +%s) - start )) s"
if [ "${rc}" -eq 124 ]; then
  echo "the suite ran past ${LIMIT} s: it misses the 5-minute target; partial logs above"
fi
# on success (or a failed part, exit status 1) the report above is also in ${DEST}/bench-gpu.{md,json}
exit "${rc}"

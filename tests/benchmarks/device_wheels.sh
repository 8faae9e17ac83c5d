#!/usr/bin/env bash
# Wheels for a GPU machine that has PyTorch but cannot reach the package index: the packages the
# GPU check (gpu_check.sh) imports that such an image tends to lack. Today that is zarr (the feature
# store) and its requirements; `repsim bench all --gpu` names any other package it cannot import
# before it measures anything. Run this where pip can reach the index, copy the repository with its
# .whl/ folder to the GPU machine, and run gpu_check.sh there: it installs them into a temporary
# folder when the suite cannot import what it needs.
#
#   bash tests/benchmarks/device_wheels.sh                       # CPython 3.12, x86-64 Linux
#   PY_VERSION=3.11 bash tests/benchmarks/device_wheels.sh       # the GPU machine's Python
#   bash tests/benchmarks/device_wheels.sh zarr numcodecs h5netcdf   # another set of packages
#
# Versions are the ones pinned in constraints.txt (what the test suite ran with).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYV="${PY_VERSION:-3.12}"
DEST=.whl
if [ "$#" -gt 0 ]; then packages=("$@"); else packages=(zarr numcodecs donfig google-crc32c); fi

pins=()
for name in "${packages[@]}"; do
  pin=$(grep -i -E "^${name//[-_.]/[-_.]}==" constraints.txt || true)
  if [ -z "${pin}" ]; then
    echo "device_wheels: ${name} is not pinned in constraints.txt; add it there (make lock) first" >&2
    exit 2
  fi
  pins+=("${pin}")
done

mkdir -p "${DEST}"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "${PYV}" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  --dest "${DEST}" "${pins[@]}"
echo "device_wheels: ${#pins[@]} wheels for CPython ${PYV} in ${DEST}/ ($(du -sh "${DEST}" | cut -f1)): ${pins[*]}"

#!/usr/bin/env bash
# The project's GPU check (docs/BENCHMARKS.md): at most 8 minutes on one GPU; writes gpu_check.json and
# gpu_check.md into the folder given (default: gpu_check/). Needs PyTorch with CUDA and the package's
# dependencies in the Python it runs with (`pip install -e .`, or PYTHONPATH=src with them installed).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" scripts/gpu_check.py --out "${1:-gpu_check}" "${@:2}"

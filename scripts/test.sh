#!/usr/bin/env bash
# Set up a fresh machine and run the checks: type-check of the TensorRT/CUDA code, then the tests.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# torch first and pinned: this version is a local CPU wheel; anything else pulls GBs of CUDA packages.
$PY -m pip install -q torch==2.13.0
$PY -m pip install -q -e ".[train,export,cpu,dev]"
# Type stubs for TensorRT; --no-deps because the stubs depend on the `tensorrt` placeholder package.
$PY -m pip install -q --no-deps "tensorrt-stubs==10.13.0.35.1"
# Copy the stubs into .typings/ (mypy_path) and mend the lines that do not parse; see the script.
$PY scripts/prepare_trt_stubs.py
$PY -m mypy
$PY -m pytest -q "$@"

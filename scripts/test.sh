#!/usr/bin/env bash
# Set up a fresh machine and run the checks: type-check of the TensorRT/CUDA code, then the tests.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# torch first and pinned: this version is a local CPU wheel; anything else pulls GBs of CUDA packages.
$PY -m pip install -q torch==2.13.0
$PY -m pip install -q -e ".[train,export,cpu,dev,demo,crowd]"
# Triton serving (tests/test_serving.py starts a real server on loopback). nvidia-pytriton declares
# numpy<2 (its bundled server's Python stub is built for numpy 1.x) and would downgrade numpy here, so it
# goes in without its pins, with its other dependencies named; the server itself runs from a small venv
# that sees this environment's packages but has numpy<2 (FSRFER_SERVE_PYTHON, read by fsrfer-serve).
$PY -m pip install -q --no-deps nvidia-pytriton==0.7.0 tritonclient==2.73.0
# tritonclient declares ml-dtypes<=0.5.4, which --no-deps skips; onnx alone would pull a newer one that
# needs numpy>=2 and breaks `import tritonclient` in the numpy<2 server venv.
$PY -m pip install -q "ml-dtypes<=0.5.4" pyzmq sh typer importlib_metadata grpcio python-rapidjson geventhttpclient "greenlet<3.4" aiohttp
[ -x .venv/serve/bin/python ] || $PY -m venv --system-site-packages .venv/serve
.venv/serve/bin/python -m pip install -q "numpy<2"
export FSRFER_SERVE_PYTHON="$PWD/.venv/serve/bin/python"
# Type stubs for TensorRT; --no-deps because the stubs depend on the `tensorrt` placeholder package.
$PY -m pip install -q --no-deps "tensorrt-stubs==10.13.0.35.1"
# Copy the stubs into .typings/ (mypy_path) and mend the lines that do not parse; see the script.
$PY scripts/prepare_trt_stubs.py
$PY -m mypy
# The runtime package must run on JetPack 5's Python 3.8: a static minimum-version check (vermin, from
# the dev extra; annotations are not evaluated, every module has `from __future__ import annotations`).
$PY -c "import sys, vermin; sys.exit(vermin.main())" -t=3.8- --no-tips --violations fsrfer_edge
$PY -m pytest -q "$@"

#!/usr/bin/env bash
# Set up a fresh machine and run the checks: mypy (mypy.ini: the SDK, the exporter, the TensorRT/CUDA code and
# the trainer), then the tests.
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
# Their dependencies, which --no-deps skips, are named here (every one but numpy; tests/test_readme.py
# checks this list against the packages' metadata). tritonclient declares ml-dtypes<=0.5.4; onnx alone
# would pull a newer one that needs numpy>=2 and breaks `import tritonclient` in the numpy<2 server venv.
# --no-warn-conflicts: pip would otherwise print a red "ERROR: ... dependency conflicts" block about
# nvidia-pytriton's numpy<2 pin on every run, although that mismatch is deliberate (see above).
$PY -m pip install -q --no-warn-conflicts "ml-dtypes<=0.5.4" protobuf pyzmq sh typer typing_inspect wrapt \
    importlib_metadata "grpcio>=1.81.1" python-rapidjson urllib3 packaging geventhttpclient "greenlet<3.4" aiohttp
# The server's venv: its own numpy<2, then this environment's packages behind it. A .pth line adds this
# environment's site-packages (with their own .pth files, e.g. the editable install of this package);
# `venv --system-site-packages` would add the *base* interpreter's packages instead when $PY is itself a
# venv, and the serving test would skip ("PyTriton is not installed").
SERVE=.venv/serve
PYVER=$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ ! -x $SERVE/bin/python ] || [ "$($SERVE/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$PYVER" ]; then
    $PY -m venv --clear $SERVE
fi
SERVE_SITE=$($SERVE/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -f "$SERVE_SITE/fsrfer-parent-env.pth"  # install numpy<2 into the bare venv, then link this environment
$SERVE/bin/python -m pip install -q --no-warn-conflicts "numpy<2"
# (PREFIXES too, as --system-site-packages does: PyTriton finds its bundled libraries through it.)
$PY -c 'import site, sys, sysconfig
dirs = dict.fromkeys(site.getsitepackages() + [sysconfig.get_paths()["purelib"]])
print("import site; site.PREFIXES.append(%r); " % sys.prefix + "; ".join("site.addsitedir(%r)" % d for d in dirs))' \
    > "$SERVE_SITE/fsrfer-parent-env.pth"
export FSRFER_SERVE_PYTHON="$PWD/$SERVE/bin/python"
$FSRFER_SERVE_PYTHON -c 'import numpy, pytriton, fsrfer_edge; assert int(numpy.__version__.split(".")[0]) < 2' \
    || echo "test.sh: the server venv $SERVE cannot import numpy<2, pytriton and fsrfer_edge; tests/test_serving.py will skip"
# Type stubs for TensorRT; --no-deps because the stubs depend on the `tensorrt` placeholder package.
$PY -m pip install -q --no-deps "tensorrt-stubs==10.13.0.35.1"
# Copy the stubs into .typings/ (mypy_path) and mend the lines that do not parse; see the script.
$PY scripts/prepare_trt_stubs.py
$PY -m mypy
# The runtime package must run on JetPack 5's Python 3.8: a static minimum-version check (vermin, from
# the dev extra; annotations are not evaluated, every module has `from __future__ import annotations`).
$PY -c "import sys, vermin; sys.exit(vermin.main())" -t=3.8- --no-tips --violations fsrfer_edge
# -rs lists every skipped test with its reason at the end (on a CPU machine: the GPU/TensorRT tests).
echo "test.sh: running the tests; skipped tests and why are listed at the end"
$PY -m pytest -q -rs "$@"

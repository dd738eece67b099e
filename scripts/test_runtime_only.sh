#!/usr/bin/env bash
# The WHOLE test suite in a runtime-only environment: the SDK with its cpu/crowd/demo extras and pytest, but no
# torch, onnx or onnxsim (the train/export extras), as a user who only runs models has. The trainer's and the
# exporter's tests skip, each naming the module and the pip extra it needs (tests/conftest.py, the `needs` mark);
# every other test must pass. scripts/min_versions.sh runs the runtime's own tests on the oldest versions; this
# runs every test, so a test that needs torch or onnx without saying so shows here as a failure.
#
# Not run by CI (.ci/run): it needs the package index, and the suite takes about 18 minutes on 2 busy cores.
# Found on 2026-12-07 (its first run): 40 tests failed and 2 errored on ModuleNotFoundError (torch, yaml, onnx) or
# on a venv's setuptools without bdist_wheel; they skip now.
#
# Usage: bash scripts/test_runtime_only.sh [pytest options]    Env: RUNTIME_VENV (default /tmp/fsrfer-runtime-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${RUNTIME_VENV:-/tmp/fsrfer-runtime-venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -e ".[cpu,crowd,demo,dev]"
for m in torch onnx onnxsim; do
    if "$VENV/bin/python" -c "import $m" 2>/dev/null; then
        echo "test_runtime_only: $m is importable in $VENV; expected a venv without the train/export extras" >&2
        exit 1
    fi
done
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -rs "$@" tests/

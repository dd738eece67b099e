#!/usr/bin/env bash
# The SDK's runtime on the OLDEST versions setup.py declares (numpy>=1.22; the cpu/crowd/demo extras' onnxruntime,
# OpenCV, Pillow and scikit-image), not only on the newest ones installed for development. Not run by CI: it
# needs the package index. Torch and onnx are left out, so the tests that build models with them skip.
#
# Two venvs outside the repository, each with the repository installed editable (--no-deps) by its own pip:
#   py3.8  (JetPack 5's Python): the declared minimums themselves: numpy 1.22.0, onnxruntime 1.16.0,
#          opencv-python-headless 4.5.1.48 (the oldest 4.5 on PyPI), Pillow 9.2.0 (the crowd extra's minimum),
#          scikit-image 0.19.0; then the demo tests on Pillow 9.0.0 (the demo extra's minimum).
#   py3.11 (this machine's Python): the oldest with CPython 3.11 wheels: numpy 1.23.2, onnxruntime 1.16.0,
#          opencv-python-headless 4.5.5.64, Pillow 9.2.0, scikit-image 0.20.0. onnxruntime 1.16.0's cp311 wheel
#          declares numpy>=1.24.2 (its cp38 wheel numpy>=1.21.6), so it goes in with --no-deps and its other
#          dependencies named: the check is that it runs with numpy 1.23.
# Each: the runtime tests below, the README's SDK example (its first python block under "## The SDK"), and a
# 16-bit PGM read (the tests that write one skip on Pillow < 11, which cannot write it).
#
# Usage: bash scripts/min_versions.sh [py38|py311 ...]   (default both; a missing python3.8 is skipped, said so)
# Env: MINVER_DIR (default /tmp/fsrfer-minver), PYTHON38 (default python3.8), PYTHON311 (default python3.11).
#
# Found on 2026-12-07 (this script's first runs): Pillow 9.0 and 9.1 cannot draw fsrfer-crowd's annotated image
# (ImageDraw.textbbox: "Only supported for TrueType fonts" with the bitmap default font), hence pillow>=9.2 in the
# crowd extra; everything else passed on both venvs, with version-named skips in tests/test_crowd.py (Pillow < 10.1:
# the bitmap font's legend covers the checked box edge) and tests/test_crowd_inputs.py (Pillow < 11: no 16-bit
# PGM writing). The README example gave the same probabilities as numpy 2.4 + onnxruntime 1.32 (within 3e-8).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BASE=${MINVER_DIR:-/tmp/fsrfer-minver}
TESTS=(tests/test_recognizer*.py tests/test_preprocessing*.py tests/test_backends.py tests/test_crowd*.py
       tests/test_tracking*.py tests/test_batch_independence63.py tests/test_concurrency63.py
       tests/test_unusual_inputs63.py tests/test_confidence*.py tests/test_demo.py tests/test_scaled_floats64.py
       tests/test_cpu_quota64.py tests/test_call_scale64.py tests/test_untrusted_files64.py)
WHEELS=(--only-binary=:all:)

make_venv() {  # make_venv DIR PYTHON: a fresh venv with the repository installed editable, no dependencies
    local dir=$1 py=$2
    rm -rf "$dir"
    "$py" -m venv "$dir"
    # The editable build rewrites the checkout's (git-ignored) fsrfer_edge.egg-info with this venv's setuptools;
    # the main environment's editable install does not read it, but it is put back as it was all the same.
    local keep=""
    if [ -d fsrfer_edge.egg-info ]; then keep=$(mktemp -d); cp -a fsrfer_edge.egg-info "$keep/"; fi
    "$dir/bin/python" -m pip install -q --no-deps -e "$REPO"
    if [ -n "$keep" ]; then rm -rf fsrfer_edge.egg-info; cp -a "$keep/fsrfer_edge.egg-info" .; rm -rf "$keep"; fi
}

checks() {  # checks DIR: versions, the tests, the README example, a 16-bit PGM read
    local py=$1/bin/python
    "$py" -c 'import sys, numpy, onnxruntime, cv2, PIL, skimage; print("python", sys.version.split()[0], "numpy",
numpy.__version__, "onnxruntime", onnxruntime.__version__, "opencv", cv2.__version__, "Pillow", PIL.__version__,
"scikit-image", skimage.__version__)'
    "$py" -m pytest -q -p no:cacheprovider -rs "${TESTS[@]}"
    "$py" - "$REPO/README.md" <<'EOF'
import sys
text = open(sys.argv[1], encoding="utf-8").read()
block = text.split("## The SDK", 1)[1].split("```python", 1)[1].split("```", 1)[0]
assert "from fsrfer_edge import Recognizer" in block, block
print("README example:")
exec(compile(block, "README.md (The SDK)", "exec"), {})
EOF
    (cd "$(mktemp -d)" && "$py" - <<'EOF'
import pathlib
import numpy as np
import PIL
from fsrfer_edge.detection.frames import read_image
from fsrfer_edge.export.calib import load_faces
gray = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
pathlib.Path("f").mkdir()
pathlib.Path("f/g.pgm").write_bytes(b"P5\n64 64\n65535\n" + gray.astype(">u2").tobytes())
expected = np.repeat((gray >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
np.testing.assert_array_equal(read_image("f/g.pgm"), expected)
(face,) = load_faces(pathlib.Path("f"), size=1)
np.testing.assert_array_equal(face, expected[:, :, 0])
print("16-bit PGM read as its top 8 bits on Pillow", PIL.__version__)
EOF
    )
}

run_py38() {
    local py=${PYTHON38:-python3.8}
    if ! "$py" -c '' 2>/dev/null && command -v pyenv >/dev/null; then  # a pyenv shim for a version not selected
        py=$(ls -d "$(pyenv root)"/versions/3.8*/bin/python 2>/dev/null | tail -1 || true)
    fi
    if [ -z "$py" ] || ! "$py" -c '' 2>/dev/null; then
        echo "== py3.8: no Python 3.8 found (set PYTHON38), skipped"
        return 0
    fi
    echo "== py3.8: the declared minimums"
    make_venv "$BASE/py38" "$py"
    "$BASE/py38/bin/python" -m pip install -q "${WHEELS[@]}" numpy==1.22.0 onnxruntime==1.16.0 \
        opencv-python-headless==4.5.1.48 pillow==9.2.0 scikit-image==0.19.0 "pytest>=7"
    checks "$BASE/py38"
    echo "== py3.8: fsrfer-demo on Pillow 9.0.0 (the demo extra's minimum; it draws no textbbox)"
    "$BASE/py38/bin/python" -m pip install -q "${WHEELS[@]}" --no-deps pillow==9.0.0
    "$BASE/py38/bin/python" -m pytest -q -p no:cacheprovider tests/test_demo.py tests/test_crowd_review62.py
}

run_py311() {
    local py=${PYTHON311:-python3.11}
    echo "== py3.11: the oldest versions with CPython 3.11 wheels"
    make_venv "$BASE/py311" "$py"
    "$BASE/py311/bin/python" -m pip install -q "${WHEELS[@]}" numpy==1.23.2 opencv-python-headless==4.5.5.64 \
        pillow==9.2.0 scikit-image==0.20.0 "pytest>=7" coloredlogs flatbuffers packaging protobuf sympy
    "$BASE/py311/bin/python" -m pip install -q "${WHEELS[@]}" --no-deps onnxruntime==1.16.0
    checks "$BASE/py311"
}

for which in "${@:-py38 py311}"; do
    for w in $which; do
        case $w in
            py38) run_py38 ;;
            py311) run_py311 ;;
            *) echo "unknown venv '$w': expected py38 or py311" >&2; exit 2 ;;
        esac
    done
done
echo "min_versions: all checks passed"

#!/usr/bin/env bash
# Device runbook: what a Jetson or GPU owner runs once to measure the TensorRT path for real.
#
#   bash scripts/device_check.sh [DATA.npz] [OUT_DIR]
#
# DATA.npz: e.g. ../shared/data/fer2013.npz (calibration from its train rows, accuracy on its test rows);
# without it, INT8 calibration uses synthetic faces and no accuracy is measured. OUT_DIR defaults to
# device_check/<host>-<UTC time>. Steps (each one's log in OUT_DIR; a failing step is recorded and the
# runbook goes on):
#   1. versions and GPU identity (python, numpy, onnx, onnxruntime, tensorrt, cuda-python, pycuda);
#   2. FP16 and s8s8 INT8 files from the shipped default model (ONNX Runtime's converters: no torch
#      needed), each checked with fsrfer-export --check-trt;
#   3. with TensorRT: the FP16 and INT8 engines (fsrfer-export --engine, timing cache in OUT_DIR);
#   4. the gpu-marked tests (tests/test_tensorrt_gpu.py, tests/test_engine_build.py), JUnit XML;
#   5. fsrfer-bench on each engine (or, without TensorRT, on the ONNX files with ONNX Runtime);
#   6. one JSON, OUT_DIR/device_check.json: versions, device, per model latency (p50/p99 per batch)
#      and accuracy per factor, and the test outcome. Copy its numbers into benchmarks/thresholds.json.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATA=${1:-}
OUT=${2:-device_check/$(hostname)-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
STEPS="$OUT/steps.tsv"
: > "$STEPS"

step() {  # step NAME CMD...: run, log to OUT/NAME.log, record the exit status
    local name=$1; shift
    echo "== $name: $*"
    "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    printf '%s\t%s\n' "$name" "$rc" >> "$STEPS"
    [ $rc -eq 0 ] || echo "   $name failed (exit $rc); see $OUT/$name.log"
    return 0
}

# 1. versions and device
step versions $PY - "$OUT/versions.json" <<'EOF'
import importlib, json, platform, sys
out = {"python": platform.python_version(), "machine": platform.machine()}
for mod in ("numpy", "onnx", "onnxruntime", "tensorrt", "cuda.bindings", "cuda", "pycuda"):
    try:
        m = importlib.import_module(mod)
        out[mod] = str(getattr(m, "__version__", "present"))
        if mod == "tensorrt" and not hasattr(m, "Builder"):
            out[mod] = "type stubs only (no TensorRT)"
    except Exception as exc:  # report, do not stop: this is an inventory
        out[mod] = f"missing ({type(exc).__name__})"
try:
    out["jetson_model"] = open("/proc/device-tree/model").read().strip("\0\n")
except OSError:
    pass
try:
    from fsrfer_edge.export.engine import gpu_identity
    g = gpu_identity(0)
    out["gpu"] = {"name": g.name, "compute_capability": g.compute_capability, "multiprocessors": g.multiprocessors,
                  "memory_gib": g.memory_gib, "key": g.key}
except Exception as exc:
    out["gpu"] = f"unavailable: {exc}"
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(json.dumps(out, indent=1))
EOF

# 2. FP16 and s8s8 files from the shipped default, checked for TensorRT
step variants $PY - "$OUT" "$DATA" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from fsrfer_edge.export import quantize
from fsrfer_edge.export.calib import calibration_inputs, faces_to_pixels, mix_factors, to_model_input
from fsrfer_edge.export.onnx_export import load_onnx, read_model_info
from fsrfer_edge.preprocessing import FACTORS
from fsrfer_edge.recognizer import DEFAULT_MODEL
out, data = Path(sys.argv[1]), sys.argv[2]
quantize.convert_fp16(DEFAULT_MODEL, out / "default.fp16.onnx")
info = read_model_info(load_onnx(DEFAULT_MODEL))
# each face a small crop at one of FACTORS, as fsrfer-export calibrates: a routed graph (the shipped default) refuses
# calibration faces that all take one of its paths (48 px faces alone, or 6 px ones made large)
if data:  # 256 train faces, as fsrfer-export --calib-data DATA --calib-size 256 takes them
    calib = calibration_inputs(data, 256, FACTORS, info)
else:  # 48 px detail, so the faces kept at x1 take the full-resolution path
    images = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    calib = to_model_input(faces_to_pixels(mix_factors(list(images), FACTORS), info), info)
quantize.quantize_int8(DEFAULT_MODEL, out / "default.int8-s8s8.onnx", calib, "s8s8", "percentile")
EOF
for f in fp16 int8-s8s8; do
    [ -f "$OUT/default.$f.onnx" ] && step "check-$f" fsrfer-export --check-trt "$OUT/default.$f.onnx"
done

# 3. engines (TensorRT only)
HAVE_TRT=0
$PY -c "import tensorrt; assert hasattr(tensorrt, 'Builder')" 2>/dev/null && HAVE_TRT=1
if [ $HAVE_TRT -eq 1 ]; then
    for f in fp16 int8-s8s8; do
        step "engine-$f" fsrfer-export "$OUT/default.$f.onnx" --engine --out-dir "$OUT" \
            --max-batch 128 --timing-cache "$OUT/timing.cache"
    done
fi

# 4. gpu-marked tests (each skips with a reason where its hardware or library is absent)
ENGINE=$(ls "$OUT"/default.int8.*.engine 2>/dev/null | head -1)
FSRFER_TEST_ENGINE=$ENGINE FSRFER_TEST_ONNX=$([ -n "$ENGINE" ] && echo "$OUT/default.int8-s8s8.onnx") \
FSRFER_TEST_DATA=$DATA step gpu-tests $PY -m pytest -m gpu -rs -q tests/test_tensorrt_gpu.py tests/test_engine_build.py \
    -p no:cacheprovider --junitxml "$OUT/gpu-tests.xml"

# 5. benchmarks
DATA_ARGS=()
[ -n "$DATA" ] && DATA_ARGS=(--data "$DATA")
if [ $HAVE_TRT -eq 1 ]; then
    for e in "$OUT"/*.engine; do
        [ -f "$e" ] && step "bench-$(basename "$e" .engine)" fsrfer-bench --model "$e" --batch-sizes 1,8,32,128 \
            "${DATA_ARGS[@]}" --json "$OUT/bench-$(basename "$e" .engine).json"
    done
fi
for f in "$OUT"/default.fp16.onnx "$OUT"/default.int8-s8s8.onnx; do
    [ -f "$f" ] && step "bench-$(basename "$f" .onnx)-onnxruntime" fsrfer-bench --model "$f" --backend onnxruntime \
        --batch-sizes 1,8,32 "${DATA_ARGS[@]}" --json "$OUT/bench-$(basename "$f" .onnx)-onnxruntime.json"
done

# 6. one JSON
$PY - "$OUT" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
out = Path(sys.argv[1])
doc = {"schema": "fsrfer-device-check/1", "versions": json.loads((out / "versions.json").read_text())
       if (out / "versions.json").is_file() else None,
       "steps": {n: int(rc) for n, rc in (line.split("\t") for line in (out / "steps.tsv").read_text().splitlines() if line)},
       "models": {}}
for p in sorted(out.glob("bench-*.json")):
    b = json.loads(p.read_text())
    doc["models"][p.stem[len("bench-"):]] = {
        "latency": [{k: r.get(k) for k in ("batch_size", "p50_ms", "p99_ms", "throughput_fps")} for r in b.get("latency", [])],
        "accuracy_per_factor": (b.get("accuracy") or {}).get("per_factor"), "providers": b.get("providers")}
junit = out / "gpu-tests.xml"
if junit.is_file():
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    doc["gpu_tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
(out / "device_check.json").write_text(json.dumps(doc, indent=1) + "\n")
print(f"wrote {out / 'device_check.json'}")
EOF

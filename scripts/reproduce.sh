#!/usr/bin/env bash
# Reproduce the real results: train every method on FER+ (and FER2013), evaluate on the test split,
# export FP32/FP16/INT8, evaluate the exports, write results/ and the README tables.
# Usage: bash scripts/reproduce.sh [ferplus|fer2013|ferplus_short ...]   (default: ferplus fer2013)
# Resumable: re-run after an interruption and finished steps are skipped (fsrfer-train --resume).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${FSRFER_DATA:-../shared/data}
RUNS=${RUNS:-runs}
mkdir -p "$RUNS"
for name in "${@:-ferplus fer2013}"; do
  for n in $name; do
    labels=ferplus; [ "$n" = fer2013 ] && labels=fer2013
    fsrfer-train --config "configs/$n.yaml" --data "$DATA/fer2013.npz" --out "$RUNS/$n" --resume
    python scripts/report.py --run "$RUNS/$n" --name "$n" --split val
    # The test split, once per released model: every method of the run.
    fsrfer-train --config "configs/$n.yaml" --data "$DATA/fer2013.npz" --out "$RUNS/$n" --resume --steps eval-test
    # Faces for INT8 calibration (train split) and the export's accuracy gate (val split); not committed.
    python - "$DATA/fer2013.npz" "$labels" "$RUNS/${n}_faces.npz" <<'PY'
import sys, numpy as np
from trainer.data import load_dataset
fs = load_dataset(sys.argv[1], labels=sys.argv[2])
np.savez(sys.argv[3], images=fs.images, labels=fs.labels, split=fs.split)
PY
    fsrfer-export "$RUNS/$n/models/fsrfer.pt" --name "$n" --out-dir "engines" --fp16 --int8 \
      --calib "$RUNS/${n}_faces.npz" --calib-size 512 --eval-data "$RUNS/${n}_faces.npz" --eval-size 1000
    onnx_rows=()
    for v in fp32 fp16 int8-s8s8 int8-u8s8; do
      fsrfer-eval --checkpoint "engines/$n.$v.onnx" --data "$DATA/fer2013.npz" --labels "$labels" --split test \
        --threads 2 --json "results/$n/test_onnx_$v.json"
      onnx_rows+=(--onnx "fsrfer_onnx_$v=results/$n/test_onnx_$v.json")
    done
    python scripts/report.py --run "$RUNS/$n" --name "$n" --split test "${onnx_rows[@]}"
  done
done

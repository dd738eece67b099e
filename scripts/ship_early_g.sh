#!/usr/bin/env bash
# Ship a scripts/early_g.py run's FSR-FER model as the SDK's default, measured once on FER+ test beside its
# equal-budget LR-fine-tuned baseline and the frozen HR model, and regenerate what depends on it.
#
#   bash scripts/ship_early_g.sh RUN BASELINE_RUN "how it was chosen (one or two sentences)"
#
# RUN: the run whose models/fsrfer.pt ships (and whose models/hr.pt is the frozen HR network);
# BASELINE_RUN: the run holding the equal-budget models/lr_finetune.pt (the same degraded faces and epochs),
# or `keep` when the new model's equal-budget baseline is the one already measured on test (a change to
# stage 2 only, same seed): results/default_model/baseline_test*.json stay as they are.
# Writes, for protocols (a) resized, (b) small and (c) camera:
#   results/default_model/test{,_small,_camera}.json            the shipped FP32 graph (via ship_default.py)
#   results/default_model/test_{fp16,int8-s8s8,int8-u8s8}.json  its FP16/INT8 exports, protocol (a)
#   results/default_model/baseline_test{,_small,_camera}.json   the equal-budget LR-fine-tuned baseline
#   results/default_model/hr_test{,_small,_camera}.json         the frozen HR model on the same faces
# then fsrfer_edge/models/default.{onnx,pt} and MODEL_CARD.md, results/bench_cpu_{fp32,int8-u8s8}.json,
# results/targets.json and the README blocks.
# The old default stays reachable in git for scripts/edge_budget.py --reference.
# Environment: FSRFER_DATA (default ../shared/data), FSRFER_EXPORT_ARGS (more fsrfer-export options).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 3 ]; then
  echo "usage: bash scripts/ship_early_g.sh RUN BASELINE_RUN \"how it was chosen\"" >&2
  exit 2
fi
RUN=$1 BASE=$2 CHOSEN=$3
DATA=${FSRFER_DATA:-../shared/data}
OUT=results/default_model
NEED=("$RUN/models/fsrfer.pt" "$RUN/models/hr.pt" "$DATA/fer2013.npz")
if [ "$BASE" = keep ]; then
  NEED+=("$OUT/baseline_test.json" "$OUT/baseline_test_small.json" "$OUT/baseline_test_camera.json")
else
  NEED+=("$BASE/models/lr_finetune.pt")
fi
for f in "${NEED[@]}"; do
  [ -f "$f" ] || { echo "error: $f is missing" >&2; exit 2; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
eval_test() {  # checkpoint protocol json
  fsrfer-eval --checkpoint "$1" --data "$DATA/fer2013.npz" --labels ferplus --split test --threads 2 \
    --protocol "$2" --json "$3"
}
suffix() { [ "$1" = resized ] && echo "" || echo "_$1"; }

# Calibration (train split) and export-gate (val split) faces, as scripts/reproduce.sh makes them.
python - "$DATA/fer2013.npz" "$TMP/faces.npz" <<'PY'
import sys, numpy as np
from trainer.data import load_dataset
fs = load_dataset(sys.argv[1], labels="ferplus")
np.savez(sys.argv[2], images=fs.images, labels=fs.labels, split=fs.split)
PY
# An early G holds trainable copies of the trunk's stages, most of the network's compute: its INT8 file
# quantizes G too (calibrated on small crops at every factor), or it would run mostly in float.
# shellcheck disable=SC2086  # FSRFER_EXPORT_ARGS: more fsrfer-export options (e.g. --no-simplify), split
fsrfer-export "$RUN/models/fsrfer.pt" --name default --out-dir engines --fp16 --int8 --int8-quantize-g ${FSRFER_EXPORT_ARGS:-} \
  --calib "$TMP/faces.npz" --calib-size 512 --eval-data "$TMP/faces.npz" --eval-size 1000
for p in resized small camera; do
  eval_test engines/default.fp32.onnx "$p" "$TMP/test_$p.json"
  [ "$BASE" = keep ] || eval_test "$BASE/models/lr_finetune.pt" "$p" "$OUT/baseline_test$(suffix $p).json"
  eval_test "$RUN/models/hr.pt" "$p" "$OUT/hr_test$(suffix $p).json"
done
for v in fp16 int8-s8s8 int8-u8s8; do
  eval_test "engines/default.$v.onnx" resized "$OUT/test_$v.json"
done
python scripts/ship_default.py --onnx engines/default.fp32.onnx --checkpoint "$RUN/models/fsrfer.pt" --hr-checkpoint "$RUN/models/hr.pt" \
  --eval "$TMP/test_resized.json" --eval-small "$TMP/test_small.json" --eval-camera "$TMP/test_camera.json" \
  --chosen "$CHOSEN" --results-dir "$OUT"
# The group shares' calibration of the new default (CrowdSummary.shares; a file of the old checkpoint would be
# skipped). The group study itself (docs/crowd.md, "The group's expression when its faces are small") takes minutes:
#   python scripts/group_estimates.py --data "$DATA/fer2013.npz" --split test --json results/crowd/group_estimates_test.json
python scripts/group_estimates.py --data "$DATA/fer2013.npz" --write-calibration fsrfer_edge/models/default.groups.json
# Its score calibration (Prediction.confidence; docs/experiments.md, "A confidence that means the same at every
# size"): maps fitted on FER+ val, seconds. The study: python scripts/score_calibration.py --data "$DATA/fer2013.npz"
#   --json results/ferplus/score_calibration_val.json (then --split test once).
python scripts/score_calibration.py --data "$DATA/fer2013.npz" --write-calibration fsrfer_edge/models/default.scores.json
# That file is written afresh, so tracked faces have no confidence until their terms are fitted for the new model
# (docs/experiments.md, "Terms per JPEG mark, decided on fresh clips"; about an hour on 2 cores):
#   python scripts/track_maps.py --per-mark --clip-seed 1 --split test --json results/ferplus/track_maps_marks_test.json
#   python scripts/track_maps.py --write-calibration fsrfer_edge/models/default.scores.json \
#       --from-json results/ferplus/track_maps_marks_test.json
# SDK speed of the shipped files for the README headline (run on an otherwise idle machine: the load
# average is recorded in each file).
fsrfer-bench --model fsrfer_edge/models/default.onnx --batch-sizes 1,8,32,128 --data "$DATA/fer2013.npz" \
  --threads 2 --json results/bench_cpu_fp32.json
fsrfer-bench --model engines/default.int8-u8s8.onnx --batch-sizes 1,8,32,128 --data "$DATA/fer2013.npz" \
  --threads 2 --json results/bench_cpu_int8-u8s8.json
python scripts/plot_default_model.py
python scripts/targets.py
python scripts/readme_tables.py

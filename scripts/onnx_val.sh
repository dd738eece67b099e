#!/usr/bin/env bash
# FER+ val accuracy of scripts/early_g.py runs' FSR-FER models as deployed: each exported to its fused
# FP32 ONNX graph (fsrfer-export), where a scale-aware G gets each face's factor from the graph's own
# estimator, not the true factor the trainer's evaluation passes, and evaluated on ONNX Runtime CPU.
#
#   bash scripts/onnx_val.sh [--protocol resized|small|camera] LABEL=RUN_DIR ...
#
# Writes results/ferplus/onnx_val/LABEL[_PROTOCOL].json (fsrfer-eval's JSON). About 2 min per run here.
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOCOL=resized
if [ "${1:-}" = --protocol ]; then PROTOCOL=${2:-}; shift $(($# < 2 ? 1 : 2)); fi
case $PROTOCOL in
  resized|small|camera) ;;
  *) echo "error: --protocol '$PROTOCOL'; expected resized, small or camera" >&2; exit 2 ;;
esac
if [ $# -eq 0 ]; then
  echo "usage: bash scripts/onnx_val.sh [--protocol resized|small|camera] LABEL=RUN_DIR ..." >&2
  exit 2
fi
DATA=${FSRFER_DATA:-../shared/data}
OUT=results/ferplus/onnx_val
seen=" "
for item in "$@"; do
  label=${item%%=*} run=${item#*=}
  # LABEL names the result file: letters, digits, '.', '_' and '-' only (no path, not empty)
  if [ "$label" = "$item" ] || ! [[ $label =~ ^[A-Za-z0-9._-]+$ ]] || [[ $label =~ ^\.+$ ]] \
      || [ ! -f "$run/models/fsrfer.pt" ]; then
    echo "error: $item: expected LABEL=RUN_DIR, LABEL of letters, digits, '.', '_' or '-', with" \
         "RUN_DIR/models/fsrfer.pt" >&2
    exit 2
  fi
  # two items of one label would write one file, the second overwriting the first
  case $seen in *" $label "*) echo "error: label $label given twice; expected one LABEL per run" >&2; exit 2 ;; esac
  seen="$seen$label "
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
suffix=$([ "$PROTOCOL" = resized ] && echo "" || echo "_$PROTOCOL")
for item in "$@"; do
  label=${item%%=*} run=${item#*=}
  fsrfer-export "$run/models/fsrfer.pt" --name "$label" --out-dir "$TMP" -q
  fsrfer-eval --checkpoint "$TMP/$label.fp32.onnx" --data "$DATA/fer2013.npz" --labels ferplus --split val \
    --threads 2 --protocol "$PROTOCOL" --json "$OUT/$label$suffix.json"
done

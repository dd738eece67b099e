#!/usr/bin/env bash
# After a change of the SDK's preprocessing (Preprocessing.to_pixels), which protocols (b) and (c) go through and
# (a) does not: measure the shipped model, its frozen HR network and, where its checkpoint is at hand, its
# equal-budget baseline again on FER+ test under (b) and (c), and regenerate what depends on them.
#
#   bash scripts/refresh_protocols.sh [BASELINE_CHECKPOINT]
#
# The frozen HR network is taken out of fsrfer_edge/models/default.pt (scripts/early_g.py's extract_hr). Each
# network is first evaluated under (a) and must give exactly its committed file there
# (results/default_model/test.json, hr_test.json, baseline_test.json), or its (b) and (c) files are not written:
# they must describe the network the (a) file does. Without BASELINE_CHECKPOINT, or when it fails that check,
# the baseline's (b) and (c) files stay as they were measured, and the script says so.
# Then: the model card's accuracy section, results/targets.json, the plot and the README blocks.
# Environment: FSRFER_DATA (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 1 ]; then
  echo "usage: bash scripts/refresh_protocols.sh [BASELINE_CHECKPOINT]" >&2
  exit 2
fi
BASE=${1:-}
DATA=${FSRFER_DATA:-../shared/data}
OUT=results/default_model
for f in "$DATA/fer2013.npz" fsrfer_edge/models/default.onnx fsrfer_edge/models/default.pt \
         "$OUT/test.json" "$OUT/hr_test.json" "$OUT/baseline_test.json" ${BASE:+"$BASE"}; do
  [ -f "$f" ] || { echo "error: $f is missing" >&2; exit 2; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python - "$TMP/hr.pt" <<'PY'
import importlib.util, sys
from pathlib import Path
sys.path.insert(0, ".")
from trainer import checkpoint, config
spec = importlib.util.spec_from_file_location("early_g", "scripts/early_g.py")
early_g = importlib.util.module_from_spec(spec)
spec.loader.exec_module(early_g)
src = Path("fsrfer_edge/models/default.pt")
early_g.extract_hr(src, Path(sys.argv[1]), config.from_dict(checkpoint.load(src, kind="model")["meta"]["config"]))
PY
eval_test() {  # checkpoint protocol json
  fsrfer-eval --checkpoint "$1" --data "$DATA/fer2013.npz" --labels ferplus --split test --threads 2 \
    --protocol "$2" --json "$3" > /dev/null
}
same_accuracy() {  # committed.json new.json: the same accuracy at every factor, to the face
  python - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
acc = lambda d: {f: round(v["accuracy"] * d["n"]) for f, v in d["factors"].items()}
sys.exit(0 if (a["n"], acc(a)) == (b["n"], acc(b)) else 1)
PY
}
STAGE=$TMP/stage
mkdir -p "$STAGE"
refresh() {  # name checkpoint shown_as: (a) checked against OUT/name.json, then (b) and (c) staged in STAGE
  # (every step ends in `|| return 1`: called as a condition below, set -e does not stop this function)
  local name=$1 ckpt=$2 shown=$3 p
  eval_test "$ckpt" resized "$TMP/$name.json" || return 1
  if ! same_accuracy "$OUT/$name.json" "$TMP/$name.json"; then
    echo "$ckpt does not give $OUT/$name.json under protocol (a): its (b) and (c) files stay as they are" >&2
    return 1
  fi
  for p in small camera; do
    eval_test "$ckpt" "$p" "$TMP/${name}_$p.json" || return 1
    python - "$TMP/${name}_$p.json" "$STAGE/${name}_$p.json" "$shown" <<'PY' || return 1
import json, sys
sys.path.insert(0, ".")
from fsrfer_edge.fileio import write_json
doc = json.load(open(sys.argv[1]))
doc["checkpoint"] = sys.argv[3]
doc["command"] = "bash scripts/refresh_protocols.sh"
write_json(sys.argv[2], doc)
PY
  done
}
# The shipped graph and its HR network must both pass, or nothing is written.
refresh test fsrfer_edge/models/default.onnx fsrfer_edge/models/default.onnx || exit 1
refresh hr_test "$TMP/hr.pt" "fsrfer_edge/models/default.pt (its frozen HR network)" || exit 1
if [ -z "$BASE" ] || ! refresh baseline_test "$BASE" "$BASE"; then
  rm -f "$STAGE"/baseline_test_*.json
  echo "the baseline's (b) and (c) files ($OUT/baseline_test_small.json, baseline_test_camera.json) were measured" \
       "before this change and stay as they are" >&2
fi
for f in "$STAGE"/*.json; do  # (a failed mv stops here: `mv && echo` would not stop set -e)
  mv "$f" "$OUT/" || { echo "error: could not move $f into $OUT; nothing downstream was regenerated" >&2; exit 1; }
  echo "wrote $OUT/$(basename "$f")"
done
python scripts/ship_default.py --refresh-accuracy "$OUT"
python scripts/plot_default_model.py
python scripts/targets.py
python scripts/readme_tables.py

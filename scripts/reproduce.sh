#!/usr/bin/env bash
# Reproduce the real results: train every method on FER+ (and FER2013), evaluate on the test split,
# export FP32/FP16/INT8, evaluate the exports, write results/ and the README tables.
# Usage: bash scripts/reproduce.sh [ferplus|fer2013|ferplus_short|default ...]   (default: ferplus fer2013)
#   A name is a full run of configs/NAME.yaml (stage 1, FSR-FER and its ablations, the three baselines),
#   except `default`: the chain that made the shipped default model (README "The shipped default"):
#   the HR network of DEFAULT_HR_CONFIG (stage 1 only; skipped when FSRFER_HR names a checkpoint whose
#   FER network to use, e.g. fsrfer_edge/models/default.pt), the early G of DEFAULT_G_CONFIG with its
#   equal-budget LR-fine-tuned baseline (scripts/early_g.py), the factor estimator fitted on whole grey
#   levels, the route for HR faces, then scripts/ship_early_g.sh: the new default measured once on test
#   beside the baseline and the HR model, and every file and README block that depends on it (its val
#   results before the route: results/default_model/reproduced_val.json). Not in it: the edge budget
#   (scripts/edge_budget.py, which times the new default against the model of 8720f15 on this CPU).
# Environment: FSRFER_DATA (the folder with fer2013.npz and ferplus_labels.npz; default ../shared/data),
#   RUNS (run folders; default runs/), FSRFER_THREADS (evaluation threads; default 2),
#   FSRFER_TIME_BUDGET (minutes of training for this invocation, shared by its training commands in turn;
#   the one running when it is spent stops cleanly at its next epoch end, and this script exits 3: run it
#   again to continue), FSRFER_EXPORT_ARGS (more fsrfer-export options,
#   e.g. --no-simplify where onnxsim is not installed).
# Resumable: re-run after an interruption and finished steps are skipped (fsrfer-train --resume). A target that
#   finished is skipped whole on a later run (no evaluation or export again; its README block is rewritten from
#   its results) while its stamp, RUNS/NAME/reproduced.json (scripts/done_stamp.py), still matches: the same
#   config, data, code (fsrfer_edge/, trainer/, scripts/), FSRFER_EXPORT_ARGS, FSRFER_THREADS and package
#   versions (done_stamp.PACKAGES), and its outputs as it left them: its run folder(s) and the files it wrote under results/ (and, for
#   `default`, the model card). Not checked: files a lent machine does not keep between calls
#   (scripts/device_reproduce.sh): engines/NAME.* (fsrfer-export remakes them) and fsrfer_edge/models/default.*
#   (its call brings them back), nor the bench files, which are remade on each CPU. Remove the stamp to run a
#   target again regardless.
# On a lent GPU machine: scripts/device_reproduce.sh runs this there and brings results/ back.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${FSRFER_DATA:-../shared/data}
RUNS=${RUNS:-runs}
THREADS=${FSRFER_THREADS:-2}
DEFAULT_HR_CONFIG=${DEFAULT_HR_CONFIG:-configs/ferplus_soft_aug_120ep.yaml}
DEFAULT_G_CONFIG=${DEFAULT_G_CONFIG:-configs/ferplus_soft_aug_early_g_stem_camera_6ep_bn_lrg_rec3000.yaml}
DEADLINE=
if [ -n "${FSRFER_TIME_BUDGET:-}" ]; then
  DEADLINE=$(awk -v now="$(date +%s)" -v m="$FSRFER_TIME_BUDGET" 'BEGIN { if (m + 0 <= 0) exit 1; printf "%d", now + int(m * 60 + 0.999) }') \
    || { echo "error: FSRFER_TIME_BUDGET=$FSRFER_TIME_BUDGET; expected minutes > 0" >&2; exit 2; }
fi
NAMES=${*:-ferplus fer2013}
# Everything a run needs is checked before any starts.
for f in "$DATA/fer2013.npz" "$DATA/ferplus_labels.npz"; do
  [ -f "$f" ] || { echo "error: $f is missing; expected FSRFER_DATA to be a folder with fer2013.npz and" \
                        "ferplus_labels.npz (../shared/data/README.md)" >&2; exit 2; }
done
for n in $NAMES; do
  if [ "$n" = default ]; then
    for f in "$DEFAULT_G_CONFIG" "${FSRFER_HR:-$DEFAULT_HR_CONFIG}"; do
      [ -f "$f" ] || { echo "error: $f is missing (target 'default')" >&2; exit 2; }
    done
  else
    [ -f "configs/$n.yaml" ] || { echo "error: configs/$n.yaml is missing; expected a config name or 'default'" >&2; exit 2; }
  fi
done
mkdir -p "$RUNS"

# The code every target's results depend on, beside its config and the data (its stamp's inputs).
CODE=('fsrfer_edge/**/*.py' 'trainer/**/*.py' 'scripts/*.py' 'scripts/*.sh' setup.py)
SETTINGS=(--env "export_args=${FSRFER_EXPORT_ARGS:-}" --env "threads=$THREADS")

finished() {  # NAME STAMP INPUT...: 0 when STAMP says NAME finished with these inputs and outputs as it left them
  local n=$1 stamp=$2 rc=0
  shift 2
  python scripts/done_stamp.py check "$stamp" --inputs "$@" "${CODE[@]}" "${SETTINGS[@]}" || rc=$?
  case $rc in
    0) echo "$n: finished before, nothing it depends on changed since ($stamp); skipped (remove it to run $n" \
            "again)" >&2 ;;
    1) rm -f "$stamp" ;;
    *) exit "$rc" ;;
  esac
  return "$rc"
}

stamp() {  # STAMP INPUT... -- OUTPUT...: record that a target finished (done_stamp.py write)
  local stamp=$1 inputs=()
  shift
  while [ "$1" != -- ]; do inputs+=("$1"); shift; done
  shift
  python scripts/done_stamp.py write "$stamp" --inputs "${inputs[@]}" "${CODE[@]}" --outputs "$@" "${SETTINGS[@]}"
}

stopped() {
  echo "stopped at the time budget (FSRFER_TIME_BUDGET=${FSRFER_TIME_BUDGET:-} min): $1; run the same" \
       "command again to continue" >&2
  exit 3
}

budget() {  # sets BUDGET: the --time-budget left for the next training command (exit 3 when none is left)
  BUDGET=()
  [ -n "$DEADLINE" ] || return 0
  local left=$((DEADLINE - $(date +%s)))
  [ "$left" -gt 0 ] || stopped "no time left before $1"
  BUDGET=(--time-budget "$(awk -v s="$left" 'BEGIN { printf "%.3f", s / 60 }')")
}

train() {  # fsrfer-train ARGS...: resumes, keeps to the budget; exit 3 when it stopped there
  local rc=0
  budget "fsrfer-train $*"
  fsrfer-train "$@" --resume "${BUDGET[@]}" || rc=$?
  if [ "$rc" -eq 3 ]; then stopped "fsrfer-train $*"; fi
  [ "$rc" -eq 0 ] || exit "$rc"
}

faces() {  # LABELS OUT: every face with its labels and split, for INT8 calibration and the export's gate
  python - "$DATA/fer2013.npz" "$1" "$2" <<'PY'
import sys, numpy as np
from trainer.data import load_dataset
fs = load_dataset(sys.argv[1], labels=sys.argv[2])
np.savez(sys.argv[3], images=fs.images, labels=fs.labels, split=fs.split)
PY
}

full_run() {  # NAME: configs/NAME.yaml, every method, val and test, exports
  local n=$1 labels=ferplus
  [ "$n" = fer2013 ] && labels=fer2013
  local inputs=("configs/$n.yaml" "$DATA/fer2013.npz" "$DATA/ferplus_labels.npz")
  if finished "$n" "$RUNS/$n/reproduced.json" "${inputs[@]}"; then
    python scripts/report.py --name "$n" --split val --readme-only > /dev/null
    python scripts/report.py --name "$n" --split test --readme-only > /dev/null
    return 0
  fi
  train --config "configs/$n.yaml" --data "$DATA/fer2013.npz" --out "$RUNS/$n"
  python scripts/report.py --run "$RUNS/$n" --name "$n" --split val
  # The test split, once per released model: every method of the run.
  train --config "configs/$n.yaml" --data "$DATA/fer2013.npz" --out "$RUNS/$n" --steps eval-test
  # Faces for INT8 calibration (train split) and the export's accuracy gate (val split); not committed.
  faces "$labels" "$RUNS/${n}_faces.npz"
  # shellcheck disable=SC2086  # FSRFER_EXPORT_ARGS: extra fsrfer-export options (e.g. --no-simplify), split
  fsrfer-export "$RUNS/$n/models/fsrfer.pt" --name "$n" --out-dir "engines" --fp16 --int8 ${FSRFER_EXPORT_ARGS:-} \
    --calib "$RUNS/${n}_faces.npz" --calib-size 512 --eval-data "$RUNS/${n}_faces.npz" --eval-size 1000
  local onnx_rows=() v
  for v in fp32 fp16 int8-s8s8 int8-u8s8; do
    fsrfer-eval --checkpoint "engines/$n.$v.onnx" --data "$DATA/fer2013.npz" --labels "$labels" --split test \
      --threads "$THREADS" --json "results/$n/test_onnx_$v.json"
    onnx_rows+=(--onnx "fsrfer_onnx_$v=results/$n/test_onnx_$v.json")
  done
  python scripts/report.py --run "$RUNS/$n" --name "$n" --split test "${onnx_rows[@]}"
  stamp "$RUNS/$n/reproduced.json" "${inputs[@]}" -- "$RUNS/$n/models" "$RUNS/$n/eval" \
    "results/$n/val.json" "results/$n/test.json" "results/$n/test_onnx_*.json" "results/$n/val_*.png" "results/$n/test_*.png"
}

default_model() {  # the shipped default's chain (see the header)
  local r=$RUNS/default hr
  local inputs=("$DEFAULT_G_CONFIG" "${FSRFER_HR:-$DEFAULT_HR_CONFIG}" "$DATA/fer2013.npz" "$DATA/ferplus_labels.npz")
  finished default "$r/reproduced.json" "${inputs[@]}" && return 0
  if [ -n "${FSRFER_HR:-}" ]; then
    hr=$FSRFER_HR
  else
    train --config "$DEFAULT_HR_CONFIG" --data "$DATA/fer2013.npz" --out "$r/hr" --steps stage1
    hr=$r/hr/models/hr.pt
  fi
  # early_g.py resumes by itself and returns 0 when it stops at the budget: its val results say whether it
  # finished.
  budget "scripts/early_g.py --out $r/g"
  python scripts/early_g.py --config "$DEFAULT_G_CONFIG" --data "$DATA/fer2013.npz" --hr "$hr" --out "$r/g" \
    --steps stage2,baselines,eval --json results/default_model/reproduced_val.json "${BUDGET[@]}"
  [ -f "$r/g/eval/val/results.json" ] || stopped "scripts/early_g.py --out $r/g"
  local m=$r/ship/models
  if [ ! -f "$m/fsrfer.pt" ]; then  # written last: its presence means the estimator and the route are done
    mkdir -p "$m"
    python scripts/fit_factor_estimator.py "$r/g/models/fsrfer.pt" --data "$DATA/fer2013.npz" --round-input \
      --out "$m/fsrfer_est.pt"
    cp "$r/g/models/hr.pt" "$m/hr.pt"
    python scripts/route_hr.py "$m/fsrfer_est.pt" --out "$m/routed.pt"
    mv "$m/routed.pt" "$m/fsrfer.pt"
  fi
  local seed
  seed=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['seed'])" "$r/g/config.json")
  bash scripts/ship_early_g.sh "$r/ship" "$r/g" "Reproduced by bash scripts/reproduce.sh default, not chosen \
against anything: $DEFAULT_G_CONFIG, seed $seed, on the HR network of ${FSRFER_HR:-$DEFAULT_HR_CONFIG}, its \
factor estimator fitted on whole grey levels, routed (the chain that made the shipped default, run again)."
  local t=results/default_model/
  local made=("$r/g/models" "$r/g/eval" "$r/ship/models" fsrfer_edge/models/MODEL_CARD.md "${t}reproduced_val.json")
  [ -n "${FSRFER_HR:-}" ] || made+=("$r/hr/models")
  for v in "" _small _camera; do made+=("${t}test$v.json" "${t}baseline_test$v.json" "${t}hr_test$v.json"); done
  for v in fp16 int8-s8s8 int8-u8s8; do made+=("${t}test_$v.json"); done
  stamp "$r/reproduced.json" "${inputs[@]}" -- "${made[@]}"
}

for n in $NAMES; do
  if [ "$n" = default ]; then default_model; else full_run "$n"; fi
done

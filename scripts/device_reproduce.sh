#!/usr/bin/env bash
# scripts/reproduce.sh on a lent GPU machine (the device tool; docs/ddp.md "On a lent GPU machine"), and
# its results brought back here.
#
# There (what one device call runs; the data packed with the test rows, since reproduce.sh reports test):
#   python scripts/device_data.py pack ../shared/data/fer2013.npz .devcarry/data --with-test   # here, once
#   cp ../shared/data/ferplus_labels.npz .devcarry/data/
#   DATA_PACK=.devcarry/data RESULTS_DIR=$OUT RUN_MIN=7 bash scripts/device_reproduce.sh [NAMES]
# NAMES are reproduce.sh's (default: ferplus fer2013; `default` is the shipped default's chain). The runs
# live in WORK (default /tmp/fsrfer_device_reproduce), which the machine keeps while it is warm; training
# stops cleanly at the first epoch end after RUN_MIN minutes of the call (FSRFER_TIME_BUDGET; leave the
# call's limit room for an epoch and the exports after it), and the script then exits 3: make the same
# call again and it continues. A target that finished is skipped by later calls while its stamp matches
# (reproduce.sh's header): collect each call's files here before making the next call. What comes back, repacked every 20 s so that a call stopped at
# its limit still returns what was written:
#   RESULTS_DIR/results.tar.gz   every file under results/, README.md, docs/experiments.md and
#                                fsrfer_edge/models/MODEL_CARD.md that this call wrote, and logs/ (reproduce.log, checks.log)
#   RESULTS_DIR/default.onnx, default.pt   the new default model, when `default` shipped one
# `default` also times the new default's SDK speed there (results/bench_cpu_*.json, which record the
# machine's load): that CPU is not this one, so rerun those two fsrfer-bench commands of
# scripts/ship_early_g.sh here after collecting. Without onnxsim there, exports are made with --no-simplify
# (logged in checks.log).
#
# Here, afterwards (FILES_AT: the folder the device tool put the files in; one call's files at a time, in
# the order of the calls):
#   bash scripts/device_reproduce.sh collect FILES_AT
# unpacks them into this checkout and regenerates the README's and docs' blocks that read results/.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = collect ]; then
  set -e
  src=${2:?usage: bash scripts/device_reproduce.sh collect FILES_AT}
  [ -f "$src/results.tar.gz" ] || { echo "error: $src/results.tar.gz is missing; expected the folder of a" \
                                         "device_reproduce.sh call's files" >&2; exit 2; }
  # Only the paths the device side packs may come out of the tarball.
  bad=$(tar tzf "$src/results.tar.gz" | grep -Ev '^(results/|logs/|README\.md$|docs/experiments\.md$|fsrfer_edge/models/MODEL_CARD\.md$)' || true)
  [ -z "$bad" ] || { echo "error: $src/results.tar.gz holds unexpected paths: $bad" >&2; exit 2; }
  tar xzf "$src/results.tar.gz" --exclude='logs/*' --exclude=logs
  n=$(tar tzf "$src/results.tar.gz" | grep -vc '^logs/' || true)
  for f in default.onnx default.pt; do
    if [ -f "$src/$f" ]; then
      cp "$src/$f" "fsrfer_edge/models/$f.part" && mv "fsrfer_edge/models/$f.part" "fsrfer_edge/models/$f"
      echo "fsrfer_edge/models/$f replaced"
    fi
  done
  echo "unpacked $n files from $src/results.tar.gz"
  python scripts/targets.py > /dev/null
  python scripts/readme_tables.py
  exit 0
fi

: "${DATA_PACK:?packed data folder (scripts/device_data.py pack ... --with-test)}" "${RESULTS_DIR:?}"
: "${RUN_MIN:=7}"
PY=${PYTHON:-python3}
W=${WORK:-/tmp/fsrfer_device_reproduce}
mkdir -p "$W/data" "$W/logs" "$W/bin" "$RESULTS_DIR"
STAMP=$W/call_started
touch "$STAMP"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

pack() {
  local files
  files=$(find results README.md docs/experiments.md fsrfer_edge/models/MODEL_CARD.md -type f -newer "$STAMP" 2>/dev/null | sort)
  rm -rf "$W/pack" && mkdir -p "$W/pack/logs" && cp "$W"/logs/*.log "$W/pack/logs/" 2>/dev/null
  # shellcheck disable=SC2086
  tar czf "$RESULTS_DIR/.results.tar.gz.part" $files -C "$W/pack" logs && \
    mv "$RESULTS_DIR/.results.tar.gz.part" "$RESULTS_DIR/results.tar.gz"
}

# The package's commands, where it is not installed (the machine has no network for pip): each runs its
# entry point from this tree.
if ! command -v fsrfer-train > /dev/null; then
  sed -n 's/^ *"\(fsrfer-[a-z-]*\)=\([a-z_.]*\):\([a-z_]*\)",$/\1 \2 \3/p' setup.py | while read -r name mod fn; do
    printf '#!/bin/sh\nexec %s -c "import sys; from %s import %s as m; sys.argv[0] = \\"%s\\"; sys.exit(m())" "$@"\n' \
      "$PY" "$mod" "$fn" "$name" > "$W/bin/$name"
    chmod +x "$W/bin/$name"
  done
fi
# reproduce.sh calls `python`: make it this interpreter, not whatever else the image calls python (python2, a
# system python without torch). A wrapper, not a link: a link to a venv's python starts the base interpreter
# without the venv's packages (Python finds pyvenv.cfg from the path it was started by).
PY_PATH=$(command -v "$PY") || { echo "error: $PY (PYTHON) is not on PATH" >&2; exit 2; }
case "$PY_PATH" in /*) ;; *) PY_PATH="$PWD/$PY_PATH" ;; esac
if [ "$PY_PATH" != "$W/bin/python" ]; then
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$PY_PATH" > "$W/bin/python"
  chmod +x "$W/bin/python"
fi
export PATH="$W/bin:$PATH"
if ! $PY -c "import onnxsim" 2> /dev/null; then
  export FSRFER_EXPORT_ARGS="--no-simplify"
  echo "onnxsim is not installed here: exports are made with --no-simplify" >> "$W/logs/checks.log"
fi
{
  date -u; uptime; nproc; nvidia-smi -L 2>&1
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
} >> "$W/logs/checks.log" 2>&1

if [ ! -f "$W/data/fer2013.npz" ]; then
  $PY - "$DATA_PACK/meta.npz" <<'PY' || { pack; exit 2; }
import sys, numpy as np
keep = np.load(sys.argv[1])["keep"]
if not keep.all():
    sys.exit(f"error: {sys.argv[1]}: {int((~keep).sum())} rows (the test split) were packed without their images; "
             "reproduce.sh reports the test split: pack with scripts/device_data.py pack ... --with-test")
PY
  $PY scripts/device_data.py unpack "$DATA_PACK" "$W/data/fer2013.npz" >> "$W/logs/checks.log" 2>&1 || { pack; exit 2; }
  cp "$DATA_PACK/ferplus_labels.npz" "$W/data/ferplus_labels.npz"
fi

( trap 'kill "$s" 2>/dev/null; exit 0' TERM; while true; do sleep 20 & s=$!; wait "$s"; pack; done ) &
packer=$!
FSRFER_DATA=$W/data RUNS=$W/runs FSRFER_TIME_BUDGET=$RUN_MIN FSRFER_THREADS=${FSRFER_THREADS:-$(nproc)} \
  bash scripts/reproduce.sh "$@" >> "$W/logs/reproduce.log" 2>&1
rc=$?
echo "$(date -u) reproduce.sh $* exited $rc" >> "$W/logs/reproduce.log"
kill "$packer" 2>/dev/null; wait "$packer" 2>/dev/null
pack
for f in default.onnx default.pt; do
  if [ fsrfer_edge/models/$f -nt "$STAMP" ]; then cp "fsrfer_edge/models/$f" "$RESULTS_DIR/$f"; fi
done
tail -n 5 "$W/logs/reproduce.log"
case $rc in
  0) echo "reproduce.sh finished: bash scripts/device_reproduce.sh collect FILES_AT here" ;;
  3) echo "stopped at RUN_MIN=$RUN_MIN min: make the same call again while the machine is warm to continue" ;;
  *) echo "reproduce.sh failed (exit $rc): logs/reproduce.log in results.tar.gz" ;;
esac
exit "$rc"

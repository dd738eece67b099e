#!/usr/bin/env bash
# What one call of the lent GPU machine runs (the device tool; see docs/ddp.md "On a lent GPU machine"):
#   1. the CUDA checks: GPU identity through the SDK's cuda-python layer, the gpu-marked tests
#      (tests/test_tensorrt_gpu.py: TensorRT parts skip where TensorRT is absent; tests/test_train_device.py);
#   2. training runs in parallel, one process each, all on the one GPU: JOBS is "CONFIG:SEED[:STEPS] ...".
#      Without STEPS (or with STEPS not naming stage1) a job is `scripts/early_g.py --steps STEPS` (default
#      stage2,eval) from the HR network in HR_CKPT; with stage1 in STEPS it is `fsrfer-train --steps STEPS`
#      (python -m trainer.cli), which trains its own HR network. Each has a time budget of RUN_MIN minutes.
# Stage-1 jobs' HR networks come back as RESULTS_DIR/NAME.hr.pt, and the stage-2 models of the jobs named in
# KEEP_MODELS ("CONFIG_BASENAME_sSEED ...") as NAME.fsrfer.pt (e.g. a candidate default to ship). Data comes
# packed by scripts/device_data.py (DATA_PACK; its test rows are zeros unless packed with --with-test, so a job that
# evaluates the test split is refused without that); results, logs and the test log are packed into
# $RESULTS_DIR/results.tar.gz every 20 s, so that a call stopped at its limit still returns what finished.
# Exit status: 2 for a bad JOBS or missing FER+ labels (nothing started), 1 when a job or the gpu-marked tests failed (named on stderr,
# after everything is packed; a job stopped at RUN_MIN is not a failure), else 0.
#
#   DATA_PACK=.devcarry/data HR_CKPT=.devcarry/hr.pt RESULTS_DIR=$OUT RUN_MIN=6 JOBS="configs/a.yaml:0 ..." \
#       bash scripts/device_runs.sh
set -uo pipefail
cd "$(dirname "$0")/.."
: "${DATA_PACK:?packed data folder (scripts/device_data.py pack)}" "${RESULTS_DIR:?}"
: "${JOBS:?CONFIG:SEED[:STEPS] list}" "${RUN_MIN:=6}" "${KEEP_MODELS:=}"
for job in $JOBS; do  # every job is checked before any starts
    IFS=: read -r cfg seed steps <<< "$job"
    [ -f "$cfg" ] && [[ "$seed" =~ ^[0-9]+$ ]] || { echo "job '$job': expected CONFIG:SEED[:STEPS] with CONFIG a file" >&2; exit 2; }
    [[ ",${steps}," == *,stage1,* ]] || [ -f "${HR_CKPT:-}" ] || { echo "job '$job' trains from HR_CKPT, which is not a file: '${HR_CKPT:-}'" >&2; exit 2; }
done
# the FER+ votes every shipped config trains on (FERPLUS, or the pack's copy): a job found them missing only after
# the data was unpacked, and failed then
[ -f "${FERPLUS:-$DATA_PACK/ferplus_labels.npz}" ] || { echo "error: ${FERPLUS:-$DATA_PACK/ferplus_labels.npz} is" \
    "missing; expected the FER+ labels beside the packed data (cp ../shared/data/ferplus_labels.npz $DATA_PACK/)" \
    "or FERPLUS naming them" >&2; exit 2; }
PY=${PYTHON:-python3}
# A pack without the test rows unpacks them as zeros: no job may evaluate the test split on it (eval-test, or
# eval with a config whose eval.split is test). A missing meta.npz is left to the unpack below to report.
# shellcheck disable=SC2086
$PY - "$DATA_PACK/meta.npz" $JOBS <<'PYEOF' || exit 2
import os, sys
import numpy as np
meta, jobs = sys.argv[1], sys.argv[2:]
if os.path.isfile(meta) and not np.load(meta)["keep"].all():
    from trainer import config
    for job in jobs:
        cfg, *rest = job.split(":")
        steps = (rest[1] if len(rest) > 1 and rest[1] else "stage2,eval").split(",")
        if "eval-test" in steps or ("eval" in steps and config.load(cfg).eval.split == "test"):
            sys.exit(f"job '{job}' evaluates the test split, but {meta} was packed without the test rows (they "
                     "would be zeros): pack with scripts/device_data.py pack ... --with-test")
PYEOF
W=${WORK:-/tmp/fsrfer_device}
mkdir -p "$W/res" "$W/logs" "$W/data" "$RESULTS_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

pack() {
    # every protocol's evaluation of every run (results.json is (a); results_small/_camera.json (b), (c))
    tar czf "$RESULTS_DIR/.results.tar.gz.part" -C "$W" res logs \
        $(cd "$W" && ls -d runs/*/eval runs/*/config.json 2>/dev/null) && \
        mv "$RESULTS_DIR/.results.tar.gz.part" "$RESULTS_DIR/results.tar.gz"
}

{
    date -u; uptime; nproc; nvidia-smi -L
    $PY - <<'PYEOF'
import torch, numpy, onnxruntime
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
print("cudnn.allow_tf32", torch.backends.cudnn.allow_tf32, "matmul.allow_tf32", torch.backends.cuda.matmul.allow_tf32)
print("numpy", numpy.__version__, "onnxruntime", onnxruntime.__version__)
try:
    import cuda.bindings
    print("cuda-bindings", getattr(cuda.bindings, "__version__", "?"))
except ImportError as exc:
    print("cuda-bindings missing", exc)
from fsrfer_edge.backends.cuda_memory import select_memory
mem = select_memory("auto")
print("memory layer", mem.name, "identity", mem.device_identity(), "key", mem.device_identity().key)
mem.close()
PYEOF
} > "$W/logs/checks.log" 2>&1

$PY scripts/device_data.py unpack "$DATA_PACK" "$W/data/fer2013.npz" > "$W/logs/unpack.log" 2>&1 || { cat "$W/logs/unpack.log"; pack; exit 1; }
cp "${FERPLUS:-$DATA_PACK/ferplus_labels.npz}" "$W/data/ferplus_labels.npz"

pids=()
names=()  # what each of pids runs, for the failures' summary at the end
stage1_runs=()
for job in $JOBS; do
    IFS=: read -r cfg seed steps <<< "$job"
    name=$(basename "$cfg" .yaml)_s$seed
    common=(--config "$cfg" --seed "$seed" --data "$W/data/fer2013.npz" --out "$W/runs/$name" --time-budget "$RUN_MIN")
    if [[ ",${steps}," == *,stage1,* ]]; then
        $PY -m trainer.cli "${common[@]}" --steps "$steps" --resume > "$W/logs/$name.log" 2>&1 &
        stage1_runs+=("$name")
    else
        $PY scripts/early_g.py "${common[@]}" --hr "$HR_CKPT" --steps "${steps:-stage2,eval}" \
            --json "$W/res/$name.json" > "$W/logs/$name.log" 2>&1 &
    fi
    pids+=($!)
    names+=("$name")
done
# the gpu-marked tests beside the runs (their CPU parts are small)
$PY -m pytest -p no:cacheprovider -m gpu -rA -s tests/test_tensorrt_gpu.py tests/test_train_device.py \
    > "$W/logs/pytest_gpu.log" 2>&1 &
pids+=($!)
names+=(pytest_gpu)
# Repack every 20 s; the packer's sleep dies with it, so nothing holds the call's output open after the last job
( trap 'kill "$s" 2>/dev/null; exit 0' TERM; while true; do sleep 20 & s=$!; wait "$s"; pack; done ) &
packer=$!
failed=()  # a job stopped at its budget exits 0 (early_g.py) or 3 (fsrfer-train): not a failure
for i in "${!pids[@]}"; do
    wait "${pids[$i]}"; rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || failed+=("${names[$i]} (exit $rc, logs/${names[$i]}.log)")
done
kill "$packer" 2>/dev/null; wait "$packer" 2>/dev/null  # a pack under way finishes first
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv >> "$W/logs/checks.log" 2>&1
pack
# Stage-1 jobs' HR networks, one file each beside the tarball (the device tool returns at most 8 files of
# at most 16 MiB; an HR network is about 11 MB), to be carried as HR_CKPT by a later call.
for run in "${stage1_runs[@]}"; do
    [ -f "$W/runs/$run/models/hr.pt" ] && cp "$W/runs/$run/models/hr.pt" "$RESULTS_DIR/$run.hr.pt"
done
for run in $KEEP_MODELS; do
    [ -f "$W/runs/$run/models/fsrfer.pt" ] && cp "$W/runs/$run/models/fsrfer.pt" "$RESULTS_DIR/$run.fsrfer.pt" \
        || echo "KEEP_MODELS: no $W/runs/$run/models/fsrfer.pt" >&2
done
ls -la "$W/res"; tail -n 3 "$W"/logs/*.log
if [ ${#failed[@]} -gt 0 ]; then  # after everything is packed, so that the logs say why
    printf 'failed: %s\n' "${failed[@]}" >&2
    exit 1
fi

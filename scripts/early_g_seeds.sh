#!/usr/bin/env bash
# Issue 12's seed study: for each seed, the early-G FSR-FER, its two ablations (no re-weighting, no
# adversarial loss) and the equal-budget LR-fine-tuned baseline, all from the same frozen HR model
# (the shipped default's), evaluated on val under the three protocols; then one summary JSON with the
# mean and spread over seeds.
# Usage: bash scripts/early_g_seeds.sh [SEEDS] [RUNS_DIR] [TIME_BUDGET_MIN]
#   defaults: "0 1 2", /tmp/fsrfer-runs, no budget. Resumable: run the same command again after a stop.
# CPU: about 6 min per epoch here (12 epochs per seed); a GPU takes minutes for all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-0 1 2}
RUNS=${2:-/tmp/fsrfer-runs}
BUDGET=${3:-}
CONFIG=configs/ferplus_early_g.yaml
args=()
for s in $SEEDS; do
  out="$RUNS/early_g_seed$s"
  python scripts/early_g.py --config "$CONFIG" --seed "$s" --out "$out" \
    --steps stage2,ablations,baselines,eval ${BUDGET:+--time-budget "$BUDGET"}
  [ -f "$out/eval/val/results.json" ] || { echo "seed $s not finished; run again to continue"; exit 0; }
  args+=("early_g=$out")  # one label: rows aggregate over seeds
done
python scripts/early_g_summary.py --json results/ferplus/early_g_seeds.json \
  --note "early G (layer1 -> layer3, FiLM), ablations and equal-budget LR fine-tuning per seed; FER+ val" "${args[@]}"

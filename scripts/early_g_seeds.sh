#!/usr/bin/env bash
# Issue 12's seed study: for each seed, the early-G FSR-FER, its two ablations (no re-weighting, no
# adversarial loss), the same G without FiLM, the same G starting at the stem, and the
# equal-budget LR-fine-tuned baseline, all from the same frozen HR model (the shipped default's),
# evaluated on val; then one summary JSON with the mean and spread over seeds, and each row's paired
# difference to the method (same seed, same training subset).
# Usage: bash scripts/early_g_seeds.sh [SEEDS] [RUNS_DIR] [TIME_BUDGET_MIN] [CONFIG] [JSON]
#   defaults: "0 1 2", /tmp/fsrfer-runs, no budget, configs/ferplus_early_g_short.yaml (4,000 training
#   faces per seed), results/ferplus/early_g_seeds.json. The variants' configs are CONFIG with _nofilm and
#   _stem before .yaml. Resumable: run the same command again after a stop; the budget applies to each run.
# CPU (2 cores, load 1-3): about 22 min per seed with the short config (17 without the stem variant, from
# the runs of results/ferplus/early_g_seeds.json); a GPU takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-0 1 2}
RUNS=${2:-/tmp/fsrfer-runs}
BUDGET=${3:-}
CONFIG=${4:-configs/ferplus_early_g_short.yaml}
JSON=${5:-results/ferplus/early_g_seeds.json}
NOFILM=${CONFIG%.yaml}_nofilm.yaml
STEM=${CONFIG%.yaml}_stem.yaml
for f in "$NOFILM" "$STEM"; do [ -f "$f" ] || { echo "missing $f (a variant of $CONFIG)" >&2; exit 2; }; done
name=$(basename "${CONFIG%.yaml}")
args=()
for s in $SEEDS; do
  out="$RUNS/${name}_seed$s"
  python scripts/early_g.py --config "$CONFIG" --seed "$s" --out "$out" \
    --steps stage2,ablations,baselines,eval ${BUDGET:+--time-budget "$BUDGET"}
  [ -f "$out/eval/val/results.json" ] || { echo "seed $s not finished; run again to continue"; exit 0; }
  python scripts/early_g.py --config "$NOFILM" --seed "$s" --out "${out}_nofilm" \
    --steps stage2,eval ${BUDGET:+--time-budget "$BUDGET"}
  [ -f "${out}_nofilm/eval/val/results.json" ] || { echo "seed $s (no FiLM) not finished; run again to continue"; exit 0; }
  python scripts/early_g.py --config "$STEM" --seed "$s" --out "${out}_stem" \
    --steps stage2,eval ${BUDGET:+--time-budget "$BUDGET"}
  [ -f "${out}_stem/eval/val/results.json" ] || { echo "seed $s (G from the stem) not finished; run again to continue"; exit 0; }
  args+=("early_g=$out" "no_film=${out}_nofilm" "stem=${out}_stem")  # one label per variant: rows aggregate over seeds
done
python scripts/early_g_summary.py --json "$JSON" --against early_g/fsrfer --against early_g/lr_finetune \
  --note "$CONFIG, $NOFILM and $STEM: early G (layer1 -> layer3, or stem -> layer3 for stem; FiLM unless no_film), its ablations and equal-budget LR fine-tuning per seed, each seed on its own seeded training subset; FER+ val" "${args[@]}"

#!/usr/bin/env bash
# The method table of the fair-comparison issue: every method at its own best, 3 seeds, with noise
# verdicts and costs, from `loralab compare` (each method's rate and key settings searched in a bracket of
# its own, then its best trained with seeds 0, 1, 2). MiniLM, max length 128, batches of 8, one epoch.
#   bash experiments/compare-methods.sh science-exam      # or arc-easy; each resumable (rerun to go on)
# The default --methods: full, attention, qv, lora, rslora, dora, lora+, pissa, olora, vera, ia3, galore; 12 CPU hours,
# an hour a method, which its bracket fills (compare's default) after its three final runs. Half that left full
# fine-tuning 75 s for pilots on science-exam: a final run there is 250 steps at about 2 cpu s a step, and three
# take 1,600 s of a 30-minute share. A last rung of the final run's length trains two of the final runs itself.
# A run takes several 3-hour sessions: each commits the folder so far without weights (`compare.json` and the
# report then say "So far"), and the next reruns this script on it.
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data
OUT=experiments/results/compare-methods
common=(--model minilm --seeds 3 --epochs 1 --batch-size 8 --max-length 128 --budget-clock cpu --threads 1 --quiet)
for data in "$@"; do
  case $data in
    science-exam) loralab compare "${common[@]}" --budget 12h --out $OUT/science-exam --train $D/science-exam/train.csv \
                    --train-limit 2000 --valid $D/science-exam/valid.csv ;;
    arc-easy)     loralab compare "${common[@]}" --budget 12h --out $OUT/arc-easy --train $D/arc-easy/train.csv \
                    --valid $D/arc-easy/validation.csv ;;
    *) echo "unknown data set $data (science-exam arc-easy)" >&2; exit 2 ;;
  esac
done

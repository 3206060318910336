#!/usr/bin/env bash
# Figs. 2-3: does the failure grow as training goes on? The baseline's recipe (config/pretrain_baseline.py:
# T = 16, 10% warmup, then a cosine decay to 1e-5) trained for 1/4, 1/2, 1, 2 and 4 times the shipped
# baseline's 4200 steps (0.1x to 2x the Chinchilla budget of its 0.9M parameters, 20 tokens per
# parameter). Under a cosine schedule the rate at every step depends on the run's length, so each budget
# is a run of its own, as in the paper's fig. 3; the 4200-step one is assets/baseline itself.
#
#   bash experiments/training_length.sh [out] [train.py flags...]     # 1 h 36 min on a 2-core CPU
# Stopped at any moment, the same command continues it (train.py --finish=True).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out-length}
shift $(( $# < 1 ? $# : 1 ))
runs=""; labels=""
for steps in 1050 2100 4200 8400 16800; do
  run="$out/steps-$steps"
  if [ "$steps" = 4200 ]; then
    run=assets/baseline
  else
    python train.py config/pretrain_baseline.py --max_iters=$steps --warmup_iters=$((steps / 10)) \
      --out_dir="$run" --final_eval_seqs=0 --finish=True "$@"
  fi
  runs="$runs${runs:+,}$run"; labels="$labels${labels:+,}$((steps * 2048 / 1000))k tokens"
done
python evaluate.py --checkpoints="$runs" --labels="$labels" --seq_len=2048 --out_dir="$out/eval" ${EVAL_FLAGS:-}
python experiments/plot.py length "$out/eval/results.json" "$out/eval/training_length.png"

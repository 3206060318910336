#!/usr/bin/env bash
# Figs. 2-3: does the failure grow as training goes on? One pretraining of the baseline's recipe
# (config/pretrain_baseline.py, T = 16, constant learning rate) with a snapshot at 1x, 2x, 4x and 8x the
# Chinchilla budget of its 0.25M parameters (20 tokens per parameter: 2460 steps of 2048 tokens), and at
# step 4200, the shipped baseline. With a constant learning rate, a run continued with --init_from=resume
# is the same run as one that never stopped, so each snapshot is that run at that step.
#
#   bash experiments/training_length.sh [out] [train.py flags...]        # README.md gives its time
# Stopped at any moment, the same command continues it: train.py --finish=True continues $out/run (or
# keeps it, once it is at the step asked), and a snapshot is copied whole or not at all.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out-length}
shift $(( $# < 1 ? $# : 1 ))
runs=""; labels=""
for steps in 2460 4200 4921 9842 19684; do
  snap="$out/step-$steps"
  if [ ! -f "$snap/ckpt.pt" ]; then
    python train.py config/pretrain_baseline.py --out_dir="$out/run" --max_iters=$steps --final_eval_seqs=0 \
      --finish=True "$@"
    rm -rf "$snap.tmp" && mkdir -p "$snap.tmp" && cp "$out/run/ckpt.pt" "$out/run/config.json" "$snap.tmp/"
    mv -T "$snap.tmp" "$snap"
  fi
  runs="$runs${runs:+,}$snap"; labels="$labels${labels:+,}$((steps * 2048 / 1000))k tokens"
done
python evaluate.py --checkpoints="$runs" --labels="$labels" --seq_len=2048 --out_dir="$out/eval" ${EVAL_FLAGS:-}
python experiments/plot.py length "$out/eval/results.json" "$out/eval/training_length.png"

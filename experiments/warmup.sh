#!/usr/bin/env bash
# Fig. 11: does a longer learning-rate warmup hurt length generalization? The baseline's recipe
# (config/pretrain_baseline.py: 10% warmup, then a cosine decay to 1e-5) pretrained again with a
# warmup of 25% of the steps, and both scored on the same held-out windows. The paper's 45m Mamba-2
# fails beyond T with 25% and not with 10%.
#
#   bash experiments/warmup.sh [out] [train.py flags...]          # README.md gives its time
# Stopped at any moment, the same command continues it (train.py --finish=True).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out-warmup}
shift $(( $# < 1 ? $# : 1 ))
python train.py config/pretrain_baseline.py --warmup_iters=1050 --out_dir="$out/warmup-25" --final_eval_seqs=0 \
  --finish=True "$@"
python evaluate.py --checkpoints="assets/baseline,$out/warmup-25" --labels="10% warmup (the baseline),25% warmup" \
  --seq_len=2048 --out_dir="$out/eval" ${EVAL_FLAGS:-}

#!/usr/bin/env bash
# Figs. 1 and 10 at toy scale: four architectures on the one recurrence (Mamba-1, Mamba-2, GLA, RWKV-6),
# each pretrained with the baseline's recipe (config/pretrain_baseline.py: T = 16, a zero initial state;
# --arch picks the mixer, the recipe's sizes apply where they mean something), then post-trained for the
# same 300 steps with State Passing (config/post_state_passing.py) and from a zero state, the control
# (config/post_control.py). Per architecture: evaluate.py (the raw position-wise loss, the excess, the
# state's statistics) and effrem.py on the three; then one figure and one table for all four.
#
#   bash experiments/architectures.sh [out] [train.py flags...]
# The sizes per layer at d_model 128: Mamba-1 d_inner 256 heads of 16 x 1 (d_state 16, mamba_ssm's
# default), Mamba-2 4 heads of 32 x 32, GLA 4 heads of 16 x 32, RWKV-6 4 heads of 32 x 32.
# A run whose out_dir holds a checkpoint is kept, and so is an evaluation with its results.json: stop it
# and start it again. PRETRAIN_ITERS and POST_ITERS (steps), EVAL_FLAGS and EFFREM_FLAGS override the
# defaults; a check of the whole pipeline in a minute or two:
#   PRETRAIN_ITERS=4 POST_ITERS=2 EVAL_FLAGS="--n_seqs=2 --seq_len=256" EFFREM_FLAGS="--n_seqs=2 --ts=1,8" \
#     bash experiments/architectures.sh out-archs-check --eval_interval=2 --eval_iters=1
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out-archs}
shift $(( $# < 1 ? $# : 1 ))
pretrain_iters=${PRETRAIN_ITERS:-4200}
post_iters=${POST_ITERS:-300}
results=()
for arch in mamba1 mamba2 gla rwkv6; do
  dir="$out/$arch"
  sizes=(); [ "$arch" = mamba1 ] && sizes=(--d_state=16)
  if [ ! -f "$dir/baseline/ckpt.pt" ]; then
    python train.py config/pretrain_baseline.py --arch=$arch "${sizes[@]}" --out_dir="$dir/baseline" \
      --max_iters="$pretrain_iters" --final_eval_seqs=0 "$@"
  fi
  for run in control state_passing; do
    if [ -f "$dir/$run/ckpt.pt" ]; then echo "keeping $dir/$run"; continue; fi
    python train.py "config/post_$run.py" --init_from="$dir/baseline" --out_dir="$dir/$run" \
      --max_iters="$post_iters" --final_eval_seqs=0 "$@"
  done
  runs="$dir/baseline,$dir/control,$dir/state_passing"
  if [ ! -f "$dir/eval/results.json" ]; then
    python evaluate.py --seq_len=2048 ${EVAL_FLAGS:-} --checkpoints="$runs" \
      --labels="baseline,control,state passing" --reference="$dir/control" --out_dir="$dir/eval"
  fi
  if [ ! -f "$dir/effrem/effrem.json" ]; then
    python effrem.py ${EFFREM_FLAGS:-} --checkpoints="$runs" --labels="baseline,control,state passing" \
      --out_dir="$dir/effrem"
  fi
  results+=("$dir/eval/results.json")
done
python experiments/plot.py architectures "${results[@]}" "$out/architectures.png"

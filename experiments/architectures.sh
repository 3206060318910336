#!/usr/bin/env bash
# Figs. 1 and 10 at toy scale: four architectures on the one recurrence (Mamba-1, Mamba-2, GLA, RWKV-6),
# each pretrained with the baseline's recipe (config/pretrain_baseline.py: T = 16, a zero initial state;
# --arch picks the mixer, the recipe's sizes apply where they mean something), then post-trained for the
# same steps with State Passing (config/post_state_passing.py) and from a zero state, the control
# (config/post_control.py). Per architecture: evaluate.py (the raw position-wise loss, the excess, the
# state's statistics) and effrem.py on the three; then one figure and one table for all four.
#
#   bash experiments/architectures.sh [out] [train.py flags...]
# The sizes follow from the recipe's d_model 256 (mixers.py says how per architecture; Mamba-1 takes
# mamba_ssm's d_state 16). The two Mamba baselines are shipped, made by this recipe: assets/baseline
# (Mamba-2, the demo's) and assets/baseline_mamba1 (this script's own Mamba-1 run, weights only). On 2
# CPU cores Mamba-1's pretraining alone takes 46 min (its scan is the loop: mixers.Mamba1 says why), so
# shipping it keeps the whole script near an hour (GLA's and RWKV-6's pretrainings are most of it);
# FROM_SCRATCH=1 pretrains all four instead (about 2 h: Mamba-2 adds 13 min, Mamba-1 46).
# Stopped at any moment, the same command continues it: train.py --finish=True keeps a finished run and
# continues a stopped one, and an evaluation with its results.json is kept.
# ARCHS picks the architectures (default all four); PRETRAIN_ITERS and POST_ITERS (steps; PRETRAIN_ITERS
# pretrains all four), EVAL_FLAGS and EFFREM_FLAGS override the defaults; a check of the whole
# pipeline in a minute or two:
#   PRETRAIN_ITERS=4 POST_ITERS=2 EVAL_FLAGS="--n_seqs=2 --seq_len=256" EFFREM_FLAGS="--n_seqs=2 --ts=1,8" \
#     bash experiments/architectures.sh out-archs-check --eval_interval=2 --eval_iters=1
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out-archs}
shift $(( $# < 1 ? $# : 1 ))
pretrain=(); [ -n "${PRETRAIN_ITERS:-}" ] && pretrain=(--max_iters="$PRETRAIN_ITERS")   # default: the configs'
post=(); [ -n "${POST_ITERS:-}" ] && post=(--max_iters="$POST_ITERS")
results=()
for arch in ${ARCHS:-mamba1 mamba2 gla rwkv6}; do
  dir="$out/$arch"
  base="$dir/baseline"
  if [ -z "${PRETRAIN_ITERS:-}${FROM_SCRATCH:-}" ] && [ "$arch" = mamba2 ]; then
    base=assets/baseline
  elif [ -z "${PRETRAIN_ITERS:-}${FROM_SCRATCH:-}" ] && [ "$arch" = mamba1 ]; then
    base=assets/baseline_mamba1
  else
    sizes=(); [ "$arch" = mamba1 ] && sizes=(--d_state=16)
    python train.py config/pretrain_baseline.py --arch=$arch "${sizes[@]}" --out_dir="$base" \
      "${pretrain[@]}" --final_eval_seqs=0 --finish=True "$@"
  fi
  for run in control state_passing; do
    python train.py "config/post_$run.py" --init_from="$base" --out_dir="$dir/$run" \
      "${post[@]}" --final_eval_seqs=0 --finish=True "$@"
  done
  runs="$base,$dir/control,$dir/state_passing"
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

#!/usr/bin/env bash
# The main job: the paper's fig. 1 on a CPU, in about 5 minutes.
#
# assets/baseline is a 0.9M-parameter Mamba-2 pretrained from a zero initial state with a training
# context of T = 16 bytes, with the paper's recipe (`python train.py config/pretrain_baseline.py`
# remakes it, into out-baseline, in about 13 minutes). It fails to length-generalize. As the paper
# does (sec. 4), it is post-trained briefly, 84 steps (2% of its pretraining), with State Passing
# (sec. 4.4) and, as the control, from a zero state as in pretraining; then all three are scored on
# held-out windows of 2048 bytes (128 T), and their Effective Remembrance is measured at 4 T and at
# 64 T. Results and figures go to eval-demo/. Running it again replaces its own two runs.
set -euo pipefail
cd "$(dirname "$0")"

python train.py config/post_control.py --overwrite=True --final_eval_seqs=0      # evaluate.py measures below
python train.py config/post_state_passing.py --overwrite=True --final_eval_seqs=0
runs=assets/baseline,out-control,out-state_passing
names="baseline,control (84 zero-state steps),state passing (84 steps)"
python evaluate.py --checkpoints=$runs --labels="$names" --seq_len=2048 --reference=out-control \
  --out_dir=eval-demo
python effrem.py --checkpoints=$runs --labels="$names" --out_dir=eval-demo
python effrem.py --checkpoints=$runs --labels="$names" --T=1024 --ts=1,16,256,1008 --n_seqs=64 \
  --out_dir=eval-demo/effrem-64T

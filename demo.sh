#!/usr/bin/env bash
# The main job: the paper's demonstration (secs. 3-4) on a CPU.
#
# assets/baseline is a 0.25M-parameter Mamba-2 pretrained from a zero initial state with a training
# context of T = 16 bytes (`python train.py config/pretrain_baseline.py` remakes it, into out-baseline,
# in about 10 minutes). It fails to length-generalize. Following the paper, it is post-trained for 300 steps with
# State Passing (sec. 4.4) and, as the control, for the same 300 steps from a zero state as in
# pretraining; then all three are measured on held-out sequences of 2048 bytes (128 T). Results and
# figures go to eval-demo/. Running it again replaces its own two runs (--overwrite=True).
set -euo pipefail
cd "$(dirname "$0")"

python train.py config/post_control.py --overwrite=True
python train.py config/post_state_passing.py --overwrite=True
runs=assets/baseline,out-control,out-state_passing
names="baseline,control (300 zero-state steps),state passing (300 steps)"
python evaluate.py --checkpoints=$runs --labels="$names" --seq_len=2048 --reference=out-control --out_dir=eval-demo
python effrem.py --checkpoints=$runs --labels="$names" --out_dir=eval-demo

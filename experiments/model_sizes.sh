#!/usr/bin/env bash
# Fig. 5 across model sizes: does the order of the interventions (random < fitted < state passing ~ TBTT,
# sec. 4) emerge as the model grows? Each size is pretrained with the baseline's recipe
# (config/pretrain_baseline.py: T = 16, 8.6M tokens; d_model 256 is the shipped assets/baseline), then
# post-trained and scored by interventions.sh.
#
#   bash experiments/model_sizes.sh [out] [train.py flags...]
#   D_MODELS="64 128 256" bash experiments/model_sizes.sh out-sizes       # the default sizes
# Stopped at any moment, the same command continues it (train.py --finish=True, as in interventions.sh).
# d_model 64, 128, 256, 512 give 0.08M, 0.25M, 0.9M and 3.4M parameters. README.md gives the times of the
# default sizes on a 2-core CPU; 512 takes hours there (on a GPU pass --device=cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out-sizes}
shift $(( $# < 1 ? $# : 1 ))
for d in ${D_MODELS:-64 128 256}; do
  base="$out/d$d/baseline"
  if [ "$d" = 256 ]; then
    base=assets/baseline
  else
    python train.py config/pretrain_baseline.py --d_model="$d" --out_dir="$base" --final_eval_seqs=0 --finish=True "$@"
  fi
  bash experiments/interventions.sh "$base" "$out/d$d" "$@"
done
python experiments/plot.py sizes "$out"/d*/eval/results.json "$out/model_sizes.png"

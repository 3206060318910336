#!/usr/bin/env bash
# Fig. 5: the four initial-state interventions of sec. 4 and the zero-state control, each post-trained
# for the same 300 steps from one baseline, then scored on the same held-out sequences.
#
#   bash experiments/interventions.sh [baseline] [out] [train.py flags...]
#   bash experiments/interventions.sh assets/baseline out-fig5              # the default, ~5 min on 2 cores
# The train.py flags go to every post-training; evaluate.py's, if any, in the variable EVAL_FLAGS.
#
# A run whose out_dir already holds a checkpoint is kept (delete it to train again), so the script can be
# stopped and started again. Two measures, in $out/eval (evaluate.py):
#   excess        full - truncated context, per model: "does the context beyond T hurt this model?"
#   vs reference  full-context loss minus the control's on the same tokens: "at long positions, is this
#                 model better than one post-trained for as long from a zero state?"
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-assets/baseline}
out=${2:-out-fig5}
shift $(( $# < 2 ? $# : 2 ))

# random noise's sigma on the scale of the baseline's own states (app. F: it must be tuned per model):
# the std of S over all layers at t = T, measured on 64 held-out sequences.
if [ ! -f "$out/baseline-eval/results.json" ]; then
  python evaluate.py ${EVAL_FLAGS:-} --checkpoints="$base" --n_seqs=64 --out_dir="$out/baseline-eval"
fi
sigma=$(python -c "import json,sys; r=json.load(open(sys.argv[1]))['checkpoints'][0]; \
print(f\"{r['state_std'][r['state_t'].index(r['T_train'])]:.3g}\")" "$out/baseline-eval/results.json")
echo "random noise: sigma = $sigma, the baseline's state std at T"

for run in control random_noise fitted_noise state_passing tbtt; do
  if [ -f "$out/$run/ckpt.pt" ]; then echo "keeping $out/$run"; continue; fi
  extra=(); [ "$run" = random_noise ] && extra=(--noise_std="$sigma")
  python train.py "config/post_$run.py" --init_from="$base" --out_dir="$out/$run" "${extra[@]}" "$@"
done
runs="$base,$out/control,$out/random_noise,$out/fitted_noise,$out/state_passing,$out/tbtt"
python evaluate.py ${EVAL_FLAGS:-} --checkpoints="$runs" --labels="baseline,control,random noise,fitted noise,state passing,TBTT" \
  --reference="$out/control" --seq_len=2048 --out_dir="$out/eval"
python experiments/plot.py interventions "$out/eval/results.json" "$out/eval/interventions.png"

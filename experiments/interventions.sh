#!/usr/bin/env bash
# Fig. 5: the four initial-state interventions of sec. 4 and the zero-state control, each post-trained
# for the same 300 steps from one baseline, then scored on the same held-out sequences.
#
#   bash experiments/interventions.sh [baseline] [out] [train.py flags...]
#   bash experiments/interventions.sh assets/baseline out-fig5              # the default (README.md: its time)
# The train.py flags go to every post-training; evaluate.py's, if any, in the variable EVAL_FLAGS.
#
# It can be stopped at any moment (Ctrl-C, SIGTERM) and started again with the same command: train.py
# --finish=True keeps a post-training that ran its steps, continues one that stopped, and refuses one made
# with other settings (delete it to make it again). Two measures, in $out/eval (evaluate.py):
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
  python evaluate.py --checkpoints="$base" --n_seqs=64 --out_dir="$out/baseline-eval" ${EVAL_FLAGS:-}
fi
sigma=$(python - "$out/baseline-eval/results.json" "$base" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["checkpoints"][0]
if r["checkpoint"] != sys.argv[2]:
    sys.exit(f"{sys.argv[1]} measured {r['checkpoint']}, not {sys.argv[2]}: delete it to measure {sys.argv[2]}")
print(f"{r['state_std'][r['state_t'].index(r['T_train'])]:.3g}")
EOF
)
echo "random noise: sigma = $sigma, the baseline's state std at T"

for run in control random_noise fitted_noise state_passing tbtt; do
  extra=(); [ "$run" = random_noise ] && extra=(--noise_std="$sigma")
  python train.py "config/post_$run.py" --init_from="$base" --out_dir="$out/$run" --finish=True "${extra[@]}" "$@"
done
runs="$base,$out/control,$out/random_noise,$out/fitted_noise,$out/state_passing,$out/tbtt"
python evaluate.py --checkpoints="$runs" --labels="baseline,control,random noise,fitted noise,state passing,TBTT" \
  --reference="$out/control" --seq_len=2048 --out_dir="$out/eval" ${EVAL_FLAGS:-}
python experiments/plot.py interventions "$out/eval/results.json" "$out/eval/interventions.png"

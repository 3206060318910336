#!/usr/bin/env bash
# App. F, fig. 12: random-noise post-training at several sigma, as multiples of the baseline's own state
# std at t = T (measured by interventions.sh, which this reuses: run it first with the same arguments).
# Too little noise leaves the failure; too much costs loss inside the training context.
#
#   bash experiments/sigma_sweep.sh [baseline] [out] [train.py flags...]      # README.md gives its time
# Stopped at any moment, the same command continues it (train.py --finish=True, as in interventions.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-assets/baseline}
out=${2:-out-fig5}
shift $(( $# < 2 ? $# : 2 ))
if [ ! -f "$out/eval/results.json" ]; then   # written once every run of interventions.sh has finished
  echo "no $out/eval: run bash experiments/interventions.sh $base $out to its end first" >&2; exit 1
fi
std=$(python -c "import json,sys; r=json.load(open(sys.argv[1]))['checkpoints'][0]; \
print(r['state_std'][r['state_t'].index(r['T_train'])])" "$out/baseline-eval/results.json")

runs="$out/control"; labels="control"
for m in 0.25 0.5 1 2 4 8; do
  sigma=$(python -c "print(f'{$m * $std:.3g}')")
  run="$out/sigma-x$m"
  python train.py config/post_random_noise.py --init_from="$base" --out_dir="$run" --noise_std="$sigma" \
    --finish=True "$@"
  runs="$runs,$run"; labels="$labels,sigma $sigma (x$m)"
done
python evaluate.py --checkpoints="$runs" --labels="$labels" --reference="$out/control" --seq_len=2048 \
  --out_dir="$out/sigma-eval" ${EVAL_FLAGS:-}
python experiments/plot.py sigma "$out/sigma-eval/results.json" "$out/sigma-eval/sigma_sweep.png"

#!/bin/bash
# The paper's long-context tasks (sec. 5), one command each: trains every setting and seed with
# train.py and its config/task_*.py, then scores them with evaluate_tasks.py (tables, figures,
# JSON), into eval-tasks/<task>.{json,png}:
#   ./tasks.sh copy      table 1: zero vs State Passing from scratch, 3 seeds -> copy.*
#   ./tasks.sh passkey   fig. 7: standard fine-tuning vs fitted noise, heatmaps -> passkey.*
#   ./tasks.sh babi      fig. 6: zero vs State Passing, qa1-qa3 -> qa1.*, qa2.*, qa3.*
# SEEDS="1 2 3" (the default) sets the seeds, TRAIN_FLAGS="--max_iters=..." adds flags to train.py
# alone. Further arguments go to train.py and evaluate_tasks.py alike: only the ones both know
# (--threads=1 on a shared CPU, --device=cuda). Stopped at any moment, the same command continues:
# train.py --finish=True keeps a run that ran its steps, continues one that stopped, and refuses one
# made with other settings (delete it, or all of out-tasks/, to train again).
set -e
task=$1; shift || true
seeds=${SEEDS:-"1 2 3"}

# train <config name> <intervention> <seed> [flags]: into out-tasks/<name>-<intervention>-<seed>
train() {
  local out=out-tasks/$1-$2-$3
  echo "== $out"
  python train.py config/task_$1.py --intervention=$2 --seed=$3 --out_dir=$out --finish=True \
    $TRAIN_FLAGS "${@:4}"
  runs="$runs,$out"
}

case $task in
  copy)    settings="zero state_passing" ;;
  passkey) settings="zero fitted_noise" ;;
  babi)    settings="zero state_passing" ;;
  *) echo "usage: ./tasks.sh copy|passkey|babi [--threads=1] [--device=cuda]"; exit 1 ;;
esac
runs=""
for seed in $seeds; do
  for s in $settings; do train $task $s $seed "$@"; done
done
runs=${runs#,}
if [ $task = babi ]; then
  for qa in qa1 qa2 qa3; do
    python evaluate_tasks.py --task=$qa --checkpoints=$runs --n_examples=50 --out_dir=eval-tasks \
      "$@"
  done
else
  n_examples=$([ $task = copy ] && echo 100 || echo 20)
  python evaluate_tasks.py --task=$task --checkpoints=$runs --out_dir=eval-tasks \
    --n_examples=$n_examples "$@"
fi

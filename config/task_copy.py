# Synthetic copying (paper sec. 5.3, table 1; Jelassi et al. 2024): a small Mamba-2 trained from
# scratch to copy random strings of 4-8 letters (of 16) after a separator, the loss on
# the copy only.
# evaluate_tasks.py scores copies of 24 letters, 3x the longest trained, as the paper trains on
# 50-100 and evaluates at 300. One run per setting and seed:
#   python train.py config/task_copy.py --intervention=zero --seed=1 --out_dir=out-copy-zero-1
#   python train.py config/task_copy.py --intervention=state_passing --seed=1 \
#       --out_dir=out-copy-sp-1
# tasks.sh copy runs both settings over 3 seeds and prints the table.
out_dir = "out-copy"
init_from = "scratch"
task = "copy"
intervention = "zero"     # or "state_passing" (sec. 4.4)
dt_min = 1e-3             # mamba_ssm's dt range, as the paper's models (not the baseline's slow
dt_max = 1e-1             # [1e-5, 1e-3]: docs/tasks.md)
block_size = 17           # 2 x 8 + 1: the copies of 4-8 letters, with the start and the separator
batch_size = 64
max_iters = 3000
learning_rate = 3e-3
warmup_iters = 100
lr_decay = "constant"
eval_interval = 500
eval_iters = 4
log_interval = 100
final_eval_seqs = 0       # the measure is the task's, not the text's (evaluate_tasks.py)

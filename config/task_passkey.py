# Passkey retrieval (paper sec. 5.2, fig. 7; Mohtashami & Jaggi 2023): the shipped baseline
# (pretrained on the stdlib at T = 16) fine-tuned on passkey prompts of T = 256 tokens (the shortest
# prompt with the bytes tokenizer is 146 tokens; the rest is stdlib code as filler, the key at a
# uniform depth), the loss on the key only. The comparison of fig. 7: standard fine-tuning (zero
# initial state) against fine-tuning with fitted noise (sec. 4.3); evaluate_tasks.py then scores
# 256..4096 tokens (16 T) x 5 depths.
#   python train.py config/task_passkey.py --intervention=zero --seed=1 --out_dir=out-passkey-zero-1
#   python train.py config/task_passkey.py --intervention=fitted_noise --seed=1 \
#       --out_dir=out-passkey-fn-1
# tasks.sh passkey runs both and draws the heatmaps.
out_dir = "out-passkey"
init_from = "assets/baseline"
task = "passkey"
intervention = "zero"     # or "fitted_noise"
fitted_beta = 0.1
block_size = 256
batch_size = 16
max_iters = 600           # the key is right within T after about 360 steps; at 600 on
                          # every prompt (docs/tasks.md)
learning_rate = 1e-3
warmup_iters = 50
lr_decay = "constant"
eval_interval = 250
eval_iters = 4
log_interval = 50
final_eval_seqs = 0       # the measure is the task's, not the text's (evaluate_tasks.py)

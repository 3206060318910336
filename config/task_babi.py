# BABILong-style reasoning (paper sec. 5.1, fig. 6; Kuratov et al. 2024): the shipped baseline
# fine-tuned on bAbI qa1-qa3 stories (mixed) whose facts are scattered through T = 256 tokens of
# stdlib code, the loss on the answer only. Fig. 6 compares the official checkpoint with its State
# Passing and TBTT post-trainings; here the intervention acts during the fine-tuning itself. TBTT is
# not offered: the task's samples are unrelated, so handing one's final state to the next is State
# Passing (with p_zero = 0), and train.py refuses tbtt with a task. evaluate_tasks.py then scores
# haystacks of 0 (the facts alone) to 4096 tokens (16 T).
#   python train.py config/task_babi.py --intervention=zero --seed=1 --out_dir=out-babi-zero-1
#   (and --intervention=state_passing); tasks.sh babi runs both.
out_dir = "out-babi"
init_from = "assets/baseline"
task = "babi"
intervention = "zero"     # or "state_passing"
block_size = 256
batch_size = 16
max_iters = 1000          # the answers' accuracy stops rising by about 500 steps (docs/tasks.md:
                          # 2000 did no better)
learning_rate = 1e-3
warmup_iters = 50
lr_decay = "constant"
eval_interval = 250
eval_iters = 4
log_interval = 50
final_eval_seqs = 0       # the measure is the task's, not the text's (evaluate_tasks.py)

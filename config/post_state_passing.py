# State Passing post-training of the baseline (paper sec. 4.4): each batch starts from the final
# state of the previous (unrelated, shuffled) batch, each row zeroed with probability 0.1. 300 steps
# is 7% of the baseline's 4200 pretraining steps; the paper uses 100-500 steps (0.02-0.1%).
#   python train.py config/post_state_passing.py
out_dir = "out-state_passing"
init_from = "assets/baseline"
block_size = 16           # the baseline's training context (post-training keeps it)
batch_size = 128
intervention = "state_passing"
p_zero = 0.1
max_iters = 300
learning_rate = 1e-3       # a third of the pretraining rate: at 3e-3 the fix costs more in-context loss
lr_decay = "constant"
warmup_iters = 0

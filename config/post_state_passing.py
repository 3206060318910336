# State Passing post-training of the baseline (paper sec. 4.4): each batch starts from the final
# SSM state of the previous (unrelated, shuffled) batch, each row zeroed with probability 0.1; the
# conv's history starts from zero, as in the paper's eq. 4 (train.py's pass_conv).
#   python train.py config/post_state_passing.py
out_dir = "out-state_passing"
init_from = "assets/baseline"
block_size = 16           # the baseline's training context (post-training keeps it)
batch_size = 128
intervention = "state_passing"
p_zero = 0.1
max_iters = 84            # 2% of the baseline's 4200 pretraining steps (the paper: 0.02-0.1%)
learning_rate = 8e-4      # constant; README, "The post-training recipe", says why this rate
lr_decay = "constant"
warmup_iters = 0

# The control for the post-trainings: the same 84 steps at the same rate from the same baseline,
# from a zero state as in pretraining. Whatever a post-training changes beyond this is the
# intervention's doing.
#   python train.py config/post_control.py
out_dir = "out-control"
init_from = "assets/baseline"
block_size = 16           # the baseline's training context (post-training keeps it)
batch_size = 128
intervention = "zero"
max_iters = 84            # 2% of the baseline's 4200 pretraining steps (the paper: 0.02-0.1%)
learning_rate = 8e-4      # constant; README, "The post-training recipe", says why this rate
lr_decay = "constant"
warmup_iters = 0

# TBTT post-training (paper sec. 4.5): 32 contiguous streams through the training data; each batch
# continues the previous one row by row and starts from its final state (gradient cut between).
#   python train.py config/post_tbtt.py
out_dir = "out-tbtt"
init_from = "assets/baseline"
block_size = 16           # the baseline's training context (post-training keeps it)
batch_size = 128
intervention = "tbtt"
max_iters = 84            # 2% of the baseline's 4200 pretraining steps (the paper: 0.02-0.1%)
learning_rate = 8e-4      # constant; README, "The post-training recipe", says why this rate
lr_decay = "constant"
warmup_iters = 0

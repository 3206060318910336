# Fitted-noise post-training (paper sec. 4.3): S_{-1} drawn per layer and head from a Gaussian whose
# mean and variance follow the final states seen in training (moving averages, beta = 0.1).
#   python train.py config/post_fitted_noise.py
out_dir = "out-fitted_noise"
init_from = "assets/baseline"
block_size = 16           # the baseline's training context (post-training keeps it)
batch_size = 128
intervention = "fitted_noise"
fitted_beta = 0.1
max_iters = 84            # 2% of the baseline's 4200 pretraining steps (the paper: 0.02-0.1%)
learning_rate = 8e-4      # constant; README, "The post-training recipe", says why this rate
lr_decay = "constant"
warmup_iters = 0

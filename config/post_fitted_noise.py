# Fitted-noise post-training (paper sec. 4.3): S_{-1} drawn per layer and head from a Gaussian whose
# mean and variance follow the final states seen in training (moving averages, beta = 0.1).
#   python train.py config/post_fitted_noise.py
out_dir = "out-fitted_noise"
init_from = "assets/baseline"
block_size = 16           # the baseline's training context (post-training keeps it)
batch_size = 128
intervention = "fitted_noise"
fitted_beta = 0.1
max_iters = 300
learning_rate = 1e-3       # a third of the pretraining rate: at 3e-3 the fix costs more in-context loss
lr_decay = "constant"
warmup_iters = 0

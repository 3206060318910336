# Random-noise post-training (paper sec. 4.2): every entry of S_{-1} i.i.d. N(0, noise_std^2), the
# same sigma for every layer and head. sigma must be tuned per model (app. F): too small changes
# nothing, too large hurts the first tokens.
#   python train.py config/post_random_noise.py
out_dir = "out-random_noise"
init_from = "assets/baseline"
block_size = 16           # the baseline's training context (post-training keeps it)
batch_size = 128
intervention = "random_noise"
noise_std = 0.1
max_iters = 300
learning_rate = 1e-3       # a third of the pretraining rate: at 3e-3 the fix costs more in-context loss
lr_decay = "constant"
warmup_iters = 0

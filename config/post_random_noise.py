# Random-noise post-training (paper sec. 4.2): every entry of S_{-1} i.i.d. N(0, noise_std^2), the
# same sigma for every layer and head. sigma must be tuned per model (app. F): too small changes
# nothing, too large hurts the first tokens. Here sigma is the scale of the baseline's own states:
# the std of S over all layers at t = T, 0.018 (`python evaluate.py --checkpoints=assets/baseline`,
# which prints it; experiments/interventions.sh measures it for any baseline,
# experiments/sigma_sweep.sh sweeps it).
#   python train.py config/post_random_noise.py
out_dir = "out-random_noise"
init_from = "assets/baseline"
block_size = 16           # the baseline's training context (post-training keeps it)
batch_size = 128
intervention = "random_noise"
noise_std = 0.018
max_iters = 84            # 2% of the baseline's 4200 pretraining steps (the paper: 0.02-0.1%)
learning_rate = 8e-4      # constant; README, "The post-training recipe", says why this rate
lr_decay = "constant"
warmup_iters = 0

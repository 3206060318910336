# The baseline: a 0.25M-parameter Mamba-2 pretrained from a zero initial state on the bytes of the
# Python standard library, T = 64. It fails to length-generalize: beyond T its loss with the full
# context is worse than with the context cut to at most T tokens (see README, "The default run").
#   python train.py config/pretrain_baseline.py
out_dir = "out-baseline"
init_from = "scratch"
intervention = "zero"
arch = "mamba2"
n_layer = 2
d_model = 128
d_state = 32
headdim = 32
# The lever that decides whether this small model fails at all: dt starts in [1e-4, 1e-2] instead of
# mamba_ssm's [1e-3, 1e-1], so some heads start with memories of 100-10,000 tokens (1 / (dt * A)),
# far longer than T. With the default range no head keeps more than ~90 tokens and nothing fails.
dt_min = 1e-4
dt_max = 1e-2
block_size = 64
batch_size = 32
max_iters = 4200          # 8.6M tokens, about 17x Chinchilla's 20 tokens per parameter
learning_rate = 3e-3
warmup_iters = 100
lr_decay = "constant"
weight_decay = 0.1
eval_interval = 500

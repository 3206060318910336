# The control for the post-trainings: the same 300 steps from the same baseline, from a zero state as
# in pretraining. Whatever the post-training changes beyond this is the intervention's doing.
#   python train.py config/post_control.py
out_dir = "out-control"
init_from = "assets/baseline"
block_size = 16           # the baseline's training context (post-training keeps it)
batch_size = 128
intervention = "zero"
max_iters = 300
learning_rate = 1e-3       # a third of the pretraining rate: at 3e-3 the fix costs more in-context loss
lr_decay = "constant"
warmup_iters = 0

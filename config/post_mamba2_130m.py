# State Passing post-training of the official Mamba-2 130m (paper fig. 1 and 5), for a GPU machine
# with a network (or the checkpoint and tokenizer.json downloaded into local folders:
# pass their paths).
#   python train.py config/post_mamba2_130m.py --corpus=path/to/text_or_jsonl_folder
# On 4 GPUs, the same 16 sequences per step (4 on each):
#   torchrun --standalone --nproc_per_node=4 train.py config/post_mamba2_130m.py --corpus=... \
#       --batch_size=4 --gradient_accumulation_steps=4
# The paper post-trains on the Pile; any large English corpus of .txt / .jsonl files works here.
# The post-training learning rate and batch are not given in the paper: these are this project's
# choices (a tenth of the 130m pretraining peak of 6e-4, Table 2; 16 sequences of 2048 tokens).
out_dir = "out-mamba2-130m-state_passing"
init_from = "state-spaces/mamba2-130m"
tokenizer = "gpt-neox"
intervention = "state_passing"      # or "tbtt", "fitted_noise", "random_noise",
                                    # "zero" (the control)
block_size = 2048                   # the official checkpoints' training context
batch_size = 16
max_iters = 500
learning_rate = 6e-5
warmup_iters = 50
lr_decay = "cosine"
min_lr = 6e-6
weight_decay = 0.1
eval_interval = 100
eval_iters = 10

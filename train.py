"""
Trains a Mamba-2 or GLA language model with one of the paper's initial-state interventions (sec. 4):
from scratch, as a post-training of an earlier run or of an official checkpoint, or resuming a run.

    python train.py                                    # post-trains the shipped baseline with State Passing
    python train.py config/pretrain_baseline.py        # an experiment's config file (see config/)
    python train.py --intervention=tbtt --max_iters=500 --out_dir=out-tbtt

The settings are the globals below; a config file, then --key=value flags, override them
(configurator.py). An unknown key is an error.
"""
import json
import math
import os
import time
from dataclasses import asdict

import torch

import data
import tasks
from configurator import configure
from interventions import make_sampler
from model import LM, ModelConfig

# -----------------------------------------------------------------------------------------------
# I/O
out_dir = "out"
init_from = "assets/baseline"  # "scratch", "resume" (continue out_dir), an earlier run's out_dir
                               # (post-training), or an official checkpoint (hub id or directory)
eval_interval = 100            # steps between validation losses and checkpoints
eval_iters = 20                # batches per validation loss
log_interval = 20
final_eval_seqs = 64           # at the end, the excess loss beyond T on this many held-out sequences of
                               # 32 T tokens (evaluate.py's measure); 0 skips it
# data
corpus = "stdlib"              # "stdlib" (needs no download), or a .txt/.jsonl file or folder
tokenizer = "bytes"            # "bytes", a tiktoken encoding, "gpt-neox", or a tokenizer.json path
data_dir = "data"
batch_size = 128
block_size = 16                # T, the training context (the shipped baseline's)
task = ""                      # "": the corpus; "copy", "passkey", "babi" (qa1-qa3), "qa1"...: tasks.py's samples
# model, for init_from = "scratch" (ModelConfig's other fields keep mamba_ssm's / fla's defaults)
arch = "mamba2"                # "mamba2" or "gla"
n_layer = 2
d_model = 128
d_state = 32                   # Mamba-2
headdim = 32                   # Mamba-2
dt_min = 1e-5                  # Mamba-2's initial dt range; mamba_ssm's default is [1e-3, 1e-1], under
dt_max = 1e-3                  # which this small model does not fail (config/pretrain_baseline.py)
num_heads = 4                  # GLA
scan_backend = "auto"          # "auto" (Triton on CUDA, chunked PyTorch otherwise), "triton", "chunked", "ref"
# the intervention (interventions.py)
intervention = "state_passing" # "zero", "random_noise", "fitted_noise", "state_passing", "tbtt"
noise_std = 0.1                # random_noise's sigma
p_zero = 0.1                   # state_passing: the probability that a row starts from zero
fitted_beta = 0.1              # fitted_noise: the moving averages' beta (eqs. 5-6)
# optimiser: AdamW, warmup then cosine decay to min_lr, or constant
learning_rate = 1e-3
max_iters = 300
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0
warmup_iters = 0
lr_decay = "constant"          # "constant" or "cosine"
min_lr = 3e-4                  # where the cosine ends
# system
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = "bfloat16" if torch.cuda.is_available() else "float32"   # the autocast dtype on CUDA
threads = 0                    # CPU threads for torch; 0 = torch's default
seed = 1337
config = configure(globals())
# -----------------------------------------------------------------------------------------------

if threads:
    torch.set_num_threads(threads)
torch.manual_seed(seed)
ckpt_path = os.path.join(out_dir, "ckpt.pt")
autocast = torch.autocast(device, dtype=getattr(torch, dtype), enabled=device == "cuda" and dtype != "float32")

# the data: tokenized once into data_dir, then memory-mapped
dataset = data.load(data.prepare(corpus, tokenizer, data_dir))
data_gen = torch.Generator().manual_seed(seed)       # batches; its state is saved with the checkpoint
stream = (data.StreamSampler(dataset, batch_size, block_size, data_gen) if intervention == "tbtt" else None)


def get_batch(split):
    """x, y (B, T) and reset (B,) bool: True where a row starts afresh (always, outside TBTT)."""
    if task:  # sec. 5's tasks, loss on the answers only; TBTT continues each row from its previous sample
        x, y = tasks.get_batch(task, split, batch_size, block_size, data_gen, dataset, device)
        return x, y, torch.full((batch_size,), intervention != "tbtt", device=device)
    if stream is not None and split == "train":
        return stream.next(device)
    x, y = data.get_batch(dataset, split, batch_size, block_size, data_gen, device)
    return x, y, torch.ones(batch_size, dtype=torch.bool, device=device)


# the model
ckpt = None
if init_from == "scratch":
    model = LM(ModelConfig(arch=arch, vocab_size=dataset.vocab_size, n_layer=n_layer, d_model=d_model,
                           d_state=d_state, headdim=headdim, dt_min=dt_min, dt_max=dt_max,
                           num_heads=num_heads, scan_backend=scan_backend))
elif init_from == "resume":
    if not os.path.isfile(ckpt_path):
        raise FileNotFoundError(f"init_from='resume' but there is no {ckpt_path}: train into {out_dir} first")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if "optimizer" not in ckpt:
        raise ValueError(f"{ckpt_path} holds the weights only (as the shipped assets/baseline does, to stay "
                         f"small): post-train it with --init_from={out_dir}, or remake it to resume it")
    free = ("out_dir", "init_from", "max_iters", "eval_interval", "eval_iters", "log_interval", "threads")
    changed = {k: (ckpt["config"][k], v) for k, v in config.items()
               if k not in free and ckpt["config"].get(k) != v}
    if changed:
        raise ValueError(f"resuming {out_dir} with different settings {changed}: only max_iters may change")
    model = LM(ModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
else:                                               # post-training: a fresh optimiser from step 0
    model = LM.from_pretrained(init_from)
    model.config.scan_backend = scan_backend
if model.config.vocab_size < dataset.vocab_size:
    raise ValueError(f"the model knows {model.config.vocab_size} tokens, the {tokenizer!r} tokenizer "
                     f"makes {dataset.vocab_size}: use the model's tokenizer")
model.to(device)

# AdamW; weight decay on the matrices only (as nanoGPT): not on norms, biases, A_log, dt_bias, D
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                               {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                              lr=learning_rate, betas=(beta1, beta2), fused=device == "cuda")

# the intervention: it picks each batch's initial states and sees their final states
sampler_gen = torch.Generator(device).manual_seed(seed + 1)
sampler = make_sampler(intervention, model.zero_states(batch_size, device), sampler_gen,
                       sigma=noise_std, p_zero=p_zero, beta=fitted_beta)

iter_num = 0
if ckpt is not None:                                # everything needed to continue exactly
    optimizer.load_state_dict(ckpt["optimizer"])
    sampler.load_state_dict(ckpt["sampler"])
    data_gen.set_state(ckpt["data_gen"])
    if stream is not None:
        stream.load_state_dict(ckpt["stream"])
    torch.set_rng_state(ckpt["torch_rng"])
    iter_num = ckpt["iter_num"]
    ckpt = None


def get_lr(it):
    """Linear warmup, then constant or cosine decay to min_lr at max_iters. The schedule matters
    for length generalization: a longer warmup hurts it (paper fig. 11)."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if lr_decay == "constant":
        return learning_rate
    progress = min(1.0, (it - warmup_iters) / max(1, max_iters - warmup_iters))
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


@torch.no_grad()
def estimate_loss():
    """Mean loss over eval_iters batches of each split, from a zero state (evaluation always starts
    from zero, sec. 4.2), on batches from a fixed generator so that evaluating changes nothing."""
    model.eval()
    gen = torch.Generator().manual_seed(seed + 2)
    out = {}
    for split in ("train", "val"):
        losses = []
        for _ in range(eval_iters):
            x, y = (tasks.get_batch(task, split, batch_size, block_size, gen, dataset, device) if task
                    else data.get_batch(dataset, split, batch_size, block_size, gen, device))
            with autocast:
                losses.append(model(x, y)[1].item())
        out[split] = sum(losses) / len(losses)
    model.train()
    return out


def save_checkpoint():
    """Everything needed to resume exactly; written to a temporary file first so that an
    interruption never leaves a half-written ckpt.pt."""
    state = {"model": model.state_dict(), "model_config": asdict(model.config), "config": config,
             "iter_num": iter_num, "optimizer": optimizer.state_dict(), "sampler": sampler.state_dict(),
             "data_gen": data_gen.get_state(), "stream": stream.state_dict() if stream else None,
             "torch_rng": torch.get_rng_state()}
    torch.save(state, ckpt_path + ".tmp")
    os.replace(ckpt_path + ".tmp", ckpt_path)
    with open(os.path.join(out_dir, "config.json"), "w") as f:   # a readable record; evaluate.py reads it
        json.dump(config | {"model_config": state["model_config"], "iter_num": iter_num}, f, indent=1)
    print(f"saved {ckpt_path} at step {iter_num}")


os.makedirs(out_dir, exist_ok=True)
print(f"training {model.config.arch} with intervention {intervention!r}: {batch_size} x {block_size} "
      f"tokens per step, steps {iter_num} -> {max_iters}, into {out_dir}")

model.train()
t0, tokens, losses = time.time(), 0, []
try:
    while iter_num < max_iters:
        if iter_num % eval_interval == 0:
            est = estimate_loss()
            print(f"step {iter_num}: train loss {est['train']:.4f}, val loss {est['val']:.4f}")
            if iter_num > 0:
                save_checkpoint()
        lr = get_lr(iter_num)
        for group in optimizer.param_groups:
            group["lr"] = lr

        x, y, reset = get_batch("train")
        with autocast:
            _, loss, final = model(x, y, states=sampler.initial_states(reset))
        if not torch.isfinite(loss):
            kept = f"the last good checkpoint is {ckpt_path}" if os.path.exists(ckpt_path) else "nothing was saved"
            raise FloatingPointError(f"the loss is {loss.item()} at step {iter_num}: stopping ({kept}); "
                                     f"try a lower learning_rate")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sampler.observe(final)                      # the states this batch ended in
        iter_num += 1

        tokens += x.numel()
        losses.append(loss.item())
        if iter_num % log_interval == 0:
            dt = time.time() - t0
            print(f"step {iter_num}: loss {sum(losses) / len(losses):.4f}, lr {lr:.2e}, "
                  f"{tokens / dt:,.0f} tokens/s")
            t0, tokens, losses = time.time(), 0, []
except KeyboardInterrupt:
    print(f"\ninterrupted at step {iter_num}")
    save_checkpoint()
    raise SystemExit(130)

est = estimate_loss()
print(f"step {iter_num}: train loss {est['train']:.4f}, val loss {est['val']:.4f}")
save_checkpoint()

# Does the model length-generalize? evaluate.py's measure, on a few held-out sequences 32 times longer
# than T: the loss of every token with its full context minus with the context cut to T/2..T tokens
# (> 0 where the context beyond T hurts). `python evaluate.py --checkpoints=...` gives the whole picture.
if final_eval_seqs:
    import evaluate
    seqs, doc_ids = data.eval_sequences(dataset, final_eval_seqs, 32 * block_size, seed)
    model.eval()
    result = evaluate.evaluate_checkpoint(model, seqs, doc_ids, block_size, ctx=autocast, device=device,
                                          label=intervention)
    evaluate.report(result, f"{out_dir} ({intervention}, step {iter_num})")

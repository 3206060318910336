"""
Trains a Mamba-1, Mamba-2, GLA or RWKV-6 language model with one of the paper's initial-state
interventions (sec. 4): from scratch, as a post-training of an earlier run or of an official
checkpoint, or resuming a run.

    python train.py                               # post-trains the shipped baseline (State Passing)
    python train.py config/pretrain_baseline.py   # an experiment's config file (see config/)
    python train.py --intervention=tbtt --max_iters=500 --out_dir=out-tbtt
    torchrun --standalone --nproc_per_node=4 train.py --gradient_accumulation_steps=4   # 4 GPUs

The settings are the globals below; a config file, then --key=value flags, override them
(configurator.py). An unknown key is an error. Ctrl-C or SIGTERM ends the current step, saves, and
exits; `--init_from=resume` then continues with the losses the uninterrupted run would have had.
What is done around the loop (checking a run directory, stopping on a signal, saving, resuming) is
rundir.py's; what is done to the recurrent states, interventions.py's.
"""
import datetime
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import data
import rundir
import tasks
from configurator import configure, set_threads
from interventions import INTERVENTIONS, joined, make_sampler, moved, nbytes, rows, sampler_state
from measure import checkpoint_info
from mixers import CHUNK_MAX
from model import LM, ModelConfig

# under torchrun only rank 0 prints (errors reach stderr from all)
if int(os.environ.get("RANK", 0)) > 0:
    sys.stdout = open(os.devnull, "w")

# -----------------------------------------------------------------------------------------------
# I/O
out_dir = "out"                # the run's checkpoint (ckpt.pt) and settings (config.json)
init_from = "assets/baseline"  # "scratch", "resume" (continue out_dir), an earlier run's out_dir
                               # (post-training), or an official checkpoint (hub id or directory)
overwrite = False              # True: this run may replace another run already in out_dir
finish = False                 # True (the experiment scripts): if out_dir holds this same run (same
                               # settings, same init_from), continue it to max_iters, or keep it if
                               # it is there; a run with other settings is refused. A stopped script
                               # reruns as is
eval_interval = 100            # steps between validation losses and checkpoints
eval_iters = 20                # batches per validation loss
log_interval = 20              # steps between lines of the training log
final_eval_seqs = 64           # at the end, the excess loss beyond T on this many held-out
                               # sequences of 32 T tokens (evaluate.py's measure); 0 skips it, and
                               # so does a task
# data
corpus = "stdlib"              # "stdlib" (needs no download), or a .txt/.jsonl file or folder
tokenizer = "bytes"            # "bytes", a tiktoken encoding, "gpt-neox", or a tokenizer.json path
data_dir = "data"              # where the corpus is tokenized once
batch_size = 128               # sequences per micro-batch
block_size = 16                # T, the training context (the shipped baseline's); even
gradient_accumulation_steps = 1  # micro-batches per step, over all processes (nanoGPT's meaning)
task = ""                      # "": the corpus; "copy", "passkey", "babi" (qa1-qa3), "qa1"...:
                               # tasks.py's samples
# model, for init_from = "scratch" (ModelConfig's other fields keep mamba_ssm's / fla's defaults)
arch = "mamba2"                # "mamba1", "mamba2", "gla" or "rwkv6" (model.py, mixers.py)
n_layer = 2                    # blocks
d_model = 128                  # the residual stream's width
d_state = 32                   # Mamba-1 and -2 (mamba_ssm's Mamba-1 default: 16)
headdim = 32                   # Mamba-2, and RWKV-6's head size (K = V)
dt_min = 1e-5                  # Mamba's initial dt range; mamba_ssm's default is [1e-3, 1e-1],
dt_max = 1e-3                  # under which this small model does not fail
                               # (config/pretrain_baseline.py)
num_heads = 4                  # GLA
scan_backend = "auto"          # "auto" (Triton on CUDA, chunked PyTorch otherwise; Mamba-1: the
                               # loop), "triton", "chunked", "ref"
# the intervention (interventions.py)
intervention = "state_passing" # "zero", "random_noise", "fitted_noise", "state_passing", "tbtt"
noise_std = 0.1                # random_noise's sigma
p_zero = 0.1                   # state_passing: the probability that a row starts from zero
pass_conv = False              # state_passing, tbtt: also pass the conv's last inputs; False passes
                               # the SSM state S alone, as the paper does (eq. 4, fig. 14)
fitted_beta = 0.1              # fitted_noise: the moving averages' beta (eqs. 5-6)
# optimiser: AdamW, warmup then cosine decay to min_lr, or constant
learning_rate = 1e-3           # the peak
max_iters = 300                # steps
weight_decay = 0.1             # on the matrices only
beta1 = 0.9                    # AdamW's
beta2 = 0.95                   # AdamW's
grad_clip = 1.0                # the largest gradient norm; 0 = no clipping
warmup_iters = 0               # steps of linear warmup
lr_decay = "constant"          # "constant" or "cosine"
min_lr = 3e-4                  # where the cosine ends
# system
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = "bfloat16" if torch.cuda.is_available() else "float32"   # autocast's on CUDA; float32
                                                                 # on the CPU
threads = 0                    # CPU threads for torch; 0 = as many as the cores other jobs
                               # leave free
ddp_timeout = 600              # torchrun: seconds a process waits for the others before the job
                               # ends (a stopped or hung peer); rank 0 prepares the corpus within
                               # it (python data.py first)
seed = 1337                    # the model's init, the batches, the interventions' draws
config = configure(globals())
# -----------------------------------------------------------------------------------------------

# Every setting is checked before any data is prepared or any step is taken.
world = int(os.environ.get("WORLD_SIZE", 1))    # processes: 1, or torchrun's nproc_per_node x nodes
model_args = dict(arch=arch, n_layer=n_layer, d_model=d_model, d_state=d_state, headdim=headdim,
                  dt_min=dt_min, dt_max=dt_max, num_heads=num_heads, scan_backend=scan_backend)
rules = [
    ("batch_size", batch_size >= 1, "at least 1"),
    ("block_size", block_size >= 2 and (block_size % 2 == 0 or task),
     "even and at least 2: the evaluation reads the context in halves of T/2 (evaluate.py)"),
    ("gradient_accumulation_steps",
     gradient_accumulation_steps >= 1 and gradient_accumulation_steps % world == 0,
     f"a multiple of the {world} processes: it counts the micro-batches of all of them"),
    ("max_iters", max_iters >= 1, "at least 1"),
    ("eval_interval", eval_interval >= 1, "at least 1"),
    ("eval_iters", eval_iters >= 1, "at least 1"),
    ("log_interval", log_interval >= 1, "at least 1"),
    ("final_eval_seqs", final_eval_seqs >= 0, "0 (none) or more"),
    ("task", task in ("", "babi") + tasks.TASKS,
     f"'' (the corpus), babi, or one of {', '.join(tasks.TASKS)}"),
    ("intervention", intervention in INTERVENTIONS, f"one of {', '.join(INTERVENTIONS)}"),
    ("intervention", not (task and intervention == "tbtt"),
     "other than tbtt with a task: a task's samples are unrelated, so passing one's final state to "
     "the next is State Passing (--intervention=state_passing --p_zero=0), not TBTT's continuation "
     "of one sequence"),
    ("noise_std", noise_std >= 0, "0 or more"),
    ("p_zero", 0 <= p_zero <= 1, "a probability"),
    ("fitted_beta", 0 <= fitted_beta < 1, "in [0, 1)"),
    ("learning_rate", learning_rate > 0, "positive"),
    ("min_lr", min_lr >= 0, "0 or more"),
    ("warmup_iters", warmup_iters >= 0, "0 or more"),
    ("lr_decay", lr_decay in ("constant", "cosine"), "'constant' or 'cosine'"),
    ("grad_clip", grad_clip >= 0, "0 (no clipping) or a positive gradient norm"),
    ("device", device == "cpu" or device.startswith("cuda") and torch.cuda.is_available(),
     "'cpu', or 'cuda' on a machine with CUDA"),
    ("dtype", dtype == "float32" or device.startswith("cuda") and dtype in ("bfloat16", "float16"),
     "'float32' on the CPU; 'bfloat16' or 'float16' (mixed precision) on CUDA"),
    ("threads", threads >= 0, "0 (picked for the load) or more"),
    ("finish", not finish or not overwrite and init_from != "resume",
     "False with --overwrite=True or --init_from=resume: it keeps or continues only the run these "
     "very settings make"),
    ("ddp_timeout", ddp_timeout > 0, "positive (seconds)"),
]
bad = [f"--{key}={globals()[key]!r}: must be {rule}" for key, ok, rule in rules if not ok]
if bad:
    raise ValueError("\n".join(bad))
if init_from == "scratch":
    ModelConfig(vocab_size=256, **model_args)   # checks the shapes (the vocabulary: with the data)

# Several processes (torchrun): one per device, DDP; NCCL between GPUs, gloo between CPU processes.
ddp = "RANK" in os.environ
rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
master = rank == 0                               # writes the checkpoints and the log
if ddp:
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                            timeout=datetime.timedelta(seconds=ddp_timeout))

    def stuck_peer(kind, error, tb):
        """A collective that timed out: say what it means before the traceback (torchrun then ends
        the job)."""
        if "timed out" in str(error).lower() or "timeout" in str(error).lower():
            print(f"rank {rank}: no word from another process for --ddp_timeout={ddp_timeout} "
                  f"seconds (stopped, hung, or still preparing the corpus): ending the job. "
                  f"Continue from the last checkpoint with --init_from=resume (prepare a large "
                  f"corpus first with python data.py, or raise --ddp_timeout)",
                  file=sys.stderr, flush=True)
        sys.__excepthook__(kind, error, tb)
    sys.excepthook = stuck_peer
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
micro_steps = gradient_accumulation_steps // world       # this process's micro-batches per step
B_step = gradient_accumulation_steps * batch_size        # sequences per step, over all processes
local = slice(rank * micro_steps * batch_size, (rank + 1) * micro_steps * batch_size)   # its rows

set_threads(threads)                                     # 0: picked for the load
torch.manual_seed(seed)
device_type = "cuda" if device.startswith("cuda") else "cpu"
autocast = torch.autocast(device_type, dtype=getattr(torch, dtype), enabled=dtype != "float32")
# float16 gradients underflow unscaled: GradScaler scales the loss up (a no-op in other dtypes)
scaler = torch.amp.GradScaler(device_type, enabled=dtype == "float16")
if master:
    rundir.claim(out_dir, resume=init_from == "resume" or finish, overwrite=overwrite)

# What may differ between the pieces of one run (stopped, then resumed): where and how it runs, not
# its numbers. With a cosine schedule the length sets every step's rate, so there max_iters must
# stay. dtype goes with the device (a CUDA bfloat16 run continues on the CPU in float32); a
# post-training's or a resumed run's model is its checkpoint's, so there the model's settings are
# the checkpoint's to say.
free = ("out_dir", "init_from", "overwrite", "finish", "eval_interval", "eval_iters",
        "log_interval", "final_eval_seqs", "data_dir", "device", "dtype", "scan_backend", "threads",
        "ddp_timeout")
free += ("max_iters",) * (lr_decay == "constant")
fixed = [k for k in config if k not in free and (init_from == "scratch" or k not in model_args)]

# the model of a resumed run or a post-training, loaded before the data so that a wrong path fails
# at once
ckpt, model = None, None
if finish:                                          # is this very run in out_dir already, how far?
    ckpt = rundir.same_run(out_dir, config, fixed + ["init_from"], max_iters)
    if ckpt is not None and ckpt["iter_num"] == max_iters:
        print(f"keeping {out_dir}: this run is there, finished at step {max_iters}")
        rundir.close(out_dir, master)
        raise SystemExit(0)
    if ckpt is not None:
        print(f"continuing {out_dir} from step {ckpt['iter_num']} (--finish=True)")
        init_from = "resume"
if init_from == "resume":                           # the checkpoint of this very run, or an error
    ckpt = rundir.resumable(out_dir, config, fixed, ckpt)
    config["init_from"] = ckpt["config"].get("init_from")   # the record keeps where the run began
    model = LM(ModelConfig(**ckpt["model_config"] | {"scan_backend": scan_backend}))
    model.load_state_dict(ckpt["model"])
elif init_from != "scratch":                        # post-training: a fresh optimiser from step 0
    trained_with = checkpoint_info(init_from)["tokenizer"]   # read first: a damaged run fails now
    if not data.same_tokenizer(trained_with, tokenizer):
        raise ValueError(f"{init_from} was trained with the tokenizer {trained_with!r}, and this "
                         f"run tokenizes with {tokenizer!r}: its token ids would mean other text. "
                         f"Pass --tokenizer={trained_with}")
    model = LM.from_pretrained(init_from)
    model.config.scan_backend = scan_backend
if model is not None:   # the model is the checkpoint's: config.json records its settings
    given = {k: config[k] for k in model_args
             if k != "scan_backend" and config[k] != getattr(model.config, k)}
    if given:
        print(f"the model comes from {out_dir if init_from == 'resume' else init_from}: its "
              + ", ".join(f"{k}={getattr(model.config, k)!r}" for k in given) + " are used (not "
              + ", ".join(f"{k}={v!r}" for k, v in given.items()) + ")")
    config.update({k: getattr(model.config, k) for k in given})

# the data: tokenized once into data_dir (by rank 0 while the others wait), then memory-mapped
if not master:
    dist.barrier()
dataset = data.load(data.prepare(corpus, tokenizer, data_dir))
if ddp and master:
    dist.barrier()
if final_eval_seqs and not task:            # drawn now: a corpus without long documents fails now
    try:
        eval_seqs = data.eval_sequences(dataset, final_eval_seqs, 32 * block_size, seed)
    except ValueError as e:
        raise ValueError(f"final_eval_seqs: {e}; pass --final_eval_seqs=0 to skip the final "
                         f"evaluation") from None
data_gen = torch.Generator().manual_seed(seed)   # every process draws the step's batch, then rows
stream = (data.StreamSampler(dataset, B_step, block_size, data_gen) if intervention == "tbtt"
          else None)


def get_batch():
    """This process's rows of the step's batch: x, y (micro_steps * B, T) and reset
    (micro_steps * B,) bool, True where a row starts afresh (always, outside TBTT). However the step
    is split among processes and micro-batches, it trains on the same B_step sequences."""
    if task:  # sec. 5's tasks, loss on the answers only
        x, y = tasks.get_batch(task, "train", B_step, block_size, data_gen, dataset)
        reset = torch.ones(B_step, dtype=torch.bool)
    elif stream is not None:
        x, y, reset = stream.next()
    else:
        x, y = data.get_batch(dataset, "train", B_step, block_size, data_gen)
        reset = torch.ones(B_step, dtype=torch.bool)
    return x[local].to(device), y[local].to(device), reset[local].to(device)


if model is None:
    model = LM(ModelConfig(vocab_size=dataset.vocab_size, **model_args))
if model.config.vocab_size < dataset.vocab_size:
    raise ValueError(f"the model knows {model.config.vocab_size} tokens, the {tokenizer!r} "
                     f"tokenizer makes {dataset.vocab_size}: use the model's tokenizer")
raw_model = model.to(device)
# the activations kept for backward: ~0.12 MB per token of the default model (measured peak RSS:
# ~6 floats per head and chunk position, ~24 per channel)
if device_type == "cpu":
    c = raw_model.config
    heads, width = ((c.nheads, c.d_inner) if c.arch == "mamba2"
                    else (c.num_heads, c.d_model + c.mlp_width // 2))
    chunk = min(c.chunk_size, CHUNK_MAX, block_size)
    per_token = 4 * (c.n_layer * (6 * heads * chunk + 24 * width) + 4 * c.padded_vocab_size)
    procs = int(os.environ.get("LOCAL_WORLD_SIZE", 1))            # on this machine
    rundir.check_memory(per_token * batch_size * block_size * procs,
                        f"lower --batch_size (and raise --gradient_accumulation_steps to keep the "
                        f"batch), or --block_size (now {batch_size} x {block_size} tokens per "
                        f"micro-batch)")
if ddp:   # averages the gradients over the processes in backward()
    model = DDP(model, device_ids=[local_rank] if device_type == "cuda" else None)

# AdamW; weight decay on the matrices only (as nanoGPT): not on norms, biases, A_log, dt_bias, D
params = [p for p in raw_model.parameters() if p.requires_grad]
decay_params = [p for p in params if p.dim() >= 2]
nodecay_params = [p for p in params if p.dim() < 2]
optimizer = torch.optim.AdamW([{"params": decay_params, "weight_decay": weight_decay},
                               {"params": nodecay_params, "weight_decay": 0.0}],
                              lr=learning_rate, betas=(beta1, beta2), fused=device_type == "cuda")

# the intervention: it picks the initial states of this process's rows and sees their final states
sampler_gen = torch.Generator(device).manual_seed(seed + 1 + rank)
template = raw_model.zero_states(micro_steps * batch_size, device)
sampler = make_sampler(intervention, template, sampler_gen, sigma=noise_std, p_zero=p_zero,
                       beta=fitted_beta, pass_conv=pass_conv)
if master:
    rundir.check_space(out_dir, 3 * sum(p.numel() * p.element_size() for p in params)
                       + nbytes(template) * world)

# Saving and resuming: checkpoint() below is what ckpt.pt holds; rundir.resume puts it back
iter_num = 0
if ckpt is not None:                                # everything needed to continue exactly
    mine = sampler_state(ckpt["samplers"], rank, world, local, sampler_gen)   # this process's
    sampler.load_state_dict(moved(mine, device))
    iter_num = rundir.resume(ckpt, optimizer, scaler, data_gen, stream, out_dir, max_iters,
                             dataset.meta.get("fingerprint"))
    ckpt = mine = None


def checkpoint(samplers):
    """ckpt.pt: everything needed to resume exactly, with the sampler state of every process
    (samplers, a list)."""
    return {"model": raw_model.state_dict(), "model_config": asdict(raw_model.config),
            "config": config, "iter_num": iter_num, "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(), "samplers": samplers, "data_gen": data_gen.get_state(),
            "stream": stream.state_dict() if stream else None, "torch_rng": torch.get_rng_state(),
            "corpus_fingerprint": dataset.meta.get("fingerprint")}


def save_checkpoint():
    """Every process calls it: rundir.save_run gathers their sampler states on rank 0, which writes
    checkpoint() (whole, from finite weights only)."""
    rundir.save_run(out_dir, iter_num, params, moved(sampler.state_dict(), "cpu"), checkpoint)


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
    from zero, sec. 4.2), on batches from a fixed generator so that evaluating changes nothing (and
    every process gets the same numbers). A loss that is not finite stops the run unsaved."""
    raw_model.eval()
    gen = torch.Generator().manual_seed(seed + 2)
    out = {}
    for split in ("train", "val"):
        losses = []
        for _ in range(eval_iters):
            if task:
                x, y = tasks.get_batch(task, split, batch_size, block_size, gen, dataset, device)
            else:
                x, y = data.get_batch(dataset, split, batch_size, block_size, gen, device)
            with autocast:
                losses.append(raw_model(x, y)[1].item())
        out[split] = sum(losses) / len(losses)
    raw_model.train()
    print(f"step {iter_num}: train loss {out['train']:.4f}, val loss {out['val']:.4f}")
    if not all(map(math.isfinite, out.values())):
        raise FloatingPointError(f"the val loss is {out['val']} at step {iter_num}: stopping "
                                 f"({rundir.kept(out_dir)}); try a lower learning_rate")


# Ctrl-C (SIGINT) and SIGTERM (a cluster preempting the job) only set stop.signum, read between
# steps: the step under way finishes (its batch used, its update counted), then the run is saved and
# stops. A second Ctrl-C quits at once (not under torchrun, which repeats the first one).
stop = rundir.Stop(second_quits=not ddp)
print(f"training {raw_model.config.arch} with intervention {intervention!r}: {B_step} x "
      f"{block_size} = {B_step * block_size:,} tokens per step ({world} process(es) x "
      f"{micro_steps} micro-batch(es) of {batch_size}), steps {iter_num} -> {max_iters}, "
      f"into {out_dir}")
raw_model.train()
saved_at, stopping, step_time, tokens, losses = iter_num, False, 0.0, 0, []
while iter_num < max_iters and not stopping:
    if iter_num % eval_interval == 0:
        estimate_loss()
        if iter_num > saved_at:
            save_checkpoint()
            saved_at = iter_num
    t0 = time.time()
    lr = get_lr(iter_num)
    for group in optimizer.param_groups:
        group["lr"] = lr

    x, y, reset = get_batch()
    states = sampler.initial_states(reset)             # this process's rows
    loss_sum, finals = torch.zeros((), device=device), []
    for m in range(micro_steps):
        r = slice(m * batch_size, (m + 1) * batch_size)
        # DDP averages the gradients over the processes once per step, after the last micro-batch
        with model.no_sync() if ddp and m < micro_steps - 1 else nullcontext():
            with autocast:
                _, loss, final = model(x[r], y[r], states=rows(states, r))
            scaler.scale(loss / micro_steps).backward()
        loss_sum += loss.detach()
        finals.append(final)
    # the step's mean loss over every process, and whether any process was asked to stop
    shared = torch.stack([loss_sum, torch.tensor(float(stop.signum), device=device)])
    if ddp:
        dist.all_reduce(shared)
    loss, stopping = shared[0].item() / gradient_accumulation_steps, shared[1].item() > 0
    if not math.isfinite(loss):
        raise FloatingPointError(f"the loss is {loss} at step {iter_num}: stopping "
                                 f"({rundir.kept(out_dir)}); try a lower learning_rate")
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    sampler.observe(joined(finals))                    # the states this step's rows ended in
    iter_num += 1

    step_time += time.time() - t0                      # training only: not evaluations and saves
    tokens += B_step * block_size
    losses.append(loss)
    if iter_num % log_interval == 0:
        print(f"step {iter_num}: loss {sum(losses) / len(losses):.4f}, lr {lr:.2e}, "
              f"{tokens / step_time:,.0f} tokens/s")
        step_time, tokens, losses = 0.0, 0, []

if not stopping:
    estimate_loss()
if iter_num > saved_at:
    save_checkpoint()
stop.restore()                                         # saved: from here Ctrl-C interrupts as usual
stopping = stopping or stop.signum > 0                 # (a signal after the last step's all-reduce)
# DDP's reducer, in reference cycles, holds the process group: freed at exit instead, gloo can
# abort the process. So the references go now; rundir.close collects them, then ends the group
model = finals = None
rundir.close(out_dir, master)                          # the lock; under torchrun every process done
if stopping:
    stop.exit(iter_num, "this same command" if finish else "--init_from=resume")

# Does the model length-generalize? evaluate.py's measure, on a few held-out sequences 32 times
# longer than T: the loss of every token with its full context minus with the context cut to
# T/2..T tokens (> 0 where the context beyond T hurts). `python evaluate.py --checkpoints=...` gives
# the whole picture.
if final_eval_seqs and master and not task:   # a task's own measure is evaluate_tasks.py's
    import evaluate
    raw_model.eval()
    result = evaluate.evaluate_checkpoint(raw_model, *eval_seqs, block_size, ctx=autocast,
                                          device=device, label=intervention)
    evaluate.report(result, f"{out_dir} ({intervention}, step {iter_num})")

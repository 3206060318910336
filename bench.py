"""
Speed, as tables in markdown (docs/kernels.md, "Speed", pastes them). Three tables, one per
setting of `table`:

    python bench.py                  # on the CPU: scan_chunked's cost per token against T at the
                                     # Mamba-2 130m and GLA 340M head shapes; a training step
                                     # against transformers' pure-PyTorch Mamba2 on the same weights
                                     # (when transformers is installed); a training step of each
                                     # architecture with the loop and the chunked scan; the thread
                                     # count threads = 0 picks
    python bench.py --table=gpu      # the default on CUDA: the Triton scan against mamba_ssm's
                                     # mamba_chunk_scan_combined and fla's chunk_gla (each when
                                     # importable) at the official shapes, forward and
                                     # forward+backward, and a 130m post-training step's
                                     # tokens per second
    python bench.py --table=static   # no GPU needed: each Triton kernel's cost on an H100,
                                     # predicted from its compiled tiles and
                                     # a roofline (static_table)

--size=toy runs the same tables at the demo model's shapes (seconds; tests/test_bench.py checks the
output that way, the GPU table on the CPU through TRITON_INTERPRET=1). The peers get identical
inputs: mamba_ssm's kernel computes the same recurrence from (x, dt, A, B, C) with q = C, k = B,
v = dt x, g = dt A (its log decay); fla's chunk_gla takes (q, k, v, g) as we do, with scale=1 since
our scan never scales q.
"""
import math
import os
import statistics
import subprocess
import sys
import time
import warnings

import torch

import gpu_compile
from configurator import configure, set_threads
from model import LM, ModelConfig
from scan_kernel import scan, scan_chunked, scan_ref

table = "gpu" if torch.cuda.is_available() else "cpu"   # "cpu", "gpu" or "static" (see above)
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = "bfloat16" if torch.cuda.is_available() else "float32"   # the scans' inputs;
                                                                 # training autocasts
size = "official"       # "official": the paper's shapes; "toy": the demo model's, for a quick check
Ts = (2048, 8192, 32768)   # sequence lengths of the per-token and GPU scan tables
repeats = 5             # timed runs per cell, after one warm-up; the median is reported
max_ref_T = 4096        # scan_ref (GPU table) takes seconds per call beyond this, its backward
                        # keeps every S_t
chunk_size = 64
threads = 0             # CPU threads; 0 = as many as the cores other jobs leave free
                        # (configurator.set_threads)
seed = 1337
configure(globals())

on_cuda = device.startswith("cuda")
official = size == "official"
io_dtype = getattr(torch, dtype)
if table not in ("cpu", "gpu", "static") or size not in ("official", "toy"):
    raise ValueError(f"table must be 'cpu', 'gpu' or 'static' (got {table!r}), size 'official' or "
                     f"'toy' (got {size!r})")
torch.manual_seed(seed)

# Scan shapes: (name, H, K, V, a decay per key channel?)
HEADS = ([("Mamba-2 130m", 24, 128, 64, False), ("GLA 340M", 4, 128, 256, True)] if official else
         [("Mamba-2 toy", 8, 32, 32, False), ("GLA toy", 4, 16, 32, True)])
if official and table == "gpu":
    HEADS.insert(1, ("Mamba-2 780m", 48, 128, 96, False))
# Language models for the training step: (name, ModelConfig arguments, B, T)
# config/pretrain_baseline.py
TOY = dict(vocab_size=256, n_layer=2, d_model=128, d_state=32, headdim=32)
STEP_MODELS = [("toy (the demo's)", TOY, 128, 16)]
if official:
    STEP_MODELS.append(("130m-like, 2 layers", dict(vocab_size=50277, n_layer=2, d_model=768),
                        2, 512))
# The four architectures at the shape experiments/architectures.sh trains them at (the baseline's
# recipe, config/pretrain_baseline.py, with --arch; Mamba-1 with d_state 16), B and T
ARCHS = (dict(vocab_size=256, n_layer=2, d_model=256 if official else 64, d_state=32, headdim=32,
              num_heads=4, dt_min=1e-5, dt_max=1e-3), 128 if official else 8, 16)
GPU_STEP = (("Mamba-2 130m", dict(vocab_size=50277, n_layer=24, d_model=768), 8, 2048)
            if official else
            ("toy (the demo's)", TOY, 2, 64))


def sync():
    if on_cuda:
        torch.cuda.synchronize()


def timed(fn, backward=False):
    """Median wall time in ms of fn() (and of its output's backward, if asked),
    after one warm-up."""
    times = []
    for i in range(repeats + 1):
        sync()
        t0 = time.perf_counter()
        out = fn()
        if backward:
            out.backward(torch.ones_like(out))
        sync()
        if i > 0:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def markdown(header, rows):
    """Print a markdown table: header and rows are lists of cells (rows of
    numbers already formatted)."""
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |", flush=True)


def inputs(Bn, T, H, K, V, per_channel):
    """Mamba-2-style inputs (x, dt, A, B, C) and the (q, k, v, g) they define; all require grad."""
    x = torch.randn(Bn, T, H, V, device=device, dtype=io_dtype)
    dt = torch.nn.functional.softplus(torch.randn(Bn, T, H, device=device) - 4)   # dt ~ 0.02
    A = -torch.rand(H, device=device) * 15 - 1                                  # A in [-16, -1]
    Bm = torch.randn(Bn, T, 1, K, device=device, dtype=io_dtype).expand(Bn, T, H, K)
    Cm = torch.randn(Bn, T, 1, K, device=device, dtype=io_dtype).expand(Bn, T, H, K)
    g = (torch.nn.functional.logsigmoid(torch.randn(Bn, T, H, K, device=device)) / 16 if per_channel
         else dt * A)
    v = (x.float() * dt[..., None]).to(io_dtype)
    tensors = [Cm.contiguous(), Bm.contiguous(), v, g.to(io_dtype), x, dt, A]
    return [t.detach().requires_grad_() for t in tensors]


def n_bytes(Bn, T, H, K, V, per_channel, elem):
    """Fewest bytes: read q, k, v, g and write o and the float32 final state; the backward reads
    q, k, v, g, do and writes their four gradients."""
    g_elems = Bn * T * H * (K if per_channel else 1)
    fwd = elem * (2 * Bn * T * H * K + 2 * Bn * T * H * V + g_elems) + 4 * Bn * H * K * V
    bwd = 2 * elem * (2 * Bn * T * H * K + Bn * T * H * V + g_elems) + elem * Bn * T * H * V
    return fwd, fwd + bwd


def n_flops(Bn, T, H, K, V):
    """Fewest flops, those of the loop: per token and head, the update k v^T (2KV with the decay)
    and the read-out S^T q (2KV); the backward reads dS into dq, dk, dv and carries
    dS back (8KV)."""
    return 4 * Bn * T * H * K * V, 12 * Bn * T * H * K * V


def card_rates():
    """The card's copy bandwidth (bytes/s, read + write of a 1 GiB buffer) and bf16 matmul rate
    (flop/s, 8192^3): the two roofs that the fewest bytes and flops are divided by."""
    x = torch.empty(2 ** 29, dtype=torch.bfloat16, device=device)
    y = torch.empty_like(x)
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)
    t_copy, t_mm = timed(lambda: y.copy_(x)) / 1e3, timed(lambda: a @ a) / 1e3
    return 2 * x.numel() * x.element_size() / t_copy, 2 * 8192 ** 3 / t_mm


# ----------------------------------------------------------------------------------------------
# The CPU tables

def thread_rows():
    """What threads = 0 picks now, and beside a single-thread job (a Python loop started for it)."""
    cores = len(os.sched_getaffinity(0))
    yield cores, "as the machine is now", set_threads(0)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        yield cores, "beside one single-thread job", set_threads(0)
    finally:
        spinner.kill()
        spinner.wait()


def per_token_rows():
    """scan_chunked's forward and forward+backward at B = 1 for each T: ms, us per token, and the
    time per token over that at the first T ('x T0'): flat, 1.00, when the cost is linear in T."""
    for name, H, K, V, per_channel in HEADS:
        first = None
        for T in Ts:
            q, k, v, g = inputs(1, T, H, K, V, per_channel)[:4]
            run = lambda: scan_chunked(q, k, v, g, chunk_size=chunk_size)[0]
            with torch.no_grad():   # a forward pass alone: no graph kept for a backward
                t_f = timed(run)
            t_fb = timed(run, backward=True)
            per = (t_f * 1e3 / T, t_fb * 1e3 / T)
            first = first or per
            yield (name, T, H, K, V, "channel" if per_channel else "head",
                   f"{t_f:.1f}", f"{per[0]:.1f}", f"{per[0] / first[0]:.2f}",
                   f"{t_fb:.1f}", f"{per[1]:.1f}", f"{per[1] / first[1]:.2f}")


def hf_mamba2(model, T):
    """transformers' pure-PyTorch Mamba2ForCausalLM holding model's weights, or None when
    transformers is not installed (it is optional: pip install transformers). Its chunks are those
    scan_chunked uses at length T (it would pad T = 16 to a whole chunk of 256)."""
    try:
        from transformers import Mamba2Config, Mamba2ForCausalLM
    except ImportError:
        return None
    c = model.config
    hf = Mamba2ForCausalLM(Mamba2Config(
        vocab_size=c.padded_vocab_size, hidden_size=c.d_model, state_size=c.d_state,
        num_hidden_layers=c.n_layer, expand=c.expand, conv_kernel=c.d_conv, n_groups=c.ngroups,
        head_dim=c.headdim, num_heads=c.nheads,
        chunk_size=min(c.chunk_size, 1 << (T - 1).bit_length()), use_bias=c.bias,
        use_conv_bias=c.conv_bias, layer_norm_epsilon=c.norm_eps,
        rms_norm=c.rmsnorm, norm_before_gate=c.norm_before_gate, time_step_limit=c.dt_limit,
        tie_word_embeddings=c.tie_embeddings, residual_in_fp32=c.residual_in_fp32))
    # mamba_ssm's names, which model.py keeps, but for the embedding's
    hf.load_state_dict({k.replace("backbone.embedding.", "backbone.embeddings."): w
                        for k, w in model.state_dict().items()})
    return hf


def step_ms(model, idx, loss_of):
    """Median ms of one training step: forward, loss, backward, AdamW."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with torch.autocast(device.split(":")[0], dtype=io_dtype,
                            enabled=io_dtype != torch.float32):
            loss = loss_of(model, idx)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return timed(step)


def ours(model, idx):
    return model(idx[:, :-1], idx[:, 1:])[1]


def theirs(model, idx):
    return model(input_ids=idx, labels=idx).loss            # shifts the labels itself


def step_rows(models, with_peer):
    """Our training step, and with_peer transformers' on the same weights (the largest difference of
    their logits shows that they compute the same model): ms, tokens per second, and
    peer ms / our ms."""
    for name, args, Bn, T in models:
        torch.manual_seed(seed)
        model = LM(ModelConfig(**args)).to(device).train()
        idx = torch.randint(0, args["vocab_size"], (Bn, T + 1), device=device)
        ms = step_ms(model, idx, ours)
        row = [name, Bn, T, f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M", f"{ms:.1f}",
               f"{Bn * T / ms * 1e3:,.0f}"]
        peer = hf_mamba2(model, T) if with_peer else None
        if peer is not None:
            peer = peer.to(device).train()
            with torch.no_grad():
                diff = (model(idx)[0][..., :args["vocab_size"]]
                        - peer(idx).logits[..., :args["vocab_size"]])
            peer_ms = step_ms(peer, idx, theirs)
            row += [f"{peer_ms:.1f}", f"{Bn * T / peer_ms * 1e3:,.0f}", f"{peer_ms / ms:.2f}x",
                    f"{diff.abs().max().item():.1e}"]
        yield row


def arch_rows():
    """A training step of each architecture with the loop (scan_ref) and with the chunked scan: ms
    each. On the CPU "auto" runs the chunked scan, and the loop for Mamba-1 (mixers.recurrence)."""
    args, Bn, T = ARCHS
    for arch in ("mamba1", "mamba2", "gla", "rwkv6"):
        torch.manual_seed(seed)
        sizes = {"arch": arch} | ({"d_state": 16} if arch == "mamba1" else {})
        model = LM(ModelConfig(**args | sizes))
        idx = torch.randint(0, args["vocab_size"], (Bn, T + 1))
        ms = {}
        for backend in ("ref", "chunked"):
            model.config.scan_backend = backend
            ms[backend] = step_ms(model.train(), idx, ours)
        yield (arch, f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M", Bn, T,
               f"{ms['ref']:.1f}", f"{ms['chunked']:.1f}", f"{ms['chunked'] / ms['ref']:.2f}")


def cpu_tables():
    print(f"CPU, torch {torch.__version__}, float32, chunk_size {chunk_size}, median of "
          f"{repeats}\n")
    print("The thread count threads = 0 picks (configurator.set_threads):")
    markdown(["cores", "when", "threads"], list(thread_rows()))   # set_threads' own lines first
    print(f"\ntorch threads for the timings: {set_threads(threads)}\n\n"
          f"scan_chunked, cost per token against T:")
    markdown(["shape", "T", "H", "K", "V", "g", "fwd ms", "fwd us/token", "x T0", "fwd+bwd ms",
              "f+b us/token", "x T0"], per_token_rows())
    with_peer = _importable("transformers")
    print("\nA training step (forward, backward, AdamW), float32" +
          ("; against transformers' Mamba2ForCausalLM on the same weights:" if with_peer else
           "; transformers is not installed, so no peer (pip install transformers adds it):"))
    markdown(["model", "B", "T", "params", "ms", "tokens/s"] +
             (["peer ms", "peer tokens/s", "ours vs peer", "max logit diff"] if with_peer else []),
             # made first: the models print as they are built
             list(step_rows(STEP_MODELS, with_peer)))
    print("\nA training step of each architecture at the shape experiments/architectures.sh trains "
          "(ms), with the loop and with the chunked scan:")
    markdown(["arch", "params", "B", "T", "loop ms", "chunked ms", "chunked / loop"],
             list(arch_rows()))


def _importable(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


# ----------------------------------------------------------------------------------------------
# The GPU tables (on the CPU with TRITON_INTERPRET=1 and --size=toy, for tests/test_bench.py)

def peers():
    """The reference kernels importable here: name -> fn(q, k, v, g, x, dt, A) -> o."""
    found = {}
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
        found["mamba_ssm"] = lambda q, k, v, g, x, dt, A: mamba_chunk_scan_combined(
            x, dt, A, k[:, :, :1], q[:, :, :1], chunk_size=256)      # ngroups = 1: B, C shared
    except ImportError:
        pass
    try:
        from fla.ops.gla import chunk_gla
        found["fla"] = lambda q, k, v, g, x, dt, A: chunk_gla(q, k, v, g, scale=1.0)[0]
    except ImportError:
        pass
    return found


def gpu_scan_rows(impls, rates):
    """Each implementation at each head shape and T (B = 8 official, 1 toy): ms, GB/s of the fewest
    bytes, and on CUDA the floor max(bytes / copy rate, flops / matmul rate) over
    the time ('roof')."""
    Bn = 8 if official else 1
    for name, H, K, V, per_channel in HEADS:
        for T in Ts:
            q, k, v, g, x, dt, A = inputs(Bn, T, H, K, V, per_channel)
            fwd_bytes, all_bytes = n_bytes(Bn, T, H, K, V, per_channel, q.element_size())
            for impl, fn in impls.items():
                if (impl == "mamba_ssm" and per_channel) or (impl == "fla" and not per_channel):
                    continue                  # each peer computes only its own model's form of g
                run = ((lambda: fn(q, k, v, g, chunk_size=chunk_size)[0]) if impl == "scan" else
                       (lambda: fn(q, k, v, g, x, dt, A)))
                cells = [name, Bn, T, H, K, V, "channel" if per_channel else "head", impl]
                try:
                    with torch.no_grad():
                        t_f = timed(run)
                    t_fb = timed(run, backward=True)
                except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
                    # one cell fails, not the table
                    yield cells + [f"failed: {str(e).splitlines()[0][:60]}"] + ["-"] * 5
                    continue
                roofs = ["-", "-"]
                if rates:
                    floor = lambda nb, nf: max(nb / rates[0], nf / rates[1]) * 1e3     # ms
                    fwd_flops, all_flops = n_flops(Bn, T, H, K, V)
                    roofs = [f"{floor(fwd_bytes, fwd_flops) / t_f:.0%}",
                             f"{floor(all_bytes, all_flops) / t_fb:.0%}"]
                yield cells + [f"{t_f:.3f}", f"{t_fb:.3f}", f"{fwd_bytes / t_f / 1e6:.1f}",
                               f"{all_bytes / t_fb / 1e6:.1f}"] + roofs


def gpu_tables():
    name = torch.cuda.get_device_name() if on_cuda else "CPU (Triton's interpreter)"
    impls = {"scan": scan} | peers()
    missing = [p for p in ("mamba_ssm", "fla") if p not in impls]
    print(f"{name}, torch {torch.__version__}, {dtype} inputs, chunk_size {chunk_size}, "
          f"median of {repeats}"
          + (f"; not importable: {', '.join(missing)}" if missing else ""))
    rates = card_rates() if on_cuda else None
    if rates:
        print(f"measured roofs: copy {rates[0] / 1e9:.0f} GB/s, bf16 matmul "
              f"{rates[1] / 1e12:.0f} TFLOP/s")
    markdown(["shape", "B", "T", "H", "K", "V", "g", "impl", "fwd ms", "fwd+bwd ms", "fwd GB/s",
              "f+b GB/s", "fwd roof", "f+b roof"], gpu_scan_rows(impls, rates))
    print(f"\nA post-training step (forward, backward, AdamW; {dtype} autocast):")
    markdown(["model", "B", "T", "params", "ms", "tokens/s"],
             list(step_rows([GPU_STEP], with_peer=False)))


# ----------------------------------------------------------------------------------------------
# The static cost of the Triton kernels on an H100: no GPU needed

H100 = dict(name="H100 SXM", sms=132, bytes_per_s=3.35e12, bf16_per_s=989e12)   # datasheet, dense
# name, B, T, H, K, V, a decay per key channel
STATIC_SHAPES = [("Mamba-2 130m", 8, 2048, 24, 128, 64, False),
                 ("GLA 340M", 8, 2048, 4, 128, 256, True),
                 ("GLA 1.3B", 8, 2048, 4, 256, 512, True)]


# kernel_costs counts each launch from its tiles. 'Fewest' flops count only the pairs s <= t;
# 'fewest' bytes read every tensor the kernel needs once. 'Moved' counts every tile a program loads
# as read from memory, also when other programs of the same chunk read it too (on a GPU those are
# mostly hits in the L2 cache: this count is an upper bound). Elementwise work (the exps; the
# per-channel diagonal sub-chunks) is not counted. The states S_n, D_n, the scores A, dA and the
# decayed qd, kd are in the input dtype (elem bytes); G, dG and the per-channel dq, dk of the states
# float32. Steps 1-2 (G from g) run in PyTorch: a row of their own ('torch').
def kernel_costs(B, T, H, K, V, per_channel, elem, cfg, C=64):
    """Each launch of a forward and backward of `scan` with the tiles of cfg (gpu_compile.config):
    [(step, kernel, programs, matmul flops issued, fewest, bytes moved, fewest)], one row a step."""
    BK, BV, BK_sub = cfg["BK"], cfg["BV"], cfg["BK_sub"]
    # nO: the wide V tiles
    N, BH, nK, nV, nO = -(-T // C), B * H, -(-K // BK), -(-V // BV), -(-V // cfg["BV_wide"])
    nKs = -(-K // BK_sub)                                     # K tiles of the
                                                              # per-channel sub-chunk kernels
    Kg = K if per_channel else 1
    tok = BH * N * C                                          # token rows, T padded to N * C
    q = k = tok * K * elem                                    # q's size stands for qd, kd too
    v = do = tok * V * elem
    g, G, G_last = tok * Kg * elem, tok * Kg * 4, BH * N * Kg * 4
    A, S, h = BH * N * C * C * elem, BH * N * K * V * elem, BH * K * V * 4
    # (C, C) x (C, width): all, causal
    pairs = lambda width: (2 * tok * C * width, tok * (C + 1) * width)
    state = 2 * tok * K * V                                   # (K, C) x (C, V) per chunk
    none = (0, 0)
    plus = lambda *fs: tuple(sum(x) for x in zip(*fs))

    def row(step, name, programs, flops, reads, writes):
        """reads: [(bytes of one tensor, how many times it is read)]."""
        return (step, name, programs, *flops, sum(b * n for b, n in reads) + writes,
                sum(b for b, _ in reads) + writes)
    cumsum = row("1 2", "G (torch)", BH * N, none, [(g, 1)], G)   # cumsum(dtype=float32): one pass
    if per_channel:   # _scores_kernel: A, and qd, kd for steps 4-6; they read no G but
                      # each chunk's G_last
        scores = row("3", "scores: A", N * BH, pairs(K), [(q, 1), (k, 1), (G, 1)], A + 2 * q)
        states = row("4 5", "states: S_n", nK * nO * BH, (state, state),
                     [(k, nO), (v, nK), (G_last, nO)], S + h)
        states_bwd = row("4' 5'", "states: D_n", nK * nO * BH, (state, state),
                         [(q, nO), (do, nK), (G_last, nO)], S + h)
        out = row("6", "output: o", nO * N * BH, plus(pairs(V), (state, state)),
                  [(A, nO), (v, 1), (q, nO), (S, 1)], v)
        dv = row("6'", "output: dv", nO * N * BH, plus(pairs(V), (state, state)),
                 [(A, nO), (do, 1), (k, nO), (S, 1)], v)
    else:             # the scores are made inside the output kernel, once per tile of V
        states = row("4 5", "states: S_n", nK * nV * BH, (state, state),
                     [(k, nV), (v, nK), (G, nV)], S + h)
        states_bwd = row("4' 5'", "states: D_n", nK * nV * BH, (state, state),
                         [(q, nV), (do, nK), (G, nV)], S + h)
        made = (nO * pairs(K)[0], pairs(K)[1])
        out = row("3 6", "output: o", nO * N * BH, plus(made, pairs(V), (state, state)),
                  [(q, nO), (k, nO), (v, 1), (G, nO), (S, 1)], v)
        dv = row("3 6'", "output: dv", nO * N * BH, plus(made, pairs(V), (state, state)),
                 [(q, nO), (k, nO), (do, 1), (G, nO), (S, 1)], v)
    fwd = [cumsum] + ([scores] if per_channel else []) + [states, out]
    bwd = [cumsum] + ([scores] if per_channel else []) + [
        states_bwd, dv,
        row("3'", "scores: dA", N * BH, pairs(V), [(do, 1), (v, 1), (tok * 4, 1)], A)]
    if per_channel:   # _dqk_kernel's float32 dq, dk are completed by _dqk_intra_kernel,
                      # which makes dG
        bwd += [row("3' 4' 6'", "dqk", nK * N * BH, (2 * state, 2 * state),
                    [(do, nK), (v, nK), (S, 1), (S, 1), (G, 1)], 2 * tok * K * 4),
                # dA as rows and as columns, and its (16, 16) diagonal blocks once more (half of it)
                row("3'", "dqk_intra", nKs * N * BH, plus(pairs(K), pairs(K)),
                    [(q, 1), (k, 1), (G, 1), (A, 2.5 * nKs), (2 * tok * K * 4, 1)],
                    2 * tok * K * elem + G)]
    else:             # dq, dk finished in the input dtype, with each K tile's share of dG
        bwd.append(row("3' 4' 6'", "dqk", nK * N * BH,
                       plus((2 * state, 2 * state), pairs(K), pairs(K)),
                       [(do, nK), (v, nK), (S, 1), (S, 1), (G, 2), (A, 2 * nK), (q, 2), (k, 2)],
                       2 * tok * K * elem + tok * nK * 4))
    # dg: _dg_kernel reads dG (a share per K tile for one decay per head) once, writes dg
    # in g's dtype
    bwd.append(row("dg", "dg", -(-Kg // 16) * BH, none,
                   [(G if per_channel else tok * nK * 4, 1)], g))
    return fwd, bwd


def static_table():
    """Print, for each official shape in bfloat16 on an H100, every kernel's shared memory and
    registers (compiled for sm_90 on this machine), programs, flops and bytes, and the time a
    roofline predicts: max(bytes / bandwidth, flops / bf16 rate), stretched by SMs / programs when
    fewer programs than SMs run. Two times: 'pred us' counts every tile a program loads as a read
    from memory; 'L2 us' reads every tensor once (re-reads by programs of the same chunk, which run
    side by side, served by the L2 cache). The truth should lie between. 'roof' is the floor over
    the first time: for a kernel, its fewest bytes and flops; for a whole pass ('all'), those of the
    loop (n_bytes, n_flops); 'L2 roof' the pass's floor over the second. A prediction,
    not a measurement."""
    card = H100
    rate = lambda nbytes, flops: max(nbytes / card["bytes_per_s"], flops / card["bf16_per_s"])
    print(f"\nstatic cost on an {card['name']} (predicted, not measured): {card['sms']} SMs, "
          f"{card['bytes_per_s'] / 1e12:.2f} TB/s, bf16 {card['bf16_per_s'] / 1e12:.0f} TFLOP/s; "
          f"bfloat16 inputs, chunk 64")
    print(f"{'shape':<13} {'pass':<4} {'step':<8} {'kernel':<15} {'smem KB':>7} {'regs':>4} "
          f"{'programs':>8} {'flops/min':>9} {'bytes/min':>9} {'pred us':>8} {'roof':>6} "
          f"{'L2 us':>7} {'L2 roof':>7}")
    for name, B, T, H, K, V, per_channel in STATIC_SHAPES:
        launched, cfg = gpu_compile.launches(torch.bfloat16, per_channel, (9, 0), K, V)
        with warnings.catch_warnings():   # Triton warns while compiling; the table stays
                                          # in one piece
            warnings.simplefilter("ignore")
            compiled = {n: gpu_compile.compile_for(kern, sig, ce, (9, 0), opt)
                        for n, kern, sig, ce, opt in launched}
        fwd, bwd = kernel_costs(B, T, H, K, V, per_channel, 2, cfg)
        for pass_, rows in (("fwd", fwd), ("bwd", bwd)):
            total = total_l2 = 0.0
            for step, kernel, programs, flops, flops_min, moved, fewest in rows:
                shared, regs, _ = compiled.get(kernel, (0, 0, 0))   # G (torch): no kernel of ours
                stretch = max(1, card["sms"] / programs)
                t, t_l2 = rate(moved, flops) * stretch, rate(fewest, flops) * stretch
                roof = rate(fewest, flops_min)   # this kernel's floor
                total, total_l2 = total + t, total_l2 + t_l2
                print(f"{name:<13} {pass_:<4} {step:<8} {kernel:<15} {shared / 1024:>7.0f} "
                      f"{regs:>4} {programs:>8} "
                      f"{f'{flops / flops_min:.2f}' if flops_min else '-':>9} "
                      f"{moved / fewest:>9.2f} {t * 1e6:>8.1f} {roof / t:>6.0%} {t_l2 * 1e6:>7.1f}")
            fewest_bytes = n_bytes(B, T, H, K, V, per_channel, 2)
            fewest_bytes = fewest_bytes[0] if pass_ == "fwd" else fewest_bytes[1] - fewest_bytes[0]
            fewest_flops = n_flops(B, T, H, K, V)
            fewest_flops = fewest_flops[0] if pass_ == "fwd" else fewest_flops[1] - fewest_flops[0]
            floor = rate(fewest_bytes, fewest_flops)
            issued = sum(r[3] for r in rows)
            print(f"{name:<13} {pass_:<4} {'all':<8} {'predicted':<15} {'':>7} {'':>4} {'':>8} "
                  f"{issued / fewest_flops:>9.2f} {sum(r[5] for r in rows) / fewest_bytes:>9.2f} "
                  f"{total * 1e6:>8.1f} {floor / total:>6.0%} {total_l2 * 1e6:>7.1f} "
                  f"{floor / total_l2:>7.0%}   (the loop's floor: {floor * 1e6:.1f} us)")



{"cpu": cpu_tables, "gpu": gpu_tables, "static": static_table}[table]()

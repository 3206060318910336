"""
Times the scans on the shapes of real layers and prints a table: forward ms, forward+backward ms,
and achieved GB/s, i.e. the fewest bytes the operation must move (each input read once, each output
written once) divided by the time. Then, without running anything on a GPU, the static cost of
every Triton kernel on an H100 (a prediction from the compiled kernels and a roofline, see static()).

    python bench.py                    # on the CPU: scan_ref and scan_chunked, then the static table
    python bench.py --static           # the static table only (no GPU needed)
    python bench.py --repeats=20       # on CUDA it adds the Triton scan, and the reference kernels
                                       # of mamba_ssm and fla when they are importable

The peers get identical inputs: mamba_ssm's mamba_chunk_scan_combined computes the same recurrence
from (x, dt, A, B, C) with q = C, k = B, v = dt x (x times the step dt), g = dt A (its log decay);
fla's chunk_gla takes (q, k, v, g) as we do, with scale=1 since our scan never scales q.
"""
import math
import statistics
import sys
import time

import torch

import gpu_compile
from configurator import configure
from scan_kernel import scan, scan_chunked, scan_ref

device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = "bfloat16" if torch.cuda.is_available() else "float32"
repeats = 5             # timed runs per cell; the median is reported
max_ref_T = 4096        # the loop takes seconds per call beyond this, and its backward keeps every S_t
chunk_size = 64
seed = 1337
static = False          # print only the static cost table (--static)
sys.argv = ["--static=True" if a == "--static" else a for a in sys.argv]
configure(globals())

on_cuda = device == "cuda"
torch.manual_seed(seed)
dt = getattr(torch, dtype)
B = 8 if on_cuda else 1   # on the GPU, B*T = 16k-64k tokens, a realistic training micro-batch

# (name, B, T, H, K, V, one decay per head?)
SHAPES = [("H=4 K=V=64", 1, 4096, 4, 64, 64, True),
          ("H=4 K=V=64", 1, 4096, 4, 64, 64, False)]
for T in (2048, 8192):
    SHAPES.append(("Mamba-2 130m", B, T, 24, 128, 64, True))
    if on_cuda:
        SHAPES.append(("Mamba-2 780m", B, T, 48, 128, 96, True))
    SHAPES.append(("GLA 340M", B, T, 4, 128, 256, False))


def peers():
    """The reference kernels importable here: name -> fn(q, k, v, g, x, dt, A) -> o."""
    found = {}
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
        found["mamba_ssm"] = lambda q, k, v, g, x, dt_, A: mamba_chunk_scan_combined(
            x, dt_, A, k[:, :, :1], q[:, :, :1], chunk_size=256)      # ngroups = 1: B, C shared
    except ImportError:
        pass
    try:
        from fla.ops.gla import chunk_gla
        found["fla"] = lambda q, k, v, g, x, dt_, A: chunk_gla(q, k, v, g, scale=1.0)[0]
    except ImportError:
        pass
    return found


def timed(fn, backward):
    """Median wall time in ms of fn() (and of its backward, if asked), after one warm-up."""
    times = []
    for i in range(repeats + 1):
        if on_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if backward:
            out.backward(torch.ones_like(out))
        if on_cuda:
            torch.cuda.synchronize()
        if i > 0:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def inputs(Bn, T, H, K, V, per_head):
    """Mamba-2-style inputs (x, dt, A, B, C) and the (q, k, v, g) they define; all require grad."""
    x = torch.randn(Bn, T, H, V, device=device, dtype=dt)
    dt_ = torch.nn.functional.softplus(torch.randn(Bn, T, H, device=device) - 4)   # dt ~ 0.02
    A = -torch.rand(H, device=device) * 15 - 1                                   # A in [-16, -1]
    Bm = torch.randn(Bn, T, 1, K, device=device, dtype=dt).expand(Bn, T, H, K)
    Cm = torch.randn(Bn, T, 1, K, device=device, dtype=dt).expand(Bn, T, H, K)
    g = dt_ * A if per_head else torch.nn.functional.logsigmoid(torch.randn(Bn, T, H, K, device=device)) / 16
    v = (x.float() * dt_[..., None]).to(dt)
    tensors = [Cm.contiguous(), Bm.contiguous(), v, g.to(dt), x, dt_, A]
    return [t.detach().requires_grad_() for t in tensors]


def n_bytes(Bn, T, H, K, V, per_head, elem):
    """Fewest bytes: read q, k, v, g and write o and the float32 final state; the backward reads
    q, k, v, g, do and writes their four gradients."""
    g_elems = Bn * T * H * (1 if per_head else K)
    fwd = elem * (2 * Bn * T * H * K + 2 * Bn * T * H * V + g_elems) + 4 * Bn * H * K * V
    bwd = 2 * elem * (2 * Bn * T * H * K + Bn * T * H * V + g_elems) + elem * Bn * T * H * V
    return fwd, fwd + bwd


def n_flops(Bn, T, H, K, V):
    """Fewest flops, those of the loop: per token and head, the update k v^T (2KV with the decay) and
    the read-out S^T q (2KV); the backward reads dS into dq, dk, dv and carries dS back (8KV)."""
    return 4 * Bn * T * H * K * V, 12 * Bn * T * H * K * V


def card_rates():
    """The card's copy bandwidth (bytes/s, read + write of a 1 GiB buffer) and bf16 matmul rate (flop/s,
    8192^3): the two roofs that the fewest bytes and flops are divided by."""
    x, y = torch.empty(2 ** 29, dtype=torch.bfloat16, device="cuda"), torch.empty(2 ** 29, dtype=torch.bfloat16, device="cuda")
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    t_copy = timed(lambda: y.copy_(x), backward=False) / 1e3
    t_mm = timed(lambda: a @ a, backward=False) / 1e3
    return 2 * x.numel() * x.element_size() / t_copy, 2 * 8192 ** 3 / t_mm


# ----------------------------------------------------------------------------------------------
# The static cost of the Triton kernels on an H100: no GPU needed

H100 = dict(name="H100 SXM", sms=132, bytes_per_s=3.35e12, bf16_per_s=989e12)   # datasheet, dense
STATIC_SHAPES = [("Mamba-2 130m", 8, 2048, 24, 128, 64, False), ("GLA 340M", 8, 2048, 4, 128, 256, True),
                 ("GLA 1.3B", 8, 2048, 4, 256, 512, True)]      # name, B, T, H, K, V, a decay per key channel


LAUNCH_OF = {"scores: A": "scores (q, k -> A)", "scores: dA": "scores (do, v -> dA)", "output: o": "output (o)",
             "output: dv": "output (dv)", "states: S_n": "states (k, v -> S_n, forward)",
             "states: D_n": "states (q, do -> D_n, backward)"}   # kernel_costs' rows -> gpu_compile.launches' names


def kernel_costs(B, T, H, K, V, per_channel, elem, cfg, C=64):
    """Each launch of a forward and backward of `scan` with the tiles of cfg (gpu_compile.config),
    counted from its tiles: [(step, kernel, programs, matmul flops issued, fewest, bytes moved,
    fewest)]. 'Fewest' flops count only the pairs s <= t; 'fewest' bytes read every tensor the kernel
    needs once. 'Moved' counts every tile a program loads as read from memory, also when other
    programs of the same chunk read it too (on a GPU those are mostly hits in the L2 cache: this count
    is an upper bound). Elementwise work (the exps; the per-channel diagonal sub-chunks) is not
    counted. The states S_n, D_n, the scores A, dA and the decayed qd, kd are in the input dtype
    (elem bytes); G, dG and the per-channel dq, dk of the states float32. Steps 1-2 (G from g) run in
    PyTorch: a row of their own ('torch')."""
    BK, BV, BK_sub = cfg["BK"], cfg["BV"], cfg["BK_sub"]
    N, BH, nK, nV, nO = -(-T // C), B * H, -(-K // BK), -(-V // BV), -(-V // cfg["BV_wide"])   # nO: the wide V tiles
    nKs = -(-K // BK_sub)                                     # K tiles of the per-channel sub-chunk kernels
    Kg = K if per_channel else 1
    tok = BH * N * C                                          # token rows, T padded to N * C
    q = k = tok * K * elem                                    # q's size stands for qd, kd too
    v = do = tok * V * elem
    g, G, G_last = tok * Kg * elem, tok * Kg * 4, BH * N * Kg * 4
    A, S, h = BH * N * C * C * elem, BH * N * K * V * elem, BH * K * V * 4
    pairs = lambda width: (2 * tok * C * width, tok * (C + 1) * width)   # (C, C) x (C, width): all, causal
    state = 2 * tok * K * V                                   # (K, C) x (C, V) per chunk
    none = (0, 0)
    plus = lambda *fs: tuple(sum(x) for x in zip(*fs))

    def row(step, name, programs, flops, reads, writes):
        """reads: [(bytes of one tensor, how many times it is read)]."""
        return (step, name, programs, *flops, sum(b * n for b, n in reads) + writes, sum(b for b, _ in reads) + writes)
    cumsum = row("1 2", "G (torch)", BH * N, none, [(g, 1)], G)      # cumsum(dtype=float32): one pass
    if per_channel:   # _scores_kernel: A, and qd, kd for steps 4-6; they read no G but each chunk's G_last
        scores = row("3", "scores: A", N * BH, pairs(K), [(q, 1), (k, 1), (G, 1)], A + 2 * q)
        states = row("4 5", "states: S_n", nK * nO * BH, (state, state), [(k, nO), (v, nK), (G_last, nO)], S + h)
        states_bwd = row("4' 5'", "states: D_n", nK * nO * BH, (state, state), [(q, nO), (do, nK), (G_last, nO)], S + h)
        out = row("6", "output: o", nO * N * BH, plus(pairs(V), (state, state)), [(A, nO), (v, 1), (q, nO), (S, 1)], v)
        dv = row("6'", "output: dv", nO * N * BH, plus(pairs(V), (state, state)), [(A, nO), (do, 1), (k, nO), (S, 1)], v)
    else:             # the scores are made inside the output kernel, once per tile of V
        states = row("4 5", "states: S_n", nK * nV * BH, (state, state), [(k, nV), (v, nK), (G, nV)], S + h)
        states_bwd = row("4' 5'", "states: D_n", nK * nV * BH, (state, state), [(q, nV), (do, nK), (G, nV)], S + h)
        made = (nO * pairs(K)[0], pairs(K)[1])
        out = row("3 6", "output: o", nO * N * BH, plus(made, pairs(V), (state, state)), [(q, nO), (k, nO), (v, 1), (G, nO), (S, 1)], v)
        dv = row("3 6'", "output: dv", nO * N * BH, plus(made, pairs(V), (state, state)), [(q, nO), (k, nO), (do, 1), (G, nO), (S, 1)], v)
    fwd = [cumsum] + ([scores] if per_channel else []) + [states, out]
    bwd = [cumsum] + ([scores] if per_channel else []) + [states_bwd, dv,
                                                          row("3'", "scores: dA", N * BH, pairs(V), [(do, 1), (v, 1), (tok * 4, 1)], A)]
    if per_channel:   # _dqk_kernel's float32 dq, dk are completed by _dqk_intra_kernel, which makes dG
        bwd += [row("3' 4' 6'", "dqk", nK * N * BH, (2 * state, 2 * state), [(do, nK), (v, nK), (S, 1), (S, 1), (G, 1)], 2 * tok * K * 4),
                # dA as rows and as columns, and its (16, 16) diagonal blocks once more (half of it)
                row("3'", "dqk_intra", nKs * N * BH, plus(pairs(K), pairs(K)),
                    [(q, 1), (k, 1), (G, 1), (A, 2.5 * nKs), (2 * tok * K * 4, 1)], 2 * tok * K * elem + G)]
    else:             # dq, dk finished in the input dtype, with each K tile's share of dG
        bwd.append(row("3' 4' 6'", "dqk", nK * N * BH, plus((2 * state, 2 * state), pairs(K), pairs(K)),
                       [(do, nK), (v, nK), (S, 1), (S, 1), (G, 2), (A, 2 * nK), (q, 2), (k, 2)], 2 * tok * K * elem + tok * nK * 4))
    # dg: _dg_kernel reads dG (a share per K tile for one decay per head) once, writes dg in g's dtype
    bwd.append(row("dg", "dg", -(-Kg // 16) * BH, none, [(G if per_channel else tok * nK * 4, 1)], g))
    return fwd, bwd


def static():
    """Print, for each official shape in bfloat16 on an H100, every kernel's shared memory and
    registers (compiled for sm_90 on this machine), programs, flops and bytes, and the time a
    roofline predicts: max(bytes / bandwidth, flops / bf16 rate), stretched by SMs / programs when
    fewer programs than SMs run. Two times: 'pred us' counts every tile a program loads as a read
    from memory; 'L2 us' reads every tensor once (re-reads by programs of the same chunk, which run
    side by side, served by the L2 cache). The truth should lie between. 'roof' is the floor over
    the first time: for a kernel, its fewest bytes and flops; for a whole pass ('all'), those of the
    loop (n_bytes, n_flops); 'L2 roof' the pass's floor over the second. A prediction, not a measurement."""
    card = H100
    rate = lambda nbytes, flops: max(nbytes / card["bytes_per_s"], flops / card["bf16_per_s"])
    print(f"\nstatic cost on an {card['name']} (predicted, not measured): {card['sms']} SMs, "
          f"{card['bytes_per_s'] / 1e12:.2f} TB/s, bf16 {card['bf16_per_s'] / 1e12:.0f} TFLOP/s; bfloat16 inputs, chunk 64")
    print(f"{'shape':<13} {'pass':<4} {'step':<8} {'kernel':<15} {'smem KB':>7} {'regs':>4} {'programs':>8} "
          f"{'flops/min':>9} {'bytes/min':>9} {'pred us':>8} {'roof':>6} {'L2 us':>7} {'L2 roof':>7}")
    for name, B, T, H, K, V, per_channel in STATIC_SHAPES:
        launched, cfg = gpu_compile.launches(torch.bfloat16, per_channel, (9, 0), K, V)
        compiled = {n: gpu_compile.compile_for(kern, sig, ce, (9, 0), opt) for n, kern, sig, ce, opt in launched}
        fwd, bwd = kernel_costs(B, T, H, K, V, per_channel, 2, cfg)
        for pass_, rows in (("fwd", fwd), ("bwd", bwd)):
            total = total_l2 = 0.0
            for step, kernel, programs, flops, flops_min, moved, fewest in rows:
                shared, regs, _ = compiled.get(LAUNCH_OF.get(kernel, kernel), (0, 0, 0))   # torch: no kernel of ours
                stretch = max(1, card["sms"] / programs)
                t, t_l2 = rate(moved, flops) * stretch, rate(fewest, flops) * stretch
                roof = rate(fewest, flops_min)                                  # this kernel's floor
                total, total_l2 = total + t, total_l2 + t_l2
                print(f"{name:<13} {pass_:<4} {step:<8} {kernel:<15} {shared / 1024:>7.0f} {regs:>4} {programs:>8} "
                      f"{f'{flops / flops_min:.2f}' if flops_min else '-':>9} {moved / fewest:>9.2f} {t * 1e6:>8.1f} "
                      f"{roof / t:>6.0%} {t_l2 * 1e6:>7.1f}")
            fewest_bytes = n_bytes(B, T, H, K, V, not per_channel, 2)
            fewest_bytes = fewest_bytes[0] if pass_ == "fwd" else fewest_bytes[1] - fewest_bytes[0]
            fewest_flops = n_flops(B, T, H, K, V)
            fewest_flops = fewest_flops[0] if pass_ == "fwd" else fewest_flops[1] - fewest_flops[0]
            floor = rate(fewest_bytes, fewest_flops)
            issued = sum(r[3] for r in rows)
            print(f"{name:<13} {pass_:<4} {'all':<8} {'predicted':<15} {'':>7} {'':>4} {'':>8} "
                  f"{issued / fewest_flops:>9.2f} {sum(r[5] for r in rows) / fewest_bytes:>9.2f} {total * 1e6:>8.1f}"
                  f" {floor / total:>6.0%} {total_l2 * 1e6:>7.1f} {floor / total_l2:>7.0%}   (the loop's floor: {floor * 1e6:.1f} us)")


if static:
    static()
    sys.exit()

impls = {"scan_ref": scan_ref, "scan_chunked": scan_chunked}
if on_cuda:
    impls["scan"] = scan
impls |= {name: fn for name, fn in peers().items()} if on_cuda else {}

print(f"device: {torch.cuda.get_device_name() if on_cuda else 'CPU'} ({torch.get_num_threads()} threads), "
      f"dtype {dtype}, torch {torch.__version__}, chunk_size {chunk_size}, median of {repeats}")
if on_cuda:
    bandwidth, matmul = card_rates()
    print(f"measured roofs: copy {bandwidth / 1e9:.0f} GB/s, bf16 matmul {matmul / 1e12:.0f} TFLOP/s; 'roof' is "
          f"the time floor max(bytes / copy, flops / matmul) over the time")
print(f"{'shape':<14} {'B':>2} {'T':>5} {'H':>3} {'K':>4} {'V':>4} {'g':<7} {'impl':<13} "
      f"{'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd GB/s':>9} {'f+b GB/s':>9}" + (f" {'fwd roof':>9} {'f+b roof':>9}" if on_cuda else ""))
for name, Bn, T, H, K, V, per_head in SHAPES:
    q, k, v, g, x, dt_, A = inputs(Bn, T, H, K, V, per_head)
    fwd_bytes, all_bytes = n_bytes(Bn, T, H, K, V, per_head, q.element_size())
    for impl, fn in impls.items():
        if impl == "scan_ref" and T > max_ref_T:
            continue
        if (impl == "mamba_ssm" and not per_head) or (impl == "fla" and per_head):
            continue                  # each peer computes only its own model's form of g
        if impl in ("scan_ref", "scan_chunked", "scan"):
            kw = {} if impl == "scan_ref" else {"chunk_size": chunk_size}
            run = lambda: fn(q, k, v, g, **kw)[0]
        else:
            run = lambda: fn(q, k, v, g, x, dt_, A)
        with torch.no_grad():   # a forward pass alone: no graph kept for a backward
            t_f = timed(run, backward=False)
        t_fb = timed(run, backward=True)
        roof = ""
        if on_cuda:
            floor = lambda nb, nf: max(nb / bandwidth, nf / matmul) * 1e3     # ms
            fwd_flops, all_flops = n_flops(Bn, T, H, K, V)
            roof = f" {floor(fwd_bytes, fwd_flops) / t_f:>9.0%} {floor(all_bytes, all_flops) / t_fb:>9.0%}"
        print(f"{name:<14} {Bn:>2} {T:>5} {H:>3} {K:>4} {V:>4} {'head' if per_head else 'channel':<7} "
              f"{impl:<13} {t_f:>9.2f} {t_fb:>11.2f} {fwd_bytes / t_f / 1e6:>9.2f} {all_bytes / t_fb / 1e6:>9.2f}{roof}")

if not on_cuda:
    static()

"""
Times the scans on the shapes of real layers and prints a table: forward ms, forward+backward ms,
and achieved GB/s, i.e. the fewest bytes the operation must move (each input read once, each output
written once) divided by the time.

    python bench.py                    # on the CPU: scan_ref and scan_chunked
    python bench.py --repeats=20       # on CUDA it adds the Triton scan, and the reference kernels
                                       # of mamba_ssm and fla when they are importable

The peers get identical inputs: mamba_ssm's mamba_chunk_scan_combined computes the same recurrence
from (x, dt, A, B, C) with q = C, k = B, v = dt x, g = dt A (DESIGN.md); fla's chunk_gla takes
(q, k, v, g) as we do, with scale=1 since our scan never scales q.
"""
import statistics
import time

import torch

from configurator import configure
from scan_kernel import scan, scan_chunked, scan_ref

device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = "bfloat16" if torch.cuda.is_available() else "float32"
repeats = 5             # timed runs per cell; the median is reported
max_ref_T = 4096        # the loop takes seconds per call beyond this, and its backward keeps every S_t
chunk_size = 64
seed = 1337
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

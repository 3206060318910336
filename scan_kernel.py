"""
The recurrence at the heart of every model in the paper, computed three ways.

Mamba-2, GLA, Mamba-1 and RWKV-6 all reduce to one diagonal linear recurrence (paper eq. 1): each
model computes its q, k, v and log decay g from its input (Mamba-2: q = C, k = B, v = dt x,
g = dt A, one decay per head; GLA: a decay per key channel). Per batch row and head, t = 0 .. T-1:

    S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T        (eq. 1a: the state update)
    o_t = S_t^T q_t                                  (eq. 1b: the read-out, after the update)

Glossary (paper symbol -> name here), with the shapes every function takes:
    h_{t}  (the state)          S    (B, H, K, V), float32
    h_{-1} (the initial state)  h0   (B, H, K, V) or None (= zeros)
    h_{T-1} (the final state)   h    (B, H, K, V), returned
    A_t = diag(exp(g_t))        g    (B, T, H, K), or (B, T, H) for one decay per head (Mamba-2);
                                     g <= 0 is a log decay
    B_t x_t                     k, v (B, T, H, K) and (B, T, H, V)
    C_t                         q    (B, T, H, K); no scaling is applied to q here
    y_t                         o    (B, T, H, V)
    A^x_{s+1:t} (sec. 2.1)      exp(G_t - G_s), with G_t = g_0 + ... + g_t the cumulative log decay

The three functions share one signature, (q, k, v, g, h0=None, ...) -> (o, h):
    scan_ref      the definition: a loop over t. Slow; the reference the others are tested against.
    scan_chunked  the chunked algorithm in PyTorch: matrix products inside chunks of C tokens, the
                  state carried from chunk to chunk, with a hand-written backward.
    scan          the same algorithm as Triton kernels (scan_triton.py, the numbered steps
                  of scan_chunked) with a hand-written backward: the fast path. On CUDA; on the CPU
                  only under TRITON_INTERPRET=1 (set before importing this file).
The gradient reaches q, k, v, g and h0, and flows back from the final state h too: state passing
and TBTT (paper sec. 4.4-4.5) hand h to the next batch. A full reset, g = -inf (exp(g) = 0), is
computed exactly by scan_ref and scan_chunked and refused with a ValueError by scan (g = -50 does
the same to float32 precision).
"""
import math
import os
import warnings

import torch
import torch.nn.functional as F
import triton

import gpu_compile
import scan_triton


def _check(q, k, v, g, h0):
    """Validate shapes and dtypes; return (B, T, H, K, V). Every scan calls this first."""
    for name, x in (("q", q), ("k", k), ("v", v), ("g", g), ("h0", h0)):
        if x is not None and not (torch.is_tensor(x) and x.is_floating_point()):
            kind = x.dtype if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{name} must be a floating-point tensor, got {kind}")
    if q.dim() != 4:
        raise ValueError(f"q must be (B, T, H, K), got shape {tuple(q.shape)}")
    B, T, H, K = q.shape
    if T == 0:
        raise ValueError("the sequence is empty: q has T = 0")
    if k.shape != q.shape:
        raise ValueError(f"k must have q's shape {tuple(q.shape)}, got {tuple(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be (B, T, H, V) = ({B}, {T}, {H}, V), got {tuple(v.shape)}")
    V = v.shape[3]
    if g.shape != q.shape and g.shape != q.shape[:3]:
        raise ValueError(f"g must be (B, T, H, K) = {tuple(q.shape)} or (B, T, H) = "
                         f"{tuple(q.shape[:3])}, got {tuple(g.shape)}")
    if h0 is not None and h0.shape != (B, H, K, V):
        raise ValueError(f"h0 must be (B, H, K, V) = {(B, H, K, V)}, got {tuple(h0.shape)}")
    devices = {x.device for x in (q, k, v, g, h0) if x is not None}
    if len(devices) > 1:
        raise ValueError(
            f"q, k, v, g and h0 must be on one device, got {sorted(map(str, devices))}")
    return B, T, H, K, V


def _acc_dtype(x):
    """The accumulation dtype: float32, or float64 for float64 inputs (gradcheck needs it)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# ----------------------------------------------------------------------------------------------
# 1. The definition

def scan_ref(q, k, v, g, h0=None):
    """The recurrence as written, one step per token. Returns o (B, T, H, V) and h (B, H, K, V)."""
    B, T, H, K, V = _check(q, k, v, g, h0)
    acc = _acc_dtype(q)
    q, k, v, g = (x.to(acc) for x in (q, k, v, g))
    a = g.exp() if g.dim() == 4 else g.exp()[..., None]          # diag(exp(g_t)), (B, T, H, K|1)
    S = torch.zeros(B, H, K, V, dtype=acc, device=q.device) if h0 is None else h0.to(acc)
    o = []
    # one view per step from unbind, whose gradients autograd stacks once (indexing a[:, t] would
    # give each step's backward a zero tensor the size of all T steps: T^2 work)
    for a_t, q_t, k_t, v_t in zip(a.unbind(1), q.unbind(1), k.unbind(1), v.unbind(1)):
        S = a_t[..., None] * S + k_t[..., None] * v_t[..., None, :]               # eq. 1a
        o.append(torch.einsum("bhk,bhkv->bhv", q_t, S))                           # eq. 1b
    return torch.stack(o, dim=1).to(v.dtype), S


# ----------------------------------------------------------------------------------------------
# 2. The chunked algorithm

def _scores_plain(q, k, G):
    """A[t, s] = sum_k q_tk k_sk exp(G_tk - G_sk) for s <= t, else 0: what step 3 computes, written
    out with the (C, C, K) tensor of all pairwise decays. q, k, G (..., C, K) -> A (..., C, C).
    The exponent is masked to -inf above the diagonal *before* the exp, so nothing overflows."""
    C = q.shape[-2]
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()[..., None]  # (C, C, 1)
    decay = ((G[..., :, None, :] - G[..., None, :, :])
             .masked_fill(~causal, -math.inf).exp())                                # (..., C, C, K)
    return torch.einsum("...tk,...sk,...tsk->...ts", q, k, decay)


def _scores_by_halving(q, k, G, R):
    """_scores_plain without the (C, C, K) tensor: O(C K log C) exps instead of O(C^2 K).
    The pairs s < t are split by halving: in each block of 2h tokens the h tokens of the second half
    read the h tokens of the first half through the first half's last position m, with
    exp(G_t - G_s) = exp(G_t - G_m) * exp(G_m - G_s): both factors are <= 1 since s <= m < t, and
    the block is one matrix product. Every pair s < t is split at exactly one level (h = C/2, C/4,
    ..., 1), and s = t has decay 1. (The Triton kernel splits the chunk into sub-chunks instead.)
    R counts full resets (scan_chunked, step 2): a factor across one is 0."""
    C, K = q.shape[-2:]
    A = (q * k).sum(-1).diag_embed()                              # s = t, (..., C, C)
    h = C // 2
    while h >= 1:
        # (..., block, which half, position in it, K)
        blocks = (*q.shape[:-2], C // (2 * h), 2, h, K)
        qb, kb, Gb, Rb = q.view(blocks), k.view(blocks), G.view(blocks), R.view(blocks)
        G_m, R_m = Gb[..., 0, -1:, :], Rb[..., 0, -1:, :]         # at the first half's last token
        q_2 = (_decay(Gb[..., 1, :, :], Rb[..., 1, :, :], G_m, R_m)
               * qb[..., 1, :, :])                                # second half, back to m
        k_1 = (_decay(G_m, R_m, Gb[..., 0, :, :], Rb[..., 0, :, :])
               * kb[..., 0, :, :])                                # first half, forward to m
        # the (2h, 2h) blocks on A's diagonal, as a view (..., 2h, 2h, block);
        # add the lower-left quarter
        A_blocks = (A.view(*A.shape[:-2], C // (2 * h), 2 * h, C // (2 * h), 2 * h)
                    .diagonal(dim1=-4, dim2=-2))
        A_blocks[..., h:, :h, :] += (q_2 @ k_1.transpose(-1, -2)).movedim(-3, -1)
        h //= 2
    return A


def _scores_by_halving_grad(q, k, G, R, dA):
    """The gradients dq, dk (..., C, K) of A = _scores_by_halving(q, k, G, R), given dA (..., C, C):
    the same blocks, each product q_2 k_1^T of the forward read backwards (its gradient in G is
    q dq - k dk, made by the caller)."""
    C, K = q.shape[-2:]
    diag = dA.diagonal(dim1=-2, dim2=-1)[..., None]                    # s = t
    dq, dk = diag * k, diag * q
    h = C // 2
    while h >= 1:
        blocks = (*q.shape[:-2], C // (2 * h), 2, h, K)
        qb, kb, Gb, Rb = q.view(blocks), k.view(blocks), G.view(blocks), R.view(blocks)
        G_m, R_m = Gb[..., 0, -1:, :], Rb[..., 0, -1:, :]
        to_m = _decay(Gb[..., 1, :, :], Rb[..., 1, :, :], G_m, R_m)    # second half, back to m
        from_m = _decay(G_m, R_m, Gb[..., 0, :, :], Rb[..., 0, :, :])  # first half, forward to m
        dA_blocks = dA.view(*dA.shape[:-2], C // (2 * h), 2 * h, C // (2 * h), 2 * h)
        dA_q = (dA_blocks.diagonal(dim1=-4, dim2=-2)[..., h:, :h, :]
                .movedim(-1, -3))                                      # (..., block, h, h)
        dq.view(blocks)[..., 1, :, :] += to_m * (dA_q @ (from_m * kb[..., 0, :, :]))
        dk.view(blocks)[..., 0, :, :] += from_m * (dA_q.transpose(-1, -2)
                                                   @ (to_m * qb[..., 1, :, :]))
        h //= 2
    return dq, dk


def _decay(G_t, R_t, G_s, R_s):
    """exp(G_t - G_s), the decay from s to t, or 0 where a full reset lies between (R_t != R_s)."""
    return (G_t - G_s).masked_fill(R_t != R_s, -math.inf).exp()


# The sequence is computed in segments of whole chunks, carrying the state from one to the next, so
# that no temporary holds more than about this many numbers (32 MB in float32) and every segment
# does the same work: the cost per token is the same at every T (bench.py's per-token table
# measures it).
_SEGMENT_NUMBERS = 1 << 21


class _Chunked(torch.autograd.Function):
    """scan_chunked's six steps, segment by segment, with a hand-written backward that mirrors the
    Triton path's (scan_triton.Scan): only the inputs and the states S_n entering each chunk are
    kept (one (K, V) state per chunk), everything else is made again in the backward. (Through
    autograd, the loop of step 5 cost O(N^2): each S_{n+1} = a_n S_n + U_n read U_n as a slice,
    whose backward writes a zero tensor the size of all N increments; and autograd kept some ten
    tensors per token.)
    apply(q, k, v, g, h0, C, keep) -> (o, h)."""

    @staticmethod
    def forward(ctx, q, k, v, g, h0, C, keep):
        (B, T, H, K), V, acc = q.shape, v.shape[-1], _acc_dtype(q)
        N = -(-T // C)
        per_chunk = B * H * max(C * max(K, V, C), K * V)
        step = max(1, _SEGMENT_NUMBERS // per_chunk)                   # chunks per segment
        # keep: a backward will follow, which needs every S_n; without one (evaluation) a segment's
        # S_n are enough, and the memory they take no longer grows with T.
        # One chunk from the zero state (a training batch with T <= C): every S_n is 0, so step 6
        # reads no state. The backward skips the same way when no gradient comes through the
        # final state.
        no_S = h0 is None and N == 1
        o = torch.empty(B, T, H, V, dtype=v.dtype, device=v.device)
        S_all = torch.empty(B, H, N if keep else min(N, step), K, V,   # S_n
                            dtype=acc, device=q.device)
        S = None if h0 is None else h0.to(acc)                        # None: the zero state
        for n0 in range(0, N, step):
            t0, t1 = n0 * C, min(T, (n0 + step) * C)
            q_, k_, v_, g_ = (_chunks(x, t0, t1, C, acc) for x in (q, k, v, g))
            d = _decays(q_, k_, g_)
            kd = k_ * d["out"]
            U = kd.transpose(-1, -2) @ v_                              # 4. what each chunk adds
            first = 0 if keep else n0
            for j, (a_j, U_j) in enumerate(zip(d["a"].unbind(2), U.unbind(2))):   # 5. the carry
                S_all[:, :, n0 - first + j] = 0 if S is None else S
                S = U_j if S is None else a_j * S + U_j
            S_n = S_all[:, :, n0 - first:n0 - first + U.shape[2]]
            o_ = d["A"] @ v_                                           # 6. read the scores and S_n
            o_ = o_ if no_S else o_ + (q_ * d["in"]) @ S_n
            o[:, t0:t1] = _unchunk(o_, t1 - t0)
        ctx.save_for_backward(q, k, v, g, h0, S_all, S)
        ctx.C, ctx.step = C, step
        # an unused o or h reaches the backward as None, not zeros
        ctx.set_materialize_grads(False)
        return o, S

    @staticmethod
    def backward(ctx, do, dh):
        q, k, v, g, h0, S_all, h = ctx.saved_tensors
        C, step, (B, T, H, K), V = ctx.C, ctx.step, q.shape, v.shape[-1]
        acc, N = S_all.dtype, S_all.shape[2]
        no_S, no_D = h0 is None and N == 1, dh is None and N == 1   # S_n = 0; D_n = 0 (forward)
        dq, dk, dv, dg = (torch.empty(x.shape, dtype=acc, device=x.device) for x in (q, k, v, g))
        D = None if dh is None else dh.to(acc)    # dL/d(the state leaving the chunk); None: zero
        do = torch.zeros_like(v) if do is None else do
        for n0 in reversed(range(0, N, step)):
            t0, t1 = n0 * C, min(T, (n0 + step) * C)
            q_, k_, v_, g_, do_ = (_chunks(x, t0, t1, C, acc) for x in (q, k, v, g, do))
            d, n = _decays(q_, k_, g_), q_.shape[2]
            S_n = S_all[:, :, n0:n0 + n]
            if not no_D or h0 is not None:
                W = (q_ * d["in"]).transpose(-1, -2) @ do_          # 4'. what chunk n's outputs add
                D_n = torch.empty_like(S_n)                         # D_n: dL/dS leaving chunk n
                for j in reversed(range(n)):                        # 5'. the carry, backwards
                    D_n[:, :, j] = 0 if D is None else D
                    D = W[:, :, j] if D is None else d["a"][:, :, j] * D + W[:, :, j]
            dA = (do_ @ v_.transpose(-1, -2)).tril()                # 3'. s <= t
            # one decay per head: A = (q k^T) L
            if d["L"] is not None:
                dAL = dA * d["L"]
                dq_, dk_ = dAL @ k_, dAL.transpose(-1, -2) @ q_
            else:
                dq_, dk_ = _scores_by_halving_grad(q_, k_, d["G"], d["R"], dA)
            dv_ = d["A"].transpose(-1, -2) @ do_                    # 6'.
            if not no_S:
                dq_ = dq_ + (do_ @ S_n.transpose(-1, -2)) * d["in"]
            if not no_D:
                dv_ = dv_ + (k_ * d["out"]) @ D_n
                dk_ = dk_ + (v_ @ D_n.transpose(-1, -2)) * d["out"]
            # dG_t: G_t enters as exp(+G_t) with q_t and exp(-G_t) with k_t, and G_last also through
            # the carry (a_n S_n + U_n = S_next): q dq - k dk, plus D_n . S_next in the last row.
            dG = q_ * dq_ - k_ * dk_
            if d["L"] is not None:
                dG = dG.sum(-1, keepdim=True)
            if not no_D:
                after = S_all[:, :, n0 + n] if n0 + n < N else h    # the state leaving the segment
                # leaving each chunk
                S_next = torch.cat([S_all[:, :, n0 + 1:n0 + n], after[:, :, None]], 2)
                last = D_n * S_next                                 # (B, H, n, K, V)
                dG[..., -1, :] += (last.sum((-2, -1))[..., None] if d["L"] is not None
                                   else last.sum(-1))
            # G is g's sum in the chunk
            dg_ = dG.flip(3).cumsum(3).flip(3).masked_fill(d["reset"], 0.0)
            for grad, x in ((dq, dq_), (dk, dk_), (dv, dv_), (dg, dg_)):
                grad[:, t0:t1] = _unchunk(x, t1 - t0).reshape(grad[:, t0:t1].shape)
        return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dg.to(g.dtype),
                None if h0 is None else D.to(h0.dtype), None, None)


def _chunks(x, t0, t1, C, acc):
    """Step 1 for tokens t0 .. t1-1 of x (B, T, H, dim) or (B, T, H): padded to whole chunks
    (padding has k = 0 and g = 0: it adds nothing and decays nothing), laid out as
    (B, H, n, C, dim) in acc."""
    # one decay per head: a K axis of size 1
    x = x[:, t0:t1] if x.dim() == 4 else x[:, t0:t1, :, None]
    B, T_, H, dim = x.shape
    n = -(-T_ // C)
    x = F.pad(x, (0, 0, 0, 0, 0, n * C - T_)) if n * C > T_ else x
    # bmm's fast path needs it
    return x.view(B, n, C, H, dim).permute(0, 3, 1, 2, 4).to(acc).contiguous()


def _unchunk(x, T_):
    """(B, H, n, C, dim) -> (B, T_, H, dim): the layout of step 1 undone, the padding dropped."""
    B, H, n, C, dim = x.shape
    return x.permute(0, 2, 3, 1, 4).reshape(B, n * C, H, dim)[:, :T_]


def _decays(q, k, g):
    """Steps 2-3 for chunks laid out by _chunks: a dict of G and R (below); 'in' = exp(G_t), the
    decay from the chunk's start to t; 'out' = exp(G_last - G_t), from t to its end;
    'a' = exp(G_last) (B, H, n, K|1, 1), the chunk's total decay; 'A' the scores (B, H, n, C, C);
    'L' their decays for one decay per head (None per key channel); 'reset' where g = -inf."""
    # 2. Cumulative log decay inside each chunk: G[..., t, :] = g_0 + ... + g_t (chunk-local t). A
    #    full reset (g = -inf) would make G_t - G_s = -inf - (-inf) = NaN: it adds 0 to G instead,
    #    and 1 to R, the resets so far; exp(G_t - G_s) is then 0 where R_t != R_s (_decay).
    reset = torch.isneginf(g)
    G, R = g.masked_fill(reset, 0.0).cumsum(dim=3), reset.cumsum(dim=3)
    G_last, R_last, zero = G[..., -1:, :], R[..., -1:, :], torch.zeros_like(R[..., :1, :])
    d = {"G": G, "R": R, "reset": reset, "in": _decay(G, R, 0.0, zero),
         "out": _decay(G_last, R_last, G, R),
         "a": _decay(G_last, R_last, 0.0, zero).transpose(-1, -2), "L": None}
    # 3. The scores A[t, s] = sum_k q_tk k_sk exp(G_tk - G_sk), s <= t in one chunk (_scores_plain).
    #    With one decay per head this is SSD's masked product (Q K^T) * L with
    #    L[t, s] = exp(G_t - G_s) (Dao & Gu, 2024); with a decay per key channel L needs a K axis:
    #    halving avoids storing it.
    if g.shape[-1] == 1:
        C = q.shape[-2]
        causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
        apart = ~causal | (R != R.transpose(-1, -2))                # s > t, or a full reset between
        d["L"] = (G - G.transpose(-1, -2)).masked_fill(apart, -math.inf).exp()   # (B, H, n, C, C)
        d["A"] = (q @ k.transpose(-1, -2)) * d["L"]
    else:
        d["A"] = _scores_by_halving(q, k, G, R)
    return d


def scan_chunked(q, k, v, g, h0=None, chunk_size=64):
    """The recurrence in chunks of C = chunk_size tokens (C a power of two), in six steps.

    Unrolling eq. 1a inside a chunk whose incoming state is S_n (paper eq. 4a, with G the cumulative
    log decay since the chunk began):
        o_t = sum_{s<=t in chunk} (q_t * exp(G_t - G_s)) . k_s  v_s   +   (q_t * exp(G_t))^T S_n
    The first term is attention-like and done with matrix products; the second reads the carried
    state. Every exp below has an argument <= 0 (G falls as t grows): nothing overflows, even for
    g = -50, where a naive q * exp(G) times k * exp(-G) split would give inf * 0 = NaN. g = -inf (a
    full reset) is computed exactly, as the loop does: it is counted apart from G (step 2).
    Steps 1-3 are _chunks and _decays, 4-6 _Chunked.forward; its backward is written by hand.
    """
    B, T, H, K, V = _check(q, k, v, g, h0)
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two, got {chunk_size}")
    C = min(chunk_size, 1 << (T - 1).bit_length())   # no point padding a short sequence to a full C
    keep = torch.is_grad_enabled() and any(x is not None and x.requires_grad
                                           for x in (q, k, v, g, h0))
    return _Chunked.apply(q, k, v, g, h0, C, keep)


# ----------------------------------------------------------------------------------------------
# 3. The Triton kernels (scan_triton.py): the chunked algorithm, fast

def triton_fits(device, dtype):
    """Whether `scan` can launch on `device` with `dtype` inputs. Its tiles do not grow with K or V,
    and tests/test_compile.py checks that every kernel fits the shared memory and registers of
    sm_75, sm_80 and sm_90 cards; so what remains is the card's generation: Triton needs compute
    capability 7.5, and bfloat16 products need 8.0.
    Warns (once per reason) when it returns False."""
    device = torch.device(device)
    if device.type != "cuda":
        reason = f"the Triton scan needs a CUDA device, got {device}"
    else:
        major, minor = torch.cuda.get_device_capability(device)
        reason = (f"Triton needs compute capability 7.5 or newer, this card has {major}.{minor}"
                  if (major, minor) < (7, 5) else
                  f"bfloat16 products need compute capability 8.0, this card has {major}.{minor}; "
                  "use float16"
                  if dtype == torch.bfloat16 and major < 8 else None)
    if reason is not None:
        warnings.warn(f"scan_backend='auto' uses scan_chunked: {reason}", stacklevel=2)
    return reason is None


_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"   # read by triton.jit at import, as here


def scan(q, k, v, g, h0=None, chunk_size=64):
    """The chunked scan as Triton kernels, with a hand-written backward. Same contract as
    scan_chunked, except that g = -inf (a full reset) is refused with a ValueError; float32,
    bfloat16 or float16 inputs (the state and accumulation in float32). chunk_size: a power of two;
    the kernels use C = 16 .. 64 (they hold (C, C) tiles of scores in registers), which changes how
    the work is split, never the result."""
    _check(q, k, v, g, h0)
    if torch.isneginf(g).any():
        raise ValueError(
            "g contains -inf (a full reset), which the Triton scan refuses (its kernels would "
            "compute -inf - (-inf) = NaN): pass a large finite log decay such as g = -50 "
            "(exp(-50) ~ 2e-22), or use scan_chunked or scan_ref, which compute -inf exactly")
    if q.dtype == torch.float64:
        raise ValueError("scan takes float32, bfloat16 or float16; use scan_chunked for float64")
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two, got {chunk_size}")
    if q.device.type != "cuda" and not _INTERPRETED:
        raise RuntimeError(
            "the Triton scan runs on CUDA tensors, or on the CPU when TRITON_INTERPRET=1 "
            "is set before scan_kernel is imported; on the CPU use scan_chunked")
    C = max(16, min(chunk_size, 64, triton.next_power_of_2(q.shape[1])))
    capability = torch.cuda.get_device_capability(q.device) if q.is_cuda else (9, 0)
    return scan_triton.Scan.apply(q, k, v, g, h0, C,
                                  gpu_compile.config(q.dtype, capability, q.shape[3], v.shape[3]))

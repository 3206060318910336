"""
The recurrence at the heart of every model in the paper, computed three ways.

Mamba-2, GLA, Mamba-1 and RWKV-6 all reduce to one diagonal linear recurrence (paper eq. 1; the
table in DESIGN.md says how each maps onto it). Per batch row and head, for t = 0 .. T-1:

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
                  state carried from chunk to chunk. Differentiable by PyTorch's autograd.
    scan          the same algorithm as Triton kernels with a hand-written backward: the fast path.
                  On CUDA; on the CPU only under TRITON_INTERPRET=1 (set before importing this file).
The gradient reaches q, k, v, g and h0, and flows back from the final state h too: state passing
and TBTT (paper sec. 4.4-4.5) hand h to the next batch.
"""
import math
import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl


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
        raise ValueError(f"q, k, v, g and h0 must be on one device, got {sorted(map(str, devices))}")
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
    for t in range(T):
        S = a[:, t, :, :, None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]   # eq. 1a
        o.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))                       # eq. 1b
    return torch.stack(o, dim=1).to(v.dtype), S


# ----------------------------------------------------------------------------------------------
# 2. The chunked algorithm

def _intra_chunk_by_halving(q, k, v, G):
    """Step 3 of scan_chunked for a decay per key channel: o_t = sum_{s<=t in chunk}
    (q_t * exp(G_t - G_s)) . k_s v_s, with q, k (B, H, N, C, K), v (B, H, N, C, V), G (B, H, N, C, K).

    The pairs s < t are split by halving: in each block of 2h tokens the h tokens of the second half
    read the h tokens of the first half through the first half's last position m, with
    exp(G_t - G_s) = exp(G_t - G_m) * exp(G_m - G_s): both factors are <= 1 since s <= m < t, and
    the block is two ordinary matrix products. Every pair s < t is split at exactly one level
    (h = C/2, C/4, ..., 1), and s = t has decay 1. Cost: log2(C) levels of O(C K) exps per chunk,
    against O(C^2 K) for the (C, C, K) tensor of all pairwise decays."""
    B, H, N, C, K = q.shape
    V = v.shape[-1]
    o = (q * k).sum(-1, keepdim=True) * v
    h = C // 2
    while h >= 1:
        blocks = (B, H, N * C // (2 * h), 2, h)   # (..., which half, position in the half)
        qb, kb, vb, Gb = q.view(*blocks, K), k.view(*blocks, K), v.view(*blocks, V), G.view(*blocks, K)
        Gm = Gb[..., 0, -1:, :]                                  # G at the first half's last token
        q2 = (Gb[..., 1, :, :] - Gm).exp_() * qb[..., 1, :, :]   # second half, decayed back to m
        k1 = (Gm - Gb[..., 0, :, :]).exp_() * kb[..., 0, :, :]   # first half, decayed forward to m
        o.view(*blocks, V)[..., 1, :, :] += (q2 @ k1.transpose(-1, -2)) @ vb[..., 0, :, :]
        h //= 2
    return o


def scan_chunked(q, k, v, g, h0=None, chunk_size=64):
    """The recurrence in chunks of C = chunk_size tokens (C a power of two), in five steps.

    Unrolling eq. 1a inside a chunk whose incoming state is S (paper eq. 4a, with G the cumulative
    log decay since the chunk began):
        o_t = sum_{s<=t in chunk} (q_t * exp(G_t - G_s)) . k_s  v_s   +   (q_t * exp(G_t))^T S
    The first term is attention-like and done with matrix products; the second reads the carried
    state. Every exp below has an argument <= 0 (G falls as t grows): nothing overflows, even for
    g = -50, where a naive q * exp(G) times k * exp(-G) split would give inf * 0 = NaN.
    """
    B, T, H, K, V = _check(q, k, v, g, h0)
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two, got {chunk_size}")
    C = min(chunk_size, 1 << (T - 1).bit_length())   # no point padding a short sequence to a full C
    N = -(-T // C)
    acc, out_dtype = _acc_dtype(q), v.dtype
    if g.dim() == 3:
        g = g[..., None]   # one decay per head: a K axis of size 1 broadcasts, K is not materialised

    # 1. Pad T to N*C (padding has k = 0 and g = 0: it adds nothing and decays nothing) and lay
    #    every input out as (B, H, N, C, dim).
    def chunks(x):
        x = F.pad(x, (0, 0, 0, 0, 0, N * C - T)) if N * C > T else x
        return x.view(B, N, C, H, x.shape[-1]).permute(0, 3, 1, 2, 4).to(acc, memory_format=torch.contiguous_format)
    q, k, v, g = chunks(q), chunks(k), chunks(v), chunks(g)

    # 2. Cumulative log decay inside each chunk: G[..., t, :] = g_0 + ... + g_t (chunk-local t).
    G = g.cumsum(dim=3)

    # 3. Inside each chunk, sum_{s<=t} exp(G_t - G_s) (q_t . k_s) v_s. With one decay per head
    #    this is SSD's masked product ((Q K^T) * L) V with L[t, s] = exp(G_t - G_s) for s <= t, and
    #    0 above the diagonal (Dao & Gu, 2024): the exponent is masked to -inf *before* the exp, so
    #    no entry overflows. With a decay per key channel, L would need a K axis: see the halving.
    if g.shape[-1] == 1:
        causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
        L = (G - G.transpose(-1, -2)).masked_fill(~causal, -math.inf).exp()   # (B, H, N, C, C)
        o = ((q @ k.transpose(-1, -2)) * L) @ v
    else:
        o = _intra_chunk_by_halving(q, k, v, G)

    # 4. What each chunk adds to the state (eq. 4a inside the chunk), and its total decay.
    G_last = G[..., -1:, :]                                              # (B, H, N, 1, K|1)
    dS = (k * (G_last - G).exp()).transpose(-1, -2) @ v                  # (B, H, N, K, V)
    a = G_last.exp().transpose(-1, -2)                                   # (B, H, N, K|1, 1)

    # 5. Carry the state across chunks (the only loop: N = T / C steps), and let every token read
    #    the state its chunk started from, decayed to its position (the second term of eq. 4b).
    S = torch.zeros(B, H, K, V, dtype=acc, device=q.device) if h0 is None else h0.to(acc)
    S_in = []
    for n in range(N):
        S_in.append(S)
        S = a[:, :, n] * S + dS[:, :, n]
    o = o + (q * G.exp()) @ torch.stack(S_in, dim=2)

    o = o.permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T]
    return o.to(out_dtype), S


# ----------------------------------------------------------------------------------------------
# 3. The Triton kernels: the chunked algorithm, fast
#
# One program per (batch row, head, block of BV value channels) walks its chunks of BT tokens in
# order, the state S (K x BV) held in registers, exactly like step 5 above. Inside a chunk the
# pairs s < t are split by halving as in step 3, but as masked matrix products over the whole
# chunk (a register tile cannot be cut into halves the way a PyTorch view can): at level h the
# query rows in the second half of each 2h-block are decayed back to the block's midpoint m, the
# key rows in the first half forward to m, and the product is kept only for pairs in one block.
#
# The backward pass is two more walks over the chunks, from the gradients of eq. 1:
#   dq_t = S_t do_t                       (forward in t: the state is recomputed on the way)
#   dS_t = dS_{t+1} * exp(g_{t+1}) + q_t do_t^T,   dS_{T-1} = q_{T-1} do_{T-1}^T + dh
#   dk_t = dS_t v_t,  dv_t = dS_t^T k_t,  dh0 = exp(g_0) * dS_0      (backward in t)
# and dg needs no kernel: G_t = g_0 + ... + g_t enters only as q_t exp(G_t), k_t exp(-G_t) and
# exp(G_{T-1}) in the final state, so dL/dG_t = q_t dq_t - k_t dk_t (+ sum_v h dh at t = T-1),
# and dg is its reverse cumulative sum.

_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"   # read by triton.jit at import, as here


@triton.jit
def _halving_level(G, G_chunk, rows, gs, g_mask, stride_t, h: tl.constexpr):
    """Level h of the halving: decay factors of the query rows (second halves, back to the
    midpoint m: exp(G_t - G_m)), of the key rows (first halves, forward to m: exp(G_m - G_s)),
    0 for rows in the other half, and the mask of pairs that share a 2h-block."""
    second = (rows // h) % 2 == 1
    m = (rows // (2 * h)) * (2 * h) + h - 1
    G_m = tl.load(G_chunk + m[:, None] * stride_t + gs[None, :], mask=g_mask[None, :], other=0.0)
    E_q = tl.exp(tl.where(second[:, None], G - G_m, float("-inf")))
    E_k = tl.exp(tl.where(second[:, None], float("-inf"), G_m - G))
    same = (rows[:, None] // (2 * h)) == (rows[None, :] // (2 * h))
    return E_q, E_k, same


@triton.jit
def _chunk_attention(x, y, G, G_chunk, rows, gs, g_mask, stride_t,
                     LOG2_BT: tl.constexpr, PREC: tl.constexpr):
    """A[t, s] = sum_k x[t, k] y[s, k] exp(G[t, k] - G[s, k]) for s <= t, else 0: (BT, BT)."""
    diag = rows[:, None] == rows[None, :]
    A = tl.where(diag, tl.sum(x * y, 1)[:, None], 0.0)                 # s = t: decay exp(0) = 1
    for level in tl.static_range(LOG2_BT):
        E_q, E_k, same = _halving_level(G, G_chunk, rows, gs, g_mask, stride_t, 1 << (LOG2_BT - 1 - level))
        A += tl.where(same, tl.dot(x * E_q, tl.trans(y * E_k), input_precision=PREC), 0.0)
    return A


@triton.jit
def _program(H, K, V, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, KG: tl.constexpr):
    """This program's (value block, batch row, head), its row/column index ranges, and the offsets
    and mask of its (BK, BV) slice of a (B, H, K, V) state."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    rows, ks, gs = tl.arange(0, BT), tl.arange(0, BK), tl.arange(0, KG)
    vs = i_v * BV + tl.arange(0, BV)
    s_off = (i_bh * K + ks[:, None]) * V + vs[None, :]
    s_mask = (ks < K)[:, None] & (vs < V)[None, :]
    return i_v, i_bh // H, i_bh % H, rows, ks, vs, gs, s_off, s_mask


@triton.jit
def _load_state(ptr, s_off, s_mask, PRESENT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """A (BK, BV) float32 state slice, or zeros when the tensor was not given (h0 or dh is None)."""
    if PRESENT:
        return tl.load(ptr + s_off, mask=s_mask, other=0.0).to(tl.float32)
    return tl.zeros((BK, BV), dtype=tl.float32)


@triton.jit
def _load_chunk(q, k, v, do, G_cum, b, h, c, T, Tp, H, K, V, Kg, rows, ks, vs, gs,
                BT: tl.constexpr, DO: tl.constexpr):
    """One chunk's tiles, in float32: q, k (BT, BK); v, do (BT, BV); the chunk-local cumulative
    log decay G (BT, KG) and its last row G_last (KG,); a pointer to the chunk's rows of G_cum."""
    t = c * BT + rows
    qk_mask = (t < T)[:, None] & (ks < K)[None, :]
    v_mask = (t < T)[:, None] & (vs < V)[None, :]
    qk_off = ((b * T + t[:, None]) * H + h) * K + ks[None, :]
    v_off = ((b * T + t[:, None]) * H + h) * V + vs[None, :]
    qc = tl.load(q + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    kc = tl.load(k + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    vc = tl.load(v + v_off, mask=v_mask, other=0.0).to(tl.float32)
    doc = vc
    if DO:
        doc = tl.load(do + v_off, mask=v_mask, other=0.0).to(tl.float32)
    G_chunk = G_cum + ((b * Tp + c * BT) * H + h) * Kg
    G = tl.load(G_chunk + rows[:, None] * (H * Kg) + gs[None, :], mask=(gs < Kg)[None, :], other=0.0)
    G_last = tl.load(G_chunk + (BT - 1) * (H * Kg) + gs, mask=gs < Kg, other=0.0)
    return qc, kc, vc, doc, G, G_last, G_chunk, qk_off, v_off, qk_mask, v_mask


@triton.jit
def _fwd_kernel(q, k, v, G_cum, h0, o, h_out, T, Tp, H, K, V, Kg, HAS_H0: tl.constexpr,
                BT: tl.constexpr, LOG2_BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                KG: tl.constexpr, PREC: tl.constexpr):
    i_v, b, h, rows, ks, vs, gs, s_off, s_mask = _program(H, K, V, BT, BK, BV, KG)
    S = _load_state(h0, s_off, s_mask, HAS_H0, BK, BV)
    for c in range(0, tl.cdiv(T, BT)):
        qc, kc, vc, _, G, G_last, G_chunk, _, v_off, _, v_mask = _load_chunk(
            q, k, v, v, G_cum, b, h, c, T, Tp, H, K, V, Kg, rows, ks, vs, gs, BT, False)
        A = _chunk_attention(qc, kc, G, G_chunk, rows, gs, gs < Kg, H * Kg, LOG2_BT, PREC)
        oc = tl.dot(A, vc, input_precision=PREC) + tl.dot(qc * tl.exp(G), S, input_precision=PREC)
        tl.store(o + v_off, oc.to(o.dtype.element_ty), mask=v_mask)
        k_end = kc * tl.exp(G_last[None, :] - G)                   # keys decayed to the chunk end
        S = S * tl.exp(G_last)[:, None] + tl.dot(tl.trans(k_end), vc, input_precision=PREC)
    tl.store(h_out + s_off, S, mask=s_mask)


@triton.jit
def _bwd_dq_kernel(q, k, v, G_cum, h0, do, dq, T, Tp, H, K, V, Kg, HAS_H0: tl.constexpr,
                   BT: tl.constexpr, LOG2_BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                   KG: tl.constexpr, PREC: tl.constexpr):
    """dq_t = S_t do_t, over this program's BV value channels (the wrapper sums the blocks)."""
    i_v, b, h, rows, ks, vs, gs, s_off, s_mask = _program(H, K, V, BT, BK, BV, KG)
    S = _load_state(h0, s_off, s_mask, HAS_H0, BK, BV)
    B_T = tl.num_programs(1) // H * T
    for c in range(0, tl.cdiv(T, BT)):
        _, kc, vc, doc, G, G_last, G_chunk, qk_off, _, qk_mask, _ = _load_chunk(
            q, k, v, do, G_cum, b, h, c, T, Tp, H, K, V, Kg, rows, ks, vs, gs, BT, True)
        W = tl.dot(doc, tl.trans(vc), input_precision=PREC)         # W[t, s] = do_t . v_s
        dqc = tl.dot(doc, tl.trans(S), input_precision=PREC) * tl.exp(G)   # from the chunk's S_in
        diag = rows[:, None] == rows[None, :]
        dqc += tl.sum(tl.where(diag, W, 0.0), 1)[:, None] * kc             # s = t
        for level in tl.static_range(LOG2_BT):
            E_q, E_k, same = _halving_level(G, G_chunk, rows, gs, gs < Kg, H * Kg, 1 << (LOG2_BT - 1 - level))
            dqc += E_q * tl.dot(tl.where(same, W, 0.0), kc * E_k, input_precision=PREC)
        tl.store(dq + i_v * B_T * H * K + qk_off, dqc, mask=qk_mask)
        k_end = kc * tl.exp(G_last[None, :] - G)
        S = S * tl.exp(G_last)[:, None] + tl.dot(tl.trans(k_end), vc, input_precision=PREC)


@triton.jit
def _bwd_dkdv_kernel(q, k, v, G_cum, do, dh, dk, dv, dh0, T, Tp, H, K, V, Kg,
                     HAS_DH: tl.constexpr, BT: tl.constexpr, LOG2_BT: tl.constexpr,
                     BK: tl.constexpr, BV: tl.constexpr, KG: tl.constexpr, PREC: tl.constexpr):
    """dk (over this program's BV channels; the wrapper sums the blocks), dv and dh0, walking the
    chunks from last to first with D = dL/dS at the end of the chunk."""
    i_v, b, h, rows, ks, vs, gs, s_off, s_mask = _program(H, K, V, BT, BK, BV, KG)
    D = _load_state(dh, s_off, s_mask, HAS_DH, BK, BV)
    B_T = tl.num_programs(1) // H * T
    n_chunks = tl.cdiv(T, BT)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        qc, kc, vc, doc, G, G_last, G_chunk, qk_off, v_off, qk_mask, v_mask = _load_chunk(
            q, k, v, do, G_cum, b, h, c, T, Tp, H, K, V, Kg, rows, ks, vs, gs, BT, True)
        A = _chunk_attention(qc, kc, G, G_chunk, rows, gs, gs < Kg, H * Kg, LOG2_BT, PREC)
        W = tl.dot(doc, tl.trans(vc), input_precision=PREC)         # W[t, s] = do_t . v_s
        decay_end = tl.exp(G_last[None, :] - G)                     # exp(G_last - G_s)
        dvc = tl.dot(tl.trans(A), doc, input_precision=PREC) + tl.dot(kc * decay_end, D, input_precision=PREC)
        dkc = tl.dot(vc, tl.trans(D), input_precision=PREC) * decay_end
        diag = rows[:, None] == rows[None, :]
        dkc += tl.sum(tl.where(diag, W, 0.0), 0)[:, None] * qc             # t = s
        for level in tl.static_range(LOG2_BT):
            E_q, E_k, same = _halving_level(G, G_chunk, rows, gs, gs < Kg, H * Kg, 1 << (LOG2_BT - 1 - level))
            dkc += E_k * tl.dot(tl.trans(tl.where(same, W, 0.0)), qc * E_q, input_precision=PREC)
        tl.store(dk + i_v * B_T * H * K + qk_off, dkc, mask=qk_mask)
        tl.store(dv + v_off, dvc.to(dv.dtype.element_ty), mask=v_mask)
        D = D * tl.exp(G_last)[:, None] + tl.dot(tl.trans(qc * tl.exp(G)), doc, input_precision=PREC)
    tl.store(dh0 + s_off, D, mask=s_mask)


def _chunk_cumsum(g, BT):
    """G_cum (B, Tp, H, K|1), float32: g's cumulative sum inside each chunk of BT tokens, T padded
    with g = 0 to Tp, a multiple of BT (padding decays nothing, so G_last is the chunk's decay)."""
    B, T, H = g.shape[:3]
    g = g.float() if g.dim() == 4 else g.float()[..., None]
    Tp = -(-T // BT) * BT
    g = F.pad(g, (0, 0, 0, 0, 0, Tp - T))
    return g.view(B, Tp // BT, BT, H, -1).cumsum(2).view(B, Tp, H, -1).contiguous()


class _Scan(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, k, v, g, h0, chunk_size):
        B, T, H, K = q.shape
        V = v.shape[-1]
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        h0 = None if h0 is None else h0.contiguous()
        G_cum = _chunk_cumsum(g, chunk_size)
        o = torch.empty_like(v)
        h = torch.empty(B, H, K, V, dtype=torch.float32, device=q.device)
        meta = _meta(q, K, V, G_cum.shape[-1], chunk_size)
        grid = (triton.cdiv(V, meta["BV"]), B * H)
        _fwd_kernel[grid](q, k, v, G_cum, h if h0 is None else h0, o, h, T, G_cum.shape[1], H, K, V,
                          G_cum.shape[-1], HAS_H0=h0 is not None, **meta)
        ctx.save_for_backward(q, k, v, g, h0, h)
        ctx.chunk_size = chunk_size
        return o, h

    @staticmethod
    def backward(ctx, do, dh):
        q, k, v, g, h0, h = ctx.saved_tensors
        B, T, H, K = q.shape
        V = v.shape[-1]
        do = torch.zeros_like(v) if do is None else do.contiguous()
        G_cum = _chunk_cumsum(g, ctx.chunk_size)
        meta = _meta(q, K, V, G_cum.shape[-1], ctx.chunk_size)
        n_v = triton.cdiv(V, meta["BV"])
        dq = torch.empty(n_v, B, T, H, K, dtype=torch.float32, device=q.device)   # one per V block
        dk = torch.empty_like(dq)
        dv = torch.empty_like(v)
        dh0 = torch.empty(B, H, K, V, dtype=torch.float32, device=q.device)
        args = (T, G_cum.shape[1], H, K, V, G_cum.shape[-1])
        _bwd_dq_kernel[(n_v, B * H)](q, k, v, G_cum, h if h0 is None else h0, do, dq, *args,
                                     HAS_H0=h0 is not None, **meta)
        _bwd_dkdv_kernel[(n_v, B * H)](q, k, v, G_cum, do, dh0 if dh is None else dh.contiguous(),
                                       dk, dv, dh0, *args, HAS_DH=dh is not None, **meta)
        dq, dk = dq.sum(0), dk.sum(0)
        dG = q.float() * dq - k.float() * dk                       # dL/dG_t, (B, T, H, K)
        if dh is not None:
            dG[:, -1] += (h * dh.float()).sum(-1)                   # G_{T-1} scales the final state
        if g.dim() == 3:
            dG = dG.sum(-1)
        dg = dG.flip(1).cumsum(1).flip(1)                           # G_t = g_0 + ... + g_t
        return (dq.to(q.dtype), dk.to(k.dtype), dv, dg.to(g.dtype),
                None if h0 is None else dh0.to(h0.dtype), None)


def _meta(q, K, V, Kg, BT):
    """Tile sizes: K whole (at least 16, the smallest tl.dot), V in blocks of at most 64."""
    BK = max(16, triton.next_power_of_2(K))
    return dict(BT=BT, LOG2_BT=BT.bit_length() - 1, BK=BK, BV=min(64, max(16, triton.next_power_of_2(V))),
                KG=1 if Kg == 1 else BK, PREC="ieee" if q.dtype == torch.float32 else "tf32")


def scan(q, k, v, g, h0=None, chunk_size=64):
    """The chunked scan as Triton kernels, with a hand-written backward. Same contract as
    scan_chunked; float32, bfloat16 or float16 inputs (the state and accumulation in float32);
    chunk_size a power of two from 16 to 128."""
    _check(q, k, v, g, h0)
    if q.dtype == torch.float64:
        raise ValueError("scan takes float32, bfloat16 or float16; use scan_chunked for float64")
    if chunk_size not in (16, 32, 64, 128):
        raise ValueError(f"chunk_size must be 16, 32, 64 or 128 for the Triton scan, got {chunk_size}")
    if q.device.type != "cuda" and not _INTERPRETED:
        raise RuntimeError("the Triton scan runs on CUDA tensors, or on the CPU when TRITON_INTERPRET=1 "
                           "is set before scan_kernel is imported; on the CPU use scan_chunked")
    return _Scan.apply(q, k, v, g, h0, chunk_size)

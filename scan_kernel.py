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
        x = F.pad(x.to(acc), (0, 0, 0, 0, 0, N * C - T))
        return x.view(B, N, C, H, x.shape[-1]).permute(0, 3, 1, 2, 4).contiguous()
    q, k, v, g = chunks(q), chunks(k), chunks(v), chunks(g)

    # 2. Cumulative log decay inside each chunk: G[..., t, :] = g_0 + ... + g_t (chunk-local t).
    G = g.cumsum(dim=3)

    # 3. Inside each chunk, sum_{s<=t} exp(G_t - G_s) (q_t . k_s) v_s. With one decay per head this
    #    is SSD's masked product ((Q K^T) * L) V, L[t, s] = exp(G_t - G_s) for s <= t (Dao & Gu,
    #    2024); with a decay per key channel L would need a K axis, (C, C, K). Instead, split the
    #    pairs by halving: in each block of 2h tokens, the h tokens of the second half read the h
    #    tokens of the first half through the first half's last position m, with
    #    exp(G_t - G_s) = exp(G_t - G_m) * exp(G_m - G_s), both factors <= 1 since s <= m < t.
    #    Every pair s < t is split at exactly one level (h = C/2, C/4, ..., 1); s = t has decay 1.
    o = (q * k).sum(-1, keepdim=True) * v
    h = C // 2
    while h >= 1:
        blocks = (B, H, N * C // (2 * h), 2, h)   # (..., which half, position in the half)
        qb, kb, vb, Gb = q.view(*blocks, K), k.view(*blocks, K), v.view(*blocks, V), G.view(*blocks, -1)
        Gm = Gb[..., 0, -1:, :]                                  # G at the first half's last token
        q2 = qb[..., 1, :, :] * (Gb[..., 1, :, :] - Gm).exp()   # second half, decayed back to m
        k1 = kb[..., 0, :, :] * (Gm - Gb[..., 0, :, :]).exp()   # first half, decayed forward to m
        o.view(*blocks, V)[..., 1, :, :] += (q2 @ k1.transpose(-1, -2)) @ vb[..., 0, :, :]
        h //= 2

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

"""
The Triton kernels behind `scan_kernel.scan`: scan_chunked's numbered steps as GPU kernels, with a
hand-written backward. (Their own file because kernels, docstrings and the backward are as long as
the rest of scan_kernel.py: together the two would be twice what a file should be.)

Read each kernel next to the step of scan_chunked with the same number. Per (batch row, head):
    2.   G    the cumulative log decay inside each chunk of C tokens (PyTorch: _chunk_cumsum)
    3.   A    A[t, s] = sum_k q_tk k_sk exp(G_tk - G_sk) for s <= t in one chunk, (C, C):
              _scores_kernel for a decay per key channel (with qd = q * exp(G),
              kd = k * exp(G_last - G), what steps 4-6 multiply); for one decay per head, inside
              _output_kernel
    4-5. S_n  U_n = (k * exp(G_last - G))^T v, what chunk n adds to the state, and the carry
              S_{n+1} = exp(G_last) * S_n + U_n (the only loop)                       _states_kernel
    6.   o    A v + (q * exp(G)) S_n                                                  _output_kernel
Steps 3 and 6 run one program per chunk (and per tile of V), steps 4-5 one per state tile,
walking the chunks. What goes through memory between them: the states S_n, one (K, V) tile per
chunk, and for a decay per key channel A, qd and kd, all in the input dtype (bfloat16 or float16;
float32 for float32 inputs). (fla's chunk_gla splits its work the same way: the chunk states by
one loop per state tile, then the outputs in parallel over chunks.) Tiles are float32 in registers;
for 16-bit inputs the matrix products take 16-bit operands, as the peers' kernels do (_mm).

The backward runs the same kernels the other way round: with dA = do v^T (masked to s <= t) and
D_n = dL/dS at the end of chunk n (a gradient of the state, unrelated to Mamba's skip parameter D;
U_n above is an increment of the state, not a gradient),
    4'-5'. W_n = (q * exp(G))^T do, what chunk n's outputs add to dL/d(its incoming state), carried
           back: D_{n-1} = exp(G_last) * D_n + W_n; D before chunk 0 is dh0          _states_kernel
    6'.    dv = A^T do + (k * exp(G_last - G)) D_n                                    _output_kernel
    3'.    dA, then dq = (do S_n^T) * exp(G) + dA-part,  dk = (v D_n^T) * exp(G_last - G) + dA-part,
           and dG = q dq - k dk, whose reverse cumulative sum is dg (see Scan.backward)
The forward's S_n are kept for the backward.

Layouts (contiguous): q, k (B, T, H, K), v, o (B, T, H, V), A (B*H, N, C, C) and the states S_n,
D_n (B*H, N, K, V) in the input dtype; G (B, N*C, H, K|1) float32. Program axes:
0 = tile of K and/or V, 1 = the chunk n, 2 = batch row * H + head.
"""
import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

BC = 16   # sub-chunk length for a decay per key channel (step 3); 16 is the smallest tl.dot


@triton.jit
def _load_rows(ptr, b, h, t, d, T, H, D):
    """x[b, t, h, d] of a (B, T, H, D) tensor for token rows t (R,) and channels d (W,), as float32
    (R, W); 0 outside t < T, d < D (the padding of step 1)."""
    mask = (t < T)[:, None] & (d < D)[None, :]
    return tl.load(ptr + ((b * T + t[:, None]) * H + h) * D + d[None, :], mask=mask,
                   other=0.0).to(tl.float32)


@triton.jit
def _load_G(G, b, h, t, d, Tp, H, Kg):
    """G[b, t, h, d % Kg] as float32 (R, W): Kg = 1 (one decay per head) reads channel 0
    for every d."""
    return tl.load(G + ((b * Tp + t[:, None]) * H + h) * Kg + d[None, :] % Kg,
                   mask=(t < Tp)[:, None], other=0.0)


# Under TRITON_INTERPRET=1 (the CPU), Triton 3.9's tl.dot gets bfloat16 operands wrong: _mm rounds
# them to 16 bits and multiplies in float32 there, which gives the numbers the tensor cores give (a
# product of two 16-bit values is exact in float32; both accumulate in float32).
_INTERPRETED = tl.constexpr(os.environ.get("TRITON_INTERPRET") == "1")


@triton.jit
def _mm(a, b, ty: tl.constexpr, PREC: tl.constexpr):
    """a @ b, accumulated in float32. For 16-bit inputs (ty) the operands are rounded back to 16
    bits, as the peers do: twice the tensor-core rate of TF32 and half the registers, at the inputs'
    own precision. For float32 inputs, and wherever PREC = "ieee" (a T4: 16-bit products there spill
    registers), float32 products at PREC."""
    if ty == tl.float32 or PREC == "ieee":
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision=PREC)
    elif _INTERPRETED:
        return tl.dot(a.to(ty).to(tl.float32), b.to(ty).to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a.to(ty), b.to(ty))


@triton.jit
def _store_rows(ptr, x, b, h, t, d, T, H, D):
    """Store x (R, W) into rows t, channels d of a (B, T, H, D) tensor, cast to its dtype."""
    mask = (t < T)[:, None] & (d < D)[None, :]
    tl.store(ptr + ((b * T + t[:, None]) * H + h) * D + d[None, :], x.to(ptr.dtype.element_ty),
             mask=mask)


@triton.jit
def _state_offsets(bh, n, N, dk, dv, K, V):
    """Offsets and mask of the (BK, BV) tile at rows dk, columns dv of chunk n's (K, V) state."""
    return ((bh * N + n) * K + dk[:, None]) * V + dv[None, :], (dk < K)[:, None] & (dv < V)[None, :]


@triton.jit
def _row_of(x, j3, j):
    """Row j of every sub-chunk of x (NB, SUB, W): (NB, 1, W), taken from registers."""
    return tl.sum(tl.where(j3 == j, x, 0.0), 1, keep_dims=True)


@triton.jit
def _scores_kernel(q, k, G, A, qd, kd, T, H, K, C: tl.constexpr, SUB: tl.constexpr,
                   BK: tl.constexpr, PER_CHANNEL: tl.constexpr, PREC: tl.constexpr):
    """Step 3: one chunk's scores A (C, C), program (0, n, b*H + h), reading q, k and G once, over K
    in BK steps. One decay per head: SSD's single masked product (q k^T) * L,
    L[t, s] = exp(G_t - G_s).

    A decay per key channel: the chunk as NB = C / SUB sub-chunks of SUB = 16 rows, a leading axis
    of every tile, (NB, SUB, BK). Keys before sub-chunk b are decayed forward to its first row r_b
    and its queries back to r_b, so both factors are <= 1, and all NB blocks are one batched tl.dot;
    the (16, 16) diagonal blocks are the plain masked product (scan_kernel._scores_plain), one key
    at a time. (scan_chunked halves the chunk instead: a register tile cannot be cut the way a view
    can.) Per key channel it also writes, in the input dtype, the decayed q and k that steps 4-6
    multiply: qd = q * exp(G) and kd = k * exp(G_last - G), (B, T, H, K), so that they read neither
    q, k nor the float32 G (the products round their operands to the input dtype anyway, _mm)."""
    n, bh, N = tl.program_id(1), tl.program_id(2), tl.num_programs(1)
    b, h = bh // H, bh % H
    NB: tl.constexpr = C // SUB
    rows = tl.arange(0, C)                                              # chunk-local t (and s)
    t = n * C + rows
    blk, j3 = (tl.arange(0, NB)[:, None, None],                         # sub-chunk, row in it
               tl.arange(0, SUB)[None, :, None])
    s3 = rows[None, :, None]                                            # key s, (1, C, 1)
    acc = tl.zeros((NB, SUB, C) if PER_CHANNEL else (C, C), dtype=tl.float32)
    for k0 in range(0, K, BK):
        d = k0 + tl.arange(0, BK)
        q_t, k_t = _load_rows(q, b, h, t, d, T, H, K), _load_rows(k, b, h, t, d, T, H, K)
        if PER_CHANNEL:
            G_t = _load_G(G, b, h, t, d, N * C, H, K)
            G_last = tl.sum(tl.where((rows == C - 1)[:, None], G_t, 0.0), 0)
            _store_rows(qd, q_t * tl.exp(G_t), b, h, t, d, T, H, K)
            _store_rows(kd, k_t * tl.exp(G_last[None, :] - G_t), b, h, t, d, T, H, K)
            q3, k3 = tl.reshape(q_t, (NB, SUB, BK)), tl.reshape(k_t, (NB, SUB, BK))
            G3 = tl.reshape(G_t, (NB, SUB, BK))
            G_r = _row_of(G3, j3, 0)                                    # G at each r_b, (NB, 1, BK)
            q_r = q3 * tl.exp(G3 - G_r)                                 # t >= r_b
            k_r = k_t[None, :, :] * tl.exp(tl.where(s3 < blk * SUB, G_r - G_t[None, :, :],
                                                    float("-inf")))
            acc += _mm(q_r, tl.permute(k_r, (0, 2, 1)), q.dtype.element_ty, PREC)   # keys s < r_b
            for j in range(0, SUB):                                     # keys s = r_b + j
                decay = tl.exp(tl.where(j3 >= j, G3 - _row_of(G3, j3, j), float("-inf")))
                # A[t, r_b + j], (NB, SUB, 1)
                a_j = tl.sum(q3 * _row_of(k3, j3, j) * decay, 2, keep_dims=True)
                acc += tl.where(tl.reshape(rows, (1, 1, C)) == blk * SUB + j, a_j, 0.0)
        else:
            acc += _mm(q_t, tl.trans(k_t), q.dtype.element_ty, PREC)
    if PER_CHANNEL:
        A_n = tl.reshape(acc, (C, C))
    else:   # one decay per head: Kg = 1
        G_t = tl.load(G + (b * N * C + t) * H + h)
        A_n = acc * tl.exp(tl.where(rows[:, None] >= rows[None, :], G_t[:, None] - G_t[None, :],
                                    float("-inf")))
    tl.store(A + ((bh * N + n) * C + rows[:, None]) * C + rows[None, :], A_n.to(A.dtype.element_ty))


@triton.jit
def _states_kernel(x, y, G, S, init, final, T, H, K, V, Kg, N, C: tl.constexpr, BK: tl.constexpr,
                   BV: tl.constexpr, HAS_INIT: tl.constexpr, REVERSE: tl.constexpr,
                   PER_CHANNEL: tl.constexpr, PREC: tl.constexpr):
    """Steps 4 and 5: S_{n+1} = exp(G_last,n) * S_n + U_n over the chunks in order,
    S_0 = init (h0 or 0), with U_n = (k * exp(G_last - G))^T v what chunk n adds to the state by its
    end (x = k, y = v). Steps 4' and 5' (REVERSE): D_{n-1} = exp(G_last,n) * D_n + W_n from the
    last chunk back, D = init (dh or 0), with W_n = (q * exp(G))^T do (x = q, y = do). With a decay
    per key channel x comes decayed already (kd or qd, written by _scores_kernel), and of G only
    each chunk's G_last is read.

    Program (tile of (K, V), 0, b*H + h): the only sequential loop (N = T / C steps). Each step
    reads chunk n's x (C, BK), y (C, BV) and G, and writes the state entering chunk n (S_n) or
    leaving it (D_n) into S (B*H, N, K, V), in S's dtype (the input dtype for 16-bit inputs: half
    the bytes that step 6 reads; the running state itself stays float32); writes the last state to
    final (h or dh0). (scan_chunked computes all U_n first, then carries: here each U_n is used
    where it is made, so no (K, V) tile per chunk goes through memory twice.)"""
    i, bh = tl.program_id(0), tl.program_id(2)
    b, h, n_v = bh // H, bh % H, tl.cdiv(V, BV)
    dk, dv = (i // n_v) * BK + tl.arange(0, BK), (i % n_v) * BV + tl.arange(0, BV)
    off, mask = _state_offsets(bh, 0, 1, dk, dv, K, V)
    S_n = tl.zeros((BK, BV), dtype=tl.float32)
    if HAS_INIT:
        S_n = tl.load(init + off, mask=mask, other=0.0).to(tl.float32)
    for step in range(0, N):
        n = N - 1 - step if REVERSE else step
        t = n * C + tl.arange(0, C)
        off_n, _ = _state_offsets(bh, n, N, dk, dv, K, V)
        tl.store(S + off_n, S_n.to(S.dtype.element_ty), mask=mask)
        x_t = _load_rows(x, b, h, t, dk, T, H, K)
        # (1, BK)
        G_last = _load_G(G, b, h, n * C + C - 1 + tl.zeros((1,), tl.int32), dk, N * C, H, Kg)
        if not PER_CHANNEL:
            # k decays to the chunk's end, exp(G_last - G); q from its start, exp(G)
            G_t = _load_G(G, b, h, t, dk, N * C, H, Kg)
            x_t *= tl.exp(G_t if REVERSE else G_last - G_t)
        S_n = tl.exp(tl.trans(G_last)) * S_n + _mm(tl.trans(x_t),
                                                   _load_rows(y, b, h, t, dv, T, H, V),
                                                   x.dtype.element_ty, PREC)
    tl.store(final + off, S_n, mask=mask)


@triton.jit
def _output_kernel(A, q, k, y, G, S, out, T, H, K, V, C: tl.constexpr, BK: tl.constexpr,
                   BV: tl.constexpr, BACKWARD: tl.constexpr, PER_CHANNEL: tl.constexpr,
                   PREC: tl.constexpr):
    """Step 6: o = A v + (q * exp(G)) S_n, every token reading the state its chunk started from.
    Step 6' (BACKWARD): dv = A^T do + (k * exp(G_last - G)) D_n.

    Program (tile of V, n, b*H + h). Over K in BK steps reads q or k (C, BK) and the (BK, BV) tile
    of S_n or D_n; then y = v or do (C, BV); writes o or dv (C, BV). One decay per head: the scores
    are made here, SSD's masked product (q k^T) * L from the q and k tiles of the same loop, never
    stored, and G is read per row. A decay per key channel: q and k are qd and kd (_scores_kernel
    decayed them), and the scores A are read from its output, 16 columns at a time."""
    i, n, bh, N = tl.program_id(0), tl.program_id(1), tl.program_id(2), tl.num_programs(1)
    b, h = bh // H, bh % H
    rows = tl.arange(0, C)
    t, dv = n * C + rows, i * BV + tl.arange(0, BV)
    acc = tl.zeros((C, BV), dtype=tl.float32)
    scores = tl.zeros((C, C), dtype=tl.float32)
    for k0 in range(0, K, BK):
        dk = k0 + tl.arange(0, BK)
        q_t, k_t = _load_rows(q, b, h, t, dk, T, H, K), _load_rows(k, b, h, t, dk, T, H, K)
        # per key channel the other one is unused: the compiler drops its load
        x_t = k_t if BACKWARD else q_t
        if not PER_CHANNEL:
            if BACKWARD:   # dv needs A^T = k q^T, made so (no tl.trans of the (C, C) tile)
                scores += _mm(k_t, tl.trans(q_t), q.dtype.element_ty, PREC)
            else:
                scores += _mm(q_t, tl.trans(k_t), q.dtype.element_ty, PREC)
        off, mask = _state_offsets(bh, n, N, dk, dv, K, V)
        acc += _mm(x_t, tl.load(S + off, mask=mask, other=0.0).to(tl.float32),
                   q.dtype.element_ty, PREC)
    if PER_CHANNEL:
        for s0 in tl.static_range(0, C, 16):
            s = s0 + tl.arange(0, 16)
            if BACKWARD:   # A^T[t, s] = A[s, t]
                A_s = tl.load(A + ((bh * N + n) * C + s[None, :]) * C + rows[:, None])
            else:
                A_s = tl.load(A + ((bh * N + n) * C + rows[:, None]) * C + s[None, :])
            acc += _mm(A_s, _load_rows(y, b, h, n * C + s, dv, T, H, V), q.dtype.element_ty, PREC)
    else:   # one decay per head: the state term's decay is one number per row, applied once here
        G_t = tl.load(G + (b * N * C + t) * H + h)
        if BACKWARD:
            # rows decay to the chunk's end; A^T[t, s] = A[s, t] has s >= t, decay exp(G_s - G_t)
            acc *= tl.exp(tl.load(G + (b * N * C + n * C + C - 1) * H + h) - G_t)[:, None]
            scores *= tl.exp(tl.where(rows[:, None] <= rows[None, :], G_t[None, :] - G_t[:, None],
                                      float("-inf")))
        else:
            acc *= tl.exp(G_t)[:, None]
            scores *= tl.exp(tl.where(rows[:, None] >= rows[None, :], G_t[:, None] - G_t[None, :],
                                      float("-inf")))
        acc += _mm(scores, _load_rows(y, b, h, t, dv, T, H, V), q.dtype.element_ty, PREC)
    _store_rows(out, acc, b, h, t, dv, T, H, V)


@triton.jit
def _dqk_kernel(q, k, v, do, G, S, D, dA, dq, dk, dG, T, H, K, V, C: tl.constexpr, BK: tl.constexpr,
                BV: tl.constexpr, PER_CHANNEL: tl.constexpr, PREC: tl.constexpr):
    """The states' share of dq and dk; for one decay per head also the share of dA (step 3').
    Program (tile of K, n, b*H + h).

    Over V in BV steps reads do, v (C, BV) and the (BK, BV) tiles of S_n and D_n:
    dq = (do S_n^T) * exp(G), dk = (v D_n^T) * exp(G_last - G). With one decay per head it then
    reads dA * L (C, C) and q, k (C, BK), adds (dA * L) k and (dA * L)^T q (SSD's masked
    product, transposed), and writes dq, dk in the input dtype and this K tile's share of
    dG = sum_k (q dq - k dk) to dG (B, T, H, K / BK). With a decay per key channel it writes dq, dk
    (B, T, H, K) float32, which _dqk_intra_kernel completes."""
    i, n, bh, N = tl.program_id(0), tl.program_id(1), tl.program_id(2), tl.num_programs(1)
    b, h, Kg = bh // H, bh % H, K if PER_CHANNEL else 1
    rows = tl.arange(0, C)
    t, d = n * C + rows, i * BK + tl.arange(0, BK)
    dq_n = tl.zeros((C, BK), dtype=tl.float32)
    dk_n = tl.zeros((C, BK), dtype=tl.float32)
    for v0 in range(0, V, BV):
        dv = v0 + tl.arange(0, BV)
        off, mask = _state_offsets(bh, n, N, d, dv, K, V)
        S_n = tl.load(S + off, mask=mask, other=0.0).to(tl.float32)       # 16-bit for 16-bit inputs
        D_n = tl.load(D + off, mask=mask, other=0.0).to(tl.float32)
        dq_n += _mm(_load_rows(do, b, h, t, dv, T, H, V), tl.trans(S_n), q.dtype.element_ty, PREC)
        dk_n += _mm(_load_rows(v, b, h, t, dv, T, H, V), tl.trans(D_n), q.dtype.element_ty, PREC)
    G_t = _load_G(G, b, h, t, d, N * C, H, Kg)
    G_last = _load_G(G, b, h, n * C + C - 1 + tl.zeros((1,), tl.int32), d, N * C, H, Kg)
    dq_n *= tl.exp(G_t)
    dk_n *= tl.exp(G_last - G_t)
    if not PER_CHANNEL:
        dA_n = dA + (bh * N + n) * C * C
        for s0 in tl.static_range(0, C, 16):      # 16 columns at a time: a (C, C) tile would spill
            s = s0 + tl.arange(0, 16)
            # (dA * L)[t, s], s in the block
            dAL_ts = tl.load(dA_n + rows[:, None] * C + s[None, :])
            # (dA * L)[t, s]^T, t in the block
            dAL_st = tl.load(dA_n + s[None, :] * C + rows[:, None])
            dq_n += _mm(dAL_ts, _load_rows(k, b, h, n * C + s, d, T, H, K),
                        q.dtype.element_ty, PREC)
            dk_n += _mm(dAL_st, _load_rows(q, b, h, n * C + s, d, T, H, K),
                        q.dtype.element_ty, PREC)
        # again, for dG
        q_t, k_t = _load_rows(q, b, h, t, d, T, H, K), _load_rows(k, b, h, t, d, T, H, K)
        tl.store(dG + ((b * T + t) * H + h) * tl.num_programs(0) + i,
                 tl.sum(q_t * dq_n - k_t * dk_n, 1), mask=t < T)
    _store_rows(dq, dq_n, b, h, t, d, T, H, K)
    _store_rows(dk, dk_n, b, h, t, d, T, H, K)


@triton.jit
def _dqk_intra_kernel(q, k, G, dA, dq_states, dk_states, dq, dk, dG, T, H, K, C: tl.constexpr,
                      SUB: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr):
    """Step 3' for a decay per key channel: dA's share of dq and dk,
    dq_t += sum_{s<=t} dA[t, s] k_s exp(G_t - G_s),  dk_s += sum_{t>=s} dA[t, s] q_t exp(G_t - G_s).

    Program (tile of K, n, b*H + h). Reads q, k, G (C, BK) once, dA (C, C) as rows and as columns,
    and _dqk_kernel's float32 dq_states, dk_states; writes dq, dk in the input dtype and
    dG = q dq - k dk (B, T, H, K) float32. The sub-chunks as in _scores_kernel, (NB, SUB, BK): the
    pairs across sub-chunks are one batched tl.dot each, with factors <= 1 (through each sub-chunk's
    first row r_b for dq, its last row e_b for dk); pairs inside a sub-chunk go one at a time."""
    i, n, bh, N = tl.program_id(0), tl.program_id(1), tl.program_id(2), tl.num_programs(1)
    b, h = bh // H, bh % H
    NB: tl.constexpr = C // SUB
    rows = tl.arange(0, C)
    t, d = n * C + rows, i * BK + tl.arange(0, BK)
    blk, j3 = (tl.arange(0, NB)[:, None, None],                         # sub-chunk, row in it
               tl.arange(0, SUB)[None, :, None])
    s3 = rows[None, :, None]                                            # the other token, (1, C, 1)
    dA_n = dA + (bh * N + n) * C * C
    q_t, k_t, G_t = (_load_rows(q, b, h, t, d, T, H, K), _load_rows(k, b, h, t, d, T, H, K),
                     _load_G(G, b, h, t, d, N * C, H, K))
    q3, k3, G3 = (tl.reshape(q_t, (NB, SUB, BK)), tl.reshape(k_t, (NB, SUB, BK)),
                  tl.reshape(G_t, (NB, SUB, BK)))
    G_r, G_e = _row_of(G3, j3, 0), _row_of(G3, j3, SUB - 1)
    # keys s before sub-chunk b, decayed forward to r_b:
    # dq = exp(G_t - G_r) * dA[t, s] (k_s exp(G_r - G_s))
    k_r = k_t[None, :, :] * tl.exp(tl.where(s3 < blk * SUB, G_r - G_t[None, :, :],
                                            float("-inf")))             # (NB, C, BK)
    dA_rows = tl.reshape(tl.load(dA_n + rows[:, None] * C + rows[None, :]),
                         (NB, SUB, C))                                  # dA[t, s]
    dq3 = tl.exp(G3 - G_r) * _mm(dA_rows, k_r, q.dtype.element_ty, PREC)
    # queries t after sub-chunk b, decayed back to e_b:
    # dk = exp(G_e - G_s) * dA[t, s] (q_t exp(G_t - G_e))
    q_e = q_t[None, :, :] * tl.exp(tl.where(s3 > blk * SUB + SUB - 1, G_t[None, :, :] - G_e,
                                            float("-inf")))
    dA_cols = tl.reshape(tl.load(dA_n + rows[None, :] * C + rows[:, None]),
                         (NB, SUB, C))                                  # dA[t, s]^T
    dk3 = tl.exp(G_e - G3) * _mm(dA_cols, q_e, q.dtype.element_ty, PREC)
    # pairs inside the sub-chunk, through row r_b + j
    for j in range(0, SUB):
        r_j = blk * SUB + j                                      # (NB, 1, 1)
        G_j = _row_of(G3, j3, j)
        # dA[t, r_j], (NB, SUB, 1)
        dA_col = tl.load(dA_n + (blk * SUB + j3) * C + r_j).to(tl.float32)
        # dA[r_j, s]
        dA_row = tl.load(dA_n + r_j * C + blk * SUB + j3).to(tl.float32)
        dq3 += dA_col * _row_of(k3, j3, j) * tl.exp(tl.where(j3 >= j, G3 - G_j, float("-inf")))
        dk3 += dA_row * _row_of(q3, j3, j) * tl.exp(tl.where(j3 <= j, G_j - G3, float("-inf")))
    dq_t = tl.reshape(dq3, (C, BK)) + _load_rows(dq_states, b, h, t, d, T, H, K)
    dk_t = tl.reshape(dk3, (C, BK)) + _load_rows(dk_states, b, h, t, d, T, H, K)
    _store_rows(dq, dq_t, b, h, t, d, T, H, K)
    _store_rows(dk, dk_t, b, h, t, d, T, H, K)
    _store_rows(dG, q_t * dq_t - k_t * dk_t, b, h, t, d, T, H, K)


@triton.jit
def _dg_kernel(dG, dg, T, H, S_IN, K_OUT, C: tl.constexpr, BK: tl.constexpr, SHARES: tl.constexpr):
    """dg_t = dG_t + dG_{t+1} + ... + dG_{T-1}: dG's reverse cumulative sum over the whole sequence.
    Program (tile of dg's channels, 0, b*H + h): walks the sequence from its end, C rows at a time,
    carrying the sum of the rows after them. Reads dG (B, T, H, S_IN) float32 once, writes dg
    (B, T, H, K_OUT) in g's dtype. One decay per head (SHARES > 0): dG holds S_IN <= SHARES shares
    per token (one per K tile of _dqk_kernel), summed here into dg's one channel
    (column 0 of BK)."""
    i, bh = tl.program_id(0), tl.program_id(2)
    b, h = bh // H, bh % H
    d = i * BK + tl.arange(0, BK)
    carry = tl.zeros((BK,), dtype=tl.float32)
    for step in range(0, tl.cdiv(T, C)):
        t = (tl.cdiv(T, C) - 1 - step) * C + tl.arange(0, C)
        if SHARES > 0:
            shares = _load_rows(dG, b, h, t, tl.arange(0, SHARES), T, H, S_IN)  # (C, SHARES)
            x = tl.sum(shares, 1)[:, None] + tl.zeros((C, BK), dtype=tl.float32)
        else:
            x = _load_rows(dG, b, h, t, d, T, H, S_IN)                          # (C, BK), 0 past T
        _store_rows(dg, tl.cumsum(x, 0, reverse=True) + carry[None, :], b, h, t, d, T, H, K_OUT)
        carry += tl.sum(x, 0)


# ----------------------------------------------------------------------------------------------
# Launching the kernels

def _chunk_cumsum(g, C):
    """Steps 1-2: G (B, N*C, H, K|1), float32, g's cumulative sum inside each chunk of C tokens, T
    padded with g = 0 to N*C (padding decays nothing, so G's last row is the chunk's total decay).
    One pass: g read in its dtype, G written in float32 (the pad copies only when C does not
    divide T)."""
    B, T, H = g.shape[:3]
    g = g if g.dim() == 4 else g[..., None]
    Tp = -(-T // C) * C
    if Tp > T:
        g = F.pad(g, (0, 0, 0, 0, 0, Tp - T))
    return g.reshape(B, Tp // C, C, H, -1).cumsum(2, dtype=torch.float32).view(B, Tp, H, -1)


def launches(cfg, C, K, per_channel):
    """The one table of every launch of Scan, forward and backward, for the tiles and warps of cfg
    (gpu_compile.config), chunks of C and keys of K: {name: (kernel, constexprs, options)},
    options = dict(num_warps, num_stages). Scan launches from it, gpu_compile compiles it for each
    card, and bench.py's static costs name its rows by it. The states kernels' HAS_INIT is set per
    call (True here: what gpu_compile compiles)."""
    BK, BV, PREC = cfg["BK"], cfg["BV"], cfg["PREC"]
    opts = lambda warps: dict(num_warps=warps, num_stages=cfg["num_stages"])
    run = opts(cfg["num_warps"])
    tiles = dict(C=C, BK=BK, BV=BV, PREC=PREC)
    table = {}
    if per_channel:   # one decay per head: the forward's scores are made inside _output_kernel
        table["scores: A"] = (_scores_kernel,
                              dict(C=C, SUB=BC, BK=cfg["BK_sub"], PER_CHANNEL=True, PREC=PREC),
                              opts(cfg["warps_scores"]))
    for name, reverse in (("states: S_n", False), ("states: D_n", True)):
        table[name] = (_states_kernel, dict(tiles, BV=cfg["BV_wide"] if per_channel else BV,
                                            HAS_INIT=True, REVERSE=reverse,
                                            PER_CHANNEL=per_channel), run)
    for name, backward in (("output: o", False), ("output: dv", True)):
        table[name] = (_output_kernel, dict(tiles, BV=cfg["BV_wide"], BACKWARD=backward,
                                            PER_CHANNEL=per_channel), run)
    table["scores: dA"] = (_scores_kernel,
                           dict(C=C, SUB=C, BK=BK, PER_CHANNEL=False, PREC=PREC), run)
    table["dqk"] = (_dqk_kernel, dict(tiles, PER_CHANNEL=per_channel), run)
    if per_channel:
        table["dqk_intra"] = (_dqk_intra_kernel, dict(C=C, SUB=BC, BK=cfg["BK_sub"], PREC=PREC),
                              opts(cfg["warps_intra"]))
    # dg: 16 channels per program (more programs: the walk is short); one decay per head sums the
    # shares of dG, one per K tile of _dqk_kernel
    table["dg"] = (_dg_kernel, dict(C=C, BK=16, SHARES=0 if per_channel
                                    else triton.next_power_of_2(triton.cdiv(K, BK))), run)
    return table


def _launch(table, name, grid, *args, **per_call):
    """Launch table[name] on grid with args, per_call overriding its constexprs."""
    kernel, constexprs, options = table[name]
    kernel[grid](*args, **(constexprs | per_call), **options)


def _states(table, x, y, G, init, C, reverse):
    """Steps 4-5 (or 4'-5' in reverse): the states S_n (B*H, N, K, V) entering each chunk (or D_n,
    leaving it), in the input dtype for 16-bit inputs, and the last state (B, H, K, V) float32.
    x: k (or q), decayed already (kd, qd) for a decay per key channel."""
    (B, T, H, K), V, Kg, N = x.shape, y.shape[-1], G.shape[-1], G.shape[1] // C
    name = "states: D_n" if reverse else "states: S_n"
    BK, BV = table[name][1]["BK"], table[name][1]["BV"]
    S = torch.empty(B * H, N, K, V, dtype=x.dtype, device=x.device)
    last = torch.empty(B, H, K, V, dtype=torch.float32, device=x.device)
    # init = None: `last` stands in for the pointer, never read (HAS_INIT=False)
    _launch(table, name, (triton.cdiv(K, BK) * triton.cdiv(V, BV), 1, B * H), x, y, G, S,
            last if init is None else init.contiguous(), last, T, H, K, V, Kg, N,
            HAS_INIT=init is not None)
    return S, last


def _scores(table, name, q, k, G, C):
    """Step 3 as its own kernel: A (B*H, N, C, C) in the input dtype. "scores: A" (a decay per key
    channel) returns (A, qd, kd), with qd = q * exp(G) and kd = k * exp(G_last - G); "scores: dA"
    the masked product of (do, v) with the decays of G, (q k^T) * L."""
    (B, T, H, K), N = q.shape, G.shape[1] // C
    # 16-bit for 16-bit inputs, as S_n
    A = torch.empty(B * H, N, C, C, dtype=q.dtype, device=q.device)
    per_channel = table[name][1]["PER_CHANNEL"]
    # per head: never written
    qd, kd = (torch.empty_like(q), torch.empty_like(k)) if per_channel else (A, A)
    _launch(table, name, (1, N, B * H), q, k, G, A, qd, kd, T, H, K)
    return (A, qd, kd) if per_channel else A


def _output(table, A, q, k, y, G, S, C, backward):
    """Step 6 (o from v) or 6' (dv from do): (B, T, H, V) in y's dtype. A: the per-channel scores
    (then q, k are qd, kd), or None for one decay per head (the kernel makes them)."""
    (B, T, H, K), V, N = q.shape, y.shape[-1], G.shape[1] // C
    name = "output: dv" if backward else "output: o"
    out = torch.empty_like(y)
    # A = None: S stands in for the pointer, never read (PER_CHANNEL=False)
    _launch(table, name, (triton.cdiv(V, table[name][1]["BV"]), N, B * H),
            S if A is None else A, q, k, y, G, S, out, T, H, K, V)
    return out


class Scan(torch.autograd.Function):
    """scan_chunked's algorithm as the kernels above: apply(q, k, v, g, h0, C, cfg) -> (o, h)."""

    @staticmethod
    def forward(ctx, q, k, v, g, h0, C, cfg):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        G = _chunk_cumsum(g, C)                                            # steps 1-2
        table = launches(cfg, C, q.shape[-1], per_channel=G.shape[-1] > 1)
        A, qd, kd = (_scores(table, "scores: A", q, k, G, C) if G.shape[-1] > 1
                     else (None, q, k))                                    # step 3
        S, h = _states(table, kd, v, G, h0, C, reverse=False)              # steps 4-5
        o = _output(table, A, qd, kd, v, G, S, C, backward=False)          # step 6 (and 3 per head)
        # S_n is kept for the backward (one (K, V) tile per chunk, in the input dtype:
        # K V 2 / C bytes per token and head, for Mamba-2's 128 x 64 and C = 64 some 40% on top of
        # q, k and v): recomputing it would cost the backward another pass of steps 4-5. A, qd and
        # kd are made again in the backward.
        ctx.save_for_backward(q, k, v, g, h0, h, S)
        ctx.C, ctx.table = C, table
        return o, h

    @staticmethod
    def backward(ctx, do, dh):
        q, k, v, g, h0, h, S = ctx.saved_tensors
        C, table = ctx.C, ctx.table
        do = torch.zeros_like(v) if do is None else do.contiguous()
        G = _chunk_cumsum(g, C)
        (B, T, H, K), V, Kg, N = q.shape, v.shape[-1], G.shape[-1], G.shape[1] // C
        # 3. A, qd, kd again (per head the output kernel makes its scores itself)
        A, qd, kd = _scores(table, "scores: A", q, k, G, C) if Kg > 1 else (None, q, k)
        # 4'-5'. W_n = (q * exp(G))^T do carried back: D_n, dL/dS at the end of chunk n, and dh0
        D, dh0 = _states(table, qd, do, G, dh, C, reverse=True)
        # 6'. dv = A^T do + (k * exp(G_last - G)) D_n
        dv = _output(table, A, qd, kd, do, G, D, C, backward=True)
        # 3'. dA = do v^T for s <= t: the scores of (do, v), with the decays L for one decay per
        #     head (then dA * L is what dq, dk need), with none for a decay per key channel
        #     (G_none = 0). _dqk_kernel adds the states' share of dq, dk (for one decay per head
        #     also dA's); for a decay per key channel _dqk_intra_kernel adds dA's.
        # dg: G_t = g_0 + ... + g_t (over the whole sequence) enters only as q_t exp(G_t),
        # k_t exp(-G_t) and exp(G_{T-1}) in the final state, so dL/dG_t = q_t dq_t - k_t dk_t
        # (+ sum_v h dh at t = T-1), made by the kernel that finishes dq, dk; dg is its reverse
        # cumulative sum.
        G_none = G if Kg == 1 else torch.zeros(*G.shape[:3], 1, device=G.device)
        dA = _scores(table, "scores: dA", do, v, G_none, C)
        dq, dk = torch.empty_like(q), torch.empty_like(k)
        grid = (triton.cdiv(K, table["dqk"][1]["BK"]), N, B * H)
        if Kg == 1:
            # a share per K tile
            dG = torch.empty(B, T, H, grid[0], dtype=torch.float32, device=q.device)
            _launch(table, "dqk", grid, q, k, v, do, G, S, D, dA, dq, dk, dG, T, H, K, V)
        else:
            dq_states = torch.empty(q.shape, dtype=torch.float32, device=q.device)
            dk_states = torch.empty_like(dq_states)
            _launch(table, "dqk", grid, q, k, v, do, G, S, D, dA, dq_states, dk_states, dq_states,
                    T, H, K, V)                             # dG: dq_states stands in, never written
            dG = torch.empty(q.shape, dtype=torch.float32, device=q.device)
            _launch(table, "dqk_intra", (triton.cdiv(K, table["dqk_intra"][1]["BK"]), N, B * H),
                    q, k, G, dA, dq_states, dk_states, dq, dk, dG, T, H, K)
        # the final state's share, exp(G_{T-1}) h0 + ..., at t = T-1 (per head: dG's first share)
        if dh is not None:
            last = h * dh.float()                                            # (B, H, K, V)
            dG[:, -1, :, :Kg] += last.sum(-1) if Kg > 1 else last.sum((-2, -1))[..., None]
        dg = torch.empty(B, T, H, Kg, dtype=g.dtype, device=g.device)
        _launch(table, "dg", (triton.cdiv(Kg, table["dg"][1]["BK"]), 1, B * H), dG, dg, T, H,
                dG.shape[-1], Kg)
        return (dq, dk, dv, dg.view(g.shape),
                None if h0 is None else dh0.to(h0.dtype), None, None)

"""The three scans against the definition (scan_ref in float64), and against hand-computed cases.

The Triton kernels run here through Triton's interpreter (conftest.py sets TRITON_INTERPRET=1),
which is slow, so the shapes are small but cover every path: T = 1, T shorter than a chunk, T equal
to a chunk, T not a multiple of the chunk, K and V that are not powers of two, K and V wider than
one tile (so the kernels' tiles over K and V are exercised), with and without h0, and both forms
of g. On a machine with CUDA, the same tests run the compiled kernels on the GPU with

    TRITON_INTERPRET=0 python -m pytest tests/test_scan.py tests/test_compile.py

(the references still run on the CPU in float64), adding bfloat16 at the official shapes.
"""
import math
import os

import pytest
import torch

import scan_kernel
from scan_kernel import _scores_by_halving, _scores_plain, scan, scan_chunked, scan_ref

DEVICE = "cuda" if os.environ.get("TRITON_INTERPRET") == "0" else "cpu"   # where `scan` runs
if DEVICE == "cuda" and not torch.cuda.is_available():
    raise RuntimeError("TRITON_INTERPRET=0 runs the compiled Triton scan, which needs CUDA; "
                       "without a GPU leave TRITON_INTERPRET unset")


def on_device(fn):
    """fn run on DEVICE, its outputs returned on the CPU (for scan; the references stay on the CPU)."""
    def run(*args, **kw):
        args = [a.to(DEVICE) if torch.is_tensor(a) else a for a in args]
        return tuple(x.cpu() for x in fn(*args, **kw))
    run.__name__ = fn.__name__
    return run


triton_scan = on_device(scan)

# (B, T, H, K, V, chunk_size)
SHAPES = [
    (2, 1, 2, 4, 4, 16),     # a single token
    (1, 11, 2, 5, 3, 16),    # T < chunk, odd K and V
    (2, 32, 1, 8, 16, 16),   # T a multiple of the chunk
    (2, 37, 3, 7, 5, 16),    # T not a multiple of the chunk
    (1, 45, 1, 33, 70, 32),  # K > 32, V > 64: several tiles of K and of V on every card
]


def make_inputs(B, T, H, K, V, per_channel, with_h0, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen, dtype=dtype)
    k = torch.randn(B, T, H, K, generator=gen, dtype=dtype)
    v = torch.randn(B, T, H, V, generator=gen, dtype=dtype)
    g_shape = (B, T, H, K) if per_channel else (B, T, H)
    g = -torch.rand(g_shape, generator=gen, dtype=dtype)          # log decays in [-1, 0]
    h0 = torch.randn(B, H, K, V, generator=gen, dtype=dtype) if with_h0 else None
    return q, k, v, g, h0


def outputs_and_grads(fn, inputs, dtype, **kw):
    """o, h, and the gradients of a loss that uses both o and the final state h (the final state's
    own gradient is what state passing and TBTT rely on)."""
    inputs = [None if x is None else x.detach().to(dtype).requires_grad_() for x in inputs]
    o, h = fn(*inputs, **kw)
    gen = torch.Generator().manual_seed(1)
    do = torch.randn(o.shape, generator=gen, dtype=torch.float64)
    dh = torch.randn(h.shape, generator=gen, dtype=torch.float64)
    loss = (o.double() * do).sum() + (h.double() * dh).sum()
    loss.backward()
    return [o.double(), h.double()] + [x.grad.double() for x in inputs if x is not None]


def assert_close(got, want, rtol, what):
    names = ["o", "h", "dq", "dk", "dv", "dg", "dh0"]
    for name, a, b in zip(names, got, want):
        # relative to the largest entry, or to 1 where the exact value is ~0 (dg at T = 1 with a
        # zero h0 is exactly 0, and the float32 kernels return rounding noise of O(1e-7) there)
        err = ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item()
        assert err < rtol, f"{what}: {name} differs from scan_ref by {err:.2e}"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}T{}H{}K{}V{}C{}".format(*s))
@pytest.mark.parametrize("per_channel", [False, True], ids=["g_per_head", "g_per_channel"])
@pytest.mark.parametrize("with_h0", [False, True], ids=["zero_h0", "h0"])
def test_three_scans_agree(shape, per_channel, with_h0):
    *dims, C = shape
    inputs = make_inputs(*dims, per_channel, with_h0)
    want = outputs_and_grads(scan_ref, inputs, torch.float64)
    chunked = outputs_and_grads(scan_chunked, inputs, torch.float64, chunk_size=C)
    assert_close(chunked, want, 1e-10, "scan_chunked (float64)")
    triton = outputs_and_grads(triton_scan, inputs, torch.float32, chunk_size=C)
    assert_close(triton, want, 1e-4, "scan (Triton, float32)")


def test_halving_computes_the_plain_masked_product():
    # Step 3 for a decay per key channel: the halving equals the (C, C, K) masked product it avoids.
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 32, 5, generator=gen, dtype=torch.float64), torch.randn(2, 3, 32, 5, generator=gen, dtype=torch.float64)
    G = -torch.rand(2, 3, 32, 5, generator=gen, dtype=torch.float64).cumsum(-2)
    R = torch.zeros_like(G, dtype=torch.long)                                  # no full resets
    torch.testing.assert_close(_scores_by_halving(q, k, G, R), _scores_plain(q, k, G), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_channel", [False, True], ids=["g_per_head", "g_per_channel"])
def test_gradcheck_chunked(per_channel):
    q, k, v, g, h0 = make_inputs(1, 13, 2, 3, 2, per_channel, with_h0=True)
    inputs = [x.requires_grad_() for x in (q, k, v, g, h0)]
    assert torch.autograd.gradcheck(lambda *a: scan_chunked(*a, chunk_size=4), inputs)


@pytest.mark.parametrize("per_channel", [False, True], ids=["g_per_head", "g_per_channel"])
def test_no_decay_is_a_running_sum(per_channel):
    # g = 0: S_t = h0 + sum_{s<=t} k_s v_s^T, computed here with a cumulative sum, no scan.
    q, k, v, g, h0 = make_inputs(1, 40, 2, 4, 3, per_channel, with_h0=True, dtype=torch.float32)
    g = torch.zeros_like(g)
    S = h0[:, None] + torch.cumsum(k[..., :, None] * v[..., None, :], dim=1)    # (B, T, H, K, V)
    o_want = torch.einsum("bthk,bthkv->bthv", q, S)
    for fn in (scan_chunked, triton_scan):
        o, h = fn(q, k, v, g, h0, chunk_size=16)
        torch.testing.assert_close(o, o_want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(h, S[:, -1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("per_channel", [False, True], ids=["g_per_head", "g_per_channel"])
def test_total_decay_forgets_everything(per_channel):
    # g = -50: exp(-50) ~ 2e-22, so S_t = k_t v_t^T and o_t = (q_t . k_t) v_t. A chunked scan that
    # factored exp(G_t - G_s) as exp(G_t) * exp(-G_s) would overflow here and return NaN.
    q, k, v, g, h0 = make_inputs(2, 40, 2, 4, 3, per_channel, with_h0=True, dtype=torch.float32)
    g = torch.full_like(g, -50.0)
    o_want = (q * k).sum(-1, keepdim=True) * v
    h_want = k[:, -1, :, :, None] * v[:, -1, :, None, :]
    for fn in (scan_chunked, triton_scan):
        inputs = [x.clone().requires_grad_() for x in (q, k, v, g, h0)]
        o, h = fn(*inputs, chunk_size=16)
        torch.testing.assert_close(o, o_want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(h, h_want, rtol=1e-5, atol=1e-5)
        (o.sum() + h.sum()).backward()
        assert all(x.grad.isfinite().all() for x in inputs), f"{fn.__name__}: non-finite gradient"


def test_long_sequence_chunked_matches_loop():
    # 20,000 steps with slow decay: the state grows to O(100) and must stay finite and exact.
    q, k, v, g, _ = make_inputs(1, 20_000, 2, 4, 3, per_channel=True, with_h0=False, dtype=torch.float32)
    g = g * 0.01
    o_ref, h_ref = scan_ref(q, k, v, g)
    o, h = scan_chunked(q, k, v, g)
    assert o.isfinite().all() and h.isfinite().all()
    scale = o_ref.abs().max()
    assert scale > 10, "the test should exercise a large state"
    assert ((o - o_ref).abs().max() / scale) < 1e-5
    assert ((h - h_ref).abs().max() / h_ref.abs().max()) < 1e-5


@pytest.mark.parametrize("fn", [scan_chunked, triton_scan], ids=["scan_chunked", "scan"])
def test_streaming_equals_one_pass(fn):
    # Two calls with the final state carried equal one call, in value and in gradient: the property
    # that state passing, TBTT and streamed evaluation rest on.
    q, k, v, g, h0 = make_inputs(1, 48, 2, 5, 6, per_channel=True, with_h0=True, dtype=torch.float32)
    whole = outputs_and_grads(fn, (q, k, v, g, h0), torch.float32, chunk_size=16)

    def two_pieces(q, k, v, g, h0, chunk_size):
        o1, h1 = fn(q[:, :20], k[:, :20], v[:, :20], g[:, :20], h0, chunk_size=chunk_size)
        o2, h2 = fn(q[:, 20:], k[:, 20:], v[:, 20:], g[:, 20:], h1, chunk_size=chunk_size)
        return torch.cat([o1, o2], dim=1), h2
    pieces = outputs_and_grads(two_pieces, (q, k, v, g, h0), torch.float32, chunk_size=16)
    assert_close(pieces, whole, 1e-5, f"{fn.__name__} in two pieces")


@pytest.mark.parametrize("dtype,rtol", [(torch.bfloat16, 2e-2), (torch.float16, 2e-3)])
def test_low_precision_inputs(dtype, rtol):
    q, k, v, g, h0 = make_inputs(1, 40, 2, 8, 16, per_channel=False, with_h0=True, dtype=dtype)
    o_ref, h_ref = scan_ref(*(x.double() for x in (q, k, v, g, h0)))
    o, h = triton_scan(q, k, v, g, h0, chunk_size=16)
    assert o.dtype == dtype and h.dtype == torch.float32
    assert ((o.double() - o_ref).abs().max() / o_ref.abs().max()) < rtol
    # The state is accumulated and returned in float32, but on a GPU the tensor cores multiply the decayed k
    # and v in the input dtype: one rounding of it per product. On an H100 this gave relative errors of 5e-4
    # (bf16) and 2.5e-4 (fp16), within the dtype's eps; the interpreter multiplies in float32 (< 1e-5).
    assert ((h.double() - h_ref).abs().max() / h_ref.abs().max()) < torch.finfo(dtype).eps


@pytest.mark.parametrize("fn", [scan_ref, scan_chunked, triton_scan], ids=["scan_ref", "scan_chunked", "scan"])
def test_bad_input_names_the_argument(fn):
    q, k, v, g, h0 = make_inputs(1, 8, 2, 4, 3, per_channel=True, with_h0=True, dtype=torch.float32)
    bad = {
        "k must have q's shape": dict(k=k[:, :5]),
        "v must be": dict(v=v[:, :, :1]),
        "g must be": dict(g=g[..., :2]),
        "h0 must be": dict(h0=h0[:, :, :2]),
        "q must be a floating-point tensor": dict(q=q.long()),
        "q must be \\(B, T, H, K\\)": dict(q=q[0]),
        "the sequence is empty": dict(q=q[:, :0], k=k[:, :0], v=v[:, :0], g=g[:, :0]),
    }
    for message, change in bad.items():
        args = dict(q=q, k=k, v=v, g=g, h0=h0) | change
        with pytest.raises(ValueError, match=message):
            fn(**args)


@pytest.mark.parametrize("per_channel", [False, True], ids=["g_per_head", "g_per_channel"])
def test_full_reset(per_channel):
    # g = -inf at t = 20 (exp(g) = 0): the loop forgets everything before, so from t = 20 on it
    # equals a fresh scan of tokens 20.. from a zero state. scan_chunked computes it exactly, in value
    # and gradient; the Triton scan refuses it and says what to pass instead: g = -50 gives the same.
    q, k, v, g, h0 = make_inputs(1, 40, 2, 4, 3, per_channel, with_h0=True)
    g[:, 20] = -math.inf
    g[:, 37] = -math.inf                                   # two resets in one chunk of 16 (32 .. 47)
    want = outputs_and_grads(scan_ref, (q, k, v, g, h0), torch.float64)
    o_fresh, h_fresh = scan_ref(q[:, 37:], k[:, 37:], v[:, 37:], g[:, 37:])
    assert all(x.isfinite().all() for x in want)
    torch.testing.assert_close(want[0][:, 37:], o_fresh, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(want[1], h_fresh, rtol=1e-12, atol=1e-12)
    assert_close(outputs_and_grads(scan_chunked, (q, k, v, g, h0), torch.float64, chunk_size=16), want, 1e-10,
                 "scan_chunked with g = -inf")
    with pytest.raises(ValueError, match="g contains -inf"):
        triton_scan(*(x.float() for x in (q, k, v, g, h0)), chunk_size=16)
    g50 = g.masked_fill(g.isneginf(), -50.0)
    o50, h50 = triton_scan(*(x.float() for x in (q, k, v, g50, h0)), chunk_size=16)
    assert ((o50.double() - want[0]).abs().max() / want[0].abs().max()) < 1e-5
    assert ((h50.double() - want[1]).abs().max() / want[1].abs().max()) < 1e-5


# The official shapes: Mamba-2 (d_state 128 x headdim 64, one decay per head) and GLA 340M (128 x 256,
# a decay per key channel), in bfloat16, short T (the interpreter is slow); every card tiles them alike.
@pytest.mark.parametrize("K, V, per_channel", [(128, 64, False), (128, 256, True)], ids=["Mamba-2", "GLA"])
def test_official_shapes_bfloat16(K, V, per_channel):
    inputs = make_inputs(1, 80, 1, K, V, per_channel, with_h0=True)
    inputs = [x / math.sqrt(K) if i < 2 else x for i, x in enumerate(inputs)]    # q, k scaled as in attention
    inputs = [x.to(torch.bfloat16).double() for x in inputs]                     # the same rounded inputs for both
    want = outputs_and_grads(scan_ref, inputs, torch.float64)
    got = outputs_and_grads(triton_scan, inputs, torch.bfloat16, chunk_size=64)
    assert_close(got, want, 2e-2, "scan (Triton, bfloat16)")


@pytest.mark.parametrize("per_channel", [False, True], ids=["g_per_head", "g_per_channel"])
def test_chunked_in_segments(per_channel, monkeypatch):
    # scan_chunked walks long sequences in segments of whole chunks (the state, and in the backward
    # dL/dS, carried between them); here a segment is 2 chunks of 8, so 45 tokens take 3 segments, the
    # last one short, with a full reset in the second: values and every gradient against the loop.
    monkeypatch.setattr(scan_kernel, "_SEGMENT_NUMBERS", 2 * (2 * 2 * 8 * 8))   # 2 chunks of B H C max(K, V, C)
    q, k, v, g, h0 = make_inputs(2, 45, 2, 5, 6, per_channel, with_h0=True)
    g[:, 21] = -math.inf
    want = outputs_and_grads(scan_ref, (q, k, v, g, h0), torch.float64)
    got = outputs_and_grads(scan_chunked, (q, k, v, g, h0), torch.float64, chunk_size=8)
    assert_close(got, want, 1e-10, "scan_chunked in segments")
    with torch.no_grad():   # no backward to follow: the forward keeps one segment's states, not all
        assert_close(scan_chunked(q, k, v, g, h0, chunk_size=8), want[:2], 1e-10, "without grad")


@pytest.mark.parametrize("uses", ["o", "h"])
@pytest.mark.parametrize("T", [11, 37], ids=["one_chunk", "three_chunks"])
@pytest.mark.parametrize("with_h0", [False, True], ids=["zero_h0", "h0"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["g_per_head", "g_per_channel"])
def test_chunked_loss_of_o_or_h_alone(uses, T, with_h0, per_channel):
    # A training batch's loss uses o alone (its final state h gets no gradient), a state-passing
    # probe's h alone; then scan_chunked's backward receives None for the other output and skips the
    # work that would multiply zeros (with one chunk from the zero state, every S_n and D_n is 0).
    # Every gradient against the loop's, for each combination of those shortcuts.
    inputs = [None if x is None else x.requires_grad_()
              for x in make_inputs(2, T, 2, 5, 6, per_channel, with_h0)]
    grads = []
    for fn, kw in ((scan_ref, {}), (scan_chunked, {"chunk_size": 16})):
        o, h = fn(*inputs, **kw)
        out = o if uses == "o" else h
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
        wrt = [x for x in inputs if x is not None]
        grads.append(torch.autograd.grad((out * weights).sum(), wrt, allow_unused=True))
    for name, a, b in zip(["dq", "dk", "dv", "dg", "dh0"], *grads):
        b = torch.zeros_like(a) if b is None else b
        a = torch.zeros_like(b) if a is None else a
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10, msg=f"{name} with a loss of {uses} alone")

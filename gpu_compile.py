"""
The cards' side of the Triton kernels of scan_triton.py: which tiles and warps each card gets
(config, which scan_kernel.scan passes to the kernels), and compiling the kernels for a GPU on a
machine without one, which is what tests/test_compile.py asserts (shared memory fits the card, ptxas
spills no register) and what `python bench.py --static` prints. (Its own file: it is about the
hardware, not about what the kernels compute; scan_triton.py stays the algorithm.)

Triton compiles a kernel for any target it is given, GPU or not (triton.compile(ASTSource(...),
target=GPUTarget("cuda", 90, 32)) for an H100); the compiled kernel's metadata holds the shared
memory it needs, and the ptxas that ships inside the triton wheel, run with -v on its PTX, reports
registers and spilled bytes.
"""
import os
import re
import subprocess
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from scan_triton import launches as launches_of


def config(dtype, capability, K, V):
    """Tiles and launch settings for heads of K x V, `dtype` inputs, a card of compute `capability`
    ((9, 0) for an H100): dict(BK, BV, BV_wide, BK_sub, warps_scores, warps_intra, PREC, num_warps,
    num_stages). The tiles do not grow with K, V, so every shape fits; tests/test_compile.py checks
    each card's shared memory and registers.
    Tiles are float32 in registers; the products take 16-bit operands for 16-bit inputs (_mm) and,
    for float32 inputs, PREC: three TF32 products (float32's accuracy). A T4 has no TF32: PREC =
    "ieee", float32 products on the CUDA cores, for every dtype (16-bit operands spill there)."""
    fp32 = dtype == torch.float32
    prec, warps = "tf32x3", 8
    stages = 1 if fp32 else 2             # tf32x3 splits each operand in two: a second stage spills
    if capability < (8, 0):               # T4: no TF32, the products run on the CUDA cores
        BK, BV, prec, warps = 16, 32, "ieee", 4
    elif capability < (9, 0):             # A100, L4, RTX 30/40: smaller tiles, or registers spill
        BK, BV, warps = 32, 16, 8 if fp32 else 4
    else:
        BK, BV = (32, 32) if fp32 else (64, 64)
    BK = max(16, min(BK, triton.next_power_of_2(K)))                      # 16: the smallest tl.dot
    BV = max(16, min(BV, triton.next_power_of_2(V)))
    if capability < (8, 0) and BV == 16:
        warps = 2   # a T4 with V <= 16 (Mamba-1's V = 1): at 4 warps the dqk kernel spills
    if capability >= (9, 0) and BK * BV < 1024 and not fp32:
        warps = 4   # small heads: fewer threads, or ptxas spills
    # On an H100 with 16-bit products the output kernel (step 6), and steps 4-5 for a decay per key
    # channel, fit a tile of V twice as wide: each program then reads q (or k) and A for twice as
    # many outputs. (The other kernels, and steps 4-5 with one decay per head, would spill.)
    BV_wide = (min(2 * BV, max(16, triton.next_power_of_2(V)))
               if capability >= (9, 0) and not fp32 else BV)
    # The two kernels that hold a chunk as sub-chunks (per key channel: _scores_kernel,
    # _dqk_intra_kernel) hold keys decayed to each sub-chunk, (C / 16, C, BK_sub): K tiles of at
    # most 32, and 8 warps, or ptxas spills (on a T4, 4 warps for _dqk_intra_kernel: its float32
    # products spill at 8).
    BK_sub, warps_intra = min(BK, 32), 4 if capability < (8, 0) else 8
    return dict(BK=BK, BV=BV, BV_wide=BV_wide, BK_sub=BK_sub, warps_scores=8,
                warps_intra=warps_intra, PREC=prec, num_warps=warps, num_stages=stages)


def launches(dtype, per_channel, capability, K, V):
    """Every kernel `scan` launches (forward and backward) for `dtype` inputs on a card of this
    compute capability, for heads of K x V, from scan_triton.launches (the table `scan` launches
    from), with chunks of 64: ([(name, kernel, signature, constexprs, options)], config), options =
    dict(num_warps, num_stages). The compiled code depends on K and V only through the tiles; T, H,
    K, V are run-time integers."""
    cfg = config(dtype, capability, K, V)
    io = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16"}[dtype]
    # per key channel _dqk_intra_kernel finishes dq, dk
    f32, dq = "*fp32", "*fp32" if per_channel else io
    scores = dict(q=io, k=io, G=f32, A=io, qd=io, kd=io)
    pointers = {   # each launch's pointer arguments: S_n, D_n, A and dA in the input dtype
        "scores: A": scores, "scores: dA": scores,
        "states: S_n": dict(x=io, y=io, G=f32, S=io, init=f32, final=f32),
        "output: o": dict(A=io, q=io, k=io, y=io, G=f32, S=io, out=io),
        "dqk": dict(q=io, k=io, v=io, do=io, G=f32, S=io, D=io, dA=io, dq=dq, dk=dq, dG=f32),
        "dqk_intra": dict(q=io, k=io, G=f32, dA=io, dq_states=f32, dk_states=f32,
                          dq=io, dk=io, dG=f32),
        "dg": dict(dG=f32, dg=io)}
    pointers["states: D_n"], pointers["output: dv"] = pointers["states: S_n"], pointers["output: o"]
    kg = {} if per_channel else {"Kg": 1}         # the JIT specialises an integer 1 as a constant
    out = []
    for name, (kernel, constexprs, options) in launches_of(cfg, 64, K, per_channel).items():
        constexprs = constexprs | {n: v for n, v in kg.items() if n in kernel.arg_names}
        signature = {a: pointers[name].get(a, "constexpr" if a in constexprs else "i32")
                     for a in kernel.arg_names}
        out.append((name, kernel, signature, constexprs, options))
    return out, cfg


def compile_for(kernel, signature, constexprs, capability, options):
    """Compile one kernel for a card (no GPU needed), with options = dict(num_warps, num_stages),
    and run the ptxas shipped with Triton on its PTX: returns (shared memory bytes per program,
    registers per thread, spilled bytes)."""
    major, minor = capability
    arch = major * 10 + minor
    compiled = triton.compile(ASTSource(kernel, signature, constexprs),
                              target=GPUTarget("cuda", arch, 32), options=options)
    bin_dir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    ptxas = next(os.path.join(bin_dir, p) for p in ("ptxas-blackwell", "ptxas")
                 if os.path.exists(os.path.join(bin_dir, p)))
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "k.ptx"), "w") as f:
            f.write(compiled.asm["ptx"])
        report = subprocess.run([ptxas, "-v", f"-arch=sm_{arch}{'a' if major >= 9 else ''}",
                                 "k.ptx", "-o", "k.cubin"],
                                cwd=tmp, capture_output=True, text=True, check=True).stderr
    registers = int(re.search(r"Used (\d+) registers", report).group(1))
    spills = sum(int(x) for x in re.findall(r"(\d+) bytes spill (?:stores|loads)", report))
    return compiled.metadata.shared, registers, spills

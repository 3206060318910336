"""
Compiling the Triton kernels of scan_triton.py for a GPU on a machine without one: what
tests/test_compile.py asserts (shared memory fits the card, ptxas spills no register) and what
`python bench.py --static` prints. (Its own file: it is about checking the kernels, not about what
they compute; scan_triton.py stays the algorithm.)

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

from scan_triton import (BC, _dg_kernel, _dqk_intra_kernel, _dqk_kernel, _output_kernel, _scores_kernel,
                         _states_kernel, config)


def launches(dtype, per_channel, capability, K, V):
    """Every kernel `scan` launches (forward and backward) for `dtype` inputs on a card of this
    compute capability, for heads of K x V: ([(name, kernel, signature, constexprs)], config). The
    compiled code depends on K and V only through the tiles BK, BV; T, H, K, V are run-time integers."""
    cfg = config(dtype, capability, K, V)
    io = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16"}[dtype]
    f32, BK, BV, C = "*fp32", cfg["BK"], cfg["BV"], 64     # S_n, D_n, A, dA: in the input dtype, io
    tiles = dict(C=C, BK=BK, BV=BV, PREC=cfg["PREC"])
    sub = BC if per_channel else C
    kg = {} if per_channel else {"Kg": 1}                 # the JIT specialises an integer 1 as a constant
    found = []
    if per_channel:   # one decay per head: the forward's scores are made inside _output_kernel
        found.append(("scores (q, k -> A)", _scores_kernel, dict(q=io, k=io, G=f32, A=io),
                      dict(C=C, SUB=sub, BK=BK, PER_CHANNEL=True, PREC=cfg["PREC"])))
    for reverse in (False, True):
        found.append((f"states ({'q, do -> D_n, backward' if reverse else 'k, v -> S_n, forward'})", _states_kernel,
                      dict(x=io, y=io, G=f32, S=io, init=f32, final=f32), dict(tiles, HAS_INIT=True, REVERSE=reverse)))
    for backward in (False, True):
        found.append((f"output ({'dv' if backward else 'o'})", _output_kernel,
                      dict(A=io, q=io, k=io, y=io, G=f32, S=io, out=io),
                      dict(tiles, BV=cfg["BV_out"], BACKWARD=backward, PER_CHANNEL=per_channel)))
    found.append(("scores (do, v -> dA)", _scores_kernel, dict(q=io, k=io, G=f32, A=io),
                  dict(C=C, SUB=C, BK=BK, PER_CHANNEL=False, PREC=cfg["PREC"])))
    dq = f32 if per_channel else io                       # per key channel _dqk_intra_kernel finishes dq, dk
    found.append(("dqk", _dqk_kernel, dict(q=io, k=io, v=io, do=io, G=f32, S=io, D=io, dA=io, dq=dq, dk=dq, dG=f32),
                  dict(tiles, PER_CHANNEL=per_channel)))
    if per_channel:
        found.append(("dqk_intra", _dqk_intra_kernel, dict(q=io, k=io, G=f32, dA=io, dq_states=f32, dk_states=f32,
                                                           dq=io, dk=io, dG=f32), dict(C=C, SUB=BC, BK=BK, PREC=cfg["PREC"])))
    found.append(("dg", _dg_kernel, dict(dG=f32, dg=io),
                  dict(C=C, BK=16, SHARES=0 if per_channel else K // BK)))
    out = []
    for name, kernel, pointers, constexprs in found:
        constexprs = constexprs | {n: v for n, v in kg.items() if n in kernel.arg_names}
        signature = {a: pointers.get(a, "constexpr" if a in constexprs else "i32") for a in kernel.arg_names}
        out.append((name, kernel, signature, constexprs))
    return out, cfg


def compile_for(kernel, signature, constexprs, capability, cfg):
    """Compile one kernel for a card (no GPU needed) and run the ptxas shipped with Triton on its
    PTX: returns (shared memory bytes per program, registers per thread, spilled bytes)."""
    major, minor = capability
    arch = major * 10 + minor
    compiled = triton.compile(ASTSource(kernel, signature, constexprs), target=GPUTarget("cuda", arch, 32),
                              options=dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"]))
    bin_dir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    ptxas = next(os.path.join(bin_dir, p) for p in ("ptxas-blackwell", "ptxas") if os.path.exists(os.path.join(bin_dir, p)))
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "k.ptx"), "w") as f:
            f.write(compiled.asm["ptx"])
        report = subprocess.run([ptxas, "-v", f"-arch=sm_{arch}{'a' if major >= 9 else ''}", "k.ptx", "-o", "k.cubin"],
                                cwd=tmp, capture_output=True, text=True, check=True).stderr
    registers = int(re.search(r"Used (\d+) registers", report).group(1))
    spills = sum(int(x) for x in re.findall(r"(\d+) bytes spill (?:stores|loads)", report))
    return compiled.metadata.shared, registers, spills

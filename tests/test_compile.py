"""Every kernel the Triton `scan` launches, forward and backward, compiled for real GPUs on this CPU.

Triton's compiler needs no GPU: for each card it turns a kernel into PTX, whose shared memory per
program is known, and the ptxas that ships with Triton reports its registers and any spills. A
kernel that needs more shared memory than the card has cannot launch ("out of resource"); one that
spills registers runs, but slowly. The cards: H100 (sm_90), A100 (sm_80, also the tiles of every
sm_8x card: L4, RTX 30/40, with 101,376 bytes), and the T4 of free notebooks (sm_75, no bfloat16).

Which compilations are enough: the compiled code depends on the dtype, the card, the kind of decay
and the tiles and warps (gpu_compile.config), never on T, H or on K, V beyond the tiles. K >= 64
and V >= 128 give a card's largest tiles, so GLA 340M (K x V = 128 x 256) and 1.3B (256 x 512, a
decay per key channel) compile to the same kernels per card and dtype; Mamba-2 (K = d_state 128,
V = headdim 64, one decay per head), Mamba-1 (16 x 1, a decay per key channel: V is padded to a
tile of 16), RWKV-6 (64 x 64, per key channel) and the toy shapes of this repository (Mamba-2
32 x 32; GLA 16 x 32) may give smaller tiles, compiled too when they differ. float16 and bfloat16 inputs compile
alike on sm_80+ (the same tiles, products of 16-bit operands of the same size), so bfloat16 stands
for both there; float32 inputs use other products (tf32x3) and are compiled separately.

The compilations run in a subprocess without TRITON_INTERPRET (conftest.py sets it for the other
tests, and under it Triton does not compile).
"""
import json
import os
import subprocess
import sys

import pytest
import torch

import gpu_compile

CARDS = {"sm_90": ((9, 0), 232_448), "sm_80": ((8, 0), 166_912), "sm_75": ((7, 5), 65_536)}   # shared bytes per block
DTYPES = {"sm_90": ("bfloat16", "float32"), "sm_80": ("bfloat16", "float32"), "sm_75": ("float16", "float32")}
SHAPES = {"Mamba-2": (128, 64, False), "GLA 340M": (128, 256, True), "GLA 1.3B": (256, 512, True),
          "Mamba-2 toy": (32, 32, False), "GLA toy": (16, 32, True),
          "Mamba-1": (16, 1, True), "RWKV-6": (64, 64, True)}   # K, V, a decay per key channel


def binding_set():
    """[(card, dtype, shape names, K, V, per_channel)], one per distinct compiled configuration."""
    found = {}
    for card, (capability, _) in CARDS.items():
        for dtype in DTYPES[card]:
            for name, (K, V, per_channel) in SHAPES.items():
                cfg = gpu_compile.config(getattr(torch, dtype), capability, K, V)
                key = (card, dtype, per_channel, tuple(cfg.items()))
                found.setdefault(key, [card, dtype, [], K, V, per_channel])[2].append(name)
    return list(found.values())


COMPILE = """
import json, sys, torch, gpu_compile
for card, capability, dtype, K, V, per_channel in json.loads(sys.argv[1]):
    launched, cfg = gpu_compile.launches(getattr(torch, dtype), per_channel, tuple(capability), K, V)
    for name, kernel, signature, constexprs, options in launched:
        print(json.dumps([card, dtype, K, V, name, *gpu_compile.compile_for(kernel, signature, constexprs,
                                                                        tuple(capability), options)]), flush=True)
"""


@pytest.fixture(scope="module")
def compiled():
    """{(card, dtype, K, V): {kernel name: (shared bytes, registers, spilled bytes)}}."""
    jobs = [[card, CARDS[card][0], dtype, K, V, per_channel] for card, dtype, _, K, V, per_channel in binding_set()]
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", COMPILE, json.dumps(jobs)], cwd=root, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, f"compiling the kernels failed:\n{done.stderr[-3000:]}"
    results = {}
    for line in done.stdout.splitlines():
        card, dtype, K, V, name, *numbers = json.loads(line)
        results.setdefault((card, dtype, K, V), {})[name] = numbers
    return results


@pytest.mark.parametrize("card, dtype, names, K, V, per_channel", binding_set(),
                         ids=lambda x: "+".join(x) if isinstance(x, list) else None)
def test_every_kernel_fits_the_card(compiled, card, dtype, names, K, V, per_channel):
    kernels = compiled[(card, dtype, K, V)]
    expected = 9 if per_channel else 7           # gpu_compile.launches: forward and backward
    assert len(kernels) == expected, f"{card} {dtype} {names}: compiled {sorted(kernels)}"
    limit = CARDS[card][1]
    for name, (shared, registers, spills) in kernels.items():
        assert shared <= limit, f"{card} {dtype} {names}: {name} needs {shared} bytes of shared memory, the card has {limit}"
        assert spills == 0, f"{card} {dtype} {names}: {name} spills {spills} bytes ({registers} registers)"

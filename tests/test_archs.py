"""Mamba-1 and RWKV-6 (mixers.py) against per-token float64 loops written from the official equations
(mamba_ssm's selective_scan_ref; BlinkDL's RWKV-6 time mix and channel mix and his CUDA kernel's loop):
logits, final states from given initial states, and gradients; each loader on a small file written in
exactly the official format; and each architecture through train.py with every intervention, then
evaluate.py's and effrem.py's measures."""
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from checkpoints import rwkv6_renamed
from model import LM
from test_train import corpus  # noqa: F401  (a fixture: real text)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.usefixtures("one_thread")


def rms(x, w, eps=1e-5):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


# ------------------------------------------------------------------------------------------------------
# Mamba-1: mamba_ssm's format, and its mixer one token at a time

MAMBA1_CONFIG = {"d_model": 16, "n_layer": 2, "vocab_size": 50, "ssm_cfg": {}, "rms_norm": True,
                 "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8}


def mamba1_state_dict(n_layer=2, d=16, N=16, R=1, vocab=56, d_conv=4):
    """Random weights under the keys and shapes of mamba_ssm's MambaLMHeadModel with Mamba (v1) mixers
    (d_inner = 2 d, dt_rank = ceil(d / 16), d_state 16: the defaults), saved as mamba_ssm saves them."""
    D = 2 * d
    emb = 0.5 * torch.randn(vocab, d)
    sd = {"backbone.embedding.weight": emb}
    for i in range(n_layer):
        p = f"backbone.layers.{i}."
        sd[p + "norm.weight"] = 1 + 0.2 * torch.randn(d)
        sd[p + "mixer.in_proj.weight"] = torch.randn(2 * D, d) / math.sqrt(d)
        sd[p + "mixer.conv1d.weight"] = 0.4 * torch.randn(D, 1, d_conv)
        sd[p + "mixer.conv1d.bias"] = 0.2 * torch.randn(D)
        sd[p + "mixer.x_proj.weight"] = torch.randn(R + 2 * N, D) / math.sqrt(D)
        sd[p + "mixer.dt_proj.weight"] = torch.randn(D, R)
        sd[p + "mixer.dt_proj.bias"] = torch.randn(D) - 2
        sd[p + "mixer.A_log"] = torch.empty(D, N).uniform_(-1, 2)
        sd[p + "mixer.D"] = torch.randn(D)
        sd[p + "mixer.out_proj.weight"] = torch.randn(d, D) / math.sqrt(D)
    sd["backbone.norm_f.weight"] = 1 + 0.2 * torch.randn(d)
    sd["lm_head.weight"] = emb
    return sd


def mamba1_reference(p, u, conv, h):
    """mamba_ssm's Mamba forward one token at a time, as selective_scan_ref: dA = exp(dt A), dB x = dt B x,
    h = dA h + dB x, y = C h + D x, gated by silu(z). u: (Bsz, T, d); conv: (Bsz, D, d_conv - 1) past conv
    inputs; h: (Bsz, D, N), mamba_ssm's ssm_state."""
    W, A = p["conv1d.weight"][:, 0], -torch.exp(p["A_log"])         # (D, d_conv), (D, N)
    R, N = p["dt_proj.weight"].shape[1], A.shape[1]
    ys = []
    for t in range(u.shape[1]):
        x, z = (u[:, t] @ p["in_proj.weight"].T).chunk(2, dim=-1)
        window = torch.cat([conv, x[:, :, None]], dim=2)
        conv = window[:, :, 1:]
        x = F.silu((window * W).sum(-1) + p["conv1d.bias"])
        dt, B, C = (x @ p["x_proj.weight"].T).split([R, N, N], dim=-1)
        dt = F.softplus(dt @ p["dt_proj.weight"].T + p["dt_proj.bias"])   # (Bsz, D)
        h = torch.exp(dt[..., None] * A) * h + (dt * x)[..., None] * B[:, None, :]
        y = (h * C[:, None, :]).sum(-1) + p["D"] * x
        ys.append((y * F.silu(z)) @ p["out_proj.weight"].T)
    return torch.stack(ys, dim=1), conv, h


def mamba1_lm_reference(sd, idx, states):
    x, finals = sd["backbone.embedding.weight"][idx], []
    for i, state in enumerate(states):
        pre = f"backbone.layers.{i}.mixer."
        p = {k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)}
        y, conv, h = mamba1_reference(p, rms(x, sd[f"backbone.layers.{i}.norm.weight"]), state["conv"],
                                      state["S"][..., 0])
        x = x + y
        finals.append({"conv": conv, "S": h[..., None]})
    return rms(x, sd["backbone.norm_f.weight"]) @ sd["lm_head.weight"].T, finals


# ------------------------------------------------------------------------------------------------------
# RWKV-6: BlinkDL's .pth, and his block one token at a time

def rwkv6_state_dict(n_layer=2, C=32, H=2, vocab=60, maa=4, decay=6, ffn=64):
    """Random weights under BlinkDL's RWKV-6 keys and shapes (RWKV_Tmix_x060, RWKV_CMix_x060), in
    bfloat16 as his released files are. ffn is not 3.5 C, and the ranks are not his defaults: the loader
    must read them from the shapes."""
    r = lambda *shape, s=1.0: (s * torch.randn(*shape)).bfloat16()
    sd = {"emb.weight": r(vocab, C), "blocks.0.ln0.weight": 1 + r(C, s=0.2), "blocks.0.ln0.bias": r(C, s=0.1),
          "ln_out.weight": 1 + r(C, s=0.2), "ln_out.bias": r(C, s=0.1), "head.weight": r(vocab, C, s=C ** -0.5)}
    for i in range(n_layer):
        p = f"blocks.{i}."
        for ln in ("ln1", "ln2", "att.ln_x"):
            sd[f"{p}{ln}.weight"], sd[f"{p}{ln}.bias"] = 1 + r(C, s=0.2), r(C, s=0.1)
        for name in "xwkvrg":
            sd[f"{p}att.time_maa_{name}"] = torch.rand(1, 1, C).bfloat16()
        sd[p + "att.time_maa_w1"], sd[p + "att.time_maa_w2"] = r(C, 5 * maa, s=0.3), r(5, maa, C, s=0.3)
        sd[p + "att.time_decay"] = (torch.rand(1, 1, C) * 4 - 4).bfloat16()         # w = exp(-exp(-4 .. 0))
        sd[p + "att.time_decay_w1"], sd[p + "att.time_decay_w2"] = r(C, decay, s=0.3), r(decay, C, s=0.3)
        sd[p + "att.time_faaaa"] = r(H, C // H, s=0.5)
        for name in ("receptance", "key", "value", "output", "gate"):
            sd[f"{p}att.{name}.weight"] = r(C, C, s=C ** -0.5)
        sd[p + "ffn.time_maa_k"], sd[p + "ffn.time_maa_r"] = torch.rand(1, 1, C).bfloat16(), torch.rand(1, 1, C).bfloat16()
        sd[p + "ffn.key.weight"], sd[p + "ffn.value.weight"] = r(ffn, C, s=C ** -0.5), r(C, ffn, s=ffn ** -0.5)
        sd[p + "ffn.receptance.weight"] = r(C, C, s=C ** -0.5)
    return sd


def rwkv6_time_mix(p, a, prev, S, H):
    """BlinkDL's time mix one token at a time; the state part is his CUDA kernel's loop: per head,
    y = r (u k v^T + S), then S = diag(w) S + k v^T, with w = exp(-exp(time_decay + low rank)).
    a: (Bsz, T, C) ln1's output; prev: (Bsz, C) the previous token's; S: (Bsz, H, K, V)."""
    Bsz, T, C = a.shape
    K = C // H
    u = p["time_faaaa"][..., None]                                      # (H, K, 1)
    outs = []
    for t in range(T):
        x = a[:, t]
        xx, prev = prev - x, x
        m = torch.tanh((x + xx * p["time_maa_x"][0, 0]) @ p["time_maa_w1"]).view(Bsz, 5, -1)
        mw, mk, mv, mr, mg = torch.einsum("bir,irc->ibc", m, p["time_maa_w2"])
        lerp = lambda name, mm: x + xx * (p[f"time_maa_{name}"][0, 0] + mm)
        r, k, v = (lerp(n, mm) @ p[f"{name}.weight"].T for n, mm, name in
                   (("r", mr, "receptance"), ("k", mk, "key"), ("v", mv, "value")))
        gate = F.silu(lerp("g", mg) @ p["gate.weight"].T)
        w = p["time_decay"][0, 0] + torch.tanh(lerp("w", mw) @ p["time_decay_w1"]) @ p["time_decay_w2"]
        r, k, v, w = (z.view(Bsz, H, K) for z in (r, k, v, torch.exp(-torch.exp(w))))
        kv = k[..., :, None] * v[..., None, :]                          # (Bsz, H, K, V)
        y = torch.einsum("bhk,bhkv->bhv", r, u * kv + S)
        S = w[..., None] * S + kv
        y = (y - y.mean(-1, keepdim=True)) / torch.sqrt(y.var(-1, unbiased=False, keepdim=True) + 64e-5)
        y = y.reshape(Bsz, C) * p["ln_x.weight"] + p["ln_x.bias"]       # GroupNorm, one group per head
        outs.append((y * gate) @ p["output.weight"].T)
    return torch.stack(outs, dim=1), prev, S


def rwkv6_channel_mix(p, a, prev):
    outs = []
    for t in range(a.shape[1]):
        x = a[:, t]
        xx, prev = prev - x, x
        k = torch.relu((x + xx * p["time_maa_k"][0, 0]) @ p["key.weight"].T) ** 2
        rr = torch.sigmoid((x + xx * p["time_maa_r"][0, 0]) @ p["receptance.weight"].T)
        outs.append(rr * (k @ p["value.weight"].T))
    return torch.stack(outs, dim=1), prev


def rwkv6_lm_reference(sd, idx, states, H):
    ln = lambda x, name: F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], 1e-5)
    x, finals = ln(sd["emb.weight"][idx], "blocks.0.ln0"), []
    for i, state in enumerate(states):
        sub = lambda pre: {k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)}
        y, att_shift, S = rwkv6_time_mix(sub(f"blocks.{i}.att."), ln(x, f"blocks.{i}.ln1"),
                                         state["att_shift"], state["S"], H)
        x = x + y
        y, ffn_shift = rwkv6_channel_mix(sub(f"blocks.{i}.ffn."), ln(x, f"blocks.{i}.ln2"), state["ffn_shift"])
        x = x + y
        finals.append({"S": S, "att_shift": att_shift, "ffn_shift": ffn_shift})
    return ln(x, "ln_out") @ sd["head.weight"].T, finals


# ------------------------------------------------------------------------------------------------------
# The loaders give the reference's logits, final states and gradients

def load(arch, tmp_path):
    """(model loaded from an official-format file, its state dict in float64 under the file's names)."""
    torch.manual_seed(0)
    if arch == "mamba1":
        sd = mamba1_state_dict()
        (tmp_path / "config.json").write_text(json.dumps(MAMBA1_CONFIG))
        torch.save(sd, tmp_path / "pytorch_model.bin")
        model = LM.from_pretrained(str(tmp_path))
    else:
        sd = rwkv6_state_dict()
        torch.save(sd, tmp_path / "rwkv6.pth")
        model = LM.from_pretrained(str(tmp_path / "rwkv6.pth"))
    model.config.scan_backend, model.config.chunk_size = "chunked", 4   # T = 11: chunks of 4, 4, 3
    sd = {k: v.double() for k, v in sd.items()}
    if arch == "mamba1":                                                 # tied: one tensor, both uses
        sd["lm_head.weight"] = sd["backbone.embedding.weight"]
    return model, sd


@pytest.mark.parametrize("arch", ["mamba1", "rwkv6"])
def test_official_file_gives_the_reference_logits_states_and_gradients(arch, tmp_path):
    model, sd = load(arch, tmp_path)
    c = model.config
    assert (c.arch, c.n_layer) == (arch, 2)
    if arch == "mamba1":
        assert (c.d_state, c.dt_rank, c.d_inner) == (16, 1, 32) and model.lm_head.weight is model.backbone.embedding.weight
    else:
        assert (c.headdim, c.maa_rank, c.decay_rank, c.dim_ffn, c.tie_embeddings) == (16, 4, 6, 64, False)
    idx = torch.randint(0, c.vocab_size, (2, 11))
    states = [{k: (0.5 * torch.randn_like(v)).requires_grad_() for k, v in layer.items()}
              for layer in model.zero_states(2)]
    logits, _, finals = model(idx, states=states)
    sd = {k: v.requires_grad_() for k, v in sd.items()}
    ref_states = [{k: v.detach().double().requires_grad_() for k, v in layer.items()} for layer in states]
    H = c.d_model // c.headdim
    ref, ref_finals = (mamba1_lm_reference(sd, idx, ref_states) if arch == "mamba1"
                       else rwkv6_lm_reference(sd, idx, ref_states, H))
    torch.testing.assert_close(logits[..., :c.vocab_size], ref[..., :c.vocab_size].float(), atol=1e-4, rtol=1e-4)
    for final, ref_final in zip(finals, ref_finals):
        assert final.keys() == ref_final.keys()
        for key in final:
            torch.testing.assert_close(final[key], ref_final[key].float(), atol=1e-4, rtol=1e-4)

    # gradients: of one scalar of the logits and the final states, for every weight and initial state
    torch.manual_seed(1)
    weights = torch.randn(ref.shape, dtype=torch.float64)[..., :c.vocab_size]
    finals_w = [{k: torch.randn(v.shape, dtype=torch.float64) for k, v in layer.items()} for layer in ref_finals]
    scalar = lambda lg, fs: (lg[..., :c.vocab_size] * weights.to(lg.dtype)).sum() + sum(
        (f[k] * w[k].to(f[k].dtype)).sum() for f, w in zip(fs, finals_w) for k in f)
    scalar(logits, finals).backward()
    scalar(ref, ref_finals).backward()
    ref_params = rwkv6_renamed(sd) if arch == "rwkv6" else sd           # the same tensors, LM's names
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad.float(), atol=1e-4, rtol=1e-3)
    for layer, ref_layer in zip(states, ref_states):
        for key in layer:
            torch.testing.assert_close(layer[key].grad, ref_layer[key].grad.float(), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("arch", ["mamba1", "rwkv6"])
def test_streaming_in_pieces_equals_one_pass(arch, tmp_path):
    model, _ = load(arch, tmp_path)
    idx = torch.randint(0, model.config.vocab_size, (2, 19))
    with torch.no_grad():
        full, _, full_states = model(idx)
        pieces, states = [], None
        for a, b in ((0, 1), (1, 8), (8, 19)):                          # one token, then off the chunks
            out, _, states = model(idx[:, a:b], states=states)
            pieces.append(out)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-4)
    for s, f in zip(states, full_states):
        for key in f:
            torch.testing.assert_close(s[key], f[key], atol=1e-5, rtol=1e-4)


def test_loader_errors(tmp_path):
    torch.manual_seed(0)
    sd = mamba1_state_dict()
    del sd["backbone.layers.1.mixer.x_proj.weight"]
    (tmp_path / "config.json").write_text(json.dumps(MAMBA1_CONFIG))
    torch.save(sd, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="missing keys:\n  backbone.layers.1.mixer.x_proj.weight"):
        LM.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(MAMBA1_CONFIG | {"ssm_cfg": {"headdim": 8}}))
    with pytest.raises(ValueError, match="unknown keys ssm_cfg.headdim \\(for a Mamba1 model\\)"):
        LM.from_pretrained(str(tmp_path))
    rwkv5 = {k: v for k, v in rwkv6_state_dict().items() if "maa_w" not in k}   # RWKV-5: no data-dependent mix
    torch.save(rwkv5, tmp_path / "v5.pth")
    with pytest.raises(ValueError, match="not an RWKV-6 .*blocks.0.att.time_maa_w2"):
        LM.from_pretrained(str(tmp_path / "v5.pth"))
    with pytest.raises(FileNotFoundError, match="no_such.pth not found"):
        LM.from_pretrained(str(tmp_path / "no_such.pth"))


# ------------------------------------------------------------------------------------------------------
# End to end: train.py with every intervention, then the measures, on each new architecture

@pytest.mark.parametrize("arch", ["mamba1", "rwkv6"])
def test_train_with_every_intervention_then_measure(arch, corpus, tmp_path, capsys):
    import effrem
    from test_train import INTERVENTIONS, run_train, tiny
    for intervention in INTERVENTIONS:
        out = run_train(tiny(corpus, tmp_path / intervention, arch=arch, intervention=intervention,
                             max_iters=3, eval_interval=3, eval_iters=1, final_eval_seqs=2), capsys)
        assert f"training {arch} with intervention '{intervention}'" in out
        assert "state std (all layers)" in out                # evaluate.py's state statistics, per head
    model = LM.from_pretrained(str(tmp_path / "state_passing")).eval()
    assert model.config.arch == arch
    x = torch.randint(0, 256, (2, 33))
    remembrance = effrem.effective_remembrance(model, x, [1, 8, 31])
    assert remembrance.shape == (3,) and bool(((0 <= remembrance) & (remembrance <= 1)).all())


def test_evaluate_an_official_rwkv6_file_with_the_world_tokenizer(tmp_path):
    """evaluate.py on a .pth in BlinkDL's format: T_train read from the file's name, the world
    vocabulary given by path; without it, an error that says where to get it, before any work."""
    import subprocess
    import sys

    import data
    from conftest import write_world_vocab
    torch.manual_seed(0)
    pth = tmp_path / "RWKV-x060-World-tiny-ctx8.pth"
    torch.save(rwkv6_state_dict(vocab=60), pth)
    tokens = [bytes([b]) for b in b"abcdefghij "] + [b"ab", b"abc", b"cd", b" a", b"j j", b"hij"]
    vocab = write_world_vocab(tmp_path / data.WORLD_VOCAB, tokens)       # ids 1..17 of the 60
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):                      # 4 documents: one is held out (data.VAL_FRACTION)
        (corpus / f"doc{i}.txt").write_bytes(bytes(rng.choice(list(b"abcdefghij "), 300).tolist()))
    args = [sys.executable, "evaluate.py", f"--checkpoints={pth}", f"--corpus={corpus}",
            f"--data_dir={tmp_path / 'data'}", "--seq_len=64", "--n_seqs=4", "--batch_size=2",
            "--chunk_len=16", "--smooth=4", "--threads=1", f"--out_dir={tmp_path / 'eval'}"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and f"download {data.WORLD_VOCAB}" in proc.stderr, proc.stderr
    proc = subprocess.run(args + [f"--tokenizer={vocab}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "eval" / "results.json").read_text())["checkpoints"][0]
    assert (result["T_train"], result["L"]) == (8, 64) and np.isfinite(result["loss_full"]).all()

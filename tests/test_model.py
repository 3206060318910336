"""Tests for model.py: loading mamba_ssm's checkpoint format, the mixers against per-token transcriptions of
their equations, streaming with carried states, generation, and training."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from model import ARCHS, LM, ModelConfig

# A tiny Mamba-2 in mamba_ssm's config.json format. ngroups = 2, so two heads share each B and C.
OFFICIAL_CONFIG = {
    "d_model": 32, "d_intermediate": 0, "n_layer": 2, "vocab_size": 50,
    "ssm_cfg": {"layer": "Mamba2", "d_state": 16, "headdim": 16, "ngroups": 2, "chunk_size": 8},
    "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True,
    "fused_add_norm": True, "pad_vocab_size_multiple": 16, "tie_embeddings": True,
}


def tiny(arch, **kw):
    kw = dict(arch=arch, vocab_size=50, d_model=32, n_layer=2, d_state=16, headdim=16, chunk_size=8,
              scan_backend="chunked") | kw
    return ModelConfig(**kw)


def official_state_dict(n_layer=2, d=32, H=4, P=16, N=16, G=2, vocab=64, d_conv=4):
    """Random weights under the keys and shapes of mamba_ssm's MambaLMHeadModel, written out by hand.
    Every parameter is away from its usual init (D != 1, norms != 1, ...) so that none can be ignored."""
    d_inner, conv_dim = H * P, H * P + 2 * G * N
    emb = 0.5 * torch.randn(vocab, d)
    sd = {"backbone.embedding.weight": emb}
    for i in range(n_layer):
        p = f"backbone.layers.{i}."
        sd[p + "norm.weight"] = 1 + 0.2 * torch.randn(d)
        sd[p + "mixer.in_proj.weight"] = torch.randn(2 * d_inner + 2 * G * N + H, d) / math.sqrt(d)
        sd[p + "mixer.conv1d.weight"] = 0.4 * torch.randn(conv_dim, 1, d_conv)
        sd[p + "mixer.conv1d.bias"] = 0.2 * torch.randn(conv_dim)
        sd[p + "mixer.dt_bias"] = torch.randn(H) - 1
        sd[p + "mixer.A_log"] = torch.empty(H).uniform_(1, 16).log()
        sd[p + "mixer.D"] = torch.randn(H)
        sd[p + "mixer.norm.weight"] = 1 + 0.2 * torch.randn(d_inner)
        sd[p + "mixer.out_proj.weight"] = torch.randn(d, d_inner) / math.sqrt(d_inner)
    sd["backbone.norm_f.weight"] = 1 + 0.2 * torch.randn(d)
    sd["lm_head.weight"] = emb   # tied, and saved under both names, as mamba_ssm's checkpoints are
    return sd


def write_checkpoint(path, config=OFFICIAL_CONFIG, state_dict=None):
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    torch.save(official_state_dict() if state_dict is None else state_dict, path / "pytorch_model.bin")
    return path


# ------------------------------------------------------------------------------------------------------
# Per-token transcriptions of the equations, independent of model.py's code

def rms(x, w, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def mamba2_reference(p, u, N, P, G, conv=None, S=None, eps=1e-5):
    """The Mamba-2 mixer one token at a time, from mamba_ssm's parameters p (keys as in mixer.*).
    u: (B, T, d). conv: (B, conv_dim, d_conv - 1) past conv inputs; S: (B, H, P, N), mamba_ssm's layout."""
    Bsz, T, _ = u.shape
    H = p["A_log"].numel()
    W = p["conv1d.weight"][:, 0]                                   # (conv_dim, d_conv)
    conv = torch.zeros(Bsz, W.shape[0], W.shape[1] - 1) if conv is None else conv
    S = torch.zeros(Bsz, H, P, N) if S is None else S
    A = -torch.exp(p["A_log"])
    ys = []
    for t in range(T):
        z, xBC, dt = (u[:, t] @ p["in_proj.weight"].T).split([H * P, W.shape[0], H], dim=-1)
        window = torch.cat([conv, xBC[:, :, None]], dim=2)          # the last d_conv conv inputs
        conv = window[:, :, 1:]
        x, Bt, Ct = F.silu((window * W).sum(-1) + p["conv1d.bias"]).split([H * P, G * N, G * N], dim=-1)
        x = x.view(Bsz, H, P)
        # head h reads group h // (H / G)
        Bt = Bt.view(Bsz, G, 1, N).expand(Bsz, G, H // G, N).reshape(Bsz, H, N)
        Ct = Ct.view(Bsz, G, 1, N).expand(Bsz, G, H // G, N).reshape(Bsz, H, N)
        dt = F.softplus(dt + p["dt_bias"])                           # (B, H)
        S = torch.exp(dt * A)[..., None, None] * S + (dt[..., None] * x)[..., None] * Bt[:, :, None, :]
        y = (S * Ct[:, :, None, :]).sum(-1) + p["D"][:, None] * x  # C_t^T h_t + D x_t
        y = y.reshape(Bsz, H * P) * F.silu(z)                        # gate, then RMSNorm per group
        y = rms(y.view(Bsz, G, -1), p["norm.weight"].view(G, -1), eps).reshape(Bsz, H * P)
        ys.append(y @ p["out_proj.weight"].T)
    return torch.stack(ys, dim=1), conv, S


def mamba2_lm_reference(sd, idx, n_layer, **kw):
    x = sd["backbone.embedding.weight"][idx]
    for i in range(n_layer):
        pre = f"backbone.layers.{i}.mixer."
        p = {k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)}
        x = x + mamba2_reference(p, rms(x, sd[f"backbone.layers.{i}.norm.weight"], 1e-5), **kw)[0]
    return rms(x, sd["backbone.norm_f.weight"], 1e-5) @ sd["lm_head.weight"].T


def gla_reference(m, x, S, H, normalizer=16, eps=1e-6):
    """fla's GatedLinearAttention one token at a time, from the module m's weights. S: (B, H, K, V)."""
    Bsz, T, _ = x.shape
    outs = []
    for t in range(T):
        xt = x[:, t]
        q, k, v, gate = (xt @ lin.weight.T for lin in (m.q_proj, m.k_proj, m.v_proj, m.g_proj))
        gk = F.logsigmoid(m.gk_proj[1](m.gk_proj[0](xt))) / normalizer
        q, k, gk = (a.view(Bsz, H, -1) for a in (q, k, gk))
        v, gate = v.view(Bsz, H, -1), gate.view(Bsz, H, -1)
        S = gk.exp()[..., None] * S + k[..., None] * v[..., None, :]
        o = ((q * q.shape[-1] ** -0.5)[..., None] * S).sum(-2)
        o = rms(o, m.g_norm.weight, eps) * F.silu(gate)
        outs.append(o.reshape(Bsz, -1) @ m.o_proj.weight.T)
    return torch.stack(outs, dim=1), S


# ------------------------------------------------------------------------------------------------------
# Loading the official format

def test_from_pretrained_gives_the_reference_logits(tmp_path):
    torch.manual_seed(0)
    sd = official_state_dict()
    model = LM.from_pretrained(str(write_checkpoint(tmp_path / "ckpt", state_dict=sd)))
    assert model.config.d_state == 16 and model.config.ngroups == 2 and model.config.chunk_size == 8
    assert model.lm_head.weight is model.backbone.embedding.weight
    idx = torch.randint(0, 50, (2, 20))
    with torch.no_grad():
        logits = model(idx)[0]
    assert logits.shape == (2, 20, 64)   # vocab 50 padded to a multiple of 16
    torch.testing.assert_close(logits, mamba2_lm_reference(sd, idx, 2, N=16, P=16, G=2), atol=1e-4, rtol=1e-4)


def _drop(sd, *keys):
    return {k: v for k, v in sd.items() if k not in keys}


@pytest.mark.parametrize("corrupt, error, messages", [
    ("missing_dir", FileNotFoundError, ["no checkpoint directory"]),
    ("no_config", FileNotFoundError, ["config.json not found"]),
    ("no_weights", FileNotFoundError, ["pytorch_model.bin not found"]),
    ("missing_keys", ValueError, ["missing keys", "backbone.layers.1.mixer.D", "backbone.norm_f.weight"]),
    ("unexpected_keys", ValueError, ["unexpected keys", "backbone.layers.2.norm.weight"]),
    ("shape", ValueError, ["backbone.layers.0.mixer.A_log", "(5,)", "(4,)"]),
    ("ssm_cfg_key", ValueError, ["unknown keys", "ssm_cfg.d_stat"]),
    ("layer", ValueError, ["ssm_cfg.layer is 'Mamba3'", "expected Mamba1 or Mamba2"]),
    ("d_ssm", ValueError, ["d_ssm"]),
])
def test_from_pretrained_errors(tmp_path, corrupt, error, messages):
    torch.manual_seed(0)
    sd, config = official_state_dict(), json.loads(json.dumps(OFFICIAL_CONFIG))
    path = tmp_path / "ckpt"
    if corrupt == "missing_keys":
        sd = _drop(sd, "backbone.layers.1.mixer.D", "backbone.norm_f.weight")
    elif corrupt == "unexpected_keys":
        sd["backbone.layers.2.norm.weight"] = torch.ones(32)
    elif corrupt == "shape":
        sd["backbone.layers.0.mixer.A_log"] = torch.zeros(5)
    elif corrupt == "ssm_cfg_key":
        config["ssm_cfg"]["d_stat"] = 16
    elif corrupt == "layer":
        config["ssm_cfg"]["layer"] = "Mamba3"
    elif corrupt == "d_ssm":
        config["ssm_cfg"]["d_ssm"] = 32
    if corrupt != "missing_dir":
        write_checkpoint(path, config, sd)
    if corrupt == "no_config":
        (path / "config.json").unlink()
    elif corrupt == "no_weights":
        (path / "pytorch_model.bin").unlink()
    with pytest.raises(error) as info:
        LM.from_pretrained(str(path))
    for message in messages:
        assert message in str(info.value)


def test_hub_id_without_network_says_how_to_load_locally(monkeypatch, tmp_path):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(OSError, match="no network.*pass that directory"):
        LM.from_pretrained("state-spaces/mamba2-130m")


def test_config_errors():
    with pytest.raises(ValueError, match="unknown arch 'rwkv'"):
        ModelConfig(arch="rwkv")
    with pytest.raises(ValueError, match="unknown scan_backend"):
        ModelConfig(scan_backend="cuda")


# ------------------------------------------------------------------------------------------------------
# The mixers against their equations

def test_mamba2_mixer_matches_its_equations():
    torch.manual_seed(0)
    model = LM(tiny("mamba2", ngroups=2))
    mixer = model.backbone.layers[0].mixer
    with torch.no_grad():   # move the parameters that init sets to constants
        for p in (mixer.D, mixer.norm.weight, mixer.conv1d.bias, mixer.dt_bias):
            p.add_(0.3 * torch.randn_like(p))
    u = torch.randn(2, 20, 32)
    conv, S = 0.5 * torch.randn(2, mixer.conv_dim, 3), 0.5 * torch.randn(2, 4, 16, 16)   # S: (B, H, N, P)
    p = {k: v.detach() for k, v in mixer.state_dict().items()}
    y_ref, conv_ref, S_ref = mamba2_reference(p, u, N=16, P=16, G=2, conv=conv, S=S.transpose(-1, -2))
    with torch.no_grad():
        y, state = mixer(u, {"conv": conv, "S": S})
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(state["conv"], conv_ref)
    torch.testing.assert_close(state["S"], S_ref.transpose(-1, -2), atol=1e-5, rtol=1e-4)


def test_gla_mixer_matches_its_equations():
    torch.manual_seed(0)
    mixer = LM(tiny("gla")).backbone.layers[0].mixer
    with torch.no_grad():
        mixer.g_norm.weight.add_(0.3 * torch.randn(8))
        mixer.gk_proj[1].bias.add_(torch.randn(16))
    x, S = torch.randn(2, 20, 32), 0.5 * torch.randn(2, 4, 4, 8)
    y_ref, S_ref = gla_reference(mixer, x, S, H=4)
    with torch.no_grad():
        y, state = mixer(x, {"S": S})
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(state["S"], S_ref, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------------------
# States, streaming and generation

@pytest.mark.parametrize("arch", ["mamba2", "gla"])
@pytest.mark.parametrize("pieces", [[8, 24], [5, 20, 7], [13, 7]])   # chunk size 8: on and off its multiples
def test_streaming_equals_one_pass(arch, pieces):
    torch.manual_seed(0)
    model = LM(tiny(arch))
    idx = torch.randint(0, 50, (2, sum(pieces)))
    with torch.no_grad():
        full, _, full_states = model(idx)
        logits, states, t = [], None, 0
        for n in pieces:
            out, _, states = model(idx[:, t:t + n], states=states)
            logits.append(out)
            t += n
    torch.testing.assert_close(torch.cat(logits, dim=1), full, atol=1e-5, rtol=1e-4)
    for a, b in zip(states, full_states):
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["mamba2", "gla"])
def test_zero_states_layout(arch):
    torch.manual_seed(0)
    model = LM(tiny(arch))
    states = model.zero_states(3)
    if arch == "mamba2":
        assert [tuple(s["conv"].shape) for s in states] == [(3, 64 + 2 * 16, 3)] * 2
        assert [tuple(s["S"].shape) for s in states] == [(3, 4, 16, 16)] * 2    # (B, H, d_state, headdim)
    else:
        assert [set(s) for s in states] == [{"S"}] * 2
        assert [tuple(s["S"].shape) for s in states] == [(3, 4, 4, 8)] * 2      # (B, H, head_k, head_v)
    idx = torch.randint(0, 50, (3, 11))
    with torch.no_grad():
        a, _, states_a = model(idx, states=states)
        b, _, states_b = model(idx)
    torch.testing.assert_close(a, b)
    assert all(s["S"].dtype == torch.float32 for s in states_b)


@pytest.mark.parametrize("arch", ARCHS)
def test_scan_backends_agree(arch):
    torch.manual_seed(0)
    model = LM(tiny(arch))
    idx = torch.randint(0, 50, (2, 20))
    with torch.no_grad():
        chunked = model(idx)[0]
        model.config.scan_backend = "ref"
        ref = model(idx)[0]
    torch.testing.assert_close(chunked, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_is_greedy_argmax_of_full_forwards(arch):
    torch.manual_seed(0)
    model = LM(tiny(arch))
    prompt = torch.randint(0, 50, (2, 5))
    out = model.generate(prompt, max_new_tokens=8)
    expected = prompt
    with torch.no_grad():
        for _ in range(8):
            logits = model(expected)[0][:, -1, :50]
            expected = torch.cat([expected, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, expected)
    sampled = model.generate(prompt, max_new_tokens=4, temperature=1.0, top_k=5)
    assert sampled.shape == (2, 9) and int(sampled.max()) < 50


# ------------------------------------------------------------------------------------------------------
# Training

@pytest.mark.parametrize("arch", ARCHS)
def test_loss_is_finite_and_falls(arch):
    torch.manual_seed(0)
    model = LM(tiny(arch))
    data = torch.randint(0, 50, (4, 33))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        _, loss, _ = model(data[:, :-1], targets=data[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.5, losses


# ------------------------------------------------------------------------------------------------------
# Bad inputs fail at once, naming the file or the setting

@pytest.mark.parametrize("name", ["no_such_dir", "./no_such_dir", "/no/such/dir", "~/no_such_dir", "a/b/c",
                                  "tests/no_such_run"])   # "tests" exists: a misspelt local path, no hub id
def test_path_like_names_fail_at_once(name, monkeypatch):
    import huggingface_hub
    def no_hub(*args, **kw):
        raise AssertionError(f"{name!r} was sent to the hub")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
        LM.from_pretrained(name)


@pytest.mark.parametrize("text, messages", [
    ("{not json", ["config.json is not valid JSON"]),
    (json.dumps(OFFICIAL_CONFIG | {"d_model": "32"}), ["config.json", "d_model = '32'", "int"]),
    (json.dumps(OFFICIAL_CONFIG | {"n_layer": 0}), ["config.json", "n_layer = 0", "> 0"]),
    (json.dumps(OFFICIAL_CONFIG | {"ssm_cfg": {**OFFICIAL_CONFIG["ssm_cfg"], "headdim": 0}}), ["headdim = 0"]),
    (json.dumps(OFFICIAL_CONFIG | {"ssm_cfg": {**OFFICIAL_CONFIG["ssm_cfg"], "d_state": 1.5}}), ["d_state = 1.5"]),
    (json.dumps(OFFICIAL_CONFIG | {"tie_embeddings": "yes"}), ["tie_embeddings = 'yes'", "bool"]),
    ("[1, 2]", ["config.json", "JSON object"]),
], ids=["not-json", "str-int", "zero-layers", "zero-headdim", "float-int", "str-bool", "not-object"])
def test_invalid_config_json_names_the_file(tmp_path, text, messages):
    path = write_checkpoint(tmp_path / "ckpt")
    (path / "config.json").write_text(text)
    with pytest.raises(ValueError) as info:
        LM.from_pretrained(str(path))
    for message in messages:
        assert message in str(info.value)
    assert str(path) in str(info.value)


def test_token_ids_outside_the_vocabulary():
    model = LM(tiny("mamba2")).eval()   # vocab_size 50, padded to 56
    for bad in (50, 55, 1000, -1):
        with pytest.raises(ValueError, match="token ids must lie in \\[0, vocab_size = 50\\)"):
            model(torch.tensor([[1, 2, bad]]))
    model(torch.tensor([[0, 49]]))   # the edges are fine

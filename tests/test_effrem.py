"""effrem.py: the distances against their formulas and hand values, EffRem against plain forward passes and on a
model with a known receptive field, LM.forward(last_only=True), and the command line end to end."""
import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import effrem
from conftest import tiny_lm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("one_thread")


def last_probs(model, x):
    """q(.|x) from a plain forward over the whole of x, over the tokenizer's vocabulary. x: (B, n)."""
    with torch.no_grad():
        logits, _, _ = model(x)
    return F.softmax(logits[:, -1, :model.config.vocab_size].double(), dim=-1)


# ------------------------------------------------------------------------------------------------------
# The distances (eq. 3 and appendix G)

def test_distances_against_their_formulas():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(7), size=5), rng.dirichlet(np.ones(7), size=5)
    q[:, 0] = 0                                  # a zero probability: 0 log 0 = 0
    q /= q.sum(1, keepdims=True)
    for i in range(5):
        a, b = p[i], q[i]
        m = (a + b) / 2
        kl = lambda x: sum(xi * math.log2(xi / mi) for xi, mi in zip(x, m) if xi > 0)
        expected = {"tv": 0.5 * sum(abs(a - b)),
                    "js": math.sqrt(0.5 * kl(a) + 0.5 * kl(b)),
                    "cosine": 1 - a @ b / math.sqrt((a @ a) * (b @ b))}
        for d, value in expected.items():
            got = effrem.distance_between(torch.tensor(a), torch.tensor(b), d)
            assert got.item() == pytest.approx(value, abs=1e-12), d
    batched = effrem.distance_between(torch.tensor(p), torch.tensor(q), "js")   # (..., V) -> (...)
    assert batched.shape == (5,) and batched.dtype == torch.float64


@pytest.mark.parametrize("d", ["tv", "js", "cosine"])
def test_distances_hand_values(d):
    p = torch.tensor([0.2, 0.3, 0.5, 0.0], dtype=torch.float64)
    assert effrem.distance_between(p, p, d).item() == pytest.approx(0, abs=1e-7)       # identical
    a, b = torch.tensor([0.5, 0.5, 0, 0]), torch.tensor([0, 0, 0.25, 0.75])
    disjoint = effrem.distance_between(a, b, d)
    assert disjoint.item() == pytest.approx(1, abs=1e-12)                               # disjoint supports


def test_unknown_distance():
    with pytest.raises(ValueError, match="unknown distance 'kl': expected one of tv, js, cosine"):
        effrem.distance_between(torch.ones(2) / 2, torch.ones(2) / 2, "kl")
    with pytest.raises(ValueError, match="expected one of tv, js, cosine"):
        effrem.effective_remembrance(tiny_lm(), torch.zeros(1, 8, dtype=torch.long), [1], "kl")


# ------------------------------------------------------------------------------------------------------
# EffRem_T(t)

@pytest.mark.parametrize("chunk_len", [5, 64])   # the context streamed in pieces, or in one call
def test_effrem_equals_plain_forward_passes(chunk_len):
    model = tiny_lm(1)
    x, ts = torch.randint(0, 50, (3, 24)), [0, 1, 5, 16, 23]
    got = effrem.remembrance_per_sequence(model, x, ts, ("tv", "js", "cosine"), chunk_len)
    q_full = last_probs(model, x)
    for i, t in enumerate(ts):
        q_t = last_probs(model, x[:, t:])
        for d in ("tv", "js", "cosine"):
            torch.testing.assert_close(got[d][:, i], effrem.distance_between(q_full, q_t, d), atol=2e-6, rtol=0)
    assert (got["tv"][:, 0] < 1e-6).all()            # t = 0: the whole context, no difference
    mean = effrem.effective_remembrance(model, x, ts, "tv", chunk_len)
    per_seq = effrem.effective_remembrance(model, x, ts, "tv", chunk_len, per_sequence=True)
    assert mean.shape == (5,) and per_seq.shape == (3, 5)
    torch.testing.assert_close(mean, per_seq.mean(0))


def test_effrem_of_a_model_that_sees_only_the_last_k_tokens():
    """A Mamba-2 whose S forgets everything at every step (exp(dt * A) underflows to 0): each layer sees
    only its conv window of d_conv = 4 inputs, so the prediction depends on the last k = 2 * 3 + 1 = 7 tokens
    and EffRem_T(t) = 0 for t <= T - k, while dropping any of those k tokens changes it."""
    model = tiny_lm(2)
    with torch.no_grad():
        for block in model.backbone.layers:
            block.mixer.A_log.fill_(math.log(100.0))   # A = -100
            block.mixer.dt_bias.fill_(20.0)            # dt ~ 20: g = dt * A ~ -2000
    T, k = 20, 7
    x = torch.randint(0, 50, (4, T))
    ts = list(range(T))
    for d in ("tv", "js", "cosine"):
        e = effrem.effective_remembrance(model, x, ts, d)
        assert e[:T - k + 1].abs().max() < 1e-6, d                  # t <= T - k: nothing remembered
        assert (e[T - k + 1:] > 1e-4).all(), d                      # t > T - k: the window is cut


def test_bad_t():
    with pytest.raises(ValueError, match="every t must lie in \\[0, T - 1\\] = \\[0, 7\\]"):
        effrem.effective_remembrance(tiny_lm(), torch.zeros(1, 8, dtype=torch.long), [3, 8])


def test_default_ts_are_log_spaced_in_1_to_T_minus_1():
    ts = effrem.default_ts(256)
    assert ts[0] == 1 and ts[-1] == 255 and ts == sorted(set(ts)) and 15 <= len(ts) <= 20
    ratios = np.diff(np.log(ts[-8:]))
    assert ratios.max() < 1.2 * ratios.min()


# ------------------------------------------------------------------------------------------------------
# model.py: LM.forward(last_only=True)

@pytest.mark.parametrize("arch", ["mamba2", "gla"])
def test_forward_last_only(arch):
    model = tiny_lm(3, arch=arch)
    x = torch.randint(0, 50, (2, 11))
    with torch.no_grad():
        full, _, states = model(x)
        last, loss, last_states = model(x, targets=x[:, -1:], last_only=True)
    assert last.shape == (2, 1, full.shape[-1])
    torch.testing.assert_close(last, full[:, -1:])
    for s, s2 in zip(states, last_states):
        for key in s:
            torch.testing.assert_close(s[key], s2[key])
    torch.testing.assert_close(loss, F.cross_entropy(full[:, -1], x[:, -1]))


# ------------------------------------------------------------------------------------------------------
# The command line, end to end

def test_cli_writes_json_and_figures(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):   # 4 documents of 300 bytes: one is held out
        (corpus / f"doc{i}.txt").write_bytes(bytes(rng.integers(97, 123, 300).tolist()))
    model = tiny_lm(4, vocab_size=256, d_model=16, headdim=8, d_state=8)
    run = tmp_path / "run"
    run.mkdir()
    config = dict(block_size=8, intervention="tbtt", corpus=str(corpus), tokenizer="bytes",
                  data_dir=str(tmp_path / "data"), init_from="scratch")
    torch.save(dict(model=model.state_dict(), model_config=dataclasses.asdict(model.config), config=config),
               run / "ckpt.pt")
    (run / "config.json").write_text(json.dumps(config))
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "effrem.py", f"--checkpoints={run}", "--n_seqs=3", "--batch_size=2",
                           "--chunk_len=16", "--ts=1,5,31", "--threads=1", f"--out_dir={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "effrem.png").stat().st_size > 1000 and (out / "effrem_distances.png").stat().st_size > 1000
    r = json.loads((out / "effrem.json").read_text())["checkpoints"][0]
    assert r["label"] == "tbtt" and r["T"] == 32 and r["ts"] == [1, 5, 31]   # T = 4 * T_train
    for d in ("tv", "js", "cosine"):
        assert len(r[d]["mean"]) == len(r["ts"]) and np.array(r[d]["per_sequence"]).shape == (3, len(r["ts"]))
        assert all(0 <= v <= 1 for v in r[d]["mean"])
    proc = subprocess.run([sys.executable, "effrem.py", f"--checkpoints={run}", "--distances=tv,kl"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unknown distance 'kl'" in proc.stderr
    proc = subprocess.run([sys.executable, "effrem.py", f"--checkpoints={run}", "--distances=,",
                           f"--out_dir={tmp_path / 'none'}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--distances names no distance" in proc.stderr
    assert "sequences" not in proc.stdout and not (tmp_path / "none").exists()   # failed before any work

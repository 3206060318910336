"""evaluate.py: the streamed and truncated losses against plain forward passes, the statistics against
hand-computable cases, the bad inputs, and the command line end to end on a fake training run."""
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import evaluate
import measure
from conftest import tiny_lm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("one_thread")


def write_run(path, model, block_size, intervention="zero", corpus="stdlib", data_dir="data"):
    """A run directory as train.py writes it: ckpt.pt and config.json."""
    path.mkdir(parents=True, exist_ok=True)
    config = dict(block_size=block_size, intervention=intervention, corpus=corpus, tokenizer="bytes",
                  data_dir=data_dir, init_from="scratch")
    model_config = dataclasses.asdict(model.config)
    torch.save(dict(model=model.state_dict(), model_config=model_config, config=config, iter_num=0),
               path / "ckpt.pt")
    (path / "config.json").write_text(json.dumps(dict(config, model_config=model_config)))
    return str(path)


def plain_losses(model, x):
    """Per-token losses (B, L - 1) of one forward pass over the whole sequence, no streaming."""
    with torch.no_grad():
        logits, _, _ = model(x[:, :-1])
    V = model.config.vocab_size
    return F.cross_entropy(logits[..., :V].transpose(1, 2), x[:, 1:], reduction="none")


# ------------------------------------------------------------------------------------------------------
# score: the full pass, streamed

@pytest.mark.parametrize("chunk_len", [8, 13, 100])   # divides L - 1 = 40, does not, longer than it
def test_streamed_losses_equal_one_pass(chunk_len):
    model = tiny_lm()
    x = torch.randint(0, 50, (3, 41))
    points = evaluate.state_points(40, 8)
    full, _, moments = evaluate.score(model, x, 8, chunk_len, points)
    torch.testing.assert_close(full, plain_losses(model, x), atol=1e-5, rtol=1e-5)
    for i, n in enumerate(points):   # the state after n tokens, from a plain pass over x[:, :n]
        with torch.no_grad():
            _, _, states = model(x[:, :n])
        S = torch.stack([s["S"] for s in states], 1).double()            # (B, n_layer, H, K, V)
        torch.testing.assert_close(moments[i, ..., 0], S.sum((0, 3, 4)), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(moments[i, ..., 1], S.pow(2).sum((0, 3, 4)), atol=1e-6, rtol=1e-5)


def test_state_points_are_log_spaced_and_hold_T_train_and_the_end():
    pts = evaluate.state_points(2047, 64)
    assert pts[0] == 1 and pts[-1] == 2047 and 64 in pts and pts == sorted(set(pts))
    assert 36 < len(pts) < 50                        # 4 per doubling over 11 doublings
    assert evaluate.state_points(40, 8) == sorted(set(evaluate.state_points(40, 8)))


# ------------------------------------------------------------------------------------------------------
# score: the truncated context

@pytest.mark.parametrize("L", [41, 43, 44])   # P = 40, 42, 43 positions: the last block whole or cut short
@pytest.mark.parametrize("chunk_len", [8, 64])  # one window per forward call, or several
def test_truncated_is_a_window_from_zero_state(L, chunk_len):
    model, T = tiny_lm(1), 8
    x = torch.randint(0, 50, (2, L))
    full, truncated, _ = evaluate.score(model, x, T, chunk_len)
    P, half = L - 1, T // 2
    torch.testing.assert_close(truncated[:, :T], full[:, :T], rtol=0, atol=0)   # context <= T already
    for j in range(2, -(-P // half)):
        lo, hi = j * half, min((j + 1) * half, P)
        window = x[:, (j - 1) * half:hi + 1]       # T_train/2 tokens before the block, then the block
        direct = plain_losses(model, window)[:, half:]
        torch.testing.assert_close(truncated[:, lo:hi], direct, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(truncated[:, T:], full[:, T:])   # the model does use context beyond T/2


# ------------------------------------------------------------------------------------------------------
# Statistics

def test_clustered_se_by_hand():
    # one sequence per document: the usual SE of a mean, s / sqrt(n)
    v = np.array([1.0, 2.0, 4.0, 7.0])
    mean, se = measure.clustered_mean(v, np.ones(4))
    assert mean == pytest.approx(3.5) and se == pytest.approx(v.std(ddof=1) / 2)
    # documents of 2 and 1 sequences, values (1, 3) and (5): mean 3, residual sums (4 - 2*3, 5 - 3) = (-2, 2)
    mean, se = measure.clustered_mean(np.array([4.0, 5.0]), np.array([2.0, 1.0]))
    assert mean == pytest.approx(3.0) and se == pytest.approx(math.sqrt(2 / 1 * 8) / 3)
    assert np.isnan(measure.clustered_mean(np.array([4.0]), np.array([2.0]))[1])   # one document: unknown


def test_smoothed_keeps_lines_and_is_centred():
    a = 3.0 + 0.5 * np.arange(50)
    s = evaluate.smoothed(a, 8)
    np.testing.assert_allclose(s[:46], a[:46])              # a centred average leaves a line unchanged
    np.testing.assert_allclose(s[-1], a[-5:].mean())        # the end: the last 5 positions
    spike = np.zeros(50)
    spike[25] = 9.0
    s = evaluate.smoothed(spike, 8)                          # window of 9: spread evenly over 21..29
    np.testing.assert_allclose(s[21:30], 1.0)
    assert s[:21].sum() == 0 and s[30:].sum() == 0


def test_smoothed_never_crosses_the_cut():
    a = np.where(np.arange(64) < 16, 5.0, 2.0)                # a step at t = 16
    s = evaluate.smoothed(a, 32, cut=16)
    np.testing.assert_allclose(s, a)                          # each side averaged apart: the step stays sharp
    assert evaluate.smoothed(a, 32)[20] > 2.0                 # without the cut, the high side leaks past it


def curves(shape, n_docs=40, T=16, P=255, noise=0.01, seed=0):
    """Per-document sums (one sequence per document) of constructed loss curves: shape(t) + noise, with a
    high first position (~5 nats, as a real model's t = 0)."""
    t = np.arange(P)
    base = shape(t) + np.where(t == 0, 3.0, 0.0)
    rng = np.random.default_rng(seed)
    return base + noise * rng.standard_normal((n_docs, P)), np.ones(n_docs)


@pytest.mark.parametrize("name, shape, generalizes", [
    ("flat", lambda t: 2.0 + 0 * t, True),
    ("falls", lambda t: 3.0 - 0.002 * t, True),
    ("rises 0.05 beyond T", lambda t: 2.0 + 0.05 * (t >= 16), False),
    ("rises 0.05 from 4T on", lambda t: 2.0 + 0.05 * (t >= 64), False),
])
def test_def32_verdict_on_constructed_curves(name, shape, generalizes):
    sums, counts = curves(shape)
    v = evaluate.def32_verdict(sums, counts, 16)
    assert v["length_generalizes"] is generalizes, (name, v)
    assert v["p_star"] == pytest.approx(math.exp(shape(np.arange(8, 16)).mean()), rel=1e-2)  # [T/2, T) only
    if not generalizes:
        assert "[4T, 8T)" in v["buckets_above"] and "[8T, 16T)" in v["buckets_above"]


def test_too_few_documents_decide_nothing():
    sums, counts = curves(lambda t: 2.0 + 0.05 * (t >= 16), n_docs=1)
    v = evaluate.def32_verdict(sums, counts, 16)
    assert v["length_generalizes"] is None and "undecided" in v["why"]
    buckets = [dict(name="[T, 2T)", start=16, excess=0.02, se_excess=float("nan"))]
    v = evaluate.paired_verdict(buckets, 16, n_docs=1)
    assert v["length_generalizes"] is None and "undecided" in v["why"]


def test_paired_verdict():
    T = 16
    calm = [dict(name="[T, 2T)", start=16, excess=0.001, se_excess=0.001)]     # within 2 SE of zero
    hurt = calm + [dict(name="[2T, 4T)", start=32, excess=0.01, se_excess=0.002)]
    before = [dict(name="[T/2, T)", start=8, excess=0.5, se_excess=0.001)]     # inside T: not judged
    assert evaluate.paired_verdict(calm + before, T, 40) == dict(failing_buckets=[], length_generalizes=True,
                                                                  why="")
    v = evaluate.paired_verdict(hurt, T, 40)
    assert not v["length_generalizes"] and v["failing_buckets"] == ["[2T, 4T)"]


def test_the_rise_is_paired_per_sequence():
    """bucket_means' rise: each sequence's bucket mean minus its own mean over [T, 4T), averaged; a
    document whose whole curve is shifted up does not move it."""
    sums, counts = curves(lambda t: 2.0 + 0.1 * (t >= 128), n_docs=12, noise=0.0)
    sums[3] += 1.0                                            # one document's text is harder everywhere
    rows = evaluate.bucket_means({"full": sums}, counts, 16)
    by = {r["name"]: r for r in rows}
    assert by["[8T, 16T)"]["rise"] == pytest.approx(0.1) and by["[8T, 16T)"]["se_rise"] < 1e-9
    assert by["[T, 2T)"]["rise"] == pytest.approx(0.0) and by["[T, 2T)"]["full"] == pytest.approx(2 + 1 / 12)


def test_bucket_edges_and_names():
    assert evaluate.bucket_edges(64, 2047) == [(0, 32), (32, 64), (64, 128), (128, 256), (256, 512),
                                               (512, 1024), (1024, 2048)]
    assert [evaluate.in_T(a, 64) for a in (0, 32, 64, 128, 1024)] == ["0", "T/2", "T", "2T", "16T"]


def test_evaluate_checkpoint_means_are_plain_means():
    model, T = tiny_lm(2), 8
    seqs = torch.randint(0, 50, (5, 33))
    doc_ids = torch.tensor([3, 3, 7, 9, 9])
    r = evaluate.evaluate_checkpoint(model, seqs, doc_ids, T, chunk_len=8, batch_size=2, n_drift_heads=3)
    plain = plain_losses(model, seqs).double().numpy()
    _, truncated, _ = evaluate.score(model, seqs, T, 64)
    np.testing.assert_allclose(r["loss_full"], plain.mean(0), atol=1e-5)
    np.testing.assert_allclose(r["loss_truncated"], truncated.double().numpy().mean(0), atol=1e-5)
    np.testing.assert_allclose(r["excess"], r["loss_full"] - r["loss_truncated"], atol=1e-9)
    for b in r["buckets"]:
        assert b["full"] == pytest.approx(plain[:, b["start"]:b["end"]].mean(), abs=1e-5)
    assert [b["name"] for b in r["buckets"]] == ["[0, T/2)", "[T/2, T)", "[T, 2T)", "[2T, 4T)"]
    assert r["n_docs"] == 3 and r["state_std_heads"].shape == (2, 4, len(r["state_t"]))
    assert len(r["drifting_heads"]) == 3 and r["state_std"][-1] > 0


# ------------------------------------------------------------------------------------------------------
# Bad inputs

def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        measure.checkpoint_info(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no such directory"):
        measure.checkpoint_info("out-that-was-never-trained")
    with pytest.raises(FileNotFoundError, match="neither ckpt.pt"):
        measure.checkpoint_info(str(tmp_path))
    with pytest.raises(ValueError, match="shorter than 2 \\* T_train = 128"):
        evaluate.check_length(100, 64)
    with pytest.raises(ValueError, match="odd"):
        evaluate.check_length(100, 7)
    with pytest.raises(ValueError, match="shorter than"):
        evaluate.evaluate_checkpoint(tiny_lm(), torch.zeros(2, 15, dtype=torch.long), torch.zeros(2), 8)


def test_checkpoint_info_of_a_run_and_of_an_official_checkpoint(tmp_path):
    run = write_run(tmp_path / "run", tiny_lm(), 8, "state_passing", corpus="c", data_dir="d")
    info = measure.checkpoint_info(run)
    assert (info["label"], info["T_train"], info["corpus"], info["data_dir"]) == ("state_passing", 8, "c", "d")
    official = tmp_path / "official"
    official.mkdir()
    (official / "pytorch_model.bin").write_bytes(b"")
    info = measure.checkpoint_info(str(official))
    assert (info["T_train"], info["tokenizer"], info["label"]) == (2048, "gpt-neox", str(official))
    assert measure.checkpoint_info("state-spaces/mamba2-130m")["T_train"] == 2048   # nothing downloaded yet
    # BlinkDL's RWKV-6 files: the context from the file's name, else 4096; the world tokenizer
    for name, T in (("RWKV-x060-World-1B6-v2.1-20240328-ctx4096.pth", 4096), ("mine-ctx512.pth", 512),
                    ("rwkv6.pth", 4096)):
        (tmp_path / name).write_bytes(b"")
        info = measure.checkpoint_info(str(tmp_path / name))
        assert (info["T_train"], info["tokenizer"]) == (T, "rwkv-world")
    with pytest.raises(FileNotFoundError, match="no-such.pth not found"):
        measure.checkpoint_info(str(tmp_path / "no-such.pth"))


def test_labels_of_several_checkpoints(tmp_path):
    a = write_run(tmp_path / "a", tiny_lm(), 8, "zero")
    b = write_run(tmp_path / "b", tiny_lm(), 8, "zero")
    c = write_run(tmp_path / "c", tiny_lm(), 8, "state_passing")
    names = ",".join(map(str, (a, b, c)))
    # by intervention, and by directory where two runs share one
    assert [i["label"] for i in measure.checkpoint_infos(names)] == [f"zero ({a})", f"zero ({b})", "state_passing"]
    assert [i["label"] for i in measure.checkpoint_infos(names, "base,ctl,sp")] == ["base", "ctl", "sp"]
    with pytest.raises(ValueError, match="2 labels for 3 checkpoints"):
        measure.checkpoint_infos(names, "base,ctl")
    # issue 23: a trailing comma, accepted in checkpoints, is accepted in labels; one checkpoint twice is refused
    assert [i["label"] for i in measure.checkpoint_infos(names + ",", "base,ctl,sp,")] == ["base", "ctl", "sp"]
    with pytest.raises(ValueError, match=f"{a} is given twice in --checkpoints"):
        measure.checkpoint_infos(f"{a},{b},{a}/")


def test_a_run_s_files_are_checked_before_any_work(tmp_path):
    # issue 23, cases 7 and 9: a config.json from another run, one missing a key, a damaged ckpt.pt, and
    # a checkpoint trained with another tokenizer than the held-out text's
    a = write_run(tmp_path / "a", tiny_lm(), 8, "zero")
    b = write_run(tmp_path / "b", tiny_lm(), 16, "tbtt")
    (tmp_path / "a" / "config.json").write_bytes((tmp_path / "b" / "config.json").read_bytes())
    with pytest.raises(ValueError, match=r"a/config.json and .*a/ckpt.pt come from different runs \(they differ "
                                         r"in block_size, intervention\)"):
        measure.checkpoint_info(a)
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    del cfg["block_size"]
    (tmp_path / "b" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"b/config.json lacks 'block_size': it was not written by train.py"):
        measure.checkpoint_info(b)
    c = write_run(tmp_path / "c", tiny_lm(), 8)
    (tmp_path / "c" / "ckpt.pt").write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match=r"c/ckpt.pt cannot be read \(\w+\): it is damaged") as e:
        measure.checkpoint_info(c)
    assert "weights_only" not in str(e.value)
    infos = [dict(name="bpe-run", tokenizer=str(tmp_path / "bpe" / "tokenizer.json")), dict(name="x", tokenizer=None)]
    with pytest.raises(ValueError, match=r"bpe-run was trained with the tokenizer .*bpe/tokenizer.json', and the "
                                         r"held-out text is tokenized with 'bytes'"):
        measure.check_tokenizers(infos, "bytes")
    (tmp_path / "bpe").mkdir()
    measure.check_tokenizers(infos, str(tmp_path / "bpe"))   # its folder names the same file: accepted


# ------------------------------------------------------------------------------------------------------
# The command line, end to end

def test_cli_writes_results_and_figures(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):   # 4 documents: one is held out (data.VAL_FRACTION), 300 bytes each
        (corpus / f"doc{i}.txt").write_bytes(bytes(rng.integers(97, 123, 300).tolist()))
    runs = [write_run(tmp_path / name, tiny_lm(i, vocab_size=256, d_model=16, headdim=8, d_state=8), 8, name,
                      str(corpus), str(tmp_path / "data")) for i, name in enumerate(["zero", "state_passing"])]
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "evaluate.py", f"--checkpoints={','.join(runs)}", "--seq_len=64",
                           "--n_seqs=4", "--batch_size=2", "--chunk_len=16", "--smooth=4", "--threads=1",
                           f"--out_dir={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "at [4T, 8T): the loss rises" in proc.stdout and "def32_verdict" in proc.stdout and "paired_verdict" in proc.stdout
    for name in ("ppl.png", "state_std.png", "state_std_heads.png"):
        assert (out / name).stat().st_size > 1000
    results = json.loads((out / "results.json").read_text())
    assert [c["label"] for c in results["checkpoints"]] == ["zero", "state_passing"]
    c = results["checkpoints"][0]
    assert c["T_train"] == 8 and c["L"] == 64 and len(c["loss_full"]) == len(c["ppl_smoothed"]) == 63
    assert set(c["def32_verdict"]) >= {"p_star", "buckets_above", "length_generalizes", "why"}
    assert set(c["paired_verdict"]) == {"failing_buckets", "length_generalizes", "why"} and "vs_reference" not in c
    assert len(c["state_std"]) == len(c["state_t"]) and c["drifting_heads"]
    # a sequence too short for the training context is refused before any work
    proc = subprocess.run([sys.executable, "evaluate.py", f"--checkpoints={runs[0]}", "--seq_len=12"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "shorter than 2 * T_train = 16" in proc.stderr


@pytest.mark.parametrize("script, setting", [
    ("evaluate.py", "--n_seqs=0"), ("evaluate.py", "--batch_size=0"), ("evaluate.py", "--chunk_len=0"),
    ("evaluate.py", "--smooth=0"), ("evaluate.py", "--seq_len=-5"), ("evaluate.py", "--n_seqs=None"),
    ("effrem.py", "--n_seqs=0"), ("effrem.py", "--batch_size=0"), ("effrem.py", "--chunk_len=0"),
    ("effrem.py", "--T=-1"), ("effrem.py", "--T=1"), ("evaluate.py", "--dtype=float16"),
    ("evaluate_tasks.py", "--n_examples=0"), ("evaluate_tasks.py", "--dtype=bfloat16")]
    + ([] if torch.cuda.is_available() else [("evaluate.py", "--device=cuda"), ("effrem.py", "--device=cuda")]))
def test_out_of_range_settings_fail_at_once_naming_the_setting(script, setting):
    # checkpoints that do not exist: a setting checked later than them would report them instead
    proc = subprocess.run([sys.executable, script, setting, "--checkpoints=not-a-run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    key = setting.split("=")[0]   # the message names the setting (configurator may refuse None itself)
    assert proc.returncode != 0 and key in proc.stderr.splitlines()[-1], proc.stderr
    assert "held-out sequences" not in proc.stdout                      # before any work


def test_a_misspelt_checkpoint_is_reported_missing_not_the_tokenizer(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path))   # as on a machine with no network
    proc = subprocess.run([sys.executable, "evaluate.py", "--checkpoints=nothere/x"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "'nothere/x' is not a local directory" in proc.stderr, proc.stderr
    assert "GPT-NeoX" not in proc.stderr


def test_score_truncated_of_a_sequence_with_no_block_beyond_the_second():
    model, T = tiny_lm(1), 8
    x = torch.randint(0, 50, (2, 9))   # P = 8 = 2 blocks of T/2: nothing beyond T_train
    assert evaluate.score_truncated(model, x, T, 64, evaluate.nullcontext()).shape == (2, 0)
    full, truncated, _ = evaluate.score(model, x, T, 64)
    torch.testing.assert_close(truncated, full, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------------
# The second measure: the full-context loss against a reference model's, paired per token

def test_a_model_against_itself_differs_by_exactly_zero():
    model, T = tiny_lm(2), 8
    seqs, doc_ids = torch.randint(0, 50, (5, 33)), torch.tensor([3, 3, 7, 9, 9])
    runs = [evaluate.evaluate_checkpoint(model, seqs, doc_ids, T, chunk_len=8, batch_size=2)
            for _ in range(2)]                                     # two separate evaluations of one model
    _, counts = measure.clusters(doc_ids)
    vs = evaluate.paired_difference(runs[0]["full_by_document"], runs[1]["full_by_document"], counts, T)
    assert (vs["diff"] == 0).all() and (vs["se_diff"] == 0).all()
    assert all(b["diff"] == 0 and b["se_diff"] == 0 for b in vs["buckets"])


def test_paired_difference_against_plain_forward_passes():
    T, seqs = 8, torch.randint(0, 50, (5, 33))
    doc_ids = [3, 3, 7, 9, 9]
    a, b = tiny_lm(2), tiny_lm(5)
    runs = [evaluate.evaluate_checkpoint(m, seqs, torch.tensor(doc_ids), T, chunk_len=8, batch_size=2)
            for m in (a, b)]
    _, counts = measure.clusters(doc_ids)
    vs = evaluate.paired_difference(runs[0]["full_by_document"], runs[1]["full_by_document"], counts, T)
    d = (plain_losses(a, seqs) - plain_losses(b, seqs)).double().numpy()     # (5, 32) per token
    np.testing.assert_allclose(vs["diff"], d.mean(0), atol=1e-5)
    for bucket in vs["buckets"]:   # per-sequence bucket means, then the clustered SE written out by hand
        m = d[:, bucket["start"]:bucket["end"]].mean(1)
        mean = m.mean()
        per_doc = {g: [m[i] for i in range(5) if doc_ids[i] == g] for g in (3, 7, 9)}
        resid = [sum(v) - len(v) * mean for v in per_doc.values()]
        se = math.sqrt(3 / 2 * sum(r * r for r in resid)) / 5
        assert bucket["diff"] == pytest.approx(mean, abs=1e-5) and bucket["se_diff"] == pytest.approx(se, abs=1e-5)
    assert abs(vs["buckets"][-1]["diff"]) > 1e-3                      # two different models do differ


def test_with_reference(tmp_path):
    a, b, c = (write_run(tmp_path / n, tiny_lm(), 8, n) for n in ("zero", "state_passing", "tbtt"))
    infos = measure.checkpoint_infos(f"{a},{b}")
    assert measure.with_reference(infos, "") == (infos, None)
    assert measure.with_reference(infos, b + "/") == (infos, 1)          # one of them: evaluated once
    more, i = measure.with_reference(infos, c)                          # another: evaluated after them
    assert i == 2 and more[:2] == infos and more[2]["label"] == f"{c} (reference)"


def test_cli_with_a_reference(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        (corpus / f"doc{i}.txt").write_bytes(bytes(rng.integers(97, 123, 300).tolist()))
    runs = [write_run(tmp_path / name, tiny_lm(i, vocab_size=256, d_model=16, headdim=8, d_state=8), 8, name,
                      str(corpus), str(tmp_path / "data")) for i, name in enumerate(["zero", "state_passing"])]
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "evaluate.py", f"--checkpoints={runs[1]}", f"--reference={runs[0]}",
                           "--seq_len=64", "--n_seqs=4", "--batch_size=2", "--chunk_len=16", "--smooth=4",
                           "--threads=1", f"--out_dir={out}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "is this model better than the reference" in proc.stdout
    assert (out / "reference.png").stat().st_size > 1000 and (out / "ppl.png").stat().st_size > 1000
    checkpoints = json.loads((out / "results.json").read_text())["checkpoints"]
    assert [c["label"] for c in checkpoints] == ["state_passing", f"{runs[0]} (reference)"]
    assert [c["is_reference"] for c in checkpoints] == [False, True]
    sp, ref = (c["vs_reference"] for c in checkpoints)
    assert all(v == 0 for v in ref["diff"]) and len(sp["diff"]) == 63
    # the paired difference is the difference of the two full-context curves, position by position
    np.testing.assert_allclose(sp["diff"], np.subtract(checkpoints[0]["loss_full"], checkpoints[1]["loss_full"]),
                               atol=1e-5)
    assert "full_by_document" not in checkpoints[0]



@pytest.mark.parametrize("script, length, started", [("evaluate.py", "--seq_len=16384", "evaluating "),
                                                     ("effrem.py", "--T=4096", "Effective Remembrance of")])
def test_ctrl_c_ends_a_measure_with_one_line(script, length, started, tmp_path):
    # not a 40-line traceback; the process still ends by SIGINT, so a shell script running it stops too
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):   # one is held out, long enough for the long sequences that keep the measure busy
        (corpus / f"doc{i}.txt").write_bytes(bytes(rng.integers(97, 123, 20_000).tolist()))
    run = write_run(tmp_path / "run", tiny_lm(vocab_size=256, d_model=16, headdim=8, d_state=8), 8, "zero",
                    str(corpus), str(tmp_path / "data"))
    proc = subprocess.Popen([sys.executable, script, f"--checkpoints={run}", length, "--n_seqs=64", "--threads=1",
                             f"--out_dir={tmp_path / 'eval'}"], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=os.environ | {"PYTHONUNBUFFERED": "1"},
                            # a job started in the background inherits SIGINT ignored, and Python then keeps
                            # it so: give the script the terminal's default, as a command typed there has
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:
        if line.startswith(started):
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT and "Traceback" not in err, err
    assert err.strip() == f"{script}: stopped by Ctrl-C. It writes its results at the end: run it again for them"
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("script", ["evaluate.py", "effrem.py", "evaluate_tasks.py"])
def test_an_out_dir_that_cannot_be_written_fails_before_any_work(script, tmp_path):
    # issue 23, case 5: out_dir was made only after all the scoring, which a file in its place then lost
    run = write_run(tmp_path / "run", tiny_lm(), 8)
    (tmp_path / "file").write_text("in the way")
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    for out_dir, message in ((tmp_path / "file", "Not a directory"), (tmp_path / "link", "gone, which does not exist")):
        proc = subprocess.run([sys.executable, script, f"--checkpoints={run}", f"--out_dir={out_dir}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and "out_dir" in proc.stderr.splitlines()[-1] and message in proc.stderr
        assert "held-out" not in proc.stdout and "evaluating" not in proc.stdout         # before any work

"""
Does a checkpoint length-generalize? Position-wise perplexity (paper Def. 3.1), the verdict of Def. 3.2,
and the statistics of the recurrent state over time (sec. 3.5, figs. 4 and 9), on held-out sequences far
longer than the training context T_train.

    python evaluate.py --checkpoints=out-baseline,out-sp          # L = 32 * T_train, on the CPU
    python evaluate.py --checkpoints=state-spaces/mamba2-130m --seq_len=32768 --corpus=... --device=cuda

Positions: position t (0-based) is the prediction of token t + 1 from x[0:t+1]; a sequence of L tokens has
L - 1 of them, and training saw positions t < T_train. Losses are in nats per token, and the position-wise
perplexity is exp of the mean loss at t (README.md, "Measuring", says why not the mean of perplexities).

Every position is scored twice:
  full       with all of its context. Each sequence is streamed in chunks of chunk_len tokens with the
             recurrent state carried from chunk to chunk, so memory does not grow with L.
  truncated  with between T_train/2 and T_train tokens of context: positions t < T_train already have at
             most T_train; block j >= 2 of T_train/2 positions is scored in a window of T_train tokens that
             starts from a zero state T_train/2 positions before it. Windows starting at even and at odd
             multiples of T_train/2 are two staggered streams, each restarted every T_train tokens.
The raw curve slopes down with t on text by itself (more context helps); the excess, full - truncated, takes
that out: > 0 where the long context hurts, i.e. where the model fails to length-generalize.

Writes to out_dir: results.json (every number below, per checkpoint), ppl.png (figs. 1 top and 5, and the
excess), state_std.png (fig. 4) and state_std_heads.png (fig. 9).
"""
import json
import math
import os
import resource
import time
from contextlib import nullcontext

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import data
from configurator import configure
from model import LM, checkpoint_files, is_hub_id

# -----------------------------------------------------------------------------
# the settings shared with effrem.py (it imports them from here)
checkpoints = "out"     # comma-separated: train.py out_dirs, official checkpoint directories or hub ids
labels = ""             # comma-separated names for the curves; "": each run's intervention
out_dir = "eval"        # where the JSON and the figures go
batch_size = 16         # sequences that go through the model together
corpus = ""             # "": the first checkpoint's (official checkpoints: "stdlib")
tokenizer = ""          # "": the first checkpoint's (official checkpoints: "gpt-neox")
data_dir = ""           # "": the first checkpoint's, else "data"
seed = 0                # which held-out sequences
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
threads = 0             # CPU threads for torch; 0 = torch's default (1 where other jobs share the cores)
# evaluate.py's own
seq_len = 0             # L, tokens per sequence; 0: 32 * T_train of the first checkpoint
n_seqs = 256            # held-out sequences (the README's tables use 256)
chunk_len = 256         # tokens per forward call while streaming: sets the memory, never the result
smooth = 32             # positions in the moving average behind the Def. 3.2 verdict and the curves
n_drift_heads = 4       # heads singled out in fig. 9: those whose state std changes most after T_train
if __name__ == "__main__":   # imported (by effrem.py, by the tests) it keeps these defaults
    config = configure(globals())
# -----------------------------------------------------------------------------

OFFICIAL_T_TRAIN = 2048   # the official Mamba-2 checkpoints' training context (paper sec. B.1)
DTYPES = ("float32", "bfloat16", "float16")


def check_settings(settings, positive=(), non_negative=()):
    """Before any work: each setting named in `positive` is an integer > 0, in `non_negative` >= 0, and
    dtype is one of DTYPES. settings: the dict configure() returned."""
    for name in (*positive, *non_negative):
        value, least = settings[name], 1 if name in positive else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"--{name}={value!r}: must be an integer >= {least}")
    if settings["dtype"] not in DTYPES:
        raise ValueError(f"--dtype={settings['dtype']!r}: expected one of {', '.join(DTYPES)}")


def checkpoint_info(name):
    """What the evaluation needs to know about a checkpoint, read without loading it: {name, label,
    T_train, corpus, tokenizer, data_dir, fingerprint} (the data settings None where it does not say)."""
    if os.path.isdir(name):
        if os.path.isfile(os.path.join(name, "ckpt.pt")):       # a run of train.py
            path = os.path.join(name, "config.json")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} not found: train.py writes it beside ckpt.pt")
            with open(path) as f:
                cfg = json.load(f)
            return dict(name=name, label=cfg["intervention"], T_train=cfg["block_size"],
                        corpus=cfg["corpus"], tokenizer=cfg["tokenizer"], data_dir=cfg["data_dir"],
                        fingerprint=cfg.get("corpus_fingerprint"))
        if not os.path.isfile(os.path.join(name, "pytorch_model.bin")):
            raise FileNotFoundError(f"{name} holds neither ckpt.pt (a run of train.py) nor "
                                    f"pytorch_model.bin (an official checkpoint)")
    elif not is_hub_id(name):
        raise FileNotFoundError(f"checkpoint {name!r} not found: no such directory. Pass a train.py out_dir, "
                                f"a directory with config.json and pytorch_model.bin, or a hub id such as "
                                f"state-spaces/mamba2-130m")
    # an official checkpoint (a hub id is only downloaded by fetch_official, which says if it cannot)
    return dict(name=name, label=name, T_train=OFFICIAL_T_TRAIN, corpus=None, tokenizer="gpt-neox",
                data_dir=None, fingerprint=None)


def checkpoint_infos(checkpoints, labels=""):
    """checkpoint_info of each comma-separated checkpoint, labelled by `labels` (comma-separated, one per
    checkpoint) or else by its intervention, and by its directory where two runs share one."""
    infos = [checkpoint_info(name) for name in checkpoints.split(",") if name]
    if not infos:
        raise ValueError("no checkpoints given: --checkpoints=out_dir1,out_dir2,...")
    given = labels.split(",") if labels else [i["label"] for i in infos]
    if len(given) != len(infos):
        raise ValueError(f"{len(given)} labels for {len(infos)} checkpoints: give one label per checkpoint")
    for info, label in zip(infos, given):
        info["label"] = label if labels or given.count(label) == 1 else f"{label} ({info['name']})"
    return infos


def fetch_official(infos):
    """Download every hub id among the checkpoints (or find it in the hub's cache) before the data is
    prepared: a misspelt name is reported as a missing checkpoint, not as a tokenizer that cannot load."""
    for info in infos:
        if not os.path.isdir(info["name"]):
            checkpoint_files(info["name"])


def load_model(name, device):
    """LM.from_pretrained in eval mode; the scan backend is chosen for this device, not the training one."""
    model = LM.from_pretrained(name)
    model.config.scan_backend = "auto"   # one config object, shared by every mixer
    return model.to(device).eval()


def load_held_out(info, corpus, tokenizer, data_dir):
    """The prepared corpus: the settings given, else those of the checkpoint described by `info`."""
    corpus = corpus or info["corpus"] or "stdlib"
    tokenizer = tokenizer or info["tokenizer"] or "gpt-neox"
    return data.load(data.prepare(corpus, tokenizer, data_dir or info["data_dir"] or "data"))


def each_model(infos, held_out, device):
    """The checkpoints' (info, model) in turn, each checked against the held-out corpus; the caller deletes
    each model before the next is loaded, so that one is in memory at a time."""
    for info in infos:
        model = load_model(info["name"], device)
        if model.config.vocab_size < held_out.vocab_size:
            raise ValueError(f"{info['name']} has a vocabulary of {model.config.vocab_size}, the corpus's "
                             f"tokenizer {held_out.vocab_size}: evaluate with the tokenizer it was trained on")
        if info["tokenizer"] not in (None, held_out.meta["tokenizer"]):
            print(f"warning: {info['name']} was trained with tokenizer {info['tokenizer']!r}")
        if info["corpus"] is not None:   # a run of train.py: was it trained on this corpus?
            for w in data.check_corpus(info["fingerprint"], held_out, info["name"]):
                print(f"warning: {w}")
        yield info, model
        del model


def check_length(L, T_train):
    if T_train % 2:
        raise ValueError(f"T_train = {T_train} is odd: the truncated context is cut into blocks of T_train/2")
    if L < 2 * T_train:
        raise ValueError(f"seq_len = {L} is shorter than 2 * T_train = {2 * T_train}: nothing would lie "
                         f"beyond the training context (use 16-64 x T_train)")


def state_points(P, T_train, per_octave=8):
    """Where the state statistics are taken, in tokens read: `per_octave` log-spaced points per doubling (the
    figures' position axis is logarithmic), plus T_train (the last state training saw) and P (the end)."""
    pts = np.round(2.0 ** (np.arange(int(per_octave * math.log2(P)) + 1) / per_octave)).astype(int)
    return sorted({int(p) for p in pts if p < P} | {T_train, P})


def token_losses(logits, targets, V):
    """Cross-entropy per token in nats, over the tokenizer's V ids (the embedding's padding rows left out).
    logits: (B, n, padded vocab), targets: (B, n) -> (B, n) float32."""
    return F.cross_entropy(logits[..., :V].flatten(0, 1).float(), targets.flatten(),
                           reduction="none").view(targets.shape)


@torch.no_grad()
def score(model, x, T_train, chunk_len=256, points=(), ctx=nullcontext()):
    """Per-token losses of x, full and truncated, and the state's moments along the full pass.

    x: (B, L) token ids. Returns full, truncated: (B, L - 1) float32 (nats; position t predicts x[:, t + 1]),
    and moments: (len(points), n_layer, H, 2) float64, per layer and head the sum and the sum of squares of
    the elements of S (B, H, K, V) after points[i] tokens: the state h of sec. 2.2, not the conv history.
    """
    full, moments = score_full(model, x, chunk_len, points, ctx)
    truncated = full.clone()                     # positions t < T_train: their context is already <= T_train
    truncated[:, T_train:] = score_truncated(model, x, T_train, chunk_len, ctx)
    return full, truncated, moments


def score_full(model, x, chunk_len, points, ctx):
    """The full-context pass, streamed in chunks with the state carried: full (B, L - 1), moments."""
    (B, L), V = x.shape, model.config.vocab_size
    P = L - 1
    inputs, targets = x[:, :-1], x[:, 1:]
    full = torch.empty(B, P, device=x.device)
    H = model.zero_states(1)[0]["S"].shape[1]
    moments = torch.zeros(len(points), model.config.n_layer, H, 2, dtype=torch.float64)
    cuts = sorted({*range(chunk_len, P, chunk_len), *(p for p in points if p < P), P})  # chunk ends
    states, start = None, 0
    for cut in cuts:
        with ctx:
            logits, _, states = model(inputs[:, start:cut], states=states)
        full[:, start:cut] = token_losses(logits, targets[:, start:cut], V)
        if cut in points:
            S = torch.stack([s["S"] for s in states], dim=1).double()   # (B, n_layer, H, K, V)
            moments[points.index(cut)] = torch.stack([S.sum((0, 3, 4)), S.pow(2).sum((0, 3, 4))], -1).cpu()
        start = cut
    return full, moments


def score_truncated(model, x, T_train, chunk_len, ctx):
    """The losses at positions T_train .. L - 2 with T_train/2 to T_train tokens of context: (B, L - 1 - T_train).

    Positions are cut into blocks of half = T_train/2. Block j >= 2, positions [j*half, (j+1)*half), is read
    in window j - 1: the T_train + 1 tokens x[(j-1)*half : (j+1)*half + 1], from a zero state; of the window's
    T_train losses, the last `half` are block j's. The windows have one length and are independent, so they
    go through the model in batches, about as many tokens per call as the full pass (2 L tokens in all)."""
    (B, L), V = x.shape, model.config.vocab_size
    P, half = L - 1, T_train // 2
    n_blocks = -(-P // half)                                    # the last block may be cut short by the end
    if n_blocks <= 2:
        return x.new_empty(B, 0, dtype=torch.float32)
    # pad the end so that the last window is whole: the padding only feeds losses past P, dropped below
    padded = F.pad(x, (0, n_blocks * half + 1 - L))            # (B, n_blocks * half + 1)
    starts = range(half, (n_blocks - 1) * half, half)          # window j - 1 starts at (j - 1) * half
    windows = torch.stack([padded[:, s:s + T_train + 1] for s in starts], dim=1)   # (B, n_windows, T + 1)
    windows = windows.flatten(0, 1)                            # sequence 0's windows in order, then 1's...
    # one tensor written in place, not a list of pieces (README.md, "Measuring": the memory stays flat in L)
    block_losses = torch.empty(len(windows), half, device=x.device)
    windows_per_call = max(1, B * chunk_len // T_train)
    for i in range(0, len(windows), windows_per_call):
        w = windows[i:i + windows_per_call]                   # (n, T_train + 1)
        with ctx:
            logits, _, _ = model(w[:, :-1])
        block_losses[i:i + len(w)] = token_losses(logits[:, half:], w[:, half + 1:], V)
    by_position = block_losses.view(B, -1)                     # (B, (n_blocks - 2) * half): t = T_train, ...
    return by_position[:, :P - T_train]                        # the padding's positions dropped


def clusters(doc_ids):
    """Sequences grouped by their document, for standard errors clustered by document. doc_ids: (n,) ->
    cluster: (n,) each sequence's document as 0 .. G - 1, counts: (G,) float64 sequences per document."""
    _, cluster = np.unique(np.asarray(doc_ids), return_inverse=True)
    return cluster, np.bincount(cluster).astype(np.float64)


def document_sums(values, cluster, G):
    """Per-document sums of per-sequence values: values (n, ...), cluster (n,) in 0 .. G - 1 -> (G, ...)."""
    sums = np.zeros((G, *values.shape[1:]))
    np.add.at(sums, cluster, values)
    return sums


def clustered_mean(sums, counts):
    """Mean over sequences and its standard error clustered by document (sequences of one document are
    correlated). sums: (G, ...) per-document sums over its sequences; counts: (G,) sequences per document.
    SE^2 = G / (G - 1) * sum_g (sums_g - counts_g * mean)^2 / n^2, n = sum_g counts_g (NaN if G == 1)."""
    G, n = len(counts), counts.sum()
    mean = sums.sum(0) / n
    resid = sums - counts.reshape(-1, *[1] * (sums.ndim - 1)) * mean
    se = np.sqrt(G / (G - 1) * (resid ** 2).sum(0)) / n if G > 1 else np.full_like(mean, np.nan)
    return mean, se


def smoothed(a, width, grow=0.0):
    """Moving average over about `width` positions: position t averages a[t-h .. t+h], h = min(width // 2, t),
    so the window narrows towards t = 0 and the steep start of the curve is not smeared across it; at the end
    of the sequence the window is cut short (the last position averages width // 2 + 1 positions). With
    grow > 0, h is at least grow * t: the figures use grow = 1/32 (windows of ~t/16), since on a log axis a
    fixed window looks ever noisier to the right, where each pixel spans more positions."""
    t = np.arange(len(a))
    h = np.minimum(np.maximum(width // 2, (grow * t).astype(int)), t)
    lo, hi = t - h, np.minimum(t + h, len(a) - 1)
    c = np.concatenate([[0.0], np.cumsum(a)])
    return (c[hi + 1] - c[lo]) / (hi - lo + 1)


def verdict(loss, T_train, width, buckets):
    """Def. 3.2, literally and paired. loss: (P,) mean loss per position; buckets: as in evaluate_checkpoint.

    Literally: t* and p* are the argmin and min of the position-wise perplexity over the training positions
    t < T_train, smoothed over `width` positions (per position the SE is ~0.1 nats with 256 sequences of
    bytes, more than the effects sought; 32 positions bring it to ~0.02), and the model length-generalizes
    if the curve stays at or below p* beyond T_train. On text with a few dozen held-out documents this is
    fragile: which tokens happen to sit at which positions moves the raw curve by more than the failure
    does (a model that does not fail can sit above p* at most positions), and any noise crosses p*.
    Paired: the same question with the content of each position taken out. The truncated loss of the very
    same tokens, with T_train/2 to T_train tokens of context, is what the model achieves within its
    training context; the model fails if, in some bucket beyond T_train, the full context is worse than that
    by more than two clustered standard errors. This decides the printed verdict."""
    s = smoothed(loss, width)
    t_star = int(np.argmin(s[:T_train]))
    above = s[T_train:] > s[t_star]
    first = int(T_train + np.argmax(above)) if above.any() else None
    failing = [b["name"] for b in buckets if b["start"] >= T_train and b["excess"] > 2 * b["se_excess"]]
    return dict(t_star=t_star, p_star=float(np.exp(s[t_star])), first_above=first,
                fraction_above=float(above.mean()), smooth=width, failing_buckets=failing,
                length_generalizes=not failing)


def bucket_edges(T, P):
    """Log-spaced position buckets [0, T/2), [T/2, T), [T, 2T), [2T, 4T), ... covering the P positions."""
    edges = [0, T // 2, T]
    while edges[-1] < P:
        edges.append(2 * edges[-1])
    return list(zip(edges[:-1], edges[1:]))


def in_T(a, T):
    """A bucket edge as a multiple of T: 0, T/2, T, 2T, 4T, ..."""
    return {0: "0", T // 2: "T/2", T: "T"}.get(a, f"{a // T}T")


def evaluate_checkpoint(model, seqs, doc_ids, T_train, chunk_len=256, batch_size=16, width=32,
                        n_drift_heads=4, ctx=nullcontext(), device="cpu", label=""):
    """Everything per checkpoint. seqs: (n, L) token ids, doc_ids: (n,) their documents. Returns a dict of
    per-position means and clustered SEs (full, truncated, excess), buckets, verdict and state statistics."""
    L = seqs.shape[1]
    check_length(L, T_train)
    cluster, counts = clusters(doc_ids)
    points = state_points(L - 1, T_train)
    sums, moments = score_by_document(model, seqs, cluster, len(counts), T_train, chunk_len, batch_size,
                                      points, ctx, device, label)
    r = dict(T_train=T_train, L=L, n_seqs=len(seqs), n_docs=len(counts))
    for k in ("full", "truncated"):
        r[f"loss_{k}"], r[f"se_{k}"] = clustered_mean(sums[k], counts)
    sums["excess"] = sums["full"] - sums["truncated"]   # linear: per-document sums of the differences
    r["excess"], r["se_excess"] = clustered_mean(sums["excess"], counts)
    r["buckets"] = bucket_means(sums, counts, T_train)
    r["verdict"] = verdict(r["loss_full"], T_train, width, r["buckets"])
    n_el = len(seqs) * model.zero_states(1)[0]["S"][0, 0].numel()                # B * K * V per head
    r.update(state_statistics(moments, n_el, points, T_train, n_drift_heads))
    return r


def score_by_document(model, seqs, cluster, G, T_train, chunk_len, batch_size, points, ctx, device, label):
    """score() over seqs in batches -> per-document sums {"full", "truncated"}: (G, L - 1) each (memory
    O(G L), whatever the number of sequences), and the state moments summed over every sequence."""
    P = seqs.shape[1] - 1
    sums = {"full": np.zeros((G, P)), "truncated": np.zeros((G, P))}
    moments, t0 = 0.0, time.time()
    for i in range(0, len(seqs), batch_size):
        x = seqs[i:i + batch_size].to(device)
        full, truncated, m = score(model, x, T_train, chunk_len, points, ctx)
        sums["full"] += document_sums(full.cpu().double().numpy(), cluster[i:i + batch_size], G)
        sums["truncated"] += document_sums(truncated.cpu().double().numpy(), cluster[i:i + batch_size], G)
        moments = moments + m
        done, dt = i + len(x), time.time() - t0
        print(f"  {label}: {done}/{len(seqs)} sequences, {3 * done * P / dt:,.0f} tokens/s "
              f"(full + truncated), {dt / done * (len(seqs) - done):.0f}s left")
    return sums, moments


def bucket_means(sums, counts, T_train):
    """One row per position bucket: for each series in sums (name -> (G, P) per-document sums), the mean
    over the bucket's positions and sequences, and its SE clustered by document."""
    P = next(iter(sums.values())).shape[1]
    rows = []
    for a, b in bucket_edges(T_train, P):
        row = dict(start=a, end=b, name=f"[{in_T(a, T_train)}, {in_T(b, T_train)})")
        for k, s in sums.items():
            mean, se = clustered_mean(s[:, a:min(b, P)].mean(1), counts)   # per-sequence bucket means
            row[k], row[f"se_{k}"] = float(mean), float(se)
        rows.append(row)
    return rows


def state_statistics(moments, n_el, points, T_train, n_drift_heads):
    """Sec. 3.5: the std of S over (batch, K, V) per layer and head, and over every element of every layer
    (fig. 4), from the moments of score(); n_el = B * K * V elements per head. Singles out the heads whose
    std changes most between T_train and the end (fig. 9)."""
    mean_lh, sq_lh = moments[..., 0].numpy() / n_el, moments[..., 1].numpy() / n_el   # (points, n_layer, H)
    std_lh = np.sqrt(np.maximum(sq_lh - mean_lh ** 2, 0))
    mean_all, sq_all = mean_lh.mean((1, 2)), sq_lh.mean((1, 2))
    r = dict(state_t=points, state_std=np.sqrt(np.maximum(sq_all - mean_all ** 2, 0)),
             state_std_heads=std_lh.transpose(1, 2, 0))                          # (n_layer, H, points)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = std_lh[-1] / std_lh[points.index(T_train)]                        # (n_layer, H): end / T_train
    r["drift_ratio"] = ratio
    order = np.argsort(-np.nan_to_num(np.abs(np.log(ratio)), nan=-1.0), axis=None)[:n_drift_heads]
    r["drifting_heads"] = [dict(layer=int(l), head=int(h), ratio=float(ratio[l, h]))
                           for l, h in zip(*np.unravel_index(order, ratio.shape))]
    return r


def report(r, label):
    """The printout: one row per position bucket, the headline excess, the verdict, the drifting heads."""
    T = r["T_train"]
    print(f"\n{label}: T_train = {T}, L = {r['L']}, {r['n_seqs']} sequences from {r['n_docs']} documents")
    print(f"{'positions':<14} {'full':>8} {'truncated':>10}   excess = full - truncated (nats/token)")
    for b in r["buckets"]:
        print(f"{b['name']:<14} {b['full']:8.4f} {b['truncated']:10.4f}   {b['excess']:+.4f} ± {b['se_excess']:.4f}")
    head = next((b for b in r["buckets"] if b["start"] == 16 * T), r["buckets"][-1])
    print(f"==> excess at {head['name']}: {head['excess']:+.4f} ± {head['se_excess']:.4f} nats/token "
          f"(> 0: the context beyond T_train hurts)")
    v = r["verdict"]
    rises = (f"is above p* at {100 * v['fraction_above']:.0f}% of the positions beyond T_train, first at "
             f"t = {v['first_above']}" if v["first_above"] is not None else "never exceeds p* beyond T_train")
    print(f"Def. 3.2, literally (smoothed over {v['smooth']} positions): t* = {v['t_star']}, p* = {v['p_star']:.3f}; "
          f"the perplexity {rises}")
    print(f"Def. 3.2, paired: " + (f"the full context is worse than the truncated one by > 2 SE in "
          f"{', '.join(v['failing_buckets'])}: fails to length-generalize" if v["failing_buckets"] else
          "no bucket beyond T_train is worse with the full context (> 2 SE): length-generalizes"))
    s, i = r["state_std"], r["state_t"].index(T)
    print(f"state std (all layers): {s[i]:.4f} at t = T_train, {s[-1]:.4f} at t = {r['state_t'][-1]} "
          f"(x{s[-1] / s[i]:.2f}); most drifting heads (std at the end / at T_train): "
          + ", ".join(f"layer {d['layer']} head {d['head']} x{d['ratio']:.2f}" for d in r["drifting_heads"]))


def vlines(ax, results):
    """A dashed vertical line at each training context among the checkpoints."""
    for T in sorted({r["T_train"] for r in results}):
        ax.axvline(T, ls="--", color="gray", lw=1, label=f"T_train = {T}")


def plot_ppl(results, path, width):
    """Figs. 1 (top) and 5: smoothed position-wise perplexity; below it, the excess full - truncated, with
    the bucket means and their clustered SEs."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    for r in results:
        t = np.arange(1, r["L"] - 1)                   # t = 0 has no place on a log axis
        top.plot(t, r["ppl_smoothed"][1:], label=r["label"])
        line, = bottom.plot(t, r["excess_smoothed"][1:], lw=0.8, alpha=0.7)
        b = [x for x in r["buckets"] if x["start"] >= r["T_train"]]
        centres = [math.sqrt(x["start"] * min(x["end"], r["L"] - 1)) for x in b]
        bottom.errorbar(centres, [x["excess"] for x in b], [x["se_excess"] for x in b], fmt="o",
                        color=line.get_color(), capsize=3, label=f"{r['label']} (bucket means ± SE)")
    vlines(top, results)
    vlines(bottom, results)
    bottom.axhline(0, color="black", lw=0.8)
    top.set(xscale="log", ylabel=f"perplexity (moving average of max({width}, t/16) positions)",
            title="Position-wise perplexity (Def. 3.1)")
    bottom.set(xlabel="position t", ylabel="full - truncated loss (nats/token)",
               title="Excess loss of the full context over a context of T_train/2 to T_train tokens")
    top.legend(fontsize=8)
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_state_std(results, path):
    """Fig. 4: the std of the whole state (every element of every layer) against the tokens read."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        ax.plot(r["state_t"], r["state_std"], marker=".", label=r["label"])
    vlines(ax, results)
    ax.set(xscale="log", xlabel="t (tokens read)", ylabel="std of the state h_t, all layers",
           title="State statistics over time (fig. 4)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_state_heads(results, path):
    """Fig. 9: one panel per head singled out by any checkpoint, every checkpoint in each panel. Layer l, head h
    is the same head in two checkpoints only if they share their pretraining (a baseline and its post-trainings)."""
    heads = list(dict.fromkeys((d["layer"], d["head"]) for r in results for d in r["drifting_heads"]))
    cols = min(4, len(heads))
    rows = -(-len(heads) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.5 * cols, 2.8 * rows), squeeze=False)
    for ax, (l, h) in zip(axes.flat, heads):
        for r in results:
            if l < r["state_std_heads"].shape[0] and h < r["state_std_heads"].shape[1]:
                ax.plot(r["state_t"], r["state_std_heads"][l, h], label=r["label"])
        vlines(ax, results)
        ax.set(xscale="log", title=f"layer {l}, head {h}", xlabel="t (tokens read)", ylabel="std of h_t")
    for ax in axes.flat[len(heads):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("State std of the heads that drift most after T_train (fig. 9)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def to_json(x):
    """numpy -> lists of floats with 6 significant digits; NaN and inf -> null."""
    if isinstance(x, dict):
        return {k: to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_json(x.tolist())
    if isinstance(x, float):
        return float(f"{x:.6g}") if math.isfinite(x) else None
    return x


def setup(seed, threads, device, dtype):
    """Seeds torch, sets the CPU threads and returns the autocast context (bf16/fp16 on CUDA, none on the
    CPU); evaluate.py and effrem.py start the same way."""
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    if "cuda" not in device or dtype == "float32":
        return nullcontext()
    return torch.autocast("cuda", dtype=getattr(torch, dtype))


if __name__ == "__main__":
    check_settings(config, positive=("n_seqs", "batch_size", "chunk_len", "smooth", "n_drift_heads"),
                   non_negative=("seq_len", "threads"))
    infos = checkpoint_infos(checkpoints, labels)   # every error before any work
    L = seq_len or 32 * infos[0]["T_train"]
    for i in infos:
        check_length(L, i["T_train"])
    fetch_official(infos)
    ctx = setup(seed, threads, device, dtype)
    held_out = load_held_out(infos[0], corpus, tokenizer, data_dir)
    seqs, doc_ids = data.eval_sequences(held_out, n_seqs, L, seed)
    print(f"{n_seqs} held-out sequences of {L} tokens from {len(doc_ids.unique())} documents of "
          f"{held_out.meta['corpus']} ({held_out.meta['tokenizer']} tokens)")

    results = []
    for info, model in each_model(infos, held_out, device):
        print(f"evaluating {info['name']} ({info['label']}), T_train = {info['T_train']}")
        r = evaluate_checkpoint(model, seqs, doc_ids, info["T_train"], chunk_len, batch_size, smooth,
                                n_drift_heads, ctx, device, info["label"])
        results.append(dict(label=info["label"], checkpoint=info["name"], **r))
        report(r, info["label"])
        del model

    os.makedirs(out_dir, exist_ok=True)
    for r in results:   # the curves as plotted, kept in the JSON beside the raw per-position arrays
        r["ppl_smoothed"] = np.exp(smoothed(r["loss_full"], smooth, 1 / 32))
        r["excess_smoothed"] = smoothed(r["excess"], smooth, 1 / 32)
    plot_ppl(results, os.path.join(out_dir, "ppl.png"), smooth)
    plot_state_std(results, os.path.join(out_dir, "state_std.png"))
    plot_state_heads(results, os.path.join(out_dir, "state_std_heads.png"))
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(to_json(dict(settings=config, corpus=held_out.meta["corpus"],
                               positions="position t predicts token t + 1 from x[0:t+1]; losses in nats/token; "
                                         "state_t counts tokens read", checkpoints=results)), f)
    print(f"\nwrote {out_dir}/results.json, ppl.png, state_std.png, state_std_heads.png; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

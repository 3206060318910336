"""
Does a checkpoint length-generalize? Position-wise perplexity (paper Def. 3.1), the verdict of
Def. 3.2, and the statistics of the recurrent state over time (sec. 3.5, figs. 4 and 9), on held-out
sequences far longer than the training context T_train.

    python evaluate.py --checkpoints=out-baseline,out-sp          # L = 32 * T_train, on the CPU
    python evaluate.py --checkpoints=state-spaces/mamba2-130m --seq_len=32768 --corpus=... --device=cuda

Positions: position t (0-based) is the prediction of token t + 1 from x[0:t+1]; a sequence of L
tokens has L - 1 of them, and training saw positions t < T_train. Losses are in nats per token, and
the position-wise perplexity is exp of the mean loss at t (docs/measuring.md says why not the
mean of perplexities).

Every position is scored twice:
  full       with all of its context. Each sequence is streamed in chunks of chunk_len tokens with
             the recurrent state carried from chunk to chunk, so memory does not grow with L.
  truncated  with between T_train/2 and T_train tokens of context: positions t < T_train already
             have at most T_train; block j >= 2 of T_train/2 positions is scored in a window of
             T_train tokens that starts from a zero state T_train/2 positions before it. Windows
             starting at even and at odd multiples of T_train/2 are two staggered streams, each
             restarted every T_train tokens.
The sequences are windows at random offsets of the held-out stream (data.eval_sequences), so every
position holds the same kind of text and the raw curve of a model that uses its context well can
only fall with t.
Three numbers per position bucket, each paired per sequence, with standard errors clustered by the
document a window starts in (measure.py):
  rise       the full-context loss minus its mean over [T_train, 4 T_train) in the same sequence:
             > 0 where the raw curve climbs again beyond the training context, the failure of
             fig. 1 (sec. 3.1). The reference bucket is 48 positions wide, not [T, 2T)'s 16, so
             that its noise does not swamp the rise.
  excess     full - truncated: > 0 where the long context hurts, on the very same tokens. It
             answers "does the long context hurt this model?", not "which model is better": a
             model bad at short contexts has a small excess.
  vs reference (with --reference) the full-context loss minus the reference model's on the same
             tokens: "is this model better than the reference at long positions?".
Two verdicts: def32_verdict (Def. 3.2: no bucket beyond T_train above p*, the loss at the end of
the training context) and paired_verdict (no bucket beyond T_train with a positive excess); each
needs at least MIN_DOCS documents, and says "undecided" with fewer.

Writes to out_dir: results.json (every number below, per checkpoint), ppl.png (fig. 1: the
position-wise perplexity first, then the excess, then the difference from the reference),
reference.png (with --reference), state_std.png (fig. 4) and state_std_heads.png (fig. 9).
"""
import math
import os
import resource
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

import data
from configurator import configure
from figures import plot_ppl, plot_reference, plot_state_heads, plot_state_std
from measure import (check_settings, check_tokenizers, checkpoint_infos, clustered_mean, clusters,
                     document_sums, each_model, fetch_official, load_held_out, quiet_ctrl_c, setup,
                     with_reference, write_json)

# -----------------------------------------------------------------------------
# the settings effrem.py also has, with the same meanings
checkpoints = "out"     # comma-separated: train.py out_dirs, official checkpoint directories
                        # or hub ids
labels = ""             # comma-separated names for the curves; "": each run's intervention
out_dir = "eval"        # where the JSON and the figures go
batch_size = 16         # sequences that go through the model together
corpus = ""             # "": the first checkpoint's (official checkpoints: "stdlib")
tokenizer = ""          # "": the first checkpoint's (official checkpoints: "gpt-neox")
data_dir = ""           # "": the first checkpoint's, else "data"
seed = 0                # which held-out sequences
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
threads = 0             # CPU threads for torch; 0 = as many as the cores other jobs leave free
# evaluate.py's own
seq_len = 0             # L, tokens per sequence; 0: 32 * T_train of the first checkpoint
n_seqs = 256            # held-out windows (the README's tables use 256: the rise's SE
                        # is then ~0.02)
chunk_len = 64          # tokens per forward call while streaming: sets the memory and the speed,
                        # never the result (on the CPU 64 was 3x faster than 256: bench.py's
                        # per-token cost against T)
smooth = 32             # positions in the moving average of the curves (the figures only)
n_drift_heads = 4       # heads singled out in fig. 9: those whose state std changes
                        # most after T_train
reference = ""          # a checkpoint (e.g. the control run) to compare each one with,
                        # paired per token
if __name__ == "__main__":   # imported (by train.py, by the tests) it keeps these defaults
    config = configure(globals())
# -----------------------------------------------------------------------------


# -----------------------------------------------------------------------------
# the two passes over a sequence: full and truncated context


def check_length(L, T_train):
    if T_train % 2:
        raise ValueError(f"T_train = {T_train} is odd: the truncated context is cut into blocks of "
                         f"T_train/2")
    if L < 2 * T_train:
        raise ValueError(f"seq_len = {L} is shorter than 2 * T_train = {2 * T_train}: nothing "
                         f"would lie beyond the training context (use 16-64 x T_train)")


def state_points(P, T_train, per_octave=4):
    """Where the state statistics are taken, in tokens read: `per_octave` log-spaced points per
    doubling (the figures' position axis is logarithmic), plus T_train (the last state training saw)
    and P (the end)."""
    pts = np.round(2.0 ** (np.arange(int(per_octave * math.log2(P)) + 1) / per_octave)).astype(int)
    return sorted({int(p) for p in pts if p < P} | {T_train, P})


def token_losses(logits, targets, V):
    """Cross-entropy per token in nats, over the tokenizer's V ids (the embedding's padding rows
    left out). logits: (B, n, padded vocab), targets: (B, n) -> (B, n) float32."""
    return F.cross_entropy(logits[..., :V].flatten(0, 1).float(), targets.flatten(),
                           reduction="none").view(targets.shape)


@torch.no_grad()
def score(model, x, T_train, chunk_len=64, points=(), ctx=nullcontext()):
    """Per-token losses of x, full and truncated, and the state's moments along the full pass.

    x: (B, L) token ids. Returns full, truncated: (B, L - 1) float32 (nats; position t predicts
    x[:, t + 1]), and moments: (len(points), n_layer, H, 2) float64, per layer and head the sum and
    the sum of squares of the elements of S (B, H, K, V) after points[i] tokens: the state h of
    sec. 2.2, not the conv history.
    """
    full, moments = score_full(model, x, chunk_len, points, ctx)
    truncated = full.clone()   # positions t < T_train: their context is already <= T_train
    truncated[:, T_train:] = score_truncated(model, x, T_train, chunk_len, ctx)
    return full, truncated, moments


def score_full(model, x, chunk_len, points, ctx):
    """The full-context pass, streamed in chunks with the state carried:
    full (B, L - 1), moments."""
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
            moments[points.index(cut)] = torch.stack(
                [S.sum((0, 3, 4)), S.pow(2).sum((0, 3, 4))], -1).cpu()
        start = cut
    return full, moments


def score_truncated(model, x, T_train, chunk_len, ctx):
    """The losses at positions T_train .. L - 2 with T_train/2 to T_train tokens of context:
    (B, L - 1 - T_train).

    Positions are cut into blocks of half = T_train/2. Block j >= 2, positions [j*half, (j+1)*half),
    is read in window j - 1: the T_train + 1 tokens x[(j-1)*half : (j+1)*half + 1], from a zero
    state; of the window's T_train losses, the last `half` are block j's. The windows have one
    length and are independent, so they go through the model in batches, about as many tokens per
    call as the full pass (2 L tokens in all)."""
    (B, L), V = x.shape, model.config.vocab_size
    P, half = L - 1, T_train // 2
    n_blocks = -(-P // half)   # the last block may be cut short by the end
    if n_blocks <= 2:
        return x.new_empty(B, 0, dtype=torch.float32)
    # pad the end so that the last window is whole: the padding only feeds losses past
    # P, dropped below
    padded = F.pad(x, (0, n_blocks * half + 1 - L))            # (B, n_blocks * half + 1)
    starts = range(half, (n_blocks - 1) * half, half)   # window j - 1 starts at (j - 1) * half
    # (B, n_windows, T + 1)
    windows = torch.stack([padded[:, s:s + T_train + 1] for s in starts], dim=1)
    windows = windows.flatten(0, 1)   # sequence 0's windows in order, then 1's...
    # one tensor written in place, not a list of pieces (docs/measuring.md: the memory stays
    # flat in L)
    block_losses = torch.empty(len(windows), half, device=x.device)
    windows_per_call = max(1, B * chunk_len // T_train)
    for i in range(0, len(windows), windows_per_call):
        w = windows[i:i + windows_per_call]                   # (n, T_train + 1)
        with ctx:
            logits, _, _ = model(w[:, :-1])
        block_losses[i:i + len(w)] = token_losses(logits[:, half:], w[:, half + 1:], V)
    by_position = block_losses.view(B, -1)   # (B, (n_blocks - 2) * half): t = T_train, ...
    return by_position[:, :P - T_train]                        # the padding's positions dropped


# -----------------------------------------------------------------------------
# per checkpoint: means by position and bucket, the verdicts, the state's statistics, the printout


def evaluate_checkpoint(model, seqs, doc_ids, T_train, chunk_len=64, batch_size=16, n_drift_heads=4,
                        ctx=nullcontext(), device="cpu", label=""):
    """Everything per checkpoint. seqs: (n, L) token ids, doc_ids: (n,) their documents. Returns a
    dict of per-position means and clustered SEs (full, truncated, excess), buckets, the two
    verdicts and the state statistics."""
    L = seqs.shape[1]
    check_length(L, T_train)
    cluster, counts = clusters(doc_ids)
    points = state_points(L - 1, T_train)
    sums, moments = score_by_document(model, seqs, cluster, len(counts), T_train, chunk_len,
                                      batch_size, points, ctx, device, label)
    r = dict(T_train=T_train, L=L, n_seqs=len(seqs), n_docs=len(counts))
    for k in ("full", "truncated"):
        r[f"loss_{k}"], r[f"se_{k}"] = clustered_mean(sums[k], counts)
    # linear: per-document sums of the differences
    sums["excess"] = sums["full"] - sums["truncated"]
    r["excess"], r["se_excess"] = clustered_mean(sums["excess"], counts)
    r["buckets"] = bucket_means(sums, counts, T_train)
    r["def32_verdict"] = def32_verdict(sums["full"], counts, T_train)
    r["paired_verdict"] = paired_verdict(r["buckets"], T_train, len(counts))
    r["full_by_document"] = sums["full"]   # (G, P), for paired_difference; not written to JSON
    n_el = len(seqs) * model.zero_states(1)[0]["S"][0, 0].numel()   # B * K * V per head
    r.update(state_statistics(moments, n_el, points, T_train, n_drift_heads))
    return r


def score_by_document(model, seqs, cluster, G, T_train, chunk_len, batch_size, points, ctx, device,
                      label):
    """score() over seqs in batches -> per-document sums {"full", "truncated"}: (G, L - 1) each
    (memory O(G L), whatever the number of sequences), and the state moments summed
    over every sequence."""
    P = seqs.shape[1] - 1
    sums = {"full": np.zeros((G, P)), "truncated": np.zeros((G, P))}
    moments, t0 = 0.0, time.time()
    for i in range(0, len(seqs), batch_size):
        x = seqs[i:i + batch_size].to(device)
        full, truncated, m = score(model, x, T_train, chunk_len, points, ctx)
        sums["full"] += document_sums(full.cpu().double().numpy(), cluster[i:i + batch_size], G)
        sums["truncated"] += document_sums(truncated.cpu().double().numpy(),
                                           cluster[i:i + batch_size], G)
        moments = moments + m
        done, dt = i + len(x), time.time() - t0
        print(f"  {label}: {done}/{len(seqs)} sequences, {3 * done * P / dt:,.0f} tokens/s "
              f"(full + truncated), {dt / done * (len(seqs) - done):.0f}s left")
    return sums, moments


def bucket_edges(T, P):
    """Log-spaced position buckets [0, T/2), [T/2, T), [T, 2T), [2T, 4T), ... covering
    the P positions."""
    edges = [0, T // 2, T]
    while edges[-1] < P:
        edges.append(2 * edges[-1])
    return list(zip(edges[:-1], edges[1:]))


def in_T(a, T):
    """A bucket edge as a multiple of T: 0, T/2, T, 2T, 4T, ..."""
    return {0: "0", T // 2: "T/2", T: "T"}.get(a, f"{a // T}T")


RISE_FROM = (1, 4)       # the rise is measured from the mean loss over [T_train, 4 T_train)
MIN_DOCS = 10            # fewer documents than this: too few independent units for a clustered
                         # SE to decide


def bucket_means(sums, counts, T_train):
    """One row per position bucket: for each series in sums (name -> (G, P) per-document sums), the
    mean over the bucket's positions and sequences, and its SE clustered by document; and the rise
    of the full-context loss over its mean in [T_train, 4 T_train), paired per sequence."""
    P = next(iter(sums.values())).shape[1]
    a0, b0 = RISE_FROM[0] * T_train, min(RISE_FROM[1] * T_train, P)
    rows = []
    for a, b in bucket_edges(T_train, P):
        row = dict(start=a, end=b, name=f"[{in_T(a, T_train)}, {in_T(b, T_train)})")
        for k, s in sums.items():
            # per-sequence bucket means
            mean, se = clustered_mean(s[:, a:min(b, P)].mean(1), counts)
            row[k], row[f"se_{k}"] = float(mean), float(se)
        if "full" in sums:
            # linear: per-document sums of each sequence's bucket mean minus its reference
            full = sums["full"]
            row["rise"], row["se_rise"] = map(float, clustered_mean(
                full[:, a:min(b, P)].mean(1) - full[:, a0:b0].mean(1), counts))
        rows.append(row)
    return rows


def smoothed(a, width, grow=0.0, cut=None):
    """Moving average over about `width` positions: position t averages a[t-h .. t+h],
    h = min(width // 2, t), so the window narrows towards t = 0 and the steep start of the curve is
    not smeared across it; at the end of the sequence the window is cut short (the last position
    averages width // 2 + 1 positions). With grow > 0, h is at least grow * t: the figures use
    grow = 1/32 (windows of ~t/16), since on a log axis a fixed window looks ever noisier to the
    right, where each pixel spans more positions. With cut = T_train no window crosses T_train: the
    curve inside the training context (windows of at most T_train / 4) and the curve beyond it are
    averaged apart, so the early positions' high losses never leak past T_train."""
    if cut is not None and 0 < cut < len(a):
        # inside, windows of at most cut / 4: the curve still falls there
        return np.concatenate([smoothed(a[:cut], min(width, cut // 4), grow),
                               smoothed(a[cut:], width, grow)])
    t = np.arange(len(a))
    h = np.minimum(np.maximum(width // 2, (grow * t).astype(int)), t)
    lo, hi = t - h, np.minimum(t + h, len(a) - 1)
    c = np.concatenate([[0.0], np.cumsum(a)])
    return (c[hi + 1] - c[lo]) / (hi - lo + 1)


def def32_verdict(full_sums, counts, T_train):
    """Def. 3.2: t* and p* are where and how low the position-wise perplexity is at its lowest
    inside the training context; the model length-generalizes if beyond T_train it stays at or
    below p*. Per position the curve is too noisy for a minimum, so p* is the mean over
    [T_train/2, T_train), the end of the training context (on stationary windows the curve is
    lowest there), never mixed with positions < T_train/2 or >= T_train. A bucket beyond T_train
    is above p* when its loss minus the [T_train/2, T_train) loss of the same sequences exceeds two
    clustered SEs. full_sums: (G, P) per-document sums of the full-context losses; counts: (G,).
    Returns a dict; length_generalizes is None ("undecided") with fewer than MIN_DOCS documents."""
    P, half = full_sums.shape[1], T_train // 2
    loss_in = full_sums[:, half:T_train].mean(1)                        # (G,) per-document sums
    p_star = float(np.exp(loss_in.sum() / counts.sum()))
    rows = []
    for a, b in bucket_edges(T_train, P)[2:]:                          # [T, 2T), [2T, 4T), ...
        mean, se = clustered_mean(full_sums[:, a:min(b, P)].mean(1) - loss_in, counts)
        rows.append(dict(name=f"[{in_T(a, T_train)}, {in_T(b, T_train)})", above=float(mean),
                         se=float(se)))
    above = [r["name"] for r in rows if r["above"] > 2 * r["se"]]
    return dict(p_star=p_star, p_star_positions="[T/2, T)", buckets=rows, buckets_above=above,
                **_decide(above, len(counts)))


def paired_verdict(buckets, T_train, n_docs):
    """Does the long context hurt? The model fails if, in some bucket beyond T_train, its loss with
    the full context exceeds its loss on the same tokens with T_train/2 to T_train tokens of context
    (the excess) by more than two clustered standard errors. buckets: rows of bucket_means."""
    failing = [b["name"] for b in buckets
               if b["start"] >= T_train and b["excess"] > 2 * b["se_excess"]]
    return dict(failing_buckets=failing, **_decide(failing, n_docs))


def _decide(failing, n_docs):
    if n_docs < MIN_DOCS:
        return dict(length_generalizes=None,
                    why=f"undecided: {n_docs} document(s), fewer than {MIN_DOCS}, "
                        "are too few independent units for a standard error")
    return dict(length_generalizes=not failing, why="")


def state_statistics(moments, n_el, points, T_train, n_drift_heads):
    """Sec. 3.5: the std of S over (batch, K, V) per layer and head, and over every element of every
    layer (fig. 4), from the moments of score(); n_el = B * K * V elements per head. Singles out the
    heads whose std changes most between T_train and the end (fig. 9)."""
    # (points, n_layer, H)
    mean_lh, sq_lh = moments[..., 0].numpy() / n_el, moments[..., 1].numpy() / n_el
    std_lh = np.sqrt(np.maximum(sq_lh - mean_lh ** 2, 0))
    mean_all, sq_all = mean_lh.mean((1, 2)), sq_lh.mean((1, 2))
    r = dict(state_t=points, state_std=np.sqrt(np.maximum(sq_all - mean_all ** 2, 0)),
             state_std_heads=std_lh.transpose(1, 2, 0))   # (n_layer, H, points)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = std_lh[-1] / std_lh[points.index(T_train)]   # (n_layer, H): end / T_train
    r["drift_ratio"] = ratio
    order = np.argsort(-np.nan_to_num(np.abs(np.log(ratio)), nan=-1.0), axis=None)[:n_drift_heads]
    r["drifting_heads"] = [dict(layer=int(l), head=int(h), ratio=float(ratio[l, h]))
                           for l, h in zip(*np.unravel_index(order, ratio.shape))]
    return r


def signed(x, se=None):
    """+0.0123 ± 0.0045; a value that rounds to zero prints as +0.0000, never -0.0000."""
    x = 0.0 if round(x, 4) == 0 else x
    return f"{x:+.4f}" + ("" if se is None else f" ± {se:.4f}")


def verdict_line(v, failing, what):
    if v["length_generalizes"] is None:
        return v["why"]
    return (f"fails to length-generalize: {what} in {', '.join(failing)}" if failing
            else "length-generalizes: no bucket beyond T_train is worse (> 2 SE)")


def report(r, label):
    """The printout: one row per position bucket, the headline rise, the two verdicts,
    the drifting heads."""
    T = r["T_train"]
    print(f"\n{label}: T_train = {T}, L = {r['L']}, {r['n_seqs']} sequences from "
          f"{r['n_docs']} documents")
    print(f"{'positions':<14} {'full':>8} {'truncated':>10}   {'rise = full - [T, 4T)':>22}   "
          f"{'excess = full - truncated':>25}  (nats/token)")
    for b in r["buckets"]:
        print(f"{b['name']:<14} {b['full']:8.4f} {b['truncated']:10.4f}   "
              f"{signed(b['rise'], b['se_rise']):>22}   {signed(b['excess'], b['se_excess']):>25}")
    last = r["buckets"][-1]
    print(f"==> at {last['name']}: the loss rises {signed(last['rise'], last['se_rise'])} "
          f"nats/token over [T, 4T) (> 0: the curve climbs beyond T_train); excess "
          f"{signed(last['excess'], last['se_excess'])}")
    v = r["def32_verdict"]
    print(f"def32_verdict, Def. 3.2 (p* = {v['p_star']:.3f}, the perplexity over [T/2, T)): "
          + verdict_line(v, v["buckets_above"], "the perplexity is above p*"))
    v = r["paired_verdict"]
    print("paired_verdict, does the long context hurt? "
          + verdict_line(v, v["failing_buckets"],
                         "the full context is worse than the truncated one"))
    s, i = r["state_std"], r["state_t"].index(T)
    print(f"state std (all layers): {s[i]:.4f} at t = T_train, {s[-1]:.4f} at t = "
          f"{r['state_t'][-1]} (x{s[-1] / s[i]:.2f}); most drifting heads (std at the end / at "
          f"T_train): "
          + ", ".join(f"layer {d['layer']} head {d['head']} x{d['ratio']:.2f}"
                      for d in r["drifting_heads"]))


# -----------------------------------------------------------------------------
# the second measure: the full-context loss against a reference model's, paired per token


def paired_difference(full_sums, reference_sums, counts, T_train):
    """The second measure: a checkpoint's full-context loss minus a reference model's on the very
    same tokens (paired per token), which does not depend on how well either model does with a short
    context. full_sums, reference_sums: (G, P) per-document sums of the full-context losses; counts:
    (G,) sequences per document. Returns diff, se_diff: (P,) per position, and buckets: rows with
    "diff", "se_diff" (SEs clustered by document)."""
    diff = full_sums - reference_sums   # linear: per-document sums of the differences
    mean, se = clustered_mean(diff, counts)
    return dict(diff=mean, se_diff=se, buckets=bucket_means({"diff": diff}, counts, T_train))


def compare_with_reference(results, ref_index, doc_ids, width):
    """Adds r["vs_reference"] (paired_difference against results[ref_index], and its smoothed curve)
    to every result."""
    _, counts = clusters(doc_ids)
    ref = results[ref_index]
    for r in results:
        vs = paired_difference(r["full_by_document"], ref["full_by_document"], counts, r["T_train"])
        r["vs_reference"] = dict(
            reference=ref["checkpoint"], **vs,
            diff_smoothed=smoothed(vs["diff"], width, 1 / 32, cut=r["T_train"]))


def report_reference(results):
    """The second measure's table: per bucket, each checkpoint's full-context loss
    minus the reference's."""
    compared = [r for r in results if not r["is_reference"]]
    print(f"\nis this model better than the reference, {results[0]['vs_reference']['reference']}, "
          f"at long positions? full-context loss minus the reference's on the same tokens "
          f"(nats/token; < 0: better)")
    print(f"{'positions':<14}" + "".join(f"{r['label'][:24]:>26}" for r in compared))
    for i, bucket in enumerate(compared[0]["vs_reference"]["buckets"] if compared else []):
        cells = [r["vs_reference"]["buckets"][i] for r in compared]
        print(f"{bucket['name']:<14}"
              + "".join(signed(c["diff"], c["se_diff"]).rjust(26) for c in cells))


if __name__ == "__main__":
    quiet_ctrl_c("evaluate.py")
    check_settings(config,
                   positive=("n_seqs", "batch_size", "chunk_len", "smooth", "n_drift_heads"),
                   non_negative=("seq_len", "threads"))
    infos, ref_index = with_reference(checkpoint_infos(checkpoints, labels), reference)
    check_tokenizers(infos, tokenizer)
    L = seq_len or 32 * infos[0]["T_train"]
    for i in infos:                                 # every error before any work
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
        r = evaluate_checkpoint(model, seqs, doc_ids, info["T_train"], chunk_len, batch_size,
                                n_drift_heads, ctx, device, info["label"])
        results.append(dict(label=info["label"], checkpoint=info["name"],
                            is_reference=len(results) == ref_index, **r))
        report(r, info["label"])
        del model
    if ref_index is not None:
        compare_with_reference(results, ref_index, doc_ids, smooth)
        report_reference(results)

    os.makedirs(out_dir, exist_ok=True)
    for r in results:   # the curves as plotted, kept in the JSON beside the raw per-position arrays
        r["ppl_smoothed"] = np.exp(smoothed(r["loss_full"], smooth, 1 / 32, cut=r["T_train"]))
        r["excess_smoothed"] = smoothed(r["excess"], smooth, 1 / 32, cut=r["T_train"])
        del r["full_by_document"]
    figures = (["ppl.png", "state_std.png", "state_std_heads.png"]
               + (["reference.png"] if reference else []))
    plot_ppl(results, os.path.join(out_dir, "ppl.png"), smooth)
    plot_state_std(results, os.path.join(out_dir, "state_std.png"))
    plot_state_heads(results, os.path.join(out_dir, "state_std_heads.png"))
    if reference:
        plot_reference(results, os.path.join(out_dir, "reference.png"))
    write_json(os.path.join(out_dir, "results.json"),
               dict(settings=config, corpus=held_out.meta["corpus"], checkpoints=results,
                    positions="position t predicts token t + 1 from x[0:t+1]; losses in "
                              "nats/token; state_t counts tokens read"))
    print(f"\nwrote {out_dir}/results.json, {', '.join(figures)}; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

"""
Effective Remembrance (paper Def. 3.3, eq. 2): how much the tokens before t still move the
prediction that a model makes after a context x[0:T],

    EffRem_T(t) = d(q(.|x[0:T]), q(.|x[t:T])),   q the next-token distribution after the last token,

averaged over held-out sequences (sec. 3.4). 0: the model has effectively forgotten x[0:t]; 1 (at
most): dropping x[0:t] changes the prediction completely. A model that fails to length-generalize
keeps a large EffRem for small t, far beyond its training context (fig. 1, bottom).

    python effrem.py --checkpoints=out-baseline,out-sp      # T = 4 * T_train, as in fig. 1 (bottom)

Distances d (appendix G): "tv" total variation (eq. 3), "js" the Jensen-Shannon distance (the
square root of the JS divergence in bits), "cosine" one minus the cosine similarity of the
probability vectors; all three are 0 for identical distributions and 1 for disjoint supports.
Writes to out_dir: effrem.json, effrem.png (TV, fig. 1 bottom) and effrem_distances.png (the three
distances, fig. 13).

The settings checkpoints, labels, out_dir, batch_size, corpus, tokenizer, data_dir, seed, device,
dtype and threads mean what they mean in evaluate.py: `python evaluate.py --help` describes them.
"""
import os
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

import data
from configurator import configure
from figures import plot_effrem
from measure import (check_settings, check_tokenizers, checkpoint_infos, clustered_mean, clusters,
                     document_sums, each_model, fetch_official, load_held_out, quiet_ctrl_c, setup,
                     write_json)

# -----------------------------------------------------------------------------
# the same settings as evaluate.py's, which describes them (`python evaluate.py --help`)
checkpoints = "out"
labels = ""
out_dir = "eval"
batch_size = 16
corpus = ""
tokenizer = ""
data_dir = ""
seed = 0
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
threads = 0
# effrem.py's own
T = 0                   # context length; 0: 4 * T_train of the first checkpoint (fig. 1 bottom).
                        # Also try a horizon where the model fails, 32-64 T_train (README: the
                        # demo does both)
ts = ()                 # t values in [1, T - 1], e.g. --ts=1,10,100; (): 20 log-spaced values
n_seqs = 128            # held-out sequences of T tokens
chunk_len = 64          # tokens per forward call: long contexts are streamed, so memory does not
                        # grow with T (and on the CPU short calls are faster: evaluate.py's
                        # chunk_len says why)
distances = "tv,js,cosine"
if __name__ == "__main__":   # imported (by the tests) it keeps these defaults
    config = configure(globals())
# -----------------------------------------------------------------------------

DISTANCES = ("tv", "js", "cosine")


def check_distances(names):
    if not names:
        raise ValueError(f"--distances names no distance: give one or more of "
                         f"{', '.join(DISTANCES)}")
    unknown = [d for d in names if d not in DISTANCES]
    if unknown:
        raise ValueError(f"unknown distance {unknown[0]!r}: expected one of {', '.join(DISTANCES)}")


def distance_between(p, q, distance):
    """p, q: (..., V) probability vectors -> (...) float64, for distance in
    DISTANCES (appendix G)."""
    check_distances([distance])
    p, q = p.double(), q.double()
    if distance == "tv":       # eq. 3: half the L1 distance, in [0, 1]
        return 0.5 * (p - q).abs().sum(-1)
    if distance == "js":       # sqrt(JSD) with log base 2: a metric, in [0, 1];
                               # 0 log 0 = 0 via xlogy
        m = 0.5 * (p + q)
        kl = lambda a: (torch.xlogy(a, a) - torch.xlogy(a, m)).sum(-1) / np.log(2)
        return (0.5 * kl(p) + 0.5 * kl(q)).clamp(min=0).sqrt()
    # "cosine": 1 - cos(p, q), 0 for identical, 1 for orthogonal (disjoint supports);
    # >= 0 despite rounding
    return (1 - F.cosine_similarity(p, q, dim=-1)).clamp(min=0)


@torch.no_grad()
def next_token_probs(model, x, chunk_len=2048, ctx=nullcontext()):
    """q(.|x) after the last token of each row. x: (B, n) token ids -> (B, vocab_size) float64.
    The context is streamed in chunks with the state carried, and the vocabulary projection is
    applied to the last position only (last_only): for a 50k vocabulary it would otherwise cost as
    much as the model. q is renormalised over the tokenizer's vocabulary (the embedding's padding
    rows are left out)."""
    states = None
    for start in range(0, x.shape[1], chunk_len):
        with ctx:
            logits, _, states = model(x[:, start:start + chunk_len], states=states, last_only=True)
    return F.softmax(logits[:, -1, :model.config.vocab_size].double(), dim=-1)


def remembrance_per_sequence(model, x, ts, distances=("tv",), chunk_len=2048, ctx=nullcontext()):
    """EffRem_T(t) of each sequence for each distance. x: (B, T) token ids, ts: t values in
    [0, T - 1] -> {distance: (B, len(ts)) float64}.

    The full-context q(.|x[0:T]) is computed once and shared by every t; the suffixes x[t:T] of the
    B sequences have one length per t and go through the model as one batch. Nothing else can be
    shared between suffixes: the state at T of a multi-layer model started at t depends nonlinearly
    on every token after t (layer 2's input depends on layer 1's state), so each suffix is a fresh
    pass from a zero state. Cost per sequence: T + sum_t (T - t) token-steps, O(T * len(ts)) at
    worst; with log-spaced ts it is dominated by the smallest t's, about T per t below T/2.
    """
    check_distances(distances)   # before any work
    T_ctx = x.shape[1]
    if any(not 0 <= t < T_ctx for t in ts):
        raise ValueError(f"every t must lie in [0, T - 1] = [0, {T_ctx - 1}], got {list(ts)}")
    q_full = next_token_probs(model, x, chunk_len, ctx)                        # (B, V)
    out = {d: torch.empty(x.shape[0], len(ts), dtype=torch.float64) for d in distances}
    for i, t in enumerate(ts):
        q_t = next_token_probs(model, x[:, t:], chunk_len, ctx)                # q(.|x[t:T])
        for d in distances:
            out[d][:, i] = distance_between(q_full, q_t, d).cpu()
    return out


def effective_remembrance(model, x, ts, distance="tv", chunk_len=2048, per_sequence=False):
    """EffRem_T(t) (Def. 3.3) for each t in ts, with T = x.shape[1]. x: (B, T) token ids ->
    (len(ts),) float64, the mean over the B sequences, or (B, len(ts)) with per_sequence=True."""
    values = remembrance_per_sequence(model, x, ts, (distance,), chunk_len)[distance]
    return values if per_sequence else values.mean(0)


def default_ts(T_ctx, n=20):
    """About n log-spaced t in [1, T - 1] (fewer where they round to the same integer)."""
    return sorted({int(t) for t in np.round(np.geomspace(1, T_ctx - 1, n))})


def remembrance_of_checkpoint(model, seqs, doc_ids, t_list, names, batch_size, chunk_len, ctx,
                              device):
    """EffRem_T(t) of one model on seqs (n, T), in batches -> {distance: dict(mean, se,
    per_sequence)}, each (len(ts),) or (n, len(ts)), the SEs clustered by document."""
    n, T_ctx = seqs.shape
    cost, t0 = T_ctx + sum(T_ctx - t for t in t_list), time.time()   # token-steps per sequence
    per_seq = {d: [] for d in names}
    for i in range(0, n, batch_size):
        out = remembrance_per_sequence(model, seqs[i:i + batch_size].to(device), t_list, names,
                                       chunk_len, ctx)
        for d in names:
            per_seq[d].append(out[d])
        done, dt = min(i + batch_size, n), time.time() - t0
        print(f"  {done}/{n} sequences, {done * cost / dt:,.0f} tokens/s, "
              f"{dt / done * (n - done):.0f}s left")
    cluster, counts = clusters(doc_ids)
    r = {}
    for d in names:
        values = torch.cat(per_seq[d]).numpy()                             # (n, len(ts))
        mean, se = clustered_mean(document_sums(values, cluster, len(counts)), counts)
        r[d] = dict(mean=mean, se=se, per_sequence=values)
        print(f"  {d:>6}: " + "  ".join(f"t={t}: {m:.3g}" for t, m in zip(t_list, mean)))
    return r


def check_ts(t_list, T_ctx):
    if T_ctx < 2:
        raise ValueError(f"--T={T_ctx}: EffRem_T(t) needs T >= 2, to have a t in [1, T - 1]")
    if any(not 1 <= t < T_ctx for t in t_list):
        raise ValueError(f"ts must lie in [1, T - 1] = [1, {T_ctx - 1}], got {t_list}")


if __name__ == "__main__":
    quiet_ctrl_c("effrem.py")
    check_settings(config, positive=("n_seqs", "batch_size", "chunk_len"),
                   non_negative=("T", "threads"))
    names = [d for d in distances.split(",") if d]
    check_distances(names)
    if T:                                           # given: checked before the checkpoints are read
        check_ts([int(t) for t in ts], T)
    infos = checkpoint_infos(checkpoints, labels)   # every error before any work
    check_tokenizers(infos, tokenizer)
    T_ctx = T or 4 * infos[0]["T_train"]
    check_ts([int(t) for t in ts], T_ctx)
    t_list = [int(t) for t in ts] or default_ts(T_ctx)
    fetch_official(infos)
    ctx = setup(seed, threads, device, dtype)
    held_out = load_held_out(infos[0], corpus, tokenizer, data_dir)
    seqs, doc_ids = data.eval_sequences(held_out, n_seqs, T_ctx, seed)
    cost = T_ctx + sum(T_ctx - t for t in t_list)
    print(f"{n_seqs} held-out sequences of T = {T_ctx} tokens from {len(doc_ids.unique())} "
          f"documents; {len(t_list)} values of t; {cost:,} token-steps per sequence "
          f"({cost / T_ctx:.1f} passes of T)")

    results = []
    for info, model in each_model(infos, held_out, device):
        print(f"Effective Remembrance of {info['name']} ({info['label']}), "
              f"T_train = {info['T_train']}")
        r = dict(label=info["label"], checkpoint=info["name"], T_train=info["T_train"], T=T_ctx,
                 ts=t_list, n_seqs=n_seqs, n_docs=len(doc_ids.unique()))
        r.update(remembrance_of_checkpoint(model, seqs, doc_ids, t_list, names, batch_size,
                                           chunk_len, ctx, device))
        results.append(r)
        del model

    os.makedirs(out_dir, exist_ok=True)
    if "tv" in names:   # fig. 1 (bottom) on the paper's [0, 1] axis, and again on a log axis
        plot_effrem(results, T_ctx, [("tv", "linear"), ("tv", "log")],
                    os.path.join(out_dir, "effrem.png"),
                    "Effective Remembrance, total variation (fig. 1, bottom)")
    plot_effrem(results, T_ctx, [(d, "log") for d in names],
                os.path.join(out_dir, "effrem_distances.png"),
                "Effective Remembrance with three distances (fig. 13)")
    write_json(os.path.join(out_dir, "effrem.json"),
               dict(settings=config, corpus=held_out.meta["corpus"], doc_ids=doc_ids.numpy(),
                    checkpoints=results))
    print(f"wrote {out_dir}/effrem.json, " + ("effrem.png, " if "tv" in names else "")
          + "effrem_distances.png")

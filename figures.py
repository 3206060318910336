"""
The figures of evaluate.py (figs. 1 top, 4, 5 and 9, and the comparison with a reference) and of
effrem.py (figs. 1 bottom and 13), drawn from the result dicts those scripts also write to JSON.
Positions and t are on log axes; a dashed line marks each training context.
"""
import math

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def vlines(ax, results):
    """A dashed vertical line at each training context among the checkpoints."""
    for T in sorted({r["T_train"] for r in results}):
        ax.axvline(T, ls="--", color="gray", lw=1, label=f"T_train = {T}")


def bucket_errorbars(ax, r, key, color, label, as_ppl=False):
    """The bucket means of r["buckets"] beyond T_train (key: "excess", "full"; or "diff" in
    r["vs_reference"]) with their clustered SEs, at each bucket's geometric centre; as_ppl: exp of
    the mean, SE to first order."""
    rows = r["vs_reference"]["buckets"] if key == "diff" else r["buckets"]
    rows = [x for x in rows if x["start"] >= r["T_train"]]
    centres = [math.sqrt(x["start"] * min(x["end"], r["L"] - 1)) for x in rows]
    y, se = np.array([x[key] for x in rows]), np.array([x[f"se_{key}"] for x in rows])
    if as_ppl:
        y, se = np.exp(y), np.exp(y) * se
    ax.errorbar(centres, y, se, fmt="o", color=color, capsize=3, label=label)


def plot_ppl(results, path, width):
    """Fig. 1 (top) and fig. 5. First the position-wise perplexity itself (Def. 3.1) on a log
    position axis: on stationary windows a model that length-generalizes stays flat or falls beyond
    T_train, one that fails climbs. Then the excess, full - truncated on the same tokens; last, with
    --reference, each checkpoint's full-context loss minus the reference's. Curves are moving
    averages that never cross T_train; points are bucket means ± one clustered SE. Each checkpoint
    keeps its colour in every panel and figure."""
    compared = [(f"C{i}", r) for i, r in enumerate(results)
                if "vs_reference" in r and not r["is_reference"]]
    n = 3 if compared else 2
    fig, axes = plt.subplots(n, 1, figsize=(8, 3.6 * n + 0.8), sharex=True,
                             gridspec_kw=dict(height_ratios=[1.6] + [1] * (n - 1)))
    t_of = lambda r: np.arange(1, r["L"] - 1)            # t = 0 has no place on a log axis
    ppl, excess = axes[0], axes[1]
    for i, r in enumerate(results):
        ppl.plot(t_of(r), r["ppl_smoothed"][1:], color=f"C{i}", lw=1.2, label=r["label"])
        bucket_errorbars(ppl, r, "full", f"C{i}", None, as_ppl=True)
        excess.plot(t_of(r), r["excess_smoothed"][1:], lw=0.8, alpha=0.7, color=f"C{i}")
        bucket_errorbars(excess, r, "excess", f"C{i}", f"{r['label']} (bucket means ± SE)")
    # the y range of the curves from T_train/2 on: the first few positions (no context yet) run
    # off the top
    tail = np.concatenate([r["ppl_smoothed"][r["T_train"] // 2:] for r in results])
    ppl.set_ylim(0.97 * tail.min(), 1.03 * tail.max())
    ppl.set(
        ylabel="perplexity (e^loss per token)",
        title="Position-wise perplexity (Def. 3.1, fig. 1): beyond the training context T_train\n"
              "a model that fails climbs again; one that length-generalizes stays flat")
    excess.set(ylabel="full - truncated (nats/token)",
               title="Excess loss of the full context over a context of T_train/2 to T_train "
                     "tokens\n(> 0: the long context hurts, the model fails)")
    if compared:
        for color, r in compared:
            axes[2].plot(t_of(r), r["vs_reference"]["diff_smoothed"][1:], lw=0.8, alpha=0.7,
                         color=color)
            bucket_errorbars(axes[2], r, "diff", color, f"{r['label']} (bucket means ± SE)")
        axes[2].set(ylabel="minus the reference (nats/token)",
                    title="Full-context loss minus the reference's "
                          f"on the same tokens (< 0: better)\nreference: "
                          f"{compared[0][1]['vs_reference']['reference']}")
    axes[-1].set(xscale="log",
                 xlabel=f"position t (curves: moving averages of max({width}, t/16) positions)")
    for ax in axes:
        vlines(ax, results)
        if ax is not ppl:
            ax.axhline(0, color="black", lw=0.8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reference(results, path):
    """The paired comparison with the reference: left, each checkpoint's full-context loss minus the
    reference's by position (smoothed, and the bucket means ± SE); right, the one-look summary:
    that difference in the last bucket (the positions furthest beyond T_train), bars ±
    one clustered SE."""
    compared = [(f"C{i}", r) for i, r in enumerate(results) if not r["is_reference"]]
    fig, (curves, bars) = plt.subplots(1, 2, figsize=(13, 4.5),
                                       gridspec_kw=dict(width_ratios=[3, 2]))
    for color, r in compared:
        curves.plot(np.arange(1, r["L"] - 1), r["vs_reference"]["diff_smoothed"][1:], lw=0.8,
                    alpha=0.7, color=color)
        bucket_errorbars(curves, r, "diff", color, r["label"])
    vlines(curves, results)
    curves.axhline(0, color="black", lw=0.8)
    curves.set(xscale="log", xlabel="position t", ylabel="minus the reference (nats/token)",
               title=f"Full-context loss minus the reference's, paired per token\nreference: "
                     f"{results[0]['vs_reference']['reference']}")
    curves.legend(fontsize=8)
    last = [r["vs_reference"]["buckets"][-1] for _, r in compared]
    x = np.arange(len(compared))
    bars.bar(x, [b["diff"] for b in last], yerr=[b["se_diff"] for b in last], capsize=4,
             color=[color for color, _ in compared])
    bars.axhline(0, color="black", lw=0.8)
    bars.set_xticks(x, [r["label"] for _, r in compared], rotation=20, ha="right", fontsize=8)
    bars.set(ylabel="nats/token (± 1 SE)",
             title=f"At {last[0]['name'] if last else 'the end'}, the furthest positions\n"
                   f"(< 0: better than the reference)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_state_std(results, path):
    """Fig. 4: the std of the whole state (every element of every layer) against
    the tokens read."""
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
    """Fig. 9: one panel per head singled out by any checkpoint, every checkpoint in each panel.
    Layer l, head h is the same head in two checkpoints only if they share their pretraining (a
    baseline and its post-trainings)."""
    heads = list(dict.fromkeys((d["layer"], d["head"])
                               for r in results for d in r["drifting_heads"]))
    cols = min(4, len(heads))
    rows = -(-len(heads) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.5 * cols, 2.8 * rows), squeeze=False)
    for ax, (l, h) in zip(axes.flat, heads):
        for r in results:
            if l < r["state_std_heads"].shape[0] and h < r["state_std_heads"].shape[1]:
                ax.plot(r["state_t"], r["state_std_heads"][l, h], label=r["label"])
        vlines(ax, results)
        ax.set(xscale="log", title=f"layer {l}, head {h}", xlabel="t (tokens read)",
               ylabel="std of h_t")
    for ax in axes.flat[len(heads):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("State std of the heads that drift most after T_train (fig. 9)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_effrem(results, T_ctx, panels, path, title):
    """One panel per (distance, y scale), one curve per checkpoint (± clustered SE). x = t on a log
    axis: the ts are log-spaced, and the failure shows at small t (the first tokens still move the
    prediction, sec. 3.4). A log y axis shows the small values of small models, which a [0, 1] axis
    flattens to zero. The dashed line is at T - T_train: the tokens left of it are further from the
    prediction than the training context."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (d, yscale) in zip(axes[0], panels):
        positive = [m for r in results for m in r[d]["mean"] if m is not None and m > 0]
        bottom = 0 if yscale == "linear" else max(1e-8, min(positive, default=1e-6) / 2)
        for r in results:
            mean, se = (np.array(r[d]["mean"], dtype=float),
                        np.nan_to_num(np.array(r[d]["se"], dtype=float)))
            line, = ax.plot(r["ts"], mean, marker=".", label=r["label"])
            ax.fill_between(r["ts"], mean - se, mean + se, color=line.get_color(), alpha=0.2)
        for T_train in sorted({r["T_train"] for r in results}):
            if T_train < T_ctx:
                ax.axvline(T_ctx - T_train, ls="--", color="gray", lw=1,
                           label=f"t = T - T_train (T_train = {T_train})")
        ax.set(xscale="log", yscale=yscale, ylim=(bottom, 1),
               xlabel=f"t (the prediction reads x[t:T], T = {T_ctx})", ylabel=f"EffRem_T(t), {d}",
               title=f"{d}, {yscale} scale")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

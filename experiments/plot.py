"""
The summary figures and tables of the experiments in this folder, drawn
from evaluate.py's results.json.

    python experiments/plot.py interventions RESULTS.json OUT.png   # fig. 5 at a glance
    python experiments/plot.py sigma RESULTS.json OUT.png           # fig. 12: random
                                                                    # noise against sigma
    python experiments/plot.py length RESULTS.json OUT.png          # fig. 3: the failure against
                                                                    # training tokens
    python experiments/plot.py sizes RESULTS.json... OUT.png        # fig. 5 across model sizes
    python experiments/plot.py architectures RESULTS.json... OUT.png  # figs. 1 and 10: four
                                                                      # architectures

Each also prints its numbers as a Markdown table. Three measures (evaluate.py), per position bucket:
    rise          full-context loss - its mean over [T, 4T) in the same sequence (> 0: the raw
                  curve climbs)
    excess        full-context loss - truncated-context loss of the same tokens (> 0: the long
                  context hurts)
    vs reference  full-context loss - the reference run's (the control) on the same tokens
                  (< 0: better)
"""
import json
import math
import re
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt


def load(path):
    """evaluate.py's checkpoints, each bucket also holding the paired difference
    with the reference."""
    with open(path) as f:
        results = json.load(f)["checkpoints"]
    for r in results:
        for b, vb in zip(r["buckets"], r.get("vs_reference", {}).get("buckets", [])):
            b["vs_reference"], b["se_vs_reference"] = vb["diff"], vb["se_diff"]
    return results


def bucket(r, name):
    """The bucket called `name` ("[16T, 32T)", or "last": the longest one that is whole)."""
    if name == "last":
        whole = [b for b in r["buckets"] if b["end"] <= r["L"]]   # positions run to L - 2
        return whole[-1]
    return next(b for b in r["buckets"] if b["name"] == name)


def cell(b, key):
    se = b["se_" + key]   # None (null in the JSON) where too few documents gave no standard error
    return f"{b[key]:+.4f} ± " + ("n/a" if se is None else f"{se:.4f}")


def interventions(results, out):
    """Bars of both measures at the longest bucket, one bar per post-trained model."""
    last = bucket(results[0], "last")["name"]
    print(f"| run | rise at {last} over [T, 4T) | excess at {last} | vs control at {last} "
          f"| loss at [T/2, T) |")
    print("|---|---|---|---|---|")
    for r in results:
        bl, bin_ = bucket(r, "last"), bucket(r, "[T/2, T)")
        vs = cell(bl, "vs_reference") if "vs_reference" in bl else ""
        print(f"| {r['label']} | {cell(bl, 'rise')} | {cell(bl, 'excess')} | {vs} "
              f"| {bin_['full']:.4f} |")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in (
            (axes[0], "excess", "does the context beyond T hurt? (full - truncated)"),
            (axes[1], "vs_reference", "better than the control? (full - control's full)")):
        rs = [r for r in results if key in bucket(r, "last")]
        bs = [bucket(r, "last") for r in rs]
        ax.bar(range(len(rs)), [b[key] for b in bs], yerr=[2 * b["se_" + key] for b in bs],
               capsize=4, color=[f"C{i}" for i in range(len(rs))])
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(rs)), [r["label"] for r in rs], rotation=25, ha="right",
                      fontsize=8)
        ax.set(ylabel=f"nats/token at positions {last}", title=title)
    fig.suptitle("The interventions of sec. 4 after equal post-training (bars: mean ± 2 SE, "
                 "clustered by document)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def sigma(results, out):
    """Against sigma: the long-position gain over the control, and the cost inside
    the training context."""
    rs = [r for r in results if "sigma" in r["label"]]
    xs = [float(re.search(r"sigma ([0-9.e-]+)", r["label"]).group(1)) for r in rs]
    last = bucket(rs[0], "last")["name"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name, title in ((a, last, f"at {last}: long positions"),
                            (b, "[T/2, T)", "at [T/2, T): inside T")):
        bs = [bucket(r, name) for r in rs]
        ax.errorbar(xs, [x["vs_reference"] for x in bs], [2 * x["se_vs_reference"] for x in bs],
                    marker="o", capsize=3)
        ax.axhline(0, color="black", lw=0.8)
        ax.set(xscale="log", xlabel="sigma of the random initial state", title=title,
               ylabel="loss - control's loss (nats/token)")
    fig.suptitle("Random-noise post-training against its sigma (app. F, fig. 12); ± 2 SE")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"| sigma | vs control at {last} | excess at {last} | vs control at [T/2, T) |")
    print("|---|---|---|---|")
    for x, r in zip(xs, rs):
        print(f"| {x:g} | {cell(bucket(r, 'last'), 'vs_reference')} "
              f"| {cell(bucket(r, 'last'), 'excess')} | "
              f"{cell(bucket(r, '[T/2, T)'), 'vs_reference')} |")


def length(results, out):
    """The excess in three buckets against the training tokens (labels read "<N>k tokens")."""
    xs = [int(r["label"].split("k")[0]) * 1000 for r in results]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = ["[4T, 8T)", "[16T, 32T)", bucket(results[0], "last")["name"]]
    for name in names:
        bs = [bucket(r, name) for r in results]
        ax.errorbar(xs, [b["excess"] for b in bs], [2 * b["se_excess"] for b in bs], marker="o",
                    capsize=3, label=f"positions {name}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xscale="log", xlabel="training tokens", ylabel="excess: full - truncated (nats/token)",
           title="The failure as training goes on (fig. 3); ± 2 SE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print("| training tokens | " + " | ".join(f"excess at {n}" for n in names)
          + " | loss at [T/2, T) |")
    print("|---|" + "---|" * (len(names) + 1))
    for x, r in zip(xs, results):
        print(f"| {x / 1e6:.1f}M | " + " | ".join(cell(bucket(r, n), "excess") for n in names) +
              f" | {bucket(r, '[T/2, T)')['full']:.4f} |")


def sizes(paths, out):
    """One row per model size (the folder name d<d_model>), one column per run, vs the control."""
    # smallest model first
    paths = sorted(paths, key=lambda p: int(re.search(r"/d(\d+)/", p).group(1)))
    per_size = {re.search(r"/d(\d+)/", p).group(0).strip("/"): load(p) for p in paths}
    runs = [r["label"] for r in next(iter(per_size.values())) if r["label"] != "control"]
    last = bucket(next(iter(per_size.values()))[0], "last")["name"]
    print(f"vs the control at {last} (excess of the baseline and the control beside it)")
    print("| size | baseline excess | control excess | " + " | ".join(runs) + " |")
    print("|---|---|---|" + "---|" * len(runs))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(runs)
    for j, (size, results) in enumerate(per_size.items()):
        by = {r["label"]: bucket(r, "last") for r in results}
        print(f"| {size} | {cell(by['baseline'], 'excess')} | {cell(by['control'], 'excess')} | "
              + " | ".join(cell(by[n], "vs_reference") for n in runs) + " |")
        for i, n in enumerate(runs):
            ax.bar(j + i * width, by[n]["vs_reference"], width, yerr=2 * by[n]["se_vs_reference"],
                   capsize=2, color=f"C{i}", label=n if j == 0 else None)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(per_size))], list(per_size))
    ax.set(xlabel="model (d_model)", ylabel=f"loss - control's loss at {last} (nats/token)",
           title="The interventions across model sizes; ± 2 SE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def architectures(paths, out):
    """One panel per architecture (the folder name above eval/): the raw position-wise perplexity of
    the baseline, the control and State Passing (fig. 1's plot); and the table of the
    rise beyond T."""
    per_arch = {re.search(r"([^/]+)/eval/results.json$", p).group(1): load(p) for p in paths}
    last = bucket(next(iter(per_arch.values()))[0], "last")["name"]
    print(f"rise at {last} over [T, 4T) (> 0: the raw curve climbs beyond T); State Passing minus "
          f"the control at {last} and inside the context, [T/2, T)")
    print("| architecture | baseline | control | state passing | SP - control "
          "| SP - control inside |")
    print("|---|---|---|---|---|---|")
    fig, axes = plt.subplots(1, len(per_arch), figsize=(3.6 * len(per_arch), 3.6), squeeze=False)
    for ax, (arch, results) in zip(axes[0], per_arch.items()):
        by = {r["label"]: r for r in results}
        b = {label: bucket(r, "last") for label, r in by.items()}
        sp_in = bucket(by["state passing"], "[T/2, T)")
        print(f"| {arch} | {cell(b['baseline'], 'rise')} | {cell(b['control'], 'rise')} | "
              f"{cell(b['state passing'], 'rise')} | {cell(b['state passing'], 'vs_reference')} | "
              f"{cell(sp_in, 'vs_reference')} |")
        for label, r in by.items():
            whole = [x for x in r["buckets"] if x["end"] <= r["L"]]
            ax.plot([(x["start"] + x["end"]) / 2 for x in whole],
                    [math.exp(x["full"]) for x in whole], marker="o", ms=3, label=label)
        ax.axvline(results[0]["T_train"], color="gray", ls=":", lw=0.8)
        ax.set(xscale="log", xlabel="position t (tokens)", title=arch)
    axes[0][0].set_ylabel("perplexity at position t")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Each architecture pretrained at T (dotted), then post-trained (figs. 1 and 10)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] not in ("interventions", "sigma", "length", "sizes",
                                                "architectures"):
        print(__doc__)
        raise SystemExit(0 if {"-h", "--help"} & set(sys.argv) else 2)
    what, *paths, out = sys.argv[1:]
    if what in ("sizes", "architectures"):
        {"sizes": sizes, "architectures": architectures}[what](paths, out)
    else:
        {"interventions": interventions, "sigma": sigma,
         "length": length}[what](load(paths[0]), out)
    print(f"wrote {out}")

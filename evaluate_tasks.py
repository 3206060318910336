"""
Trained checkpoints scored on the paper's long-context tasks (sec. 5; tasks.py holds the samples):
copying (table 1), passkey retrieval (fig. 7) and BABILong-style qa1-qa3 (fig. 6).

    python evaluate_tasks.py --task=copy --checkpoints=out-copy-zero-1,out-copy-sp-1
    python evaluate_tasks.py --task=passkey --checkpoints=... --lengths=256,1024 --depths=0,0.5,1

Checkpoints sharing a label (by default their intervention) are seeds of one setting: their scores
are averaged, with the standard deviation across seeds. Greedy decoding throughout; a prompt's
answer is right when the first word generated is the answer exactly. Writes <task>.json and
<task>.png to out_dir. tasks.sh runs a whole experiment (every setting and seed, then this
evaluation) in one command.

The filler around the facts comes from the corpus's val split: train.py's batches draw it from the
train split, so that the model is scored on text it never saw (tasks.py says more).
"""
import json
import os
from contextlib import nullcontext

import numpy as np
import torch

import data
import measure
import tasks
from configurator import configure

# -----------------------------------------------------------------------------------------------
task = "copy"            # "copy", "passkey", "qa1", "qa2" or "qa3"
checkpoints = ""         # comma-separated train.py out_dirs
labels = ""              # comma-separated, one per checkpoint; "": each run's intervention
out_dir = "eval-tasks"
n_examples = 100         # prompts per cell (per copy length; per context length x depth)
lengths = ()             # e.g. --lengths=256,1024 (one: --lengths=256,). (): copy: L/2, L, 2L, 3L
                         # with L the longest trained copy (3L: the paper's 3x); passkey: T..16T;
                         # qa*: 0 (the facts alone), T..16T
depths = (0.0, 0.25, 0.5, 0.75, 1.0)   # passkey: where the key sits in the filler
                                       # (0: first, 1: last)
corpus = ""              # the filler's corpus (its val split); "": the first checkpoint's
seed = 0
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = "float32"        # tiny models: nothing to gain from bfloat16, and it rounds the long states
threads = 0              # CPU threads for torch; 0 = as many as the cores other jobs leave free
if __name__ == "__main__":
    config = configure(globals())
# -----------------------------------------------------------------------------------------------


def score_copy(generated, source):
    """generated, source (B, L) ids -> (character accuracy, whole-string accuracy), each (B,)
    float."""
    right = np.asarray(generated) == np.asarray(source)
    return right.mean(axis=1), right.all(axis=1).astype(float)


def score_answer(output, answer):
    """Passkey and bAbI: is the first word of the generated text (its trailing period aside) the
    answer?"""
    words = output.split()
    return bool(words) and words[0].rstrip(".") == answer


# -----------------------------------------------------------------------------------------------
# greedy decoding, from a zero state (as all evaluation, sec. 4.2)


@torch.no_grad()
def generate(model, prompts, max_new, device="cpu", ctx=None, batch_size=32):
    """prompts: list of (n_i,) ids -> (len(prompts), max_new) greedily generated ids. Prompts of one
    length are decoded together."""
    out = np.zeros((len(prompts), max_new), np.int64)
    by_len = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for n, idx in by_len.items():
        for k in range(0, len(idx), batch_size):
            rows = idx[k:k + batch_size]
            x = torch.from_numpy(np.stack([prompts[i] for i in rows])).to(device)
            with ctx or nullcontext():
                out[rows] = model.generate(x, max_new)[:, n:].cpu().numpy()
    return out


def eval_copy(model, lengths, n, rng, device="cpu", ctx=None):
    """Copies of n random strings per length -> {length: (char accuracies (n,), string accuracies
    (n,))}."""
    result = {}
    for L in lengths:
        ids = np.stack([tasks.copy_example(L, rng)[0] for _ in range(n)])
        generated = generate(model, list(ids[:, :L + 2]), L, device, ctx)
        result[L] = score_copy(generated, ids[:, L + 2:])
    return result


def eval_answers(model, examples, tokenizer, device="cpu", ctx=None):
    """examples: [(prompt_ids, answer)] -> (len(examples),) bool, the answers right."""
    longest = max(len(tokenizer.encode(f" {a}\n")) for _, a in examples)
    gen = generate(model, [p for p, _ in examples], longest, device, ctx)
    return np.array([score_answer(tokenizer.decode(g), a) for g, (_, a) in zip(gen, examples)])


def run_checkpoint(model, task, T, n_examples, lengths, depths, tok, filler, rng, device="cpu",
                   ctx=None):
    """The task's scores for one model, n_examples prompts a cell: copy: {"char", "string"}
    (lengths,); passkey: {"acc"} (depths, lengths); qa*: {"acc"} (lengths,). Also the lengths (and
    depths) used: `lengths` if given, else the defaults of the setting's comment."""
    if task == "copy":
        L = tasks.copy_max(T)
        Ls = list(lengths) or [L // 2, L, 2 * L, 3 * L]
        r = eval_copy(model, Ls, n_examples, rng, device, ctx)
        return dict(lengths=Ls, char=[r[L][0].mean() for L in Ls],
                    string=[r[L][1].mean() for L in Ls])
    Ls = list(lengths) or [0] * (task != "passkey") + [T * 2**i for i in range(5)]
    ds = list(depths) if task == "passkey" else [None]
    acc = np.zeros((len(ds), len(Ls)))
    for j, L in enumerate(Ls):
        for i, d in enumerate(ds):
            examples = [tasks.passkey_example(L, d, tok, rng, filler) if task == "passkey"
                        else tasks.babi_example(task, L, tok, rng, filler)
                        for _ in range(n_examples)]
            acc[i, j] = eval_answers(model, examples, tok, device, ctx).mean()
        print(f"  {L} tokens: accuracy {np.round(acc[:, j], 2).tolist()}", flush=True)
    if task == "passkey":
        return dict(lengths=Ls, depths=ds, acc=acc)
    return dict(lengths=Ls, acc=acc[0])


# -----------------------------------------------------------------------------------------------
# the seeds of each setting together: tables and the figure


def summarise(runs):
    """Runs of one label (seeds) -> {key: (mean, std)} over the seeds, per score array (std 0 for
    one)."""
    keys = [k for k in ("char", "string", "acc") if k in runs[0]]
    ddof = min(1, len(runs) - 1)
    return {k: (np.mean([r[k] for r in runs], 0), np.std([r[k] for r in runs], 0, ddof=ddof))
            for k in keys}


def beyond_T(groups, T, n_examples):
    """Per setting, the accuracy on prompts longer than T (passkey: over all depths too) -> {label:
    (mean, standard error)}: the error over seeds (std / sqrt(seeds)), or with one seed over the
    prompts (binomial: each cell's p (1 - p) / n_examples)."""
    out = {}
    for label, g in groups.items():
        runs = g["runs"]
        beyond = np.array(runs[0]["lengths"]) > T
        cells = [np.asarray(r["acc"])[..., beyond] for r in runs]
        means = [c.mean() for c in cells]
        if len(runs) > 1:
            se = np.std(means, ddof=1) / np.sqrt(len(runs))
        else:
            se = np.sqrt((cells[0] * (1 - cells[0]) / n_examples).sum()) / cells[0].size
        out[label] = (float(np.mean(means)), float(se))
    return out


def print_copy_table(groups, T):
    """Table 1: the accuracies at the longest evaluated length (by default 3x the longest trained),
    mean +- std over seeds."""
    L = next(iter(groups.values()))["runs"][0]["lengths"][-1]
    print(f"\ncopying at length {L} (trained on {tasks.copy_max(T) // 2}-{tasks.copy_max(T)}), "
          "mean +- std over seeds")
    print("| setting | seeds | character accuracy | whole-string accuracy |\n|---|---|---|---|")
    for label, g in groups.items():
        char = f"{g['mean']['char'][-1]:.3f} +- {g['std']['char'][-1]:.3f}"
        string = f"{g['mean']['string'][-1]:.3f} +- {g['std']['string'][-1]:.3f}"
        print(f"| {label} | {len(g['runs'])} | {char} | {string} |")


def print_tables(groups, task, T, n_examples):
    """passkey, qa*: accuracy per prompt length (passkey: the mean over depths), mean +- std over
    seeds; then the accuracy beyond T and each setting's difference from the first one, with
    standard errors."""
    first = next(iter(groups.values()))["runs"][0]
    n_lengths = len(first["lengths"])
    over_depths = "; the mean over depths" if task == "passkey" else ""
    print(f"\n{task}: accuracy by prompt length (T = {T}{over_depths}), mean +- std over seeds")
    print("| setting | seeds | " + " | ".join(map(str, first["lengths"])) + " |\n|---|---|"
          + "---|" * n_lengths)
    for label, g in groups.items():
        accs = [np.asarray(r["acc"]).reshape(-1, n_lengths).mean(0) for r in g["runs"]]
        mean, std = np.mean(accs, 0), np.std(accs, 0, ddof=min(1, len(accs) - 1))
        print(f"| {label} | {len(accs)} | "
              + " | ".join(f"{m:.2f} +- {s:.2f}" for m, s in zip(mean, std)) + " |")
    b = beyond_T(groups, T, n_examples)
    ref = next(iter(b))                       # the first setting: the others are compared with it
    m0, s0 = b[ref]
    over = "over seeds" if len(groups[ref]["runs"]) > 1 else f"over {n_examples} prompts a cell"
    print(f"\nbeyond T (prompts longer than {T}): mean +- standard error ({over})")
    print(f"| setting | accuracy | minus {ref} |\n|---|---|---|")
    for label, (m, s) in b.items():
        diff = "" if label == ref else f"{m - m0:+.3f} +- {np.hypot(s, s0):.3f}"
        print(f"| {label} | {m:.3f} +- {s:.3f} | {diff} |")
    if task == "passkey":   # the same, one depth at a time: where the key sits decides what fails
        print("\nbeyond T, by depth of the key: mean +- standard error\n| depth | "
              + " | ".join(b) + f" | minus {ref} |\n|---|" + "---|" * (len(b) + 1))
        for i, depth in enumerate(first["depths"]):
            at_depth = {label: {"runs": [dict(r, acc=np.asarray(r["acc"])[i]) for r in g["runs"]]}
                        for label, g in groups.items()}
            at = beyond_T(at_depth, T, n_examples)
            r0, e0 = at[ref]
            cells = [f"{m:.3f} +- {s:.3f}" for m, s in at.values()]
            diffs = [f"{m - r0:+.3f} +- {np.hypot(s, e0):.3f}"
                     for label, (m, s) in at.items() if label != ref]
            print(f"| {depth} | " + " | ".join(cells) + " | " + ", ".join(diffs) + " |")
    return b


def plot(groups, task, T, n_examples, path):
    """copy: accuracies against the copy length; passkey: a heatmap per label (fig. 7); qa*:
    accuracy against the haystack's length (fig. 6). Error bars: the std across seeds."""
    import matplotlib       # here, not at the top: --help and a refused setting answer without it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    first = next(iter(groups.values()))["runs"][0]
    if task == "passkey":
        fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), squeeze=False)
        for ax, (label, g) in zip(axes[0], groups.items()):
            acc = g["mean"]["acc"]
            ax.imshow(acc, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
            for (i, j), v in np.ndenumerate(acc):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
            ax.set_xticks(range(len(first["lengths"])), first["lengths"])
            ax.set_yticks(range(len(first["depths"])), first["depths"])
            seeds = len(g["runs"])
            ax.set(xlabel="context length (tokens)", ylabel="depth of the key",
                   title=f"{label} (T = {T}; mean of {seeds} seed{'s' * (seeds > 1)})")
    else:
        panels = ("char", "string") if task == "copy" else ("acc",)
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
        x = np.arange(len(first["lengths"]))
        for ax, key in zip(axes[0], panels):
            for label, g in groups.items():
                seeds, mean = len(g["runs"]), g["mean"][key]
                one = seeds == 1 and key == "acc"   # one seed: the binomial error over the prompts
                err = np.sqrt(mean * (1 - mean) / n_examples) if one else g["std"][key]
                what = "1 seed; bars: s.e. over prompts" if one else f"seeds: {seeds}"
                ax.errorbar(x, mean, err, marker="o", capsize=3, label=f"{label} ({what})")
            ax.set_xticks(x, first["lengths"])
            ax.set_ylim(-0.02, 1.02)
            what = {"char": "character accuracy", "string": "whole-string accuracy",
                    "acc": "accuracy"}[key]
            ax.set(ylabel=what, title=f"{task}: {what}",
                   xlabel=f"copy length (longest trained: {tasks.copy_max(T)})" if task == "copy"
                   else f"prompt length in tokens (T = {T}; 0: the facts alone)")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    measure.quiet_ctrl_c("evaluate_tasks.py")
    if task not in tasks.TASKS:
        raise ValueError(f"--task={task!r}: use one of {', '.join(tasks.TASKS)}")
    # out_dir too: all before any work
    measure.check_settings(config, positive=("n_examples",), non_negative=("threads",))
    infos = [measure.checkpoint_info(name) for name in measure.checkpoint_names(checkpoints)]
    given = measure.split_labels(labels) or [i["label"] for i in infos]
    if len(given) != len(infos):
        raise ValueError(f"{len(given)} labels for {len(infos)} checkpoints: give one label per "
                         f"checkpoint")
    measure.check_tokenizers(infos, "")   # the prompts are tokenized with the first checkpoint's
    ctx = measure.setup(seed, threads, device, dtype)
    T = infos[0]["T_train"]
    tok = data.get_tokenizer(infos[0]["tokenizer"] or "bytes")
    filler = tasks.corpus_split(tok.name, "val", corpus or infos[0]["corpus"] or "stdlib",
                                infos[0]["data_dir"] or "data")                # held-out text

    groups = {}
    for info, label in zip(infos, given):
        print(f"{task}: evaluating {info['name']} ({label}), T = {info['T_train']}", flush=True)
        model = measure.load_model(info["name"], device)
        rng = np.random.default_rng(seed)                  # the same prompts for every checkpoint
        r = run_checkpoint(model, task, T, n_examples, lengths, depths, tok, filler, rng, device,
                           ctx)
        print("  " + ", ".join(f"{k} {np.round(r[k], 3).tolist()}"
                               for k in ("char", "string", "acc") if k in r))
        groups.setdefault(label, {"runs": []})["runs"].append(dict(checkpoint=info["name"], **r))
    for g in groups.values():
        s = summarise(g["runs"])
        g["mean"], g["std"] = {k: v[0] for k, v in s.items()}, {k: v[1] for k, v in s.items()}

    if task == "copy":
        print_copy_table(groups, T)
    beyond = None if task == "copy" else print_tables(groups, task, T, n_examples)
    os.makedirs(out_dir, exist_ok=True)
    plot(groups, task, T, n_examples, os.path.join(out_dir, f"{task}.png"))
    results = dict(settings=config, T_train=T, results=groups, beyond_T=beyond)
    with open(os.path.join(out_dir, f"{task}.json"), "w") as f:
        json.dump(measure.to_json(results), f, indent=1)
    print(f"wrote {out_dir}/{task}.json and {out_dir}/{task}.png")

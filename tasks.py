"""
The paper's long-context tasks (sec. 5): do the interventions help with real long-range work, not only
with perplexity? Three generators, their scoring, and the evaluation of trained checkpoints on them.

    copy      synthetic copying (Jelassi et al. 2024; table 1): a random string, a separator, the string again
    passkey   passkey retrieval (Mohtashami & Jaggi 2023; fig. 7): a 5-digit key hidden at a depth of filler
    qa1-qa3   BABILong-style reasoning (Kuratov et al. 2024; fig. 6): bAbI stories with one, two or three
              supporting facts, scattered through filler text from the project's corpus

Training goes through train.py (--task=copy ...: its get_batch draws the batches from get_batch here, the
loss covers the answer only), evaluation through this file:

    python tasks.py --task=copy --checkpoints=out-copy-zero-1,out-copy-sp-1 --out_dir=eval-copy
    python tasks.py --task=passkey --checkpoints=... --lengths=256,1024,4096 --depths=0,0.5,1

Checkpoints sharing a label (by default their intervention) are seeds of one setting: their scores are
averaged, with the standard deviation across seeds. Greedy decoding throughout; a prompt's answer is
right when the first word generated is the answer exactly. Writes <task>.json and <task>.png to out_dir.
tasks.sh runs a whole experiment (every setting and seed, then this evaluation) in one command.

Filler: training draws it from the corpus's train split, evaluation from its val split, so that the model
is scored on text it never saw and cannot have memorised the haystack around the facts.
"""
import functools
import json
import os
from contextlib import nullcontext

import numpy as np
import torch

import data
import measure
from configurator import configure

# -----------------------------------------------------------------------------------------------
task = "copy"            # "copy", "passkey", "qa1", "qa2" or "qa3"
checkpoints = ""         # comma-separated train.py out_dirs
labels = ""              # comma-separated, one per checkpoint; "": each run's intervention
out_dir = "eval-tasks"
n_examples = 100         # prompts per cell (per copy length; per context length x depth)
lengths = ()             # e.g. --lengths=256,1024 (one: --lengths=256,). (): copy: L/2, L, 2L, 3L with L the
                         # longest trained copy (3L: the paper's 3x); passkey: T..16T; qa*: 0 (the facts alone), T..16T
depths = (0.0, 0.25, 0.5, 0.75, 1.0)   # passkey: where the key sits in the filler (0: first, 1: last)
corpus = ""              # the filler's corpus (its val split); "": the first checkpoint's
seed = 0
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = "float32"        # tiny models: nothing to gain from bfloat16, and it rounds the long states
threads = 0              # CPU threads for torch; 0 = as many as the cores other jobs leave free
if __name__ == "__main__":
    config = configure(globals())
# -----------------------------------------------------------------------------------------------

TASKS = ("copy", "passkey", "qa1", "qa2", "qa3")   # and, to train on, "babi": qa1-qa3 mixed

# Copying: the symbols are the byte ids of "a", "b", ...; a new line starts an example (so that a model
# whose state carries an earlier example, under State Passing, sees where this one begins, as Jelassi et
# al.'s start token), "|" separates the string from its copy.
FIRST_SYMBOL, START, SEPARATOR = ord("a"), ord("\n"), ord("|")
ALPHABET_SIZE = 16


def copy_example(length, rng, alphabet_size=ALPHABET_SIZE):
    """The start symbol, a random string of `length` symbols, the separator, the same string again.
    -> ids (2 length + 2,) int64; target_mask (2 length + 2,) bool, True on the copy only."""
    if not 1 <= alphabet_size <= 26:
        raise ValueError(f"alphabet_size = {alphabet_size}: use 1..26 (the letters a-z)")
    s = FIRST_SYMBOL + rng.integers(0, alphabet_size, length)
    ids = np.concatenate([[START], s, [SEPARATOR], s]).astype(np.int64)
    return ids, np.arange(2 * length + 2) > length + 1


def copy_max(T):
    """The longest copy that a training context of T tokens holds: 2 L + 1 inputs <= T."""
    return (T - 1) // 2


def score_copy(generated, source):
    """generated, source (B, L) ids -> (character accuracy, whole-string accuracy), each (B,) float."""
    right = np.asarray(generated) == np.asarray(source)
    return right.mean(axis=1), right.all(axis=1).astype(float)


def score_answer(output, answer):
    """Passkey and bAbI: is the first word of the generated text (its trailing period aside) the answer?"""
    words = output.split()
    return bool(words) and words[0].rstrip(".") == answer


# Filler: random windows of a corpus split, cut at token boundaries (BABILong uses PG-19 books).
@functools.lru_cache(maxsize=4)
def corpus_split(tokenizer_name, split="val", corpus="stdlib", data_dir="data"):
    """The tokens of a prepared corpus split: (N,) ids, memory-mapped."""
    return getattr(data.load(data.prepare(corpus, tokenizer_name, data_dir)), split)


def _filler(n, tokenizer, rng, filler):
    """n consecutive tokens from a random point of `filler` (default: the stdlib's val split)."""
    tokens = corpus_split(tokenizer.name) if filler is None else filler
    if n > len(tokens):
        raise ValueError(f"asked for {n} filler tokens, the corpus split has {len(tokens)}")
    start = rng.integers(0, len(tokens) - n + 1)
    return np.asarray(tokens[start:start + n], dtype=np.int64)


def _scatter(pieces, n_tokens, tokenizer, rng, filler, tail):
    """Filler with `pieces` (lists of ids) inserted in order at random points, then `tail`: exactly
    n_tokens ids, or the pieces and the tail alone when they leave no room for filler."""
    F = max(0, n_tokens - len(tail) - sum(len(p) for p in pieces))
    cuts = np.sort(rng.integers(0, F + 1, len(pieces)))
    hay, out, prev = _filler(F, tokenizer, rng, filler), [], 0
    for cut, piece in zip(cuts, pieces):
        out += [hay[prev:cut], np.asarray(piece, dtype=np.int64)]
        prev = cut
    out += [hay[prev:], np.asarray(tail, dtype=np.int64)]
    return np.concatenate(out)


# Passkey retrieval (Mohtashami & Jaggi 2023), with a short instruction to fit small contexts.
INSTRUCTION = "There is a pass key in this text. Remember it.\n"
KEY_SENTENCE = "\nThe pass key is {key}. Remember it. {key} is the pass key.\n"
QUESTION = "\nWhat is the pass key? The pass key is"


def passkey_example(n_tokens, depth, tokenizer, rng, filler=None):
    """The instruction, filler with the key sentence at the fraction `depth` of it, the question.
    -> prompt_ids (n_tokens,) int64, key: the 5-digit string (it appears nowhere else in the prompt)."""
    if not 0 <= depth <= 1:
        raise ValueError(f"depth = {depth}: use a fraction of the filler in [0, 1]")
    head, tail = tokenizer.encode(INSTRUCTION), tokenizer.encode(QUESTION)
    for _ in range(100):
        key = str(rng.integers(10000, 100000))
        sentence = tokenizer.encode(KEY_SENTENCE.format(key=key))
        F = n_tokens - len(head) - len(sentence) - len(tail)
        if F < 0:
            raise ValueError(f"n_tokens = {n_tokens} is too short for the passkey prompt: it needs "
                             f"{n_tokens - F} tokens without filler")
        before = round(depth * F)
        prompt = np.concatenate([head, _filler(before, tokenizer, rng, filler), sentence,
                                 _filler(F - before, tokenizer, rng, filler), tail]).astype(np.int64)
        if tokenizer.decode(prompt).count(key) == 2:   # redraw a key that the filler happens to hold
            return prompt, key
    raise RuntimeError("no key absent from the filler in 100 draws: is the filler made of digits?")


# bAbI qa1-qa3 (Weston et al. 2015), written here: actors move between places and carry objects.
ACTORS = ("Mary", "John", "Daniel", "Sandra")
PLACES = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
OBJECTS = ("apple", "football", "milk")
MOVE = ("moved to", "went to", "journeyed to", "travelled to", "went back to")
TAKE = ("picked up", "got", "grabbed", "took")
DROP = ("dropped", "discarded", "put down", "left")
N_FACTS = {"qa1": 4, "qa2": 5, "qa3": 5}   # facts per story: with bytes, <= 226 tokens with the question


def babi_story(task, rng):
    """A story of N_FACTS[task] sentences and a question whose answer follows from 1 (qa1), 2 (qa2: who took
    the object, where they went) or 3 (qa3) of them. -> (facts: list of str, question, answer)."""
    if task not in N_FACTS:
        raise ValueError(f"task {task!r}: the bAbI tasks here are qa1, qa2, qa3")
    while True:                                       # redraw until the question has an answer
        where, holder, trail, facts = {}, {}, {o: [] for o in OBJECTS}, []
        for _ in range(N_FACTS[task]):
            a = ACTORS[rng.integers(len(ACTORS))]
            mine = [o for o in OBJECTS if holder.get(o) == a]
            free = [o for o in OBJECTS if o not in holder and a in where
                    and (not trail[o] or trail[o][-1] == where[a])]
            act = "move" if task == "qa1" else rng.choice(["move", "move", "take", "drop"])
            if act == "take" and free:
                o = free[rng.integers(len(free))]
                holder[o] = a
                if not trail[o]:
                    trail[o].append(where[a])
                facts.append(f"{a} {rng.choice(TAKE)} the {o}.")
            elif act == "drop" and mine:
                o = mine[rng.integers(len(mine))]
                del holder[o]
                facts.append(f"{a} {rng.choice(DROP)} the {o}.")
            else:
                p = rng.choice([p for p in PLACES if p != where.get(a)])
                where[a] = p
                for o in mine:                        # what a carries goes along
                    trail[o].append(p)
                facts.append(f"{a} {rng.choice(MOVE)} the {p}.")
        if task == "qa1":
            a = rng.choice(sorted(where))
            return facts, f"Where is {a}?", where[a]
        known = [o for o in OBJECTS if trail[o]]
        if task == "qa2" and known:
            o = rng.choice(known)
            return facts, f"Where is the {o}?", trail[o][-1]
        # qa3: the place before the object's latest one, asked only where that place is unambiguous
        moved = [o for o in known if len(trail[o]) >= 2 and trail[o][-1] not in trail[o][:-1]]
        if task == "qa3" and moved:
            o = rng.choice(moved)
            return facts, f"Where was the {o} before the {trail[o][-1]}?", trail[o][-2]


def babi_example(task, n_tokens, tokenizer, rng, filler=None):
    """A bAbI story's facts, each on its own line, scattered in order through filler up to n_tokens
    tokens (none where the facts alone are longer), then "Question: ...?" and "Answer:".
    -> prompt_ids (max(n_tokens, facts + question),) int64, answer: a place."""
    facts, question, answer = babi_story(task, rng)
    pieces = [tokenizer.encode(f"\n{f}\n") for f in facts]
    return _scatter(pieces, n_tokens, tokenizer, rng, filler,
                    tokenizer.encode(f"\nQuestion: {question}\nAnswer:")), answer


# -----------------------------------------------------------------------------------------------
# training batches, for train.py


@functools.lru_cache(maxsize=4)
def _tokenizer(name):
    return data.get_tokenizer(name)


def get_batch(task, split, batch_size, block_size, generator, dataset, device="cpu"):
    """Task samples -> x, y (B, T'), y = -1 except on the targets (the loss ignores -1). copy: one copy
    length per batch, uniform in [L/2, L], L = copy_max(T), so T' = 2 length + 1 <= T; passkey, qa*, babi:
    T' = T, prompts of
    about T tokens with the filler from `split` of `dataset` (data.Data), the answer, filler after it."""
    if task not in TASKS + ("babi",):
        raise ValueError(f"task = {task!r}: use one of {', '.join(TASKS)}, babi (qa1-qa3 mixed), or '' "
                         f"(the corpus)")
    rng = np.random.default_rng(torch.randint(2**62, (1,), generator=generator).item())
    if task == "copy":
        if block_size < 5:
            raise ValueError(f"block_size = {block_size}: copying needs >= 5 (copy lengths 1..(T - 1) // 2)")
        L = int(rng.integers(copy_max(block_size) // 2, copy_max(block_size) + 1))
        ids, mask = zip(*(copy_example(L, rng) for _ in range(batch_size)))
        ids, mask = np.stack(ids), np.stack(mask)
        y = np.where(mask[:, 1:], ids[:, 1:], -1)
        return torch.from_numpy(ids[:, :-1]).to(device), torch.from_numpy(y).to(device)
    tok, filler = _tokenizer(dataset.meta["tokenizer"]), getattr(dataset, split)
    x, y = np.zeros((batch_size, block_size + 1), np.int64), np.full((batch_size, block_size), -1)
    n = block_size + 1 - len(tok.encode(" bathroom\n"))   # room for the longest answer (" 12345\n" is shorter)
    if task == "passkey":    # in block_size's terms, not n_tokens' (passkey_example's)
        fixed = sum(len(tok.encode(t)) for t in (INSTRUCTION, KEY_SENTENCE.format(key="12345"), QUESTION))
        if n < fixed:
            raise ValueError(f"block_size = {block_size} is too short for passkey prompts: the instruction, key "
                             f"sentence, question and answer take {fixed + block_size + 1 - n} tokens. Raise "
                             f"--block_size to at least {fixed + block_size - n}")
    for b in range(batch_size):
        if task == "passkey":
            prompt, answer = passkey_example(n, rng.random(), tok, rng, filler)
        else:
            qa = f"qa{rng.integers(1, 4)}" if task == "babi" else task
            prompt, answer = babi_example(qa, n, tok, rng, filler)
        if len(prompt) > n:
            raise ValueError(f"a {task} prompt takes {len(prompt)} tokens, block_size = {block_size} "
                             f"leaves {n}: raise block_size")
        answer = tok.encode(f" {answer}\n")        # the newline: where the answer ends
        row = np.concatenate([prompt, answer, _filler(block_size + 1 - len(prompt) - len(answer), tok,
                                                      rng, filler)])
        x[b] = row
        y[b, len(prompt) - 1:len(prompt) - 1 + len(answer)] = answer
    return torch.from_numpy(x[:, :-1]).to(device), torch.from_numpy(y).to(device)


# -----------------------------------------------------------------------------------------------
# evaluation: greedy decoding, from a zero state (as all evaluation, sec. 4.2)


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
    """Copies of n random strings per length -> {length: (char accuracies (n,), string accuracies (n,))}."""
    result = {}
    for L in lengths:
        ids = np.stack([copy_example(L, rng)[0] for _ in range(n)])
        result[L] = score_copy(generate(model, list(ids[:, :L + 2]), L, device, ctx), ids[:, L + 2:])
    return result


def eval_answers(model, examples, tokenizer, device="cpu", ctx=None):
    """examples: [(prompt_ids, answer)] -> (len(examples),) bool, the answers right."""
    longest = max(len(tokenizer.encode(f" {a}\n")) for _, a in examples)
    gen = generate(model, [p for p, _ in examples], longest, device, ctx)
    return np.array([score_answer(tokenizer.decode(g), a) for g, (_, a) in zip(gen, examples)])


def run_checkpoint(model, T, tok, filler, rng, device, ctx):
    """The task's scores for one model: copy: {"char", "string"} (lengths,); passkey: {"acc"} (depths,
    lengths); qa*: {"acc"} (lengths,). Also the lengths (and depths) used."""
    if task == "copy":
        L = copy_max(T)
        Ls = list(lengths) or [L // 2, L, 2 * L, 3 * L]
        r = eval_copy(model, Ls, n_examples, rng, device, ctx)
        return dict(lengths=Ls, char=[r[L][0].mean() for L in Ls], string=[r[L][1].mean() for L in Ls])
    Ls = list(lengths) or [0] * (task != "passkey") + [T * 2**i for i in range(5)]
    ds = list(depths) if task == "passkey" else [None]
    acc = np.zeros((len(ds), len(Ls)))
    for j, L in enumerate(Ls):
        for i, d in enumerate(ds):
            examples = [passkey_example(L, d, tok, rng, filler) if task == "passkey"
                        else babi_example(task, L, tok, rng, filler) for _ in range(n_examples)]
            acc[i, j] = eval_answers(model, examples, tok, device, ctx).mean()
        print(f"  {L} tokens: accuracy {np.round(acc[:, j], 2).tolist()}", flush=True)
    return dict(lengths=Ls, depths=ds, acc=acc) if task == "passkey" else dict(lengths=Ls, acc=acc[0])


def summarise(runs):
    """Runs of one label (seeds) -> {key: (mean, std)} over the seeds, per score array (std 0 for one)."""
    keys = [k for k in ("char", "string", "acc") if k in runs[0]]
    return {k: (np.mean([r[k] for r in runs], 0), np.std([r[k] for r in runs], 0, ddof=min(1, len(runs) - 1)))
            for k in keys}


def beyond_T(groups, T):
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


def print_tables(groups, T):
    """passkey, qa*: accuracy per prompt length (passkey: the mean over depths), mean +- std over seeds;
    then the accuracy beyond T and each setting's difference from the first one, with standard errors."""
    first = next(iter(groups.values()))["runs"][0]
    print(f"\n{task}: accuracy by prompt length (T = {T}{'; the mean over depths' if task == 'passkey' else ''}), "
          "mean +- std over seeds")
    print("| setting | seeds | " + " | ".join(map(str, first["lengths"])) + " |\n|---|---|" + "---|" * len(first["lengths"]))
    for label, g in groups.items():
        accs = [np.asarray(r["acc"]).reshape(-1, len(first["lengths"])).mean(0) for r in g["runs"]]
        mean, std = np.mean(accs, 0), np.std(accs, 0, ddof=min(1, len(accs) - 1))
        print(f"| {label} | {len(accs)} | " + " | ".join(f"{m:.2f} +- {s:.2f}" for m, s in zip(mean, std)) + " |")
    b = beyond_T(groups, T)
    ref = next(iter(b))                       # the first setting: the others are compared with it
    m0, s0 = b[ref]
    print(f"\nbeyond T (prompts longer than {T}): mean +- standard error "
          f"({'over seeds' if len(groups[ref]['runs']) > 1 else f'over {n_examples} prompts a cell'})")
    print(f"| setting | accuracy | minus {ref} |\n|---|---|---|")
    for label, (m, s) in b.items():
        diff = "" if label == ref else f"{m - m0:+.3f} +- {np.hypot(s, s0):.3f}"
        print(f"| {label} | {m:.3f} +- {s:.3f} | {diff} |")
    if task == "passkey":   # the same, one depth at a time: where the key sits decides what fails
        print(f"\nbeyond T, by depth of the key: mean +- standard error\n| depth | " +
              " | ".join(b) + f" | minus {ref} |\n|---|" + "---|" * (len(b) + 1))
        for i, depth in enumerate(first["depths"]):
            at = beyond_T({label: {"runs": [dict(r, acc=np.asarray(r["acc"])[i]) for r in g["runs"]]}
                           for label, g in groups.items()}, T)
            r0, e0 = at[ref]
            cells = [f"{m:.3f} +- {s:.3f}" for m, s in at.values()]
            diffs = [f"{m - r0:+.3f} +- {np.hypot(s, e0):.3f}" for label, (m, s) in at.items() if label != ref]
            print(f"| {depth} | " + " | ".join(cells) + " | " + ", ".join(diffs) + " |")
    return b


def plot(groups, T, path):
    """copy: accuracies against the copy length; passkey: a heatmap per label (fig. 7); qa*: accuracy
    against the haystack's length (fig. 6). Error bars: the std across seeds."""
    import matplotlib                     # here, not at the top: train.py imports this file for the samples
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
            ax.set(xlabel="context length (tokens)", ylabel="depth of the key",
                   title=f"{label} (T = {T}; mean of {len(g['runs'])} seed{'s' * (len(g['runs']) > 1)})")
    else:
        panels = ("char", "string") if task == "copy" else ("acc",)
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
        x = np.arange(len(first["lengths"]))
        for ax, key in zip(axes[0], panels):
            for label, g in groups.items():
                seeds = len(g["runs"])
                one = seeds == 1 and key == "acc"     # one seed: the binomial error over the prompts
                err = np.sqrt(g["mean"][key] * (1 - g["mean"][key]) / n_examples) if one else g["std"][key]
                what = "1 seed; bars: s.e. over prompts" if one else f"seeds: {seeds}"
                ax.errorbar(x, g["mean"][key], err, marker="o", capsize=3, label=f"{label} ({what})")
            ax.set_xticks(x, first["lengths"])
            ax.set_ylim(-0.02, 1.02)
            what = {"char": "character accuracy", "string": "whole-string accuracy", "acc": "accuracy"}[key]
            ax.set(ylabel=what, xlabel=f"copy length (longest trained: {copy_max(T)})" if task == "copy"
                   else f"prompt length in tokens (T = {T}; 0: the facts alone)", title=f"{task}: {what}")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    measure.quiet_ctrl_c("tasks.py")
    if task not in TASKS:
        raise ValueError(f"--task={task!r}: use one of {', '.join(TASKS)}")
    measure.check_settings(config, positive=("n_examples",), non_negative=("threads",))   # out_dir too
    infos = [measure.checkpoint_info(name) for name in measure.checkpoint_names(checkpoints)]
    given = measure.split_labels(labels) or [i["label"] for i in infos]
    if len(given) != len(infos):
        raise ValueError(f"{len(given)} labels for {len(infos)} checkpoints: give one label per checkpoint")
    measure.check_tokenizers(infos, "")   # the prompts are tokenized with the first checkpoint's
    ctx = measure.setup(seed, threads, device, dtype)
    T = infos[0]["T_train"]
    tok = data.get_tokenizer(infos[0]["tokenizer"] or "bytes")
    filler = corpus_split(tok.name, "val", corpus or infos[0]["corpus"] or "stdlib",   # held-out text
                          infos[0]["data_dir"] or "data")
    groups = {}
    for info, label in zip(infos, given):
        print(f"{task}: evaluating {info['name']} ({label}), T = {info['T_train']}", flush=True)
        model = measure.load_model(info["name"], device)
        r = run_checkpoint(model, T, tok, filler, np.random.default_rng(seed), device, ctx)  # the same prompts for all
        print("  " + ", ".join(f"{k} {np.round(r[k], 3).tolist()}" for k in ("char", "string", "acc") if k in r))
        groups.setdefault(label, {"runs": []})["runs"].append(dict(checkpoint=info["name"], **r))
    for g in groups.values():
        s = summarise(g["runs"])
        g["mean"], g["std"] = {k: v[0] for k, v in s.items()}, {k: v[1] for k, v in s.items()}
    if task == "copy":    # table 1: accuracies at the longest evaluated length (3x the longest trained)
        L = groups[given[0]]["runs"][0]["lengths"][-1]
        print(f"\ncopying at length {L} (trained on {copy_max(T) // 2}-{copy_max(T)}), mean +- std over seeds")
        print("| setting | seeds | character accuracy | whole-string accuracy |\n|---|---|---|---|")
        for label, g in groups.items():
            print(f"| {label} | {len(g['runs'])} | {g['mean']['char'][-1]:.3f} +- {g['std']['char'][-1]:.3f} "
                  f"| {g['mean']['string'][-1]:.3f} +- {g['std']['string'][-1]:.3f} |")
    beyond = None if task == "copy" else print_tables(groups, T)
    os.makedirs(out_dir, exist_ok=True)
    plot(groups, T, os.path.join(out_dir, f"{task}.png"))
    with open(os.path.join(out_dir, f"{task}.json"), "w") as f:
        json.dump(measure.to_json(dict(settings=config, T_train=T, results=groups, beyond_T=beyond)), f, indent=1)
    print(f"wrote {out_dir}/{task}.json and {out_dir}/{task}.png")

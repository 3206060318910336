"""
The paper's long-context tasks (sec. 5): do the interventions help with real long-range work, not
only with perplexity? This file holds the tasks' samples and their training batches:

    copy      synthetic copying (Jelassi et al. 2024; table 1): a random string, a separator, the
              string again
    passkey   passkey retrieval (Mohtashami & Jaggi 2023; fig. 7): a 5-digit key hidden at a depth
              of filler
    qa1-qa3   BABILong-style reasoning (Kuratov et al. 2024; fig. 6): bAbI stories with one, two or
              three supporting facts, scattered through filler text from the project's corpus

Training goes through train.py (--task=copy ...: its get_batch draws the batches from get_batch
here, the loss covers the answer only); scoring trained checkpoints on the tasks (greedy generation,
the scores, the tables and figures) through evaluate_tasks.py. tasks.sh runs a whole experiment
(every setting and seed, then the scoring) in one command.

Filler: training draws it from the corpus's train split, evaluation from its val split, so that the
model is scored on text it never saw and cannot have memorised the haystack around the facts.
"""
import functools

import numpy as np
import torch

import data

TASKS = ("copy", "passkey", "qa1", "qa2", "qa3")   # and, to train on, "babi": qa1-qa3 mixed

# Copying: the symbols are the byte ids of "a", "b", ...; a new line starts an example (so that a
# model whose state carries an earlier example, under State Passing, sees where this one begins, as
# Jelassi et al.'s start token), "|" separates the string from its copy.
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
    -> prompt_ids (n_tokens,) int64, key: the 5-digit string (it appears nowhere else in the
    prompt)."""
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
        pieces = [head, _filler(before, tokenizer, rng, filler), sentence,
                  _filler(F - before, tokenizer, rng, filler), tail]
        prompt = np.concatenate(pieces).astype(np.int64)
        if tokenizer.decode(prompt).count(key) == 2:   # else redraw: the filler holds this key
            return prompt, key
    raise RuntimeError("no key absent from the filler in 100 draws: is the filler made of digits?")


# bAbI qa1-qa3 (Weston et al. 2015), written here: actors move between places and carry objects.
ACTORS = ("Mary", "John", "Daniel", "Sandra")
PLACES = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
OBJECTS = ("apple", "football", "milk")
MOVE = ("moved to", "went to", "journeyed to", "travelled to", "went back to")
TAKE = ("picked up", "got", "grabbed", "took")
DROP = ("dropped", "discarded", "put down", "left")
# facts per story: with bytes, <= 226 tokens with the question
N_FACTS = {"qa1": 4, "qa2": 5, "qa3": 5}


def babi_story(task, rng):
    """A story of N_FACTS[task] sentences and a question whose answer follows from 1 (qa1), 2 (qa2:
    who took the object, where they went) or 3 (qa3) of them. -> (facts: list of str, question,
    answer)."""
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
    """Task samples -> x, y (B, T'), y = -1 except on the targets (the loss ignores -1). copy: one
    copy length per batch, uniform in [L/2, L], L = copy_max(T), so T' = 2 length + 1 <= T; passkey,
    qa*, babi: T' = T, prompts of about T tokens with the filler from `split` of `dataset`
    (data.Data), the answer, filler after it."""
    if task not in TASKS + ("babi",):
        raise ValueError(f"task = {task!r}: use one of {', '.join(TASKS)}, babi (qa1-qa3 mixed), "
                         f"or '' (the corpus)")
    rng = np.random.default_rng(torch.randint(2**62, (1,), generator=generator).item())
    if task == "copy":
        if block_size < 5:
            raise ValueError(f"block_size = {block_size}: copying needs >= 5 "
                             f"(copy lengths 1..(T - 1) // 2)")
        L = int(rng.integers(copy_max(block_size) // 2, copy_max(block_size) + 1))
        ids, mask = zip(*(copy_example(L, rng) for _ in range(batch_size)))
        ids, mask = np.stack(ids), np.stack(mask)
        y = np.where(mask[:, 1:], ids[:, 1:], -1)
        return torch.from_numpy(ids[:, :-1]).to(device), torch.from_numpy(y).to(device)
    tok, filler = _tokenizer(dataset.meta["tokenizer"]), getattr(dataset, split)
    x, y = np.zeros((batch_size, block_size + 1), np.int64), np.full((batch_size, block_size), -1)
    # room for the longest answer (" 12345\n" is shorter)
    n = block_size + 1 - len(tok.encode(" bathroom\n"))
    if task == "passkey":    # in block_size's terms, not n_tokens' (passkey_example's)
        fixed = sum(len(tok.encode(t))
                    for t in (INSTRUCTION, KEY_SENTENCE.format(key="12345"), QUESTION))
        if n < fixed:
            raise ValueError(f"block_size = {block_size} is too short for passkey prompts: the "
                             f"instruction, key sentence, question and answer take "
                             f"{fixed + block_size + 1 - n} tokens. Raise --block_size to at least "
                             f"{fixed + block_size - n}")
    for b in range(batch_size):
        if task == "passkey":
            prompt, answer = passkey_example(n, rng.random(), tok, rng, filler)
        else:
            qa = f"qa{rng.integers(1, 4)}" if task == "babi" else task
            prompt, answer = babi_example(qa, n, tok, rng, filler)
        if len(prompt) > n:
            raise ValueError(f"a {task} prompt takes {len(prompt)} tokens, "
                             f"block_size = {block_size} leaves {n}: raise block_size")
        answer = tok.encode(f" {answer}\n")        # the newline: where the answer ends
        after = _filler(block_size + 1 - len(prompt) - len(answer), tok, rng, filler)
        x[b] = np.concatenate([prompt, answer, after])
        y[b, len(prompt) - 1:len(prompt) - 1 + len(answer)] = answer
    return torch.from_numpy(x[:, :-1]).to(device), torch.from_numpy(y).to(device)

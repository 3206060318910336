"""tasks.py: each generator does what its definition says, checked from the outside (the bAbI
answers by a small world simulator written here, which reads the story's sentences back);
evaluate_tasks.py: the scorers on hand-made outputs; and a tiny end-to-end run of each task through
train.py and evaluate_tasks.py."""
import json
import re
import runpy
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import data
import evaluate_tasks
import tasks

pytestmark = pytest.mark.usefixtures("one_thread")
TOK = data.get_tokenizer("bytes")


@pytest.fixture(scope="module")
def filler():
    """Plain ASCII text (this repository's own sources), so that one token is one character."""
    text = b"".join(p.read_bytes() for p in sorted(Path(tasks.__file__).parent.glob("*.py")))
    return np.frombuffer(bytes(c for c in text if c < 128), dtype=np.uint8)


def test_copy_example_repeats_the_string_after_the_separator():
    rng = np.random.default_rng(0)
    for length in (1, 5, 40):
        ids, mask = tasks.copy_example(length, rng, alphabet_size=4)
        assert ids.shape == mask.shape == (2 * length + 2,)
        assert ids[0] == ord("\n") and ids[length + 1] == ord("|")
        assert (ids[length + 2:] == ids[1:length + 1]).all()               # the copy is the source
        assert mask.sum() == length and mask[length + 2:].all()   # the target is the copy only
        assert set(ids[1:length + 1]) <= set(range(ord("a"), ord("a") + 4))
    with pytest.raises(ValueError, match="alphabet_size"):
        tasks.copy_example(5, rng, alphabet_size=0)


def test_scorers_on_hand_made_outputs():
    src = np.array([[1, 2, 3, 4], [1, 2, 3, 4]])
    char, string = evaluate_tasks.score_copy(np.array([[1, 2, 3, 4], [1, 2, 9, 4]]), src)
    assert char.tolist() == [1.0, 0.75] and string.tolist() == [1.0, 0.0]
    assert evaluate_tasks.score_answer(" bathroom.\nQuestion", "bathroom")
    assert evaluate_tasks.score_answer(" 12345. Remem", "12345")
    assert not evaluate_tasks.score_answer(" bedroom", "bathroom")
    assert not evaluate_tasks.score_answer(" bathroomx", "bathroom")
    assert not evaluate_tasks.score_answer(" 123456", "12345")
    assert not evaluate_tasks.score_answer("   ", "12345")


def find(seq, sub):
    """Every start of the list `sub` in the list `seq`."""
    return [i for i in range(len(seq) - len(sub) + 1) if seq[i:i + len(sub)] == sub]


def test_beyond_T_by_hand():
    # Prompts longer than T = 256 are 512 and 1024. Two seeds: the mean of the seeds' means, and
    # their std / sqrt(2). One seed: the binomial error of the cells, sqrt(sum p (1 - p) / n) /
    # cells, with n = 10 prompts a cell.
    lengths = [256, 512, 1024]
    two = {"runs": [dict(lengths=lengths, acc=[1.0, 0.6, 0.2]),
                    dict(lengths=lengths, acc=[1.0, 0.8, 0.4])]}
    one = {"runs": [dict(lengths=lengths, acc=[0.9, 0.5, 0.1])]}
    got = evaluate_tasks.beyond_T({"zero": two, "sp": one}, 256, n_examples=10)
    assert got["zero"][0] == pytest.approx(0.5)                         # (0.4 + 0.6) / 2
    assert got["zero"][1] == pytest.approx(np.std([0.4, 0.6], ddof=1) / np.sqrt(2))
    assert got["sp"][0] == pytest.approx(0.3)
    assert got["sp"][1] == pytest.approx(np.sqrt(0.5 * 0.5 / 10 + 0.1 * 0.9 / 10) / 2)


@pytest.mark.parametrize("n_tokens", [146, 300, 1000])
def test_passkey_key_twice_near_its_depth_within_n_tokens(filler, n_tokens):
    rng = np.random.default_rng(n_tokens)
    head, tail = TOK.encode(tasks.INSTRUCTION), TOK.encode(tasks.QUESTION)
    for depth in (0.0, 0.3, 0.5, 1.0):
        prompt, key = tasks.passkey_example(n_tokens, depth, TOK, rng, filler)
        text, ids = TOK.decode(prompt), prompt.tolist()
        assert len(ids) <= n_tokens and re.fullmatch(r"\d{5}", key)
        assert text.count(key) == 2 and text.endswith("What is the pass key? The pass key is")
        assert ids[:len(head)] == head and ids[-len(tail):] == tail
        sentence = TOK.encode(f"\nThe pass key is {key}. Remember it. {key} is the pass key.\n")
        [start] = find(ids, sentence)
        n_filler = len(ids) - len(head) - len(sentence) - len(tail)
        assert abs((start - len(head)) - depth * n_filler) <= 0.5   # depth: the filler before it
    with pytest.raises(ValueError, match="too short"):
        tasks.passkey_example(100, 0.5, TOK, rng, filler)
    with pytest.raises(ValueError, match="depth"):
        tasks.passkey_example(300, 1.5, TOK, rng, filler)


class FirstKey:
    """A random generator whose first key (integers(10000, 100000)) is 12345; the rest is
    numpy's."""

    def __init__(self):
        self.rng, self.keys = np.random.default_rng(0), [12345]

    def integers(self, low, high=None, size=None):
        if (low, high) == (10000, 100000) and self.keys:
            return self.keys.pop()
        return self.rng.integers(low, high, size)


def test_passkey_never_uses_a_key_the_filler_holds():
    digits = np.frombuffer(b"x = 12345\n" * 100, dtype=np.uint8)
    prompt, key = tasks.passkey_example(400, 0.5, TOK, FirstKey(), digits)
    assert key != "12345" and TOK.decode(prompt).count(key) == 2           # 12345 was redrawn


# The world simulator: reads the facts back and answers the question from them.
MOVE = re.compile(r"(\w+) (?:moved to|went to|journeyed to|travelled to|went back to) the (\w+)\.")
TAKE = re.compile(r"(\w+) (?:picked up|got|grabbed|took) the (\w+)\.")
DROP = re.compile(r"(\w+) (?:dropped|discarded|put down|left) the (\w+)\.")


def simulate(lines):
    """The facts (in order) among `lines` -> (answer to the final question, number of facts)."""
    place, holder, history, n = {}, {}, defaultdict(list), 0

    def put(obj, where):
        if not history[obj] or history[obj][-1] != where:
            history[obj].append(where)

    for line in lines:
        if m := MOVE.fullmatch(line):
            actor, where = m.groups()
            place[actor] = where
            for obj in [o for o, h in holder.items() if h == actor]:
                put(obj, where)
        elif m := TAKE.fullmatch(line):
            actor, obj = m.groups()
            assert obj not in holder and actor in place             # free, and its taker somewhere
            assert not history[obj] or history[obj][-1] == place[actor]   # taken where it lies
            holder[obj] = actor
            put(obj, place[actor])
        elif m := DROP.fullmatch(line):
            actor, obj = m.groups()
            assert holder.pop(obj) == actor                           # dropped by whoever held it
        else:
            continue
        n += 1
    question = lines[-2]
    if m := re.fullmatch(r"Question: Where is (?:the )?(\w+)\?", question):
        x = m.group(1)
        return (place[x] if x in place else history[x][-1]), n
    m = re.fullmatch(r"Question: Where was the (\w+) before the (\w+)\?", question)
    obj, later = m.groups()
    h = history[obj]
    assert h[-1] == later and h.count(later) == 1                     # the question is unambiguous
    return h[-2], n


@pytest.mark.parametrize("task", ["qa1", "qa2", "qa3"])
def test_babi_answers_follow_from_the_facts(filler, task):
    rng = np.random.default_rng(1)
    for n_tokens in [0] * 100 + [400] * 50 + [3000] * 5:
        prompt, answer = tasks.babi_example(task, n_tokens, TOK, rng, filler)
        lines = TOK.decode(prompt).split("\n")
        assert lines[-1] == "Answer:"
        simulated, n_facts = simulate(lines)
        assert simulated == answer and answer in tasks.PLACES
        assert n_facts == tasks.N_FACTS[task]
        assert len(prompt) == n_tokens if n_tokens == 3000 else len(prompt) <= max(n_tokens, 230)
    assert "Where was" in lines[-2] if task == "qa3" else "Where is" in lines[-2]


@pytest.mark.parametrize("task", ["copy", "passkey", "babi"])
def test_get_batch_targets_are_the_answers_only(filler, task):
    dataset = SimpleNamespace(train=filler, val=filler, meta={"tokenizer": "bytes"})
    T = 17 if task == "copy" else 256
    x, y = tasks.get_batch(task, "train", 6, T, torch.Generator().manual_seed(0), dataset)
    assert x.shape == y.shape and x.shape[1] <= T
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        on = [t for t, v in enumerate(row_y) if v != -1]
        assert on == list(range(on[0], on[-1] + 1))                  # one contiguous answer
        assert [row_x[t + 1] for t in on[:-1]] == [row_y[t] for t in on[:-1]]   # y is x shifted
        answer, prompt = TOK.decode([row_y[t] for t in on]), TOK.decode(row_x[:on[0] + 1])
        if task == "copy":
            L = len(on)
            assert (T - 1) // 4 <= L <= (T - 1) // 2 and row_x[1:L + 1] == [row_y[t] for t in on]
        elif task == "passkey":
            key = re.search(r"is (\d{5})\.", prompt)[1]
            assert prompt.endswith("The pass key is") and answer == " " + key + "\n"
        else:
            assert answer == " " + simulate(prompt.split("\n"))[0] + "\n"
    with pytest.raises(ValueError, match="raise block_size"):
        tasks.get_batch("qa3", "train", 2, 64, torch.Generator(), dataset)
    with pytest.raises(ValueError, match="task"):
        tasks.get_batch("qa4", "train", 2, 64, torch.Generator(), dataset)


def test_a_passkey_context_too_short_names_block_size(filler):
    # issue 23: T = 16 said "n_tokens = 7 is too short"; the fixed text alone is over 100 bytes
    dataset = SimpleNamespace(train=filler, val=filler, meta={"tokenizer": "bytes"})
    fixed = (len(tasks.INSTRUCTION) + len(tasks.KEY_SENTENCE.format(key="12345"))
             + len(tasks.QUESTION))
    with pytest.raises(ValueError, match=rf"block_size = 16 is too short for passkey prompts.*"
                                         rf"--block_size to at least {fixed + len(' bathroom')}"):
        tasks.get_batch("passkey", "train", 1, 16, torch.Generator().manual_seed(0), dataset)
    need = fixed + len(" bathroom\n") - 1   # the shortest block_size that fits: it works
    x, y = tasks.get_batch("passkey", "train", 1, need, torch.Generator().manual_seed(0), dataset)
    assert x.shape == (1, need)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, filler):
    """A small corpus for train.py: the ASCII filler cut into 20 documents."""
    d = tmp_path_factory.mktemp("corpus")
    for i, doc in enumerate(np.array_split(filler, 20)):
        (d / f"{i}.txt").write_bytes(doc.tobytes())
    return d


def run_script(script, args):
    argv = sys.argv
    sys.argv = [script] + args
    try:
        runpy.run_path(str(Path(tasks.__file__).parent / script), run_name="__main__")
    finally:
        sys.argv = argv


@pytest.mark.parametrize("task, eval_task, T, intervention", [
    ("copy", "copy", 17, "state_passing"), ("passkey", "passkey", 256, "fitted_noise"),
    ("babi", "qa2", 256, "zero")])
def test_end_to_end(corpus, tmp_path, capsys, task, eval_task, T, intervention):
    """A few steps of a tiny model on the task, then its evaluation: every score is a fraction of
    the prompts."""
    out = tmp_path / "run"
    run_script("train.py", [f"--{k}={v}" for k, v in dict(
        init_from="scratch", corpus=corpus, data_dir=corpus.parent / "data", out_dir=out, task=task,
        intervention=intervention, d_model=32, n_layer=1, d_state=8, headdim=8, block_size=T,
        batch_size=4, max_iters=3, eval_interval=3, eval_iters=1, log_interval=1, threads=1,
        final_eval_seqs=0).items()])
    assert (out / "ckpt.pt").exists()
    lengths = "4,8," if task == "copy" else "0,300," if task == "babi" else "200,300,"
    shutil.copytree(out, tmp_path / "run2")                     # a second seed, as it were
    run_script("evaluate_tasks.py", [
        f"--task={eval_task}", f"--checkpoints={out},{tmp_path / 'run2'}", "--n_examples=3",
        "--threads=1", f"--lengths={lengths}", "--depths=0.,1.", f"--out_dir={tmp_path / 'eval'}",
        "--device=cpu"])
    result = json.loads((tmp_path / "eval" / f"{eval_task}.json").read_text())
    [(label, group)] = result["results"].items()
    assert label == intervention and len(group["runs"]) == 2   # two seeds of one setting
    scores = np.array(group["mean"]["char" if task == "copy" else "acc"])
    assert scores.shape == ((2,) if task != "passkey" else (2, 2))
    assert ((0 <= scores) & (scores <= 1)).all()
    assert (tmp_path / "eval" / f"{eval_task}.png").exists()
    if task == "copy":
        assert "| state_passing | 2 |" in capsys.readouterr().out

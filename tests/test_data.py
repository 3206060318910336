"""data.py: every check reads the source files or the .bin files directly as its reference."""
import hashlib
import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

import data

TEXTS = ["The quick brown fox jumps over the lazy dog. " * 3, "Ünïcödé text: naïve café, 日本語.\n",
         "def f(x):\n    return x + 1\n" * 5, "short", "a line\nanother line\n" * 7]
JSONL = ["first json document " * 4, "second one, with a quote \" and a tab\t", "3rd " * 9]


@pytest.fixture
def corpus(tmp_path):
    """A folder with 5 .txt files, one .jsonl file of 3 documents, and files prepare must skip."""
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    for i, t in enumerate(TEXTS):
        (root / ("sub" if i % 2 else "") / f"doc{i}.txt").write_text(t, encoding="utf-8")
    (root / "more.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in JSONL) + "\n\n")
    (root / "empty.txt").write_bytes(b"")
    (root / "notes.md").write_text("not a document")
    return root


def source_docs(root):
    """name -> bytes, read independently of data.py."""
    docs = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.txt") if p.stat().st_size}
    docs.update({f"more.jsonl:{i + 1}": t.encode() for i, t in enumerate(JSONL)})
    return docs


@pytest.fixture
def tiny_bpe(tmp_path):
    """A real tokenizer.json (byte-level BPE, 300 ids) trained on a few sentences."""
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS + JSONL, trainer)
    path = tmp_path / "tiny-bpe" / "tokenizer.json"
    path.parent.mkdir()
    tok.save(str(path))
    return path


def test_prepare_bytes_matches_source(corpus, tmp_path, capsys):
    path = data.prepare(str(corpus), "bytes", tmp_path / "data")
    assert Path(path).name == "corpus-bytes"
    d = data.load(path)
    docs = source_docs(corpus)
    names = d.meta["train"]["names"] + d.meta["val"]["names"]
    assert sorted(names) == sorted(docs)  # every non-empty document once, .md and empty left out
    assert not set(d.meta["train"]["names"]) & set(d.meta["val"]["names"])
    assert len(d.meta["val"]["names"]) >= 1 and len(d.meta["train"]["names"]) >= 1
    assert d.train.dtype == np.uint8 and d.val.dtype == np.uint8 and d.vocab_size == 256
    for split, tokens, starts in (("train", d.train, d.train_docs), ("val", d.val, d.val_docs)):
        split_names = d.meta[split]["names"]
        assert bytes(tokens) == b"".join(docs[n] for n in split_names)
        assert starts.dtype == np.int64
        assert starts.tolist() == np.cumsum([0] + [len(docs[n]) for n in split_names])[:-1].tolist()
        assert d.meta[split]["tokens"] == len(tokens)
        assert d.meta[split]["documents"] == len(split_names)
    capsys.readouterr()
    assert data.prepare(str(corpus), "bytes", tmp_path / "data") == path
    assert "reusing" in capsys.readouterr().out


def test_prepare_redoes_an_interrupted_prepare(corpus, tmp_path):
    path = Path(data.prepare(str(corpus), "bytes", tmp_path / "data"))
    good = (path / "train.bin").read_bytes()
    (path / "meta.json").unlink()                # as if killed before the last write
    (path / "train.bin").write_bytes(b"garbage")
    with pytest.raises(FileNotFoundError, match="run"):
        data.load(path)
    data.prepare(str(corpus), "bytes", tmp_path / "data")
    assert (path / "train.bin").read_bytes() == good


def test_prepare_with_a_tokenizer_json(corpus, tiny_bpe, tmp_path):
    d = data.load(data.prepare(str(corpus), str(tiny_bpe), tmp_path / "data"))
    assert d.train.dtype == np.uint16 and d.vocab_size == 300
    tok = data.get_tokenizer(str(tiny_bpe.parent))  # the folder works as well as the file
    docs = source_docs(corpus)
    for split, tokens, starts in (("train", d.train, d.train_docs), ("val", d.val, d.val_docs)):
        bounds = list(starts) + [len(tokens)]
        for k, name in enumerate(d.meta[split]["names"]):
            assert tok.decode(tokens[bounds[k]:bounds[k + 1]]) == docs[name].decode()


def test_prepare_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.prepare(str(tmp_path / "nowhere"), "bytes", tmp_path / "data")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no non-empty documents"):
        data.prepare(str(tmp_path / "empty"), "bytes", tmp_path / "data")
    (tmp_path / "one.txt").write_text("a single document")
    with pytest.raises(ValueError, match="one document"):
        data.prepare(str(tmp_path / "one.txt"), "bytes", tmp_path / "data")
    with pytest.raises(FileNotFoundError, match="python data.py"):
        data.load(tmp_path / "data" / "nothing-here")
    for parent in ("a", "b"):  # two corpora with the same folder name share a prepared folder name
        (tmp_path / parent / "texts").mkdir(parents=True)
        for i in range(2):
            (tmp_path / parent / "texts" / f"{i}.txt").write_text(f"{parent} {i}")
    data.prepare(str(tmp_path / "a" / "texts"), "bytes", tmp_path / "data")
    with pytest.raises(ValueError, match="another data_dir"):
        data.prepare(str(tmp_path / "b" / "texts"), "bytes", tmp_path / "data")


def test_split_is_a_function_of_each_path(tmp_path):
    """Two copies of a corpus, one missing half the files (as two Pythons' standard libraries differ):
    every file the two share is held out in both or in neither."""
    names = [f"pkg{i % 7}/mod{i}.py" for i in range(400)]
    full, part = tmp_path / "full", tmp_path / "part"
    for i, n in enumerate(names):
        for root in (full, part) if i % 2 else (full,):
            (root / n).parent.mkdir(parents=True, exist_ok=True)
            (root / n).with_suffix(".txt").write_text(f"document {i} " * (i % 5 + 1))
    a = data.load(data.prepare(str(full), "bytes", tmp_path / "data-a"))
    b = data.load(data.prepare(str(part), "bytes", tmp_path / "data-b"))
    shared = set(b.meta["train"]["names"]) | set(b.meta["val"]["names"])
    assert set(a.meta["val"]["names"]) & shared == set(b.meta["val"]["names"])
    assert 0.02 < a.meta["val"]["documents"] / 400 < 0.09     # about VAL_FRACTION = 5% of the paths


def test_a_changed_corpus_is_prepared_again(corpus, tmp_path, capsys):
    path = data.prepare(str(corpus), "bytes", tmp_path / "data")
    before = data.load(path).meta["fingerprint"]
    assert before["documents"] == len(source_docs(corpus))
    assert before["bytes"] == sum(map(len, source_docs(corpus).values()))
    (corpus / "new.txt").write_text("a file the first prepare did not see")
    capsys.readouterr()
    data.prepare(str(corpus), "bytes", tmp_path / "data")
    assert "preparing it again" in capsys.readouterr().out
    after = data.load(path)
    assert after.meta["fingerprint"]["documents"] == before["documents"] + 1
    assert after.meta["fingerprint"]["sha256"] != before["sha256"]
    names = after.meta["train"]["names"] + after.meta["val"]["names"]
    assert "new.txt" in names and len(after.train) + len(after.val) == after.meta["fingerprint"]["bytes"]


# a second process that memory-maps a prepared corpus (as a running train.py does), then, once told to,
# reads all of its train.bin; it prints the hash of what it read
READER = """import hashlib, sys, data
d = data.load(sys.argv[1])
print("mapped", flush=True)
sys.stdin.readline()
print(hashlib.sha256(bytes(d.train)).hexdigest())"""


def test_preparing_again_leaves_a_reader_its_tokens(corpus, tmp_path):
    # issue 23, case 1: run A reads the corpus; three of its files go and run B prepares it again.
    # train.bin was truncated in place under A (SIGBUS); now it is a new file moved into place
    path = data.prepare(str(corpus), "bytes", tmp_path / "data")
    old = hashlib.sha256((Path(path) / "train.bin").read_bytes()).hexdigest()
    reader = subprocess.Popen([sys.executable, "-c", READER, path], cwd=Path(data.__file__).parent,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline() == "mapped\n"
    for f in sorted(corpus.rglob("*.txt"))[:3]:
        f.unlink()
    data.prepare(str(corpus), "bytes", tmp_path / "data")
    out, _ = reader.communicate("go\n", timeout=60)
    assert reader.returncode == 0 and out.strip() == old           # A read the tokens it started with
    new = data.load(path)
    assert new.meta["fingerprint"]["documents"] == len(source_docs(corpus))
    assert len(new.train) == new.meta["train"]["tokens"]
    assert not list(Path(path).glob("*.tmp"))


def test_an_edit_of_one_size_or_a_retrained_tokenizer_is_prepared_again(corpus, tiny_bpe, tmp_path, capsys):
    # issue 23, case 2: the reuse key covered names and sizes only, the fingerprint the tokenizer's name
    d = data.load(data.prepare(str(corpus), "bytes", tmp_path / "data"))
    before = d.meta["fingerprint"]
    doc = corpus / "doc0.txt"
    text = doc.read_bytes()
    time.sleep(0.05)          # a user's edit comes later than the kernel's clock tick that dated the file
    doc.write_bytes(text.upper())
    d = data.load(data.prepare(str(corpus), "bytes", tmp_path / "data"))
    assert "preparing it again" in capsys.readouterr().out
    assert text.upper() in bytes(d.train) + bytes(d.val) and text not in bytes(d.train) + bytes(d.val)
    assert d.meta["fingerprint"]["bytes"] == before["bytes"] and d.meta["fingerprint"] != before

    first = data.load(data.prepare(str(corpus), str(tiny_bpe), tmp_path / "data"))
    assert first.vocab_size == 300
    tok = HFTokenizer(models.BPE())                 # retrained at the same path, with more ids
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(TEXTS + JSONL, trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(tiny_bpe))
    V = HFTokenizer.from_file(str(tiny_bpe)).get_vocab_size()
    assert V > 300
    again = data.load(data.prepare(str(corpus), str(tiny_bpe), tmp_path / "data"))
    assert again.vocab_size == V and again.meta["fingerprint"] != first.meta["fingerprint"]
    docs = source_docs(corpus)
    name = again.meta["train"]["names"][0]
    ids = again.train[:again.train_docs[1]] if len(again.train_docs) > 1 else again.train
    assert ids.tolist() == tok.encode(docs[name].decode()).ids      # the new tokenizer's ids


def test_check_corpus_warns_on_another_corpus(corpus, tmp_path):
    d = data.load(data.prepare(str(corpus), "bytes", tmp_path / "data"))
    same = dict(d.meta["fingerprint"])
    assert data.check_corpus(same, d, "run") == []
    other = same | {"documents": 3, "sha256": "0" * 16}
    assert "trained on another corpus" in data.check_corpus(other, d, "run")[0]
    assert "may have been among its training" in data.check_corpus(same | {"held_out": 0.1}, d, "run")[0]
    assert "cannot be checked" in data.check_corpus(None, d, "run")[0]


@pytest.fixture(scope="module")
def stdlib(tmp_path_factory):
    return data.load(data.prepare("stdlib", "bytes", tmp_path_factory.mktemp("data")))


def test_stdlib_corpus(stdlib):
    root = Path(sysconfig.get_paths()["stdlib"])
    sizes = {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*.py")
             if "site-packages" not in p.parts and "dist-packages" not in p.parts}
    names = stdlib.meta["train"]["names"] + stdlib.meta["val"]["names"]
    assert sorted(names) == sorted(n for n, s in sizes.items() if s > 0)
    # which files a standard library has depends on the build (Debian's python3 ships most of the test suite
    # apart: 668 files, where this pyenv build has 1,790), so only what holds for every build is checked
    train, val = stdlib.meta["train"], stdlib.meta["val"]
    assert train["documents"] == len(train["names"]) and val["documents"] == len(val["names"])
    assert 0 < val["documents"] < train["documents"]
    assert len(stdlib.train) + len(stdlib.val) == sum(sizes.values())
    name = stdlib.meta["val"]["names"][3]  # spot check one document against its file
    start, end = stdlib.val_docs[3], stdlib.val_docs[4]
    assert bytes(stdlib.val[start:end]) == (root / name).read_bytes()


def test_get_batch(stdlib):
    g = torch.Generator().manual_seed(0)
    x, y = data.get_batch(stdlib, "val", 8, 64, g)
    assert x.shape == y.shape == (8, 64) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    val = bytes(stdlib.val)
    for row_x, row_y in zip(x, y):  # each row is a contiguous slice of the split
        window = bytes(row_x.tolist()) + bytes(row_y[-1:].tolist())
        assert window in val
    x2, y2 = data.get_batch(stdlib, "val", 8, 64, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    with pytest.raises(ValueError, match="fewer than block_size"):
        data.get_batch(stdlib, "val", 1, len(stdlib.val), g)
    with pytest.raises(ValueError, match="split"):
        data.get_batch(stdlib, "test", 1, 8, g)


def test_stream_sampler_is_contiguous(stdlib):
    s = data.StreamSampler(stdlib, 4, 32, torch.Generator().manual_seed(0), split="val")
    batches = [s.next() for _ in range(3)]
    assert batches[0][2].all() and not batches[1][2].any()
    for (x0, y0, _), (x1, y1, _) in zip(batches, batches[1:]):
        assert torch.equal(y0[:, -1], x1[:, 0])
    val = bytes(stdlib.val)
    for b in range(4):  # a row's three batches are one slice of the split
        row = [x[b] for x, _, _ in batches] + [batches[2][1][b, -1:]]
        assert bytes(torch.cat(row).tolist()) in val, f"row {b} is not contiguous"


def test_stream_sampler_wraps_and_resumes(corpus, tmp_path):
    d = data.load(data.prepare(str(corpus), "bytes", tmp_path / "data"))
    B, T = 2, 8
    seg = len(d.train) // B
    s = data.StreamSampler(d, B, T, torch.Generator().manual_seed(1))
    train = np.asarray(d.train)
    pos, wraps = None, 0
    for i in range(3 * seg // T):
        x, y, reset = s.next()
        starts = [int(p) for p in s.pos - T]  # where this batch's windows began
        for b in range(B):
            assert np.array_equal(x[b].numpy(), train[starts[b]:starts[b] + T])
            assert b * seg <= starts[b] and starts[b] + T + 1 <= (b + 1) * seg  # stays in its segment
            if i == 0:
                assert reset[b]
            elif reset[b]:
                assert starts[b] == b * seg and pos[b] + T + 1 > (b + 1) * seg  # wrapped
                wraps += 1
            else:
                assert starts[b] == pos[b]  # continued
        pos = s.pos.copy()
    assert wraps >= 2 * B  # every row wrapped, twice
    state = s.state_dict()
    expected = [s.next() for _ in range(5)]
    s2 = data.StreamSampler(d, B, T, torch.Generator().manual_seed(99))
    s2.load_state_dict(json.loads(json.dumps(state)))  # survives a checkpoint's serialisation
    for a, b in zip(expected, [s2.next() for _ in range(5)]):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    with pytest.raises(ValueError, match="batch_size"):
        data.StreamSampler(d, 3, T, torch.Generator()).load_state_dict(state)
    with pytest.raises(ValueError, match="too few"):
        data.StreamSampler(d, B, seg, torch.Generator())


def test_eval_sequences_are_windows_of_the_held_out_stream(stdlib):
    seqs, doc_ids = data.eval_sequences(stdlib, 64, 2048, seed=0)
    assert seqs.shape == (64, 2048) and seqs.dtype == doc_ids.dtype == torch.int64
    # the held-out stream rebuilt from the files themselves: their bytes back to back, in meta's order
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [(root / name).read_bytes() for name in stdlib.meta["val"]["names"]]
    stream, ends = b"".join(files), np.cumsum([len(f) for f in files])
    crossing = 0
    for seq, k in zip(seqs, doc_ids.tolist()):
        window = bytes(seq.tolist())
        start = ends[k - 1] if k else 0
        offset = stream.find(window, start)                      # a window of the stream ...
        assert start <= offset < ends[k]                          # ... that starts in document k
        crossing += offset + 2048 > ends[k]
    assert crossing > 0         # windows cross document boundaries, as the training windows do
    again, again_ids = data.eval_sequences(stdlib, 64, 2048, seed=0)
    assert torch.equal(seqs, again) and torch.equal(doc_ids, again_ids)
    with pytest.raises(ValueError, match="fewer than"):
        data.eval_sequences(stdlib, 4, len(stream) + 1)


def test_bytes_tokenizer():
    tok = data.get_tokenizer("bytes")
    text = "plain ascii, Ünïcödé, 日本語, emoji 🙂"
    assert tok.vocab_size == 256 and tok.encode(text) == list(text.encode("utf-8"))
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(torch.tensor(tok.encode(text))) == text
    assert tok.decode([0xFF]) == "\ufffd"  # invalid UTF-8 is replaced, not an error


def test_tokenizer_json(tiny_bpe):
    for name in (str(tiny_bpe), str(tiny_bpe.parent)):
        tok = data.get_tokenizer(name)
        assert tok.vocab_size == 300
        text = "The lazy fox returns x + 1, naïvely."
        ids = tok.encode(text)
        assert all(0 <= i < 300 for i in ids) and len(ids) < len(text)  # merges were used
        assert tok.decode(ids) == text


def test_tokenizer_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="'bytes'.*gpt2.*gpt-neox"):
        data.get_tokenizer("no-such-tokenizer")
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        data.get_tokenizer(str(tmp_path))
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no retries
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # not cached
    with pytest.raises(FileNotFoundError, match="https://huggingface.co/EleutherAI/gpt-neox-20b"):
        data.get_tokenizer("gpt-neox")


# RWKV's world tokenizer: greedy longest match over a vocabulary file

WORLD_EXTRA = [b"de", b"def", b"define", b" self", b"ab", b"abc", b"cd", "\u00e9t\u00e9".encode(),
               "\u4e2d".encode()[:2], b"\n    ", b"'''", b'""', b"\\n"]   # a partial UTF-8 character; quotes


def greedy_reference(text, tokens):
    """The world tokenizer's rule by brute force: at each position, of all tokens that match
    there, the longest (ids from 1, as in the file)."""
    data, ids, at = text.encode("utf-8"), [], 0
    while at < len(data):
        i, token = max(((i, t) for i, t in enumerate(tokens, 1) if data.startswith(t, at)),
                       key=lambda it: len(it[1]))
        ids.append(i)
        at += len(token)
    return ids


def test_world_tokenizer(tmp_path):
    from conftest import write_world_vocab
    tokens = [bytes([b]) for b in range(256)] + WORLD_EXTRA
    path = write_world_vocab(tmp_path / data.WORLD_VOCAB, tokens)
    tok = data.get_tokenizer(str(path))
    assert tok.vocab_size == len(tokens) + 1                   # id 0 (end of text) is not in the file
    ids = tok.encode("abcd")                                   # greedy, by hand: abc + d, not ab + cd
    assert [tokens[i - 1] for i in ids] == [b"abc", b"d"]
    rng = np.random.default_rng(0)
    pieces = ["de", "f", "ine", " self", "abcd", "\u00e9t\u00e9", "\u4e2d\u6587", "\n    x", "'", '"', "\\", "n", " "]
    for _ in range(50):
        text = "".join(rng.choice(pieces, size=int(rng.integers(1, 12))))
        assert tok.encode(text) == greedy_reference(text, tokens), text
        assert tok.decode(tok.encode(text)) == text
    # any copy of the file is the tokenizer the RWKV-6 checkpoints name
    assert data.same_tokenizer("rwkv-world", str(path)) and not data.same_tokenizer("rwkv-world", "gpt-neox")


def test_world_tokenizer_errors(tmp_path):
    from conftest import write_world_vocab
    with pytest.raises(FileNotFoundError, match=f"download {data.WORLD_VOCAB} from .*ChatRWKV"):
        data.get_tokenizer("rwkv-world")
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        data.get_tokenizer(str(tmp_path / "missing.txt"))
    path = write_world_vocab(tmp_path / "v.txt", [b"a", b"bc"])
    path.write_text(path.read_text() + "3 'xy' 3\n")        # a length that is not the token's
    with pytest.raises(ValueError, match="v.txt:3 is not a line of RWKV's world vocabulary"):
        data.get_tokenizer(str(path))
    tok = data.get_tokenizer(str(write_world_vocab(tmp_path / "v.txt", [b"a", b"bc"])))
    with pytest.raises(ValueError, match="byte 0x62 has no token"):   # "b" alone is not a token
        tok.encode("abd")


def test_prepare_with_the_world_tokenizer(corpus, tmp_path):
    from conftest import write_world_vocab
    path = write_world_vocab(tmp_path / data.WORLD_VOCAB, [bytes([b]) for b in range(256)] + WORLD_EXTRA)
    d = data.load(data.prepare(str(corpus), str(path), tmp_path / "data"))
    assert d.vocab_size == 256 + len(WORLD_EXTRA) + 1 and d.train.dtype == np.uint16
    tok, docs = data.get_tokenizer(str(path)), source_docs(corpus)
    for split, tokens, starts in (("train", d.train, d.train_docs), ("val", d.val, d.val_docs)):
        bounds = list(starts) + [len(tokens)]
        for k, name in enumerate(d.meta[split]["names"]):
            assert tokens[bounds[k]:bounds[k + 1]].tolist() == tok.encode(docs[name].decode())


def test_tiktoken_offline_message(tmp_path, monkeypatch):
    """Offline, the error names the URL and the cache path; tiktoken really reads that path."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    try:
        tok = data.get_tokenizer("r50k_base")
    except FileNotFoundError as e:
        msg = str(e)
    else:  # a machine with a network: it downloaded and works
        assert tok.vocab_size == 50257 and tok.decode(tok.encode("hello world")) == "hello world"
        return
    url = "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"
    assert url in msg
    path = Path(msg.split(" and save it as ")[1].split(" (")[0])
    assert path.parent == tmp_path
    path.write_bytes(b"not the real file")  # tiktoken finds it, rejects its hash and deletes it
    with pytest.raises(FileNotFoundError):
        data.get_tokenizer("r50k_base")
    assert not path.exists()


def test_a_bad_jsonl_line_names_the_file_and_the_line(tmp_path):
    good = json.dumps({"text": "print('hello')"})
    for i, (line, message) in enumerate([(b"\xff\xfe not utf-8", "not UTF-8"),
                                         (b"{broken", "not a JSON object"),
                                         (b'{"txt": "x"}', "expected a JSON object with a 'text' field")]):
        corpus = tmp_path / f"c{i}"
        corpus.mkdir()
        (corpus / "docs.jsonl").write_bytes(f"{good}\n{good}\n".encode() + line + b"\n")
        with pytest.raises(ValueError, match=f"docs.jsonl:3: {message}"):
            data.prepare(str(corpus), "bytes", tmp_path / "data")


def test_data_py_refuses_extra_arguments():
    # issue 23: a third argument was taken as data_dir, a fourth ended in a TypeError traceback
    proc = subprocess.run([sys.executable, "data.py", "stdlib", "bytes", "data", "extra"], text=True,
                          cwd=Path(data.__file__).parent, capture_output=True, timeout=60)
    assert proc.returncode != 0 and "usage: python data.py [corpus] [tokenizer]" in proc.stderr
    assert "Traceback" not in proc.stderr

"""
Text for the models: tokenizers, corpora tokenized once into memory-mapped files, and the three
ways training and evaluation read them.

    get_tokenizer(name)         "bytes", a tiktoken encoding ("gpt2"...), "gpt-neox", a
                                tokenizer.json, RWKV's world vocabulary (a .txt)
    prepare(corpus, tokenizer)  tokenize a corpus once into data/<corpus>-<tokenizer>/, return
                                that path
    load(path) -> Data          the memory-mapped splits and where each document starts
    get_batch                   random windows: pretraining, the initial-state interventions
                                (4.2-4.4)
    StreamSampler               contiguous streams: batch i+1 continues batch i row by row
                                (TBTT, 4.5)
    eval_sequences              held-out windows at random offsets of the stream (Def. 3.1)

The default corpus, "stdlib", is the *.py files of Python's own standard library, test suite
included: it needs no download, and code has long-range structure (a function uses names defined
far above it). Which files a standard library has depends on the Python build, so two things keep
experiments comparable across machines: a file is held out or not by a hash of its path alone (the
same file is held out on every interpreter), and every prepared corpus carries a fingerprint (its
document count, bytes and a hash of names and contents) that train.py saves in each checkpoint and
evaluate.py checks against the corpus it evaluates on.
"""
import ast
import hashlib
import json
import os
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import huggingface_hub
import numpy as np
import tiktoken
import tokenizers
import torch

VAL_FRACTION = 0.05  # share of documents held out: a 5% sample of the paths
WORLD_VOCAB = "rwkv_vocab_v20230424.txt"   # the vocabulary of RWKV's "world" tokenizer (RWKV-5, 6)
_STDLIB = sysconfig.get_paths()["stdlib"]  # this Python's standard library, the default corpus

# -----------------------------------------------------------------------------
# tokenizers: one tiny interface over three libraries and RWKV's vocabulary file


@dataclass
class Tokenizer:
    name: str                          # what get_tokenizer was given (a path is made absolute)
    vocab_size: int                    # ids are in [0, vocab_size)
    encode: Callable[[str], list]      # str -> list[int]
    decode: Callable[[object], str]    # ids (any iterable of ints, a tensor too) -> str


def get_tokenizer(name="bytes"):
    """A Tokenizer by name: "bytes", a tiktoken encoding, "gpt-neox", a tokenizer.json path, or the
    path of RWKV's world vocabulary (a .txt; "rwkv-world", the name the RWKV-6 checkpoints give,
    says where to get it)."""
    name = str(name)  # a pathlib.Path works too
    if name == "bytes":  # the default for the small CPU models: no download, no unknown symbols
        return Tokenizer("bytes", 256, lambda text: list(text.encode("utf-8")),
                         lambda ids: bytes(int(i) for i in ids).decode("utf-8", errors="replace"))
    if name in tiktoken.list_encoding_names():
        enc = _tiktoken_encoding(name)
        # encode_ordinary: a document that contains the text "<|endoftext|>" is ordinary text here
        return Tokenizer(name, enc.n_vocab, enc.encode_ordinary,
                         lambda ids: enc.decode([int(i) for i in ids]))
    if name == "rwkv-world":  # BlinkDL's RWKV-6 checkpoints: the file is not on the hub
        raise FileNotFoundError(
            f"the RWKV-6 world checkpoints read RWKV's 'world' tokenizer, a vocabulary file: "
            f"download {WORLD_VOCAB} from https://github.com/BlinkDL/ChatRWKV/tree/main/tokenizer "
            f"and pass its path as the tokenizer (--tokenizer=path/to/{WORLD_VOCAB})")
    if name.endswith(".txt"):
        return _world_tokenizer(name)
    if name == "gpt-neox" or name.endswith(".json") or os.path.exists(name):
        path = _tokenizer_json(name)
        tok = tokenizers.Tokenizer.from_file(path)
        return Tokenizer("gpt-neox" if name == "gpt-neox" else path, tok.get_vocab_size(),
                         lambda text: tok.encode(text, add_special_tokens=False).ids,
                         lambda ids: tok.decode([int(i) for i in ids]))
    raise ValueError(f"unknown tokenizer {name!r}: use 'bytes', one of tiktoken's encodings "
                     f"{tiktoken.list_encoding_names()}, 'gpt-neox', a path to a tokenizer.json "
                     f"(or to a folder holding one), or the path of RWKV's {WORLD_VOCAB}")


def same_tokenizer(a, b):
    """Whether two tokenizer settings name one tokenizer: equal names, or paths to one
    tokenizer.json (a file or its folder). Nothing is loaded or downloaded."""
    def where(name):
        name = str(name)
        if name in ("bytes", "gpt-neox") or name in tiktoken.list_encoding_names():
            return name
        if name == "rwkv-world" or Path(name).name == WORLD_VOCAB:   # any copy of the file
            return "rwkv-world"
        return str(Path(name, "tokenizer.json").resolve() if os.path.isdir(name)
                   else Path(name).resolve())
    return str(a) == str(b) or where(a) == where(b)


def _world_tokenizer(path):
    """RWKV's world tokenizer (described in Peng et al. 2024): a vocabulary file of one
    token a line, `<id> <a Python str or bytes literal> <its length in UTF-8 bytes>`, and greedy
    encoding: at every position the longest token that matches the next bytes. No merges and no
    pre-tokenization, so a trie of the tokens' bytes is the whole algorithm. Id 0, the end of a
    text, is not in the file. The literals are read with ast.literal_eval, never eval."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer file at {path}: pass RWKV's {WORLD_VOCAB} (a "
                                f".txt) or a tokenizer.json")
    to_bytes, trie = {}, {}   # trie: byte -> child node; the key None holds the id ending there
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            i, rest = line.split(" ", 1)
            literal, length = rest.rsplit(" ", 1)
            token = ast.literal_eval(literal)
            token = token.encode("utf-8") if isinstance(token, str) else token
            ok = isinstance(token, bytes) and len(token) == int(length) > 0 and int(i) > 0
        except (ValueError, SyntaxError):
            ok = False
        if not ok:
            raise ValueError(f"{path}:{n} is not a line of RWKV's world vocabulary ('<id> <str or "
                             f"bytes literal> <length in bytes>'): {line[:60]!r}")
        to_bytes[int(i)] = token
        node = trie
        for b in token:
            node = node.setdefault(b, {})
        node[None] = int(i)

    def encode(text):
        data, ids, at = text.encode("utf-8"), [], 0
        while at < len(data):
            node, j, longest = trie, at, None
            while j < len(data) and data[j] in node:     # walk down as far as the bytes match
                node, j = node[data[j]], j + 1
                if None in node:
                    longest = (node[None], j)
            if longest is None:   # the world vocabulary has all 256 bytes; a partial file may not
                raise ValueError(f"byte {data[at]:#04x} has no token in {path}")
            ids.append(longest[0])
            at = longest[1]
        return ids

    return Tokenizer(str(path.resolve()), max(to_bytes) + 1, encode,
                     lambda ids: b"".join(to_bytes.get(int(i), b"") for i in ids)
                     .decode("utf-8", errors="replace"))


def _tiktoken_encoding(name):
    """tiktoken downloads its BPE file on first use and caches it; offline, say where to put it."""
    try:
        return tiktoken.get_encoding(name)
    except OSError as e:  # requests' ConnectionError, which carries the URL that failed
        url = getattr(getattr(e, "request", None), "url", None)
        if url is None:
            raise
        # tiktoken's cache (tiktoken/load.py): a file named by the SHA-1 of the URL, in this folder
        cache = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get(
            "DATA_GYM_CACHE_DIR", os.path.join(tempfile.gettempdir(), "data-gym-cache")))
        path = os.path.join(cache, hashlib.sha1(url.encode()).hexdigest())
        raise FileNotFoundError(
            f"tiktoken could not download the {name!r} encoding (no network?). On a machine with a "
            f"network download {url} and save it as {path} (set TIKTOKEN_CACHE_DIR to choose the "
            f"folder; the file name stays the same), then try again. An encoding made of two files "
            f"('gpt2') names the second one on the next try.") from e


def _tokenizer_json(name):
    """The path of a tokenizer.json: GPT-NeoX-20B's from the hub, or the one `name` points to."""
    if name == "gpt-neox":  # the official Mamba-2 checkpoints' tokenizer (paper app. B)
        try:
            return huggingface_hub.hf_hub_download("EleutherAI/gpt-neox-20b", "tokenizer.json")
        except OSError as e:
            raise FileNotFoundError(
                "could not get GPT-NeoX-20B's tokenizer.json from the Hugging Face hub (no "
                "network?): download tokenizer.json from "
                "https://huggingface.co/EleutherAI/gpt-neox-20b"
                " and pass its path (or its folder's) as the tokenizer name") from e
    path = Path(name, "tokenizer.json") if os.path.isdir(name) else Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer file at {path}: pass a tokenizer.json or its folder")
    return str(path.resolve())


# -----------------------------------------------------------------------------
# corpora: read documents, split by document, tokenize once into .bin files


def _files(corpus):
    """(root, files): the corpus's folder and its files, relative to it, in a
    fixed (sorted) order."""
    if corpus == "stdlib":
        root = Path(_STDLIB)
        # site-packages holds installed third-party code, which differs from machine to machine
        return root, sorted(p.relative_to(root) for p in root.rglob("*.py")
                            if not ({"site-packages", "dist-packages"}
                                    & set(p.relative_to(root).parts)))
    root = Path(corpus)
    if not root.exists():
        raise FileNotFoundError(f"corpus {corpus!r} not found: pass 'stdlib', a text or .jsonl "
                                f"file, or a folder of .txt / .jsonl files")
    if root.is_file():
        return root.parent, [Path(root.name)]
    return root, sorted(p.relative_to(root) for p in root.rglob("*")
                        if p.suffix in (".txt", ".jsonl"))


def _listing(corpus, tok):
    """A cheap key of the corpus's files and the tokenizer: each file's name, size and modification
    time (an edit that keeps the size still changes the time), and tokenizer_key(tok). A prepared
    folder whose key differs was made from other files (another Python's standard library, an
    edited folder) or with another tokenizer.json at the same path. Hashing the contents instead
    would read the whole corpus (230 MB for stdlib) at every start."""
    root, files = _files(corpus)
    h = hashlib.sha256(tokenizer_key(tok).encode())
    for f in files:
        st = (root / f).stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def tokenizer_key(tok):
    """What identifies a tokenizer: its name, and for a file (a tokenizer.json, a world vocabulary:
    an absolute path) a hash of the file too, since another file at the same path makes other
    tokens."""
    if not os.path.isabs(tok.name):
        return tok.name   # "bytes", a tiktoken encoding, "gpt-neox": fixed by their names
    return f"{tok.name}\0{hashlib.sha256(Path(tok.name).read_bytes()).hexdigest()[:16]}"


def _documents(corpus):
    """(names, texts): the corpus's non-empty documents, each as bytes, in a fixed order."""
    root, files = _files(corpus)
    if corpus == "stdlib":
        docs = [(str(f), (root / f).read_bytes()) for f in files]
    else:
        docs = []
        for name in files:
            f = root / name
            if f.suffix != ".jsonl":  # a text file is one document
                docs.append((str(name), f.read_bytes()))
                continue
            for i, line in enumerate(f.read_bytes().splitlines(), 1):
                if line.strip():  # one JSON object per line, its "text" is one document
                    docs.append((f"{name}:{i}", _jsonl_text(line, f"{f}:{i}")))
    docs = [(n, t) for n, t in docs if t]  # an empty document has no tokens to learn from
    if not docs:
        raise ValueError(f"corpus {corpus!r} has no non-empty documents (.txt files, or .jsonl "
                         f"lines with a 'text' field)")
    return [n for n, _ in docs], [t for _, t in docs]


def _jsonl_text(line, where):
    """The "text" of one .jsonl line (bytes), encoded as UTF-8; `where` is file:line
    for the errors."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not UTF-8 ({e}): a .jsonl corpus must be UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not a JSON object ({e})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        raise ValueError(f"{where}: expected a JSON object with a 'text' field holding a string")
    return obj["text"].encode("utf-8")


def _path_hash(name):
    """A number in [0, 1) that depends on the document's name (its path) alone."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:12], 16) / 16 ** 12


def split_by_path(names):
    """{"train": indices, "val": indices}: a document is held out when the hash of its path is below
    VAL_FRACTION, so the same file is held out in every copy of a corpus that contains it. A corpus
    too small for any hash to fall below keeps its document of smallest hash as the held-out one."""
    h = np.array([_path_hash(n) for n in names])
    val = h < VAL_FRACTION
    if not val.any():
        val[h.argmin()] = True
    if val.all():
        val[h.argmax()] = False
    return {"val": np.flatnonzero(val), "train": np.flatnonzero(~val)}


def fingerprint(names, texts, tokenizer):
    """What identifies a corpus: {documents, bytes, sha256} over every (name, content) pair, and the
    tokenizer (tokenizer_key: the name, and a tokenizer.json's contents), and the share held out.
    Two prepared corpora with one fingerprint hold the same tokens in the same split."""
    h = hashlib.sha256(tokenizer.encode())
    for name, text in zip(names, texts):
        h.update(name.encode() + b"\0" + hashlib.sha256(text).digest())
    return {"documents": len(names), "bytes": sum(map(len, texts)), "sha256": h.hexdigest()[:16],
            "held_out": VAL_FRACTION}


def check_corpus(trained_on, data, model_name):
    """Warnings (a list of strings) when a model is evaluated on a corpus other than its own.

    trained_on is the "fingerprint" a checkpoint recorded (None for official checkpoints and runs
    made before fingerprints). The split is a function of each path, so a document held out here
    was held out in training too whenever that corpus had a document of the same name; what can
    differ is the corpus itself (another Python's stdlib, an edited folder).
    """
    mine = data.meta.get("fingerprint")
    if trained_on is None or mine is None:
        return [f"{model_name}: no corpus fingerprint recorded, so it cannot be checked that the "
                f"held-out documents were not among its training documents"]
    if trained_on == mine:
        return []
    if trained_on.get("held_out") != mine["held_out"]:
        return [f"{model_name} was trained with another share of documents held out "
                f"({trained_on.get('held_out')} against {mine['held_out']}): some documents scored "
                f"here may have been among its training documents"]
    return [f"{model_name} was trained on another corpus ({trained_on['documents']} documents, "
            f"{trained_on['bytes']:,} bytes, {trained_on['sha256']}) than the one evaluated here "
            f"({mine['documents']}, {mine['bytes']:,}, {mine['sha256']}): the held-out documents "
            f"are held out in both, but the numbers are not comparable with runs on one corpus"]


def _short_name(name):
    """'stdlib', 'gpt2' stay; a path becomes its file's stem or its folder's name."""
    p = Path(name)
    if p.name == "tokenizer.json":
        p = p.parent
    return p.stem if p.is_file() else p.name


def prepare(corpus="stdlib", tokenizer="bytes", data_dir="data"):
    """Tokenize `corpus` once into data_dir/<corpus>-<tokenizer>/ and return that folder.

    It holds train.bin and val.bin (the documents' token ids back to back), train_docs.npy and
    val_docs.npy (int64: where each document starts in its .bin) and meta.json (written last, so
    a folder without it is an interrupted prepare and is redone).
    """
    tok = get_tokenizer(tokenizer)
    corpus_id = corpus if corpus == "stdlib" else str(Path(corpus).resolve())
    out = Path(data_dir, f"{_short_name(corpus)}-{_short_name(tok.name)}")
    listing = _listing(corpus, tok)
    if _reusable(out, corpus_id, tok.name, listing):
        print(f"reusing {out} (delete it to tokenize again)")
        return str(out)
    t0 = time.time()
    names, texts = _documents(corpus)
    if len(texts) < 2:
        raise ValueError(f"corpus {corpus!r} has one document and it cannot be split by document "
                         f"into train and val: give a folder of several files or a .jsonl file")
    out.mkdir(parents=True, exist_ok=True)
    meta = {"corpus": corpus_id, "tokenizer": tok.name, "vocab_size": tok.vocab_size,
            "dtype": np.dtype(_token_dtype(tok.vocab_size)).name, "listing": listing,
            "fingerprint": fingerprint(names, texts, tokenizer_key(tok)),
            "description": f"the *.py files in {_STDLIB}" if corpus == "stdlib"
            else f"the .txt / .jsonl documents in {corpus_id}"}
    # Split by document, never inside one: the evaluation needs whole held-out documents.
    # Every file is written under a new name, then moved into place (meta.json last): a run that has
    # the old train.bin memory-mapped keeps reading the old file (truncating it in place would kill
    # that run with SIGBUS, or feed it other tokens than its checkpoint's fingerprint says).
    tmp, written = f"{os.getpid()}.tmp", ["meta.json"]
    try:
        for split, idx in split_by_path(names).items():
            n_tokens, files = _write_split(out, split, [texts[i] for i in idx], tok, t0)
            meta[split] = {"documents": len(idx), "tokens": n_tokens,
                           "names": [names[i] for i in idx]}
            written = files + written
        (out / f"meta.json.{tmp}").write_text(json.dumps(meta, indent=1))
    except BaseException:                      # interrupted: leave no half-written file behind
        for f in out.glob(f"*.{tmp}"):
            f.unlink()
        raise
    for name in written:
        os.replace(out / f"{name}.{tmp}", out / name)   # atomic: whole, old or new
    print(f"prepared {out}: {meta['train']['tokens']:,} train and {meta['val']['tokens']:,} val "
          f"tokens in {time.time() - t0:.1f}s")
    return str(out)


def _reusable(out, corpus_id, tokenizer, listing):
    """Whether `out` already holds this corpus, prepared from the files it holds now. A folder made
    from another corpus is an error; one made from other files (another Python's stdlib, an edited
    folder) loses its meta.json, so that it is prepared again."""
    if not (out / "meta.json").exists():
        return False
    meta = json.loads((out / "meta.json").read_text())
    if (meta["corpus"], meta["tokenizer"]) != (corpus_id, tokenizer):
        raise ValueError(f"{out} holds {meta['corpus']} tokenized with {meta['tokenizer']}, "
                         f"not {corpus_id} with {tokenizer}: pass another data_dir or delete it")
    if meta.get("listing") == listing:
        return True
    print(f"{out} was prepared from other files than {corpus_id} now holds: preparing it again")
    (out / "meta.json").unlink()
    return False


def _token_dtype(vocab_size):
    """The smallest unsigned integer type that holds every token id."""
    return np.uint8 if vocab_size <= 2**8 else np.uint16 if vocab_size <= 2**16 else np.uint32


def _write_split(out, split, texts, tok, t0):
    """Tokenize `texts` into out/<split>.bin and out/<split>_docs.npy, each first written under a
    temporary name, <name>.<pid>.tmp; returns the token count and the two names.

    Documents go back to back with nothing between them: the byte vocabulary has no spare id for
    an end-of-text token, and the offsets in <split>_docs.npy already record the boundaries
    (eval_sequences clusters its windows by the document they start in)."""
    dtype = _token_dtype(tok.vocab_size)
    starts, n_tokens, shown = [], 0, time.time()
    tmp = f"{os.getpid()}.tmp"   # this process's: two prepares at once never write one file
    with open(out / f"{split}.bin.{tmp}", "wb") as f:
        for done, text in enumerate(texts, 1):
            if tok.name == "bytes":  # the file's own bytes: nothing lost to decoding
                ids = np.frombuffer(text, dtype=np.uint8)
            else:
                ids = np.array(tok.encode(text.decode("utf-8", errors="replace")), dtype)
            starts.append(n_tokens)
            n_tokens += len(ids)
            f.write(ids.tobytes())
            if time.time() - shown > 10:  # BPE on tens of MB takes a while: show it moving
                print(f"{split}: tokenized {done}/{len(texts)} documents in "
                      f"{time.time() - t0:.0f}s")
                shown = time.time()
    with open(out / f"{split}_docs.npy.{tmp}", "wb") as f:
        np.save(f, np.array(starts, dtype=np.int64))
    return n_tokens, [f"{split}.bin", f"{split}_docs.npy"]


@dataclass
class Data:
    train: np.memmap         # (N_train,) token ids of the training documents, back to back
    val: np.memmap           # (N_val,)
    train_docs: np.ndarray   # (D_train,) int64: where each training document starts in `train`
    val_docs: np.ndarray     # (D_val,)
    meta: dict               # meta.json: tokenizer, vocab_size, dtype, per-split counts and names
    vocab_size: int


def load(path):
    """The prepared corpus in the folder that prepare() returned."""
    missing = [f for f in ("meta.json", "train.bin", "val.bin", "train_docs.npy", "val_docs.npy")
               if not Path(path, f).exists()]
    if missing:
        raise FileNotFoundError(f"{path} is not a prepared corpus (no {', '.join(missing)}): run "
                                f"data.prepare(corpus, tokenizer), or `python data.py` for the "
                                f"default")
    meta = json.loads(Path(path, "meta.json").read_text())
    train, val = (np.memmap(Path(path, f"{s}.bin"), dtype=meta["dtype"], mode="r")
                  for s in ("train", "val"))
    return Data(train, val, np.load(Path(path, "train_docs.npy")),
                np.load(Path(path, "val_docs.npy")), meta, meta["vocab_size"])


def _split(data, split):
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return (data.train, data.train_docs) if split == "train" else (data.val, data.val_docs)


# -----------------------------------------------------------------------------
# samplers


def get_batch(data, split, batch_size, block_size, generator, device="cpu"):
    """Random windows of block_size + 1 tokens -> x, y: (B, T) int64, y[:, t] = x[:, t + 1].

    Windows may cross document boundaries (as in nanoGPT); the models see a new document begin
    without a separator, as they do in a TBTT stream.
    """
    tokens, _ = _split(data, split)
    if len(tokens) < block_size + 1:
        raise ValueError(f"the {split} split has {len(tokens)} tokens, fewer than block_size + 1 = "
                         f"{block_size + 1}: lower block_size or prepare a larger corpus")
    ix = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator).tolist()
    w = torch.from_numpy(np.stack([tokens[i:i + block_size + 1] for i in ix]).astype(np.int64))
    return w[:, :-1].contiguous().to(device), w[:, 1:].contiguous().to(device)


class StreamSampler:
    """batch_size contiguous streams through a split, for TBTT (paper sec. 4.5).

    The split is cut into batch_size equal segments, one per row. Row b starts at a random point of
    its segment and moves block_size tokens per batch, so x_{i+1}[b, 0] == y_i[b, -1]: the row's
    final state is the right initial state for its next batch. At the end of its segment a row
    wraps to the segment's start, and reset[b] is True: the training loop zeroes that row's state.
    The random starts (the generator's only use) make rows wrap at different batches.
    """

    def __init__(self, data, batch_size, block_size, generator, split="train"):
        self.tokens, _ = _split(data, split)
        self.split, self.batch_size, self.block_size = split, batch_size, block_size
        seg = len(self.tokens) // batch_size
        if seg < block_size + 1:
            raise ValueError(f"the {split} split has {len(self.tokens)} tokens, too few for "
                             f"{batch_size} streams of block_size + 1 tokens: lower either")
        self.start = np.arange(batch_size, dtype=np.int64) * seg  # (B,) each row's segment
        self.end = self.start + seg
        shift = torch.randint(seg - block_size, (batch_size,), generator=generator).numpy()
        self.pos = self.start + shift                             # (B,) next window's first token
        self.reset = np.ones(batch_size, dtype=bool)   # (B,) the first batch starts fresh

    def next(self, device="cpu"):
        """-> x, y: (B, T) int64 and reset: (B,) bool, True where the row starts from zero state."""
        T = self.block_size
        wrap = self.pos + T + 1 > self.end
        self.pos[wrap] = self.start[wrap]
        reset = torch.from_numpy(self.reset | wrap)
        w = np.stack([self.tokens[p:p + T + 1] for p in self.pos])
        w = torch.from_numpy(w.astype(np.int64))
        self.pos += T  # overlap one token: this batch's last target is the next one's first input
        self.reset[:] = False
        return w[:, :-1].contiguous().to(device), w[:, 1:].contiguous().to(device), reset.to(device)

    def state_dict(self):
        return {"split": self.split, "batch_size": self.batch_size, "block_size": self.block_size,
                "n_tokens": len(self.tokens), "pos": self.pos.tolist(),
                "reset": self.reset.tolist()}

    def load_state_dict(self, d):
        mine = self.state_dict()
        differ = [k for k in ("split", "batch_size", "block_size", "n_tokens") if d[k] != mine[k]]
        if differ:
            raise ValueError(f"the saved sampler differs from this one in {differ}: resume with "
                             f"the same data, split, batch_size and block_size")
        self.pos = np.array(d["pos"], dtype=np.int64)
        self.reset = np.array(d["reset"], dtype=bool)


def eval_sequences(data, n, length, seed=0, split="val"):
    """Held-out windows for position-wise perplexity (Def. 3.1) -> seqs (n, length), doc_ids (n,).

    Windows of the held-out split at uniformly random offsets, crossing document boundaries as the
    training windows do (get_batch). Why not windows inside one document, starting anywhere in it:
    then the first positions of a window are often a file's head (licence, imports) and the late
    ones its body, so the raw loss slopes with t from content alone, by as much as the failure. At
    a random offset of the stream every position t holds the same kind of content, so an ideal
    model's loss can only fall with t, and a rise beyond T is the model's doing (docs/measuring.md).
    doc_ids (indices into the split's documents, meta[split]["names"]) is the document each window
    starts in: windows that start in one document share text, so standard errors are clustered by
    it (measure.clusters).
    """
    tokens, starts = _split(data, split)
    if len(tokens) < length:
        raise ValueError(f"the {split} split has {len(tokens)} tokens, fewer than the {length} of "
                         f"one window: ask for a shorter length or prepare a larger corpus")
    rng = np.random.default_rng(seed)
    # sorted: a file read in order
    offsets = np.sort(rng.integers(0, len(tokens) - length + 1, size=n))
    seqs = np.stack([tokens[o:o + length] for o in offsets]).astype(np.int64)
    docs = np.searchsorted(starts, offsets, side="right") - 1   # the document holding each start
    return torch.from_numpy(seqs), torch.from_numpy(docs.astype(np.int64))


if __name__ == "__main__":  # python data.py [corpus] [tokenizer]: prepare a corpus and describe it
    import sys
    usage = ("python data.py [corpus] [tokenizer]   prepares a corpus (default: stdlib, bytes) and "
             "describes it")
    if {"-h", "--help"} & set(sys.argv):
        print(__doc__ + "\n    " + usage)
        raise SystemExit(0)
    if len(sys.argv) > 3 or any(a.startswith("-") for a in sys.argv[1:]):
        raise SystemExit(f"usage: {usage}; got {' '.join(sys.argv[1:])}")
    d = load(prepare(*sys.argv[1:]))
    print({k: v for k, v in d.meta.items() if k not in ("train", "val")})
    for split in ("train", "val"):
        print(f"{split}: {d.meta[split]['documents']:,} documents, "
              f"{d.meta[split]['tokens']:,} tokens")
    lengths = np.diff(np.append(d.val_docs, len(d.val)))
    print("val documents of >= 2048 / 4096 / 8192 tokens:",
          *[(lengths >= L).sum() for L in (2048, 4096, 8192)])

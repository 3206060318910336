"""
What evaluate.py and effrem.py share: which checkpoints to measure and how to load them, the
held-out data they are measured on, the settings both check before any work, and means with standard
errors clustered by document (the held-out sequences of one document are correlated, so they are
not independent samples).

A checkpoint is a train.py out_dir (ckpt.pt and config.json), a directory holding an official
Mamba-1 or Mamba-2 checkpoint (config.json and pytorch_model.bin), a hub id such as
state-spaces/mamba2-130m, or the path of one of BlinkDL's RWKV-6 .pth files.
"""
import json
import math
import os
import re
import sys
from contextlib import nullcontext

import numpy as np
import torch

import data
import rundir
from configurator import set_threads
from checkpoints import checkpoint_files, is_hub_id
from model import LM

OFFICIAL_T_TRAIN = 2048   # the official Mamba-2 checkpoints' training context (paper sec. B.1)
RWKV6_T_TRAIN = 4096      # BlinkDL's RWKV-6 world models, whose file names say it: ...-ctx4096.pth
DTYPES = ("float32", "bfloat16", "float16")


def quiet_ctrl_c(script):
    """Ctrl-C ends the script with one line instead of the traceback of wherever it was. The process
    still ends by SIGINT (Python does so after the hook), so a shell script that runs it
    stops as well."""
    default = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt):
            print(f"\n{script}: stopped by Ctrl-C. It writes its results at the end: run it again "
                  f"for them", file=sys.stderr)
        else:
            default(kind, value, tb)
    sys.excepthook = hook


def check_settings(settings, positive=(), non_negative=()):
    """Before any work: each setting named in `positive` is an integer > 0, in `non_negative` >= 0,
    the device exists, dtype is one of DTYPES (float32 on the CPU: autocast is CUDA's here), and
    out_dir can be written (rundir.check_out_dir; it is made only when the results are written).
    settings: the dict configure() returned."""
    for name in (*positive, *non_negative):
        value, least = settings[name], 1 if name in positive else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"--{name}={value!r}: must be an integer >= {least}")
    device, dtype = settings["device"], settings["dtype"]
    if not (device == "cpu" or device.startswith("cuda") and torch.cuda.is_available()):
        raise ValueError(f"--device={device!r}: must be 'cpu', or 'cuda' on a machine with CUDA "
                         f"(this one has {'no CUDA' if not torch.cuda.is_available() else 'CUDA'})")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype={dtype!r}: expected one of {', '.join(DTYPES)}")
    if device == "cpu" and dtype != "float32":
        raise ValueError(f"--dtype={dtype!r}: must be 'float32' on the CPU (mixed precision is for "
                         f"CUDA)")
    rundir.check_out_dir(settings["out_dir"])


def checkpoint_info(name):
    """What the evaluation needs to know about a checkpoint, read without loading it: {name, label,
    T_train, corpus, tokenizer, data_dir, fingerprint} (the data settings None where it
    does not say)."""
    if name.endswith(".pth"):                                   # BlinkDL's RWKV-6 file
        if not os.path.isfile(name):
            raise FileNotFoundError(f"{name} not found: pass the path of an RWKV-6 .pth file")
        ctx = re.search(r"ctx(\d+)", os.path.basename(name))   # as BlinkDL names them
        # its tokenizer, the world vocabulary, has to be given by path (data.get_tokenizer)
        return dict(name=name, label=name, T_train=int(ctx[1]) if ctx else RWKV6_T_TRAIN,
                    corpus=None, tokenizer="rwkv-world", data_dir=None, fingerprint=None)
    if os.path.isdir(name):
        if os.path.isfile(os.path.join(name, "ckpt.pt")):       # a run of train.py
            cfg = run_config(name)
            return dict(name=name, label=cfg["intervention"], T_train=cfg["block_size"],
                        corpus=cfg["corpus"], tokenizer=cfg["tokenizer"], data_dir=cfg["data_dir"],
                        fingerprint=cfg.get("corpus_fingerprint"))
        if not os.path.isfile(os.path.join(name, "pytorch_model.bin")):
            raise FileNotFoundError(f"{name} holds neither ckpt.pt (a run of train.py) nor "
                                    f"pytorch_model.bin (an official checkpoint)")
    elif not is_hub_id(name):
        raise FileNotFoundError(f"checkpoint {name!r} not found: no such directory. Pass a "
                                f"train.py out_dir, a directory with config.json and "
                                f"pytorch_model.bin, or a hub id such as state-spaces/mamba2-130m")
    # an official checkpoint (a hub id is only downloaded by fetch_official, which says
    # if it cannot)
    return dict(name=name, label=name, T_train=OFFICIAL_T_TRAIN, corpus=None, tokenizer="gpt-neox",
                data_dir=None, fingerprint=None)


def run_config(out_dir):
    """The config.json of a train.py run, checked against its ckpt.pt (mapped, not read: cheap)
    before any work: both whole, and from the same run (the settings and the step
    that ckpt.pt records)."""
    ckpt_file, path = os.path.join(out_dir, "ckpt.pt"), os.path.join(out_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: train.py writes it beside ckpt.pt")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}): restore it from a copy of the "
                         f"run") from None
    missing = [k for k in ("intervention", "block_size", "corpus", "tokenizer", "data_dir")
               if k not in cfg]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(map(repr, missing))}: it was not written by "
                         f"train.py, or it was edited. Restore it from a copy of the run")
    ckpt = rundir.read_checkpoint(ckpt_file, mmap=True)
    saved = json.loads(json.dumps(ckpt.get("config", {})))   # as config.json would hold it
    differ = [k for k, v in saved.items() if cfg.get(k) != v]
    if "iter_num" in ckpt and cfg.get("iter_num", ckpt["iter_num"]) != ckpt["iter_num"]:
        differ.append("iter_num")
    if differ:
        raise ValueError(f"{path} and {ckpt_file} come from different runs (they differ in "
                         f"{', '.join(differ[:5])}): put the config.json of that ckpt.pt beside it")
    return cfg


def checkpoint_names(checkpoints):
    """The comma-separated checkpoints as a list (a trailing comma is fine); none, or one given
    twice (it would be scored twice under one label), is an error."""
    names = [name for name in checkpoints.split(",") if name]
    if not names:
        raise ValueError("no checkpoints given: --checkpoints=out_dir1,out_dir2,...")
    paths = [os.path.normpath(n) for n in names]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} is given twice in --checkpoints: give each "
                         f"checkpoint once")
    return names


def split_labels(labels):
    """The comma-separated labels as a list, a trailing comma ignored as in checkpoint_names."""
    return [label for label in labels.split(",") if label]


def checkpoint_infos(checkpoints, labels=""):
    """checkpoint_info of each comma-separated checkpoint, labelled by `labels` (comma-separated,
    one per checkpoint) or else by its intervention, and by its directory where two
    runs share one."""
    infos = [checkpoint_info(name) for name in checkpoint_names(checkpoints)]
    given = split_labels(labels) or [i["label"] for i in infos]
    if len(given) != len(infos):
        raise ValueError(f"{len(given)} labels for {len(infos)} checkpoints: give one label per "
                         f"checkpoint")
    for info, label in zip(infos, given):
        info["label"] = label if labels or given.count(label) == 1 else f"{label} ({info['name']})"
    return infos


def with_reference(infos, reference):
    """The checkpoints to evaluate and the index of the reference among them (None without one): the
    reference is evaluated like the others, after them when it is not one of them."""
    if not reference:
        return infos, None
    for i, info in enumerate(infos):
        if os.path.normpath(info["name"]) == os.path.normpath(reference):
            return infos, i
    info = checkpoint_info(reference)
    info["label"] = f"{reference} (reference)"
    return infos + [info], len(infos)


def fetch_official(infos):
    """Download every hub id among the checkpoints (or find it in the hub's cache) before the data
    is prepared: a misspelt name is reported as a missing checkpoint, not as a tokenizer
    that cannot load."""
    for info in infos:
        if not os.path.isdir(info["name"]) and not info["name"].endswith(".pth"):   # .pth: a file
            checkpoint_files(info["name"])


def load_model(name, device):
    """LM.from_pretrained in eval mode; the scan backend is chosen for this device, not
    the training one."""
    model = LM.from_pretrained(name)
    model.config.scan_backend = "auto"   # one config object, shared by every mixer
    return model.to(device).eval()


def check_tokenizers(infos, tokenizer):
    """Before any data: every checkpoint was trained with the tokenizer the held-out text is
    tokenized with (`tokenizer`, else the first checkpoint's): another one's ids would
    mean other text."""
    used = tokenizer or infos[0]["tokenizer"] or "gpt-neox"
    for info in infos:
        if info["tokenizer"] is not None and not data.same_tokenizer(info["tokenizer"], used):
            raise ValueError(f"{info['name']} was trained with the tokenizer "
                             f"{info['tokenizer']!r}, and the held-out text is tokenized with "
                             f"{used!r}: evaluate it with --tokenizer={info['tokenizer']}, in a "
                             f"run of its own")


def load_held_out(info, corpus, tokenizer, data_dir):
    """The prepared corpus: the settings given, else those of the checkpoint described by `info`."""
    corpus = corpus or info["corpus"] or "stdlib"
    tokenizer = tokenizer or info["tokenizer"] or "gpt-neox"
    return data.load(data.prepare(corpus, tokenizer, data_dir or info["data_dir"] or "data"))


def each_model(infos, held_out, device):
    """The checkpoints' (info, model) in turn, each checked against the held-out corpus; the caller
    deletes each model before the next is loaded, so that one is in memory at a time."""
    for info in infos:
        model = load_model(info["name"], device)
        if model.config.vocab_size < held_out.vocab_size:
            raise ValueError(f"{info['name']} has a vocabulary of {model.config.vocab_size}, the "
                             f"corpus's tokenizer {held_out.vocab_size}: evaluate with the "
                             f"tokenizer it was trained on")
        if info["corpus"] is not None:   # a run of train.py: was it trained on this corpus?
            for w in data.check_corpus(info["fingerprint"], held_out, info["name"]):
                print(f"warning: {w}")
        yield info, model
        del model


# -----------------------------------------------------------------------------
# statistics: held-out sequences of one document are correlated, so SEs are clustered by document


def clusters(doc_ids):
    """Sequences grouped by their document, for standard errors clustered by document. doc_ids:
    (n,) -> cluster: (n,) each sequence's document as 0 .. G - 1, counts: (G,) float64
    sequences per document."""
    _, cluster = np.unique(np.asarray(doc_ids), return_inverse=True)
    return cluster, np.bincount(cluster).astype(np.float64)


def document_sums(values, cluster, G):
    """Per-document sums of per-sequence values: values (n, ...), cluster (n,) in
    0 .. G - 1 -> (G, ...)."""
    sums = np.zeros((G, *values.shape[1:]))
    np.add.at(sums, cluster, values)
    return sums


def clustered_mean(sums, counts):
    """Mean over sequences and its standard error clustered by document (sequences of one document
    are correlated). sums: (G, ...) per-document sums over its sequences; counts: (G,) sequences per
    document. SE^2 = G / (G - 1) * sum_g (sums_g - counts_g * mean)^2 / n^2, n = sum_g counts_g
    (NaN if G == 1)."""
    G, n = len(counts), counts.sum()
    mean = sums.sum(0) / n
    resid = sums - counts.reshape(-1, *[1] * (sums.ndim - 1)) * mean
    se = np.sqrt(G / (G - 1) * (resid ** 2).sum(0)) / n if G > 1 else np.full_like(mean, np.nan)
    return mean, se


# -----------------------------------------------------------------------------
# how both scripts start and write their results


def to_json(x):
    """numpy -> lists of floats with 6 significant digits; NaN and inf -> null."""
    if isinstance(x, dict):
        return {k: to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_json(x.tolist())
    if isinstance(x, float):
        return float(f"{x:.6g}") if math.isfinite(x) else None
    return x


def write_json(path, results):
    """results (to_json's input) to path, written whole to path.tmp and renamed over it: a script
    stopped while it writes leaves the last complete file, never a cut one that a
    rerun would read."""
    with open(path + ".tmp", "w") as f:
        json.dump(to_json(results), f)
    os.replace(path + ".tmp", path)


def setup(seed, threads, device, dtype):
    """Seeds torch, sets the CPU threads and returns the autocast context (bf16/fp16 on CUDA, none
    on the CPU); evaluate.py and effrem.py start the same way."""
    torch.manual_seed(seed)
    set_threads(threads)
    if "cuda" not in device or dtype == "float32":
        return nullcontext()
    return torch.autocast("cuda", dtype=getattr(torch, dtype))

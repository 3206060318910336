"""
The run directory of train.py (its out_dir), made safe to stop, resume and repeat:

    claim(out_dir, resume, overwrite)   at the start, before any data or step: out_dir can be written,
                                        no other train.py writes into it (a lock file with its pid), and
                                        it holds no other run, unless overwrite=True
    release(out_dir)                    the lock, once the run has saved for the last time (or at exit)
    check_space(out_dir, nbytes)        room for a checkpoint of about nbytes beside the last one
    check_memory(nbytes, fix)           room in memory for a CPU training step of about nbytes
    save(out_dir, ckpt, record)         ckpt.pt and config.json, each written whole to a .tmp file, then
                                        renamed over the old one: an interruption or a full disk leaves the
                                        last checkpoint as it was, and no .tmp file behind
    load(out_dir)                       ckpt.pt, or an error that says what to do
    same_run(out_dir, config, keys, n)  for finish=True: ckpt.pt if it holds the run config asks for (alike
                                        in keys, at most n steps), None if there is none, else an error
    read_checkpoint(path)               any ckpt.pt of train.py (to resume, post-train or evaluate it),
                                        or an error with the path and the fix
    check_out_dir(out_dir)              before a script's work: its out_dir can be made and written

It is kept apart from train.py so that the training reads top to bottom; nothing here knows the model.
"""
import atexit
import json
import os
import pickle
import shutil
import socket

import torch

LOCK = "train.lock"


def claim(out_dir, resume, overwrite):
    """Take out_dir for this run, or raise with what to do. An out_dir made here and left empty (the run
    refused before its first save) is removed again at release."""
    check_out_dir(out_dir)
    made = not os.path.isdir(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        _lock(out_dir, made)
    except _Locked:
        raise
    except OSError as e:
        raise OSError(f"out_dir {out_dir!r} cannot be written ({e.strerror or e}): pick another "
                      f"--out_dir") from None
    ckpt, record = os.path.join(out_dir, "ckpt.pt"), os.path.join(out_dir, "config.json")
    if not resume and not overwrite and (os.path.exists(ckpt) or os.path.exists(record)):
        raise FileExistsError(f"{out_dir} holds another run ({_describe(record)}): continue it with "
                              f"--init_from=resume, pick another --out_dir, or pass --overwrite=True to replace "
                              f"it (its checkpoint is replaced at this run's first save)")


class _Locked(FileExistsError):
    pass


def _lock(out_dir, made):
    """Create out_dir/train.lock holding "host pid", removed when this process exits. A lock whose process
    is gone (killed, or the machine restarted: its pid may now be another program's) is stale and taken
    over."""
    path, host = os.path.join(out_dir, LOCK), socket.gethostname()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            with open(path) as f:
                holder = f.read().split()
            if len(holder) == 2 and holder[1].isdigit() and _alive(holder[0], int(holder[1]), host):
                raise _Locked(f"{out_dir} is in use by another train.py (pid {holder[1]} on {holder[0]}): wait "
                              f"for it to end, or pick another --out_dir (if that run is over, delete {path})")
            print(f"taking over {path}: the run that left it ({' '.join(holder) or 'empty'}) is gone")
            os.remove(path)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{host} {os.getpid()}")
        atexit.register(release, out_dir, made)
        return


def _alive(holder_host, pid, host):
    if holder_host != host:
        return True                    # another machine's process: it cannot be checked from here
    if pid == os.getpid():
        return False                   # a lock left by an earlier run in this very process (tests run train.py so)
    try:
        os.kill(pid, 0)                # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                    # another user's process
    try:                               # Linux: a live pid that is not a train.py was reused by the system
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"train.py" in f.read()
    except OSError:
        return True                    # no /proc: it cannot be checked


def release(out_dir, made=False):
    """Remove this process's lock; and out_dir too if claim made it and nothing else was written there."""
    path = os.path.join(out_dir, LOCK)
    try:
        with open(path) as f:
            if f.read() == f"{socket.gethostname()} {os.getpid()}":   # never another run's lock
                os.remove(path)
        if made and not os.listdir(out_dir):
            os.rmdir(out_dir)
    except OSError:
        pass


def check_out_dir(out_dir):
    """Before any work: out_dir is a writable directory, or can be made as one (without making it yet).
    Raises with the path and the fix: a file in the way, a dangling link, a folder that cannot be written."""
    path = os.path.abspath(out_dir)
    while not os.path.isdir(path):
        if os.path.islink(path) and not os.path.exists(path):
            raise FileExistsError(f"out_dir {out_dir!r}: {path} is a link to {os.readlink(path)}, which does "
                                  f"not exist: make that folder, remove the link or pick another --out_dir")
        if os.path.exists(path):
            raise NotADirectoryError(f"out_dir {out_dir!r} cannot be written (Not a directory: {path} is a "
                                     f"file): pick another --out_dir")
        path = os.path.dirname(path)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"out_dir {out_dir!r} cannot be written ({path} is not writable): pick another "
                              f"--out_dir")


def _describe(record):
    try:
        with open(record) as f:
            cfg = json.load(f)
        return f"intervention {cfg.get('intervention')!r}, step {cfg.get('iter_num')}"
    except (OSError, ValueError):
        return "a checkpoint"


def check_space(out_dir, nbytes):
    free = shutil.disk_usage(out_dir).free
    if free < 2 * nbytes:
        raise OSError(f"{out_dir} has {free / 2**20:,.0f} MB free, and a checkpoint of this run takes about "
                      f"{nbytes / 2**20:,.0f} MB (twice that while a new one replaces the last): free some space "
                      f"or pick another --out_dir")


def check_memory(nbytes, fix):
    """Refuse a CPU run whose training step needs about nbytes (the activations kept for the backward
    pass) when the machine has less memory available: the kernel would kill it minutes later with no
    word (and leave its lock). `fix` says which settings lower it. (On CUDA, torch itself stops at the
    first step with an out-of-memory error that gives the numbers.)"""
    try:
        with open("/proc/meminfo") as f:
            free = 1024 * int(next(line for line in f if line.startswith("MemAvailable:")).split()[1])
    except (OSError, StopIteration):
        return                         # not Linux: it cannot be checked
    if nbytes > free:
        raise MemoryError(f"a training step needs about {nbytes / 2**30:,.1f} GiB of memory and this machine "
                          f"has {free / 2**30:,.1f} GiB available: {fix}")


def save(out_dir, ckpt, record):
    """Write ckpt (a dict of tensors, for torch.save) to out_dir/ckpt.pt and record (a dict of plain values)
    to out_dir/config.json: both to .tmp files first, then renamed, so each file is whole, old or new."""
    files = [(os.path.join(out_dir, "ckpt.pt"), lambda f: torch.save(ckpt, f)),
             (os.path.join(out_dir, "config.json"), lambda f: f.write(json.dumps(record, indent=1).encode()))]
    for path, write in files:
        try:
            with open(path + ".tmp", "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())   # on the disk before the rename: a power cut leaves old or new
        except (OSError, RuntimeError) as e:   # torch.save reports a full disk as a RuntimeError
            for p, _ in files:
                if os.path.exists(p + ".tmp"):
                    os.remove(p + ".tmp")
            raise OSError(f"could not write {path}.tmp ({e}; {shutil.disk_usage(out_dir).free / 2**20:,.0f} MB "
                          f"free): the last checkpoint in {out_dir} is kept. Free some space, then continue "
                          f"with --init_from=resume") from None
    for path, _ in files:
        os.replace(path + ".tmp", path)


def load(out_dir):
    """out_dir/ckpt.pt on the CPU, to resume it."""
    path = os.path.join(out_dir, "ckpt.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"init_from='resume' but there is no {path}: train into {out_dir} first")
    return read_checkpoint(path)


def read_checkpoint(path, mmap=False):
    """A ckpt.pt of train.py on the CPU: a dict with at least "model" and "model_config". mmap=True maps
    the tensors instead of reading them (a cheap check of a checkpoint before the work that needs it)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as e:
        # cut short, random bytes or another format. torch's own message is left out: for a file it
        # cannot unpickle it suggests weights_only=False, which would run whatever code the file holds
        ckpt = e
    if isinstance(ckpt, Exception) or not isinstance(ckpt, dict) or not {"model", "model_config"} <= set(ckpt):
        what = f"{type(ckpt).__name__}" if isinstance(ckpt, Exception) else "no model in it"
        raise ValueError(f"{path} cannot be read ({what}): it is damaged or is not a checkpoint of train.py. "
                         f"Restore it from a copy, or train it again") from None
    return ckpt


BEFORE_THE_SETTING = {"pass_conv": True}   # what runs saved before a setting existed did


def differences(saved, config, keys):
    """[(key, saved value, config's value)] for the keys whose values differ; a setting the saved run
    predates counts as what train.py did before it existed."""
    saved = BEFORE_THE_SETTING | saved
    return [(k, saved.get(k), config[k]) for k in keys if saved.get(k) != config[k]]


def same_run(out_dir, config, keys, max_iters):
    """The checkpoint in out_dir if it is a piece of the run config asks for: made with the same values of
    keys (those that change the run's numbers, and where it began) and at most max_iters steps long; None
    if out_dir holds no checkpoint (nothing saved yet). Another run there is an error that says the fix."""
    if not os.path.exists(os.path.join(out_dir, "ckpt.pt")):
        return None
    ckpt = load(out_dir)
    done = ckpt.get("iter_num", 0)
    other = [f"--{k}={v!r} (asked: {a!r})" for k, v, a in differences(ckpt.get("config", {}), config, keys)]
    if other or done > max_iters:
        raise ValueError(f"{out_dir} holds a run made with other settings than these "
                         f"({' '.join(other) or f'step {done}, past --max_iters={max_iters}'}): delete {out_dir} "
                         f"to make this one there, or pick another --out_dir")
    return ckpt

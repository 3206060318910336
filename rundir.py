"""
The run directory of train.py (its out_dir), made safe to stop, resume and repeat:

    claim(out_dir, resume, overwrite)   at the start, before any data or step: out_dir can be
                                        written, no other train.py writes into it (a lock file
                                        with its pid), and it holds no other run, unless
                                        overwrite=True
    release(out_dir)                    the lock, once the run has saved for the last time (or at
                                        exit)
    check_space(out_dir, nbytes)        room for a checkpoint of about nbytes beside the last one
    check_memory(nbytes, fix)           room in memory for a CPU training step of about nbytes
    save(out_dir, ckpt, record)         ckpt.pt and config.json, each written whole to a .tmp file,
                                        then renamed over the old one: an interruption or a full
                                        disk leaves the last checkpoint as it was, and no .tmp file
                                        behind
    load(out_dir)                       ckpt.pt, or an error that says what to do
    same_run(out_dir, config, keys, n)  for finish=True: ckpt.pt if it holds the run config asks
                                        for (alike in keys, at most n steps), None if there is
                                        none, else an error
    read_checkpoint(path)               any ckpt.pt of train.py (to resume, post-train or evaluate
                                        it), or an error with the path and the fix
    check_out_dir(out_dir)              before a script's work: its out_dir can be made and written

and, around train.py's loop (resuming, stopping on a signal, saving; closing the run):

    resumable(out_dir, config, keys)    before any data: the checkpoint to resume, if it holds all
                                        a resumed run needs and was made with the same values of
                                        keys
    resume(ckpt, optimizer, ...)        the optimiser's, the batches' and the random generators'
                                        states that save_run saved, put back: the step to go on from
    stop = Stop(second_quits)           Ctrl-C and SIGTERM set stop.signum, read between steps;
                                        stop.restore() and stop.exit(step, how) at the end
    save_run(out_dir, step, params,     every process calls it: finite weights only, every
             sampler_state, contents)   process's sampler state gathered on rank 0, which saves
                                        contents(those states)
    kept(out_dir)                       what a run that stops unsaved leaves (for its error)
    close(out_dir, master)              the lock released; under torchrun every process done

It is kept apart from train.py so that the training reads top to bottom; nothing here knows the
model.
"""
import atexit
import gc
import json
import os
import pickle
import shutil
import signal
import socket

import torch
import torch.distributed as dist

LOCK = "train.lock"


def claim(out_dir, resume, overwrite):
    """Take out_dir for this run, or raise with what to do. An out_dir made here and left empty
    (the run refused before its first save) is removed again at release."""
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
        raise FileExistsError(f"{out_dir} holds another run ({_describe(record)}): continue it "
                              f"with --init_from=resume, pick another --out_dir, or pass "
                              f"--overwrite=True to replace it (its checkpoint is replaced at this "
                              f"run's first save)")


class _Locked(FileExistsError):
    pass


def _lock(out_dir, made):
    """Create out_dir/train.lock holding "host pid", removed when this process exits. A lock whose
    process is gone (killed, or the machine restarted: its pid may now be another program's) is
    stale and taken over."""
    path, host = os.path.join(out_dir, LOCK), socket.gethostname()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            with open(path) as f:
                holder = f.read().split()
            if len(holder) == 2 and holder[1].isdigit() and _alive(holder[0], int(holder[1]), host):
                raise _Locked(f"{out_dir} is in use by another train.py (pid {holder[1]} on "
                              f"{holder[0]}): wait for it to end, or pick another --out_dir (if "
                              f"that run is over, delete {path})")
            print(f"taking over {path}: the run that left it ({' '.join(holder) or 'empty'}) is "
                  f"gone")
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
        return False   # a lock left by an earlier run in this very process (tests run train.py so)
    try:
        os.kill(pid, 0)                # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                    # another user's process
    # Linux: a live pid that is not a train.py was reused by the system
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"train.py" in f.read()
    except OSError:
        return True                    # no /proc: it cannot be checked


def release(out_dir, made=False):
    """Remove this process's lock; and out_dir too if claim made it and nothing else was written
    there."""
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
    """Before any work: out_dir is a writable directory, or can be made as one (without making it
    yet). Raises with the path and the fix: a file in the way, a dangling link, a folder that cannot
    be written."""
    path = os.path.abspath(out_dir)
    while not os.path.isdir(path):
        if os.path.islink(path) and not os.path.exists(path):
            raise FileExistsError(f"out_dir {out_dir!r}: {path} is a link to {os.readlink(path)}, "
                                  f"which does not exist: make that folder, remove the link or "
                                  f"pick another --out_dir")
        if os.path.exists(path):
            raise NotADirectoryError(f"out_dir {out_dir!r} cannot be written (Not a directory: "
                                     f"{path} is a file): pick another --out_dir")
        path = os.path.dirname(path)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"out_dir {out_dir!r} cannot be written ({path} is not writable): "
                              f"pick another --out_dir")


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
        raise OSError(f"{out_dir} has {free / 2**20:,.0f} MB free, and a checkpoint of this run "
                      f"takes about {nbytes / 2**20:,.0f} MB (twice that while a new one replaces "
                      f"the last): free some space or pick another --out_dir")


def check_memory(nbytes, fix):
    """Refuse a CPU run whose training step needs about nbytes (the activations kept for the
    backward pass) when the machine has less memory available: the kernel would kill it minutes
    later with no word (and leave its lock). `fix` says which settings lower it. (On CUDA, torch
    itself stops at the first step with an out-of-memory error that gives the numbers.)"""
    try:
        with open("/proc/meminfo") as f:
            line = next(line for line in f if line.startswith("MemAvailable:"))
            free = 1024 * int(line.split()[1])
    except (OSError, StopIteration):
        return                         # not Linux: it cannot be checked
    if nbytes > free:
        raise MemoryError(f"a training step needs about {nbytes / 2**30:,.1f} GiB of memory and "
                          f"this machine has {free / 2**30:,.1f} GiB available: {fix}")


def save(out_dir, ckpt, record):
    """Write ckpt (a dict of tensors, for torch.save) to out_dir/ckpt.pt and record (a dict of plain
    values) to out_dir/config.json: both to .tmp files first, then renamed, so each file is whole,
    old or new."""
    files = [(os.path.join(out_dir, "ckpt.pt"), lambda f: torch.save(ckpt, f)),
             (os.path.join(out_dir, "config.json"),
              lambda f: f.write(json.dumps(record, indent=1).encode()))]
    for path, write in files:
        try:
            with open(path + ".tmp", "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())   # on disk before the rename: a power cut leaves old or new
        except (OSError, RuntimeError) as e:   # torch.save reports a full disk as a RuntimeError
            for p, _ in files:
                if os.path.exists(p + ".tmp"):
                    os.remove(p + ".tmp")
            free = shutil.disk_usage(out_dir).free
            raise OSError(f"could not write {path}.tmp ({e}; {free / 2**20:,.0f} MB free): the "
                          f"last checkpoint in {out_dir} is kept. Free some space, then continue "
                          f"with --init_from=resume") from None
    for path, _ in files:
        os.replace(path + ".tmp", path)


def load(out_dir):
    """out_dir/ckpt.pt on the CPU, to resume it."""
    path = os.path.join(out_dir, "ckpt.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"init_from='resume' but there is no {path}: train into {out_dir} "
                                f"first")
    return read_checkpoint(path)


def read_checkpoint(path, mmap=False):
    """A ckpt.pt of train.py on the CPU: a dict with at least "model" and "model_config". mmap=True
    maps the tensors instead of reading them (a cheap check of a checkpoint before the work that
    needs it)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as e:
        # cut short, random bytes or another format. torch's own message is left out: for a file
        # it cannot unpickle it suggests weights_only=False, which would run whatever code the file
        # holds
        ckpt = e
    if (isinstance(ckpt, Exception) or not isinstance(ckpt, dict)
            or not {"model", "model_config"} <= set(ckpt)):
        what = f"{type(ckpt).__name__}" if isinstance(ckpt, Exception) else "no model in it"
        raise ValueError(f"{path} cannot be read ({what}): it is damaged or is not a checkpoint "
                         f"of train.py. Restore it from a copy, or train it again") from None
    return ckpt


BEFORE_THE_SETTING = {"pass_conv": True}   # what runs saved before a setting existed did


def differences(saved, config, keys):
    """[(key, saved value, config's value)] for the keys whose values differ; a setting the saved
    run predates counts as what train.py did before it existed."""
    saved = BEFORE_THE_SETTING | saved
    return [(k, saved.get(k), config[k]) for k in keys if saved.get(k) != config[k]]


def same_run(out_dir, config, keys, max_iters):
    """The checkpoint in out_dir if it is a piece of the run config asks for: made with the same
    values of keys (those that change the run's numbers, and where it began) and at most max_iters
    steps long; None if out_dir holds no checkpoint (nothing saved yet). Another run there is an
    error that says the fix."""
    if not os.path.exists(os.path.join(out_dir, "ckpt.pt")):
        return None
    ckpt = load(out_dir)
    done = ckpt.get("iter_num", 0)
    other = [f"--{k}={v!r} (asked: {a!r})"
             for k, v, a in differences(ckpt.get("config", {}), config, keys)]
    if other or done > max_iters:
        what = ' '.join(other) or f'step {done}, past --max_iters={max_iters}'
        raise ValueError(f"{out_dir} holds a run made with other settings than these ({what}): "
                         f"delete {out_dir} to make this one there, or pick another --out_dir")
    return ckpt


# -----------------------------------------------------------------------------------------------
# Stopping, saving and resuming a run of train.py, and closing it

def resumable(out_dir, config, keys, ckpt=None):
    """The checkpoint in out_dir (ckpt, if same_run has read it already), to resume: it must hold
    the optimiser's and every process's sampler state (written by save_run), and have been made with
    the same values of keys (the settings that change the training's numbers). Else an error with
    the fix."""
    ckpt = ckpt or load(out_dir)
    if "optimizer" not in ckpt:
        raise ValueError(f"{out_dir}/ckpt.pt holds the weights only (as the shipped "
                         f"assets/baseline does, to stay small): post-train it with "
                         f"--init_from={out_dir}, or remake it to resume it")
    if "samplers" not in ckpt:
        raise ValueError(f"{out_dir}/ckpt.pt was written by an earlier train.py, which saved less: "
                         f"post-train it with --init_from={out_dir} (a fresh optimiser), or remake "
                         f"it to resume it")
    changed = [f"--{k}={v!r} (not {a!r})" for k, v, a in differences(ckpt["config"], config, keys)]
    if changed:
        raise ValueError(f"resuming {out_dir} with settings that change its training: pass "
                         f"{' '.join(changed)}, or start a new run in another out_dir")
    return ckpt


def resume(ckpt, optimizer, scaler, data_gen, stream, out_dir, max_iters, fingerprint):
    """Put back into a resumed run's fresh objects what save_run saved: the optimiser's and the
    gradient scaler's state, the batches' generator, the TBTT streams' positions (stream is None
    outside TBTT) and the CPU's random generator. Returns the step to go on from (below max_iters,
    or an error). fingerprint: the corpus's now, which should be the one it was trained on."""
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt["scaler"]:                              # empty when the run did not use float16
        scaler.load_state_dict(ckpt["scaler"])
    data_gen.set_state(ckpt["data_gen"])
    if stream is not None:
        stream.load_state_dict(ckpt["stream"])
    torch.set_rng_state(ckpt["torch_rng"])
    if ckpt.get("corpus_fingerprint") != fingerprint:
        print(f"warning: {out_dir} was trained on another corpus (fingerprint "
              f"{ckpt.get('corpus_fingerprint')}, this one {fingerprint}): the run does not "
              f"continue as it would have")
    if ckpt["iter_num"] >= max_iters:
        raise ValueError(f"{out_dir} is at step {ckpt['iter_num']} already: pass --max_iters above "
                         f"{ckpt['iter_num']} to continue")
    return ckpt["iter_num"]


class Stop:
    """Ctrl-C (SIGINT) and SIGTERM (a cluster preempting the job) only set stop.signum, which the
    training loop reads between steps: the step under way finishes (its batch used, its update
    counted), then the run is saved and stops. A second Ctrl-C quits at once, without saving, if
    second_quits (False under torchrun, which repeats the first one)."""

    def __init__(self, second_quits=True):
        self.signum, self.second_quits = 0, second_quits
        self.handlers = {s: signal.signal(s, self.request) for s in (signal.SIGINT, signal.SIGTERM)}

    def request(self, signum, frame):
        if self.signum and self.second_quits:
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self):
        """The handlers from before: once the run is saved, Ctrl-C interrupts as usual."""
        for s, handler in self.handlers.items():
            signal.signal(s, handler)

    def exit(self, step, resume_with):
        """Say how to continue, and exit with 128 + the signal (SIGTERM's if another process of the
        job was signalled), as a process killed by it would."""
        signum = self.signum or signal.SIGTERM
        print(f"stopped by {signal.Signals(signum).name} at step {step}: continue with "
              f"{resume_with}")
        raise SystemExit(128 + signum)


def kept(out_dir):
    """What a run that stops unsaved (a loss that is not finite) leaves, for its error message."""
    path = os.path.join(out_dir, "ckpt.pt")
    return f"{path} is left as it was" if os.path.exists(path) else "nothing was saved"


def save_run(out_dir, step, params, sampler_state, contents):
    """Save train.py's run at this step; every process calls it. Weights (params) that are not
    finite are never saved. Under torchrun rank 0 gathers every process's sampler_state (its random
    draws, its rows' passed states: each process has its own); then it saves contents(samplers),
    samplers the list of them in rank order ([sampler_state] in one process), to ckpt.pt, and the
    settings with the model's, the step and the corpus's fingerprint to config.json (save: each
    file whole, old or new)."""
    if not all(torch.isfinite(p).all() for p in params):
        raise FloatingPointError(f"the weights are not finite at step {step}: not saved "
                                 f"({kept(out_dir)}); try a lower learning_rate")
    samplers = [sampler_state]
    if dist.is_available() and dist.is_initialized():
        samplers = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
        dist.gather_object(sampler_state, samplers, dst=0)
    if samplers is not None:                        # rank 0
        ckpt = contents(samplers)
        record = ckpt["config"] | {k: ckpt[k] for k in ("model_config", "iter_num",
                                                         "corpus_fingerprint")}
        save(out_dir, ckpt, record)
        print(f"saved {out_dir}/ckpt.pt at step {step}")


def close(out_dir, master):
    """The end of a run, once it has saved for the last time: rank 0 (master) releases out_dir's
    lock; under torchrun every process waits for the others (so rank 0 has saved), frees what is
    left of DDP (in reference cycles: left to the exit, it can make gloo abort the process) and
    leaves the process group."""
    if master:
        release(out_dir)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        gc.collect()
        dist.destroy_process_group()

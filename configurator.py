"""
Configuration the nanoGPT way: a script's settings are plain module globals, and

    python train.py config/some_experiment.py --batch_size=16 --learning_rate=1e-3

first runs the config file (plain Python assignments), then applies each --key=value. Unlike
nanoGPT's version, a key the script does not define is an error (a typo must not be silently
ignored), and so is a value of the wrong type (None too, unless the default is None).
`--help` or `-h` prints the script's docstring and every setting with its default and the comment
beside it in the script's source, and exits.
"""
import ast
import sys
import tokenize

CONFIG_TYPES = (int, float, bool, str, tuple, type(None))


def config_keys(module_globals):
    """The script's settings: public globals of simple types, defined before this call. A name of
    two or more capitals is a constant (train.py imports interventions.INTERVENTIONS, a tuple), not
    a setting; one capital is a symbol of the paper's (effrem.py's T)."""
    return [k for k, v in module_globals.items() if not k.startswith("_")
            and not (k.isupper() and len(k) > 1) and isinstance(v, CONFIG_TYPES)]


def _checked(key, value, default):
    # `ts = [1, 2]` in a config file, or --ts=[1,2]
    if isinstance(default, tuple) and type(value) is list:
        value = tuple(value)
    if default is None or (value is not None and type(value) is type(default)):
        return value
    if isinstance(default, float) and type(value) is int:
        return float(value)
    raise ValueError(f"--{key}: expected {type(default).__name__} like the default {default!r}, "
                     f"got {value!r}")


def configure(module_globals, argv=None):
    """Apply config files and --key=value overrides from argv (default sys.argv[1:]) to the
    script's globals. Returns the final settings as a dict (saved with checkpoints and results)."""
    keys = config_keys(module_globals)
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print_help(module_globals, keys)
        sys.exit(0)
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--"):
            raise ValueError(f"arguments look like --key=value (two dashes), got {arg!r}")
        if not arg.startswith("--"):
            _apply_file(arg, module_globals, keys)
            continue
        key, sep, text = arg[2:].partition("=")
        if not sep:
            raise ValueError(f"arguments look like --key=value, got {arg!r}")
        if key not in keys:
            raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(keys))}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text                   # a bare string, e.g. --out_dir=out-sp
        if isinstance(module_globals[key], str) and not isinstance(value, str):
            value = text                   # a string setting takes the text as given:
                                           # --out_dir=2024
        module_globals[key] = _checked(key, value, module_globals[key])
        print(f"overriding: {key} = {module_globals[key]!r}")
    return {k: module_globals[k] for k in keys}


def _apply_file(path, module_globals, keys):
    """Run a config file and apply its assignments. Every plain value it assigns (a number, a
    string, a tuple or list, a dict) must be a setting; only _private names, imports and functions
    are its own."""
    try:
        source = open(path).read()
    except OSError as e:
        raise FileNotFoundError(f"config file {path!r} could not be read: {e}") from None
    print(f"overriding config with {path}:\n{source}")
    values = {}
    exec(compile(source, path, "exec"), {}, values)   # compiled under its name: errors say where
    for key, value in values.items():
        if key.startswith("_") or not isinstance(value, CONFIG_TYPES + (list, dict)):
            continue                       # helpers and imports inside a config file
        if key not in keys:
            raise ValueError(f"{path}: unknown config key {key!r}; valid keys: "
                             f"{', '.join(sorted(keys))}")
        module_globals[key] = _checked(key, value, module_globals[key])


def print_help(module_globals, keys):
    """The script's docstring, then `--key=default  comment` for each setting."""
    print((module_globals.get("__doc__") or "").strip()
          + "\n\nsettings (a config file, then --key=value):")
    comments = _comments(module_globals["__file__"]) if module_globals.get("__file__") else {}
    width = max(len(f"--{k}={module_globals[k]!r}") for k in keys)
    for k in keys:
        print(f"  {f'--{k}={module_globals[k]!r}':<{width}}  {comments.get(k, '')}".rstrip())


def _comments(path):
    """{name: comment} for each `name = value  # comment` at the top level of a script, the comment
    continued on the indented comment-only lines below it."""
    comments, name = {}, None
    with open(path) as f:
        for tok in tokenize.generate_tokens(f.readline):
            if tok.start[1] == 0 and tok.type in (tokenize.NAME, tokenize.COMMENT):
                # a new statement, or a heading
                name = tok.string if tok.type == tokenize.NAME else None
            elif tok.type == tokenize.COMMENT and name:
                comments[name] = (comments.get(name, "") + " "
                                  + tok.string.lstrip("#").strip()).strip()
    return comments


def set_threads(threads):
    """Set torch's CPU threads for a script's `threads` setting and return the count. N > 0 is taken
    as is. 0 picks a count that holds up when other work shares the cores: the cores this process
    may run on (os.sched_getaffinity) less the tasks running on them now (Linux's /proc/loadavg
    counts them; elsewhere the last minute's load average), at least 1. torch's own default takes
    every core, and then its threads wait for each other whenever another job holds one of the
    cores (docs/kernels.md, "Speed": the demo took 3.4x longer beside one single-thread job)."""
    import os
    import statistics
    import time

    import torch
    if threads == 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        others = []
        for _ in range(20):               # 0.1 s of samples: a task that runs now and
                                          # then counts less
            try:
                with open("/proc/loadavg") as f:            # "0.52 0.58 0.59 2/345 1234": 2 running
                    others.append(int(f.read().split()[3].split("/")[0]) - 1)   # less this process
            except OSError:
                others = [os.getloadavg()[0]]
                break
            time.sleep(0.005)
        threads = max(1, cores - round(statistics.median(others)))
        print(f"threads = 0: {threads} of the {cores} cores ({statistics.median(others):g} other "
              f"tasks running)")
    torch.set_num_threads(threads)
    return threads

"""
Configuration the nanoGPT way: a script's settings are plain module globals, and

    python train.py config/some_experiment.py --batch_size=16 --learning_rate=1e-3

first runs the config file (plain Python assignments), then applies each --key=value. Unlike
nanoGPT's version, a key the script does not define is an error (a typo must not be silently
ignored), and so is a value of the wrong type.
"""
import ast
import sys

CONFIG_TYPES = (int, float, bool, str, tuple, type(None))


def config_keys(module_globals):
    """The script's settings: public globals of simple types, defined before this call."""
    return [k for k, v in module_globals.items() if not k.startswith("_") and isinstance(v, CONFIG_TYPES)]


def _checked(key, value, default):
    if default is None or value is None or type(value) is type(default):
        return value
    if isinstance(default, float) and type(value) is int:
        return float(value)
    raise ValueError(f"--{key}: expected {type(default).__name__} like the default {default!r}, got {value!r}")


def configure(module_globals, argv=None):
    """Apply config files and --key=value overrides from argv (default sys.argv[1:]) to the
    script's globals. Returns the final settings as a dict (saved with checkpoints and results)."""
    keys = config_keys(module_globals)
    for arg in sys.argv[1:] if argv is None else argv:
        if not arg.startswith("--"):
            try:
                source = open(arg).read()
            except OSError as e:
                raise FileNotFoundError(f"config file {arg!r} could not be read: {e}") from None
            print(f"overriding config with {arg}:\n{source}")
            values = {}
            exec(source, {}, values)
            for key, value in values.items():
                if key.startswith("_") or not isinstance(value, CONFIG_TYPES):
                    continue                   # helpers and imports inside a config file
                if key not in keys:
                    raise ValueError(f"{arg}: unknown config key {key!r}; valid keys: {', '.join(sorted(keys))}")
                module_globals[key] = _checked(key, value, module_globals[key])
        else:
            key, sep, text = arg[2:].partition("=")
            if not sep:
                raise ValueError(f"arguments look like --key=value, got {arg!r}")
            if key not in keys:
                raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(keys))}")
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = text                   # a bare string, e.g. --out_dir=out-sp
            module_globals[key] = _checked(key, value, module_globals[key])
            print(f"overriding: {key} = {module_globals[key]!r}")
    return {k: module_globals[k] for k in keys}

"""The commands of README.md and of the docs/ pages it links (in the order it links them), checked
cheaply as a fresh clone would run them: each script exists, every --key is one of that script's
settings, every config file exists and sets only such settings, and every run or folder a command
reads is in the repository or written by an earlier command (in the README's order).
check_readme.sh runs the same commands for real (minutes; not part of the test suite).

    python tests/test_readme.py      # prints the commands, one per line, as check_readme.sh
                                     # reads them
"""
import ast
import os
import re
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configurator import config_keys  # noqa: E402
from checkpoints import is_hub_id  # noqa: E402


def readme_commands(text):
    """The shell commands of the README's unlabelled ``` blocks, in order: lines that start with
    python, bash, pip or ./<script>.sh (other lines there are output or paths). A trailing
    "# comment" is kept; shlex drops it."""
    commands, in_block, label = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            in_block, label = not in_block, line[3:].strip()
        elif in_block and not label and (line.split(" ", 1)[0] in ("python", "bash", "pip")
                                          or re.match(r"\./\w+\.sh\b", line)):
            commands.append(line)
    return commands


def needs_gpu(command):
    """Commands for a GPU (and the network): checkable here for their script and keys only."""
    return "--device=cuda" in command


def settings(script, cache={}):
    """The script's settings and their defaults, as configurator.configure sees them: the script's
    lines before its configure(globals()) call, run. {} for a script that takes no --key=value
    settings."""
    if script not in cache:
        lines = open(os.path.join(ROOT, script)).read().splitlines()
        end = next((i for i, line in enumerate(lines) if "configure(globals())" in line), None)
        namespace = {"__name__": "readme_check"}
        if end is not None:
            head = lines[:end]
            if head[-1].startswith("if "):   # `if __name__ == "__main__":` guards the call
                head = head[:-1]
            exec(compile("\n".join(head), script, "exec"), namespace)
        cache[script] = {k: namespace[k] for k in config_keys(namespace)} if end is not None else {}
    return cache[script]


def config_file_values(path):
    values = {}
    exec(open(os.path.join(ROOT, path)).read(), {}, values)
    return {k: v for k, v in values.items() if not k.startswith("_")}


def shell_script_commands(path):
    """The python commands of a bash script like demo.sh, its simple NAME=value variables expanded;
    [] for a script with loops, continued lines or ${...} (experiments/*.sh): only its existence is
    checked."""
    variables, commands = {}, []
    text = open(os.path.join(ROOT, path)).read()
    if re.search(r"^\s*for |\\$|\$\{", text, flags=re.M):
        return []
    for line in text.splitlines():
        m = re.fullmatch(r"(\w+)=(.*)", line.strip())
        if m:
            variables[m[1]] = shlex.split(m[2])[0]
        elif line.startswith("python "):
            for name, value in variables.items():
                line = (line.replace(f'"${name}"', shlex.quote(value))
                        .replace(f"${name}", shlex.quote(value)))
            commands.append(line)
    return commands


def check_commands(commands):
    """Problems (a list of strings) with the commands, in order; `made` collects the folders they
    write."""
    problems, made = [], set()
    for i, command in enumerate(commands, 1):
        check_command(command, f"README command {i} ({command.strip()})", problems, made)
    return problems


def exists(path, made):
    """Whether path is in the repository, or is a folder an earlier command wrote (in `made`)."""
    return os.path.exists(os.path.join(ROOT, path)) or path.rstrip("/") in made


def check_command(command, where, problems, made):
    """Check one command line, each of its && parts by its kind: pip, a shell script, python (a
    pytest run is not checked). Appends to `problems`; `made` as in check_commands."""
    for part in command.split("&&"):
        words = shlex.split(part, comments=True)
        if not words:
            continue
        if words[0] == "pip":
            if not exists(words[-1], made):
                problems.append(f"{where}: {words[-1]} does not exist")
        elif words[0] == "bash" or words[0].startswith("./"):
            check_shell_script(words, where, problems, made)
        elif words[1:3] != ["-m", "pytest"]:
            check_python(words, command, where, problems, made)


def check_shell_script(words, where, problems, made):
    """`bash script.sh` or `./script.sh`: the script exists, and so do the python commands it runs
    (shell_script_commands), checked as if the README ran them."""
    path = words[1] if words[0] == "bash" else words[0][2:]
    if not exists(path, made):
        problems.append(f"{where}: {path} does not exist")
    else:
        for inner in shell_script_commands(path):
            check_command(inner, f"{path}, called by {where}", problems, made)


def check_python(words, command, where, problems, made):
    """`python script.py [config file] [--key=value ...]`: the script exists, its --keys and the
    keys its config files set are all its settings, and what it reads exists (check_paths)."""
    script = words[1]
    if not os.path.isfile(os.path.join(ROOT, script)):
        problems.append(f"{where}: no script {script}")
        return
    defaults = settings(script)
    values = {}
    for arg in words[2:]:
        if arg in ("--help", "-h"):
            continue                      # configurator prints the settings
        if arg.startswith("--"):
            key, _, value = arg[2:].partition("=")
            if key not in defaults:
                problems.append(f"{where}: --{key} is not a setting of {script}")
            values[key] = value
        elif not defaults:
            continue                      # a positional argument, e.g. `python data.py stdlib`
        elif not os.path.isfile(os.path.join(ROOT, arg)):
            problems.append(f"{where}: config file {arg} does not exist")
        else:
            for key, value in config_file_values(arg).items():
                if key not in defaults:
                    problems.append(f"{where}: {arg} sets {key}, not a setting of {script}")
                values.setdefault(key, value)   # a flag after the file overrides it
    check_paths(script, {**defaults, **values}, command, where, problems, made)


def check_paths(script, values, command, where, problems, made):
    """The runs and folders the script reads with these settings (init_from, checkpoints) exist,
    unless the command is for a GPU; its out_dir joins `made` for the commands after it."""
    reads = []
    if script == "train.py":
        init = str(values["init_from"])
        if init == "resume":
            reads.append(str(values["out_dir"]))
        elif init != "scratch" and not is_hub_id(init):
            reads.append(init)
    if "checkpoints" in values:
        reads += [c for c in str(values["checkpoints"]).split(",") if c and not is_hub_id(c)]
    if not needs_gpu(command):
        for path in reads:
            if not exists(path, made):
                problems.append(f"{where}: reads {path}, which neither the repository nor an "
                                "earlier command makes")
    if "out_dir" in values:
        made.add(str(values["out_dir"]).rstrip("/"))


def pages():
    """README.md, then each docs/ page in the order the README first links it: the order a reader
    (and check_readme.sh) follows them."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    linked = list(dict.fromkeys(re.findall(r"\]\((docs/[\w-]+\.md)\)", readme)))
    return ["README.md"] + linked


def all_commands():
    return [c for page in pages() for c in readme_commands(open(os.path.join(ROOT, page)).read())]


def test_every_docs_page_is_linked_from_the_readme():
    assert sorted(pages()[1:]) == sorted(
        f"docs/{f}" for f in os.listdir(os.path.join(ROOT, "docs")))


def test_every_readme_command_is_runnable_as_written():
    commands = all_commands()
    assert len(commands) >= 5
    assert check_commands(commands) == []


def test_the_python_snippet_imports_what_exists():
    text = "".join(open(os.path.join(ROOT, page)).read() for page in pages())
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        for node in ast.walk(ast.parse(block)):
            if (isinstance(node, ast.ImportFrom)
                    and os.path.isfile(os.path.join(ROOT, f"{node.module}.py"))):
                module = __import__(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


def test_the_checker_finds_what_a_fresh_clone_would_not_run():
    problems = check_commands([
        "python train.py --out_dir=out-x --max_iters=1",
        "python train.py --out_dir=out-x --init_from=resume",          # fine: made just above
        "python train.py --out_dir=out-y --init_from=resume",          # nothing made out-y
        "python train.py config/no_such_config.py",
        "python train.py --no_such_key=1",
        "python evaluate.py --checkpoints=out-x,out-never,state-spaces/mamba2-130m",
        "python train.py --help",                                       # fine
        "python nothere.py",
        "bash nothere.sh",
        "./alsonothere.sh copy",
    ])
    assert len(problems) == 7, problems
    for expected in ("reads out-y", "config/no_such_config.py does not exist",
                     "--no_such_key is not a setting", "reads out-never", "no script nothere.py",
                     "nothere.sh does not exist", "alsonothere.sh does not exist"):
        assert any(expected in p for p in problems), (expected, problems)


if __name__ == "__main__":
    print("\n".join(all_commands()))

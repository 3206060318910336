"""train.py end to end on a tiny corpus and a tiny model: every intervention trains, a resumed run
continues exactly, and bad settings fail clearly. train.py is a script (nanoGPT style), so it is
run with runpy, as `python train.py --key=value ...` would run it (test_runs.py runs it as a
process where a signal or a file's fate is tested)."""
import json
import os
import re
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
INTERVENTIONS = ["zero", "random_noise", "fitted_noise", "state_passing", "tbtt"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Real text: the json package's source files, one document each."""
    d = tmp_path_factory.mktemp("corpus")
    for f in Path(json.__file__).parent.glob("*.py"):
        (d / (f.stem + ".txt")).write_bytes(f.read_bytes())
    return d


def tiny(corpus, out_dir, **kw):
    settings = dict(init_from="scratch", corpus=corpus, data_dir=corpus.parent / "data", out_dir=out_dir,
                    d_model=32, n_layer=1, d_state=8, headdim=8, block_size=16, batch_size=8,
                    max_iters=12, eval_interval=6, eval_iters=2, log_interval=1, learning_rate=3e-3,
                    intervention="zero", threads=1, final_eval_seqs=0)
    return [f"--{k}={v}" for k, v in (settings | kw).items()]


def run_train(args, capsys):
    """Run train.py with these flags; return what it printed."""
    argv, handlers = sys.argv, {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    sys.argv = ["train.py"] + [str(a) for a in args]
    try:
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    finally:                      # train.py's own Ctrl-C handling stays with train.py
        sys.argv = argv
        for s, handler in handlers.items():
            signal.signal(s, handler)
    return capsys.readouterr().out


def step_losses(out):
    """{step: training loss} from the log lines (log_interval = 1)."""
    return {int(s): float(l) for s, l in re.findall(r"step (\d+): loss ([\d.]+),", out)}


def eval_losses(out):
    return [float(v) for v in re.findall(r"val loss ([\d.]+)", out)]


@pytest.mark.parametrize("intervention", INTERVENTIONS)
def test_each_intervention_lowers_the_loss(intervention, corpus, tmp_path, capsys):
    out = run_train(tiny(corpus, tmp_path / "run", intervention=intervention, max_iters=60,
                         eval_interval=60, learning_rate=1e-2), capsys)
    first, last = eval_losses(out)[0], eval_losses(out)[-1]
    assert last < first - 0.5, f"{intervention}: val loss {first:.3f} -> {last:.3f}"
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert ckpt["iter_num"] == 60 and ckpt["config"]["intervention"] == intervention
    assert json.loads((tmp_path / "run" / "config.json").read_text())["intervention"] == intervention


@pytest.mark.parametrize("intervention", ["fitted_noise", "state_passing", "tbtt"])
def test_resume_continues_exactly(intervention, corpus, tmp_path, capsys):
    # 12 steps in one go, against 6 steps, a restart of the process, and 6 more: the same losses,
    # so the checkpoint carries the sampler's passed states / statistics / stream positions and RNGs.
    whole = step_losses(run_train(tiny(corpus, tmp_path / "a", intervention=intervention), capsys))
    run_train(tiny(corpus, tmp_path / "b", intervention=intervention, max_iters=6), capsys)
    resumed = step_losses(run_train(tiny(corpus, tmp_path / "b", intervention=intervention,
                                         init_from="resume"), capsys))
    assert sorted(resumed) == list(range(7, 13))
    assert [resumed[s] for s in resumed] == [whole[s] for s in resumed]


def test_ends_with_the_length_generalization_readout(corpus, tmp_path, capsys):
    out = run_train(tiny(corpus, tmp_path / "run", max_iters=2, final_eval_seqs=4), capsys)
    # (the tiny corpus's windows start in few documents: no clustered SE ("nan"), and no verdict)
    assert re.search(r"==> at \[16T, 32T\): the loss rises [+-]\d\.\d{4} ± (\d\.\d{4}|nan) nats/token over "
                     r"\[T, 4T\) .*; excess [+-]\d\.\d{4} ± (\d\.\d{4}|nan)", out)
    assert "undecided" in out


def test_post_training_starts_from_the_earlier_run(corpus, tmp_path, capsys):
    out = run_train(tiny(corpus, tmp_path / "base", max_iters=30, eval_interval=30, learning_rate=1e-2), capsys)
    base_val = eval_losses(out)[-1]
    out = run_train(tiny(corpus, tmp_path / "post", init_from=tmp_path / "base", intervention="state_passing",
                         max_iters=6), capsys)
    assert eval_losses(out)[0] == base_val                 # step 0 evaluates the loaded weights
    assert "steps 0 -> 6" in out                           # a fresh optimiser, from step 0


def test_nan_keeps_the_last_good_checkpoint(corpus, tmp_path, capsys):
    run_train(tiny(corpus, tmp_path / "run", max_iters=4, eval_interval=4), capsys)
    good = (tmp_path / "run" / "ckpt.pt").read_bytes()
    with pytest.raises(FloatingPointError, match=r"the loss is nan at step \d+: stopping \(.*ckpt.pt is left as it was"):
        run_train(tiny(corpus, tmp_path / "run", init_from=tmp_path / "run", learning_rate=1e12,
                       overwrite=True), capsys)
    assert (tmp_path / "run" / "ckpt.pt").read_bytes() == good


@pytest.mark.parametrize("flag,error,message", [
    ("--batchsize=4", ValueError, "unknown config key 'batchsize'"),
    ("--batch_size=four", ValueError, "--batch_size: expected int"),
    ("--intervention=noise", ValueError, "--intervention='noise': must be one of zero, random_noise"),
    ("--corpus=/no/such/corpus", FileNotFoundError, "corpus '/no/such/corpus' not found"),
    ("--init_from=resume", FileNotFoundError, "there is no .*ckpt.pt"),
    ("--init_from=/no/such/run", FileNotFoundError, "/no/such/run"),
])
def test_bad_settings_fail_clearly(flag, error, message, corpus, tmp_path, capsys):
    with pytest.raises(error, match=message):
        run_train(tiny(corpus, tmp_path / "run") + [flag], capsys)


def test_a_weights_only_checkpoint_is_post_trained_not_resumed(corpus, tmp_path, capsys):
    # assets/baseline ships the model and settings only (no optimiser state): it can start a post-training,
    # and resuming it says why not
    run_train(tiny(corpus, tmp_path / "run", max_iters=2), capsys)
    path = tmp_path / "run" / "ckpt.pt"
    ckpt = torch.load(path, weights_only=True)
    torch.save({k: ckpt[k] for k in ("model", "model_config", "config", "iter_num")}, path)
    with pytest.raises(ValueError, match="holds the weights only"):
        run_train(tiny(corpus, tmp_path / "run", init_from="resume"), capsys)
    out = run_train(tiny(corpus, tmp_path / "post", init_from=tmp_path / "run", max_iters=2), capsys)
    assert "steps 0 -> 2" in out


def test_tbtt_on_a_task_is_refused_and_named_for_what_it_would_be(corpus, tmp_path, capsys):
    # a task's samples are unrelated: handing one's final state to the next is State Passing, not TBTT
    with pytest.raises(ValueError, match="--intervention=state_passing --p_zero=0"):
        run_train(tiny(corpus, tmp_path / "run", task="copy", intervention="tbtt"), capsys)


def test_every_setting_a_config_file_gives_is_used_or_refused(tmp_path, capsys):
    # issue 23, cases 4 and 10: lists were dropped, errors said <string>, -key=value was read as a file,
    # and a string setting that looks like a number was refused
    from configurator import configure
    settings = dict(ts=(), out_dir="eval", n=1)
    (tmp_path / "lists.py").write_text("import math\nts = [1, 2, 3]\n_helper = [4]\n")
    assert configure(settings, [str(tmp_path / "lists.py"), "--out_dir=2024"])["ts"] == (1, 2, 3)
    assert settings["out_dir"] == "2024" and configure(settings, ["--ts=[5, 6]"])["ts"] == (5, 6)
    (tmp_path / "unknown.py").write_text("lengths = [256, 1024]\n")
    with pytest.raises(ValueError, match="unknown.py: unknown config key 'lengths'"):
        configure(settings, [str(tmp_path / "unknown.py")])
    (tmp_path / "broken.py").write_text("n = 2\nts = (1,\n")
    with pytest.raises(SyntaxError) as e:
        configure(settings, [str(tmp_path / "broken.py")])
    assert e.value.filename == str(tmp_path / "broken.py")
    with pytest.raises(ValueError, match=r"--key=value \(two dashes\), got '-n=5'"):
        configure(settings, ["-n=5"])


def test_an_imported_constant_is_not_a_setting():
    # train.py imports INTERVENTIONS (a tuple) before configure(globals()): it was taken for a setting,
    # listed by --help, saved with every run, and compared when a run was continued
    from configurator import config_keys
    assert config_keys({"INTERVENTIONS": ("zero",), "Ts": (2048,), "T": 64, "n": 1, "_x": 2}) == ["Ts", "T", "n"]
    out = subprocess.run([sys.executable, "train.py", "--help"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert "--intervention=" in out and "INTERVENTIONS" not in out

"""Nothing a user does loses a run: what train.py leaves on disk when it is stopped by a signal, diverges,
fills the disk, meets a damaged checkpoint, another run's directory or a bad setting. Where a signal or a
file's fate is tested, train.py runs as its own process; elsewhere in-process (test_train.run_train)."""
import json
import os
import re
import resource
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import LM, ModelConfig
from test_train import ROOT, corpus, run_train, step_losses, tiny  # noqa: F401  (corpus: a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def small(corpus, out_dir, **kw):
    """The tiniest run: a step takes milliseconds, so a process's time is its start."""
    return tiny(corpus, out_dir, **{"batch_size": 4, "eval_iters": 1, "max_iters": 4, "eval_interval": 100} | kw)


def start(args, **kw):
    """train.py as a process, its output line by line as it is printed."""
    env = os.environ | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def ckpt(out_dir):
    return torch.load(Path(out_dir, "ckpt.pt"), weights_only=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_a_checkpoint_that_resumes_exactly(sig, corpus, tmp_path, capsys):
    # Ctrl-C (SIGINT) or a cluster's SIGTERM at a step: the run saves and exits 128 + signal; resumed, it
    # gives the losses of a run never interrupted (so the batch drawn at the signal was not lost, and
    # no update was saved under the wrong step). state_passing: the passed states are saved too.
    args = small(corpus, tmp_path / "run", intervention="state_passing", max_iters=100_000)
    proc = start(args)
    out = ""
    for line in proc.stdout:
        out += line
        if line.startswith("step 3:"):
            proc.send_signal(sig)
            break
    out += proc.stdout.read()
    assert proc.wait(timeout=60) == 128 + sig, out
    k = int(re.search(rf"stopped by {sig.name} at step (\d+)", out).group(1))
    assert ckpt(tmp_path / "run")["iter_num"] == k >= 3
    assert sorted(os.listdir(tmp_path / "run")) == ["ckpt.pt", "config.json"]   # no .tmp, no lock left
    assert json.loads((tmp_path / "run" / "config.json").read_text())["iter_num"] == k

    resumed = step_losses(out) | step_losses(run_train(
        small(corpus, tmp_path / "run", intervention="state_passing", max_iters=k + 3, init_from="resume"), capsys))
    whole = step_losses(run_train(small(corpus, tmp_path / "whole", intervention="state_passing", max_iters=k + 3),
                                  capsys))
    assert sorted(resumed) == list(range(1, k + 4))
    assert resumed == whole


def test_a_diverging_run_never_saves_its_nan_weights(corpus, tmp_path, capsys):
    # the rate jumps after step 1 (a cosine "decay" towards min_lr = 1e12): the evaluation at step 2 is
    # NaN, and the run stops with the step-1 checkpoint in place
    proc = start(small(corpus, tmp_path / "run", eval_interval=1, max_iters=6, lr_decay="cosine", min_lr=1e12))
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0 and re.search(r"the val loss is nan at step 2: stopping \(.*ckpt.pt is left", out), out
    saved = ckpt(tmp_path / "run")
    assert saved["iter_num"] == 1
    assert all(torch.isfinite(w).all() for w in saved["model"].values())


def test_a_full_disk_keeps_the_last_checkpoint(corpus, tmp_path, capsys):
    # a file-size limit of 4 KB stands for a full disk: the save fails with the path and the cause, and
    # leaves the step-2 checkpoint and its config.json as they were, with no .tmp file beside them
    run_train(small(corpus, tmp_path / "run", max_iters=2), capsys)
    before = {f: (tmp_path / "run" / f).read_bytes() for f in ("ckpt.pt", "config.json")}

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # an error from write(), not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = start(small(corpus, tmp_path / "run", max_iters=3, init_from="resume"), preexec_fn=limit)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0
    assert f"could not write {tmp_path / 'run' / 'ckpt.pt.tmp'} ([Errno 27] File too large" in out
    assert {f: (tmp_path / "run" / f).read_bytes() for f in os.listdir(tmp_path / "run")} == before


def test_a_damaged_checkpoint_is_named(corpus, tmp_path, capsys):
    run_train(small(corpus, tmp_path / "run", max_iters=2), capsys)
    path = tmp_path / "run" / "ckpt.pt"
    path.write_bytes(path.read_bytes()[:1000])              # a copy cut short
    proc = start(small(corpus, tmp_path / "run", init_from="resume"))
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0 and re.search(f"{re.escape(str(path))} cannot be read .*Restore it from a copy", out), out


def test_a_checkpoint_of_an_earlier_train_py_says_so(corpus, tmp_path, capsys):
    run_train(small(corpus, tmp_path / "run", max_iters=2), capsys)
    path = tmp_path / "run" / "ckpt.pt"
    old = ckpt(tmp_path / "run")
    old["sampler"] = old.pop("samplers")[0]                 # the layout before several processes
    torch.save(old, path)
    with pytest.raises(ValueError, match="written by an earlier train.py, which saved less: post-train it"):
        run_train(small(corpus, tmp_path / "run", init_from="resume"), capsys)


def test_another_run_is_never_replaced_without_overwrite(corpus, tmp_path, capsys):
    run_train(small(corpus, tmp_path / "run", max_iters=2), capsys)
    before = (tmp_path / "run" / "ckpt.pt").read_bytes()
    for init_from in ("scratch", tmp_path / "run"):         # a new run, or a post-training of this one
        with pytest.raises(FileExistsError, match=r"holds another run \(intervention 'zero', step 2\).*"
                                                  r"--init_from=resume.*--overwrite=True"):
            run_train(small(corpus, tmp_path / "run", intervention="tbtt", init_from=init_from), capsys)
        assert (tmp_path / "run" / "ckpt.pt").read_bytes() == before
    run_train(small(corpus, tmp_path / "run", intervention="tbtt", overwrite=True), capsys)
    assert ckpt(tmp_path / "run")["config"]["intervention"] == "tbtt"


def test_the_baseline_recipe_never_writes_into_assets():
    settings = {}
    exec((ROOT / "config" / "pretrain_baseline.py").read_text(), {}, settings)
    assert Path(settings["out_dir"]).parts[0] != "assets"


@pytest.mark.parametrize("shipped, flags", [("assets/baseline", {}),
                                            ("assets/baseline_mamba1", {"arch": "mamba1", "d_state": 16})])
def test_a_shipped_baseline_was_made_by_the_recipe_the_docs_give(shipped, flags):
    # assets/baseline (python train.py config/pretrain_baseline.py) and assets/baseline_mamba1 (the same
    # with --arch=mamba1 --d_state=16, as experiments/architectures.sh runs it) stand in for a
    # pretraining: each must hold the recipe's settings, all its steps, and weights that load
    recipe = {}
    exec((ROOT / "config" / "pretrain_baseline.py").read_text(), {}, recipe)
    made = torch.load(ROOT / shipped / "ckpt.pt", weights_only=True)
    wrong = {k: (made["config"][k], v) for k, v in (recipe | flags).items()
             if k != "out_dir" and made["config"][k] != v}
    assert not wrong, f"{shipped} was made with other settings (shipped, recipe): {wrong}"
    assert made["iter_num"] == recipe["max_iters"]
    assert set(made) == {"model", "model_config", "config", "iter_num"}     # weights only: small
    record = json.loads((ROOT / shipped / "config.json").read_text())   # what a reader opens
    assert record | made["config"] == record and record["iter_num"] == made["iter_num"]
    assert record["model_config"] == json.loads(json.dumps(made["model_config"]))   # tuples as lists
    model = LM(ModelConfig(**made["model_config"]))
    model.load_state_dict(made["model"])                                  # strict: every weight


def test_a_directory_in_use_is_refused_and_a_stale_lock_taken_over(corpus, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    lock = tmp_path / "run" / "train.lock"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "train.py"])   # a live run
    try:
        lock.write_text(f"{os.uname().nodename} {other.pid}")
        with pytest.raises(FileExistsError, match=rf"in use by another train.py \(pid {other.pid} on"):
            run_train(small(corpus, tmp_path / "run") + [f"--data_dir={tmp_path / 'data'}"], capsys)
        assert not (tmp_path / "data").exists()             # refused before any data was prepared
    finally:
        other.kill()
        other.wait()
    out = run_train(small(corpus, tmp_path / "run", max_iters=1), capsys)   # now its process is gone
    assert f"taking over {lock}" in out and ckpt(tmp_path / "run")["iter_num"] == 1


def test_an_unwritable_out_dir_fails_before_any_data(corpus, tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OSError, match=f"out_dir '{tmp_path / 'file' / 'run'}' cannot be written \\(Not a directory"):
        run_train(small(corpus, tmp_path / "file" / "run") + [f"--data_dir={tmp_path / 'data'}"], capsys)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("flags,message", [
    (["--batch_size=0"], "--batch_size=0: must be at least 1"),
    (["--batch_size=None"], "--batch_size: expected int like the default 4, got None"),
    (["--block_size=0"], "--block_size=0: must be even and at least 2"),
    (["--block_size=15"], "--block_size=15: must be even"),
    (["--max_iters=-1"], "--max_iters=-1: must be at least 1"),
    (["--eval_interval=0"], "--eval_interval=0: must be at least 1"),
    (["--log_interval=0"], "--log_interval=0: must be at least 1"),
    (["--gradient_accumulation_steps=0"], "--gradient_accumulation_steps=0: must be a multiple of the 1 processes"),
    (["--grad_clip=-1"], "--grad_clip=-1.0: must be 0 \\(no clipping\\)"),
    (["--device=cpu", "--dtype=bfloat16"], "--dtype='bfloat16': must be 'float32' on the CPU"),
    (["--d_model=30"], "expand \\* d_model = 60 must split into heads of headdim 8"),
])
def test_bad_settings_fail_before_any_data(flags, message, corpus, tmp_path, capsys):
    with pytest.raises(ValueError, match=message):
        run_train(small(corpus, tmp_path / "run") + [f"--data_dir={tmp_path / 'data'}"] + flags, capsys)
    assert not (tmp_path / "data").exists()


def test_a_final_evaluation_the_corpus_cannot_feed_fails_before_training(corpus, tmp_path, capsys):
    # 32 T = 32768 tokens: longer than any held-out document of this corpus (before, it failed after training)
    with pytest.raises(ValueError, match=r"final_eval_seqs: the val split has \d+ tokens, fewer than the 32768 of one window.*--final_eval_seqs=0"):
        run_train(small(corpus, tmp_path / "run", block_size=1024, final_eval_seqs=1), capsys)
    assert not (tmp_path / "run" / "ckpt.pt").exists()


def test_grad_clip_zero_means_no_clipping(corpus, tmp_path, capsys):
    # as in nanoGPT: 0 turns clipping off (before, it scaled every gradient to zero)
    off = step_losses(run_train(small(corpus, tmp_path / "a", grad_clip=0.0, learning_rate=1e-2), capsys))
    huge = step_losses(run_train(small(corpus, tmp_path / "b", grad_clip=1e9, learning_rate=1e-2), capsys))
    assert off == huge and off[4] < off[1]


def test_resuming_refuses_only_what_changes_the_training(corpus, tmp_path, capsys):
    run_train(small(corpus, tmp_path / "run", max_iters=2), capsys)
    with pytest.raises(ValueError, match=r"pass --learning_rate=0.003 \(not 0.01\)"):
        run_train(small(corpus, tmp_path / "run", init_from="resume", learning_rate=1e-2), capsys)
    # where and how it runs may change: only the step count stops this one
    free = dict(threads=2, eval_iters=2, log_interval=2, eval_interval=3, final_eval_seqs=1, scan_backend="ref")
    with pytest.raises(ValueError, match="at step 2 already: pass --max_iters above 2"):
        run_train(small(corpus, tmp_path / "run", init_from="resume", max_iters=2, **free), capsys)
    out = run_train(small(corpus, tmp_path / "run", init_from="resume", **free | {"final_eval_seqs": 0}), capsys)
    assert "steps 2 -> 4" in out and ckpt(tmp_path / "run")["iter_num"] == 4


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "effrem.py", "bench.py"])
def test_help_lists_every_setting_with_its_comment(script, capsys):
    argv = sys.argv
    sys.argv = [script, "--help"]
    try:
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(str(ROOT / script), run_name="__main__")
    finally:
        sys.argv = argv
    assert stop.value.code == 0
    out = capsys.readouterr().out
    source = (ROOT / script).read_text()
    assert out.startswith(source.split('"""')[1].strip().splitlines()[0])        # the docstring first
    settings = source.split("configure(globals())")[0]                             # the settings block
    documented = re.findall(r"^(\w+) = .*?  # (.+)$", settings, flags=re.M)       # `key = value  # comment`
    assert len(documented) >= 2
    for key, comment in documented:
        assert re.search(rf"^  --{key}=.*  {re.escape(comment.strip())}", out, flags=re.M), key


def test_finish_continues_keeps_or_refuses_the_run_asked_for(corpus, tmp_path, capsys):
    # --finish=True, what the experiment scripts pass: the same command, run again after a stop, continues
    # the run to the losses and weights of one never stopped; run again at the end, it keeps the run as is
    whole = step_losses(run_train(small(corpus, tmp_path / "whole", max_iters=4), capsys))
    run_train(small(corpus, tmp_path / "run", max_iters=2, finish=True), capsys)   # stands for a stopped run
    out = run_train(small(corpus, tmp_path / "run", finish=True), capsys)
    assert f"continuing {tmp_path / 'run'} from step 2" in out and step_losses(out) == {3: whole[3], 4: whole[4]}
    done, straight = ckpt(tmp_path / "run"), ckpt(tmp_path / "whole")
    assert done["iter_num"] == 4 and all(torch.equal(done["model"][k], w) for k, w in straight["model"].items())
    assert json.loads((tmp_path / "run" / "config.json").read_text())["init_from"] == "scratch"   # its origin
    before = (tmp_path / "run" / "ckpt.pt").read_bytes()
    with pytest.raises(SystemExit) as stop:
        run_train(small(corpus, tmp_path / "run", finish=True), capsys)
    assert stop.value.code == 0 and f"keeping {tmp_path / 'run'}: this run is there, finished at step 4" in \
        capsys.readouterr().out
    # a run made otherwise is refused with the fix, and left as it was
    for kw, differs in [(dict(max_iters=3), "step 4, past --max_iters=3"),
                        (dict(learning_rate=1e-2), "--learning_rate=0.003 (asked: 0.01)"),
                        (dict(init_from=tmp_path / "whole"), f"--init_from='scratch' (asked: '{tmp_path / 'whole'}')")]:
        with pytest.raises(ValueError, match=re.escape(f"other settings than these ({differs}): delete")):
            run_train(small(corpus, tmp_path / "run", finish=True, **kw), capsys)
    assert (tmp_path / "run" / "ckpt.pt").read_bytes() == before


def test_a_cosine_run_resumes_only_with_its_own_length(corpus, tmp_path, capsys):
    # the cosine schedule's rate at every step depends on max_iters: a longer resumed run is another run
    run_train(small(corpus, tmp_path / "run", max_iters=2, lr_decay="cosine"), capsys)
    with pytest.raises(ValueError, match=re.escape("pass --max_iters=2 (not 4)")):
        run_train(small(corpus, tmp_path / "run", init_from="resume", lr_decay="cosine"), capsys)


# issue 23: nothing silently wrong, no late failures

def test_a_step_too_large_for_memory_is_refused_and_leaves_no_out_dir(corpus, tmp_path):
    # 8 x 10^6 tokens per micro-batch: ~1 TB of activations. Before, the kernel killed the run after
    # 90 s (rc 137) and left out_dir with a stale lock; now it is refused with the numbers and the fix
    proc = start(small(corpus, tmp_path / "run", batch_size=8, block_size=1_000_000))
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1 and re.search(r"MemoryError: a training step needs about [\d,.]+ GiB of memory "
                                              r"and this machine has [\d,.]+ GiB available: lower --batch_size", out), out
    assert not (tmp_path / "run").exists()          # made by this run and left empty: removed


def test_a_lock_of_a_live_process_that_is_no_train_py_is_stale(corpus, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    lock = tmp_path / "run" / "train.lock"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])   # the pid, reused
    try:
        lock.write_text(f"{os.uname().nodename} {other.pid}")
        out = run_train(small(corpus, tmp_path / "run", max_iters=1), capsys)
    finally:
        other.kill()
        other.wait()
    assert f"taking over {lock}" in out and ckpt(tmp_path / "run")["iter_num"] == 1


def test_a_dangling_link_as_out_dir_is_named(corpus, tmp_path, capsys):
    (tmp_path / "run").symlink_to(tmp_path / "gone")
    with pytest.raises(FileExistsError, match=r"is a link to .*gone, which does not exist"):
        run_train(small(corpus, tmp_path / "run") + [f"--data_dir={tmp_path / 'data'}"], capsys)
    assert not (tmp_path / "data").exists()


def test_post_training_checks_the_checkpoint(corpus, tmp_path, capsys):
    # a damaged ckpt.pt: the path and the fix, never torch's advice to load it with weights_only=False
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ckpt.pt").write_bytes(os.urandom(4096))
    (tmp_path / "bad" / "config.json").write_text(json.dumps(dict(intervention="zero", block_size=16, corpus="c",
                                                                  tokenizer="bytes", data_dir="d")))
    with pytest.raises(ValueError, match=r"bad/ckpt.pt cannot be read \(\w+Error\): it is damaged.*Restore it") as e:
        run_train(small(corpus, tmp_path / "post", init_from=tmp_path / "bad"), capsys)
    assert "weights_only" not in str(e.value)
    # a GLA run post-trained with the default arch: config.json records the model's settings
    run_train(small(corpus, tmp_path / "gla", arch="gla", num_heads=2, max_iters=1), capsys)
    out = run_train(small(corpus, tmp_path / "post", init_from=tmp_path / "gla", max_iters=1, d_model=64), capsys)
    assert "its arch='gla', d_model=32, num_heads=2 are used (not arch='mamba2', d_model=64, num_heads=4)" in out
    record = json.loads((tmp_path / "post" / "config.json").read_text())
    assert (record["arch"], record["d_model"], record["num_heads"]) == ("gla", 32, 2)
    # a checkpoint trained with another tokenizer is refused before any data
    for f in ("ckpt.pt", "config.json"):
        path = tmp_path / "gla" / f
        if f == "ckpt.pt":
            saved = ckpt(tmp_path / "gla")
            saved["config"]["tokenizer"] = "gpt2"
            torch.save(saved, path)
        else:
            path.write_text(json.dumps(json.loads(path.read_text()) | {"tokenizer": "gpt2"}))
    with pytest.raises(ValueError, match=r"trained with the tokenizer 'gpt2', and this run tokenizes with "
                                         r"'bytes'.*Pass --tokenizer=gpt2"):
        run_train(small(corpus, tmp_path / "post2", init_from=tmp_path / "gla") + [f"--data_dir={tmp_path / 'd'}"],
                  capsys)
    assert not (tmp_path / "d").exists()


def test_a_cuda_bfloat16_run_resumes_on_the_cpu(corpus, tmp_path, capsys):
    # before, resuming said "pass --dtype='bfloat16'", which the CPU refuses: a dead end
    run_train(small(corpus, tmp_path / "run", max_iters=2), capsys)
    saved = ckpt(tmp_path / "run")
    saved["config"] |= {"device": "cuda", "dtype": "bfloat16"}          # as a CUDA run saves it
    torch.save(saved, tmp_path / "run" / "ckpt.pt")
    out = run_train(small(corpus, tmp_path / "run", init_from="resume", max_iters=3), capsys)
    assert "steps 2 -> 3" in out and ckpt(tmp_path / "run")["iter_num"] == 3

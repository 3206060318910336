"""experiments/plot.py reads evaluate.py's results.json; data.py and plot.py answer --help; an experiment
script stopped by Ctrl-C and run again gives the table of one never stopped."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch


ROOT = Path(__file__).resolve().parent.parent


def result(label, excess_last, vs_last, L=2048, T=16):
    """A results.json entry of evaluate.py's form, with buckets [T/2, T) ... [64T, 128T)."""
    names = ["[T/2, T)", "[T, 2T)", "[16T, 32T)", "[64T, 128T)"]
    edges = [(8, 16), (16, 32), (256, 512), (1024, 2048)]
    buckets = [dict(name=n, start=a, end=b, full=1.3, excess=0.001 * i, se_excess=0.0005, rise=0.002 * i,
                    se_rise=0.001)
               for i, (n, (a, b)) in enumerate(zip(names, edges))]
    buckets[-1]["excess"] = excess_last
    vs = [dict(name=n, diff=0.0, se_diff=0.0) for n in names]
    vs[-1]["diff"], vs[-1]["se_diff"] = vs_last, 0.002
    return dict(label=label, L=L, T_train=T, buckets=buckets, vs_reference=dict(buckets=vs))


@pytest.mark.parametrize("script", ["experiments/plot.py", "data.py"])
def test_help(script):
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "python " in out.stdout


def test_the_interventions_table_reads_the_last_bucket(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"checkpoints": [result("control", 0.0341, 0.0), result("state passing", 0.0046, 0.0335)]}))
    out = subprocess.run([sys.executable, "experiments/plot.py", "interventions", str(path), str(tmp_path / "f.png")],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("| state passing"))
    assert "| +0.0060 ± 0.0010 | +0.0046 ± 0.0005 | +0.0335 ± 0.0020 |" in row   # [64T, 128T): the last whole one
    assert (tmp_path / "f.png").stat().st_size > 0


@pytest.fixture
def corpus(tmp_path):
    """Real text in 42 documents, 4 of them held out: enough for a standard error clustered by document."""
    import email, http, importlib, logging
    d = tmp_path / "corpus"
    d.mkdir()
    for package in (email, json, logging, http, importlib):
        for f in Path(package.__file__).parent.glob("*.py"):
            (d / f"{package.__name__}-{f.stem}.txt").write_bytes(f.read_bytes())
    return d


def test_a_stopped_experiment_reruns_to_the_table_of_one_never_stopped(corpus, tmp_path, capsys):
    # interventions.sh on a tiny baseline: stopped by Ctrl-C in its second post-training, then run again
    # with the same command, it keeps the finished run, continues the stopped one, trains the rest, and
    # prints the table (and writes the results and weights) of a run never stopped
    from test_runs import ckpt
    from test_train import run_train, tiny
    run_train(tiny(corpus, tmp_path / "base", max_iters=4, batch_size=4, eval_iters=1), capsys)
    flags = [f"--corpus={corpus}", f"--data_dir={corpus.parent / 'data'}", "--batch_size=4", "--max_iters=6",
             "--eval_iters=1", "--log_interval=1", "--threads=1", "--final_eval_seqs=0"]
    env = os.environ | {"EVAL_FLAGS": "--n_seqs=4 --seq_len=512 --threads=1", "OMP_NUM_THREADS": "1",
                        "PYTHONUNBUFFERED": "1"}

    def script(out):   # in its own process group, as a terminal runs a command
        return subprocess.Popen(["bash", "experiments/interventions.sh", str(tmp_path / "base"), str(out), *flags],
                                cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def table(out):
        return [line for line in out.splitlines() if line.startswith("|")]

    whole = script(tmp_path / "whole").communicate(timeout=600)[0]
    stopped = tmp_path / "stopped"
    proc, out = script(stopped), ""
    for line in proc.stdout:
        out += line
        if "intervention 'random_noise'" in out and line.startswith("step 3: loss"):
            os.killpg(proc.pid, signal.SIGINT)          # Ctrl-C: the whole foreground group gets it
            break
    out += proc.stdout.read()
    assert proc.wait(timeout=60) != 0 and "continue with this same command" in out, out
    k = ckpt(stopped / "random_noise")["iter_num"]
    assert 3 <= k < 6 and not (stopped / "fitted_noise").exists()
    rerun = script(stopped).communicate(timeout=600)[0]
    assert f"keeping {stopped / 'control'}" in rerun and f"continuing {stopped / 'random_noise'} from step {k}" in rerun
    assert len(table(whole)) == 8 and table(rerun) == table(whole), rerun
    results = [(d / "eval" / "results.json").read_text().replace(str(d), "OUT") for d in (tmp_path / "whole", stopped)]
    assert json.loads(results[0])["checkpoints"] == json.loads(results[1])["checkpoints"]
    for run in ("control", "random_noise", "fitted_noise", "state_passing", "tbtt"):
        a, b = ckpt(tmp_path / "whole" / run), ckpt(stopped / run)
        assert a["iter_num"] == b["iter_num"] == 6
        assert all(torch.equal(w, b["model"][name]) for name, w in a["model"].items()), run

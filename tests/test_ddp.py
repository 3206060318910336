"""train.py under torchrun: two gloo processes on the CPU (DDP), against one process with gradient
accumulation. A step trains on the same batch_size * gradient_accumulation_steps sequences however the
processes and micro-batches divide them, so the losses must agree; a resumed two-process run must give
the losses of an uninterrupted one; fitted noise's statistics must be those of all processes' rows."""
import os
import re
import signal
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from interventions import FittedNoise
from test_train import ROOT, corpus, run_train, step_losses, tiny  # noqa: F401  (corpus: a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def small(corpus, out_dir, **kw):
    return tiny(corpus, out_dir, **{"batch_size": 4, "gradient_accumulation_steps": 2, "eval_iters": 1,
                                    "max_iters": 4, "eval_interval": 100} | kw)


def torchrun(args):
    """train.py on two CPU processes; what rank 0 printed."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "train.py", *args], cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def weights(out_dir):
    return torch.load(os.path.join(out_dir, "ckpt.pt"), weights_only=True)["model"]


def assert_same_weights(a, b):
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-7, msg=k)


@pytest.fixture(scope="module")
def two_tbtt(corpus, tmp_path_factory):
    """An uninterrupted 4-step TBTT run on two processes: the streams are the rows, split between them."""
    out_dir = tmp_path_factory.mktemp("two_tbtt")
    return step_losses(torchrun(small(corpus, out_dir, intervention="tbtt"))), out_dir


@pytest.mark.parametrize("intervention", ["zero", "tbtt"])
def test_two_processes_train_as_one_with_accumulation(intervention, two_tbtt, corpus, tmp_path, capsys):
    # 2 processes x 1 micro-batch of 4 against 1 process x 2 micro-batches of 4: the same 8 sequences per
    # step; with tbtt also the same passed state per row, each row staying with its process
    if intervention == "tbtt":
        two, two_dir = two_tbtt
    else:
        two_dir = tmp_path / "two"
        two = step_losses(torchrun(small(corpus, two_dir, intervention=intervention)))
    out = run_train(small(corpus, tmp_path / "one", intervention=intervention), capsys)
    assert "8 x 16 = 128 tokens per step (1 process(es) x 2 micro-batch(es) of 4)" in out
    assert sorted(two) == [1, 2, 3, 4] and step_losses(out) == two
    assert_same_weights(weights(tmp_path / "one"), weights(two_dir))


def test_a_two_process_run_resumes_exactly(two_tbtt, corpus, tmp_path, capsys):
    whole, whole_dir = two_tbtt
    first = step_losses(torchrun(small(corpus, tmp_path / "run", intervention="tbtt", max_iters=2)))
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert len(ckpt["samplers"]) == 2                          # both processes' passed states
    rest = step_losses(torchrun(small(corpus, tmp_path / "run", intervention="tbtt", init_from="resume")))
    assert first | rest == whole
    assert_same_weights(weights(tmp_path / "run"), weights(whole_dir))
    # on one process (the same global batch) the two processes' passed states are re-split by row; TBTT
    # draws nothing at random, so even this continues exactly
    (tmp_path / "one").mkdir()
    torch.save(ckpt, tmp_path / "one" / "ckpt.pt")            # the step-2 checkpoint of two processes
    out = run_train(small(corpus, tmp_path / "one", intervention="tbtt", init_from="resume"), capsys)
    assert re.search(r"resuming a run of 2 processes on 1: .* passed states are kept", out)
    assert step_losses(out) == {k: v for k, v in whole.items() if k > 2}


def _fitted_noise_process(rank, init_file, batches, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    sampler = FittedNoise(template=None, generator=None, beta=0.1)
    for batch in batches:                                      # two steps: the moving averages too
        sampler.observe([{"S": S.chunk(2)[rank]} for S in batch])   # this process's half of the rows
    torch.save({"mu": sampler.mu, "var": sampler.var}, os.path.join(out_dir, f"{rank}.pt"))
    dist.destroy_process_group()


def test_fitted_noise_fits_every_process_s_rows(tmp_path):
    gen = torch.Generator().manual_seed(0)
    # per step, per layer final states (B = 8, H = 3, K = 4, V = 5), with a different mean and scale per head
    batches = [[torch.randn(8, 3, 4, 5, generator=gen) * torch.tensor([1.0, 2.0, 0.5]).view(3, 1, 1)
                + torch.tensor([0.0, 1.0, -3.0]).view(3, 1, 1) for _ in range(2)] for _ in range(2)]
    mp.spawn(_fitted_noise_process, args=(str(tmp_path / "init"), batches, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]
    single = FittedNoise(template=None, generator=None, beta=0.1)   # one process seeing all 8 rows (eqs. 5-6)
    for batch in batches:
        single.observe([{"S": S} for S in batch])
    for key in ("mu", "var"):
        for layer in range(2):
            assert torch.equal(ranks[0][key][layer], ranks[1][key][layer])   # the same Gaussian everywhere
            torch.testing.assert_close(ranks[0][key][layer], getattr(single, key)[layer], rtol=1e-5, atol=1e-6)


def _rank_of(pid):
    """The RANK torchrun gave a process, or None."""
    try:
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return None
    return next((int(e[5:]) for e in env if e.startswith(b"RANK=")), None)


def test_a_stopped_process_ends_the_job_in_bounded_time(corpus, tmp_path):
    # issue 23, case 8: rank 1 stopped (SIGSTOP) mid-run; rank 0 waited at its next all-reduce with no
    # timeout of ours. Now it gives up after --ddp_timeout seconds, says why, and torchrun ends the job
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = small(corpus, tmp_path / "run", max_iters=100_000, log_interval=1, ddp_timeout=5)
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "train.py", *args], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    stopped = None
    try:
        for line in proc.stdout:
            if line.startswith("step 2:"):
                children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
                stopped = next(int(p) for p in children.split() if _rank_of(p) == 1)
                os.kill(stopped, signal.SIGSTOP)
                break
        out = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        if stopped is not None:
            try:
                os.kill(stopped, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert stopped is not None and proc.returncode != 0
    assert "rank 0: no word from another process for --ddp_timeout=5 seconds" in out, out[-3000:]

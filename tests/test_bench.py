"""bench.py's tables, run as a user runs them, at the demo model's shapes (--size=toy): the CPU
tables (the path `python bench.py` takes without a GPU), and the GPU tables on the CPU through
Triton's interpreter, so that the one command meant for the first lent GPU is known to run and to
print its tables whole."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tables(args, env):
    """Run bench.py; return its markdown tables as {first header cell: (header, rows)}."""
    done = subprocess.run([sys.executable, "bench.py", "--size=toy", "--Ts=(32,64)", "--repeats=1", *args],
                          cwd=ROOT, env=os.environ | env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found, lines = {}, done.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("| "):
                    break
                rows.append([c.strip() for c in row.strip("|").split("|")])
            assert all(len(r) == len(header) for r in rows), f"ragged table under {header}"
            found[header[0] + " " + header[-1]] = header, rows
    return found


def number(cell):
    return float(cell.replace(",", "").rstrip("x"))


def test_cpu_tables():
    found = tables(["--table=cpu"], {})
    _, threads = found["cores threads"]
    assert [int(r[2]) for r in threads][1] <= max(1, int(threads[0][0]) - 1)   # a job beside: a core left
    header, rows = found["shape x T0"]
    assert [(r[0], int(r[1])) for r in rows] == [(s, T) for s in ("Mamba-2 toy", "GLA toy") for T in (32, 64)]
    for r in rows:   # us per token = ms / T (ms printed to 0.1), and 'x T0' that over the first T's
        T, ms, per = int(r[1]), number(r[6]), number(r[7])
        assert abs(per - ms * 1e3 / T) <= 0.05e3 / T + 0.1
        first = next(f for f in rows if f[0] == r[0])
        assert abs(number(r[8]) - per / number(first[7])) <= 0.01 + 0.1 * number(r[8])
    header, rows = next(v for k, v in found.items() if k.startswith("model"))
    assert rows[0][0] == "toy (the demo's)" and number(rows[0][4]) > 0
    if "max logit diff" in header:   # transformers installed: the peer computes the same model
        assert number(rows[0][-1]) < 1e-4
    _, rows = found["arch chunked / loop"]
    assert [r[0] for r in rows] == ["mamba1", "mamba2", "gla", "rwkv6"]
    for r in rows:
        assert abs(number(r[6]) - number(r[5]) / number(r[4])) <= 0.01 + 0.05 * number(r[6])


def test_gpu_tables_on_the_cpu():
    found = tables(["--table=gpu", "--device=cpu", "--dtype=float32"], {"TRITON_INTERPRET": "1"})
    header, rows = found["shape f+b roof"]
    assert {(r[0], r[2], r[7]) for r in rows} == {(s, T, "scan") for s in ("Mamba-2 toy", "GLA toy")
                                                 for T in ("32", "64")}
    assert all(number(r[8]) > 0 and number(r[9]) > 0 for r in rows)
    _, steps = found["model tokens/s"]
    assert steps[0][0] == "toy (the demo's)" and number(steps[0][5]) > 0

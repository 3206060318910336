"""experiments/plot.py reads evaluate.py's results.json; data.py and plot.py answer --help."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

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

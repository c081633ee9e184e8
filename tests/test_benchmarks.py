"""The CPU benchmarks' smoke runs: each script runs end to end in seconds (tiny sizes, no JSON).

A speed figure is only as good as the script that prints it; these catch a benchmark that no
longer runs (bench_unet.py's CPU path once called bench_rl's matmul probe without its device).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(("script", "expected"), [
    ("bench_unet.py", "bound = 256^3 fp32 matmul, 2 threads"),
    ("bench_rl.py", "iql_p8_bound_share"),
])
def test_benchmark_smoke_run(script, expected, tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke-test", "--threads", "2"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout
    assert not list(tmp_path.iterdir())  # a smoke run writes nothing

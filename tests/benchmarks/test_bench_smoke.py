"""The benchmark scripts still run (tiny sizes; nothing about speed is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )


@pytest.mark.slow
def test_quick_benchmark_run_prints_every_table():
    result = _run("run_all.py", "--quick", "--repeats", "1", "--threads", "1")
    assert result.returncode == 0, result.stderr[-4000:]
    for title in ("retraction", "exponential map", "geodesic distance", "where the time goes",
                  "optimizer step", "head forward + backward", "training step"):
        assert title in result.stdout
    assert "other processes' CPU" in result.stdout


def test_cuda_benchmark_exits_cleanly_without_a_gpu():
    result = _run("cuda_bench.py", "--quick")
    assert result.returncode == 0, result.stderr[-4000:]
    if "no CUDA device" not in result.stdout:
        assert "retraction" in result.stdout

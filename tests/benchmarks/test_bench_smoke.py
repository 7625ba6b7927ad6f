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
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_quick_benchmark_run_prints_every_table():
    result = _run("run_all.py", "--quick", "--repeats", "1", "--threads", "1")
    assert result.returncode == 0, result.stderr[-4000:]
    for title in (
        "retraction",
        "exponential map",
        "geodesic distance",
        "where the time goes",
        "optimizer step",
        "head forward + backward",
        "training step",
    ):
        assert title in result.stdout
    assert "other processes' CPU" in result.stdout


def test_cuda_benchmark_exits_cleanly_without_a_gpu():
    result = _run("cuda_bench.py", "--quick")
    assert result.returncode == 0, result.stderr[-4000:]
    if "no CUDA device" not in result.stdout:
        assert "retraction" in result.stdout


def test_cuda_profile_exits_cleanly_without_a_gpu_and_dry_runs_on_cpu():
    result = _run("cuda_profile.py", "--quick")
    assert result.returncode == 0, result.stderr[-4000:]
    result = _run("cuda_profile.py", "--quick", "--device", "cpu", "--repeats", "2")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "### primitives" in result.stdout and "cholesky_ex" in result.stdout
    for case in ("inplace.retract_", "expmap", "distances.geodesic", "RiemannianSGD"):
        assert f"profile of 10 calls: {case}" in result.stdout


def test_gpu_smoke_dry_runs_on_cpu():
    result = _run("gpu_smoke.py", "--device", "cpu", "--skip-backbones")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "all checks passed" in result.stdout and "RiemannianSGD paper" in result.stdout

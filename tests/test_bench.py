"""The bench scripts still run against the package: each parses its arguments after all its imports."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = sorted((Path(__file__).resolve().parents[1] / "bench").glob("*.py"))


def test_there_are_bench_scripts():
    assert len(BENCH) >= 5


@pytest.mark.parametrize("script", BENCH, ids=[p.name for p in BENCH])
def test_bench_script_imports_and_shows_its_help(script):
    run = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage" in run.stdout.lower()


def test_cuda_selfcheck_skips_without_cuda_and_runs_its_steps_on_the_cpu():
    """bench/cuda_selfcheck.py is ready for a GPU: without one it says it skipped, and its dry run goes
    through the same steps on the CPU (one model, a small photo, two training steps)."""
    import torch

    script = BENCH[0].parent / "cuda_selfcheck.py"
    if not torch.cuda.is_available():
        run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and "skipped: torch sees no CUDA GPU" in run.stdout
    run = subprocess.run([sys.executable, str(script), "--cpu-dry-run", "--models", "msrnet"],
                         capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "4 of 4 checks passed on CPU dry run" in run.stdout

"""benchmarks/gpu.py, the one script a lent GPU runs, must not rot between lent cards: its
dry run takes every path (ceilings, KDE, scoring, k-center, the streamed round) at toy sizes
on the CPU and prints every section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_script_runs_every_path_in_a_dry_run():
    p = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--dry-run", "--repeats", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    for section in ("## Ceilings", "## Exact Gaussian KDE", "## Ensemble scoring", "## k-center", "## One round"):
        assert section in out, out
    assert "of the exp ceiling" in out and "total " in out and "(dry run)" in out

"""The LoopView targets of issue [2/5], measured in the real browser: runs the JupyterLab
test of the curation loop (tests/test_browser_loop.py, headless Chromium, keyboard only)
and prints its timing lines: key press -> card update (idle kernel, during a retrain, on a
large lasso batch), r -> next batch (the retrain), box release -> selection back from
Python, with the load average. The marimo twin's test prints its own
(tests/test_browser_marimo_loop.py). Run: ``python benchmarks/bench_browser_loop.py``.

The key-press targets are: median < 50 ms, p95 < 150 ms; retrain < 10 s; box release to
the selection in Python < 300 ms. The test measures in the page (MutationObserver
timestamps against the keydown's), so the numbers include the kernel's store write.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} cores)")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:randomly", "-p", "no:cacheprovider", "tests/test_browser_loop.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    lines = proc.stdout.splitlines()
    start = next((k for k, line in enumerate(lines) if line.startswith("load average")), None)
    if proc.returncode != 0 or start is None:
        print(proc.stdout[-4000:], proc.stderr[-2000:])
        return proc.returncode or 1
    for line in lines[start:]:
        if line.strip() in (".", "") or line.startswith(("1 passed", "=")):
            continue
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

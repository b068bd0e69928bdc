"""Shared pieces of the real-browser tests (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROME_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what, step=0.2):
    end = time.time() + timeout
    while time.time() < end:
        val = pred()
        if val:
            return val
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_selection(sel_file: Path, seen: int, k: int, timeout: float = 20) -> dict:
    """The selection record the notebook wrote after the ``seen``-th one, once it is non-empty.

    The map sends each drag's selection as one message on mouse-up; wait for the next
    record with ids (a clear, by double-click or Escape, writes an empty one).
    """

    def ready():
        if not sel_file.exists():
            return None
        d = json.loads(sel_file.read_text())
        return d if d["n_selections"] > seen and d["ids"] else None

    return wait_for(ready, timeout, f"selection {k + 1} in Python")

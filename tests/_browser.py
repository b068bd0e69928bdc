"""Shared pieces of the real-browser tests (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
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


@contextlib.contextmanager
def jupyterlab(tmp: Path, notebook: Path, env_extra: dict[str, str]):
    """An isolated JupyterLab on 127.0.0.1 with a token, serving a copy of ``notebook``;
    yields (base_url, token). Its kernels inherit ``env_extra``; the run folder's own
    SQLite store is used (``GAPSCOPE_STORE_URL`` is dropped)."""
    nbdir = tmp / "nb"
    nbdir.mkdir()
    shutil.copy(notebook, nbdir)
    settings = tmp / "app-settings"
    settings.mkdir()
    (settings / "overrides.json").write_text(
        json.dumps(
            {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}
        )
    )
    port, token = free_port(), "gapscope-test-token"
    env = dict(
        os.environ,
        **env_extra,
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        JUPYTER_CONFIG_DIR=str(tmp / "cfg"),
        JUPYTER_RUNTIME_DIR=str(tmp / "rt"),
        IPYTHONDIR=str(tmp / "ipy"),
    )
    env.pop("GAPSCOPE_STORE_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={nbdir}",
        "--allow-root",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={tmp / 'user-settings'}",
        f"--LabApp.workspaces_dir={tmp / 'ws'}",
        f"--LabServerApp.app_settings_dir={settings}",
    ]
    base = f"http://127.0.0.1:{port}"
    with serve(cmd, env=env, cwd=None, log_path=tmp / "lab.log", health=f"{base}/api/status?token={token}"):
        yield base, token


@contextlib.contextmanager
def serve(cmd: list[str], *, env: dict, cwd: Path | None, log_path: Path, health: str, timeout: float = 90):
    """Run a server (our own process, its output appended to ``log_path``) until ``health``
    answers; stop only that process on exit. Yields the ``Popen``."""
    log = open(log_path, "a")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)

    def up():
        assert proc.poll() is None, log_path.read_text()[-3000:]
        try:
            urllib.request.urlopen(health, timeout=2)
            return True
        except OSError:
            return False

    try:
        wait_for(up, timeout, f"the server {cmd[2:4]}")
        yield proc
    finally:
        proc.terminate()  # our own process only
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@contextlib.contextmanager
def marimo_server(notebook: Path, args: list[str], *, cwd: Path, log_path: Path):
    """``marimo run`` of ``notebook`` on 127.0.0.1 with CLI ``args`` (after ``--``), using the
    run folder's own SQLite store; yields its URL."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("GAPSCOPE_STORE_URL", None)
    env.pop("GAPSCOPE_RUN_DIR", None)
    cmd = [
        sys.executable, "-m", "marimo", "-y", "run", str(notebook), "--headless",
        "--host", "127.0.0.1", "--port", str(port), "--no-token", "--no-sandbox", "--", *args,
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    with serve(cmd, env=env, cwd=cwd, log_path=log_path, health=f"{url}health", timeout=60):
        yield url


def store_events(run_dir: Path, project: str):
    """Every event in the run folder's label store for ``project``."""
    from gapscope.helpers.store import LabelStore

    with LabelStore(run_dir=run_dir, project=project) as s:
        return s.events()


def loop_truth(run_dir: Path):
    """({pool id: true label}, dataset) of the loop in ``run_dir`` (the test knows them;
    the loop and the page do not)."""
    from gapscope.helpers.data import load_dataset

    cfg = json.loads((run_dir / "state.json").read_text())["config"]
    ds = load_dataset(cfg["data"], random_state=cfg["seed"], **cfg["data_options"])
    truth = ds.oracle.true_labels(ds.pool.ids).tolist()
    return dict(zip(ds.pool.ids.tolist(), truth, strict=True)), ds


def write_notebook(path: Path, *sources: str) -> Path:
    """A notebook at ``path`` with one code cell per source (Python 3 kernel, no outputs)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, path)
    return path

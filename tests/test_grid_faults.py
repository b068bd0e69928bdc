"""The grid runner under hostile conditions: dead workers and kernels, dict-valued parameters,
``gapscope lab`` options and addresses, and what a local Ray listens on (issue 14)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from gapscope.helpers import experiments as E

FAULT_SOURCE = """
import json, os, signal, time
from pathlib import Path
armed = bool(flag) and Path(flag).exists()
if armed and mode == "hang":
    # tell the test which process runs papermill (this kernel's parent), then wait to be killed
    Path(run_dir, "worker.pid").write_text(str(os.getppid()))
    time.sleep(120)
if armed and mode == "kill-kernel":
    print("simulating the out-of-memory killer: SIGKILL to this kernel", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(30)
if armed and mode == "oom":
    import resource
    vm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize")][0] * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + 256 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    hog = bytearray(8 * 2**30)
Path(run_dir, "results.json").write_text(
    json.dumps({"rounds": [{"round": 0, "labels": 10, "accuracy": 0.5 + 0.01 * seed}]}))
"""


@pytest.fixture
def faulty(tmp_path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'mode = "ok"\nseed = 0\nflag = ""\ndataset = "toy"\nstrategy = "s"\nrun_dir = ""'
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(FAULT_SOURCE)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "faulty.ipynb"
    nbformat.write(nb, path)
    return path


def _status(out: Path, rid: str) -> dict:
    return json.loads((out / "runs" / rid / "status.json").read_text())


# ------------------------------------------------------------------ item 7: dict values
def test_expand_grid_keeps_a_dict_value_whole():
    opts = {"n_pool": 300, "n_test": 200}
    assert E.expand_grid([{"dataset_options": opts}]) == [{"dataset_options": opts}]
    assert E.expand_grid({"data_options": opts, "seed": [0, 1]}) == [
        {"data_options": opts, "seed": 0},
        {"data_options": opts, "seed": 1},
    ]
    # a list of dicts is a choice between dicts; tuples are choices too
    assert E.expand_grid({"o": [{"a": 1}, {"a": 2}], "s": (3, 4)}) == [
        {"o": {"a": 1}, "s": 3},
        {"o": {"a": 1}, "s": 4},
        {"o": {"a": 2}, "s": 3},
        {"o": {"a": 2}, "s": 4},
    ]
    # the grid's run ids stay distinct and the dict survives into params.json intact
    assert len({E.run_id_for(c) for c in E.expand_grid({"o": [{"a": 1}, {"a": 2}]})}) == 2


# ------------------------------------------------------------------ item 2: dead workers
def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


@pytest.mark.slow
def test_a_sigkilled_worker_fails_only_its_run_and_resume_reruns_only_it(faulty, tmp_path):
    out = tmp_path / "grid"
    flag = tmp_path / "armed"
    flag.write_text("on")
    grid = [{"mode": ["ok"], "seed": [0]}, {"mode": ["hang"], "flag": [str(flag)], "seed": [1]}]
    hang_id = E.run_id_for(E.expand_grid(grid)[1])
    pid_file = out / "runs" / hang_id / "worker.pid"
    killed: list[int] = []
    kernels: list[int | None] = []

    def killer():  # the hostile tester: SIGKILL the papermill worker of the hanging run
        deadline = time.time() + 120
        while time.time() < deadline and not pid_file.exists():
            time.sleep(0.05)
        if pid_file.exists():
            time.sleep(0.2)
            kernel_pid = pid_file.parent / ".kernel.pid"  # noted by the worker for clean-up
            kernels.append(int(kernel_pid.read_text()) if kernel_pid.exists() else None)
            pid = int(pid_file.read_text())
            os.kill(pid, 9)
            killed.append(pid)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    t0 = time.time()
    statuses = E.run_grid(faulty, grid, out_dir=out, workers=2, progress=False)
    t.join(5)
    assert killed, "the hanging run never reported its worker"
    assert time.time() - t0 < 100, "the grid waited for the dead run's kernel"
    ok, dead = statuses
    assert ok["status"] == "ok" and _status(out, ok["run_id"])["status"] == "ok"
    assert dead["status"] == "failed"
    saved = _status(out, dead["run_id"])
    assert saved["status"] == "failed"
    assert "worker process died (signal 9" in saved["error"], saved["error"]
    assert saved["wall_time"] > 0
    # the orphaned kernel does not outlive its worker
    assert kernels and kernels[0] is not None, "the worker did not note its kernel's pid"
    deadline = time.time() + 15
    while time.time() < deadline and _alive(kernels[0]):
        time.sleep(0.1)
    assert not _alive(kernels[0]), "the dead worker's kernel is still running"
    # a resume reruns only the dead run
    flag.unlink()
    mtime = (out / "runs" / ok["run_id"] / "executed.ipynb").stat().st_mtime_ns
    again = E.run_grid(faulty, grid, out_dir=out, workers=2, progress=False)
    assert [s["status"] for s in again] == ["skipped", "ok"]
    assert (out / "runs" / ok["run_id"] / "executed.ipynb").stat().st_mtime_ns == mtime
    assert len(E.collect(out, strict=True)) == 2


@pytest.mark.slow
def test_a_killed_or_out_of_memory_kernel_fails_only_its_run(faulty, tmp_path):
    out = tmp_path / "grid"
    flag = tmp_path / "armed"
    flag.write_text("on")
    grid = [
        {"mode": ["ok"], "seed": [0]},
        {"mode": ["kill-kernel"], "flag": [str(flag)], "seed": [1]},
        {"mode": ["oom"], "flag": [str(flag)], "seed": [2]},
    ]
    statuses = E.run_grid(faulty, grid, out_dir=out, workers=2, progress=False)
    ok, killed, oom = statuses
    assert ok["status"] == "ok"
    assert killed["status"] == "failed" and oom["status"] == "failed"
    err = _status(out, killed["run_id"])["error"]
    assert "kernel died" in err and "signal 9" in err and "SIGKILL" in err, err
    assert "MemoryError" in _status(out, oom["run_id"])["error"]
    flag.unlink()
    again = E.run_grid(faulty, grid, out_dir=out, workers=2, progress=False)
    assert [s["status"] for s in again] == ["skipped", "ok", "ok"]


def test_a_worker_that_dies_is_recorded_even_with_one_worker(faulty, tmp_path, monkeypatch):
    """workers=1 runs each combination in a subprocess too: a worker that dies before it writes
    a status (here a sitecustomize SIGKILLs every grid worker at start-up) is a failed run with
    its cause, and the driver goes on to the next."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if b'_run_one' in open('/proc/self/cmdline', 'rb').read().split(b'\\0'):\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "grid"
    statuses = E.run_grid(faulty, {"mode": ["ok"], "seed": [0, 1]}, out_dir=out, progress=False)
    assert [s["status"] for s in statuses] == ["failed", "failed"]
    for s in statuses:
        err = _status(out, s["run_id"])["error"]
        assert "worker process died (signal 9" in err, err


# ------------------------------------------------------------------ item 10: gapscope lab
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    import psutil

    addrs = []
    for c in psutil.net_connections(kind="inet"):
        if c.pid in pids and c.status == psutil.CONN_LISTEN:
            addrs.append((c.laddr.ip, c.laddr.port))
    return addrs


def _tree(pid: int) -> set[int]:
    import psutil

    try:
        p = psutil.Process(pid)
        return {pid} | {c.pid for c in p.children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def test_lab_command_line(monkeypatch):
    from gapscope.helpers import cli

    calls = []
    monkeypatch.setattr(cli, "_run_forwarding_signals", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    assert cli.main(["lab", "--no-browser", "--port", "9999"]) == 0
    cmd = calls[-1]
    assert cmd[1:3] == ["-m", "jupyterlab"]
    assert "--no-browser" in cmd and cmd[cmd.index("--port") + 1] == "9999"
    assert "--allow-root" in cmd and "--ServerApp.ip=127.0.0.1" in cmd
    cli.main(["lab", "--", "--no-browser", "--ip=0.0.0.0"])  # '--' is a separator, not a path
    cmd = calls[-1]
    assert "--" not in cmd and "--no-browser" in cmd
    assert "--ip=0.0.0.0" in cmd and not any(a.startswith("--ServerApp.ip") for a in cmd)
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    cli.main(["lab"])
    assert "--allow-root" not in calls[-1]
    with pytest.raises(SystemExit):  # other commands still refuse unknown options
        cli.main(["report", "somewhere", "--bogus"])


@pytest.mark.slow
def test_gapscope_lab_starts_and_answers_on_localhost_only(tmp_path):
    pytest.importorskip("psutil")
    port = _free_port()
    token = "gapscope-test-token"
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
    )
    cmd = [
        sys.executable,
        "-m",
        "gapscope.helpers.cli",
        "lab",
        "--no-browser",
        "--port",
        str(port),
        f"--IdentityProvider.token={token}",
    ]
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 150
        answer = None
        while time.time() < deadline and proc.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/api/status?token={token}"
                with urllib.request.urlopen(url, timeout=5) as r:
                    answer = (r.status, json.loads(r.read()))
                    break
            except OSError:
                time.sleep(0.5)
        assert answer is not None, (
            f"lab never answered (exit {proc.poll()}):\n{(tmp_path / 'lab.log').read_text()[-3000:]}"
        )
        assert answer[0] == 200 and "started" in answer[1]
        tree = _tree(proc.pid)
        addrs = _listening(tree)
        assert ("127.0.0.1", port) in addrs, addrs
        assert not [a for a in addrs if a[0] in ("0.0.0.0", "::")], addrs
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
    # terminating `gapscope lab` stops JupyterLab too (it used to be left running, orphaned)
    import psutil

    deadline = time.time() + 30
    while time.time() < deadline and any(psutil.pid_exists(p) for p in tree - {proc.pid}):
        time.sleep(0.2)
    alive = [p for p in tree - {proc.pid} if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not alive, alive


# ------------------------------------------------------------------ item 11: local Ray
_RAY_PROBE = r"""
import json, sys, time
from gapscope.helpers import experiments as E
import psutil, ray
E._init_local_ray(num_cpus=1)
try:
    @ray.remote(num_cpus=1)
    def f():
        return 1
    assert ray.get(f.remote(), timeout=240) == 1
    time.sleep(3)  # let the node's agents finish binding
    me = psutil.Process()
    mine = {me.pid} | {p.pid for p in me.children(recursive=True)}
    # ray's daemons may be re-parented: take every process that belongs to this session
    session = ray._private.worker._global_node.get_session_dir_path()
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(session in a for a in (p.info["cmdline"] or [])):
                mine.add(p.pid)
        except psutil.Error:
            pass
    addrs = sorted({(c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
                    if c.pid in mine and c.status == psutil.CONN_LISTEN})
    print("LISTEN " + json.dumps(addrs), flush=True)
finally:
    ray.shutdown()
"""


def _is_loopback(ip: str) -> bool:
    import ipaddress

    a = ipaddress.ip_address(ip)
    mapped = getattr(a, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return a.is_loopback or bool(mapped and mapped.is_loopback)


@pytest.mark.slow
def test_local_ray_listens_on_localhost_only(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("psutil")
    try:
        res = subprocess.run(
            [sys.executable, "-c", _RAY_PROBE],
            capture_output=True,
            text=True,
            timeout=420,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"local Ray did not start within 420 s: {exc}")
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("LISTEN ")]
    assert res.returncode == 0 and lines, res.stdout[-2000:] + res.stderr[-4000:]
    addrs = [tuple(a) for a in json.loads(lines[-1][len("LISTEN ") :])]
    assert addrs, "found no listening socket of the Ray processes"
    public = [a for a in addrs if not _is_loopback(a[0])]
    assert not public, f"local Ray listens beyond the loopback interface: {public}"

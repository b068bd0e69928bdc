"""Run a parameterized notebook over a grid, headlessly, and collect the results.

``run_grid`` executes every parameter combination of a notebook with papermill, in local
processes by default or as Ray tasks when asked. Each run gets its own folder::

    out_dir/
      grid.json                      the grid as asked
      runs/<run_id>/params.json      the parameters injected into the notebook
      runs/<run_id>/executed.ipynb   the executed notebook (kept for failures too)
      runs/<run_id>/results.json     what the notebook wrote (one record per round)
      runs/<run_id>/status.json      ok | failed, error and traceback, wall time
      runs/<run_id>/worker.log       the run's worker process's own log (local engine)

Locally, every run executes in a worker process of its own
(``python -m gapscope.helpers.experiments _run_one``), at most ``workers`` at once. A failing
run is recorded and the others go on, whether its notebook raised, its kernel died (killed,
out of memory) or its worker process was killed; re-running the grid skips finished runs and
reruns only the others.
``collect(out_dir)`` turns the ``results.json`` files into one tidy table and says which
runs are missing, failed or partial rather than averaging over them silently.

The notebook contract: a cell tagged ``parameters`` and a ``run_dir`` parameter; the
notebook writes ``{run_dir}/results.json`` as ``{"params": {...}, "rounds": [{...}, ...]}``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import itertools
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from ._io import atomic_write

__all__ = [
    "expand_grid",
    "run_id_for",
    "run_one",
    "run_grid",
    "collect",
    "summarize",
    "RESULT_COLUMNS",
    "score_pool_ray",
    "learning_curves",
    "labels_to_target",
    "savings_vs_baseline",
    "aulc",
    "report_tables",
    "make_report",
    "load_grid_config",
    "notebook_parameters",
    "check_grid_keys",
    "NOTEBOOK_DIR",
]

#: The shipped notebooks folder (experiment.ipynb, compare.ipynb, grids/, ...): package data
#: of ``gapscope.notebooks``, so an installed (non-editable) gapscope finds it too.
NOTEBOOK_DIR = Path(str(importlib.resources.files("gapscope.notebooks")))

#: The per-round metrics the report summarises.
REPORT_METRICS = (
    "accuracy",
    "macro_f1",
    "auroc",
    "ece",
    "minority_recall",
    "rare_recall",
    "subgroup_gap",
    "shifted_accuracy",
    "mix_jsd",
    "mia_auc_real",
    "mia_auc_synthetic",
    "coverage",
    "evenness",
    "d_score",
)

#: Columns ``collect`` guarantees (NaN where a run did not report a metric).
RESULT_COLUMNS = (
    ("run_id", "dataset", "strategy", "seed", "round", "labels")
    + REPORT_METRICS
    + ("wall_time", "status")
)

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")

STATUS_OK = "ok"
STATUS_FAILED = "failed"


def expand_grid(grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict]:
    """Expand ``grid`` into a list of parameter dicts.

    Parameters
    ----------
    grid : dict of name -> list of values, or list of such dicts, or list of parameter dicts
        A dict is expanded as a cartesian product. Only a list or a tuple is a set of
        choices; any other value (a scalar, a string, a dict such as
        ``{"n_pool": 300, "n_test": 200}``) is one value, as if given as a one-element list.
        A list is expanded element by element (each element a dict of lists or of scalars).

    Examples
    --------
    >>> expand_grid({"seed": [0, 1], "data_options": {"n_pool": 300}})
    [{'seed': 0, 'data_options': {'n_pool': 300}}, {'seed': 1, 'data_options': {'n_pool': 300}}]
    """
    if isinstance(grid, Mapping):
        if not grid:
            raise ValueError("grid: expected at least one parameter, got an empty dict")
        keys = list(grid)
        values = []
        for k in keys:
            v = grid[k]
            v = list(v) if isinstance(v, (list, tuple)) else [v]
            if not v:
                raise ValueError(f"grid[{k!r}]: expected at least one value, got an empty list")
            values.append(v)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    if isinstance(grid, Sequence) and not isinstance(grid, (str, bytes)):
        out: list[dict] = []
        for i, g in enumerate(grid):
            if not isinstance(g, Mapping):
                raise TypeError(f"grid[{i}]: expected a dict, got {type(g).__name__}")
            out.extend(expand_grid(g))
        if not out:
            raise ValueError("grid: expected at least one parameter combination, got none")
        return out
    raise TypeError(f"grid: expected a dict of lists or a list of dicts, got {type(grid).__name__}")


def _component_name(v: Any) -> Any:
    """A spec's short name (``{"name": "x", ...}`` -> ``"x"``); other values unchanged."""
    if isinstance(v, Mapping) and isinstance(v.get("name"), str):
        return v["name"]
    return v


def run_id_for(params: Mapping[str, Any]) -> str:
    """A readable, stable id for one parameter combination (same params -> same id)."""
    blob = json.dumps(params, sort_keys=True, default=str)
    digest = hashlib.sha1(blob.encode()).hexdigest()[:8]
    head = "-".join(
        str(_component_name(params[k])) for k in ("data", "strategy", "seed") if k in params
    )
    head = "".join(c if c.isalnum() or c in "-_." else "_" for c in head)[:80]
    return f"{head}-{digest}" if head else digest


def notebook_parameters(notebook: str | os.PathLike) -> list[str]:
    """Names of the parameters a notebook's ``parameters`` cell defines (papermill's view)."""
    import papermill as pm

    return sorted(pm.inspect_notebook(str(notebook)))


def check_grid_keys(notebook: str | os.PathLike, combos: Sequence[Mapping[str, Any]]) -> None:
    """Raise ValueError for a grid key the notebook has no parameter for (a typo, say).

    papermill would inject an unknown name as a new variable that nothing reads, and the
    grid would silently run the defaults.
    """
    known = set(notebook_parameters(notebook))
    unknown = sorted({k for c in combos for k in c} - known)
    if "run_dir" in {k for c in combos for k in c}:
        raise ValueError("grid: 'run_dir' is set by run_grid for each run; remove it from the grid")
    if unknown:
        raise ValueError(
            f"grid: unknown parameter(s) {unknown} for {Path(notebook).name}; "
            f"expected some of {sorted(known - {'run_dir'})}"
        )


def _write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=str)))


#: Where a grid worker notes its kernel's pid (removed when the run ends).
_KERNEL_PID_FILE = ".kernel.pid"
#: A grid worker's own stderr (papermill's log), kept for a worker that dies.
_WORKER_LOG = "worker.log"


def _describe_exit(returncode: int | None) -> str:
    """``-9`` -> ``"signal 9 (SIGKILL)"``, ``3`` -> ``"exit code 3"``, for status records."""
    import signal

    if returncode is None:
        return "exit status unknown"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        text = f"signal {-returncode} ({name})"
        if -returncode == signal.SIGKILL:
            text += "; the out-of-memory killer sends SIGKILL, see `dmesg`"
        return text
    return f"exit code {returncode}"


#: Arguments for every kernel the runner starts. The kernel app logs one warning per start
#: that its local TCP transport is unencrypted (the kernels listen on 127.0.0.1 only): at
#: ERROR level that line is gone, while warnings from the notebook's own code still reach
#: its outputs (they are cell output, not the kernel app's log).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


def _recording_kernel_manager(record: dict, pid_file: Path | None):
    """An AsyncKernelManager that notes the kernel's pid and exit status in ``record``.

    nbclient only says "Kernel died"; the exit status (a signal from the out-of-memory killer,
    say) is what tells the cause. Returns None when jupyter_client is not the expected one.
    """
    try:
        from jupyter_client.manager import AsyncKernelManager
    except ImportError:  # pragma: no cover - papermill always brings jupyter_client
        return None

    class _RecordingKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            await super().start_kernel(**kw)
            pid = getattr(self.provisioner, "pid", None)
            record["pid"] = pid
            if pid_file is not None and pid is not None:
                try:
                    pid_file.write_text(str(pid))
                except OSError:
                    pass

        async def is_alive(self) -> bool:  # type: ignore[override]
            if self.has_kernel and self.provisioner is not None:
                rc = await self.provisioner.poll()
                if rc is not None:
                    record["returncode"] = rc
            return bool(await super().is_alive())

    return _RecordingKernelManager


def run_one(
    notebook: str | os.PathLike,
    params: Mapping[str, Any],
    run_dir: str | os.PathLike,
    *,
    kernel_name: str = "python3",
    execution_timeout: int | None = 1800,
    threads: int | None = None,
    pythonpath: Sequence[str] = (),
) -> dict:
    """Execute ``notebook`` once with ``params`` into ``run_dir``; never raises for a notebook error.

    ``threads`` caps the kernel's BLAS/OpenMP threads (``OMP_NUM_THREADS`` and friends),
    so concurrent runs do not oversubscribe the cores (oversubscribed OpenMP threads spin:
    measured here, a small k-means went from 6 ms to 490 ms). ``pythonpath`` folders are
    put in front of the kernel's ``PYTHONPATH``, so the user's modules (named by specs such
    as ``"my_module:my_strategy"`` or in ``modules``) import there. Both are set in this
    process's environment, which the kernel inherits: :func:`run_grid` calls this in a
    process of its own per run.

    A kernel that dies (killed, out of memory) is a failed run whose error says
    ``kernel died`` and how (``signal 9 (SIGKILL)``, say).
    Returns the status record (also written to ``run_dir/status.json``).
    """
    import papermill as pm

    if threads is not None:
        for var in _THREAD_VARS:
            os.environ[var] = str(int(threads))
    if pythonpath:
        extra = [str(Path(p).resolve()) for p in pythonpath]
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(extra + ([old] if old else []))

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # a rerun starts clean: a stale status or results file would speak for this attempt
    for stale in ("status.json", "results.json", _KERNEL_PID_FILE):
        (run_dir / stale).unlink(missing_ok=True)
    injected = dict(params)
    injected["run_dir"] = str(run_dir.resolve())
    _write_json(run_dir / "params.json", dict(params))
    t0 = time.perf_counter()
    status: dict[str, Any] = {"params": dict(params), "started": time.time()}
    kernel: dict[str, Any] = {}
    km_class = _recording_kernel_manager(kernel, run_dir / _KERNEL_PID_FILE)
    try:
        pm.execute_notebook(
            str(notebook),
            str(run_dir / "executed.ipynb"),
            parameters=injected,
            kernel_name=kernel_name,
            progress_bar=False,
            store_widget_state=False,
            execution_timeout=execution_timeout,
            cwd=str(run_dir),
            extra_arguments=KERNEL_ARGUMENTS,
            **({"kernel_manager_class": km_class} if km_class is not None else {}),
        )
        if not (run_dir / "results.json").exists():
            raise RuntimeError("the notebook finished but wrote no results.json in run_dir")
        status.update(status=STATUS_OK, error=None, traceback=None)
    except Exception as exc:  # a failed run is recorded; the grid goes on
        tb = traceback.format_exc()
        error = f"{type(exc).__name__}: {exc}"
        if type(exc).__name__ == "DeadKernelError":
            error = f"kernel died ({_describe_exit(kernel.get('returncode'))}): {error}"
        status.update(status=STATUS_FAILED, error=error[:4000], traceback=tb[-20000:])
    (run_dir / _KERNEL_PID_FILE).unlink(missing_ok=True)
    status["wall_time"] = time.perf_counter() - t0
    status["finished"] = time.time()
    _write_json(run_dir / "status.json", status)
    return status


def _is_done(run_dir: Path) -> bool:
    p = run_dir / "status.json"
    if not p.exists():
        return False
    try:
        return json.loads(p.read_text()).get("status") == STATUS_OK
    except (OSError, json.JSONDecodeError):
        return False


def _worker_main() -> int:
    """``python -m gapscope.helpers.experiments _run_one <run_id>``: one run, spec on stdin."""
    spec = json.loads(sys.stdin.read())
    run_one(
        spec["notebook"],
        spec["params"],
        spec["run_dir"],
        kernel_name=spec["kernel_name"],
        execution_timeout=spec["execution_timeout"],
        threads=spec["threads"],
        pythonpath=spec["pythonpath"],
    )
    return 0


def _kill_orphaned_kernel(rdir: Path, worker_pid: int) -> None:
    """SIGKILL the kernel a dead worker left behind (ipykernel exits on its own within a
    second; other kernels may not). Only a process whose ``JPY_PARENT_PID`` is that worker."""
    import signal

    pid_file = rdir / _KERNEL_PID_FILE
    try:
        pid = int(pid_file.read_text())
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    finally:
        pid_file.unlink(missing_ok=True)
    if f"JPY_PARENT_PID={worker_pid}".encode() in environ:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _record_dead_worker(
    rdir: Path, params: Mapping[str, Any], proc: Any, t0: float, started: float
) -> dict:
    """The status of a run whose worker process ended without writing one."""
    log = rdir / _WORKER_LOG
    try:
        tail = log.read_text(errors="replace")[-20000:]
    except OSError:
        tail = ""
    rc = proc.returncode
    how = _describe_exit(rc)
    verb = "died" if rc is None or rc < 0 else "exited without a status"
    status = {
        "params": dict(params),
        "started": started,
        "status": STATUS_FAILED,
        "error": f"worker process {verb} ({how}) before the run finished",
        "traceback": f"the worker's log ({log}):\n{tail}" if tail else None,
        "exit_code": rc,
        "wall_time": time.perf_counter() - t0,
        "finished": time.time(),
    }
    _write_json(rdir / "status.json", status)
    return status


def _run_local(
    nb: Path,
    todo: list[tuple[str, dict, Path]],
    *,
    workers: int,
    on_done: Any,
    kernel_name: str,
    execution_timeout: int | None,
    threads: int | None,
    pythonpath: Sequence[str],
) -> None:
    """Each run in its own worker process, at most ``workers`` alive; a worker that dies
    (SIGKILL, out of memory, a crash) fails its own run only."""
    import subprocess

    queue = list(todo)
    running: dict[str, tuple[Any, Path, dict, float, float, Any]] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                rid, params, rdir = queue.pop(0)
                rdir.mkdir(parents=True, exist_ok=True)
                (rdir / "status.json").unlink(missing_ok=True)
                spec = {
                    "notebook": str(nb.resolve()),
                    "params": params,
                    "run_dir": str(rdir.resolve()),
                    "kernel_name": kernel_name,
                    "execution_timeout": execution_timeout,
                    "threads": threads,
                    "pythonpath": list(pythonpath),
                }
                log = open(rdir / _WORKER_LOG, "wb")  # closed when the run ends
                t0, started = time.perf_counter(), time.time()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "gapscope.helpers.experiments", "_run_one", rid],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=os.name == "posix",
                )
                assert proc.stdin is not None
                try:
                    proc.stdin.write(json.dumps(spec, default=str).encode())
                    proc.stdin.close()
                except OSError:  # it died already; recorded below
                    pass
                running[rid] = (proc, rdir, params, t0, started, log)
            time.sleep(0.05)
            for rid in [r for r, v in running.items() if v[0].poll() is not None]:
                proc, rdir, params, t0, started, log = running.pop(rid)
                log.close()
                status = None
                if (rdir / "status.json").exists():
                    try:
                        status = json.loads((rdir / "status.json").read_text())
                    except (OSError, json.JSONDecodeError):
                        status = None
                if status is None:
                    _kill_orphaned_kernel(rdir, proc.pid)
                    status = _record_dead_worker(rdir, params, proc, t0, started)
                on_done(rid, status)
    finally:
        for proc, *_rest in running.values():  # interrupted: take the workers down with us
            proc.terminate()
        for proc, _rdir, _p, _t0, _s, log in running.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


#: How many times a local Ray is started before giving up (a loaded machine can time out
#: Ray's own start-up waits, e.g. the raylet's wait for its agents' port files).
RAY_START_ATTEMPTS = 3


def _start_local_ray_once(num_cpus: int | None) -> None:
    import ray

    ray_constants: Any
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - a Ray without that module
        ray_constants = None
    var = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    old_env = os.environ.get(var)
    old_flag = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[var] = "0"  # read by the daemons this starts
    if ray_constants is not None and old_flag is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False  # read by this process's ray.init
    try:
        ray.init(
            num_cpus=num_cpus,
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            ignore_reinit_error=True,
            log_to_driver=False,
        )
    finally:
        if old_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old_env
        if ray_constants is not None and old_flag is not None:
            ray_constants.ENABLE_RAY_CLUSTER = old_flag


def _init_local_ray(num_cpus: int | None = None, *, attempts: int = RAY_START_ATTEMPTS) -> None:
    """Start a local Ray whose services listen on 127.0.0.1 only, without a dashboard.

    ``_node_ip_address="127.0.0.1"`` alone is not enough: Ray swaps a loopback node address
    for the machine's reachable one unless its "no cluster" mode is on (on Linux only the
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` switch turns it on). With the node on 127.0.0.1
    the GCS, the raylet, the workers, the runtime-env agent and the autoscaler's metrics
    server bind the loopback interface; the dashboard (and its agent) is not started.

    A start that fails (on a loaded 2-core machine the raylet has been seen to give up
    waiting for its agents: ``Timed out waiting for file ... metrics_agent_port``) is shut
    down and tried again, up to ``attempts`` times, each failure a warning; then a
    RuntimeError says what failed and what to do instead.
    """
    import ray

    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            _start_local_ray_once(num_cpus)
            return
        except Exception as exc:  # noqa: BLE001 - any start-up failure of Ray's daemons
            last = exc
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001 - nothing left to shut down
                pass
            if attempt < attempts:
                warnings.warn(
                    f"a local Ray did not start (attempt {attempt} of {attempts}: "
                    f"{type(exc).__name__}: {exc}); trying again",
                    RuntimeWarning,
                    stacklevel=2,
                )
                time.sleep(2.0 * attempt)
    raise RuntimeError(
        f"a local Ray did not start in {attempts} attempts (last: {type(last).__name__}: {last}). "
        "Pass ray_address= (or set RAY_ADDRESS) to use a running Ray cluster, or use engine='local'."
    ) from last


def _connect_ray(ray_address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to ``ray_address`` (or ``$RAY_ADDRESS``), else start a local Ray.

    Returns whether this call started or connected (and so should shut down); False when
    Ray was already initialised by the caller, whose session is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False
    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    else:
        _init_local_ray(num_cpus)
    return True


def _run_ray(
    nb: Path,
    todo: list[tuple[str, dict, Path]],
    *,
    workers: int,
    ray_address: str | None,
    on_done: Any,
    kernel_name: str,
    execution_timeout: int | None,
    threads: int | None,
    pythonpath: Sequence[str],
) -> None:
    """Each run as a Ray task; a task whose worker dies fails its own run only."""
    import ray

    started_here = _connect_ray(ray_address, workers)
    try:
        # max_retries=0: a dead worker is a failed run (resume reruns it), not a silent rerun;
        # ray's stubs type .remote() without run_one's keyword-only arguments
        remote = cast(Any, ray.remote(num_cpus=1, max_retries=0)(run_one))
        refs = {}
        for rid, params, rdir in todo:
            (rdir / "status.json").unlink(missing_ok=True)
            ref = remote.remote(
                str(nb.resolve()),
                params,
                str(rdir.resolve()),
                kernel_name=kernel_name,
                execution_timeout=execution_timeout,
                threads=threads or 1,
                pythonpath=pythonpath,
            )
            refs[ref] = (rid, params, rdir, time.perf_counter(), time.time())
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for r in done:
                rid, params, rdir, t0, started = refs[r]
                try:
                    status = ray.get(r)
                except Exception as exc:  # the task's worker died (or Ray lost it)
                    status = {
                        "params": dict(params),
                        "started": started,
                        "status": STATUS_FAILED,
                        "error": f"worker process died (Ray: {type(exc).__name__}: {exc})"[:4000],
                        "traceback": traceback.format_exc()[-20000:],
                        "wall_time": time.perf_counter() - t0,
                        "finished": time.time(),
                    }
                    _write_json(rdir / "status.json", status)
                on_done(rid, status)
    finally:
        if started_here:
            ray.shutdown()


def run_grid(
    notebook: str | os.PathLike,
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    *,
    out_dir: str | os.PathLike,
    workers: int = 1,
    engine: str = "local",
    resume: bool = True,
    ray_address: str | None = None,
    kernel_name: str = "python3",
    execution_timeout: int | None = 1800,
    progress: bool = True,
    threads: int | None = None,
    pythonpath: Sequence[str | os.PathLike] = (),
) -> list[dict]:
    """Execute ``notebook`` for every combination in ``grid`` with papermill.

    Parameters
    ----------
    notebook : path
        A notebook with a cell tagged ``parameters`` that accepts ``run_dir``.
    grid : dict of lists or list of dicts
        See :func:`expand_grid`.
    out_dir : path
        Run folder; one sub-folder per combination under ``out_dir/runs``.
    workers : int, default 1
        Concurrent runs (local processes, or concurrent Ray tasks).
    engine : {"local", "ray"}, default "local"
        ``"local"`` runs each combination in a worker process of its own
        (``python -m gapscope.helpers.experiments _run_one``), at most ``workers`` at a time.
        ``"ray"`` submits each run as a Ray task (``ray_address``, or a local Ray whose
        services listen on 127.0.0.1 only and that has no dashboard).
    ray_address : str, optional
        A running Ray cluster: ``"ray://head:10001"`` (Ray Client) or ``"head:6379"`` /
        ``"auto"`` from a node of the cluster. Default: ``$RAY_ADDRESS`` when set, else a
        local Ray started for this grid (tried up to :data:`RAY_START_ATTEMPTS` times) and
        shut down after it. Already inside ``ray.init()``? That session is used. On a
        cluster, the notebook, ``out_dir`` and ``pythonpath`` must be paths every node sees
        (a shared file system), since each task writes its run folder itself.
    resume : bool, default True
        Skip combinations whose run folder already holds a successful status.
    threads : int, optional
        BLAS/OpenMP threads per run; default ``cpu_count // workers`` when ``workers > 1``
        (local engine), so concurrent kernels share the cores instead of fighting over them.
    pythonpath : list of paths
        Folders the kernels import the user's modules from (see :func:`run_one`).

    Every grid key must be a parameter of the notebook (:func:`check_grid_keys`): a typo
    is an error before any run starts.

    A run whose worker process or kernel dies (SIGKILL, the out-of-memory killer, a crash)
    is recorded ``failed`` with the cause in its ``status.json`` (``"worker process died
    (signal 9 (SIGKILL) ...)"``, ``"kernel died (...)"``); the other runs go on, and a
    resumed grid reruns only the runs that did not finish ``ok``.

    Returns
    -------
    list of dict
        One status record per combination (``status`` is ``"ok"``, ``"failed"`` or ``"skipped"``).
    """
    from tqdm.auto import tqdm

    nb = Path(notebook)
    if not nb.is_file():
        raise ValueError(f"notebook: expected an existing .ipynb file, got {str(notebook)!r}")
    if engine not in ("local", "ray"):
        raise ValueError(f"engine: expected 'local' or 'ray', got {engine!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers: expected an int >= 1, got {workers!r}")
    combos = expand_grid(grid)
    check_grid_keys(nb, combos)
    paths = [str(Path(p).resolve()) for p in pythonpath]
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    ids = [run_id_for(p) for p in combos]
    if len(set(ids)) != len(ids):  # pragma: no cover - sha1 prefix clash
        raise RuntimeError("two grid combinations mapped to the same run id")
    _write_json(
        out / "grid.json",
        {"notebook": str(nb.resolve()), "runs": dict(zip(ids, combos, strict=True))},
    )

    results: dict[str, dict] = {}
    todo = []
    for rid, params in zip(ids, combos, strict=True):
        rdir = out / "runs" / rid
        if resume and _is_done(rdir):
            results[rid] = {"run_id": rid, "status": "skipped", "params": params}
        else:
            todo.append((rid, params, rdir))

    if threads is None and workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
    bar = tqdm(total=len(todo), desc="runs", disable=not progress or not todo)

    def on_done(rid: str, status: dict) -> None:
        results[rid] = {"run_id": rid, **status}
        bar.update(1)

    if engine == "local":
        _run_local(
            nb,
            todo,
            workers=workers,
            on_done=on_done,
            kernel_name=kernel_name,
            execution_timeout=execution_timeout,
            threads=threads,
            pythonpath=paths,
        )
    else:
        _run_ray(
            nb,
            todo,
            workers=workers,
            ray_address=ray_address,
            on_done=on_done,
            kernel_name=kernel_name,
            execution_timeout=execution_timeout,
            threads=threads,
            pythonpath=paths,
        )
    bar.close()
    return [results[rid] for rid in ids]


def collect(out_dir: str | os.PathLike, *, strict: bool = False):
    """One tidy table of every run's per-round results under ``out_dir``.

    Rows: one per (run, round) for finished runs; one row with ``status`` "failed",
    "missing" (in the grid, no status yet) or "partial" (fewer rounds than the run's
    ``rounds`` parameter) and NaN metrics otherwise. Problems are listed in
    ``table.attrs["problems"]`` and reported with a warning (``strict=True``: an error).
    """
    import numpy as np
    import pandas as pd

    out = Path(out_dir)
    grid_path = out / "grid.json"
    if not grid_path.exists():
        raise ValueError(
            f"out_dir: expected a run folder with grid.json (made by run_grid), got {str(out)!r}"
        )
    grid = json.loads(grid_path.read_text())["runs"]
    rows: list[dict] = []
    problems: list[str] = []
    for rid, params in grid.items():
        rdir = out / "runs" / rid
        # what the run itself reported fills in keys the grid left at their defaults
        res_path = rdir / "results.json"
        reported = {}
        if res_path.exists():
            try:
                reported = json.loads(res_path.read_text()).get("params", {})
            except (OSError, json.JSONDecodeError):
                reported = {}
        merged = {**reported, **params}
        base = {
            "run_id": rid,
            "dataset": _component_name(merged.get("data", merged.get("dataset"))),
            "strategy": _component_name(merged.get("strategy")),
            "seed": merged.get("seed"),
            # the other grid parameters, as columns (dicts as JSON text), so tables can group by them
            **{
                k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v)
                for k, v in params.items()
                if k not in ("data", "dataset", "strategy", "seed", "round")
            },
        }
        status_path = rdir / "status.json"
        if not status_path.exists():
            problems.append(f"{rid}: missing (never ran or still running)")
            rows.append({**base, "status": "missing"})
            continue
        status = json.loads(status_path.read_text())
        if status.get("status") != STATUS_OK:
            problems.append(f"{rid}: failed: {status.get('error')}")
            rows.append({**base, "status": "failed", "wall_time": status.get("wall_time")})
            continue
        res = json.loads(res_path.read_text())
        rounds = res.get("rounds", [])
        expected = res.get("expected_rounds", merged.get("rounds"))
        if "expected_rounds" in res:
            expected = int(expected) - 1
        state = "ok"
        if expected is not None and len(rounds) < int(expected):
            state = "partial"
            problems.append(f"{rid}: partial: {len(rounds)} of {expected} rounds")
        for r in rounds:
            rows.append(
                {
                    **base,
                    **{k: v for k, v in r.items() if k not in base},
                    "status": state,
                    "wall_time": status.get("wall_time"),
                }
            )
    table = pd.DataFrame(rows)
    for col in RESULT_COLUMNS:
        if col not in table.columns:
            table[col] = np.nan
    table = _label_variants(table, grid)
    front = list(RESULT_COLUMNS)
    table = table[front + [c for c in table.columns if c not in front]]
    table.attrs["problems"] = problems
    if problems:
        msg = f"collect: {len(problems)} of {len(grid)} runs are not complete: " + "; ".join(
            problems[:10]
        )
        if strict:
            raise RuntimeError(msg)
        warnings.warn(msg, stacklevel=2)
    return table


def _flat(v: Any, prefix: str = "") -> dict:
    """Leaves of nested dicts as ``{"a.b": value}`` (non-dicts: ``{prefix: value}``)."""
    if isinstance(v, dict):
        out: dict = {}
        for k, x in v.items():
            out.update(_flat(x, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: json.dumps(v, sort_keys=True) if isinstance(v, list) else v}


def _label_variants(table, grid: Mapping[str, Mapping[str, Any]]):
    """Name each run's variant in ``strategy`` where a grid varies more than data/strategy/seed.

    Within a (dataset, strategy) group, every grid parameter (dict options by their leaves)
    that takes more than one value is appended: ``umc_uncertainty [alpha=0.1]`` in an ablation
    grid, so tables and curves keep the variants apart. The plain name stays in
    ``strategy_name``; a grid without such parameters is left as it is.
    """
    table["strategy_name"] = table["strategy"]
    leaves = {
        rid: {
            k: x
            for key, v in params.items()
            if key not in ("data", "dataset", "strategy", "seed", "round", "run_dir")
            for k, x in _flat(v, key).items()
        }
        for rid, params in grid.items()
    }
    labels = {}
    for (_d, s), g in table.groupby(["dataset", "strategy"], dropna=False):
        rids = list(dict.fromkeys(g["run_id"]))
        keys = sorted({k for r in rids for k in leaves.get(r, {})})
        varied = [
            k for k in keys if len({json.dumps(leaves.get(r, {}).get(k), default=str) for r in rids}) > 1
        ]
        if not varied:
            continue
        for r in rids:
            short = ", ".join(f"{k.split('.')[-1]}={leaves.get(r, {}).get(k)}" for k in varied)
            labels[r] = f"{s} [{short}]"
    if labels:
        table["strategy"] = [labels.get(r, s) for r, s in zip(table["run_id"], table["strategy"], strict=True)]
    table.attrs["variants"] = sorted(set(labels.values()))
    return table


def summarize(
    table,
    *,
    metric: str = "accuracy",
    by: Sequence[str] = ("dataset", "strategy"),
    allow_partial: bool = False,
):
    """Mean and 95% t-interval of ``metric`` at the last round of every run, per group.

    Refuses (``ValueError``) to average a table with failed, missing or partial runs unless
    ``allow_partial`` is True; then only complete runs count and ``n_runs`` says how many.
    """
    import pandas as pd

    bad = table[table["status"] != "ok"]
    if len(bad) and not allow_partial:
        raise ValueError(
            f"table: {bad['run_id'].nunique()} run(s) are failed, missing or partial "
            f"({sorted(bad['status'].unique())}); pass allow_partial=True to summarise complete runs only"
        )
    ok = table[table["status"] == "ok"]
    last = ok.sort_values("round").groupby("run_id").tail(1)
    rows = []
    for key, g in last.groupby(list(by), dropna=False):
        mean, half, n = _t_interval(g[metric])
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                f"{metric}_mean": mean,
                "ci95": half,
                "labels": float(g["labels"].mean()),
                "n_runs": n,
            }
        )
    return pd.DataFrame(rows)


def _ray_scorer_class():
    class _Scorer:
        def __init__(self, ensemble_state: bytes, scores: tuple[str, ...]):
            import io

            from .models import Ensemble

            self.ensemble = Ensemble.load(io.BytesIO(ensemble_state))
            self.scores = scores

        def __call__(self, batch: dict) -> dict:
            import numpy as np

            from .scoring import score_pool

            x = batch["data"] if "data" in batch else next(iter(batch.values()))
            if x.dtype == object:  # a list column read from Parquet: one array per row
                x = np.stack(list(x))
            x = np.asarray(x, dtype=np.float32)
            out = score_pool(self.ensemble, x, scores=self.scores, batch_size=len(x))
            return {k: out[k] for k in self.scores}

    return _Scorer


def score_pool_ray(
    ensemble: Any,
    X: Any,
    *,
    scores: Sequence[str] = ("predictive_entropy",),
    batch_size: int = 4096,
    concurrency: int = 2,
    num_gpus_per_actor: float | None = None,
    ray_address: str | None = None,
) -> dict:
    """``helpers.scoring.score_pool`` on Ray Data, for pools that outgrow one machine.

    The pool becomes a Ray Dataset scored by an actor pool (``map_batches`` with
    ``concurrency`` actors; one GPU each when the cluster has GPUs, unless
    ``num_gpus_per_actor`` says otherwise). Each actor loads the ensemble once (from
    ``Ensemble.save`` bytes). Order is preserved, so the result is in pool order and equals
    the local ``score_pool`` on the same pool.

    ``X`` is an array of shape (n, *feature_shape), or a pool file
    (:class:`gapscope.helpers.scale.PoolFile`, or its path): a Parquet file is read by the
    workers themselves (``ray.data.read_parquet``, so on a cluster it must be on storage
    every node sees and the pool never passes through this process); an Arrow IPC file is
    read here chunk by chunk into Ray's object store.

    ``ray_address`` is a running cluster (``"ray://head:10001"``, ``"auto"``); default
    ``$RAY_ADDRESS``, else a local Ray started for this call (see :func:`run_grid`).
    """
    import io

    import numpy as np
    import ray

    from ._validation import check_array
    from .scale import PoolFile

    if isinstance(X, (str, os.PathLike)):
        X = PoolFile(X)
    if not isinstance(X, PoolFile):
        X = check_array(X, name="X", ndim=(2, 3), dtype=np.float32)
    started_here = _connect_ray(ray_address)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        if num_gpus_per_actor is None:
            num_gpus_per_actor = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        buf = io.BytesIO()
        ensemble.save(buf)
        if isinstance(X, PoolFile) and X.format == "parquet":
            ds = ray.data.read_parquet(X.path).select_columns([X.column])
            # the read tasks need a CPU beside the scoring actors (on a 2-CPU Ray, 2 actors
            # took both and the reads waited for ever)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            concurrency = max(1, min(int(concurrency), cpus - 1))
        elif isinstance(X, PoolFile):
            ds = ray.data.from_numpy(list(X.batches(int(batch_size))))
        else:
            # one block per batch, so every actor gets work
            n_blocks = max(int(concurrency), -(-len(X) // int(batch_size)))
            ds = ray.data.from_numpy([blk for blk in np.array_split(X, n_blocks) if len(blk)])
        out = (
            ds.map_batches(
                _ray_scorer_class(),
                fn_constructor_args=(buf.getvalue(), tuple(scores)),
                batch_size=batch_size,
                concurrency=concurrency,
                num_gpus=num_gpus_per_actor,
                batch_format="numpy",
            )
            .take_all()
        )
        return {k: np.asarray([row[k] for row in out]) for k in scores}
    finally:
        if started_here:
            ray.shutdown()


# ---------------------------------------------------------------------------- analysis
def _t_interval(vals):
    import numpy as np
    from scipy import stats

    vals = np.asarray(vals, dtype=float)
    vals = vals[np.isfinite(vals)]
    n = len(vals)
    if n == 0:
        return np.nan, np.nan, 0
    mean = float(vals.mean())
    if n < 2:
        return mean, np.nan, n
    return mean, float(stats.t.ppf(0.975, n - 1) * vals.std(ddof=1) / np.sqrt(n)), n


def _complete(table):
    return table[table["status"] == "ok"]


def learning_curves(table, *, metric: str = "accuracy"):
    """Mean and 95% t-interval of ``metric`` per (dataset, strategy, round) over complete runs."""
    import pandas as pd

    rows = []
    for (d, s, r), g in _complete(table).groupby(["dataset", "strategy", "round"]):
        mean, half, n = _t_interval(g[metric])
        rows.append(
            {
                "dataset": d,
                "strategy": s,
                "round": r,
                "labels": float(g["labels"].mean()),
                "mean": mean,
                "ci95": half,
                "n_runs": n,
            }
        )
    return pd.DataFrame(
        rows, columns=["dataset", "strategy", "round", "labels", "mean", "ci95", "n_runs"]
    )


def labels_to_target(table, *, target_fraction: float = 0.95, metric: str = "accuracy"):
    """Per complete run: labels needed to reach ``target_fraction`` of the full-data model.

    The full-data accuracy of a dataset is the mean ``full_accuracy`` its runs reported
    (the random runs compute it). ``labels_needed`` is interpolated linearly between the two
    rounds around the crossing (:func:`~gapscope.helpers.metrics.labels_to_reach`), NaN when a run never reached the
    target within its budget (censored, and counted as such in ``savings_vs_baseline``).
    """
    import numpy as np
    import pandas as pd

    from .metrics import labels_to_reach

    ok = _complete(table)
    if "full_accuracy" not in ok.columns or ok["full_accuracy"].notna().sum() == 0:
        raise ValueError(
            "table: no run reported full_accuracy (run the grid with a 'random' strategy)"
        )
    rows = []
    for d, gd in ok.groupby("dataset"):
        full = float(gd["full_accuracy"].dropna().mean())
        target = target_fraction * full
        for rid, g in gd.groupby("run_id"):
            g = g.sort_values("labels")
            need = labels_to_reach(
                g["labels"].to_numpy(float), g[metric].to_numpy(float), target, interpolate=True
            )
            rows.append(
                {
                    "dataset": d,
                    "strategy": g["strategy"].iloc[0],
                    "seed": g["seed"].iloc[0],
                    "run_id": rid,
                    "full_accuracy": full,
                    "target": target,
                    "labels_needed": np.nan if need is None else float(need),
                }
            )
    return pd.DataFrame(rows)


def savings_vs_baseline(per_run, *, baseline: str = "random"):
    """Labels saved against ``baseline``, paired by (dataset, seed), with a 95% t-interval.

    Pairs where either run never reached the target are left out and counted in
    ``censored``; ``saving_frac`` is the saving as a share of the baseline's labels.
    """
    import numpy as np
    import pandas as pd

    rows = []
    for d, gd in per_run.groupby("dataset"):
        base = gd[gd["strategy"] == baseline].set_index("seed")["labels_needed"]
        for s, g in gd.groupby("strategy"):
            if s == baseline:
                continue
            g = g.set_index("seed")["labels_needed"]
            seeds = sorted(set(g.index) & set(base.index))
            diffs, fracs, censored = [], [], 0
            for sd in seeds:
                a, b = base.loc[sd], g.loc[sd]
                if np.isfinite(a) and np.isfinite(b):
                    diffs.append(a - b)
                    fracs.append((a - b) / a)
                else:
                    censored += 1
            mean, half, n = _t_interval(diffs)
            fmean, fhalf, _ = _t_interval(fracs)
            rows.append(
                {
                    "dataset": d,
                    "strategy": s,
                    "saving_labels": mean,
                    "ci95": half,
                    "saving_frac": fmean,
                    "frac_ci95": fhalf,
                    "n_pairs": n,
                    "censored": censored,
                }
            )
    return pd.DataFrame(rows)


def aulc(table, *, metric: str = "accuracy"):
    """Area under the learning curve per run (trapezoid over labels, divided by the label range),
    then mean and 95% interval per (dataset, strategy)."""
    import numpy as np
    import pandas as pd

    per = []
    for _rid, g in _complete(table).groupby("run_id"):
        g = g.sort_values("labels")
        x, y = g["labels"].to_numpy(float), g[metric].to_numpy(float)
        area = (
            float(np.trapezoid(y, x) / (x[-1] - x[0]))
            if len(x) > 1 and x[-1] > x[0]
            else float(y[-1])
        )
        per.append(
            {"dataset": g["dataset"].iloc[0], "strategy": g["strategy"].iloc[0], "aulc": area}
        )
    per = pd.DataFrame(per)
    rows = []
    for (d, s), g in per.groupby(["dataset", "strategy"]):
        mean, half, n = _t_interval(g["aulc"])
        rows.append({"dataset": d, "strategy": s, "aulc": mean, "ci95": half, "n_runs": n})
    return pd.DataFrame(rows)


def report_tables(table, *, target_fraction: float = 0.95, baseline: str = "random") -> dict:
    """Every table of the report: final metrics, labels to target, savings, AULC."""
    import pandas as pd

    finals = []
    ok = _complete(table)
    last = ok.sort_values("round").groupby("run_id").tail(1)
    for (d, s), g in last.groupby(["dataset", "strategy"]):
        row = {"dataset": d, "strategy": s, "n_runs": len(g), "labels": float(g["labels"].mean())}
        for m in REPORT_METRICS:
            if m in g.columns:
                mean, half, _ = _t_interval(g[m])
                row[m] = mean
                row[f"{m}_ci95"] = half
        finals.append(row)
    out = {"final": pd.DataFrame(finals), "aulc": aulc(table)}
    try:
        per = labels_to_target(table, target_fraction=target_fraction)
        out["labels_to_target"] = (
            per.groupby(["dataset", "strategy"])
            .agg(
                target=("target", "first"),
                labels_needed=("labels_needed", "mean"),
                reached=("labels_needed", lambda v: int(v.notna().sum())),
                runs=("labels_needed", "size"),
            )
            .reset_index()
        )
        out["savings"] = savings_vs_baseline(per, baseline=baseline)
    except ValueError as exc:
        out["labels_to_target"] = pd.DataFrame({"note": [str(exc)]})
        out["savings"] = pd.DataFrame({"note": [str(exc)]})
    return out


#: The report's HTML template: JupyterLab's look (its CSS inlined) without the scripts it
#: would fetch from a CDN (require.js, MathJax, mermaid), so ``report.html`` is one offline file.
_REPORT_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

#: Cells of compare.ipynb left out of the exported report (besides the parameters cells).
_REPORT_SKIP_TAGS = {"report-skip", "parameters", "injected-parameters"}


def _external_references(html: str) -> list[str]:
    """``<script src>`` and ``<link href>`` attributes of ``html`` that point to the network."""
    import re

    tags = re.findall(r"<(?:script|link)\b[^>]*>", html, flags=re.IGNORECASE)
    return [t for t in tags if re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", t, re.I)]


def make_report(
    out_dir: str | os.PathLike,
    *,
    html_path: str | os.PathLike | None = None,
    figures_dir: str | os.PathLike | None = None,
    target_fraction: float = 0.95,
    baseline: str = "random",
) -> Path:
    """Execute ``compare.ipynb`` on the run folder ``out_dir`` and export it to one HTML file.

    The report opens with a headline (what the folder holds) and the claims table, then the
    figures (learning curves per dataset and metric with 95% t-intervals over seeds, a
    forest plot of the labels saved against ``baseline``), then tidy tables and the runs
    that did not complete. Sections that the runs cannot support (no ``baseline`` runs, no
    full-data reference) say why instead. The HTML has no code, no prompts and no network
    references (figures are embedded PNGs), so it opens offline.

    Parameters
    ----------
    out_dir : path
        A run folder of :func:`run_grid` (``gapscope run``).
    html_path : path, optional
        Default ``out_dir/report.html``.
    figures_dir : path, optional
        Where every figure is also written as PNG and SVG (``learning_curves_<dataset>_<metric>``,
        ``forest_savings``); default ``out_dir/figures``. The report's earlier figures there
        are replaced.
    target_fraction : float, default 0.95
        Labels to target: the labels a run needs to reach this share of the full-data
        model's accuracy.
    baseline : str, default "random"
        The strategy the savings are measured against.

    Returns
    -------
    Path
        The HTML file; the executed notebook is kept as
        ``out_dir/report.ipynb``.
    """
    import jinja2
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    out = Path(out_dir).resolve()
    if not (out / "grid.json").is_file():
        raise ValueError(
            f"out_dir: expected a run folder with grid.json (made by run_grid), got {str(out)!r}"
        )
    if not 0 < float(target_fraction) <= 1:
        raise ValueError(f"target_fraction: expected a number in (0, 1], got {target_fraction!r}")
    html = Path(html_path).resolve() if html_path else out / "report.html"
    figures = Path(figures_dir).resolve() if figures_dir else out / "figures"
    executed = out / "report.ipynb"
    pm.execute_notebook(
        str(NOTEBOOK_DIR / "compare.ipynb"),
        str(executed),
        parameters={
            "out_dir": str(out),
            "target_fraction": float(target_fraction),
            "baseline": str(baseline),
            "figures_dir": str(figures),
        },
        kernel_name="python3",
        progress_bar=False,
        store_widget_state=False,
        cwd=str(out),
        extra_arguments=KERNEL_ARGUMENTS,
    )
    nb = nbformat.read(executed, as_version=4)
    nb.cells = [c for c in nb.cells if not _REPORT_SKIP_TAGS & set(c.metadata.get("tags", []))]
    nb.metadata["title"] = f"gapscope report: {out.name}"
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"gapscope_report.html.j2": _REPORT_TEMPLATE})],
        template_file="gapscope_report.html.j2",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(nb)
    external = _external_references(body)
    if external:  # pragma: no cover - a template change in nbconvert
        warnings.warn(f"make_report: the HTML references the network: {external[:3]}", stacklevel=2)
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(body, encoding="utf-8")
    return html


_GRID_FILE_KEYS = ("notebook", "grid", "workers", "engine", "target_fraction", "pythonpath")


def load_grid_config(path: str | os.PathLike) -> dict:
    """Read a grid YAML.

    Keys: ``grid`` (dict of lists or list of such dicts; required), ``notebook`` (default the
    shipped ``experiment.ipynb``; a relative path is looked up beside the YAML file first),
    ``workers``, ``engine``, ``target_fraction`` and ``pythonpath`` (folders, relative to
    the YAML file, that hold the user's modules named by specs or ``modules``).
    An unknown key is an error.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config: expected an existing YAML file, got {str(path)!r}")
    cfg = yaml.safe_load(p.read_text()) or {}
    if not isinstance(cfg, dict) or "grid" not in cfg:
        raise ValueError(f"config: {str(path)!r} has no 'grid' key")
    unknown = sorted(set(cfg) - set(_GRID_FILE_KEYS))
    if unknown:
        raise ValueError(
            f"config: unknown key(s) {unknown} in {str(path)!r}; expected some of {list(_GRID_FILE_KEYS)}"
        )
    nb = Path(cfg.get("notebook", "experiment.ipynb"))
    if not nb.is_absolute():
        nb = (p.parent / nb) if (p.parent / nb).is_file() else (NOTEBOOK_DIR / nb)
    cfg["notebook"] = str(nb)
    pp = cfg.get("pythonpath") or []
    if isinstance(pp, str):
        pp = [pp]
    cfg["pythonpath"] = [str((p.parent / d).resolve()) for d in pp]
    return cfg


if __name__ == "__main__":
    if sys.argv[1:2] != ["_run_one"]:
        sys.exit("usage: python -m gapscope.helpers.experiments _run_one <run_id>  (spec on stdin)")
    sys.exit(_worker_main())

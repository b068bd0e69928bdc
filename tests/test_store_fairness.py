"""SQLite writers are served first come, first served (issue 14): the write queue of
helpers/_store_lock.py in front of SQLite's lock, across processes and threads, and what
happens when a member of the queue is killed.

The bounds are for the project's loaded 2-core CI machine, with a wide margin: with the
queue, 6 writers x 8 s measure max/min completed writes 1.00-1.01 and a worst wait of
0.1-0.4 s; SQLite's own busy handler alone (before issue 14) gave max/min 2.2-4.4 and
worst waits of 1.9-3.1 s on the same machine.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from gapscope.helpers.store import LabelStore, StoreError


@pytest.fixture(autouse=True)
def _no_store_url_from_env(monkeypatch):
    monkeypatch.delenv("GAPSCOPE_STORE_URL", raising=False)


N_ITEMS = 50
FAIR_RATIO = 1.5  # max/min completed writes; FIFO gives 1.00-1.01 here
MAX_WAIT_S = 1.5  # 99th-percentile write; the queue's worst single write is 0.1-0.4 s here
STALL_CAP_S = 6.0  # the worst single write, disk stalls included


def _setup(url):
    with LabelStore(url) as s:
        s.set_schema(labels=[0, 1, 2], tags=["t"])
        s.add_items(list(range(N_ITEMS)), dataset="pool")


def _queue_counter(db) -> int:
    """The next ticket the queue file beside ``db`` will hand out."""
    try:
        with open(f"{db}-writeq", "rb") as f:
            raw = f.read(8)
    except FileNotFoundError:
        return 0
    return int.from_bytes(raw, "little") if len(raw) == 8 else 0


def _wait_for(cond, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ---- fairness under continuous writing ---------------------------------------------------


def _annotator(url, w, seconds, start, out):
    """Write continuously (mixed kinds) for `seconds`; report count and latencies."""
    lat, keys, errors = [], [], []
    try:
        with LabelStore(url) as s:
            s.status([0])  # connect before the start
            start.wait()
            t_end = time.monotonic() + seconds
            i = 0
            last = None
            while time.monotonic() < t_end:
                item = (w * 7 + i // 3) % N_ITEMS
                key = f"w{w}-{i}"
                t0 = time.perf_counter()
                step = i % 3
                if step == 0:
                    last = s.record(item, "label", annotator=f"a{w}", label=i % 3, key=key)
                elif step == 1:
                    s.record(item, "undo", annotator=f"a{w}", ref_event=last, key=key)
                else:
                    s.record(item, "tag", annotator=f"a{w}", tags=["t"], key=key)
                lat.append(time.perf_counter() - t0)
                keys.append(key)
                i += 1
    except BaseException as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    out.put((w, lat, keys, errors))


def run_annotators(url, n, seconds):
    ctx = mp.get_context("fork")
    start = ctx.Event()
    out = ctx.Queue()
    procs = [ctx.Process(target=_annotator, args=(url, w, seconds, start, out)) for w in range(n)]
    for p in procs:
        p.start()
    time.sleep(1.0 + 0.2 * n)  # every process has opened its store
    start.set()
    results = sorted(out.get(timeout=seconds + 120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    return results


@pytest.mark.slow
def test_processes_are_served_in_turn(tmp_path):
    """6 processes writing for 8 s: all complete about as many writes, nobody waits long."""
    url = f"sqlite:///{tmp_path}/fair.sqlite"
    _setup(url)
    results = run_annotators(url, 6, 8.0)
    errors = [e for r in results for e in r[3]]
    assert not errors, errors
    counts = [len(r[2]) for r in results]
    worst = [max(r[1]) for r in results]
    load = os.getloadavg()
    detail = f"writes per annotator {counts}, worst waits {np.round(worst, 3)} s, load {load}"
    assert min(counts) > 0, detail
    assert max(counts) / min(counts) < FAIR_RATIO, detail
    # a disk stall (an fsync held up by other I/O) pauses the holder of the turn and so every
    # writer at once: seen once in a full `make test`, worst waits 1.66-3.67 s in all six writers
    # with 643-645 writes each. That is not unfairness, so the bound is on each writer's 99th
    # percentile wait, with a hard cap on the single worst one
    p99 = [float(np.percentile(r[1], 99)) for r in results]
    assert max(p99) < MAX_WAIT_S, detail + f", p99 waits {np.round(p99, 3)} s"
    assert max(worst) < STALL_CAP_S, detail
    # nothing lost or duplicated
    with LabelStore(url) as s:
        ev = s.events()
    assert ev["key"].is_unique
    assert set(ev["key"]) == {k for r in results for k in r[2]}


@pytest.mark.slow
def test_threads_of_one_process_are_served_in_turn(tmp_path):
    """The queue's locks belong to one open() each, so threads are members of their own."""
    url = f"sqlite:///{tmp_path}/threads.sqlite"
    _setup(url)
    counts = {}
    errors = []
    stop = time.monotonic() + 4.0

    def run(w):
        try:
            with LabelStore(url) as s:
                n = 0
                while time.monotonic() < stop:
                    s.record(w, "skip", annotator=f"t{w}")
                    n += 1
                counts[w] = n
        except BaseException as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    c = list(counts.values())
    assert len(c) == 4 and min(c) > 0
    assert max(c) / min(c) < FAIR_RATIO, f"writes per thread {counts}, load {os.getloadavg()}"


def test_queue_serves_in_arrival_order(tmp_path):
    """Deterministic FIFO: waiters that queued one after another get their turns in order."""
    from gapscope.helpers import _store_lock

    db = tmp_path / "order.sqlite"
    db.touch()
    q = _store_lock.queue_for(str(db))
    assert q is not None and q.path == f"{db}-writeq"
    served = []

    def waiter(i):
        with q.turn(timeout=30):
            served.append(i)

    threads = []
    with q.turn(timeout=5):
        first = _queue_counter(db)
        for i in range(6):
            t = threading.Thread(target=waiter, args=(i,))
            t.start()
            threads.append(t)
            _wait_for(lambda i=i: _queue_counter(db) == first + i + 1, what=f"waiter {i}")
        time.sleep(0.05)
        assert served == []  # all wait behind the holder
    for t in threads:
        t.join(timeout=30)
    assert served == list(range(6))


def test_waiting_past_timeout_raises_store_error_and_writes_nothing(tmp_path):
    from gapscope.helpers import _store_lock

    db = tmp_path / "to.sqlite"
    with LabelStore(f"sqlite:///{db}", timeout=0.3) as s:
        s.set_schema([0])
        s.add_items([1], dataset="d")
        q = _store_lock.queue_for(str(db))
        with q.turn(timeout=5):
            t0 = time.monotonic()
            with pytest.raises(StoreError, match="another writer held the lock.*write queue"):
                s.record(1, "label", annotator="a", label=0)
            assert 0.25 <= time.monotonic() - t0 < 5
        assert s.events().empty
        s.record(1, "label", annotator="a", label=0)  # the queue works again
        assert len(s.events()) == 1


def test_queue_wait_and_busy_timeout_share_one_timeout(tmp_path):
    """A writer that waited in the queue gets only what is left for SQLite's own lock."""
    from gapscope.helpers import _store_lock

    db = tmp_path / "share.sqlite"
    with LabelStore(f"sqlite:///{db}", timeout=1.0) as s:
        s.set_schema([0])
        s.add_items([1], dataset="d")
        foreign = sqlite3.connect(db, isolation_level=None)  # not a gapscope writer
        foreign.execute("BEGIN IMMEDIATE")
        try:
            q = _store_lock.queue_for(str(db))
            release = threading.Event()

            def hold():
                with q.turn(timeout=5):
                    release.wait(0.5)

            first = _queue_counter(db)
            holder = threading.Thread(target=hold)
            holder.start()
            _wait_for(lambda: _queue_counter(db) == first + 1, what="the holder")
            t0 = time.monotonic()
            with pytest.raises(StoreError, match="another writer held the lock"):
                s.record(1, "label", annotator="a", label=0)
            elapsed = time.monotonic() - t0
            holder.join(timeout=10)
        finally:
            foreign.execute("ROLLBACK")
            foreign.close()
        # 0.5 s in the queue + what was left (0.5 s) of busy timeout; 1.5 s if each got 1 s
        assert 0.9 <= elapsed < 1.4, elapsed
        # and a later write gets the full busy timeout again
        s.record(1, "label", annotator="a", label=0)
        assert len(s.events()) == 1


# ---- a member of the queue killed -----------------------------------------------------------

# Holds the turn (and SQLite's write lock) until killed.
_HOLDER = textwrap.dedent(
    """
    import sys, time
    from gapscope.helpers.store import LabelStore
    s = LabelStore(sys.argv[1], timeout=60)
    with s._write() as conn:
        print("holding", flush=True)
        time.sleep(600)
    """
)
# Opens the store (opening writes too), then one write on "go"; prints the event id and
# when it was stored (time.monotonic() is the system-wide CLOCK_MONOTONIC on Linux).
_ONE_WRITE = textwrap.dedent(
    """
    import sys, time
    from gapscope.helpers.store import LabelStore
    with LabelStore(sys.argv[1], timeout=60) as s:
        print("ready", flush=True)
        sys.stdin.readline()
        e = s.record(int(sys.argv[3]), "label", annotator=sys.argv[2], label=0, key=sys.argv[2])
        print(e, time.monotonic(), flush=True)
    """
)


def test_sigkill_of_ticket_holder_and_of_waiter_does_not_block_the_queue(tmp_path):
    db = tmp_path / "kill.sqlite"
    url = f"sqlite:///{db}"
    _setup(url)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}

    def spawn(script, *args):
        p = subprocess.Popen(
            [sys.executable, "-c", script, url, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(p)
        return p

    procs: list[subprocess.Popen] = []
    try:
        victim = spawn(_ONE_WRITE, "victim", "1")  # will be killed while it waits
        writers = [spawn(_ONE_WRITE, f"w{i}", str(2 + i)) for i in range(3)]
        for p in [victim, *writers]:
            assert p.stdout.readline().strip() == "ready"
        holder = spawn(_HOLDER)
        assert holder.stdout.readline().strip() == "holding"
        first = _queue_counter(db)  # the holder's ticket is first - 1
        for k, p in enumerate([victim, *writers]):  # queue up one after another
            p.stdin.write("go\n")
            p.stdin.flush()
            _wait_for(lambda k=k: _queue_counter(db) == first + 1 + k, what=f"ticket {k}")
        time.sleep(0.3)
        assert all(p.poll() is None for p in [victim, *writers])  # all wait behind the holder

        os.kill(victim.pid, signal.SIGKILL)  # a waiter dies: it simply leaves the queue
        victim.wait(timeout=10)
        time.sleep(0.3)
        assert all(p.poll() is None for p in writers)  # the holder still holds the turn

        os.kill(holder.pid, signal.SIGKILL)  # the holder dies mid-transaction
        t_kill = time.monotonic()
        holder.wait(timeout=10)
        ids, done = {}, []
        for i, p in enumerate(writers):
            out, _ = p.communicate(timeout=60)
            assert p.returncode == 0
            e, t = out.split()[-2:]
            ids[f"w{i}"] = int(e)
            done.append(float(t))
        after = max(done) - t_kill
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    # the writers behind continue at once (0.1-0.3 s here), not after their 60 s timeout
    assert after < 5.0, f"the last write was stored {after:.2f} s after the kill"
    assert ids["w0"] < ids["w1"] < ids["w2"]  # still in arrival order
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with LabelStore(url) as s:
        ev = s.events()
        assert sorted(ev["key"]) == ["w0", "w1", "w2"]  # neither the victim nor the holder
        s.record(9, "skip", annotator="after")  # and the queue keeps working
        assert len(s.events()) == 4


# ---- where the queue applies ----------------------------------------------------------------


def test_queue_only_for_database_files(tmp_path):
    from gapscope.helpers import _store_lock

    assert _store_lock.queue_for(None) is None
    assert _store_lock.queue_for(":memory:") is None
    assert _store_lock.database_file("", {}) is None
    assert _store_lock.database_file("file::memory:?cache=shared", {"uri": "true"}) is None
    assert _store_lock.database_file("file:/x/a.db", {"uri": "true", "mode": "memory"}) is None
    assert _store_lock.database_file("file:/x/a.db", {"uri": "true", "mode": "ro"}) == "/x/a.db"
    assert _store_lock.database_file("file:a.db", {}) == "file:a.db"  # no uri: a plain name
    with LabelStore("sqlite://") as s:
        assert s._write_queue is None
        s.set_schema([0])
    with LabelStore(run_dir=tmp_path) as s:
        assert s._write_queue.path == str((tmp_path / "labels.sqlite").resolve()) + "-writeq"
        s.set_schema([0])
    assert (tmp_path / "labels.sqlite-writeq").exists()


def test_one_queue_per_file_whatever_the_path(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    a = LabelStore(f"sqlite:///{tmp_path}/real/db.sqlite")
    b = LabelStore(f"sqlite:///{tmp_path}/link/db.sqlite")
    c = LabelStore(f"sqlite:///file:{tmp_path}/real/db.sqlite?uri=true")
    try:
        assert a._write_queue.path == b._write_queue.path == c._write_queue.path
    finally:
        for s in (a, b, c):
            s.close()


@pytest.mark.parametrize("mode", [0o600, 0o660])
def test_queue_file_gets_the_database_permissions(tmp_path, mode):
    """Whoever may write the database (a group too) may queue; the umask takes nothing."""
    from gapscope.helpers import _store_lock

    db = tmp_path / "perm.sqlite"
    db.touch()
    os.chmod(db, mode)
    old_umask = os.umask(0o077)
    try:
        q = _store_lock.WriteQueue(str(db))
        with q.turn(timeout=5):
            pass
    finally:
        os.umask(old_umask)
    assert os.stat(q.path).st_mode & 0o777 == mode
    with LabelStore(f"sqlite:///{tmp_path}/shared.sqlite", mode=0o660) as s:
        s.set_schema([0])
    assert os.stat(tmp_path / "shared.sqlite-writeq").st_mode & 0o777 == 0o660

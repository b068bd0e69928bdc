"""Label store reliability and security: a writer killed with SIGKILL, concurrent writers,
retries, bad input. The backend-independent checks are functions taking a URL so that
test_store_postgres.py runs them on PostgreSQL too."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gapscope.helpers.store import MAX_CUES_BYTES, SCHEMA_VERSION, LabelStore, StoreError


@pytest.fixture(autouse=True)
def _no_store_url_from_env(monkeypatch):
    """A developer's GAPSCOPE_STORE_URL must not send these tests to their database."""
    monkeypatch.delenv("GAPSCOPE_STORE_URL", raising=False)


N_PROCS = 8
N_EVENTS = 500
N_ITEMS = 50


# ---- concurrent writers (shared with the PostgreSQL tests) ----------------------------------


def setup_concurrency_project(url, project):
    with LabelStore(url, project=project) as s:
        s.set_schema(labels=[0, 1, 2])
        s.add_items(list(range(N_ITEMS)), dataset="pool")


def _writer(url, project, w, start, errors):
    """Write N_EVENTS events: 100 single records, the rest in batches of 50, with retries.

    Simulated failures: every 25th single record is re-sent with the same key (an
    acknowledgement lost after the commit); every batch is first sent with a bad event at
    its end (the whole transaction must roll back), then sent clean, then re-sent once more
    (a retried batch). None of these may store anything twice.
    """
    try:
        with LabelStore(url, project=project) as s:
            start.wait()
            for i in range(100):
                ev = {
                    "item_id": (w * 7 + i) % N_ITEMS,
                    "kind": "label",
                    "annotator": f"w{w}",
                    "label": i % 3,
                    "key": f"{project}-w{w}-{i}",
                    "cues": {"worker": w, "i": i},
                }
                eid = s.record(**ev)
                if i % 25 == 24:
                    if s.record(**ev) != eid:
                        raise AssertionError("a retried record returned another id")
            for b in range(100, N_EVENTS, 50):
                batch = [
                    {
                        "item_id": (w + i) % N_ITEMS,
                        "kind": "accept" if i % 2 else "reject",
                        "annotator": f"w{w}",
                        "key": f"{project}-w{w}-{i}",
                    }
                    for i in range(b, b + 50)
                ]
                bad = {
                    "item_id": 10**6,
                    "kind": "accept",
                    "annotator": f"w{w}",
                    "key": f"{project}-w{w}-bad{b}",
                }
                try:
                    s.record_many([*batch, bad])
                    raise AssertionError("a batch with an unknown item was accepted")
                except ValueError:
                    pass
                ids = s.record_many(batch)
                if s.record_many(batch) != ids:
                    raise AssertionError("a retried batch returned other ids")
    except BaseException as exc:  # report to the parent, which asserts
        errors.put(f"worker {w}: {type(exc).__name__}: {exc}")
        raise


def run_concurrent_writers(url, project):
    """8 processes x 500 events at once: exactly 4000 events, no duplicate keys or ids."""
    setup_concurrency_project(url, project)
    ctx = mp.get_context("fork")
    start = ctx.Event()
    errors = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(url, project, w, start, errors)) for w in range(N_PROCS)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
    msgs = []
    while not errors.empty():
        msgs.append(errors.get())
    assert not msgs, msgs
    assert [p.exitcode for p in procs] == [0] * N_PROCS
    with LabelStore(url, project=project) as s:
        ev = s.events()
    assert len(ev) == N_PROCS * N_EVENTS
    assert ev["key"].is_unique and ev["event_id"].is_unique
    expected = {f"{project}-w{w}-{i}" for w in range(N_PROCS) for i in range(N_EVENTS)}
    assert set(ev["key"]) == expected
    assert ev.groupby("annotator").size().to_dict() == {f"w{w}": N_EVENTS for w in range(N_PROCS)}
    return ev


def _opener(url, q):
    try:
        with LabelStore(url) as s:
            q.put(s.schema_version())
    except BaseException as exc:
        q.put(f"{type(exc).__name__}: {exc}")


def run_concurrent_open(url, n=4):
    """Several processes opening one fresh database at once migrate it exactly once."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_opener, args=(url, q)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    results = [q.get(timeout=5) for _ in range(n)]
    return results


# ---- bad input (shared with the PostgreSQL tests) ---------------------------------------------

NASTY = 'Robert\'); DROP TABLE events;-- "x" ; \\ % _ ünïcødé ✓ 标签 \U0001f600'


def setup_bad_input_store(s):
    s.set_schema(labels=["cat", NASTY], tags=["ok", NASTY])
    s.add_items([1, 2, 3], dataset="d")
    s.record(1, "label", annotator="a", label="cat")


BAD_RECORDS = [
    # (kwargs, exception, message fragment)
    ({"item_id": 99}, ValueError, "item_id: expected an item added with add_items"),
    ({"item_id": "1"}, TypeError, "item_id: expected an int id"),
    ({"item_id": 1.0}, TypeError, "item_id: expected an int or str id, got float"),
    ({"item_id": None}, TypeError, "item_id: expected an int or str id, got NoneType"),
    ({"label": "dog"}, ValueError, "label: expected one of the schema labels"),
    ({"label": 1}, ValueError, "label: expected one of the schema labels"),
    ({"label": ["cat"]}, TypeError, "label: expected an int or str label, got list"),
    ({"label": None}, ValueError, "label: a 'label' event needs a label"),
    ({"annotator": ""}, ValueError, "annotator: expected a non-empty string"),
    ({"annotator": "   "}, ValueError, "annotator: expected a non-empty string"),
    ({"annotator": None}, TypeError, "annotator: expected a str, got NoneType"),
    ({"annotator": 5}, TypeError, "annotator: expected a str, got int"),
    ({"annotator": "a" * 201}, ValueError, "annotator: expected at most 200 characters"),
    ({"annotator": "nul\x00"}, ValueError, "annotator: NUL characters cannot be stored"),
    ({"kind": "labels"}, ValueError, "kind: expected one of"),
    ({"kind": "skip", "label": "cat"}, ValueError, "label: only .* events carry a label"),
    ({"tags": ["nope"]}, ValueError, "tags: expected tags of the schema"),
    ({"tags": "ok"}, TypeError, "tags: expected a sequence of str or None, got str"),
    ({"round": -1}, ValueError, "round: expected an int >= 0"),
    ({"round": 1.5}, TypeError, "round: expected an int, got float"),
    ({"round": True}, TypeError, "round: expected an int, got bool"),
    (
        {"cues": {"blob": "x" * MAX_CUES_BYTES}},
        ValueError,
        "cues: JSON encoding is .* larger than the cap",
    ),
    ({"cues": {"conf": float("inf")}}, ValueError, "cues: expected JSON-serialisable values"),
    ({"cues": {1: "int key"}}, TypeError, "cues: expected str keys"),
    ({"cues": {"obj": object()}}, ValueError, "cues: expected JSON-serialisable values"),
    ({"cues": "{}"}, TypeError, "cues: expected a dict or None, got str"),
    ({"key": ""}, ValueError, "key: expected a non-empty string"),
    ({"key": "k" * 65}, ValueError, "key: expected at most 64 characters"),
    ({"key": 7}, TypeError, "key: expected a str, got int"),
]


def check_bad_records(s):
    good = {"item_id": 2, "kind": "label", "annotator": "b", "label": "cat"}
    before = s.events()
    n_annotators = len(s.annotators())
    for kwargs, exc, match in BAD_RECORDS:
        ev = {**good, **kwargs}
        with pytest.raises(exc, match=match):
            s.record(ev.pop("item_id"), ev.pop("kind"), **ev)
        with pytest.raises(exc, match=r"events\[1\]\." + match):
            s.record_many([good, {**good, **kwargs}])
    with pytest.raises(ValueError, match=r"events\[0\]\.colour: unknown event field"):
        s.record_many([{**good, "colour": "red"}])
    with pytest.raises(ValueError, match=r"events\[0\]\.annotator: required event field"):
        s.record_many([{"item_id": 2, "kind": "skip"}])
    with pytest.raises(TypeError, match="events: expected a sequence of dicts, got dict"):
        s.record_many(good)
    after = s.events()
    assert after["event_id"].tolist() == before["event_id"].tolist()  # nothing written
    assert len(s.annotators()) == n_annotators  # not even the new annotator "b"


def check_verbatim_strings(s):
    cues = {"note": NASTY, NASTY: [NASTY, 1, None], "widget": "Labeler;--"}
    e = s.record(
        3, "label", annotator=NASTY, label=NASTY, tags=[NASTY, "ok"], cues=cues, key="k';--\"✓"
    )
    ev = s.events(item_ids=[3]).iloc[0]
    assert ev["event_id"] == e and ev["annotator"] == NASTY and ev["label"] == NASTY
    assert ev["tags"] == [NASTY, "ok"] and ev["cues"] == cues and ev["key"] == "k';--\"✓"
    assert s.schema() == {"labels": ["cat", NASTY], "tags": ["ok", NASTY]}
    assert NASTY in s.annotators()["name"].tolist()
    assert s.consensus().set_index("item_id").loc[3, "label"] == NASTY
    # the tables are all still there and the earlier event too
    assert len(s.events()) >= 2
    with pytest.raises(ValueError, match="annotator: expected a registered annotator"):
        s.set_weight("x' OR '1'='1", 0.0)
    assert (s.annotators()["weight"] == 1.0).all()


def check_only_bound_parameters(s):
    """Every statement the store sends is fixed SQL text; user strings travel as parameters."""
    from sqlalchemy import event as sa_event

    seen = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    sa_event.listen(s._engine, "before_cursor_execute", capture)
    try:
        s.add_items([10], dataset=NASTY)
        s.record(3, "label", annotator=NASTY, label=NASTY, tags=[NASTY], cues={"n": NASTY})
        s.record_many(
            [
                {"item_id": 2, "kind": "tag", "annotator": NASTY, "tags": [NASTY]},
                {"item_id": 1, "kind": "accept", "annotator": NASTY + "2"},
            ]
        )
        s.set_weight(NASTY, 0.5)
        s.events(annotator=NASTY)
        s.consensus()
    finally:
        sa_event.remove(s._engine, "before_cursor_execute", capture)
    assert seen, "no statements captured"
    fragments = ("Robert", "DROP TABLE", "ünïcødé", "标签")
    for statement, _ in seen:
        assert not any(f in statement for f in fragments), statement

    def values(params):
        if isinstance(params, dict):
            params = list(params.values())
        for v in params if isinstance(params, (list, tuple)) else [params]:
            if isinstance(v, (list, tuple, dict)):
                yield from values(v)
            else:
                yield v

    bound = [v for _, p in seen for v in values(p) if isinstance(v, str)]
    assert NASTY in bound  # the strings did reach the database, as bound parameters


# ---- SQLite tests ---------------------------------------------------------------------------------


def test_only_bound_parameters_reach_the_database(tmp_path):
    with LabelStore(run_dir=tmp_path) as s:
        setup_bad_input_store(s)
        check_only_bound_parameters(s)


def test_bad_input_is_refused_and_nothing_written(tmp_path):
    with LabelStore(run_dir=tmp_path) as s:
        setup_bad_input_store(s)
        check_bad_records(s)


def test_quotes_semicolons_unicode_stored_verbatim(tmp_path):
    with LabelStore(run_dir=tmp_path) as s:
        setup_bad_input_store(s)
        check_verbatim_strings(s)
    con = sqlite3.connect(tmp_path / "labels.sqlite")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert {"events", "items", "annotators", "projects", "schema_version"} <= tables


def test_string_item_ids_verbatim(tmp_path):
    with LabelStore(run_dir=tmp_path) as s:
        s.set_schema(["x"])
        s.add_items([NASTY, "plain"], dataset=NASTY)
        s.record(NASTY, "label", annotator="a", label="x")
        assert s.current_labels()["item_id"].tolist() == [NASTY]
        assert s.items()["dataset"].tolist() == [NASTY, NASTY]
        with pytest.raises(TypeError, match="item_id: expected a str id"):
            s.record(1, "skip", annotator="a")


@pytest.mark.slow
def test_concurrent_writers_sqlite(tmp_path):
    ev = run_concurrent_writers(f"sqlite:///{tmp_path}/c.sqlite", "conc")
    assert ev["event_id"].tolist() == sorted(ev["event_id"])
    con = sqlite3.connect(tmp_path / "c.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_concurrent_first_open_migrates_once(tmp_path):
    url = f"sqlite:///{tmp_path}/fresh.sqlite"
    assert run_concurrent_open(url) == [SCHEMA_VERSION] * 4
    con = sqlite3.connect(tmp_path / "fresh.sqlite")
    versions = [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    con.close()


def test_retry_after_failure_before_commit(tmp_path):
    """A failure inside the transaction rolls everything back; the retry stores it once."""
    from sqlalchemy import event as sa_event

    with LabelStore(run_dir=tmp_path) as s:
        s.set_schema([0, 1])
        s.add_items([1, 2], dataset="d")
        fail = {"armed": True}

        def boom(conn):
            if fail["armed"]:
                fail["armed"] = False
                raise OSError("simulated: connection lost during commit")

        sa_event.listen(s._engine, "commit", boom)
        batch = [
            {"item_id": 1, "kind": "label", "annotator": "a", "label": 0, "key": "r1"},
            {"item_id": 2, "kind": "label", "annotator": "a", "label": 1, "key": "r2"},
        ]
        with pytest.raises(OSError, match="simulated"):
            s.record_many(batch)
        assert s.events().empty
        ids = s.record_many(batch)  # the client's retry
        assert s.record_many(batch) == ids  # and a second, after a lost acknowledgement
        assert s.events()["key"].tolist() == ["r1", "r2"]


# The writer for the SIGKILL test: acknowledges each write on stdout only after it returned.
_KILL_WRITER = textwrap.dedent(
    """
    import sys
    from gapscope.helpers.store import LabelStore
    s = LabelStore(sys.argv[1])
    i = 0
    while True:
        if i % 4 == 3:
            keys = [f"k{i}-{j}" for j in range(20)]
            s.record_many([{"item_id": (i + j) % 20, "kind": "accept", "annotator": "w",
                            "key": k, "cues": {"pad": "x" * 500}} for j, k in enumerate(keys)])
        else:
            keys = [f"k{i}"]
            s.record(i % 20, "label", annotator="w", label=i % 2, key=keys[0])
        print(" ".join(keys), flush=True)
        i += 1
    """
)


def test_sigkill_writer_loses_nothing_acknowledged(tmp_path):
    db = tmp_path / "kill.sqlite"
    url = f"sqlite:///{db}"
    with LabelStore(url) as s:
        s.set_schema([0, 1])
        s.add_items(list(range(20)), dataset="d")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_WRITER, url], stdout=subprocess.PIPE, text=True, env=env
    )
    acked = []
    deadline = time.monotonic() + 60
    while len(acked) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.extend(line.split())
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the writer never stops by itself
    rest, _ = proc.communicate(timeout=30)
    acked.extend(rest.split())
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 300, "the writer did not get going"

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with LabelStore(url) as s:
        ev = s.events()
        stored = set(ev["key"])
        assert set(acked) <= stored  # every acknowledged record survived
        assert ev["key"].is_unique
        # batches are all-or-nothing: a batch is either entirely there or absent
        batch_keys = ev["key"][ev["key"].str.contains("-")]
        sizes = batch_keys.str.split("-").str[0].value_counts()
        assert (sizes == 20).all()
        # the client retries what it had not seen acknowledged (the write in flight when
        # the writer died may or may not be stored): each retry stores it exactly once
        last = max(int(k.split("-")[0][1:]) for k in acked)
        for i in (last + 1, last + 2):
            batch = _kill_writer_events(i)
            s.record_many(batch)
            s.record_many(batch)
        ev2 = s.events()
        assert ev2["key"].is_unique
        for i in (last + 1, last + 2):
            assert set(k["key"] for k in _kill_writer_events(i)) <= set(ev2["key"])


def _kill_writer_events(i):
    """The events the SIGKILL writer sends at step i (kept in step with _KILL_WRITER)."""
    if i % 4 == 3:
        return [
            {
                "item_id": (i + j) % 20,
                "kind": "accept",
                "annotator": "w",
                "key": f"k{i}-{j}",
                "cues": {"pad": "x" * 500},
            }
            for j in range(20)
        ]
    return [{"item_id": i % 20, "kind": "label", "annotator": "w", "label": i % 2, "key": f"k{i}"}]


def test_writer_waits_for_lock_then_raises_store_error(tmp_path):
    """A writer blocked longer than `timeout` gets a StoreError, and nothing is written."""
    db = tmp_path / "lock.sqlite"
    with LabelStore(f"sqlite:///{db}", timeout=0.3) as s:
        s.set_schema([0])
        s.add_items([1], dataset="d")
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            t0 = time.monotonic()
            with pytest.raises(StoreError, match="another writer held the lock"):
                s.record(1, "label", annotator="a", label=0)
            assert time.monotonic() - t0 >= 0.25
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert s.events().empty
        s.record(1, "label", annotator="a", label=0)
        assert len(s.events()) == 1


def test_int_ids_accept_numpy_and_return_python_ints(tmp_path):
    with LabelStore(run_dir=tmp_path) as s:
        s.set_schema([0, 1])
        ids = np.array([2**40, -3, 0], dtype=np.int64)
        s.add_items(ids, dataset="pool")
        s.record(ids[0], "label", annotator="a", label=np.int64(1))
        cur = s.current_labels()
        assert cur["item_id"].tolist() == [2**40] and cur["label"].tolist() == [1]
        assert s.items()["item_id"].tolist() == [-3, 0, 2**40]

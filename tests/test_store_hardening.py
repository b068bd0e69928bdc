"""Label store hardening (issue 14): secrets never shown, projects isolated on one database,
consensus ties exact, bad input refused with clear errors, private files.

The checks that also run on PostgreSQL are functions taking a URL (``check_*``,
``make_v2_database``); test_store_postgres.py calls them against a real server.
"""

from __future__ import annotations

import decimal
import itertools
import os
import sqlite3
import stat
import traceback

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gapscope.helpers import _store_schema as S
from gapscope.helpers import store as M
from gapscope.helpers.store import LabelStore, StoreClosedError, StoreError


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch):
    """A developer's GAPSCOPE_STORE_URL / _MODE must not change these tests."""
    monkeypatch.delenv("GAPSCOPE_STORE_URL", raising=False)
    monkeypatch.delenv("GAPSCOPE_STORE_MODE", raising=False)


# ---- item 5: secrets in URLs -----------------------------------------------------------------


def shown_text(exc: BaseException) -> str:
    """Everything a user can see of an exception: str, repr and the printed traceback."""
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


def check_not_shown(exc: BaseException, secrets) -> None:
    text = shown_text(exc)
    for secret in secrets:
        assert secret not in text, f"{secret!r} shown in:\n{text}"
    # no driver exception chained to the store's error
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


SECRET_QUERIES = [
    ("password=QSecret1", ["QSecret1"]),
    ("PASSWORD=QSecret2", ["QSecret2"]),
    ("passwd=QSecret3&pwd=QSecret4", ["QSecret3", "QSecret4"]),
    ("sslpassword=QSecret5", ["QSecret5"]),
    ("token=QSecret6&Secret=QSecret7", ["QSecret6", "QSecret7"]),
    ("password=p%40ss%2Fw%3Ard", ["p@ss/w:rd", "p%40ss%2Fw%3Ard"]),
]


@pytest.mark.filterwarnings("ignore:Query string argument")
@pytest.mark.parametrize("query, secrets", SECRET_QUERIES)
def test_query_secrets_masked_in_repr_url_and_closed_error(tmp_path, query, secrets):
    s = LabelStore(f"sqlite:///{tmp_path}/q.sqlite?{query}")
    for text in (repr(s), s.url, str(s)):
        assert "***" in text and not any(x in text for x in secrets), text
    s.close()
    assert not any(x in repr(s) for x in secrets)
    with pytest.raises(StoreClosedError, match=r"store is closed \(sqlite:///.*\*\*\*") as err:
        s.events()
    check_not_shown(err.value, secrets)


@pytest.mark.parametrize(
    "url, secrets",
    [
        ("postgresql+psycopg://bob:USecret9@127.0.0.1:1/db", ["USecret9"]),
        *[(f"postgresql+psycopg://bob@127.0.0.1:1/db?{q}", s) for q, s in SECRET_QUERIES],
    ],
)
def test_secrets_masked_when_the_store_cannot_open(url, secrets):
    with pytest.raises(StoreError, match="cannot open the store at postgresql") as err:
        LabelStore(url, timeout=2)
    assert "***" in str(err.value)
    check_not_shown(err.value, secrets)


def test_driver_error_text_is_scrubbed_and_not_chained(tmp_path, monkeypatch):
    """A driver error whose text holds the URL or a DSN is scrubbed; it is not chained."""
    url = f"sqlite:///{tmp_path}/d.sqlite?password=DrvSecret1"
    with pytest.warns(sa.exc.SAWarning):
        s = LabelStore(url)

    def boom(conn):
        raise sa.exc.OperationalError(
            "SELECT 1",
            {"dsn": "host=h password=DrvSecret1"},
            Exception(
                f"could not connect to {url}: host=h password=DrvSecret1 dbname=d; "
                "also 'password': 'OtherPw2' and postgresql://u:OtherPw3@h/db"
            ),
        )

    monkeypatch.setattr(S, "current_version", boom)
    with pytest.raises(StoreError, match="reading .* failed: could not connect") as err:
        s.schema_version()
    check_not_shown(err.value, ["DrvSecret1", "OtherPw2", "OtherPw3"])
    s.close()


def test_write_error_masks_secrets(tmp_path):
    """The lock-timeout error of a write names the store without its secrets."""
    db = tmp_path / "lock.sqlite"
    with pytest.warns(sa.exc.SAWarning):
        s = LabelStore(f"sqlite:///{db}?token=WrSecret1", timeout=0.3)
    s.set_schema([0])
    s.add_items([1], dataset="d")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="writing to .*token=\\*\\*\\*") as err:
            s.record(1, "label", annotator="a", label=0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    check_not_shown(err.value, ["WrSecret1"])
    s.close()


# ---- item 6: projects on one database are isolated ------------------------------------------------


def check_projects_isolated(url, tmp_path):
    """Two projects with the same item ids, annotator names and keys see only their own."""
    a = LabelStore(url, project="pilot")
    b = LabelStore(url, project="main")
    try:
        a.set_schema(["x", "y"], tags=["t1"])
        b.set_schema(["y", "z", "x"], tags=["t2"])
        a.add_items([1, 2, 3], dataset="pilot-set")
        b.add_items([1, 2, 3], dataset="main-set", source="synthetic")
        a.add_annotator("ann", weight=0.5)
        b.add_annotator("ann", weight=2.0)
        ea = a.record(1, "label", annotator="ann", label="x", key="k1")
        eb = b.record(1, "label", annotator="ann", label="z", key="k1")  # same key, other payload
        a.record(2, "accept", annotator="bob", key="k2")
        b.record(2, "reject", annotator="bob", key="k2")
        assert ea != eb
        # retries and payload checks stay within the project
        assert a.record(1, "label", annotator="ann", label="x", key="k1") == ea
        assert b.record(1, "label", annotator="ann", label="z", key="k1") == eb
        with pytest.raises(StoreError, match="different payload"):
            a.record(1, "label", annotator="ann", label="y", key="k1")
        # the same CSV imported into both (failed with "already stored with a different
        # payload" while keys were unique across the database)
        csv = tmp_path / "labels.csv"
        csv.write_text("item_id,label\n3,x\n")
        assert a.import_csv(csv, annotator="csv") == 1
        assert b.import_csv(csv, annotator="csv") == 1
        assert a.import_csv(csv, annotator="csv") == 0 and b.import_csv(csv, annotator="csv") == 0

        assert a.schema() == {"labels": ["x", "y"], "tags": ["t1"]}
        assert b.schema() == {"labels": ["y", "z", "x"], "tags": ["t2"]}
        assert a.items()["dataset"].tolist() == ["pilot-set"] * 3
        assert b.items()["source"].tolist() == ["synthetic"] * 3
        ev_a, ev_b = a.events(), b.events()
        assert ev_a["key"].tolist()[:2] == ["k1", "k2"] and ev_b["key"].tolist()[:2] == ["k1", "k2"]
        assert set(ev_a["event_id"]).isdisjoint(ev_b["event_id"])
        assert ev_a["label"].tolist() == ["x", None, "x"]
        assert ev_b["label"].tolist() == ["z", None, "x"]
        assert ev_a["kind"].tolist() == ["label", "accept", "label"]
        assert ev_b["kind"].tolist() == ["label", "reject", "label"]
        ann_a, ann_b = a.annotators(), b.annotators()
        assert ann_a["name"].tolist() == ["ann", "bob", "csv"]
        assert ann_a["weight"].tolist() == [0.5, 1.0, 1.0]
        assert ann_b["weight"].tolist() == [2.0, 1.0, 1.0]
        assert set(ann_a["annotator_id"]).isdisjoint(ann_b["annotator_id"])
        assert a.current_labels()["label"].tolist() == ["x", "x"]
        assert b.current_labels()["label"].tolist() == ["z", "x"]
        assert a.consensus()["label"].tolist() == ["x", "x"]
        assert b.consensus()["label"].tolist() == ["z", "x"]
        assert a.quality().to_dict() == {2: 1.0} and b.quality().to_dict() == {2: 0.0}
        assert a.status([1, 2, 3])["last_kind"].tolist() == ["label", "accept", "label"]
        assert b.status([2])["accepted"].tolist() == [False]
        assert a.agreement()["annotator"].tolist() == ["ann", "bob", "csv"]
        assert a.to_dataframe()["label"].tolist() == ["x", None, "x"]
        # weights are per project
        a.set_weight("ann", 0.25)
        assert b.annotators()["weight"].tolist() == [2.0, 1.0, 1.0]
        b.set_weights_from_agreement()
        assert a.annotators()["weight"].tolist() == [0.25, 1.0, 1.0]
        # another project's event cannot be referred to
        with pytest.raises(ValueError, match="ref_event: expected the id of a stored event of"):
            b.record(1, "undo", annotator="ann", ref_event=ea)
        with pytest.raises(ValueError, match="ref_event: expected the id of a stored event of"):
            b.record(1, "correct", annotator="ann", label="y", ref_event=ea)
        # a second store object on the same project sees the same data
        with LabelStore(url, project="pilot") as a2:
            assert a2.events()["event_id"].tolist() == a.events()["event_id"].tolist()
            assert a2.annotators()["weight"].tolist() == [0.25, 1.0, 1.0]
    finally:
        a.close()
        b.close()


def test_projects_isolated_sqlite(tmp_path):
    check_projects_isolated(f"sqlite:///{tmp_path}/shared.sqlite", tmp_path)


def test_projects_isolated_through_environment_url(tmp_path, monkeypatch):
    """Runs pointed at one database by GAPSCOPE_STORE_URL collide no more."""
    monkeypatch.setenv("GAPSCOPE_STORE_URL", f"sqlite:///{tmp_path}/env.sqlite")
    for project in ("run-1", "run-2"):
        with LabelStore(run_dir=tmp_path / "ignored", project=project) as s:
            s.set_schema([0, 1])
            s.add_items([0, 1], dataset="d")
            s.record(0, "label", annotator="loop", label=int(project[-1]) - 1, key="round0-0")
    with LabelStore(project="run-2") as s:
        assert s.current_labels()["label"].tolist() == [1]
        assert s.events()["key"].tolist() == ["round0-0"]


def make_v2_database(url):
    """A database as version 2 left it: two projects sharing annotators (and weights)."""
    engine = sa.create_engine(url)
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    with engine.begin() as conn:
        S.upgrade(conn, target=2)
        ts = now.replace(tzinfo=None) if conn.dialect.name == "sqlite" else now
        md = sa.MetaData()
        md.reflect(conn)
        t = md.tables
        for name, labels in (("main", '["x", "y"]'), ("pilot", '["y", "x"]')):
            conn.execute(
                sa.insert(t["projects"]).values(
                    name=name,
                    labels=labels,
                    tags="[]",
                    label_kind="str",
                    id_kind="int",
                    updated_at=ts,
                )
            )
            for item in ("1", "2"):
                conn.execute(
                    sa.insert(t["items"]).values(
                        project=name,
                        item_id=item,
                        dataset=f"{name}-set",
                        source="real",
                        round=0,
                        created_at=ts,
                    )
                )
        for i, (name, w) in enumerate([("ann", 0.5), ("bob", 2.0), ("idle", 0.7)], start=1):
            conn.execute(
                sa.insert(t["annotators"]).values(id=i, name=name, weight=w, created_at=ts)
            )
        events = [
            (1, "m1", "main", "1", "label", 1, "x", None),
            (2, "p1", "pilot", "1", "label", 1, "y", None),
            (3, "m2", "main", "1", "label", 2, "y", None),
            (4, "p2", "pilot", "1", "label", 2, "x", None),
            (5, "p3", "pilot", "2", "label", 2, "x", None),
            (6, "p4", "pilot", "2", "undo", 2, None, 5),
            (7, "m3", "main", "2", "accept", 1, None, None),
        ]
        for eid, key, project, item, kind, ann, label, ref in events:
            conn.execute(
                sa.insert(t["events"]).values(
                    id=eid,
                    key=key,
                    project=project,
                    item_id=item,
                    kind=kind,
                    annotator_id=ann,
                    label=label,
                    ref_event=ref,
                    round=0,
                    cues='{"c": 1}',
                    ts=ts,
                    client="old:1",
                )
            )
    engine.dispose()


def check_v2_database_upgraded(url):
    with LabelStore(url, project="main") as m, LabelStore(url, project="pilot") as p:
        assert m.schema_version() == 3
        ev_m, ev_p = m.events(), p.events()
        assert ev_m["event_id"].tolist() == [1, 3, 7] and ev_m["key"].tolist() == ["m1", "m2", "m3"]
        assert ev_p["event_id"].tolist() == [2, 4, 5, 6]
        assert ev_p["effective"].tolist() == [True, True, False, True]
        assert ev_p["ref_event"].tolist()[3] == 5
        assert ev_m["annotator"].tolist() == ["ann", "bob", "ann"]
        assert ev_m["cues"].tolist() == [{"c": 1}] * 3 and ev_m["client"].tolist() == ["old:1"] * 3
        assert (ev_m["ts"].dt.tz is not None) and ev_m["ts"].notna().all()
        # every annotator (with its weight) is now in every project
        for s in (m, p):
            ann = s.annotators()
            assert ann["name"].tolist() == ["ann", "bob", "idle"]
            assert ann["weight"].tolist() == [0.5, 2.0, 0.7]
        assert m.annotators()["annotator_id"].tolist() == [1, 2, 3]  # first project keeps ids
        # the views are what they were
        assert m.consensus().set_index("item_id")["label"].to_dict() == {1: "y"}
        assert p.consensus().set_index("item_id")["label"].to_dict() == {1: "x"}
        assert m.quality().to_dict() == {2: 0.5}
        # and the projects are now isolated: a key of one is free in the other, weights apart
        e = p.record(1, "label", annotator="ann", label="x", key="m1")
        assert e == 8  # ids continue after the old ones (PostgreSQL: the sequence moved)
        p.set_weight("bob", 0.0)
        assert m.annotators()["weight"].tolist() == [0.5, 2.0, 0.7]
        assert m.add_annotator("new") == 7
        assert p.consensus().set_index("item_id")["label"].to_dict() == {1: "x"}


def test_v2_database_upgrades_in_place_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/v2.sqlite"
    make_v2_database(url)
    check_v2_database_upgraded(url)
    con = sqlite3.connect(tmp_path / "v2.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert not any(n.startswith("_v3") for n in tables)
        assert "ix_events_project_item" in {r[1] for r in con.execute("PRAGMA index_list(events)")}
        versions = [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY 1")]
        assert versions == [1, 2, 3]
    finally:
        con.close()


# ---- item 8: consensus ties do not depend on float rounding or order --------------------------------


def test_consensus_tie_follows_schema_order_in_every_recording_order():
    """0.1 + 0.2 (y) ties with 0.3 (x): x, the first in the schema, wins in every order."""
    votes = [("a", 0.1, "y"), ("b", 0.2, "y"), ("c", 0.3, "x")]
    for order in itertools.permutations(votes):
        with LabelStore("sqlite://") as s:
            s.set_schema(["x", "y"])
            s.add_items([0], dataset="d")
            for ann, w, _ in votes:
                s.add_annotator(ann, weight=w)
            for ann, _, lab in order:
                s.record(0, "label", annotator=ann, label=lab)
            row = s.consensus().iloc[0]
            assert (row["label"], row["support"]) == ("x", 0.5), order
            # quality is exact too: (0.1 + 0.2) / 3 accepts is 0.1, not 0.10000000000000002
            for ann, _, lab in order:
                s.record(0, "accept" if lab == "y" else "reject", annotator=ann)
            assert s.quality().tolist() == [0.1]
            assert s.quality(normalize=True).tolist() == [0.5]
            assert s.accepted(0.1) == []


def _reference_winner(votes, weights, schema):
    """Exact decimal scores (the weights as written), ties to the earliest schema label."""
    score = {}
    for ann, lab in votes.items():
        score[lab] = score.get(lab, decimal.Decimal(0)) + decimal.Decimal(str(weights[ann]))
    best = max(score.values())
    return next(lab for lab in schema if score.get(lab) == best)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_consensus_is_exact_and_order_free(data):
    """Ties built on purpose: the y voters' weights (tenths) re-split among the x voters."""
    tenths_y = data.draw(st.lists(st.integers(1, 9), min_size=1, max_size=3), label="y")
    total = sum(tenths_y)
    cuts = sorted(data.draw(st.sets(st.integers(1, total - 1), max_size=2))) if total > 1 else []
    tenths_x = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    if not data.draw(st.booleans(), label="tied"):
        tenths_x[-1] = max(0, tenths_x[-1] + data.draw(st.sampled_from([-1, 1])))
    tenths_z = data.draw(st.lists(st.integers(0, 9), max_size=1), label="z")
    schema = data.draw(st.permutations(["x", "y", "z"]), label="schema")
    votes, weights = {}, {}
    for lab, tenths in (("y", tenths_y), ("x", tenths_x), ("z", tenths_z)):
        for k in tenths:
            name = f"v{len(votes)}"
            votes[name], weights[name] = lab, k / 10
    order = data.draw(st.permutations(sorted(votes)), label="order")
    want = _reference_winner(votes, weights, schema)
    with LabelStore("sqlite://") as s:
        s.set_schema(schema)
        s.add_items([0], dataset="d")
        for a, w in weights.items():
            s.add_annotator(a, weight=w)
        for a in order:
            s.record(0, "label", annotator=a, label=votes[a])
        assert s.consensus()["label"].tolist() == [want]


# ---- item 9: bad input gets a clear error and nothing is written ------------------------------------


def _nested(depth):
    """A dict with ``depth`` levels of containers in all (the top dict is one)."""
    inner: object = 1
    for _ in range(depth - 1):
        inner = [inner]
    return {"deep": inner}


HARDENED_BAD_RECORDS = [
    # (record kwargs on top of a valid 'undo'/'label' event, exception, message fragment)
    (
        {"kind": "undo", "label": None, "ref_event": 2**63},
        ValueError,
        r"ref_event: expected an int <= 9223372036854775807 \(an event id\), got 9223372036854775808",
    ),
    (
        {"kind": "undo", "label": None, "ref_event": 10**5000},
        ValueError,
        r"ref_event: expected an int <= .* got an int of 16610 bits",
    ),
    ({"round": 2**31}, ValueError, r"round: expected an int <= 2147483647 \(MAX_ROUND"),
    ({"round": 2**64}, ValueError, r"round: expected an int <= 2147483647"),
    (
        {"annotator": "ann\ud800"},
        ValueError,
        r"annotator: expected valid Unicode text, got a lone surrogate '\\ud800' at position 3",
    ),
    ({"key": "k\udfff"}, ValueError, r"key: expected valid Unicode text, got a lone surrogate"),
    (
        {"kind": "flag_bias", "label": None, "tags": ["ok", "t\ud800"]},
        ValueError,
        r"tags\[1\]: expected valid Unicode text",
    ),
    ({"cues": {"note": "x\ud800"}}, ValueError, r"cues\['note'\]: expected valid Unicode text"),
    ({"cues": {"k\udc00": 1}}, ValueError, r"cues key: expected valid Unicode text"),
    (
        {"cues": {"a": ["ok", {"b": "\ud83d"}]}},
        ValueError,
        r"cues\['a'\]\[1\]\['b'\]: expected valid Unicode text",
    ),
    (
        {"cues": _nested(5000)},
        ValueError,
        r"cues: expected at most 32 levels of nested lists/dicts",
    ),
    ({"cues": _nested(33)}, ValueError, r"cues: expected at most 32 levels"),
    (
        {"cues": {"big": list(range(20_000))}},
        ValueError,
        r"cues: JSON encoding is over 16384 bytes, larger than the cap",
    ),
    ({"item_id": 2**64}, ValueError, r"item_id: expected an int64 id"),
    ({"item_id": 10**5000}, ValueError, r"item_id: expected an int64 id .* got an int of"),
    ({"label": "cat\ud800"}, ValueError, r"label: expected valid Unicode text"),
]


def setup_hardening_store(s):
    s.set_schema(labels=["cat", "dog"], tags=["ok"])
    s.add_items([1, 2, 3], dataset="d")
    s.record(1, "label", annotator="ann", label="cat", round=M.MAX_ROUND)


def check_hardened_bad_input(s, tmp_path):
    """Each bad value: a ValueError naming the argument; nothing written, even on PG."""
    good = {"item_id": 1, "kind": "label", "annotator": "ann", "label": "dog"}
    before = s.events()
    n_ann, n_items = len(s.annotators()), len(s.items())
    for kwargs, exc, match in HARDENED_BAD_RECORDS:
        ev = {**good, **kwargs}
        with pytest.raises(exc, match=match):
            s.record(ev.pop("item_id"), ev.pop("kind"), **ev)
        with pytest.raises(exc, match=r"events\[1\]\." + match):
            s.record_many([good, {**good, **kwargs}])
    with pytest.raises(ValueError, match=r"round: expected an int <= 2147483647"):
        s.add_items([7], dataset="d", round=2**31)
    with pytest.raises(ValueError, match=r"provenance: expected at most 32 levels"):
        s.add_items([7], dataset="d", provenance=_nested(5000))
    with pytest.raises(ValueError, match=r"provenance\[1\]\['g'\]: expected valid Unicode"):
        s.add_items([7, 8], dataset="d", provenance=[{}, {"g": "\ud800"}])
    with pytest.raises(ValueError, match=r"dataset: expected valid Unicode text"):
        s.add_items([7], dataset="d\ud800")
    with pytest.raises(ValueError, match=r"ids\[0\]: expected an int64 id"):
        s.add_items([2**64], dataset="d")
    with pytest.raises(ValueError, match=r"annotator: expected valid Unicode text"):
        s.add_annotator("x\ud800")
    with pytest.raises(ValueError, match=r"labels\[1\]: expected valid Unicode text"):
        s.set_schema(["cat", "dog\ud800"], tags=["ok"])
    with pytest.raises(ValueError, match=r"tags\[0\]: expected valid Unicode text"):
        s.set_schema(["cat", "dog"], tags=["ok\ud800"])
    with pytest.raises(ValueError, match=r"labels\[0\]: expected an int64 label"):
        s.set_schema([2**63, 1])
    with pytest.raises(ValueError, match=r"item_ids\[0\]: expected an int64 id"):
        s.status([10**5000])
    csv = tmp_path / "round.csv"
    csv.write_text("item_id,label\n2,cat\n")
    with pytest.raises(ValueError, match=r"round: expected an int <= 2147483647"):
        s.import_csv(csv, annotator="csv", round=2**31)
    csv.write_text(f"item_id,label,round\n2,cat,{2**31}\n")
    with pytest.raises(ValueError, match=r"rows\[0\]\.round: expected an int <= 2147483647"):
        s.import_csv(csv, annotator="csv")
    after = s.events()
    assert after["event_id"].tolist() == before["event_id"].tolist()  # nothing written
    assert len(s.annotators()) == n_ann and len(s.items()) == n_items
    assert s.schema() == {"labels": ["cat", "dog"], "tags": ["ok"]}
    # the limits themselves are accepted, the same on every backend
    assert M.MAX_ROUND == 2**31 - 1 and M.MAX_JSON_DEPTH == 32
    e = s.record(2, "label", annotator="ann", label="cat", round=M.MAX_ROUND, cues=_nested(32))
    assert s.events(item_ids=[2])["round"].tolist() == [M.MAX_ROUND]
    assert s.events(item_ids=[2])["cues"].tolist() == [_nested(32)]
    assert s.add_items([9], dataset="d", round=M.MAX_ROUND) == 1
    s.record(2, "undo", annotator="ann", ref_event=e)


def test_hardened_bad_input_sqlite(tmp_path):
    with LabelStore(run_dir=tmp_path) as s:
        setup_hardening_store(s)
        check_hardened_bad_input(s, tmp_path)


def _corrupt_pages(path):
    """Overwrite part of every page after the first three of a real store."""
    data = bytearray(path.read_bytes())
    for off in range(4096 * 3, len(data), 4096):
        data[off + 100 : off + 400] = os.urandom(300)
    path.write_bytes(bytes(data))


def _real_store_file(path):
    with LabelStore(f"sqlite:///{path}") as s:
        s.set_schema([0, 1])
        s.add_items(list(range(3000)), dataset="d")


@pytest.mark.parametrize("kind", ["random", "text", "header_then_random", "damaged_pages"])
def test_damaged_sqlite_file_is_refused_at_open(tmp_path, kind):
    path = tmp_path / "labels.sqlite"
    if kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "text":
        path.write_text("item_id,label\n1,cat\n" * 200)
    elif kind == "header_then_random":
        path.write_bytes(b"SQLite format 3\x00" + os.urandom(4080))
    else:
        _real_store_file(path)
        _corrupt_pages(path)
    with pytest.raises(StoreError, match="cannot open the store at sqlite:///") as err:
        LabelStore(run_dir=tmp_path)
    text = str(err.value)
    assert str(path) in text and ("damaged" in text or "not a SQLite database" in text)
    assert "[SQL" not in text and "SELECT" not in text


def test_damage_after_open_is_a_store_error_without_sql(tmp_path):
    path = tmp_path / "labels.sqlite"
    _real_store_file(path)
    s = LabelStore(run_dir=tmp_path)
    _corrupt_pages(path)
    s._engine.dispose()  # the next call reads the damaged file through a new connection
    with pytest.raises(StoreError, match=f"{path}") as err:
        s.items()
    assert "[SQL" not in str(err.value) and "malformed" in str(err.value)
    assert err.value.__cause__ is None
    s.close()


def test_foreign_database_is_refused(tmp_path):
    con = sqlite3.connect(tmp_path / "other.sqlite")
    con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=r"has the tables \['events'\] .*not a gapscope label"):
        LabelStore(f"sqlite:///{tmp_path}/other.sqlite")


# ---- item 13: private files by default, group sharing on request ------------------------------


@pytest.fixture
def umask_022():
    old = os.umask(0o022)  # a common default, which made the store's files world-readable
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _write_some(s):
    s.set_schema([0, 1])
    s.add_items([1, 2], dataset="d")
    s.record(1, "label", annotator="a", label=1)


def test_files_and_folders_are_private_by_default(tmp_path, umask_022):
    run = tmp_path / "runs" / "r1"
    with LabelStore(run_dir=run) as s:
        _write_some(s)
        db = run / "labels.sqlite"
        for suffix in ("", "-wal", "-shm"):
            assert (run / f"labels.sqlite{suffix}").exists()
            assert _mode(f"{db}{suffix}") == 0o600, suffix
        assert _mode(run) == 0o700 and _mode(tmp_path / "runs") == 0o700
        assert _mode(s.export_csv(tmp_path / "out" / "items.csv")) == 0o600
        assert _mode(tmp_path / "out") == 0o700
        assert _mode(s.export_parquet(tmp_path / "items.parquet", what="events")) == 0o600
    explicit = tmp_path / "explicit.sqlite"
    with LabelStore(f"sqlite:///{explicit}") as s:
        _write_some(s)
        assert _mode(explicit) == 0o600 and _mode(f"{explicit}-wal") == 0o600
    pre = tmp_path / "pre"
    pre.mkdir()
    os.chmod(pre, 0o755)
    with LabelStore(run_dir=pre / "new"):
        assert _mode(pre / "new") == 0o700
    assert _mode(pre) == 0o755  # folders the store did not create are left alone


def test_group_mode_shares_the_store(tmp_path, umask_022):
    run = tmp_path / "shared"
    with LabelStore(run_dir=run, mode=0o660) as s:
        _write_some(s)
        for suffix in ("", "-wal", "-shm"):
            assert _mode(run / f"labels.sqlite{suffix}") == 0o660, suffix
        assert _mode(run) == 0o770  # exact, whatever the umask
        assert _mode(s.export_csv(run / "items.csv")) == 0o660


def test_mode_from_environment(tmp_path, umask_022, monkeypatch):
    monkeypatch.setenv("GAPSCOPE_STORE_MODE", "640")
    with LabelStore(run_dir=tmp_path / "env") as s:
        _write_some(s)
        assert _mode(tmp_path / "env" / "labels.sqlite") == 0o640
        assert _mode(tmp_path / "env") == 0o750
    monkeypatch.setenv("GAPSCOPE_STORE_MODE", "0o600")
    with LabelStore(run_dir=tmp_path / "env2"):
        assert _mode(tmp_path / "env2" / "labels.sqlite") == 0o600
    monkeypatch.setenv("GAPSCOPE_STORE_MODE", "rw-rw----")
    with pytest.raises(ValueError, match="GAPSCOPE_STORE_MODE: expected octal permission bits"):
        LabelStore(run_dir=tmp_path / "env3")
    assert not (tmp_path / "env3").exists()


@pytest.mark.parametrize(
    "mode, exc, match",
    [
        (0o700, ValueError, "mode: expected read/write permission bits .* got 0o700"),
        (0o400, ValueError, "mode: expected read/write permission bits .* got 0o400"),
        (0o4600, ValueError, "got 0o4600"),
        (-1, ValueError, "got -1"),
        ("660", TypeError, "mode: expected an int such as 0o600 or None, got str"),
        (True, TypeError, "got bool"),
    ],
)
def test_bad_mode_is_refused(tmp_path, mode, exc, match):
    with pytest.raises(exc, match=match):
        LabelStore(run_dir=tmp_path / "never", mode=mode)
    assert not (tmp_path / "never").exists()


def test_existing_database_keeps_its_mode(tmp_path, umask_022):
    with LabelStore(run_dir=tmp_path):
        pass
    os.chmod(tmp_path / "labels.sqlite", 0o640)
    with LabelStore(run_dir=tmp_path) as s:
        _write_some(s)
        assert _mode(tmp_path / "labels.sqlite") == 0o640
        assert _mode(tmp_path / "labels.sqlite-wal") == 0o640  # SQLite copies the file's mode

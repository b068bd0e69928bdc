"""Label store: API, event semantics, derived views against an independent replay, export,
import, migrations. Reliability (crash, concurrency, bad input) is in test_store_reliability.py;
the same checks on PostgreSQL are in test_store_postgres.py."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gapscope.helpers import _store_schema as S
from gapscope.helpers.store import (
    EVENT_KINDS,
    SCHEMA_VERSION,
    LabelStore,
    StoreClosedError,
    StoreError,
)


@pytest.fixture(autouse=True)
def _no_store_url_from_env(monkeypatch):
    """A developer's GAPSCOPE_STORE_URL must not send these tests to their database."""
    monkeypatch.delenv("GAPSCOPE_STORE_URL", raising=False)


@pytest.fixture
def store(tmp_path):
    s = LabelStore(run_dir=tmp_path)
    s.set_schema(labels=[0, 1, 2], tags=["blurry", "rare"])
    s.add_items(np.arange(10, dtype=np.int64), dataset="digits")
    yield s
    s.close()


# ---- an independent reference: replay the log with plain Python ---------------------------


def reference_views(events, weights, label_order):
    """Replay (event_id, item, annotator, kind, label, ref) tuples the slow, obvious way."""
    by_id = {e[0]: e for e in events}
    undos_of = {}
    for e in events:
        if e[3] == "undo":
            undos_of.setdefault(e[5], []).append(e[0])

    memo = {}

    def effective(eid):
        if eid not in memo:
            memo[eid] = not any(effective(u) for u in undos_of.get(eid, []))
        return memo[eid]

    current = {}  # (item, annotator) -> label
    verdict = {}  # (item, annotator) -> 1.0 / 0.0
    for eid in sorted(by_id):
        _, item, ann, kind, label, _ = by_id[eid]
        if not effective(eid) or kind == "undo":
            continue
        if kind in ("label", "correct") or (kind == "accept" and label is not None):
            current[(item, ann)] = label
        if kind in ("accept", "reject"):
            verdict[(item, ann)] = 1.0 if kind == "accept" else 0.0
    consensus = {}
    for item in sorted({i for i, _ in current}):
        votes = {a: lab for (i, a), lab in current.items() if i == item}
        score = {}
        for a, lab in votes.items():
            score[lab] = score.get(lab, 0.0) + weights.get(a, 1.0)
        best = max(score.values())
        winner = [lab for lab in label_order if score.get(lab) == best][0]
        total = sum(weights.get(a, 1.0) for a in votes)
        consensus[item] = (winner, best / total if total else math.nan)
    quality = {}
    for item in sorted({i for i, _ in verdict}):
        vs = [(a, q) for (i, a), q in verdict.items() if i == item]
        quality[item] = sum(weights.get(a, 1.0) * q for a, q in vs) / len(vs)
    return current, consensus, quality


# ---- opening, URL, pragmas -----------------------------------------------------------------


def test_default_url_is_sqlite_file_in_run_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("GAPSCOPE_STORE_URL", raising=False)
    with LabelStore(run_dir=tmp_path / "run") as s:
        assert s.url == f"sqlite:///{(tmp_path / 'run' / 'labels.sqlite').resolve()}"
        assert (tmp_path / "run" / "labels.sqlite").exists()
        assert s.schema_version() == SCHEMA_VERSION


def test_url_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "env.sqlite"
    monkeypatch.setenv("GAPSCOPE_STORE_URL", f"sqlite:///{path}")
    with LabelStore() as s:
        assert s.url == f"sqlite:///{path}"
    assert path.exists()
    with LabelStore(run_dir=tmp_path / "ignored") as s:  # the environment wins
        assert s.url == f"sqlite:///{path}"
    assert not (tmp_path / "ignored").exists()


def test_sqlite_pragmas(store):
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_password_is_masked_and_bad_urls_are_refused(tmp_path):
    with pytest.raises(StoreError) as err:
        LabelStore("postgresql+psycopg://bob:s3cret@127.0.0.1:1/db", timeout=2)
    assert "s3cret" not in str(err.value) and "***" in str(err.value)
    with pytest.raises(ValueError, match="url: expected a sqlite or postgresql URL"):
        LabelStore("mysql://u:p@h/db")
    with pytest.raises(ValueError, match="psycopg 3 driver"):
        LabelStore("postgresql://u:p@h/db")
    with pytest.raises(ValueError, match="url: expected an SQLAlchemy URL"):
        LabelStore("not a url")
    with pytest.raises(ValueError, match="run_dir"):
        LabelStore(f"sqlite:///{tmp_path}/x.sqlite", run_dir=tmp_path)


def test_closed_store_raises_everywhere(tmp_path):
    s = LabelStore(run_dir=tmp_path)
    s.close()
    s.close()  # idempotent
    assert "closed" in repr(s)
    calls = [
        lambda: s.schema(),
        lambda: s.set_schema([0, 1]),
        lambda: s.add_items([1], dataset="d"),
        lambda: s.items(),
        lambda: s.add_annotator("a"),
        lambda: s.annotators(),
        lambda: s.record(1, "skip", annotator="a"),
        lambda: s.record_many([]),
        lambda: s.events(),
        lambda: s.current_labels(),
        lambda: s.status([1]),
        lambda: s.consensus(),
        lambda: s.quality(),
        lambda: s.accepted(0.5),
        lambda: s.agreement(),
        lambda: s.set_weights_from_agreement(),
        lambda: s.to_dataframe(),
        lambda: s.export_csv(tmp_path / "x.csv"),
        lambda: s.export_parquet(tmp_path / "x.parquet"),
        lambda: s.import_csv(tmp_path / "x.csv", annotator="a"),
        lambda: s.__enter__(),
    ]
    for call in calls:
        with pytest.raises(StoreClosedError, match="store is closed"):
            call()


def test_context_manager_closes(tmp_path):
    with LabelStore(run_dir=tmp_path) as s:
        s.set_schema(["a"])
    assert s.closed


# ---- schema, items, annotators ---------------------------------------------------------------


def test_schema_roundtrip_and_per_project(tmp_path):
    with LabelStore(run_dir=tmp_path) as a, LabelStore(run_dir=tmp_path, project="other") as b:
        assert a.schema() == {"labels": [], "tags": []}
        a.set_schema([3, 1, 2], tags=["x"])
        b.set_schema(["cat", "dog"])
        assert a.schema() == {"labels": [3, 1, 2], "tags": ["x"]}
        assert b.schema() == {"labels": ["cat", "dog"], "tags": []}


@pytest.mark.parametrize(
    ("labels", "tags", "exc", "match"),
    [
        ([], (), ValueError, "labels: expected at least one label"),
        ([0, "a"], (), TypeError, "labels: expected all ints or all strs"),
        ([0, 0], (), ValueError, "labels: expected unique labels"),
        ([0.5, 1.0], (), TypeError, "labels: expected all ints or all strs"),
        ("ab", (), TypeError, "labels: expected a sequence"),
        ([""], (), ValueError, r"labels\[0\]: expected a non-empty string"),
        ([0, 1], ["a", "a"], ValueError, "tags: expected unique tags"),
        ([0, 1], [1], TypeError, r"tags\[0\]: expected a str"),
    ],
)
def test_set_schema_rejects_bad_input(store, labels, tags, exc, match):
    with pytest.raises(exc, match=match):
        store.set_schema(labels, tags)
    assert store.schema() == {"labels": [0, 1, 2], "tags": ["blurry", "rare"]}


def test_set_schema_cannot_drop_used_labels_or_tags(store):
    store.record(1, "label", annotator="a", label=2, tags=["rare"])
    with pytest.raises(StoreError, match=r"labels: events already use \['2'\]"):
        store.set_schema([0, 1], tags=["rare"])
    with pytest.raises(StoreError, match=r"tags: events already use \['rare'\]"):
        store.set_schema([0, 1, 2], tags=["blurry"])
    store.set_schema([0, 1, 2, 3], tags=["rare", "new"])  # growing is fine
    assert store.schema() == {"labels": [0, 1, 2, 3], "tags": ["rare", "new"]}


def test_add_items_idempotent_and_typed(store):
    assert store.add_items(np.arange(5, 15), dataset="digits") == 5
    assert store.add_items([np.int64(3), 14], dataset="digits") == 0
    df = store.items()
    assert df["item_id"].tolist() == list(range(15))
    assert df["dataset"].eq("digits").all() and df["source"].eq("real").all()
    assert isinstance(df["created_at"].dtype, pd.DatetimeTZDtype)
    with pytest.raises(TypeError, match="ids: project 'default' has int item ids, got str"):
        store.add_items(["a"], dataset="digits")
    with pytest.raises(StoreError, match="already stored with another dataset/source"):
        store.add_items([1, 100], dataset="other")
    assert 100 not in store.items()["item_id"].tolist()  # nothing written


def test_add_items_string_ids_and_provenance(tmp_path):
    with LabelStore(run_dir=tmp_path) as s:
        prov = [{"generator": "vae", "seed": 1, "z": np.array([0.5, -1.0])}, None]
        assert (
            s.add_items(["s-1", "s-2"], dataset="syn", source="synthetic", round=2, provenance=prov)
            == 2
        )
        df = s.items()
        assert df["item_id"].tolist() == ["s-1", "s-2"]
        assert df["provenance"].tolist() == [
            {"generator": "vae", "seed": 1, "z": [0.5, -1.0]},
            None,
        ]
        assert df["round"].tolist() == [2, 2] and df["source"].eq("synthetic").all()


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"ids": [1, 1]}, ValueError, "ids: expected unique ids"),
        ({"ids": []}, ValueError, "ids: expected at least one id"),
        ({"ids": [1, "a"]}, TypeError, "ids: expected all ints or all strs"),
        ({"ids": [1.5]}, TypeError, r"ids\[0\]: expected an int or str id, got float"),
        ({"ids": np.zeros((2, 2), dtype=int)}, ValueError, "ids: expected a 1-d array"),
        ({"ids": [2**64]}, ValueError, r"ids\[0\]: expected an int64 id"),
        ({"source": "fake"}, ValueError, "source: expected one of"),
        ({"round": -1}, ValueError, "round: expected an int >= 0"),
        ({"dataset": ""}, ValueError, "dataset: expected a non-empty string"),
        ({"provenance": [{}]}, ValueError, "provenance: expected 2 dicts"),
        ({"provenance": {"x": "a" * 70_000}}, ValueError, "provenance: JSON encoding is"),
        ({"provenance": {"x": float("nan")}}, ValueError, "provenance: expected JSON-serialisable"),
    ],
)
def test_add_items_rejects_bad_input(tmp_path, kwargs, exc, match):
    with LabelStore(run_dir=tmp_path) as s:
        args = {"ids": [7, 8], "dataset": "d", **kwargs}
        with pytest.raises(exc, match=match):
            s.add_items(args.pop("ids"), **args)
        assert s.items().empty


def test_annotators_idempotent_by_name(store):
    a = store.add_annotator("alice", weight=0.5)
    assert store.add_annotator("alice", weight=0.9) == a  # keeps the stored weight
    b = store.add_annotator("bob")
    df = store.annotators()
    assert df["name"].tolist() == ["alice", "bob"]
    assert df["weight"].tolist() == [0.5, 1.0] and df["annotator_id"].tolist() == [a, b]
    store.set_weight("bob", 2.0)
    assert store.annotators()["weight"].tolist() == [0.5, 2.0]
    with pytest.raises(ValueError, match="weight: expected a finite number >= 0"):
        store.add_annotator("carol", weight=-1)
    with pytest.raises(ValueError, match="annotator: expected a registered annotator name"):
        store.set_weight("nobody", 1.0)


# ---- events and their semantics -----------------------------------------------------------


def test_record_returns_increasing_ids_and_stores_provenance(store):
    cues = {
        "confidence": np.float32(0.625),
        "exemplar_ids": np.array([3, 4]),
        "widget": "Labeler",
        "widget_version": "0.1.0",
        "ms_on_item": 2140,
    }
    e1 = store.record(1, "label", annotator="ann", label=2, cues=cues, round=3)
    e2 = store.record(np.int64(2), "skip", annotator="ann")
    assert e2 > e1
    ev = store.events()
    assert ev["event_id"].tolist() == [e1, e2]
    row = ev.iloc[0]
    assert row["cues"] == {
        "confidence": 0.625,
        "exemplar_ids": [3, 4],
        "widget": "Labeler",
        "widget_version": "0.1.0",
        "ms_on_item": 2140,
    }
    assert row["round"] == 3 and row["label"] == 2 and row["annotator"] == "ann"
    assert row["ts"].tzinfo is not None
    assert abs((pd.Timestamp.now(tz="UTC") - row["ts"]).total_seconds()) < 60
    assert len(row["key"]) == 32  # uuid4 hex by default
    assert store.annotators()["name"].tolist() == ["ann"]  # registered on first use


def test_label_correct_undo_redo(store):
    e1 = store.record(1, "label", annotator="a", label=0)
    e2 = store.record(1, "correct", annotator="a", label=2, ref_event=e1)
    assert store.current_labels()["label"].tolist() == [2]
    u1 = store.record(1, "undo", annotator="a", ref_event=e2)
    assert store.current_labels()["label"].tolist() == [0]
    store.record(1, "undo", annotator="a", ref_event=u1)  # redo
    assert store.current_labels()["label"].tolist() == [2]
    ev = store.events()
    assert len(ev) == 4  # nothing deleted
    assert ev["effective"].tolist() == [True, True, False, True]
    assert store.events(include_undone=False)["event_id"].tolist() == [e1, e2]


def test_undo_validation(store):
    e = store.record(1, "label", annotator="a", label=0)
    with pytest.raises(ValueError, match="ref_event: an 'undo' event needs"):
        store.record(1, "undo", annotator="a")
    with pytest.raises(ValueError, match="ref_event: an annotator can only undo their own"):
        store.record(1, "undo", annotator="b", ref_event=e)
    with pytest.raises(ValueError, match="ref_event: event .* is about item '1', not 2"):
        store.record(2, "undo", annotator="a", ref_event=e)
    with pytest.raises(ValueError, match="ref_event: expected the id of a stored event"):
        store.record(1, "undo", annotator="a", ref_event=e + 100)
    with pytest.raises(ValueError, match="ref_event: only 'undo' and 'correct'"):
        store.record(1, "accept", annotator="a", ref_event=e)
    assert len(store.events()) == 1


def test_status_for_widget(store):
    store.record(1, "label", annotator="a", label=1, tags=["blurry"])
    store.record(1, "accept", annotator="a")
    f = store.record(1, "flag_bias", annotator="a", tags=["rare"])
    store.record(1, "flag_out_of_scope", annotator="a")
    store.record(1, "undo", annotator="a", ref_event=f)
    store.record(2, "reject", annotator="a")
    store.record(2, "tag", annotator="b", tags=[])
    store.record(3, "skip", annotator="b")
    st_ = store.status([1, 2, 3, 4]).set_index(["item_id", "annotator"])
    assert sorted(st_.index) == [(1, "a"), (2, "a"), (2, "b"), (3, "b")]
    r = st_.loc[(1, "a")]
    assert r["last_kind"] == "flag_out_of_scope" and r["label"] == 1 and r["accepted"] is True
    assert r["tags"] == ["blurry"] and not r["flag_bias"] and r["flag_out_of_scope"]
    assert r["n_events"] == 3
    assert st_.loc[(2, "a")]["accepted"] is False and st_.loc[(2, "a")]["label"] is None
    assert st_.loc[(2, "b")]["tags"] == []
    assert st_.loc[(3, "b")]["last_kind"] == "skip"
    assert store.status([1], annotator="b").empty


def test_events_filters(store):
    store.record(1, "label", annotator="a", label=1)
    store.record(2, "label", annotator="b", label=0)
    store.record(3, "skip", annotator="a")
    assert store.events(item_ids=[1, 3])["item_id"].tolist() == [1, 3]
    assert store.events(item_ids=np.array([2]))["annotator"].tolist() == ["b"]
    assert store.events(annotator="a")["item_id"].tolist() == [1, 3]
    with pytest.raises(TypeError, match=r"item_ids\[0\]: expected an int or str id"):
        store.events(item_ids=[1.0])


def test_idempotency_key_and_payload_mismatch(store):
    e = store.record(1, "label", annotator="a", label=1, key="k-1")
    assert store.record(1, "label", annotator="a", label=1, key="k-1") == e
    with pytest.raises(StoreError, match="key: 'k-1' is already stored .* different payload"):
        store.record(1, "label", annotator="a", label=2, key="k-1")
    ids = store.record_many(
        [
            {"item_id": 1, "kind": "label", "annotator": "a", "label": 1, "key": "k-1"},
            {"item_id": 2, "kind": "label", "annotator": "a", "label": 0, "key": "k-2"},
        ]
    )
    assert ids[0] == e
    assert store.record_many(
        [{"item_id": 2, "kind": "label", "annotator": "a", "label": 0, "key": "k-2"}]
    ) == [ids[1]]
    assert len(store.events()) == 2


def test_record_many_is_one_transaction(store):
    good = {"item_id": 1, "kind": "label", "annotator": "a", "label": 1}
    with pytest.raises(ValueError, match=r"events\[2\]\.label: expected one of the schema"):
        store.record_many([good, {**good, "item_id": 2}, {**good, "label": 7}])
    assert store.events().empty
    with pytest.raises(ValueError, match=r"events\[1\]\.item_id: expected an item added"):
        store.record_many([good, {**good, "item_id": 99}])
    assert store.events().empty
    with pytest.raises(ValueError, match=r"events\[1\]\.key: duplicates the key of event 0"):
        store.record_many([{**good, "key": "x"}, {**good, "key": "x"}])
    assert store.record_many([]) == []
    ids = store.record_many([good, {**good, "item_id": 2, "kind": "accept", "label": None}])
    assert store.events()["event_id"].tolist() == ids


def test_kinds_constant():
    assert EVENT_KINDS == (
        "label",
        "accept",
        "reject",
        "correct",
        "tag",
        "flag_bias",
        "flag_out_of_scope",
        "skip",
        "undo",
    )


# ---- derived views against the independent replay -------------------------------------------

_kind_st = st.sampled_from(["label", "correct", "accept", "accept_l", "reject", "undo", "skip"])
_event_st = st.tuples(
    st.integers(0, 3), st.integers(0, 2), _kind_st, st.integers(0, 2), st.integers(0, 30)
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=st.lists(_event_st, min_size=0, max_size=30),
    weights=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=3, max_size=3),
)
def test_derived_views_match_replay(script, weights):
    labels = ["b", "a", "c"]  # schema order is the tie-break, deliberately not sorted
    names = ["v0", "v1", "v2"]
    wmap = dict(zip(names, weights, strict=True))
    with LabelStore("sqlite://") as s:
        s.set_schema(labels)
        s.add_items([0, 1, 2, 3], dataset="d")
        for n in names:
            s.add_annotator(n, weight=wmap[n])
        log = []
        for item, ann, kind, lab, pick in script:
            name = names[ann]
            if kind == "undo":
                own = [e for e in log if e[1] == item and e[2] == name]
                if not own:
                    continue
                ref = own[pick % len(own)][0]
                eid = s.record(item, "undo", annotator=name, ref_event=ref)
                log.append((eid, item, name, "undo", None, ref))
                continue
            label = labels[lab] if kind in ("label", "correct", "accept_l") else None
            k = "accept" if kind == "accept_l" else kind
            eid = s.record(item, k, annotator=name, label=label)
            log.append((eid, item, name, k, label, None))
        current, consensus, quality = reference_views(log, wmap, labels)

        cur = s.current_labels()
        assert {(r.item_id, r.annotator): r.label for r in cur.itertuples()} == current
        cons = s.consensus()
        got = {r.item_id: (r.label, r.support) for r in cons.itertuples()}
        assert set(got) == set(consensus)
        for item, (lab, sup) in consensus.items():
            assert got[item][0] == lab
            assert (math.isnan(sup) and math.isnan(got[item][1])) or got[item][1] == pytest.approx(
                sup, abs=1e-12
            )
        q = s.quality()
        assert dict(q) == pytest.approx(quality, abs=1e-12)
        for q_min in (0.0, 0.5, 1.0):
            assert s.accepted(q_min) == [x for x in sorted(quality) if quality[x] > q_min]
        df = s.to_dataframe().set_index("item_id")
        for item in range(4):
            if item in quality:
                assert df.loc[item, "q"] == pytest.approx(quality[item], abs=1e-12)
            else:
                assert math.isnan(df.loc[item, "q"])
            assert df.loc[item, "label"] == (consensus[item][0] if item in consensus else None)


def test_quality_formula_by_hand(store):
    # q(x) = (1/V) sum_v w_v q_v(x): weights 0.5 (accepts), 1.0 (rejects), 2.0 (accepts)
    store.add_annotator("v1", weight=0.5)
    store.add_annotator("v2", weight=1.0)
    store.add_annotator("v3", weight=2.0)
    store.record(1, "accept", annotator="v1")
    store.record(1, "reject", annotator="v2")
    store.record(1, "reject", annotator="v3")
    store.record(1, "accept", annotator="v3")  # last verdict counts
    store.record(2, "reject", annotator="v1")
    q = store.quality()
    assert q.loc[1] == pytest.approx((0.5 * 1 + 1.0 * 0 + 2.0 * 1) / 3, abs=1e-15)
    assert q.loc[2] == 0.0
    qn = store.quality(normalize=True)
    assert qn.loc[1] == pytest.approx(2.5 / 3.5, abs=1e-15)
    assert store.accepted(0.8) == [1] and store.accepted(0.0) == [1]
    assert store.accepted(q.loc[1]) == []  # strictly greater
    with pytest.raises(ValueError, match="q_min: expected a finite number"):
        store.accepted(float("nan"))


def test_agreement_leave_one_out_and_weights(store):
    # items 0..3; a and b agree everywhere, c disagrees on items 0, 1, 2 and agrees on 3
    truth = {0: 0, 1: 1, 2: 2, 3: 0}
    for item, lab in truth.items():
        store.record(item, "label", annotator="a", label=lab)
        store.record(item, "label", annotator="b", label=lab)
        store.record(item, "label", annotator="c", label=lab if item == 3 else (lab + 1) % 3)
    agr = store.agreement().set_index("annotator")
    # leave-one-out: for a, the others are {b, c}: tie on items 0-2 broken by schema order
    # (labels [0, 1, 2]): item0 {0,1}->0 agree, item1 {1,2}->1 agree, item2 {2,0}->0 disagree
    assert agr.loc["a", "n_items"] == 4 and agr.loc["a", "n_agree"] == 3
    assert agr.loc["b", "n_agree"] == 3
    # for c, the others {a, b} always hold the truth: c agrees only on item 3
    assert agr.loc["c", "n_agree"] == 1 and agr.loc["c", "agreement"] == 0.25
    new = store.set_weights_from_agreement().set_index("annotator")
    assert new["new_weight"].to_dict() == {"a": 0.75, "b": 0.75, "c": 0.25}
    w = store.annotators().set_index("name")["weight"].to_dict()
    assert w == {"a": 0.75, "b": 0.75, "c": 0.25}
    cons = store.consensus().set_index("item_id")
    assert cons["label"].to_dict() == truth
    assert cons.loc[0, "support"] == pytest.approx(1.5 / 1.75)


def test_agreement_needs_overlap(store):
    store.record(1, "label", annotator="solo", label=1)
    agr = store.agreement()
    assert agr["n_items"].tolist() == [0] and math.isnan(agr["agreement"].iloc[0])
    out = store.set_weights_from_agreement()
    assert out["new_weight"].tolist() == [1.0]  # kept


# ---- export / import ------------------------------------------------------------------------


def test_export_roundtrip(store, tmp_path):
    store.record(1, "label", annotator="a", label=2, cues={"w": "Labeler"})
    store.record(1, "accept", annotator="a")
    p = store.export_parquet(tmp_path / "out" / "items.parquet")
    c = store.export_csv(tmp_path / "items.csv")
    pe = store.export_parquet(tmp_path / "events.parquet", what="events")
    back = pd.read_parquet(p)
    assert back["item_id"].tolist() == list(range(10))
    assert back.loc[back["item_id"] == 1, "label"].item() == 2
    assert back.loc[back["item_id"] == 1, "q"].item() == 1.0
    assert pd.read_csv(c)["item_id"].tolist() == list(range(10))
    ev = pd.read_parquet(pe)
    assert ev["cues"].iloc[0] == '{"w": "Labeler"}' and pd.isna(ev["cues"].iloc[1])
    assert ev["kind"].tolist() == ["label", "accept"]
    with pytest.raises(ValueError, match="what: expected one of"):
        store.export_csv(tmp_path / "x.csv", what="labels")
    assert not list(tmp_path.glob(".*.tmp"))


def test_import_csv_validates_and_is_idempotent(store, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("item_id,label\n1,2\n2,0\n3,1\n")
    assert store.import_csv(path, annotator="importer") == 3
    assert store.import_csv(path, annotator="importer") == 0  # same file again: no duplicates
    cur = store.current_labels(annotator="importer")
    assert dict(zip(cur["item_id"], cur["label"], strict=True)) == {1: 2, 2: 0, 3: 1}
    bad = {
        "item_id,label\n1,2\n99,0\n": r"rows\[1\]\.item_id: expected an item added",
        "item_id,label\n1,2\n2,9\n": r"rows\[1\]\.label: expected one of the schema labels",
        "item_id,label\n1,2\nx,0\n": r"row 3 column 'item_id': expected an integer",
        "item_id,label\n1,two\n": r"row 2 column 'label': expected an integer",
        "item,label\n1,2\n": r"needs the columns \['item_id', 'label'\], missing \['item_id'\]",
    }
    for text, match in bad.items():
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            store.import_csv(path, annotator="other")
    assert len(store.events()) == 3  # nothing from the bad files


# ---- migrations ---------------------------------------------------------------------------------


def _make_v1_database(url):
    """A database exactly as version 1 of the schema left it, with some data."""
    engine = sa.create_engine(url)
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    with engine.begin() as conn:
        S.upgrade(conn, target=1)
        md = sa.MetaData()
        md.reflect(conn)
        assert "client" not in md.tables["events"].c
        conn.execute(
            sa.insert(md.tables["projects"]).values(
                name="default",
                labels='["no", "yes"]',
                tags="[]",
                label_kind="str",
                id_kind="int",
                updated_at=now.replace(tzinfo=None) if conn.dialect.name == "sqlite" else now,
            )
        )
        conn.execute(
            sa.insert(md.tables["items"]).values(
                project="default",
                item_id="5",
                dataset="old",
                source="real",
                round=0,
                created_at=now.replace(tzinfo=None) if conn.dialect.name == "sqlite" else now,
            )
        )
        conn.execute(
            sa.insert(md.tables["annotators"]).values(
                name="early",
                weight=1.0,
                created_at=now.replace(tzinfo=None) if conn.dialect.name == "sqlite" else now,
            )
        )
        conn.execute(
            sa.insert(md.tables["events"]).values(
                key="v1-event",
                project="default",
                item_id="5",
                kind="label",
                annotator_id=1,
                label="yes",
                round=0,
                ts=now.replace(tzinfo=None) if conn.dialect.name == "sqlite" else now,
            )
        )
    engine.dispose()


def test_old_database_upgrades(tmp_path):
    url = f"sqlite:///{tmp_path}/old.sqlite"
    _make_v1_database(url)
    with LabelStore(url) as s:
        assert s.schema_version() == SCHEMA_VERSION == 3
        ev = s.events()
        assert ev["key"].tolist() == ["v1-event"] and ev["client"].tolist() == [None]
        assert s.current_labels()["label"].tolist() == ["yes"]
        e = s.record(5, "label", annotator="late", label="no")
        assert s.events()["event_id"].tolist()[-1] == e
    con = sqlite3.connect(tmp_path / "old.sqlite")
    versions = con.execute(
        "SELECT version, description FROM schema_version ORDER BY version"
    ).fetchall()
    indexes = {r[1] for r in con.execute("PRAGMA index_list(events)")}
    con.close()
    assert [v for v, _ in versions] == [1, 2, 3]
    assert "ix_events_project_item" in indexes


def test_newer_database_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/new.sqlite"
    LabelStore(url).close()
    con = sqlite3.connect(tmp_path / "new.sqlite")
    con.execute("INSERT INTO schema_version VALUES (99, 'from the future', '2030-01-01 00:00:00')")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema version 99, newer than this gapscope"):
        LabelStore(url)


def test_events_filters_on_an_empty_log(tmp_path):
    """Regression: filtering an empty log by item ids used to drop every column (KeyError)."""
    store = LabelStore(run_dir=tmp_path)
    store.set_schema([0, 1])
    store.add_items([1, 2], dataset="d")
    ev = store.events(item_ids=[1], annotator="a")
    assert len(ev) == 0 and {"item_id", "annotator", "kind", "label"} <= set(ev.columns)

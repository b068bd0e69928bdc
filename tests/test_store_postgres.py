"""The label store on a real PostgreSQL server.

Needs ``GAPSCOPE_TEST_PG_URL=postgresql+psycopg://user:password@127.0.0.1:5432/db`` of a
role that may CREATE DATABASE: every test runs in a throw-away database of its own. In CI
``.ci/run`` sources ``.ci/postgres.sh``, which installs and starts a local server and
exports the variable; run ``source .ci/postgres.sh`` yourself to enable these tests.
"""

from __future__ import annotations

import os
import uuid

import pandas as pd
import pytest
import sqlalchemy as sa
from test_store import _make_v1_database, reference_views
from test_store_hardening import (
    check_hardened_bad_input,
    check_not_shown,
    check_projects_isolated,
    check_v2_database_upgraded,
    make_v2_database,
    setup_hardening_store,
)
from test_store_reliability import (
    check_bad_records,
    check_only_bound_parameters,
    check_verbatim_strings,
    run_concurrent_open,
    run_concurrent_writers,
    setup_bad_input_store,
)

from gapscope.helpers.store import SCHEMA_VERSION, LabelStore, StoreClosedError, StoreError

PG_URL = os.environ.get("GAPSCOPE_TEST_PG_URL")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not PG_URL,
        reason="PostgreSQL tests need GAPSCOPE_TEST_PG_URL=postgresql+psycopg://... of a role "
        "with CREATEDB; run `source .ci/postgres.sh` (installs and starts a local server) to "
        "enable them",
    ),
]


@pytest.fixture
def pg_url():
    """A fresh, empty database on the test server; dropped afterwards."""
    base = sa.make_url(PG_URL)
    name = f"gapscope_t_{uuid.uuid4().hex[:12]}"  # generated here: safe as an identifier
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_url_masked_and_schema_created(pg_url):
    password = sa.make_url(pg_url).password
    with LabelStore(pg_url) as s:
        assert s.schema_version() == SCHEMA_VERSION
        if password:
            assert f":{password}@" not in s.url and f":{password}@" not in repr(s)
            assert ":***@" in s.url
        s.set_schema([0, 1])
        s.add_items([1, 2], dataset="d")
        s.record(1, "label", annotator="a", label=1)
        ts = s.events()["ts"].iloc[0]
        assert ts.tzinfo is not None
        assert abs((pd.Timestamp.now(tz="UTC") - ts).total_seconds()) < 60


def test_url_from_environment(pg_url, monkeypatch):
    monkeypatch.setenv("GAPSCOPE_STORE_URL", pg_url)
    with LabelStore(project="env") as s:
        assert s.url.startswith("postgresql+psycopg://")
        assert s.schema_version() == SCHEMA_VERSION


def test_wrong_password_is_a_clear_error(pg_url):
    bad = sa.make_url(pg_url).set(password="definitely-wrong-pw")
    with pytest.raises(StoreError, match="cannot open the store") as err:
        LabelStore(bad.render_as_string(hide_password=False), timeout=5)
    assert "definitely-wrong-pw" not in str(err.value)


def test_semantics_match_replay(pg_url):
    with LabelStore(pg_url) as s:
        s.set_schema(["b", "a", "c"])
        s.add_items([0, 1, 2], dataset="d")
        s.add_annotator("v0", weight=2.0)
        s.add_annotator("v1", weight=0.5)
        s.add_annotator("v2", weight=1.0)
        script = [
            (0, "v0", "label", "a"),
            (0, "v1", "label", "c"),
            (0, "v2", "label", "c"),
            (1, "v0", "label", "b"),
            (1, "v1", "accept", "a"),
            (1, "v0", "reject", None),
            (1, "v2", "accept", None),
            (2, "v2", "label", "c"),
            (2, "v2", "correct", "a"),
        ]
        log = []
        for item, ann, kind, lab in script:
            eid = s.record(item, kind, annotator=ann, label=lab)
            log.append((eid, item, ann, kind, lab, None))
        u = s.record(2, "undo", annotator="v2", ref_event=log[-1][0])
        log.append((u, 2, "v2", "undo", None, log[-1][0]))
        current, consensus, quality = reference_views(
            log, {"v0": 2.0, "v1": 0.5, "v2": 1.0}, ["b", "a", "c"]
        )
        cur = s.current_labels()
        assert {(r.item_id, r.annotator): r.label for r in cur.itertuples()} == current
        cons = s.consensus()
        assert {r.item_id: r.label for r in cons.itertuples()} == {
            k: v[0] for k, v in consensus.items()
        }
        assert dict(s.quality()) == pytest.approx(quality, abs=1e-12)
        assert s.accepted(0.3) == [x for x in sorted(quality) if quality[x] > 0.3]


def test_bad_input_is_refused_and_nothing_written(pg_url):
    with LabelStore(pg_url) as s:
        setup_bad_input_store(s)
        check_bad_records(s)


def test_quotes_semicolons_unicode_stored_verbatim(pg_url):
    with LabelStore(pg_url) as s:
        setup_bad_input_store(s)
        check_verbatim_strings(s)
    engine = sa.create_engine(pg_url)
    tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert {"events", "items", "annotators", "projects", "schema_version"} <= tables


def test_only_bound_parameters_reach_the_database(pg_url):
    with LabelStore(pg_url) as s:
        setup_bad_input_store(s)
        check_only_bound_parameters(s)


@pytest.mark.slow
def test_concurrent_writers_postgres(pg_url):
    run_concurrent_writers(pg_url, "conc")


def test_concurrent_first_open_migrates_once(pg_url):
    assert run_concurrent_open(pg_url) == [SCHEMA_VERSION] * 4
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        versions = (
            conn.exec_driver_sql("SELECT version FROM schema_version ORDER BY version")
            .scalars()
            .all()
        )
    engine.dispose()
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_idempotent_retry(pg_url):
    with LabelStore(pg_url) as s:
        s.set_schema([0, 1])
        s.add_items([1, 2], dataset="d")
        e = s.record(1, "label", annotator="a", label=1, key="once")
        assert s.record(1, "label", annotator="a", label=1, key="once") == e
        batch = [
            {"item_id": 2, "kind": "accept", "annotator": "a", "key": "b1"},
            {"item_id": 1, "kind": "reject", "annotator": "a", "key": "b2"},
        ]
        ids = s.record_many(batch)
        assert s.record_many(batch) == ids
        with pytest.raises(StoreError, match="different payload"):
            s.record(1, "label", annotator="a", label=0, key="once")
        assert s.events()["key"].tolist() == ["once", "b1", "b2"]


def test_old_database_upgrades(pg_url):
    _make_v1_database(pg_url)
    with LabelStore(pg_url) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.events()["key"].tolist() == ["v1-event"]
        assert s.current_labels()["label"].tolist() == ["yes"]
        s.record(5, "correct", annotator="late", label="no")
        assert s.current_labels(annotator="late")["label"].tolist() == ["no"]


def test_export_and_import(pg_url, tmp_path):
    with LabelStore(pg_url) as s:
        s.set_schema(["x", "y"])
        s.add_items(["a", "b"], dataset="d")
        path = tmp_path / "in.csv"
        path.write_text("item_id,label\na,x\nb,y\n")
        assert s.import_csv(path, annotator="csv") == 2
        assert s.import_csv(path, annotator="csv") == 0
        out = pd.read_parquet(s.export_parquet(tmp_path / "o.parquet"))
        assert out.set_index("item_id")["label"].to_dict() == {"a": "x", "b": "y"}


# ---- issue 14: secrets, projects, bad input on PostgreSQL --------------------------------------


def test_query_string_secrets_masked(pg_url):
    """A password (and sslpassword) in the query string is masked like user:password@."""
    u = sa.make_url(pg_url)
    pw = u.password
    bare = sa.URL.create(  # the same server and role, no user:password@
        u.drivername, username=u.username, host=u.host, port=u.port, database=u.database
    )
    query_form = bare.update_query_dict({"password": pw, "sslpassword": "SslSecret7"})
    assert f":{pw}@" not in query_form.render_as_string(hide_password=False)
    s = LabelStore(query_form.render_as_string(hide_password=False))
    shown = [repr(s), s.url]
    s.close()
    with pytest.raises(StoreClosedError) as err:
        s.schema()
    shown.append(str(err.value))
    for text in shown:
        assert f"password={pw}" not in text and "SslSecret7" not in text, text
        assert "password=***" in text and "sslpassword=***" in text
    check_not_shown(err.value, ["SslSecret7", f"password={pw}"])
    wrong = bare.update_query_dict({"password": "WrongPgSecret8"})
    with pytest.raises(StoreError, match="cannot open the store") as err:
        LabelStore(wrong.render_as_string(hide_password=False), timeout=5)
    check_not_shown(err.value, ["WrongPgSecret8"])
    token = u.update_query_dict({"token": "TokSecret9"})
    with pytest.raises(StoreError, match="cannot open the store") as err:
        LabelStore(token.render_as_string(hide_password=False), timeout=5)
    check_not_shown(err.value, ["TokSecret9", f":{pw}@"])


def test_projects_isolated(pg_url, tmp_path):
    check_projects_isolated(pg_url, tmp_path)


def test_v2_database_upgrades_in_place(pg_url):
    make_v2_database(pg_url)
    check_v2_database_upgraded(pg_url)
    engine = sa.create_engine(pg_url)
    insp = sa.inspect(engine)
    uniques = {c["name"] for c in insp.get_unique_constraints("events")}
    tables = set(insp.get_table_names())
    engine.dispose()
    assert "uq_events_project_key" in uniques
    assert not any(t.startswith("_v3") for t in tables)


def test_hardened_bad_input(pg_url, tmp_path):
    """round=2**31 and ref_event=2**63 are refused before PostgreSQL's int4/int8 would."""
    with LabelStore(pg_url) as s:
        setup_hardening_store(s)
        check_hardened_bad_input(s, tmp_path)

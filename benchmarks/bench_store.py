"""Label-store write throughput and latency against plain driver inserts, same run.

What a labeling widget needs: one event written (and synced to disk) per keystroke, far
below a human's reaction time (target: median under 5 ms on SQLite), and fast batches for
"accept all" and CSV imports. The baseline is what a user would otherwise write by hand: a
plain ``sqlite3`` INSERT + COMMIT per event into a table of the same shape with the same
durability (WAL, synchronous=FULL), and ``executemany`` + one COMMIT per batch; on
PostgreSQL the same with ``psycopg``. The store does more per event (validates item, label,
annotator, idempotency key, cues JSON), so the ratio is the price of those checks.

The machine is shared, and one disk sync costs anything from 0.3 to 8 ms depending on what
else is writing, so store and baseline are measured INTERLEAVED (one store write, one
baseline write, alternating which goes first): both see the same disk at the same moment.

    python benchmarks/bench_store.py            # full
    python benchmarks/bench_store.py --quick    # small, for CI
PostgreSQL runs when GAPSCOPE_TEST_PG_URL (or --pg-url) is set; it creates and drops a
throw-away database when the role may, else uses the given one under a fresh project.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from gapscope.helpers.store import LabelStore

CUES = {
    "confidence": 0.62,
    "exemplar_ids": [3, 17, 42],
    "widget": "Labeler",
    "widget_version": "0.1.0",
    "ms_on_item": 2140,
}


class StoreTarget:
    """The label store: one ``record`` per single event, one ``record_many`` per batch."""

    def __init__(self, url, project, n_items):
        self.s = LabelStore(url, project=project)
        self.n_items = n_items
        self.s.set_schema(labels=list(range(10)), tags=["blurry", "rare"])
        t = time.perf_counter()
        self.s.add_items(np.arange(n_items, dtype=np.int64), dataset="pool")
        self.add_items_per_s = n_items / (time.perf_counter() - t)
        self.s.add_annotator("bench")

    def single(self, i):
        self.s.record(i % self.n_items, "label", annotator="bench", label=i % 10, cues=CUES)

    def batch(self, b, size):
        self.s.record_many(
            [
                {
                    "item_id": (b + j) % self.n_items,
                    "kind": "accept",
                    "annotator": "bench",
                    "cues": CUES,
                }
                for j in range(size)
            ]
        )

    def views_s(self):
        t = time.perf_counter()
        self.s.consensus()
        self.s.quality()
        return time.perf_counter() - t

    def close(self):
        self.s.close()


_DDL = (
    "CREATE TABLE {table} (id {pk}, key VARCHAR(64) UNIQUE NOT NULL, item_id VARCHAR(200) "
    "NOT NULL, kind VARCHAR(32) NOT NULL, annotator_id INTEGER NOT NULL, label VARCHAR(200), "
    "cues TEXT, ts TIMESTAMP NOT NULL)"
)


def _row(i, kind="label"):
    return (
        uuid.uuid4().hex,
        str(i),
        kind,
        1,
        str(i % 10),
        json.dumps(CUES),
        time.strftime("%Y-%m-%d %H:%M:%S"),
    )


class Sqlite3Target:
    """Plain sqlite3, same durability settings as the store."""

    def __init__(self, path):
        self.con = sqlite3.connect(path, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=FULL")
        self.con.execute(_DDL.format(table="events", pk="INTEGER PRIMARY KEY AUTOINCREMENT"))
        self.sql = (
            "INSERT INTO events (key, item_id, kind, annotator_id, label, cues, ts) "
            "VALUES (?,?,?,?,?,?,?)"
        )

    def single(self, i):
        self.con.execute("BEGIN")
        self.con.execute(self.sql, _row(i))
        self.con.execute("COMMIT")

    def batch(self, b, size):
        self.con.execute("BEGIN")
        self.con.executemany(self.sql, [_row(b + j, "accept") for j in range(size)])
        self.con.execute("COMMIT")

    def close(self):
        self.con.close()


class PsycopgTarget:
    """Plain psycopg 3, one transaction per single event / per batch."""

    def __init__(self, url):
        import psycopg
        import sqlalchemy as sa

        u = sa.make_url(url)
        self.con = psycopg.connect(
            host=u.host,
            port=u.port or 5432,
            user=u.username,
            password=u.password,
            dbname=u.database,
            autocommit=True,
        )
        self.table = f"bench_baseline_{uuid.uuid4().hex[:8]}"  # generated: a safe identifier
        self.con.execute(_DDL.format(table=self.table, pk="BIGSERIAL PRIMARY KEY"))
        self.sql = (
            f"INSERT INTO {self.table} (key, item_id, kind, annotator_id, label, cues, "
            "ts) VALUES (%s,%s,%s,%s,%s,%s,%s)"
        )

    def single(self, i):
        with self.con.transaction():
            self.con.execute(self.sql, _row(i))

    def batch(self, b, size):
        with self.con.transaction(), self.con.cursor() as cur:
            cur.executemany(self.sql, [_row(b + j, "accept") for j in range(size)])

    def close(self):
        self.con.execute(f"DROP TABLE {self.table}")
        self.con.close()


def interleaved(targets, n_single, n_batch, batch_size):
    """Time single writes and batches of every target, alternating between them."""
    names = list(targets)
    lat = {n: [] for n in names}
    for i in range(n_single):
        for n in names if i % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            targets[n].single(i)
            lat[n].append(time.perf_counter() - t)
    batch_t = dict.fromkeys(names, 0.0)
    for k, b in enumerate(range(0, n_batch, batch_size)):
        size = min(batch_size, n_batch - b)
        for n in names if k % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            targets[n].batch(b, size)
            batch_t[n] += time.perf_counter() - t
    return {
        n: {
            "single_per_s": n_single / sum(lat[n]),
            "single_median_ms": 1e3 * statistics.median(lat[n]),
            "single_p95_ms": 1e3 * float(np.percentile(lat[n], 95)),
            "batch_per_s": n_batch / batch_t[n],
        }
        for n in names
    }


def fsync_floor_ms(folder, n):
    """Median time of one small write + fsync: the floor under any durable commit here."""
    path = Path(folder) / "fsync.bin"
    lat = []
    with open(path, "ab") as f:
        for _ in range(n):
            t = time.perf_counter()
            f.write(b"x" * 200)
            f.flush()
            os.fsync(f.fileno())
            lat.append(time.perf_counter() - t)
    return 1e3 * statistics.median(lat)


def _pg_database(url):
    """(url to use, cleanup): a throw-away database when the role may create one."""
    import sqlalchemy as sa

    base = sa.make_url(url)
    name = f"gapscope_bench_{uuid.uuid4().hex[:8]}"  # generated here: a safe identifier
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception:
        admin.dispose()
        return url, lambda: None

    def cleanup():
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), cleanup


def _report(title, res, store, n_events):
    s, b = res["store"], res["baseline"]
    print(f"\n== {title}")
    print(f"{'':28s}{'store':>12s}{'baseline':>12s}{'store/base':>12s}")
    for key, unit in (
        ("single_per_s", "events/s"),
        ("single_median_ms", "ms"),
        ("single_p95_ms", "ms"),
        ("batch_per_s", "events/s"),
    ):
        print(f"{key + ' (' + unit + ')':28s}{s[key]:12.2f}{b[key]:12.2f}{s[key] / b[key]:12.2f}")
    print(
        f"add_items: {store.add_items_per_s:.0f} items/s; consensus+quality over "
        f"{n_events} events: {store.views_s():.3f} s"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CI)")
    ap.add_argument("--pg-url", default=os.environ.get("GAPSCOPE_TEST_PG_URL"))
    ap.add_argument("--batch-size", type=int, default=100)
    args = ap.parse_args()
    n_items = 2_000 if args.quick else 20_000
    n_single = 200 if args.quick else 2_000
    n_batch = 2_000 if args.quick else 20_000
    print(
        f"items={n_items} single={n_single} batch={n_batch} (batches of {args.batch_size}); "
        "store and baseline interleaved"
    )

    with tempfile.TemporaryDirectory() as d:
        store = StoreTarget(f"sqlite:///{Path(d) / 'store.sqlite'}", "bench", n_items)
        base = Sqlite3Target(str(Path(d) / "base.sqlite"))
        try:
            res = interleaved(
                {"store": store, "baseline": base}, n_single, n_batch, args.batch_size
            )
            floor = fsync_floor_ms(d, 200)
            _report(
                "SQLite (WAL, synchronous=FULL) vs plain sqlite3", res, store, n_single + n_batch
            )
        finally:
            store.close()
            base.close()
    mem = StoreTarget("sqlite://", "mem", n_items)
    mres = interleaved({"store": mem}, n_single, n_batch, args.batch_size)["store"]
    mem.close()
    print(
        f"in-memory SQLite (no disk: the store's own CPU cost per event): single median "
        f"{mres['single_median_ms']:.3f} ms, single {mres['single_per_s']:.0f} events/s, "
        f"batch {mres['batch_per_s']:.0f} events/s"
    )
    verdict = "meets" if res["store"]["single_median_ms"] < 5 else "MISSES"
    print(
        f"single-record median {res['store']['single_median_ms']:.2f} ms: {verdict} the 5 ms "
        f"target (one small write+fsync on this disk, right after: median {floor:.2f} ms)"
    )

    if args.pg_url:
        url, cleanup = _pg_database(args.pg_url)
        try:
            store = StoreTarget(url, f"bench_{uuid.uuid4().hex[:8]}", n_items)
            base = PsycopgTarget(url)
            try:
                res = interleaved(
                    {"store": store, "baseline": base}, n_single, n_batch, args.batch_size
                )
                _report(
                    "PostgreSQL (local, 127.0.0.1) vs plain psycopg", res, store, n_single + n_batch
                )
            finally:
                store.close()
                base.close()
        finally:
            cleanup()
    else:
        print("\nPostgreSQL skipped: set GAPSCOPE_TEST_PG_URL (source .ci/postgres.sh)")


if __name__ == "__main__":
    main()

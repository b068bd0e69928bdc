"""Label-store write fairness: many annotators writing at once, per-annotator latency.

What an annotation team needs: every annotator's click is stored within a fraction of a
second however many others are writing, and none is starved. N annotator processes write
continuously (no think time: the worst case) for a fixed time, with mixed event kinds
(label, accept, tag, correct, undo, reject, flag_bias, skip, and an "accept all" batch of
10 every 25th write), while reader processes call ``consensus()`` and ``status()``. Every
write has an idempotency key; afterwards the log is checked against what each writer saw
acknowledged: lost events (acknowledged, not stored), duplicated keys, events stored
without an acknowledgement, and errors.

Configurations, run one after another and alternating their order between rounds (the
machine is shared, so each sees the disk and the CPUs of roughly the same moment):

* ``sqlite-old``: SQLite with the store's write queue switched off in the worker processes
  (``_store_lock.queue_for`` patched to None): writers meet only SQLite's own polling busy
  handler, as before issue 14;
* ``sqlite-new``: SQLite with the FIFO write queue (``helpers/_store_lock.py``);
* ``postgres``: when ``GAPSCOPE_TEST_PG_URL`` (or ``--pg-url``) is set; a throw-away
  database when the role may create one.

Target (issue 14): no lost or duplicated events, no errors, and for EVERY annotator a
write latency p99 < 250 ms and max < 1 s, at 8 and 16 writers x 60 s.

    python benchmarks/bench_store_fairness.py                     # 8 and 16 writers x 60 s
    python benchmarks/bench_store_fairness.py --quick             # 8 writers x 10 s
    python benchmarks/bench_store_fairness.py --writers 8 --seconds 10 --rounds 2
    python benchmarks/bench_store_fairness.py --configs sqlite-new --per-annotator
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import tempfile
import time
import traceback
import uuid
from pathlib import Path

import numpy as np

from gapscope.helpers.store import LabelStore

N_ITEMS = 500
LABELS = list(range(10))
TAGS = ["blurry", "rare", "ambiguous"]
# One cycle per item: refs stay within the annotator's own events of that item.
CYCLE = ("label", "accept", "tag", "correct", "undo", "label", "reject", "flag_bias", "skip")
BATCH_EVERY = 25  # every 25th write is an "accept all" batch of BATCH_SIZE events
BATCH_SIZE = 10
CUES = {"widget": "Labeler", "widget_version": "0.1.0", "confidence": 0.62, "ms_on_item": 2140}
TARGET_P99_MS = 250.0
TARGET_MAX_MS = 1000.0


def _load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:  # pragma: no cover - uptime missing
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _open(url, project, config):
    if config == "sqlite-old":
        from gapscope.helpers import _store_lock

        _store_lock.queue_for = lambda database: None  # this worker process only
    return LabelStore(url, project=project, timeout=30.0)


def _writer(url, project, config, w, seconds, start, out):
    """Write continuously for `seconds` after `start`; report latencies and acked keys."""
    name = f"ann{w:02d}"
    lat: list[float] = []
    acked: list[str] = []
    errors: list[str] = []
    n_errors = 0
    try:
        s = _open(url, project, config)
        s.status([0])  # warm the connection
        rng = np.random.default_rng(1000 + w)
        start.wait()
        t_end = time.monotonic() + seconds
        i = 0
        step = 0
        item = int(rng.integers(N_ITEMS))
        refs: dict[str, int] = {}
        while time.monotonic() < t_end:
            key = f"{project}-w{w}-{i}"
            t0 = time.perf_counter()
            try:
                if i % BATCH_EVERY == BATCH_EVERY - 1:
                    keys = [f"{key}-{j}" for j in range(BATCH_SIZE)]
                    s.record_many(
                        [
                            {
                                "item_id": int(x),
                                "kind": "accept",
                                "annotator": name,
                                "key": k,
                                "cues": CUES,
                            }
                            for x, k in zip(
                                rng.integers(N_ITEMS, size=BATCH_SIZE), keys, strict=True
                            )
                        ]
                    )
                else:
                    kind = CYCLE[step % len(CYCLE)]
                    if kind == "label" and step % len(CYCLE) == 0:
                        item = int(rng.integers(N_ITEMS))
                        refs.clear()
                    kw: dict = {"annotator": name, "key": key, "cues": CUES}
                    if kind in ("label", "correct"):
                        kw["label"] = int(rng.integers(len(LABELS)))
                    if kind == "tag":
                        kw["tags"] = [TAGS[int(rng.integers(len(TAGS)))]]
                    if kind == "correct":
                        kw["ref_event"] = refs["label"]
                    if kind == "undo":
                        kw["ref_event"] = refs["correct"]
                    refs[kind] = s.record(item, kind, **kw)
                    step += 1
                    keys = [key]
                lat.append(time.perf_counter() - t0)
                acked.extend(keys)
            except Exception as exc:  # counted and reported; the writer goes on
                lat.append(time.perf_counter() - t0)
                n_errors += 1
                if len(errors) < 3:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
            i += 1
        s.close()
    except BaseException as exc:
        errors.append("writer crashed: " + "".join(traceback.format_exception(exc))[-800:])
        n_errors += 1
    out.put(("writer", w, lat, acked, n_errors, errors))


def _reader(url, project, config, r, seconds, pause, start, out):
    """consensus() and status() of a page of items, with a pause, until the end."""
    lat: list[float] = []
    errors: list[str] = []
    try:
        s = _open(url, project, config)
        rng = np.random.default_rng(5000 + r)
        start.wait()
        t_end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < t_end:
            t0 = time.perf_counter()
            try:
                if k % 2 == 0:
                    s.consensus()
                else:
                    s.status(rng.integers(N_ITEMS, size=50).tolist())
            except Exception as exc:
                if len(errors) < 3:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
            lat.append(time.perf_counter() - t0)
            k += 1
            time.sleep(pause)
        s.close()
    except BaseException as exc:
        errors.append("reader crashed: " + "".join(traceback.format_exception(exc))[-800:])
    out.put(("reader", r, lat, [], len(errors), errors))


def run_config(config, url, n_writers, n_readers, seconds, pause):
    """One configuration on a fresh project: returns the measured dict."""
    project = f"fair_{config.replace('-', '_')}_{n_writers}_{uuid.uuid4().hex[:6]}"
    with LabelStore(url, project=project) as s:
        s.set_schema(labels=LABELS, tags=TAGS)
        s.add_items(list(range(N_ITEMS)), dataset="pool")
    ctx = mp.get_context("fork")
    start = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(url, project, config, w, seconds, start, out))
        for w in range(n_writers)
    ] + [
        ctx.Process(target=_reader, args=(url, project, config, r, seconds, pause, start, out))
        for r in range(n_readers)
    ]
    for p in procs:
        p.start()
    time.sleep(min(10.0, 1.0 + 0.3 * len(procs)))  # let every process open its store
    load_before = _loadavg()
    t0 = time.monotonic()
    start.set()
    results = [out.get(timeout=seconds + 600) for _ in procs]
    wall = time.monotonic() - t0
    for p in procs:
        p.join(timeout=60)
    load_after = _loadavg()

    writers = sorted((r for r in results if r[0] == "writer"), key=lambda r: r[1])
    readers = [r for r in results if r[0] == "reader"]
    with LabelStore(url, project=project) as s:
        ev = s.events()
    stored_keys = ev["key"].tolist()
    stored = set(stored_keys)
    per = []
    lost = unacked = 0
    for _, w, lat, acked, n_err, errs in writers:
        a = np.asarray(lat) * 1e3
        mine = {k for k in stored if k.startswith(f"{project}-w{w}-")}
        acked_set = set(acked)
        lost += len(acked_set - mine)
        unacked += len(mine - acked_set)
        per.append(
            {
                "annotator": f"ann{w:02d}",
                "writes": int(len(a)) - n_err,
                "events": len(acked),
                "errors": n_err,
                "error_samples": errs,
                "p50_ms": float(np.percentile(a, 50)) if len(a) else float("nan"),
                "p99_ms": float(np.percentile(a, 99)) if len(a) else float("nan"),
                "max_ms": float(a.max()) if len(a) else float("nan"),
            }
        )
    all_lat = np.concatenate([np.asarray(r[2]) for r in writers]) * 1e3
    rl = np.concatenate([np.asarray(r[2]) for r in readers] or [np.zeros(0)]) * 1e3
    writes = [p["writes"] for p in per]
    res = {
        "config": config,
        "writers": n_writers,
        "readers": n_readers,
        "seconds": seconds,
        "wall_s": wall,
        "load_before": load_before,
        "load_after": load_after,
        "writes_total": int(sum(writes)),
        "writes_per_s": sum(writes) / seconds,
        "writes_min": int(min(writes)),
        "writes_max": int(max(writes)),
        "p50_ms": float(np.percentile(all_lat, 50)),
        "p99_ms": float(np.percentile(all_lat, 99)),
        "max_ms": float(all_lat.max()),
        "worst_p99_ms": max(p["p99_ms"] for p in per),
        "worst_max_ms": max(p["max_ms"] for p in per),
        "lost": lost,
        "duplicated": len(stored_keys) - len(stored),
        "stored_unacknowledged": unacked,
        "events_stored": len(stored_keys),
        "errors": int(sum(p["errors"] for p in per)),
        "reader_errors": int(sum(r[4] for r in readers)),
        "error_samples": [e for p in per for e in p["error_samples"]][:3]
        + [e for r in readers for e in r[5]][:3],
        "reader_calls": int(len(rl)),
        "reader_p50_ms": float(np.percentile(rl, 50)) if len(rl) else float("nan"),
        "reader_max_ms": float(rl.max()) if len(rl) else float("nan"),
        "per_annotator": per,
    }
    res["target_met"] = bool(
        res["lost"] == 0
        and res["duplicated"] == 0
        and res["errors"] == 0
        and res["reader_errors"] == 0
        and res["worst_p99_ms"] < TARGET_P99_MS
        and res["worst_max_ms"] < TARGET_MAX_MS
    )
    return res


def report(res, per_annotator):
    r = res
    ratio = r["writes_max"] / max(r["writes_min"], 1)
    print(
        f"\n== {r['config']}: {r['writers']} writers + {r['readers']} readers x "
        f"{r['seconds']:g} s; load average (1/5/15 min) {r['load_before']} -> {r['load_after']}"
    )
    print(
        f"  writes {r['writes_total']} ({r['writes_per_s']:.0f}/s), events stored "
        f"{r['events_stored']}; per annotator min {r['writes_min']} max {r['writes_max']} "
        f"(max/min {ratio:.2f})"
    )
    print(
        f"  latency, all writes: p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  max "
        f"{r['max_ms']:.1f} ms;  worst annotator: p99 {r['worst_p99_ms']:.1f} ms  max "
        f"{r['worst_max_ms']:.1f} ms"
    )
    per = r["per_annotator"]
    for key in ("p50_ms", "p99_ms", "max_ms"):
        vals = [p[key] for p in per]
        print(f"  per-annotator {key[:-3]:>3s}: {min(vals):8.1f} .. {max(vals):8.1f} ms")
    print(
        f"  lost {r['lost']}  duplicated {r['duplicated']}  stored-unacknowledged "
        f"{r['stored_unacknowledged']}  write errors {r['errors']}  reader errors "
        f"{r['reader_errors']}"
    )
    for e in r["error_samples"]:
        print(f"    error: {e}")
    print(
        f"  readers: {r['reader_calls']} consensus/status calls, p50 {r['reader_p50_ms']:.0f} "
        f"ms, max {r['reader_max_ms']:.0f} ms"
    )
    verdict = "MET" if r["target_met"] else "MISSED"
    print(
        f"  target (every annotator p99 < {TARGET_P99_MS:g} ms, max < {TARGET_MAX_MS:g} ms; "
        f"nothing lost, duplicated or failed): {verdict}"
    )
    if per_annotator:
        print(f"  {'annotator':10s}{'writes':>8s}{'p50 ms':>9s}{'p99 ms':>9s}{'max ms':>9s}")
        for p in per:
            print(
                f"  {p['annotator']:10s}{p['writes']:8d}{p['p50_ms']:9.1f}{p['p99_ms']:9.1f}"
                f"{p['max_ms']:9.1f}"
            )


def summarize(all_res):
    """Median over rounds of each configuration; max/min is the worst round's."""
    print("\n== summary (median over rounds; 'worst' = the worst annotator's p99 and max)")
    print(
        f"{'config':12s}{'writers':>8s}{'rounds':>7s}{'p50 ms':>9s}{'p99 ms':>9s}"
        f"{'worst p99':>11s}{'worst max':>11s}{'max/min writes':>16s}{'writes/s':>10s}"
        f"{'lost/dup/err':>14s}{'target':>8s}"
    )
    keys = dict.fromkeys((r["config"], r["writers"]) for r in all_res)
    for config, n in sorted(keys, key=lambda k: (k[1], k[0])):
        rs = [r for r in all_res if r["config"] == config and r["writers"] == n]
        med = {
            k: statistics.median(r[k] for r in rs)
            for k in ("p50_ms", "p99_ms", "worst_p99_ms", "worst_max_ms", "writes_per_s")
        }
        ratio = max(r["writes_max"] / max(r["writes_min"], 1) for r in rs)
        lde = "/".join(str(sum(r[k] for r in rs)) for k in ("lost", "duplicated", "errors"))
        met = "MET" if all(r["target_met"] for r in rs) else "MISSED"
        print(
            f"{config:12s}{n:8d}{len(rs):7d}{med['p50_ms']:9.1f}{med['p99_ms']:9.1f}"
            f"{med['worst_p99_ms']:11.1f}{med['worst_max_ms']:11.1f}{ratio:16.2f}"
            f"{med['writes_per_s']:10.0f}{lde:>14s}{met:>8s}"
        )


def _pg_database(url):
    """(url to use, cleanup): a throw-away database when the role may create one."""
    import sqlalchemy as sa

    base = sa.make_url(url)
    name = f"gapscope_fair_{uuid.uuid4().hex[:8]}"  # generated here: a safe identifier
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception:
        admin.dispose()
        return url, lambda: None
    admin.dispose()  # no open connection may be inherited by the forked workers

    def cleanup():
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), cleanup


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writers", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--reader-pause", type=float, default=1.0, help="seconds between reads")
    ap.add_argument("--rounds", type=int, default=1, help="repeat every configuration")
    ap.add_argument(
        "--configs",
        nargs="+",
        default=["sqlite-old", "sqlite-new", "postgres"],
        choices=["sqlite-old", "sqlite-new", "postgres"],
    )
    ap.add_argument("--pg-url", default=os.environ.get("GAPSCOPE_TEST_PG_URL"))
    ap.add_argument("--per-annotator", action="store_true", help="print one row per annotator")
    ap.add_argument("--json", type=Path, help="also write every result to this file")
    ap.add_argument("--from-json", type=Path, help="only print the results of an earlier run")
    ap.add_argument("--quick", action="store_true", help="8 writers x 10 s (CI)")
    args = ap.parse_args()
    if args.quick:
        args.writers, args.seconds = [8], min(args.seconds, 10.0)
    if args.from_json:
        old = json.loads(args.from_json.read_text())
        for res in old:
            report(res, args.per_annotator)
        summarize(old)
        return
    configs = [c for c in args.configs if c != "postgres" or args.pg_url]
    print(f"start: {_load()}")
    print(
        f"cpus: {os.cpu_count()}; configs {configs}; writers {args.writers}; "
        f"{args.seconds:g} s each; {args.readers} readers (pause {args.reader_pause:g} s); "
        f"{args.rounds} round(s), order alternating"
    )
    if "postgres" in args.configs and not args.pg_url:
        print("PostgreSQL skipped: set GAPSCOPE_TEST_PG_URL (source .ci/postgres.sh)")
    all_res = []
    pg_url, cleanup = _pg_database(args.pg_url) if "postgres" in configs else (None, None)
    try:
        with tempfile.TemporaryDirectory(dir=os.environ.get("GAPSCOPE_BENCH_DIR")) as d:
            k = 0
            for rnd in range(args.rounds):
                for n in args.writers:
                    order = configs if k % 2 == 0 else configs[::-1]
                    k += 1
                    for config in order:
                        if config == "postgres":
                            url = pg_url
                        else:
                            url = f"sqlite:///{Path(d) / f'{config}-{n}-{rnd}.sqlite'}"
                        res = run_config(
                            config, url, n, args.readers, args.seconds, args.reader_pause
                        )
                        res["round"] = rnd
                        report(res, args.per_annotator)
                        all_res.append(res)
    finally:
        if cleanup is not None:
            cleanup()
    summarize(all_res)
    print(f"end: {_load()}")
    if args.json:
        args.json.write_text(json.dumps(all_res, indent=1))


if __name__ == "__main__":
    main()

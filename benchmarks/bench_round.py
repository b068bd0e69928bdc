"""One round at 10^4-10^6 items of a 64-d embedding, streamed from a memory-mapped Arrow file,
step by step, beside the library a user would otherwise pick for each step, in the same run.

For each n a fresh child process (so each n's peak memory is its own):

1. writes (once, cached under --cache) a seeded 64-d pool: 20 Gaussian classes on a
   16-d subspace plus isotropic noise, with 5% of the items in 4 rare classes, as an Arrow
   IPC file with one fixed_size_list<float32> column;
2. opens it with ``PoolFile`` (memory-mapped) and fits a 5-member MLP ensemble (64-256-256-20)
   on ``--labeled`` items read from the file (training is *not* timed: the target excludes it);
3. runs ``gapscope.helpers.scale.stream_round`` (score, reduce, density, cluster, select, map)
   with a ``LatentMap`` of the pool to update, and records each step's seconds and the
   process's peak RSS (``ru_maxrss``) before and after the round;
4. then, in the same process, loads the pool into memory and runs the anchors, each on the
   same inputs as our step:
   - score: the same ensemble's members run one after another in plain PyTorch
     (``torch.inference_mode``, 4096-row blocks, softmax, then the same U(x));
   - reduce: scikit-learn ``PCA(n_components=16, svd_solver="covariance_eigh")``
     (same result: |Z| compared);
   - density: scikit-learn ``KernelDensity(bandwidth=h, rtol=0)`` on the same labeled set,
     timed on 2,000 queries and extrapolated to n (marked ``~``); the values are compared;
   - cluster: faiss ``Kmeans`` (same recipe: <= 256 training points per centre, 25
     iterations, then ``index.search``) and scikit-learn ``MiniBatchKMeans`` (n_init=1);
     inertia relative to ours. hdbscan on the 2-D map (a different clustering, for scale)
     up to ``--hdbscan-max-n``;
   - select: the same recipe written with numpy + scikit-learn ``KMeans`` (top-K by
     ``argpartition``, k-means (3 inits, as ours) on unit rows, UCB1 split replaced by equal shares);
   - map: umap-learn ``UMAP`` fit on the reduced vectors up to ``--umap-max-n`` (a different,
     non-linear map: what a user who wants UMAP pays; our map is the first two PCs, the
     loop's map).

Prints a table per n (seconds per step, ours and anchors, ratio anchor / ours), the peak
memory, the load average before and after, and the growth exponent of each of our steps
between consecutive n (slope of log t against log n).

    python benchmarks/bench_round.py --n 10000 100000 1000000
    python benchmarks/bench_round.py --quick          # n = 10^4 and 10^5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

D, CLASSES, K = 64, 20, 16


def make_pool(path: Path, n: int, seed: int = 0) -> None:
    """A seeded pool written chunk by chunk (never all in memory at once)."""
    from gapscope.helpers.scale import write_pool_file

    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(D, K)))[0].T.astype(np.float32)  # (K, D)
    means = (rng.normal(size=(CLASSES, K)) * 3).astype(np.float32)
    p = np.r_[np.full(CLASSES - 4, 0.95 / (CLASSES - 4)), np.full(4, 0.05 / 4)]
    labels = rng.choice(CLASSES, size=n, p=p)

    def chunks():
        for s in range(0, n, 65536):
            yc = labels[s : s + 65536]
            z = means[yc] + rng.normal(size=(len(yc), K)).astype(np.float32)
            yield z @ basis + 0.5 * rng.normal(size=(len(yc), D)).astype(np.float32)

    tmp = path.with_suffix(".tmp")
    write_pool_file(tmp, chunks())
    np.save(path.with_suffix(".labels.npy"), labels)
    tmp.replace(path)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _inertia(Z: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> float:
    total = 0.0
    for s in range(0, len(Z), 65536):
        z = Z[s : s + 65536].astype(np.float64)
        total += float(((z - centers[labels[s : s + 65536]]) ** 2).sum())
    return total


def _vm_data_mb() -> float:
    """The process's private writable memory (VmData), what RLIMIT_DATA caps."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(n: int, cache: Path, labeled: int, budget: int, hdbscan_max: int, umap_max: int, limit_mb: int) -> dict:
    import torch

    from gapscope.helpers.models import Ensemble
    from gapscope.helpers.scale import PoolFile, stream_round
    from gapscope.helpers.scoring import ensemble_uncertainty
    from gapscope.widgets import LatentMap

    out: dict = {"n": n, "threads": torch.get_num_threads()}
    path = cache / f"pool_{n}.arrow"
    if not path.exists():
        t = time.perf_counter()
        make_pool(path, n)
        out["write_s"] = time.perf_counter() - t
    pf = PoolFile(path)
    y = np.load(path.with_suffix(".labels.npy"))
    rng = np.random.default_rng(1)
    lab = np.sort(rng.choice(n, size=min(labeled, n // 5), replace=False))
    ens = Ensemble(n_members=5, epochs=5, n_classes=CLASSES, random_state=0).fit(pf.rows(lab), y[lab])
    ids = np.arange(n).astype(str)
    lm = LatentMap(np.random.default_rng(2).normal(size=(n, 2)), ids, color_by="density", hover=False)
    out["rss_before_mb"] = _rss_mb()
    out["file_mb"] = path.stat().st_size / 2**20
    if limit_mb:
        # cap private memory (heap, anonymous maps) at what the process holds now + limit_mb;
        # the memory-mapped file's pages are not private and do not count
        out["vmdata_before_mb"] = _vm_data_mb()
        cap = int((out["vmdata_before_mb"] + limit_mb) * 2**20)
        resource.setrlimit(resource.RLIMIT_DATA, (cap, resource.getrlimit(resource.RLIMIT_DATA)[1]))
        out["limit_mb"] = limit_mb
    t = time.perf_counter()
    r = stream_round(pf, ens, budget=budget, labeled_ids=lab, latent_map=lm, random_state=0)
    out["round_s"] = time.perf_counter() - t
    out["rss_round_mb"] = _rss_mb()
    out["ours"] = r.timings
    if limit_mb:
        del lm
        try:
            X = np.concatenate(list(pf.batches()))
            out["in_memory_load"] = f"succeeded ({X.nbytes / 2**20:.0f} MiB)"
        except MemoryError as exc:
            out["in_memory_load"] = f"MemoryError ({exc})"[:200]
        out["anchors"], out["agree"], out["rss_end_mb"] = {}, {}, _rss_mb()
        return out

    # ---- anchors, on the pool in memory
    X = np.concatenate(list(pf.batches()))
    anchors: dict[str, dict[str, float]] = {}
    agree: dict[str, float] = {}
    # score: the members one after another in plain torch
    t = time.perf_counter()
    with torch.inference_mode():
        P = torch.empty((len(ens.members_), n, CLASSES))
        Xt = torch.from_numpy(X)
        for s in range(0, n, 4096):
            xb = Xt[s : s + 4096]
            for m, member in enumerate(ens.members_):
                P[m, s : s + 4096] = torch.softmax(member(xb)[0], -1)
        U = ensemble_uncertainty(P).numpy()
    anchors["score"] = {"torch loop": time.perf_counter() - t}
    agree["score max |dU|"] = float(np.abs(U - r.scores).max())
    del P
    # reduce
    from sklearn.decomposition import PCA

    t = time.perf_counter()
    Zs = PCA(n_components=K, svd_solver="covariance_eigh").fit_transform(X)
    anchors["reduce"] = {"sklearn PCA": time.perf_counter() - t}
    agree["reduce max ||Z|-|Z'||"] = float(np.abs(np.abs(Zs) - np.abs(r.reduced)).max())
    del Zs
    Z = r.reduced
    # density
    from sklearn.neighbors import KernelDensity

    q = np.random.default_rng(3).choice(n, size=min(2000, n), replace=False)
    t = time.perf_counter()
    kd = KernelDensity(bandwidth=r.info["bandwidth"], rtol=0).fit(Z[lab].astype(np.float64))
    ld = kd.score_samples(Z[q].astype(np.float64))
    anchors["density"] = {"~sklearn KernelDensity": (time.perf_counter() - t) * n / len(q)}
    agree["density max |dlogp|"] = float(np.abs(ld - r.log_density[q]).max())
    # cluster
    import faiss
    from sklearn.cluster import MiniBatchKMeans

    ours_inertia = _inertia(Z, r.clusters, r.centers)
    t = time.perf_counter()
    km = faiss.Kmeans(K, 100, niter=25, seed=1, max_points_per_centroid=256, verbose=False)
    km.train(np.ascontiguousarray(Z))
    _, fl = km.index.search(np.ascontiguousarray(Z), 1)
    anchors["cluster"] = {"faiss Kmeans": time.perf_counter() - t}
    agree["cluster inertia faiss/ours"] = _inertia(Z, fl.ravel(), km.centroids.astype(np.float64)) / ours_inertia
    t = time.perf_counter()
    mb = MiniBatchKMeans(n_clusters=100, n_init=1, random_state=0, batch_size=4096).fit(Z)
    anchors["cluster"]["sklearn MiniBatchKMeans"] = time.perf_counter() - t
    agree["cluster inertia minibatch/ours"] = _inertia(Z, mb.labels_, mb.cluster_centers_) / ours_inertia
    if n <= hdbscan_max:
        import hdbscan

        t = time.perf_counter()
        hdbscan.HDBSCAN(min_cluster_size=max(50, n // 1000)).fit(r.coords)
        anchors["cluster"]["hdbscan (2-D map, other result)"] = time.perf_counter() - t
    # select: the same recipe in numpy + scikit-learn
    from sklearn.cluster import KMeans

    t = time.perf_counter()
    avail = np.setdiff1d(np.arange(n), lab)
    kk = min(10 * budget, avail.size)
    topk = avail[np.argpartition(-r.scores[avail], kk - 1)[:kk]]
    zz = Z[topk] / np.linalg.norm(Z[topk], axis=1, keepdims=True)
    cl = KMeans(n_clusters=10, n_init=3, random_state=0).fit_predict(zz)
    picks = []
    for c in range(10):
        mem = topk[cl == c]
        picks.append(mem[np.argsort(-r.scores[mem])[: budget // 10]])
    anchors["select"] = {"numpy + sklearn KMeans": time.perf_counter() - t}
    # map
    anchors["map"] = {}
    if n <= umap_max:
        import umap

        t = time.perf_counter()
        umap.UMAP(n_neighbors=15, random_state=0).fit_transform(Z)
        anchors["map"]["umap-learn (other map)"] = time.perf_counter() - t
    out["anchors"] = anchors
    out["agree"] = agree
    out["rss_end_mb"] = _rss_mb()
    return out


def report(res: list[dict]) -> None:
    steps = ["score", "reduce", "density", "cluster", "select", "map"]
    for r in res:
        print(f"\n## n = {r['n']:,} x {D} (file {r['file_mb']:.0f} MiB, torch threads {r['threads']}, "
              f"load {r['load_before']} -> {r['load_after']})")
        if "limit_mb" in r:
            print(f"private memory capped (RLIMIT_DATA) at {r['vmdata_before_mb']:.0f} + {r['limit_mb']} MiB, "
                  f"below the file's {r['file_mb']:.0f} MiB; loading the pool into memory afterwards: {r['in_memory_load']}")
        print(f"round (training excluded) {r['round_s']:.2f} s; peak RSS {r['rss_before_mb']:.0f} MiB before the round "
              f"(imports, model, map) -> {r['rss_round_mb']:.0f} MiB after it"
              + ("" if "limit_mb" in r else f"; {r['rss_end_mb']:.0f} MiB after the anchors (which hold the pool in memory)"))
        print("| step | ours s | anchor | anchor s | anchor / ours |")
        print("| --- | ---: | --- | ---: | ---: |")
        for s in steps:
            ours = r["ours"][s]
            anc = r["anchors"].get(s) or {"-": float("nan")}
            for i, (name, sec) in enumerate(anc.items()):
                lead = f"| {s} | {ours:.3f} " if i == 0 else "| | "
                ratio = sec / ours if ours > 0 and np.isfinite(sec) else float("nan")
                print(f"{lead}| {name} | {sec:.3f} | {ratio:.2f} |")
        if r["agree"]:
            print("agreement: " + ", ".join(f"{k} = {v:.3g}" for k, v in r["agree"].items()))
    if len(res) > 1:
        print("\ngrowth exponent of our steps (slope of log t against log n)")
        print("| step | " + " | ".join(f"{a['n']:,} -> {b['n']:,}" for a, b in zip(res, res[1:], strict=False)) + " |")
        print("| --- |" + " ---: |" * (len(res) - 1))
        for s in [*steps, "round"]:
            cells = []
            for a, b in zip(res, res[1:], strict=False):
                ta = a["round_s"] if s == "round" else a["ours"][s]
                tb = b["round_s"] if s == "round" else b["ours"][s]
                cells.append(f"{np.log(tb / ta) / np.log(b['n'] / a['n']):.2f}" if ta > 0 and tb > 0 else "-")
            print(f"| {s} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--quick", action="store_true", help="n = 10^4 and 10^5")
    ap.add_argument("--labeled", type=int, default=2000)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--hdbscan-max-n", type=int, default=100_000)
    ap.add_argument("--umap-max-n", type=int, default=100_000)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "gapscope-bench-round")
    ap.add_argument("--limit-mb", type=int, default=0,
                    help="cap the round's private memory at what the process holds before it + this many MiB "
                    "(RLIMIT_DATA) and skip the anchors; with a file larger than the cap this shows the pool is streamed")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.cache.mkdir(parents=True, exist_ok=True)
    if a.child:
        print("RESULT " + json.dumps(child(a.child, a.cache, a.labeled, a.budget, a.hdbscan_max_n, a.umap_max_n, a.limit_mb)))
        return
    ns = [10_000, 100_000] if a.quick else a.n
    res = []
    for n in ns:
        load0 = os.getloadavg()
        cmd = [sys.executable, __file__, "--child", str(n), "--labeled", str(a.labeled), "--budget", str(a.budget),
               "--hdbscan-max-n", str(a.hdbscan_max_n), "--umap-max-n", str(a.umap_max_n), "--cache", str(a.cache),
               "--limit-mb", str(a.limit_mb)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode or not line:
            sys.exit(f"n={n}: child failed ({p.returncode})\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        r = json.loads(line[0][7:])
        r["load_before"] = " ".join(f"{x:.1f}" for x in load0)
        r["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
        res.append(r)
        print(f"n = {n:,}: round {r['round_s']:.2f} s", flush=True)
    print(f"\n# bench_round.py, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs")
    report(res)


if __name__ == "__main__":
    main()

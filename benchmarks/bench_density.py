"""Benchmark: exact Gaussian KDE and k-means against what a user would pick instead.

KDE (queries = the reference points themselves, "score the pool under its own density"):
  ours (helpers.density.GaussianKDE, float32, torch)      -- timed on all m = n queries
  scipy.stats.gaussian_kde.logpdf                          -- timed on a query subset, extrapolated
  sklearn KernelDensity (kd/ball tree, rtol=0 and 1e-4)    -- timed on a query subset, extrapolated
and the ceilings on the same device, measured in the same run:
  exp rate  : torch ``exp`` on in-range float32 inputs into a reused 2048 x 2048 buffer
              (exact Gaussian KDE needs one exp per (query, reference) pair); also
              clamp+exp, the pair of passes the KDE actually runs
  matmul    : torch sgemm of the kernel's own shape (2048 x (d+2)) @ ((d+2) x 2048),
              as pairs/s = flops/s / (2 (d+2))
k-means (k = 50, 3 inits, 100k x 16; --quick: 20k x 16): ours vs scikit-learn KMeans and faiss.

Usage:  python benchmarks/bench_density.py [--quick] [--device cpu|cuda|auto] [--threads N]
(On a CPU shared with other jobs, ``--threads 1`` avoids OpenMP oversubscription, which
slows every library's 2-thread runs by up to 10x and makes the ratios noise.)
Slow baselines are extrapolated linearly in the number of queries from a random subset of
the queries (stated in the output as "extrap. from q queries").
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timeit(fn, dev=None, repeat=1, warmup=0):
    for _ in range(warmup):
        fn()
    if dev is not None:
        _sync(dev)
    best = math.inf
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        if dev is not None:
            _sync(dev)
        best = min(best, time.perf_counter() - t)
    return best, out


def exp_rate(dev):
    """Measured float32 exp throughput (elements/s), 2048x2048, written into a reused buffer.

    Returns (exp alone on inputs in [-87, 0], clamp(-87, 80) then exp on inputs in
    [-120, 0] -- the KDE's own pair of passes).
    """
    import torch

    n = 2048 * 2048
    ok = torch.empty(n, device=dev).uniform_(-87.0, 0.0)
    wide = torch.empty(n, device=dev).uniform_(-120.0, 0.0)
    buf = torch.empty_like(ok)

    def run_exp():
        for _ in range(10):
            torch.exp(ok, out=buf)

    def run_clamp_exp():
        for _ in range(10):
            torch.clamp(wide, -87.0, 80.0, out=buf).exp_()

    t1, _ = timeit(run_exp, dev, repeat=3, warmup=1)
    t2, _ = timeit(run_clamp_exp, dev, repeat=3, warmup=1)
    return 10 * n / t1, 10 * n / t2


def matmul_pairs_rate(dev, d):
    import torch

    a = torch.randn(2048, d + 2, device=dev)
    b = torch.randn(d + 2, 2048, device=dev)
    out = torch.empty(2048, 2048, device=dev)

    def run():
        for _ in range(10):
            torch.mm(a, b, out=out)

    t, _ = timeit(run, dev, repeat=3, warmup=1)
    pairs = 10 * 2048 * 2048 / t
    return pairs, pairs * 2 * (d + 2) / 1e9


def sgemm_peak(dev):
    import torch

    a = torch.randn(2048, 2048, device=dev)
    b = torch.randn(2048, 2048, device=dev)
    t, _ = timeit(lambda: a @ b, dev, repeat=3, warmup=1)
    return 2 * 2048**3 / t / 1e9


def reference_logp(Z, Q, h):
    """float64 numpy brute force in blocks (for the accuracy column)."""
    from scipy.special import logsumexp

    out = np.empty(len(Q))
    for i in range(len(Q)):
        sq = ((Z - Q[i]) ** 2).sum(axis=1)
        out[i] = logsumexp(-0.5 * sq / h**2)
    d = Z.shape[1]
    return out - math.log(len(Z)) - 0.5 * d * math.log(2 * math.pi * h**2)


def bench_kde(n, d, dev, n_sub, rng, skip_slow):
    from scipy.stats import gaussian_kde
    from sklearn.neighbors import KernelDensity

    from gapscope.helpers.density import GaussianKDE

    # a mildly clustered cloud: 8 Gaussian blobs
    centers = rng.normal(size=(8, d)) * 3
    Z = (centers[rng.integers(0, 8, n)] + rng.normal(size=(n, d))).astype(np.float64)
    kde = GaussianKDE("scott", device=dev)
    t_fit, _ = timeit(lambda: kde.fit(Z), dev)
    t_ours, logp = timeit(lambda: kde.score_samples(Z), dev)
    t_ours += t_fit
    pairs = float(n) * n
    h = kde.bandwidth_
    sub = rng.choice(n, n_sub, replace=False)
    ref = reference_logp(Z, Z[sub[:50]], h)
    err = float(np.abs(logp[sub[:50]] - ref).max())
    row = {
        "n": n,
        "d": d,
        "ours_s": t_ours,
        "ours_Gpairs": pairs / t_ours / 1e9,
        "err": err,
    }
    if skip_slow:
        return row
    # scipy (full-covariance kernel; same cost per pair)
    g = gaussian_kde(Z.T)
    t, _ = timeit(lambda: g.logpdf(Z[sub].T))
    row["scipy_s"] = t * n / n_sub
    for rtol in (0.0, 1e-4):
        def fit_score(rtol=rtol):
            k = KernelDensity(bandwidth=h, kernel="gaussian", rtol=rtol).fit(Z)
            return k.score_samples(Z[sub])

        t, _ = timeit(fit_score)
        row[f"sk_rtol{rtol:g}_s"] = t * n / n_sub
    row["n_sub"] = n_sub
    return row


def bench_kmeans(n, d, k, rng, dev):
    import faiss
    from sklearn.cluster import KMeans

    from gapscope.helpers.clustering import kmeans, kmeans_inertia

    centers = rng.normal(size=(k, d)) * 4
    X = (centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(np.float32)
    res = {}
    t, (lab, cen) = timeit(lambda: kmeans(X, k, n_init=3, random_state=0))
    res["ours"] = (t, kmeans_inertia(X, lab, cen))
    t, km = timeit(lambda: KMeans(k, n_init=3, random_state=0).fit(X))
    res["sklearn"] = (t, kmeans_inertia(X, km.labels_, km.cluster_centers_))

    def run_faiss():
        fk = faiss.Kmeans(d, k, niter=25, nredo=3, seed=1234, verbose=False)
        fk.train(X)
        _, lab = fk.index.search(X, 1)
        return lab[:, 0], fk.centroids

    t, (flab, fcen) = timeit(run_faiss)
    res["faiss"] = (t, kmeans_inertia(X, flab.astype(np.int64), fcen))
    return res


def main(argv=None):
    import torch

    from gapscope.helpers.device import resolve_device

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="n = 10k only, fewer baselines")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--threads", type=int, default=None,
        help="threads for every library (torch, BLAS/OpenMP via threadpoolctl, faiss); "
        "default: each library's own default",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="n values (default 10k, 100k)")
    ap.add_argument("--dims", type=int, nargs="+", default=None, help="d values (default 2 16 64)")
    ap.add_argument("--no-kmeans", action="store_true", help="skip the k-means comparison")
    args = ap.parse_args(argv)
    if args.threads:
        import faiss
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
        threadpool_limits(args.threads)  # numpy/scipy BLAS and scikit-learn's OpenMP
    dev = resolve_device(args.device)
    rng = np.random.default_rng(args.seed)
    print(f"# bench_density  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"# device={dev}  torch={torch.__version__}  threads={torch.get_num_threads()}  "
          f"cpu={platform.processor() or platform.machine()}  quick={args.quick}")

    er, cer = exp_rate(dev)
    peak = sgemm_peak(dev)
    print(f"\nceilings: exp {er / 1e9:.2f} G/s on inputs in [-87, 0]; clamp+exp "
          f"{cer / 1e9:.2f} G/s (float32, 2048x2048 into a reused buffer); "
          f"sgemm 2048^3 {peak:.0f} GFLOP/s.  %exp below = our pairs/s over the exp-alone rate")
    sizes = args.sizes or ([10_000] if args.quick else [10_000, 100_000])
    dims = args.dims or [2, 16, 64]
    print("\nKDE, m = n queries (the points themselves), Scott bandwidth, float32")
    hdr = (f"{'n':>7} {'d':>3} | {'ours s':>8} {'Gpair/s':>7} {'%exp':>5} {'%mm':>5} {'max|dlogp|':>10} | "
           f"{'scipy s':>9} {'x':>6} | {'sk rtol0 s':>10} {'x':>6} | {'sk 1e-4 s':>9} {'x':>6} | extrap")
    print(hdr)
    print("-" * len(hdr))
    for n in sizes:
        for d in dims:
            mm_pairs, mm_gflops = matmul_pairs_rate(dev, d)
            n_sub = 100 if n <= 10_000 else 100
            skip = args.quick and d == 64
            r = bench_kde(n, d, dev, n_sub, rng, skip)
            line = (f"{n:>7} {d:>3} | {r['ours_s']:>8.2f} {r['ours_Gpairs']:>7.3f} "
                    f"{100 * r['ours_Gpairs'] * 1e9 / er:>4.0f}% {100 * r['ours_Gpairs'] * 1e9 / mm_pairs:>4.0f}% "
                    f"{r['err']:>10.1e} | ")
            if "scipy_s" in r:
                line += (f"{r['scipy_s']:>9.1f} {r['scipy_s'] / r['ours_s']:>5.1f}x | "
                         f"{r['sk_rtol0_s']:>10.1f} {r['sk_rtol0_s'] / r['ours_s']:>5.1f}x | "
                         f"{r['sk_rtol0.0001_s']:>9.1f} {r['sk_rtol0.0001_s'] / r['ours_s']:>5.1f}x | "
                         f"from {r['n_sub']} queries")
            else:
                line += "(baselines skipped)"
            print(line, flush=True)
            print(f"{'':>11}   matmul ceiling at this shape: {mm_pairs / 1e9:.2f} Gpair/s "
                  f"({mm_gflops:.0f} GFLOP/s)", flush=True)

    if args.no_kmeans:
        return
    n_km = 20_000 if args.quick else 100_000
    print(f"\nk-means, {n_km} x 16, k = 50, n_init 3 (faiss: niter 25, nredo 3, its default "
          "subsampling to 256 points per centroid); inertia on all points, float64")
    res = bench_kmeans(n_km, 16, 50, rng, dev)
    base = res["sklearn"][1]
    for name, (t, inertia) in res.items():
        print(f"  {name:>8}: {t:7.2f} s   inertia / sklearn = {inertia / base:.4f}")
    print(f"  ours vs sklearn: {res['sklearn'][0] / res['ours'][0]:.2f}x speed; "
          f"ours vs faiss: {res['faiss'][0] / res['ours'][0]:.2f}x speed")


if __name__ == "__main__":
    main()

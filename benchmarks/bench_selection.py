"""Benchmark helpers.selection: every strategy on a large pool, ratios against scikit-activeml.

Usage::

    python benchmarks/bench_selection.py            # 1M x 64 pool, budget 1000
    python benchmarks/bench_selection.py --quick    # 100k x 64 pool

Part 1 times every strategy of ``helpers.selection`` selecting ``--budget`` items from an
``--n`` x 64 float32 pool (a 50-component Gaussian mixture; probabilities are a softmax
of a fixed random linear map of the embedding; the log-density is the analytic
``-|z|^2/2`` so the KDE's own cost is not part of the selection figures -- see
bench_density). k-center and uncertainty + lambda * diversity also run on the torch CPU
path (numpy is the CPU default; compared over ``--backend-steps`` picks) and on CUDA when
it is available. typiclust and cluster_bandit run their k-means with ``n_init=1,
max_iter=--kmeans-iter`` in part 1.

Part 2 runs scikit-activeml's implementations of the same strategies (``CoreSet``,
``UncertaintySampling(method="entropy")``, ``Badge``, ``TypiClust``) and ours on identical
inputs and prints the time ratio. ``CoreSet`` and ``Badge`` allocate a (batch, n) float64
utility matrix and, for ``Badge``, the (n, C*d) gradient embedding, so they run at a
smaller ``--baseline-n`` / ``--baseline-budget``; their cost is O(n * budget), and the
extrapolation to the full problem is printed as such (``extrapolated``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_pool(n: int, d: int = 64, n_classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(50, d)).astype(np.float32) * 3.0
    comp = rng.integers(0, 50, size=n)
    Z = centers[comp] + rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(d, n_classes)).astype(np.float32) * 0.15
    logits = Z @ W
    logits -= logits.max(1, keepdims=True)
    P = np.exp(logits)
    P /= P.sum(1, keepdims=True)
    ent = -(P * np.log(np.maximum(P, 1e-30))).sum(1)
    logp = -0.5 * (Z.astype(np.float64) ** 2).sum(1)
    return Z, P.astype(np.float64), ent, logp


def timed(fn, repeat: int = 1):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def coverage_radius(Z: np.ndarray, chosen: np.ndarray) -> float:
    """max over points of the distance to the nearest chosen point (float64)."""
    C = Z[chosen].astype(np.float64)
    csq = (C**2).sum(1)
    best = 0.0
    for s in range(0, len(Z), 8192):
        X = Z[s : s + 8192].astype(np.float64)
        d2 = (X**2).sum(1)[:, None] - 2 * X @ C.T + csq[None]
        best = max(best, float(np.sqrt(max(d2.min(1).max(), 0.0))))
    return best


def part1(args, Z, P, ent, logp):
    import torch

    from gapscope.helpers import selection

    print(f"\n## Part 1: every strategy, {len(Z):,} x {Z.shape[1]} pool, budget {args.budget}")
    print(f"{'strategy':<28} {'seconds':>9}")
    common = dict(scores=ent, embeddings=Z, probs=P, log_density=logp, random_state=0)
    opts = {
        "typiclust": dict(kmeans_options=dict(n_init=1, max_iter=args.kmeans_iter)),
        "cluster_bandit": dict(kmeans_options=dict(n_init=1, max_iter=args.kmeans_iter)),
    }
    results = {}
    for name in args.strategies:
        repeat = 3 if name in ("random", "uncertainty", "margin", "density_weighted", "low_density") else 1
        t, _ = timed(lambda name=name: selection.select(name, args.budget, **common, **opts.get(name, {})), repeat)
        results[name] = t
        print(f"{name:<28} {t:>9.3f}", flush=True)
    # the greedy core on other backends, with --backend-steps picks (numpy again, same steps)
    steps = min(args.budget, args.backend_steps)
    pool = selection._Pool(steps, embeddings=Z)
    Zt = torch.as_tensor(Z)
    un = (ent - ent.min()) / np.ptp(ent)
    for label, util in (("kcenter", None), ("uncertainty_diversity", un)):
        if label not in args.strategies:
            continue
        t_np, _ = timed(lambda util=util: selection._greedy(
            selection._NumpyOps(Z), pool, np.random.default_rng(0), utility=util, lam=1.0))
        t_t, _ = timed(lambda util=util: selection._greedy(
            selection._TorchOps(Zt), pool, np.random.default_rng(0), utility=util, lam=1.0))
        print(f"{label + f' {steps} picks numpy':<28} {t_np:>9.3f}")
        print(f"{label + f' {steps} picks torch-cpu':<28} {t_t:>9.3f}   (torch-cpu / numpy = {t_t / t_np:.2f})")
        if torch.cuda.is_available():
            Zc = Zt.cuda()
            fn = selection.kcenter if label == "kcenter" else selection.uncertainty_diversity
            kw = {} if label == "kcenter" else {"scores": ent}
            fn(args.budget, embeddings=Zc, random_state=0, **kw)  # warm-up
            torch.cuda.synchronize()
            t, _ = timed(lambda fn=fn, kw=kw, Zc=Zc: fn(args.budget, embeddings=Zc, random_state=0, **kw), 3)
            print(f"{label + ' [cuda]':<28} {t:>9.3f}   (cpu/cuda = {results[label] / t:.1f})")
    return results


class _Lookup:
    """Built lazily: a SkactivemlClassifier whose predict_proba looks up fixed probabilities.

    X passed to scikit-activeml is an (n, 1) column of row ids; ``return_embeddings=True``
    also returns the embeddings (what Badge asks for), so both libraries see the same
    probabilities and embeddings and no model is fitted.
    """

    @staticmethod
    def make(P, Z):
        from skactiveml.base import SkactivemlClassifier

        class Lookup(SkactivemlClassifier):
            def __init__(self, probs=None, emb=None, classes=None, missing_label=np.nan):
                super().__init__(classes=classes, missing_label=missing_label)
                self.probs = probs
                self.emb = emb

            def fit(self, X, y, sample_weight=None):
                return self

            def predict_proba(self, X, return_embeddings=False):
                ids = np.asarray(X)[:, 0].astype(np.int64)
                if return_embeddings:
                    return self.probs[ids], self.emb[ids]
                return self.probs[ids]

            def predict(self, X):
                return self.predict_proba(X).argmax(1)

        return Lookup(P, Z, classes=np.arange(P.shape[1]))


def part2(args, Z, P, ent, logp, results_full):
    from skactiveml.pool import Badge, CoreSet, TypiClust, UncertaintySampling

    from gapscope.helpers import selection

    N, B = len(Z), args.budget
    nb, bb = args.baseline_n, args.baseline_budget
    print(f"\n## Part 2: against scikit-activeml {__import__('skactiveml').__version__}")
    print(f"{'strategy':<14} {'n':>9} {'budget':>6} {'ours s':>8} {'skactiveml s':>13} {'ratio':>7}  note")

    def row(name, n, b, ours, theirs, note=""):
        print(f"{name:<14} {n:>9,} {b:>6} {ours:>8.3f} {theirs:>13.3f} {theirs / ours:>6.1f}x  {note}", flush=True)

    # uncertainty: full size
    ids = np.arange(N, dtype=np.float64)[:, None]
    y = np.full(N, np.nan)
    clf = _Lookup.make(P, Z)
    t_ours, a = timed(lambda: selection.select("uncertainty", B, scores=ent, random_state=0), 3)
    t_sk, b = timed(lambda: UncertaintySampling(method="entropy", random_state=0).query(
        ids, y, clf, fit_clf=False, batch_size=B), 1)
    same = len(set(np.asarray(a).tolist()) & set(np.asarray(b).tolist()))
    row("uncertainty", N, B, t_ours, t_sk, f"same picks: {same}/{B}")

    # the O(n * budget) ones at the baseline size, then extrapolated
    Zs, Ps = Z[:nb], P[:nb]
    ys = np.full(nb, np.nan)
    ys[:10] = 0  # 10 labeled items so both k-center runs start from the same set
    lab = ~np.isnan(ys)
    t_ours, a = timed(lambda: selection.kcenter(bb, embeddings=Zs, labeled_mask=lab, random_state=0))
    t_sk, b = timed(lambda: CoreSet(random_state=0).query(Zs, ys, batch_size=bb))
    ra = coverage_radius(Zs, np.r_[np.flatnonzero(lab), a])
    rb = coverage_radius(Zs, np.r_[np.flatnonzero(lab), np.asarray(b)])
    row("kcenter", nb, bb, t_ours, t_sk, f"radius ours {ra:.3f} vs {rb:.3f}; same picks "
        f"{len(set(a.tolist()) & set(np.asarray(b).tolist()))}/{bb}")
    t_full = results_full.get("kcenter")
    if t_full is not None:
        ext = t_sk * (N / nb) * (B / bb)
        print(f"{'kcenter':<14} {N:>9,} {B:>6} {t_full:>8.3f} {ext:>13.1f} {ext / t_full:>6.0f}x  "
              f"skactiveml extrapolated as O(n * budget) from the row above")

    ids_s = np.arange(nb, dtype=np.float64)[:, None]
    clf_s = _Lookup.make(Ps, Zs)
    yb = np.full(nb, np.nan)
    t_ours, a = timed(lambda: selection.badge(bb, probs=Ps, embeddings=Zs, random_state=0))
    t_sk, b = timed(lambda: Badge(clf_embedding_flag_name="return_embeddings", random_state=0).query(
        ids_s, yb, clf_s, fit_clf=False, batch_size=bb))
    row("badge", nb, bb, t_ours, t_sk, f"first pick equal: {int(a[0]) == int(b[0])}")
    t_full = results_full.get("badge")
    if t_full is not None:
        ext = t_sk * (N / nb) * (B / bb)
        print(f"{'badge':<14} {N:>9,} {B:>6} {t_full:>8.3f} {ext:>13.1f} {ext / t_full:>6.0f}x  "
              f"skactiveml extrapolated as O(n * budget) from the row above")

    # TypiClust: both run k-means (ours: helpers.clustering, theirs: scikit-learn KMeans)
    nt, bt = args.typiclust_n, args.typiclust_budget
    yt = np.full(nt, np.nan)
    selection.typiclust(bt, embeddings=Z[:nt], random_state=1)  # warm-up (first torch k-means call)
    t_ours, a = timed(lambda: selection.typiclust(bt, embeddings=Z[:nt], random_state=0), 3)
    t_sk, b = timed(lambda: TypiClust(random_state=0).query(Z[:nt], yt, batch_size=bt), 3)
    row("typiclust", nt, bt, t_ours, t_sk, "median of 3; k-means dominates both; not extrapolated")




def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k pool and smaller baselines")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--baseline-n", type=int, default=None)
    ap.add_argument("--baseline-budget", type=int, default=None)
    ap.add_argument("--typiclust-n", type=int, default=None)
    ap.add_argument("--typiclust-budget", type=int, default=None)
    ap.add_argument("--backend-steps", type=int, default=200,
                    help="picks for the numpy vs torch-cpu comparison of the greedy core")
    ap.add_argument("--kmeans-iter", type=int, default=10,
                    help="max_iter for the k-means inside typiclust / cluster_bandit in part 1")
    ap.add_argument("--strategies", nargs="*", default=None)
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="pin torch and BLAS/OpenMP (threadpoolctl) to this many threads; on an "
                         "oversubscribed machine 2-thread BLAS matrix-vector products were ~4x "
                         "slower than 1-thread ones")
    args = ap.parse_args(argv)
    if args.threads:
        import threadpoolctl
        import torch

        torch.set_num_threads(args.threads)
        threadpoolctl.threadpool_limits(args.threads)
    from gapscope.helpers import selection

    args.n = args.n or (100_000 if args.quick else 1_000_000)
    args.baseline_n = args.baseline_n or (5_000 if args.quick else 20_000)
    args.baseline_budget = args.baseline_budget or (50 if args.quick else 100)
    args.typiclust_n = args.typiclust_n or (5_000 if args.quick else 20_000)
    args.typiclust_budget = args.typiclust_budget or (50 if args.quick else 100)
    args.strategies = args.strategies or sorted(selection.STRATEGIES)
    import torch

    print(f"# bench_selection  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    import threadpoolctl

    blas = [f"{i['internal_api']}:{i['num_threads']}" for i in threadpoolctl.threadpool_info()]
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, blas threads {blas}, cuda {torch.cuda.is_available()}")
    Z, P, ent, logp = make_pool(args.n)
    results_full = part1(args, Z, P, ent, logp)
    if not args.skip_baselines:
        part2(args, Z, P, ent, logp, results_full)


if __name__ == "__main__":
    main()

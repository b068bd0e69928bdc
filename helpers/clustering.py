"""Latent-space clustering and 2-D maps: UMAP (cached), HDBSCAN / DBSCAN, torch k-means.

Cost notes (2-core CPU, see ``/work/shared/DESIGN.md``):

* UMAP's first call in a process spends ~20 s compiling numba code before any work. umap-learn
  compiles with numba's on-disk cache on (``cache=True``), so later *processes* skip most of
  that; keep it on (if the installed package directory is read-only, point ``NUMBA_CACHE_DIR``
  at a writable folder). :func:`umap_map` additionally caches finished maps on disk by a hash
  of the data and parameters, so re-running a notebook costs a file read.
* HDBSCAN on a 2-D map is fast (100k points ~3 s); on 16-d embeddings it is ~20x slower.
  For interactive use cluster the map or a reduced embedding.
* :func:`kmeans` is one torch implementation for CPU and GPU. On a CPU it is slower than
  scikit-learn / faiss for large n (``benchmarks/bench_density.py`` measures it); on a GPU
  it runs where the data already is.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import (
    check_array,
    check_choice,
    check_positive,
    check_random_state,
    is_torch,
)

__all__ = [
    "ClusterResult",
    "umap_map",
    "hdbscan_clusters",
    "dbscan_clusters",
    "kmeans",
    "kmeans_inertia",
]


@dataclass
class ClusterResult:
    """Result of a density-based clustering.

    Attributes
    ----------
    labels : ndarray of shape (n,), int64
        Cluster index per point, ``-1`` for noise.
    probabilities : ndarray of shape (n,), float64
        Membership strength in [0, 1] (HDBSCAN's ``probabilities_``; for DBSCAN 1.0 for
        cluster members and 0.0 for noise).
    outlier_scores : ndarray of shape (n,) or None
        GLOSH outlier scores (HDBSCAN only; higher = more outlying), None for DBSCAN.
    n_clusters : int
        Number of clusters, noise excluded.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    outlier_scores: np.ndarray | None
    n_clusters: int


def _check_int(value: Any, *, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int >= {low}, got {type(value).__name__}")
    if int(value) < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    return int(value)


# --------------------------------------------------------------------------------------------
# UMAP
# --------------------------------------------------------------------------------------------


def _umap_key(Z: np.ndarray, params: dict) -> str:
    h = hashlib.sha256()
    h.update(str(Z.shape).encode())
    h.update(np.ascontiguousarray(Z, dtype=np.float64).tobytes())
    h.update(repr(sorted(params.items())).encode())
    return h.hexdigest()[:32]


def umap_map(
    Z: Any,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    random_state: int | None = 0,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """A 2-D UMAP map of ``Z``, cached on disk.

    Parameters
    ----------
    Z : array of shape (n, d), finite, n >= 3
    n_neighbors : int >= 2, default 15
        Capped at ``n - 1``.
    min_dist : float >= 0, default 0.1
    metric : str, default "euclidean"
        Any metric umap-learn accepts.
    random_state : int or None, default 0
        An int makes the map reproducible (umap then runs single-threaded); None lets umap
        run in parallel, non-deterministically, and disables the disk cache.
    cache_dir : path or None, default None
        Folder for ``umap-<sha256 of data and parameters>.npy`` files; the map is loaded from
        there when present. None: no disk cache.

    Returns
    -------
    Y : ndarray of shape (n, 2), float32

    Notes
    -----
    The first call in a process costs ~20 s of numba compilation (less once numba's own
    on-disk cache is warm); later calls cost the embedding itself (seconds for 10k points).
    """
    Z = check_array(Z, name="Z", ndim=2, min_rows=3)
    n = Z.shape[0]
    n_neighbors = _check_int(n_neighbors, name="n_neighbors", low=2)
    min_dist = check_positive(min_dist, name="min_dist", strict=False)
    if random_state is not None:
        random_state = _check_int(random_state, name="random_state", low=0)
    params = {
        "n_neighbors": min(n_neighbors, n - 1),
        "min_dist": min_dist,
        "metric": metric,
        "random_state": random_state,
        "n_components": 2,
    }
    path = None
    if cache_dir is not None and random_state is not None:
        import umap as _umap_pkg

        params["umap_version"] = getattr(_umap_pkg, "__version__", "?")
        path = Path(cache_dir) / f"umap-{_umap_key(Z, params)}.npy"
        if path.exists():
            Y = np.load(path)
            if Y.shape == (n, 2):
                return Y
    import umap

    reducer = umap.UMAP(
        n_neighbors=params["n_neighbors"],
        min_dist=min_dist,
        metric=metric,
        n_components=2,
        random_state=random_state,
        n_jobs=1 if random_state is not None else -1,  # umap forces 1 with a seed anyway
    )
    Y = np.asarray(reducer.fit_transform(Z), dtype=np.float32)
    if path is not None:
        from ._io import atomic_write

        atomic_write(path, lambda p: np.save(p, Y))  # a concurrent reader never sees half a file
    return Y


# --------------------------------------------------------------------------------------------
# density-based clustering
# --------------------------------------------------------------------------------------------


def hdbscan_clusters(
    Z: Any, *, min_cluster_size: int = 15, min_samples: int | None = None
) -> ClusterResult:
    """HDBSCAN clusters of ``Z`` (the ``hdbscan`` package).

    Parameters
    ----------
    Z : array of shape (n, d), finite, n >= 2
    min_cluster_size : int >= 2, default 15
    min_samples : int >= 1 or None, default None (= min_cluster_size)

    Returns
    -------
    ClusterResult
        labels (-1 noise), membership ``probabilities`` and GLOSH ``outlier_scores``.
    """
    Z = check_array(Z, name="Z", ndim=2, min_rows=2)
    min_cluster_size = _check_int(min_cluster_size, name="min_cluster_size", low=2)
    if min_samples is not None:
        min_samples = _check_int(min_samples, name="min_samples", low=1)
    if Z.shape[0] < min_cluster_size:
        raise ValueError(
            f"Z: expected at least min_cluster_size={min_cluster_size} rows, got {Z.shape[0]}"
        )
    import hdbscan

    model = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples)
    model.fit(Z)
    labels = np.asarray(model.labels_, dtype=np.int64)
    return ClusterResult(
        labels=labels,
        probabilities=np.asarray(model.probabilities_, dtype=np.float64),
        outlier_scores=np.nan_to_num(np.asarray(model.outlier_scores_, dtype=np.float64)),
        n_clusters=int(labels.max() + 1) if (labels >= 0).any() else 0,
    )


def dbscan_clusters(Z: Any, *, eps: float, min_samples: int = 5) -> ClusterResult:
    """DBSCAN clusters of ``Z`` (scikit-learn).

    Parameters
    ----------
    Z : array of shape (n, d), finite
    eps : float > 0
        Neighbourhood radius (same units as ``Z``).
    min_samples : int >= 1, default 5

    Returns
    -------
    ClusterResult
        labels (-1 noise), ``probabilities`` 1.0 for members / 0.0 for noise,
        ``outlier_scores`` None.
    """
    Z = check_array(Z, name="Z", ndim=2, min_rows=1)
    eps = check_positive(eps, name="eps")
    min_samples = _check_int(min_samples, name="min_samples", low=1)
    from sklearn.cluster import DBSCAN

    labels = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(Z).astype(np.int64)
    return ClusterResult(
        labels=labels,
        probabilities=(labels >= 0).astype(np.float64),
        outlier_scores=None,
        n_clusters=int(labels.max() + 1) if (labels >= 0).any() else 0,
    )


# --------------------------------------------------------------------------------------------
# k-means in torch
# --------------------------------------------------------------------------------------------


#: Rows per distance block on the CPU: larger blocks only add page faults (10^6 x 16 to 100
#: centres: 0.08 s in 8192-row blocks into reused buffers, 0.25 s in 65k-row temporaries).
CPU_DIST_BLOCK = 8192


def _sq_dists_min(X, x_sq, C, *, block: int):
    """(min squared distance, argmin) of every row of X to the rows of C, blockwise."""
    import torch

    c_sq = (C * C).sum(dim=1)
    CT = C.T.contiguous()
    n = X.shape[0]
    if X.device.type == "cpu":
        block = min(block, CPU_DIST_BLOCK)
    best = torch.empty(n, dtype=X.dtype, device=X.device)
    arg = torch.empty(n, dtype=torch.int64, device=X.device)
    d2 = torch.empty((min(block, n), C.shape[0]), dtype=X.dtype, device=X.device)
    for i in range(0, n, block):
        j = min(n, i + block)
        torch.addmm(c_sq, X[i:j], CT, alpha=-2.0, out=d2[: j - i])  # |c|^2 - 2 x.c
        torch.min(d2[: j - i], 1, out=(best[i:j], arg[i:j]))
    best.add_(x_sq).clamp_(min=0)
    return best, arg


def _kmeans_pp(X, x_sq, k, gen, *, block):
    """Greedy k-means++ seeding (scikit-learn's: 2 + log k candidates per step)."""
    import torch

    n = X.shape[0]
    n_trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=gen, device=X.device))
    centers = [X[first]]
    closest, _ = _sq_dists_min(X, x_sq, X[first : first + 1], block=block)
    for _ in range(1, k):
        total = closest.sum()
        if float(total) <= 0:  # fewer distinct points than k: pick uniformly
            cand = torch.randint(n, (n_trials,), generator=gen, device=X.device)
        else:
            cand = torch.multinomial(closest / total, n_trials, replacement=True, generator=gen)
        C = X[cand]
        d2 = (x_sq[:, None] - 2.0 * X @ C.T + (C * C).sum(dim=1)[None, :]).clamp_(min=0)
        pots = torch.minimum(closest[:, None], d2)
        best = int(pots.sum(dim=0).argmin())
        closest = pots[:, best].contiguous()
        centers.append(C[best])
    return torch.stack(centers)


def _lloyd(X, x_sq, C, *, max_iter, tol_abs, cosine, block):
    import torch

    n, _ = X.shape
    k = C.shape[0]
    for _ in range(max_iter):
        _, labels = _sq_dists_min(X, x_sq, C, block=block)
        sums = torch.zeros_like(C).index_add_(0, labels, X)
        counts = torch.bincount(labels, minlength=k).to(X.dtype)
        empty = counts == 0
        new = sums / counts.clamp(min=1)[:, None]
        if bool(empty.any()):
            # Re-seed empty clusters at the points farthest from their centre.
            d_now, _ = _sq_dists_min(X, x_sq, C, block=block)
            far = torch.topk(d_now, int(empty.sum())).indices
            new[empty] = X[far]
        if cosine:
            new = torch.nn.functional.normalize(new, dim=1)
        shift = float(((new - C) ** 2).sum())
        C = new
        if shift <= tol_abs:
            break
    d2, labels = _sq_dists_min(X, x_sq, C, block=block)
    return labels, C, float(d2.sum(dtype=torch.float64))


def kmeans(
    Z: Any,
    n_clusters: int,
    *,
    metric: str = "euclidean",
    n_init: int = 3,
    max_iter: int = 100,
    tol: float = 1e-4,
    random_state: Any = None,
):
    """k-means with greedy k-means++ seeding, in torch on the device of ``Z``.

    Parameters
    ----------
    Z : array or tensor of shape (n, d), finite, n >= n_clusters
        A CUDA tensor is clustered on that GPU; numpy input on
        :func:`gapscope.helpers.device.resolve_device` ("auto").
    n_clusters : int >= 1
    metric : {"euclidean", "cosine"}, default "euclidean"
        ``"cosine"`` is spherical k-means: rows are L2-normalised, centres are renormalised
        after every update, and the objective is ``sum(1 - cos(z, c))`` (= half the squared
        euclidean distance between unit vectors). Zero rows are rejected.
    n_init : int >= 1, default 3
        Independent seedings; the run with the lowest objective is returned.
    max_iter : int >= 1, default 100
    tol : float >= 0, default 1e-4
        Stop when the squared centre shift is <= ``tol * mean feature variance * d``
        (scikit-learn's relative tolerance).
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    labels : ndarray of shape (n,) int64 (a tensor on Z's device when Z is a tensor)
    centers : ndarray of shape (n_clusters, d) float64 (tensor when Z is a tensor; unit
        vectors for ``"cosine"``)

    Notes
    -----
    float32 on the device, with the dot-product distance form in blocks sized by
    :func:`gapscope.helpers.device.chunk_rows`. The final objective is available from
    :func:`kmeans_inertia`.
    """
    import torch

    from .density import _as_tensor, _resolve_fit_device
    from .device import chunk_rows

    check_choice(metric, name="metric", choices=("euclidean", "cosine"))
    k = _check_int(n_clusters, name="n_clusters", low=1)
    n_init = _check_int(n_init, name="n_init", low=1)
    max_iter = _check_int(max_iter, name="max_iter", low=1)
    tol = check_positive(tol, name="tol", strict=False)
    dev = _resolve_fit_device(Z, "auto")
    X = _as_tensor(Z, name="Z", device=dev, min_rows=1, dtype=torch.float32)
    n, d = X.shape
    if n < k:
        raise ValueError(f"Z: expected at least n_clusters={k} rows, got {n}")
    cosine = metric == "cosine"
    if cosine:
        norms = X.norm(dim=1)
        if bool((norms == 0).any()):
            raise ValueError(
                f'Z: metric="cosine" needs non-zero rows, got {int((norms == 0).sum())} zero row(s)'
            )
        X = X / norms[:, None]
    x_sq = (X * X).sum(dim=1)
    tol_abs = tol * float(X.var(dim=0, unbiased=False).mean()) * d if n > 1 else 0.0
    block = chunk_rows(max(k, 1) * 4 * 2, device=dev)
    rng = check_random_state(random_state)
    gen = torch.Generator(device=dev)
    best = None
    for _ in range(n_init):
        gen.manual_seed(int(rng.integers(0, 2**63 - 1)))
        C0 = _kmeans_pp(X, x_sq, k, gen, block=block)
        if cosine:
            C0 = torch.nn.functional.normalize(C0, dim=1)
        labels, C, inertia = _lloyd(
            X, x_sq, C0, max_iter=max_iter, tol_abs=tol_abs, cosine=cosine, block=block
        )
        if best is None or inertia < best[2]:
            best = (labels, C, inertia)
    assert best is not None  # n_init >= 1
    labels, C, _ = best
    if is_torch(Z):
        return labels, C.to(torch.float64)
    return labels.cpu().numpy().astype(np.int64), C.cpu().numpy().astype(np.float64)


def kmeans_inertia(Z: Any, labels: Any, centers: Any, *, metric: str = "euclidean") -> float:
    """The k-means objective in float64: sum of squared distances to the assigned centres
    (``"euclidean"``) or sum of ``1 - cos`` (``"cosine"``).

    Parameters
    ----------
    Z : array of shape (n, d); labels : int array of shape (n,); centers : array (k, d)
    """
    check_choice(metric, name="metric", choices=("euclidean", "cosine"))
    Z = check_array(Z, name="Z", ndim=2)
    C = check_array(centers, name="centers", ndim=2)
    lab = check_array(labels, name="labels", ndim=1, dtype=np.int64)
    if lab.shape[0] != Z.shape[0]:
        raise ValueError(f"labels: expected {Z.shape[0]} entries (rows of Z), got {lab.shape[0]}")
    if lab.min() < 0 or lab.max() >= C.shape[0]:
        raise ValueError(f"labels: expected values in [0, {C.shape[0] - 1}], got [{lab.min()}, {lab.max()}]")
    if metric == "cosine":
        Zn = Z / np.linalg.norm(Z, axis=1, keepdims=True)
        Cn = C / np.linalg.norm(C, axis=1, keepdims=True)
        return float(np.sum(1.0 - np.einsum("ij,ij->i", Zn, Cn[lab])))
    return float(np.sum((Z - C[lab]) ** 2))

"""Batch selection strategies with one signature, and cluster-balanced resampling.

Every strategy is called as::

    select(strategy, budget, *, scores=None, embeddings=None, probs=None,
           labeled_mask=None, log_density=None, random_state=None, **options)

and returns an int64 array of ``budget`` unique indices into the pool arrays that were
passed (rows of ``embeddings`` / ``probs`` / entries of ``scores``), in selection order
(most preferred first). When ``labeled_mask`` is given, already-labeled rows are never
returned; they still count as "covered" for the strategies that look at the labeled set
(``kcenter``, ``uncertainty_diversity``, ``typiclust``). Every strategy is deterministic
given ``random_state``; ties are broken at random (seeded), not by pool order.

================================  ===========================================================
name                              what it needs (besides ``budget``)
================================  ===========================================================
``random``                        any pool array (for the pool size)
``uncertainty``                   ``scores`` (larger = more uncertain) or ``probs``
``margin``                        ``probs`` (smallest top-1 minus top-2 margin first)
``kcenter``                       ``embeddings`` (greedy coreset, Sener & Savarese 2018)
``uncertainty_diversity``         ``embeddings`` and ``scores``/``probs`` (the design's B*)
``cluster_bandit``                ``embeddings`` and ``scores``/``probs`` (the UMC recipe)
``density_weighted``              ``scores``/``probs`` and ``log_density`` or ``embeddings``
``low_density``                   ``log_density`` or ``embeddings`` (the gap sampler)
``typiclust``                     ``embeddings`` (Hacohen et al. 2022)
``badge``                         ``probs`` and ``embeddings`` (Ash et al. 2020)
================================  ===========================================================

Strategies that return more than indices (``cluster_bandit``'s per-cluster allocation,
the greedy objectives) fill the optional ``info`` dict passed as an option.

:func:`balance` resamples a dataset with the design's cluster-inverse weights.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
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
    "select",
    "STRATEGIES",
    "random",
    "uncertainty",
    "margin",
    "kcenter",
    "uncertainty_diversity",
    "cluster_bandit",
    "density_weighted",
    "low_density",
    "typiclust",
    "badge",
    "balance",
    "cluster_inverse_weights",
]


# ----------------------------------------------------------------------------------------
# validation shared by all strategies
# ----------------------------------------------------------------------------------------
def _ndim(x: Any) -> int:
    return len(x.shape) if is_torch(x) else int(np.ndim(x))


def _n_rows(x: Any) -> int:
    if is_torch(x):
        return int(x.shape[0])
    return int(np.asarray(x).shape[0]) if np.ndim(x) else 0


class _Pool:
    """The validated pool: its size, the labeled mask and the selectable indices."""

    def __init__(
        self,
        budget: Any,
        *,
        scores: Any = None,
        embeddings: Any = None,
        probs: Any = None,
        labeled_mask: Any = None,
        log_density: Any = None,
    ) -> None:
        sizes: dict[str, int] = {}
        if scores is not None:
            sizes["scores"] = _n_rows(scores)
        if embeddings is not None:
            if _ndim(embeddings) != 2:
                raise ValueError(
                    f"embeddings: expected an array of shape (n_pool, n_features), got shape "
                    f"{tuple(embeddings.shape) if hasattr(embeddings, 'shape') else np.shape(embeddings)}"
                )
            sizes["embeddings"] = _n_rows(embeddings)
        if probs is not None:
            nd = _ndim(probs)
            if nd not in (2, 3):
                raise ValueError(
                    "probs: expected an array of shape (n_pool, n_classes) or "
                    f"(n_models, n_pool, n_classes), got shape "
                    f"{tuple(probs.shape) if hasattr(probs, 'shape') else np.shape(probs)}"
                )
            sizes["probs"] = int(probs.shape[0] if nd == 2 else probs.shape[1])
        if log_density is not None:
            sizes["log_density"] = _n_rows(log_density)
        if labeled_mask is not None:
            sizes["labeled_mask"] = _n_rows(labeled_mask)
        if not sizes or set(sizes) == {"labeled_mask"}:
            raise ValueError(
                "scores/embeddings/probs/log_density: expected at least one pool array, got none"
            )
        if len(set(sizes.values())) > 1:
            raise ValueError(f"pool arrays: expected one pool size for all of them, got {sizes}")
        self.n = next(iter(sizes.values()))
        if self.n < 1:
            raise ValueError("pool arrays: expected a non-empty pool, got 0 rows")
        if labeled_mask is None:
            self.labeled = np.zeros(self.n, dtype=bool)
        else:
            m = (
                labeled_mask.detach().cpu().numpy()
                if is_torch(labeled_mask)
                else np.asarray(labeled_mask)
            )
            if m.dtype != bool or m.shape != (self.n,):
                raise ValueError(
                    f"labeled_mask: expected a bool array of shape ({self.n},), "
                    f"got dtype {m.dtype} shape {m.shape}"
                )
            self.labeled = m
        self.available = np.flatnonzero(~self.labeled)
        self.n_available = int(self.available.size)
        if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
            raise TypeError(f"budget: expected a positive int, got {type(budget).__name__}")
        if int(budget) <= 0:
            raise ValueError(f"budget: expected a positive int, got {budget!r}")
        if int(budget) > self.n_available:
            raise ValueError(
                f"budget: expected at most the {self.n_available} unlabeled pool items "
                f"(pool {self.n}, labeled {self.n - self.n_available}), got {budget}"
            )
        self.budget = int(budget)


def _as_numpy(x: Any, *, name: str, ndim: Any, dtype: Any = np.float64) -> np.ndarray:
    return check_array(x, name=name, ndim=ndim, dtype=dtype)


def _mean_probs(probs: Any) -> np.ndarray:
    p = _as_numpy(probs, name="probs", ndim=(2, 3), dtype=np.float64)
    if p.ndim == 3:
        p = p.mean(axis=0)
    if p.shape[1] < 2:
        raise ValueError(f"probs: expected at least 2 classes, got shape {p.shape}")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probs: expected non-negative rows summing to 1 (probabilities)")
    return p


def _uncertainty(scores: Any, probs: Any, score: str) -> np.ndarray:
    """U(x) per pool item: the given ``scores``, or ``helpers.scoring.SCORES[score](probs)``."""
    if scores is not None:
        return _as_numpy(scores, name="scores", ndim=1)
    if probs is None:
        raise ValueError("scores/probs: expected uncertainty scores or probabilities, got neither")
    from . import scoring

    check_choice(score, name="score", choices=tuple(scoring.SCORES))
    p = probs if is_torch(probs) else np.asarray(probs)
    if p.ndim == 2:
        p = p[None]
    out = scoring.SCORES[score](p)
    return _as_numpy(out, name="scores", ndim=1)


def _top_k(
    values: np.ndarray, k: int, candidates: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The ``k`` candidates with the largest ``values``, descending; ties broken at random."""
    v = values[candidates]
    if k >= v.size:
        kth = -np.inf
    else:
        kth = np.partition(v, v.size - k)[v.size - k]
    above = np.flatnonzero(v > kth)
    tied = np.flatnonzero(v == kth)
    need = k - above.size
    if need > 0:
        tied = rng.choice(tied, size=need, replace=False) if need < tied.size else tied
        pos = np.concatenate([above, tied])
    else:
        pos = above[:k]
    # sort by value descending; among equal values by a random key
    key = rng.random(pos.size)
    order = np.lexsort((key, -v[pos]))
    return candidates[pos[order]].astype(np.int64)


def _info(info: Any) -> dict:
    if info is None:
        return {}
    if not isinstance(info, dict):
        raise TypeError(f"info: expected a dict to fill (or None), got {type(info).__name__}")
    return info


# ----------------------------------------------------------------------------------------
# simple strategies
# ----------------------------------------------------------------------------------------
def random(
    budget: int,
    *,
    scores: Any = None,
    embeddings: Any = None,
    probs: Any = None,
    labeled_mask: Any = None,
    log_density: Any = None,
    random_state: Any = None,
    info: dict | None = None,
) -> np.ndarray:
    """``budget`` unlabeled items uniformly at random without replacement.

    Returns
    -------
    ndarray of int64, shape (budget,)
    """
    pool = _Pool(
        budget,
        scores=scores,
        embeddings=embeddings,
        probs=probs,
        labeled_mask=labeled_mask,
        log_density=log_density,
    )
    rng = check_random_state(random_state)
    return rng.choice(pool.available, size=pool.budget, replace=False).astype(np.int64)


def uncertainty(
    budget: int,
    *,
    scores: Any = None,
    embeddings: Any = None,
    probs: Any = None,
    labeled_mask: Any = None,
    log_density: Any = None,
    random_state: Any = None,
    score: str = "predictive_entropy",
    info: dict | None = None,
) -> np.ndarray:
    """The ``budget`` most uncertain unlabeled items (top-k of U, ties at random).

    Parameters
    ----------
    scores : array-like of shape (n_pool,), optional
        U(x), larger = more uncertain. Takes precedence over ``probs``.
    probs : array-like of shape (n_pool, n_classes) or (n_models, n_pool, n_classes), optional
        Scored with ``helpers.scoring.SCORES[score]`` when ``scores`` is None.
    score : str, default "predictive_entropy"
        A name in ``helpers.scoring.SCORES``.

    Returns
    -------
    ndarray of int64, shape (budget,), most uncertain first.
    """
    pool = _Pool(
        budget,
        scores=scores,
        embeddings=embeddings,
        probs=probs,
        labeled_mask=labeled_mask,
        log_density=log_density,
    )
    u = _uncertainty(scores, probs, score)
    return _top_k(u, pool.budget, pool.available, check_random_state(random_state))


def margin(
    budget: int,
    *,
    scores: Any = None,
    embeddings: Any = None,
    probs: Any = None,
    labeled_mask: Any = None,
    log_density: Any = None,
    random_state: Any = None,
    info: dict | None = None,
) -> np.ndarray:
    """The ``budget`` unlabeled items with the smallest margin p(top-1) - p(top-2).

    The margin is taken on the ensemble-mean probabilities when ``probs`` is 3-D.

    Returns
    -------
    ndarray of int64, shape (budget,), smallest margin first.
    """
    pool = _Pool(
        budget,
        scores=scores,
        embeddings=embeddings,
        probs=probs,
        labeled_mask=labeled_mask,
        log_density=log_density,
    )
    if probs is None:
        raise ValueError("probs: the margin strategy needs class probabilities, got None")
    p = _mean_probs(probs)
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    m = top2[:, 0] - top2[:, 1]
    out = _top_k(-m, pool.budget, pool.available, check_random_state(random_state))
    _info(info)["margin"] = m[out]
    return out


# ----------------------------------------------------------------------------------------
# greedy farthest-point core (k-center and uncertainty + lambda * diversity)
# ----------------------------------------------------------------------------------------
class _NumpyOps:
    """The few array operations the greedy loop needs, for numpy (in place, no allocation)."""

    def __init__(self, X: np.ndarray) -> None:
        self.X = np.ascontiguousarray(X, dtype=np.float32)
        self.n = self.X.shape[0]
        self.sq = np.einsum("ij,ij->i", self.X, self.X)
        self.buf = np.empty(self.n, dtype=np.float32)

    def vec(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float32).copy()

    def to_numpy(self, v: Any) -> np.ndarray:
        return np.asarray(v, dtype=np.float64)

    def sq_dist_to(self, i: int) -> np.ndarray:
        """Squared distances of every row to row ``i`` (dot-product form), in ``self.buf``."""
        np.matmul(self.X, self.X[i], out=self.buf)
        self.buf *= -2.0
        self.buf += self.sq
        self.buf += self.sq[i]
        return self.buf

    def min_sq_dist_to_set(self, idx: np.ndarray, device_rows: int) -> np.ndarray:
        out = np.full(self.n, np.inf, dtype=np.float32)
        if idx.size == 0:
            return out
        L = self.X[idx]
        Lsq = self.sq[idx]
        for s in range(0, self.n, device_rows):
            e = min(self.n, s + device_rows)
            d = self.X[s:e] @ L.T
            d *= -2.0
            d += Lsq[None, :]
            d += self.sq[s:e, None]
            out[s:e] = d.min(axis=1)
        return out

    @staticmethod
    def minimum_(a: np.ndarray, b: np.ndarray) -> None:
        np.minimum(a, b, out=a)

    @staticmethod
    def index(idx: np.ndarray) -> np.ndarray:
        return idx

    @staticmethod
    def argmax(v: np.ndarray) -> int:
        return int(np.argmax(v))

    def objective(self, mind: np.ndarray, util: np.ndarray, coef: float) -> np.ndarray:
        o = np.maximum(mind, 0.0, out=self.buf)
        np.sqrt(o, out=o)
        o *= coef
        o += util
        return o


class _TorchOps:
    """The same operations in torch, on the device of ``X``."""

    def __init__(self, X: Any) -> None:
        import torch

        self.torch = torch
        self.X = X.to(torch.float32).contiguous()
        self.n = self.X.shape[0]
        self.sq = (self.X * self.X).sum(dim=1)
        self.buf = torch.empty(self.n, dtype=torch.float32, device=self.X.device)

    def vec(self, values: np.ndarray) -> Any:
        return self.torch.as_tensor(
            np.asarray(values, dtype=np.float32), device=self.X.device
        ).clone()

    def to_numpy(self, v: Any) -> np.ndarray:
        return v.detach().cpu().numpy().astype(np.float64)

    def sq_dist_to(self, i: int) -> Any:
        self.torch.mv(self.X, self.X[i], out=self.buf)
        self.buf.mul_(-2.0).add_(self.sq).add_(self.sq[i])
        return self.buf

    def min_sq_dist_to_set(self, idx: np.ndarray, device_rows: int) -> Any:
        torch = self.torch
        out = torch.full((self.n,), float("inf"), dtype=torch.float32, device=self.X.device)
        if idx.size == 0:
            return out
        it = torch.as_tensor(idx, device=self.X.device)
        L = self.X[it]
        Lsq = self.sq[it]
        for s in range(0, self.n, device_rows):
            e = min(self.n, s + device_rows)
            d = self.X[s:e] @ L.T
            d.mul_(-2.0).add_(Lsq[None, :]).add_(self.sq[s:e, None])
            out[s:e] = d.min(dim=1).values
        return out

    def minimum_(self, a: Any, b: Any) -> None:
        self.torch.minimum(a, b, out=a)

    def index(self, idx: np.ndarray) -> Any:
        return self.torch.as_tensor(idx, device=self.X.device)

    @staticmethod
    def argmax(v: Any) -> int:
        return int(v.argmax().item())

    def objective(self, mind: Any, util: Any, coef: float) -> Any:
        o = self.torch.clamp(mind, min=0.0, out=self.buf)
        o.sqrt_().mul_(coef).add_(util)
        return o


def _ops_for(embeddings: Any, device: Any) -> Any:
    """numpy on the CPU (measured faster there), torch on CUDA; the device follows the data."""
    from .device import device_of, resolve_device

    if device is not None:
        dev = resolve_device(device)
    else:
        dev = device_of(embeddings)
    if dev.type == "cpu":
        if is_torch(embeddings):
            X = embeddings.detach().cpu().numpy()
        else:
            X = np.asarray(embeddings)
        X = check_array(X, name="embeddings", ndim=2, dtype=np.float32)
        return _NumpyOps(X)
    import torch

    X = (
        embeddings
        if is_torch(embeddings)
        else torch.as_tensor(check_array(embeddings, name="embeddings", ndim=2, dtype=np.float32))
    )
    X = X.to(dev)
    if not bool(torch.isfinite(X).all()):
        raise ValueError("embeddings: expected finite values, got NaN or inf")
    return _TorchOps(X)


def _greedy(
    ops: Any,
    pool: _Pool,
    rng: np.random.Generator,
    *,
    utility: np.ndarray | None,
    lam: float,
) -> tuple[np.ndarray, dict]:
    """Greedy farthest-point selection, optionally plus a per-item utility.

    ``utility is None`` -> k-center: each step picks the argmax of the distance to the
    covered set (labeled + chosen). Otherwise each step picks the argmax of
    ``utility + lam * dist / scale``. Blocked rows (labeled, chosen) carry -inf in the
    vector that is maximised, so they are never picked again.
    """
    from .device import chunk_rows

    k = pool.budget
    labeled_idx = np.flatnonzero(pool.labeled)
    dev = "cpu" if isinstance(ops, _NumpyOps) else ops.X.device
    rows = chunk_rows(4 * max(1, labeled_idx.size), device=dev)
    mind = ops.min_sq_dist_to_set(labeled_idx, rows)  # +inf everywhere when no labeled
    # the vector whose argmax is the next pick: mind itself (k-center) or the utility
    if utility is None:
        target = mind
        if labeled_idx.size:
            target[ops.index(labeled_idx)] = -np.inf
    else:
        util_np = np.where(pool.labeled, -np.inf, utility)
        target = None
    selected: list[int] = []
    info: dict = {}
    if labeled_idx.size == 0:
        if utility is None:
            first = int(rng.choice(pool.available))
        else:
            best = np.flatnonzero(util_np == util_np.max())
            first = int(best[0] if best.size == 1 else rng.choice(best))
        selected.append(first)
        ops.minimum_(mind, ops.sq_dist_to(first))
        if utility is None:
            mind[first] = -np.inf
        else:
            util_np[first] = -np.inf
    coef = 0.0
    if utility is not None:
        # the distance scale s: the median distance of a selectable item to the covered
        # set at the start (the largest one if the median is 0; 1 if all are 0), so
        # lam = 1 weighs a typical distance like the whole range of U
        md = np.sqrt(np.maximum(ops.to_numpy(mind)[np.isfinite(util_np)], 0.0))
        s = float(np.median(md)) if md.size else 0.0
        if s <= 0 and md.size:
            s = float(md.max())
        s = s if s > 0 else 1.0
        info["distance_scale"] = s
        coef = lam / s
        target = ops.vec(util_np)
    gains: list[float] = []
    while len(selected) < k:
        if utility is None:
            i = ops.argmax(mind)
        else:
            obj = ops.objective(mind, target, coef)
            i = ops.argmax(obj)
            gains.append(float(ops.to_numpy(obj[i : i + 1])[0]))
        selected.append(i)
        ops.minimum_(mind, ops.sq_dist_to(i))
        if utility is None:
            mind[i] = -np.inf
        else:
            target[i] = -np.inf
    if utility is None:
        # radius: the largest distance of an unselected, unlabeled item to the chosen set
        rest = ops.to_numpy(mind)
        rest = rest[np.isfinite(rest)]
        info["radius"] = math.sqrt(max(float(rest.max()), 0.0)) if rest.size else 0.0
    else:
        info["gains"] = np.asarray(gains)
    return np.asarray(selected, dtype=np.int64), info


def kcenter(
    budget: int,
    *,
    scores: Any = None,
    embeddings: Any = None,
    probs: Any = None,
    labeled_mask: Any = None,
    log_density: Any = None,
    random_state: Any = None,
    device: Any = None,
    info: dict | None = None,
) -> np.ndarray:
    """Greedy k-center (coreset, Sener & Savarese 2018) on ``embeddings``.

    Each step takes the unlabeled item farthest (Euclidean) from the labeled set and the
    items chosen so far, which gives a 2-approximation of the minimax-radius problem.
    Without labeled items the first center is drawn at random (``random_state``).
    Distances use the dot-product form ``|x|^2 - 2 x.c + |c|^2`` in float32 with one
    matrix-vector product per step; the distances to a labeled set are computed in
    row blocks sized by :func:`gapscope.helpers.device.chunk_rows`.

    Parameters
    ----------
    embeddings : array or tensor of shape (n_pool, n_features)
    device : None or device spec, optional
        None: follow the data (a CUDA tensor computes on its GPU; numpy or CPU tensors
        use numpy, measured faster than torch on the CPU).
    info : dict, optional
        Filled with ``"radius"``: the largest distance from an unselected unlabeled
        item to the labeled set plus the batch.

    Returns
    -------
    ndarray of int64, shape (budget,), in selection order.
    """
    pool = _Pool(
        budget,
        scores=scores,
        embeddings=embeddings,
        probs=probs,
        labeled_mask=labeled_mask,
        log_density=log_density,
    )
    if embeddings is None:
        raise ValueError("embeddings: the kcenter strategy needs embeddings, got None")
    rng = check_random_state(random_state)
    out, extra = _greedy(_ops_for(embeddings, device), pool, rng, utility=None, lam=0.0)
    _info(info).update(extra)
    return out


def uncertainty_diversity(
    budget: int,
    *,
    scores: Any = None,
    embeddings: Any = None,
    probs: Any = None,
    labeled_mask: Any = None,
    log_density: Any = None,
    random_state: Any = None,
    lam: float = 1.0,
    score: str = "predictive_entropy",
    device: Any = None,
    info: dict | None = None,
) -> np.ndarray:
    """Greedy maximisation of the design's ``sum_{x in B} U(x) + lam * Diverse(B)``.

    ``U`` is min-max normalised to [0, 1] over the unlabeled pool (all-equal scores give
    U = 0). ``Diverse(B) = sum_t d(x_t, L ∪ {x_1 .. x_{t-1}}) / s``: each batch item's
    Euclidean distance to the labeled set and the items chosen before it, divided by the
    scale ``s`` = the median distance of an unlabeled item to the labeled set (to the first
    pick when nothing is labeled) at the start, so ``lam = 1`` weighs a typical distance
    like the whole range of U.
    Greedy step t adds ``argmax_x U(x) + lam * d(x, L ∪ B_t) / s``. Without labeled items
    the first pick is the most uncertain item (ties at random). ``lam = 0`` is top-k
    uncertainty; ``lam -> inf`` is k-center.

    Parameters
    ----------
    scores, probs : U(x) as in :func:`uncertainty`.
    embeddings : array or tensor of shape (n_pool, n_features)
    lam : float >= 0, default 1.0
        The weight lambda of the diversity term.
    device : see :func:`kcenter`.
    info : dict, optional
        Filled with ``"gains"`` (the greedy marginal gains after the first pick) and
        ``"distance_scale"`` (s).

    Returns
    -------
    ndarray of int64, shape (budget,), in selection order.
    """
    pool = _Pool(
        budget,
        scores=scores,
        embeddings=embeddings,
        probs=probs,
        labeled_mask=labeled_mask,
        log_density=log_density,
    )
    if embeddings is None:
        raise ValueError(
            "embeddings: the uncertainty_diversity strategy needs embeddings, got None"
        )
    lam = check_positive(lam, name="lam", strict=False)
    u = _uncertainty(scores, probs, score)
    ua = u[pool.available]
    lo, hi = float(ua.min()), float(ua.max())
    un = (u - lo) / (hi - lo) if hi > lo else np.zeros_like(u)
    rng = check_random_state(random_state)
    out, extra = _greedy(_ops_for(embeddings, device), pool, rng, utility=un, lam=lam)
    _info(info).update(extra)
    return out


# ----------------------------------------------------------------------------------------
# cluster-then-bandit (UMC)
# ----------------------------------------------------------------------------------------
def cluster_bandit(
    budget: int,
    *,
    scores: Any = None,
    embeddings: Any = None,
    probs: Any = None,
    labeled_mask: Any = None,
    log_density: Any = None,
    random_state: Any = None,
    top_k: int | None = None,
    n_clusters: int = 10,
    bandit: Any = "ucb1",
    previous_centers: Any = None,
    score: str = "predictive_entropy",
    kmeans_options: dict | None = None,
    info: dict | None = None,
) -> np.ndarray:
    """The UMC recipe: top-K uncertain -> cosine k-means -> bandit split -> top per cluster.

    1. Take the ``top_k`` most uncertain unlabeled items (default ``min(10 * budget,
       n_unlabeled)``).
    2. Cluster their embeddings with cosine k-means (``helpers.clustering.kmeans``) into
       ``min(n_clusters, top_k)`` clusters; every cluster is a bandit arm.
    3. The bandit splits the budget over the clusters (``bandit.allocate(budget,
       capacities=cluster sizes)``).
    4. Within each cluster take its ``b_c`` most uncertain items.

    Parameters
    ----------
    scores, probs : U(x) as in :func:`uncertainty`.
    embeddings : array-like of shape (n_pool, n_features)
    top_k : int, optional
    n_clusters : int, default 10
    bandit : {"ucb1", "thompson"} or a bandit object, default "ucb1"
        A name creates a fresh bandit (``helpers.bandits.make_bandit``). An object (kept
        across rounds by the loop) is used and changed in place: with ``previous_centers``
        its arms are first re-matched to this round's clusters by nearest center
        (``helpers.bandits.match_arms`` then ``bandit.resize``); without, its ``n_arms``
        must equal the number of clusters.
    previous_centers : array-like of shape (n_old_clusters, n_features), optional
        Last round's ``info["centers"]``.
    kmeans_options : dict, optional
        Extra keyword arguments for ``helpers.clustering.kmeans`` (``n_init``, ``max_iter``).
    info : dict, optional
        Filled with ``"candidates"`` (the top-K indices), ``"cluster_labels"`` (cluster per
        candidate), ``"centers"``, ``"allocation"`` (samples per cluster, sums to budget),
        ``"arms"`` (cluster of each returned index, aligned with it), ``"bandit"`` and
        ``"mapping"`` (when arms were re-matched).

    Returns
    -------
    ndarray of int64, shape (budget,), grouped by cluster, most uncertain first within each.
    """
    from . import bandits as _bandits
    from .clustering import kmeans

    pool = _Pool(
        budget,
        scores=scores,
        embeddings=embeddings,
        probs=probs,
        labeled_mask=labeled_mask,
        log_density=log_density,
    )
    if embeddings is None:
        raise ValueError("embeddings: the cluster_bandit strategy needs embeddings, got None")
    rng = check_random_state(random_state)
    u = _uncertainty(scores, probs, score)
    Z = _as_numpy(embeddings, name="embeddings", ndim=2, dtype=np.float32)
    if top_k is None:
        top_k = min(10 * pool.budget, pool.n_available)
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral):
        raise TypeError(f"top_k: expected an int, got {type(top_k).__name__}")
    if not pool.budget <= int(top_k) <= pool.n_available:
        raise ValueError(
            f"top_k: expected an int in [budget={pool.budget}, {pool.n_available}], got {top_k}"
        )
    if (
        isinstance(n_clusters, bool)
        or not isinstance(n_clusters, numbers.Integral)
        or n_clusters < 1
    ):
        raise ValueError(f"n_clusters: expected a positive int, got {n_clusters!r}")
    cand = _top_k(u, int(top_k), pool.available, rng)
    C = int(min(n_clusters, cand.size))
    seed = int(rng.integers(0, 2**31 - 1))
    labels, centers = kmeans(Z[cand], C, metric="cosine", random_state=seed, **(kmeans_options or {}))
    labels = np.asarray(labels.detach().cpu() if is_torch(labels) else labels, dtype=np.int64)
    centers = np.asarray(centers.detach().cpu() if is_torch(centers) else centers, dtype=np.float64)
    C = centers.shape[0]
    out_info = _info(info)
    if isinstance(bandit, str):
        b = _bandits.make_bandit(bandit, C, random_state=rng)
    else:
        b = bandit
        if not (hasattr(b, "allocate") and hasattr(b, "resize")):
            raise TypeError(
                f"bandit: expected 'ucb1', 'thompson' or a bandit object, got {type(bandit).__name__}"
            )
        if previous_centers is not None:
            mapping = _bandits.match_arms(previous_centers, centers, metric="cosine")
            b.resize(C, mapping)
            out_info["mapping"] = mapping
        elif b.n_arms != C:
            raise ValueError(
                f"bandit: expected n_arms = {C} clusters (or pass previous_centers to re-match "
                f"the arms), got n_arms = {b.n_arms}"
            )
    sizes = np.bincount(labels, minlength=C)
    alloc = np.asarray(b.allocate(pool.budget, capacities=sizes), dtype=np.int64)
    picked: list[np.ndarray] = []
    arms: list[np.ndarray] = []
    for c in np.flatnonzero(alloc):
        members = np.flatnonzero(labels == c)  # in candidate order = most uncertain first
        picked.append(cand[members[: alloc[c]]])
        arms.append(np.full(alloc[c], c, dtype=np.int64))
    out = np.concatenate(picked).astype(np.int64)
    out_info.update(
        candidates=cand,
        cluster_labels=labels,
        centers=centers,
        allocation=alloc,
        arms=np.concatenate(arms),
        bandit=b,
    )
    return out


# ----------------------------------------------------------------------------------------
# density-based strategies
# ----------------------------------------------------------------------------------------
def _log_density(log_density: Any, embeddings: Any, kde: Any) -> np.ndarray:
    if log_density is not None:
        lp = check_array(
            log_density.detach().cpu().numpy() if is_torch(log_density) else log_density,
            name="log_density",
            ndim=1,
            finite=False,
        )
        if np.isnan(lp).any() or np.isposinf(lp).any():
            raise ValueError("log_density: expected finite values or -inf, got NaN or +inf")
        return lp
    if embeddings is None:
        raise ValueError(
            "log_density/embeddings: expected log-densities or embeddings to fit a KDE, got neither"
        )
    from .density import GaussianKDE

    if kde is None:
        kde = GaussianKDE().fit(embeddings)
    lp = kde.score_samples(embeddings)
    return np.asarray(lp.detach().cpu() if is_torch(lp) else lp, dtype=np.float64)


def density_weighted(
    budget: int,
    *,
    scores: Any = None,
    embeddings: Any = None,
    probs: Any = None,
    labeled_mask: Any = None,
    log_density: Any = None,
    random_state: Any = None,
    beta: float = 1.0,
    kde: Any = None,
    score: str = "predictive_entropy",
    info: dict | None = None,
) -> np.ndarray:
    """Top-k of ``U(x) * p(z)^beta`` (information density).

    ``beta > 0`` favours uncertain items in dense, representative regions; ``beta < 0``
    uncertain items in sparse ones; ``beta = 0`` is plain uncertainty. Ranked by
    ``log U + beta * log p`` so extreme log-densities do not overflow; items with U = 0
    come last.

    Parameters
    ----------
    scores, probs : U(x) >= 0 as in :func:`uncertainty`.
    log_density : array-like of shape (n_pool,), optional
        log p(z); when None a ``helpers.density.GaussianKDE`` (``kde`` or a default one) is
        fitted on all ``embeddings`` and evaluated there.
    beta : float, default 1.0

    Returns
    -------
    ndarray of int64, shape (budget,), largest weighted score first.
    """
    pool = _Pool(
        budget,
        scores=scores,
        embeddings=embeddings,
        probs=probs,
        labeled_mask=labeled_mask,
        log_density=log_density,
    )
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not math.isfinite(beta):
        raise ValueError(f"beta: expected a finite real number, got {beta!r}")
    u = _uncertainty(scores, probs, score)
    if (u < 0).any():
        raise ValueError(
            f"scores: expected non-negative uncertainties for U * p^beta, got min {u.min()}"
        )
    lp = _log_density(log_density, embeddings, kde)
    # rank by log U + beta * log p (the log of U * p^beta): no overflow for extreme log p;
    # U = 0 ranks last whatever p is
    with np.errstate(divide="ignore", invalid="ignore"):
        key = np.log(u) + (beta * lp if beta != 0 else 0.0)
    key = np.where(u > 0, key, -np.inf)
    key = np.nan_to_num(key, nan=-np.inf)
    return _top_k(key, pool.budget, pool.available, check_random_state(random_state))


def low_density(
    budget: int,
    *,
    scores: Any = None,
    embeddings: Any = None,
    probs: Any = None,
    labeled_mask: Any = None,
    log_density: Any = None,
    random_state: Any = None,
    eps: float | None = None,
    temperature: float = 1.0,
    kde: Any = None,
    info: dict | None = None,
) -> np.ndarray:
    """The gap sampler: draw without replacement with probability ∝ ``(1/(p(z)+eps))^(1/T)``.

    The weights are those of ``helpers.density.low_density_weights`` (kept in log space)
    and the draw is Gumbel-top-k, the same sampler as
    ``helpers.density.select_low_density``, restricted to the unlabeled items.

    Parameters
    ----------
    log_density : array-like of shape (n_pool,), optional
        log p(z); when None a KDE is fitted on all ``embeddings`` (see
        :func:`density_weighted`).
    eps : float > 0, optional
        Added to p(z); default ``exp(quantile(log p, 0.05))`` over the pool.
    temperature : float > 0, default 1.0

    Returns
    -------
    ndarray of int64, shape (budget,), most preferred first.
    """
    pool = _Pool(budget, scores=scores, embeddings=embeddings, probs=probs,
                 labeled_mask=labeled_mask, log_density=log_density)
    lp = _log_density(log_density, embeddings, kde)
    if eps is None:
        finite = lp[np.isfinite(lp)]
        eps = float(np.exp(np.quantile(finite, 0.05))) if finite.size else 1.0
        eps = eps if eps > 0 else float(np.finfo(np.float64).tiny)
    eps = check_positive(eps, name="eps")
    temperature = check_positive(temperature, name="temperature")
    # log of low_density_weights' w = (1/(p+eps))^(1/T), kept in log space: at small T the
    # normalised weights underflow to 0 and would make the Gumbel keys all -inf
    log_w = -np.logaddexp(lp[pool.available], math.log(eps)) / temperature
    rng = check_random_state(random_state)
    keys = log_w + rng.gumbel(size=log_w.size)
    order = np.argsort(-keys, kind="stable")[: pool.budget]
    _info(info)["eps"] = eps
    return pool.available[order].astype(np.int64)


# ----------------------------------------------------------------------------------------
# published baselines: TypiClust and BADGE
# ----------------------------------------------------------------------------------------
def _typicality(X: np.ndarray, k_nn: int) -> np.ndarray:
    """1 / mean distance to the ``k`` nearest other members (k = min(k_nn, n // 2), >= 1)."""
    n = X.shape[0]
    if n == 1:
        return np.ones(1)
    k = max(1, min(k_nn, n // 2))
    sq = np.einsum("ij,ij->i", X, X)
    out = np.empty(n)
    step = max(1, (64 * 2**20) // (8 * n))
    for s in range(0, n, step):
        e = min(n, s + step)
        d2 = sq[s:e, None] - 2.0 * X[s:e] @ X.T + sq[None, :]
        np.maximum(d2, 0.0, out=d2)
        d2[np.arange(e - s), np.arange(s, e)] = np.inf  # exclude self
        part = np.partition(d2, k - 1, axis=1)[:, :k]
        out[s:e] = 1.0 / (np.sqrt(part).mean(axis=1) + 1e-12)
    return out


def typiclust(
    budget: int,
    *,
    scores: Any = None,
    embeddings: Any = None,
    probs: Any = None,
    labeled_mask: Any = None,
    log_density: Any = None,
    random_state: Any = None,
    k_nn: int = 20,
    max_clusters: int = 500,
    min_cluster_size: int = 5,
    kmeans_options: dict | None = None,
    info: dict | None = None,
) -> np.ndarray:
    """TypiClust (Hacohen, Dekel & Weinshall 2022), following the authors' code.

    k-means (``helpers.clustering.kmeans``, Euclidean) on all embeddings into
    ``min(n_labeled + budget, max_clusters, n_pool)`` clusters. Each step picks the cluster
    with the fewest labeled-or-selected members (uncovered clusters first), ties to the
    largest (clusters with at most ``min_cluster_size`` members after every larger cluster
    of the same count), and takes its most typical unlabeled, unselected member,
    typicality = 1 / mean Euclidean distance to the ``min(k_nn, |c| // 2)`` nearest cluster
    members. Remaining ties are broken at random.

    Coverage comes before size: the authors' code drops the small clusters outright, so
    once the larger clusters are all covered it takes second and third items from them
    rather than one from an uncovered small cluster. When ``n_labeled + budget`` is a large
    share of the pool, most clusters are small and the few large ones lie in the densest
    class, so every pick would land there.

    Parameters
    ----------
    embeddings : array-like of shape (n_pool, n_features)
    k_nn : int, default 20
    max_clusters : int, default 500
        The authors' cap on the number of clusters (keeps k-means affordable).
    min_cluster_size : int, default 5
        Clusters of at most this many members rank after the larger clusters with the
        same number of labeled-or-selected members; they are not skipped.
    kmeans_options : dict, optional
        Extra keyword arguments for ``helpers.clustering.kmeans``; default ``n_init=1`` (one
        k-means++ seeding, like scikit-learn's ``n_init="auto"``; the authors' code uses
        MiniBatchKMeans above 50 clusters). k-means dominates the cost.
    info : dict, optional
        Filled with ``"cluster_labels"`` (per pool item) and ``"clusters"`` (per pick).

    Returns
    -------
    ndarray of int64, shape (budget,), in selection order.
    """
    from .clustering import kmeans

    pool = _Pool(
        budget,
        scores=scores,
        embeddings=embeddings,
        probs=probs,
        labeled_mask=labeled_mask,
        log_density=log_density,
    )
    if embeddings is None:
        raise ValueError("embeddings: the typiclust strategy needs embeddings, got None")
    for name, v in (("k_nn", k_nn), ("max_clusters", max_clusters)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    m = min_cluster_size
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 0:
        raise ValueError(f"min_cluster_size: expected an int >= 0, got {m!r}")
    rng = check_random_state(random_state)
    Z = _as_numpy(embeddings, name="embeddings", ndim=2, dtype=np.float32)
    n_lab = pool.n - pool.n_available
    C = int(min(n_lab + pool.budget, max_clusters, pool.n))
    km_opts = {"n_init": 1, **(kmeans_options or {})}
    labels, _ = kmeans(Z, C, metric="euclidean", random_state=int(rng.integers(0, 2**31 - 1)), **km_opts)
    labels = np.asarray(labels.detach().cpu() if is_torch(labels) else labels, dtype=np.int64)
    C = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=C)
    covered = np.bincount(labels[pool.labeled], minlength=C)
    free = np.bincount(labels[~pool.labeled], minlength=C)  # unlabeled, unselected members
    taken = pool.labeled.copy()
    typ_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    tie = rng.random(C)
    out: list[int] = []
    picked_clusters: list[int] = []
    small = sizes <= min_cluster_size
    for _ in range(pool.budget):
        # fewest labeled-or-selected first, then the larger clusters before the small ones,
        # then by size; a small uncovered cluster comes before any covered one
        cand = np.flatnonzero(free > 0)
        order = np.lexsort((tie[cand], -sizes[cand], small[cand], covered[cand]))
        c = int(cand[order[0]])
        if c not in typ_cache:
            members = np.flatnonzero(labels == c)
            typ_cache[c] = (members, _typicality(Z[members].astype(np.float64), k_nn))
        members, typ = typ_cache[c]
        t = np.where(taken[members], -np.inf, typ)
        best = np.flatnonzero(t == t.max())
        j = int(members[best[0] if best.size == 1 else rng.choice(best)])
        out.append(j)
        picked_clusters.append(c)
        taken[j] = True
        covered[c] += 1
        free[c] -= 1
    _info(info).update(cluster_labels=labels, clusters=np.asarray(picked_clusters))
    return np.asarray(out, dtype=np.int64)


def _badge_parts(probs: Any, embeddings: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two factors of BADGE's gradient embedding g_i = a_i ⊗ h_i and |g_i|^2.

    ``a = p - onehot(argmax p)`` (the last-layer cross-entropy gradient for the predicted
    label, up to sign), ``h`` the embedding; ``|a ⊗ h|^2 = |a|^2 |h|^2`` and
    ``<a_i ⊗ h_i, a_j ⊗ h_j> = <a_i, a_j> <h_i, h_j>``, so g is never materialised.
    """
    p = _mean_probs(probs)
    H = _as_numpy(embeddings, name="embeddings", ndim=2, dtype=np.float64)
    A = p.copy()
    A[np.arange(A.shape[0]), p.argmax(axis=1)] -= 1.0
    g2 = (A * A).sum(1) * (H * H).sum(1)
    return A, H, g2


def badge(
    budget: int,
    *,
    scores: Any = None,
    embeddings: Any = None,
    probs: Any = None,
    labeled_mask: Any = None,
    log_density: Any = None,
    random_state: Any = None,
    info: dict | None = None,
) -> np.ndarray:
    """BADGE (Ash et al. 2020): k-means++ seeding on gradient embeddings.

    The gradient embedding of item i is ``g_i = (p_i - onehot(argmax p_i)) ⊗ h_i`` with
    ``p`` the (ensemble-mean) class probabilities and ``h`` the penultimate / fused
    embedding. Following the authors' code, the first pick is the unlabeled item with the
    largest ``|g|``; every next pick is drawn with probability ∝ D(x)^2, the squared
    distance to the nearest pick (uniformly among the remaining items when all D are 0).
    Distances use ``|g_i - g_j|^2 = |g_i|^2 + |g_j|^2 - 2 <a_i,a_j><h_i,h_j>``, so the
    (n, C*d) embedding is never built: memory O(n (C + d)), one O(n (C + d)) step per
    pick (the two inner products in float32, the rest in float64).

    Parameters
    ----------
    probs : array-like of shape (n_pool, n_classes) or (n_models, n_pool, n_classes)
    embeddings : array-like of shape (n_pool, n_features)

    Returns
    -------
    ndarray of int64, shape (budget,), in selection order.
    """
    pool = _Pool(
        budget,
        scores=scores,
        embeddings=embeddings,
        probs=probs,
        labeled_mask=labeled_mask,
        log_density=log_density,
    )
    if probs is None or embeddings is None:
        raise ValueError("probs/embeddings: the badge strategy needs both, got None")
    rng = check_random_state(random_state)
    A, H, g2 = _badge_parts(probs, embeddings)
    av = pool.available
    # float32 factors for the two matrix-vector products per step (memory-bound at O(n d))
    A = np.ascontiguousarray(A[av], dtype=np.float32)
    H = np.ascontiguousarray(H[av], dtype=np.float32)
    g2 = g2[av]
    first = np.flatnonzero(g2 == g2.max())
    i = int(first[0] if first.size == 1 else rng.choice(first))
    chosen = [i]
    n = av.size
    d2 = np.full(n, np.inf)
    ta = np.empty(n, dtype=np.float32)
    th = np.empty(n, dtype=np.float32)
    buf = np.empty(n)
    cdf = np.empty(n)
    taken = np.zeros(n, dtype=bool)
    while True:
        # D^2 update for the newest pick i: |g|^2 + |g_i|^2 - 2 <a, a_i> <h, h_i>
        taken[i] = True
        np.matmul(A, A[i], out=ta)
        np.matmul(H, H[i], out=th)
        np.multiply(ta, th, out=ta)
        np.add(g2, g2[i], out=buf)
        buf -= 2.0 * ta
        np.maximum(buf, 0.0, out=buf)
        np.minimum(d2, buf, out=d2)
        d2[i] = 0.0  # picked items have weight 0 from now on
        if len(chosen) == pool.budget:
            break
        # draw the next pick with probability D^2 / sum D^2 (as rng.choice(p=...) does:
        # inverse CDF at one uniform draw)
        np.cumsum(d2, out=cdf)
        total = cdf[-1]
        if total > 0:
            i = int(np.searchsorted(cdf, rng.random() * total, side="right"))
            i = min(i, n - 1)
        else:
            i = int(rng.choice(np.flatnonzero(~taken)))
        chosen.append(i)
    return av[np.asarray(chosen)].astype(np.int64)


# ----------------------------------------------------------------------------------------
# registry and dispatch
# ----------------------------------------------------------------------------------------
#: Strategy name -> function; every function takes ``(budget, *, scores, embeddings, probs,
#: labeled_mask, log_density, random_state, **its options)``.
STRATEGIES: dict[str, Callable[..., np.ndarray]] = {
    "random": random,
    "uncertainty": uncertainty,
    "margin": margin,
    "kcenter": kcenter,
    "uncertainty_diversity": uncertainty_diversity,
    "cluster_bandit": cluster_bandit,
    "density_weighted": density_weighted,
    "low_density": low_density,
    "typiclust": typiclust,
    "badge": badge,
}


def select(
    strategy: str,
    budget: int,
    *,
    scores: Any = None,
    embeddings: Any = None,
    probs: Any = None,
    labeled_mask: Any = None,
    log_density: Any = None,
    random_state: Any = None,
    **options: Any,
) -> np.ndarray:
    """Select ``budget`` unlabeled pool items with the strategy named ``strategy``.

    Parameters
    ----------
    strategy : str
        A key of :data:`STRATEGIES`.
    budget : int
        How many items to select; 1 <= budget <= number of unlabeled items.
    scores : array-like of shape (n_pool,), optional
        Uncertainty U(x), larger = more uncertain.
    embeddings : array or tensor of shape (n_pool, n_features), optional
    probs : array-like of shape (n_pool, n_classes) or (n_models, n_pool, n_classes), optional
    labeled_mask : bool array of shape (n_pool,), optional
        True for already-labeled rows: never selected, but covered for the diversity
        strategies.
    log_density : array-like of shape (n_pool,), optional
        log p(z) for the density strategies.
    random_state : None, int or numpy.random.Generator
    **options
        The strategy's own keyword options (e.g. ``lam``, ``beta``, ``bandit``, ``info``).

    Returns
    -------
    ndarray of int64, shape (budget,)
        Unique indices into the pool arrays, in selection order.

    Raises
    ------
    ValueError
        Unknown strategy (the message lists the valid ones), budget <= 0 or larger than
        the unlabeled pool, pool arrays of different lengths, missing inputs.

    Examples
    --------
    >>> import numpy as np
    >>> u = np.array([0.1, 0.9, 0.5, 0.7])
    >>> select("uncertainty", 2, scores=u, random_state=0).tolist()
    [1, 3]
    >>> select("uncertainty", 2, scores=u, labeled_mask=np.array([0, 1, 0, 0], bool)).tolist()
    [3, 2]
    """
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {sorted(STRATEGIES)}, got {strategy!r}")
    return STRATEGIES[strategy](
        budget,
        scores=scores,
        embeddings=embeddings,
        probs=probs,
        labeled_mask=labeled_mask,
        log_density=log_density,
        random_state=random_state,
        **options,
    )


# ----------------------------------------------------------------------------------------
# cluster-balanced resampling
# ----------------------------------------------------------------------------------------
def cluster_inverse_weights(cluster_labels: Any) -> np.ndarray:
    """Per-item weights ``w_c = (1/|c|) / sum_c' (1/|c'|)`` for the item's cluster c.

    This is the design's formula; it is a weight *per item* (every item of cluster c gets
    ``w_c``), so the total weight of a cluster, ``|c| * w_c = 1 / sum_c' (1/|c'|)``, is
    the same for every cluster. Every distinct label is a cluster (HDBSCAN's noise
    label -1 included).

    Parameters
    ----------
    cluster_labels : array-like of int, shape (n,)

    Returns
    -------
    ndarray of float64, shape (n,)

    Examples
    --------
    >>> cluster_inverse_weights([0, 0, 0, 1]).round(3).tolist()
    [0.25, 0.25, 0.25, 0.75]
    """
    lab = np.asarray(cluster_labels)
    if lab.ndim != 1 or lab.size == 0:
        raise ValueError(f"cluster_labels: expected a non-empty 1-D array, got shape {lab.shape}")
    if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
        raise TypeError(f"cluster_labels: expected integer labels, got dtype {lab.dtype}")
    _, inv, counts = np.unique(lab, return_inverse=True, return_counts=True)
    inv_size = 1.0 / counts
    w_c = inv_size / inv_size.sum()
    return w_c[inv]


def balance(
    indices_or_labels: Any,
    cluster_labels: Any,
    *,
    n_samples: int | None = None,
    random_state: Any = None,
) -> np.ndarray:
    """Resample a dataset so every cluster has the same expected share (the design's D_balanced).

    Draws ``n_samples`` items *with replacement*, item i with probability proportional
    to its :func:`cluster_inverse_weights` weight ``w_{c(i)}``, i.e. ``1 / (C |c(i)|)``
    with C clusters: every cluster's expected count is ``n_samples / C``.

    Parameters
    ----------
    indices_or_labels : array-like of shape (n,)
        The items (ids, pool indices or labels) to resample; returned values come from it.
    cluster_labels : array-like of int, shape (n,)
        The cluster of each item.
    n_samples : int, optional
        Default ``n``.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    ndarray of shape (n_samples,), values of ``indices_or_labels``.
    """
    items = np.asarray(indices_or_labels)
    lab = np.asarray(cluster_labels)
    if items.ndim != 1 or items.shape != lab.shape:
        raise ValueError(
            f"cluster_labels: expected the shape of indices_or_labels {items.shape} (1-D), got {lab.shape}"
        )
    w = cluster_inverse_weights(lab)
    if n_samples is None:
        n_samples = items.size
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
        raise ValueError(f"n_samples: expected a positive int, got {n_samples!r}")
    rng = check_random_state(random_state)
    pos = rng.choice(items.size, size=int(n_samples), replace=True, p=w / w.sum())
    return items[pos]

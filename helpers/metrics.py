"""Dataset diversity and gap metrics, and the model-evaluation metrics of the loop.

Diversity (on a latent space Z and cluster labels, ``-1`` = noise):
:func:`cluster_entropy` (the design's D_score), :func:`evenness`, :func:`coverage`,
:func:`distinctiveness`, :func:`js_divergence`, :func:`gap_regions`, and
:func:`summarize_dataset` bundling them for the dashboard.

Evaluation (from true labels, predictions and mean ensemble probabilities):
:func:`accuracy`, :func:`macro_f1`, :func:`per_class_recall`, :func:`minority_recall`,
:func:`auroc`, :func:`expected_calibration_error`, :func:`subgroup_gap`,
:func:`labels_to_reach`, :func:`membership_inference_auc`, and :func:`evaluate`.

All plain numpy/scipy, float64; every function validates its input and names the argument
in its errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import (
    check_array,
    check_positive,
    check_random_state,
    is_torch,
)

__all__ = [
    "cluster_entropy",
    "evenness",
    "coverage",
    "distinctiveness",
    "js_divergence",
    "GapReport",
    "gap_regions",
    "summarize_dataset",
    "accuracy",
    "macro_f1",
    "per_class_recall",
    "minority_recall",
    "auroc",
    "expected_calibration_error",
    "subgroup_gap",
    "labels_to_reach",
    "membership_inference_auc",
    "evaluate",
    "round_metrics",
    "per_item_loss",
    "diversity_metrics",
]


# --------------------------------------------------------------------------------------------
# input helpers
# --------------------------------------------------------------------------------------------


def _labels(x: Any, *, name: str, min_rows: int = 1) -> np.ndarray:
    """A 1-D integer label vector (ints or integer-valued floats)."""
    if is_torch(x):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of integer labels, got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} entries, got {arr.shape[0]}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or not (arr == np.round(arr)).all():
            raise ValueError(f"{name}: expected integer labels, got non-integer or NaN values")
        return arr.astype(np.int64)
    raise TypeError(f"{name}: expected integer labels, got dtype {arr.dtype}")


def _same_length(a: np.ndarray, b: np.ndarray, *, names: tuple[str, str]) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{names[1]}: expected {a.shape[0]} entries (as {names[0]}), got {b.shape[0]}"
        )


def _probs(p: Any, *, name: str = "probs") -> np.ndarray:
    arr = check_array(p, name=name, ndim=2, dtype=np.float64)
    if arr.shape[1] < 2:
        raise ValueError(f"{name}: expected at least 2 class columns, got shape {arr.shape}")
    if (arr < 0).any() or (arr > 1 + 1e-6).any():
        raise ValueError(f"{name}: expected probabilities in [0, 1], got values in [{arr.min()}, {arr.max()}]")
    return arr


# --------------------------------------------------------------------------------------------
# diversity
# --------------------------------------------------------------------------------------------


def _cluster_counts(cluster_labels: Any) -> np.ndarray:
    lab = _labels(cluster_labels, name="cluster_labels")
    if lab.min() < -1:
        raise ValueError(f"cluster_labels: expected ids >= 0 (or -1 for noise), got {lab.min()}")
    lab = lab[lab >= 0]
    if lab.size == 0:
        return np.zeros(0, dtype=np.int64)
    counts = np.bincount(lab)
    return counts[counts > 0]


def cluster_entropy(cluster_labels: Any) -> float:
    """The design's diversity score ``D_score = -sum_c (|c|/N) log(|c|/N)`` (natural log).

    Noise points (label ``-1``) are excluded: ``N`` is the number of clustered points, so
    the proportions sum to 1. 0 for one cluster (or none); ``log K`` for K equal clusters.

    Parameters
    ----------
    cluster_labels : int array of shape (n,)

    Returns
    -------
    float (nats)
    """
    counts = _cluster_counts(cluster_labels)
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def evenness(cluster_labels: Any, *, n_clusters: int | None = None) -> float:
    """Pielou's evenness ``D_score / log K`` in [0, 1] (1 = all clusters the same size).

    Parameters
    ----------
    cluster_labels : int array of shape (n,), ``-1`` noise excluded
    n_clusters : int, optional
        K. Default: the number of non-empty clusters. Pass the total number of clusters
        (e.g. the k of k-means) to count empty clusters as unevenness.

    Returns
    -------
    float, NaN when K <= 1 (evenness is undefined for a single cluster).
    """
    counts = _cluster_counts(cluster_labels)
    k = counts.size if n_clusters is None else int(n_clusters)
    if n_clusters is not None and k < counts.size:
        raise ValueError(
            f"n_clusters: expected at least the {counts.size} non-empty clusters, got {n_clusters}"
        )
    if k <= 1:
        return float("nan")
    return cluster_entropy(cluster_labels) / math.log(k)


def _nn_dist(A: np.ndarray, B: np.ndarray, *, exclude_self: bool = False) -> np.ndarray:
    """Distance from every row of A to its nearest row of B (exact)."""
    from sklearn.neighbors import NearestNeighbors

    k = 2 if exclude_self else 1
    nn = NearestNeighbors(n_neighbors=k).fit(B)
    d, _ = nn.kneighbors(A)
    return d[:, k - 1]


def coverage(Z_data: Any, Z_reference: Any, *, radius: float | None = None) -> float:
    """Share of reference points with a data point within ``radius`` (euclidean).

    "How much of the reference distribution does the dataset reach": 1.0 when every
    reference point has a data point nearby.

    Parameters
    ----------
    Z_data : array of shape (n, d)
    Z_reference : array of shape (m, d), m >= 2 when ``radius`` is None
        E.g. the embedding of a held-out or ground-truth sample of the domain.
    radius : float > 0, optional
        Default: the median distance from a reference point to its nearest *other*
        reference point -- the reference set's own sampling resolution, so a data set
        drawn from the same distribution at the same size covers ~1/2 to 3/4 of it.

    Returns
    -------
    float in [0, 1]
    """
    X = check_array(Z_data, name="Z_data", ndim=2)
    R = check_array(Z_reference, name="Z_reference", ndim=2, min_rows=1 if radius else 2)
    if X.shape[1] != R.shape[1]:
        raise ValueError(
            f"Z_reference: expected {X.shape[1]} features (as Z_data), got {R.shape[1]}"
        )
    if radius is None:
        radius = float(np.median(_nn_dist(R, R, exclude_self=True)))
        if radius == 0.0:
            radius = np.finfo(np.float64).tiny
    else:
        radius = check_positive(radius, name="radius")
    return float(np.mean(_nn_dist(R, X) <= radius))


def distinctiveness(
    Z: Any,
    *,
    max_pairs: int | None = None,
    random_state: Any = None,
    return_std_error: bool = False,
):
    """Mean pairwise euclidean distance over all unordered pairs ``i < j``.

    Parameters
    ----------
    Z : array of shape (n, d), n >= 2
    max_pairs : int, optional
        None: exact, blockwise (memory ~32 MiB whatever n; O(n^2 d) time). An int: when
        ``n (n - 1) / 2 > max_pairs``, estimate from ``max_pairs`` pairs drawn uniformly with
        replacement among the distinct pairs; the estimate is unbiased with standard error
        ``std(pair distances) / sqrt(max_pairs)`` (returned with ``return_std_error``).
    random_state : None, int or numpy.random.Generator (sampling only)
    return_std_error : bool, default False
        Also return the standard error (0.0 when exact).

    Returns
    -------
    float, or (float, float) with ``return_std_error``
    """
    from scipy.spatial.distance import cdist

    X = check_array(Z, name="Z", ndim=2, min_rows=2)
    n = X.shape[0]
    total_pairs = n * (n - 1) // 2
    if max_pairs is not None:
        if isinstance(max_pairs, bool) or not isinstance(max_pairs, int | np.integer) or max_pairs < 1:
            raise ValueError(f"max_pairs: expected a positive int or None, got {max_pairs!r}")
    if max_pairs is None or total_pairs <= max_pairs:
        block = max(1, (1 << 22) // n)
        s = 0.0
        for i in range(0, n, block):
            j = min(n, i + block)
            D = cdist(X[i:j], X[i:])  # rows i..j-1 against columns i..n-1
            s += float(np.triu(D, k=1).sum())
        mean = s / total_pairs
        return (mean, 0.0) if return_std_error else mean
    rng = check_random_state(random_state)
    a = rng.integers(0, n, size=max_pairs)
    b = rng.integers(0, n - 1, size=max_pairs)
    b = b + (b >= a)  # uniform over j != i
    d = np.sqrt(((X[a] - X[b]) ** 2).sum(axis=1))
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(max_pairs)) if max_pairs > 1 else float("inf")
    return (mean, se) if return_std_error else mean


def js_divergence(p: Any, q: Any, *, base: float = 2.0) -> float:
    """Jensen-Shannon divergence between two discrete distributions (or count vectors).

    ``JSD = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``, after normalising
    ``p`` and ``q`` to sum to 1. In base 2 it lies in [0, 1]. (scipy's
    ``jensenshannon`` returns the *distance*, the square root of this.)

    Parameters
    ----------
    p, q : array-like of shape (k,), non-negative, not all zero
        E.g. domain or cluster counts of the training set and of the target mix.
    base : float > 1, default 2
    """
    P = check_array(p, name="p", ndim=1)
    Q = check_array(q, name="q", ndim=1)
    _same_length(P, Q, names=("p", "q"))
    for name, v in (("p", P), ("q", Q)):
        if (v < 0).any():
            raise ValueError(f"{name}: expected non-negative entries, got min {v.min()}")
        if v.sum() <= 0:
            raise ValueError(f"{name}: expected a positive total, got all zeros")
    base = check_positive(base, name="base")
    if base == 1.0:
        raise ValueError("base: expected a positive number other than 1, got 1")
    P = P / P.sum()
    Q = Q / Q.sum()
    M = 0.5 * (P + Q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log(a[nz] / M[nz])).sum())

    return max(0.0, 0.5 * (kl(P) + kl(Q)) / math.log(base))


@dataclass
class GapReport:
    """Performance-based gaps: clusters whose model error exceeds ``tau``.

    Attributes
    ----------
    clusters : ndarray (k,) int64 -- cluster ids present (noise -1 excluded)
    sizes : ndarray (k,) int64
    error_rates : ndarray (k,) float64 -- mean error per cluster
    gap_clusters : ndarray int64 -- ids with ``error_rate > tau`` and ``size >= min_size``,
        worst first
    point_mask : ndarray (n,) bool -- points that lie in a gap cluster
    tau : float
    """

    clusters: np.ndarray
    sizes: np.ndarray
    error_rates: np.ndarray
    gap_clusters: np.ndarray
    point_mask: np.ndarray
    tau: float

    def as_dict(self) -> dict:
        return {
            "per_cluster": {
                int(c): {"size": int(s), "error_rate": float(e)}
                for c, s, e in zip(self.clusters, self.sizes, self.error_rates, strict=True)
            },
            "gap_clusters": [int(c) for c in self.gap_clusters],
            "n_gap_points": int(self.point_mask.sum()),
            "tau": self.tau,
        }


def gap_regions(errors: Any, cluster_labels: Any, *, tau: float, min_size: int = 1) -> GapReport:
    """Clusters (and their points) where the model's error rate exceeds ``tau``.

    Parameters
    ----------
    errors : array of shape (n,)
        Per-point error: bool / 0-1 (model wrong) or a loss in [0, 1]; the cluster error
        rate is its mean over the cluster.
    cluster_labels : int array of shape (n,); ``-1`` (noise) belongs to no cluster
    tau : float in [0, 1]
        A cluster is a gap when its error rate is strictly greater than ``tau``.
    min_size : int >= 1, default 1
        Smaller clusters are reported but never flagged (one wrong point is not a region).

    Returns
    -------
    GapReport
    """
    err = check_array(errors, name="errors", ndim=1, dtype=np.float64)
    lab = _labels(cluster_labels, name="cluster_labels")
    _same_length(err, lab, names=("errors", "cluster_labels"))
    if (err < 0).any() or (err > 1).any():
        raise ValueError(f"errors: expected values in [0, 1], got [{err.min()}, {err.max()}]")
    if isinstance(tau, bool) or not isinstance(tau, int | float | np.floating | np.integer):
        raise TypeError(f"tau: expected a number in [0, 1], got {type(tau).__name__}")
    if not 0.0 <= float(tau) <= 1.0:
        raise ValueError(f"tau: expected a number in [0, 1], got {tau!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, int | np.integer) or min_size < 1:
        raise ValueError(f"min_size: expected an int >= 1, got {min_size!r}")
    if lab.min() < -1:
        raise ValueError(f"cluster_labels: expected ids >= 0 (or -1 for noise), got {lab.min()}")
    keep = lab >= 0
    clusters, inv, sizes = np.unique(lab[keep], return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=err[keep], minlength=clusters.size)
    rates = sums / np.maximum(sizes, 1)
    flag = (rates > tau) & (sizes >= min_size)
    gap = clusters[flag]
    gap = gap[np.argsort(-rates[flag], kind="stable")]
    return GapReport(
        clusters=clusters.astype(np.int64),
        sizes=sizes.astype(np.int64),
        error_rates=rates,
        gap_clusters=gap.astype(np.int64),
        point_mask=np.isin(lab, gap) & keep,
        tau=float(tau),
    )


def summarize_dataset(
    Z: Any,
    cluster_labels: Any,
    *,
    errors: Any = None,
    Z_reference: Any = None,
    radius: float | None = None,
    tau: float = 0.5,
    max_pairs: int | None = 200_000,
    random_state: Any = None,
) -> dict:
    """One dictionary summarising a dataset's latent space for the dashboard.

    Parameters
    ----------
    Z : array of shape (n, d)
    cluster_labels : int array of shape (n,), -1 = noise
    errors : array of shape (n,), optional -- per-point model error (see :func:`gap_regions`)
    Z_reference : array of shape (m, d), optional -- for :func:`coverage`
    radius : float, optional -- coverage radius (default documented in :func:`coverage`)
    tau : float, default 0.5 -- gap threshold on the cluster error rate
    max_pairs : int or None, default 200_000 -- :func:`distinctiveness` sampling budget
    random_state : None, int or Generator

    Returns
    -------
    dict with keys ``n``, ``n_clusters``, ``n_noise``, ``cluster_sizes`` ({id: size}),
    ``entropy``, ``evenness``, ``distinctiveness``, ``distinctiveness_se``, ``coverage``
    (None without a reference), ``per_cluster_error`` ({id: rate}, None without errors),
    ``gap_clusters`` (list, None without errors).
    """
    X = check_array(Z, name="Z", ndim=2, min_rows=2)
    lab = _labels(cluster_labels, name="cluster_labels")
    _same_length(X, lab, names=("Z", "cluster_labels"))
    ids, counts = np.unique(lab[lab >= 0], return_counts=True)
    dist, se = distinctiveness(
        X, max_pairs=max_pairs, random_state=random_state, return_std_error=True
    )
    out: dict[str, Any] = {
        "n": int(X.shape[0]),
        "n_clusters": int(ids.size),
        "n_noise": int((lab == -1).sum()),
        "cluster_sizes": {int(c): int(k) for c, k in zip(ids, counts, strict=True)},
        "entropy": cluster_entropy(lab),
        "evenness": evenness(lab),
        "distinctiveness": dist,
        "distinctiveness_se": se,
        "coverage": None,
        "per_cluster_error": None,
        "gap_clusters": None,
    }
    if Z_reference is not None:
        out["coverage"] = coverage(X, Z_reference, radius=radius)
    if errors is not None:
        rep = gap_regions(errors, lab, tau=tau)
        out["per_cluster_error"] = {
            int(c): float(e) for c, e in zip(rep.clusters, rep.error_rates, strict=True)
        }
        out["gap_clusters"] = [int(c) for c in rep.gap_clusters]
    return out


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    yt = _labels(y_true, name="y_true")
    yp = _labels(y_pred, name="y_pred")
    _same_length(yt, yp, names=("y_true", "y_pred"))
    return yt, yp


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Share of exact matches. y_true, y_pred: int arrays of shape (n,), n >= 1."""
    yt, yp = _pair(y_true, y_pred)
    return float(np.mean(yt == yp))


def macro_f1(y_true: Any, y_pred: Any, *, labels: Any = None) -> float:
    """Unweighted mean of per-class F1 = 2TP / (2TP + FP + FN).

    Classes: ``labels`` if given, else every class in ``y_true`` or ``y_pred``
    (scikit-learn's default); a class with 2TP + FP + FN = 0 scores 0.
    """
    yt, yp = _pair(y_true, y_pred)
    cls = np.union1d(yt, yp) if labels is None else _labels(labels, name="labels")
    f1 = []
    for c in cls:
        tp = np.sum((yt == c) & (yp == c))
        fp = np.sum((yt != c) & (yp == c))
        fn = np.sum((yt == c) & (yp != c))
        den = 2 * tp + fp + fn
        f1.append(2 * tp / den if den > 0 else 0.0)
    return float(np.mean(f1))


def per_class_recall(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """Recall of every class ``0 .. n_classes-1``: TP / (number of true members).

    Returns
    -------
    ndarray of shape (n_classes,), NaN for classes absent from ``y_true``.
    """
    yt, yp = _pair(y_true, y_pred)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 1:
        raise ValueError(f"n_classes: expected a positive int, got {n_classes!r}")
    for name, v in (("y_true", yt), ("y_pred", yp)):
        if v.min() < 0 or v.max() >= n_classes:
            raise ValueError(
                f"{name}: expected labels in [0, {n_classes - 1}], got [{v.min()}, {v.max()}]"
            )
    support = np.bincount(yt, minlength=n_classes).astype(np.float64)
    hits = np.bincount(yt[yt == yp], minlength=n_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / np.maximum(support, 1), np.nan)


def minority_recall(y_true: Any, y_pred: Any, minority_classes: Any) -> float:
    """Mean recall over the minority classes present in ``y_true`` (macro, not pooled).

    Returns NaN when none of ``minority_classes`` occurs in ``y_true``.
    """
    yt, yp = _pair(y_true, y_pred)
    mc = np.unique(_labels(minority_classes, name="minority_classes"))
    rec = [np.mean(yp[yt == c] == c) for c in mc if np.any(yt == c)]
    return float(np.mean(rec)) if rec else float("nan")


def _binary_auc(pos: np.ndarray, scores: np.ndarray) -> float:
    """AUC = P(score_pos > score_neg) + P(tie) / 2 via average ranks (Mann-Whitney U)."""
    from scipy.stats import rankdata

    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    r = rankdata(scores)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc(y_true: Any, probs: Any) -> float:
    """Macro one-vs-rest area under the ROC curve from (mean) class probabilities.

    Parameters
    ----------
    y_true : int array of shape (n,), labels in [0, C)
    probs : array of shape (n, C)

    Returns
    -------
    float. The mean over classes ``c`` of AUC(y == c, probs[:, c]), taken over the classes
    that occur in ``y_true``: a class absent from ``y_true`` has no positives, so its AUC is
    undefined and it is left out (not counted as 0 or 0.5). For C = 2 this equals the
    binary AUC of ``probs[:, 1]`` when rows sum to 1.

    Raises
    ------
    ValueError
        If fewer than two classes occur in ``y_true`` (no AUC is defined).
    """
    yt = _labels(y_true, name="y_true")
    P = _probs(probs)
    _same_length(yt, P, names=("y_true", "probs"))
    C = P.shape[1]
    if yt.min() < 0 or yt.max() >= C:
        raise ValueError(f"y_true: expected labels in [0, {C - 1}], got [{yt.min()}, {yt.max()}]")
    present = np.unique(yt)
    if present.size < 2:
        raise ValueError(
            f"y_true: AUROC needs at least 2 classes present, got only class(es) {present.tolist()}"
        )
    return float(np.mean([_binary_auc(yt == c, P[:, c]) for c in present]))


def expected_calibration_error(probs: Any, labels: Any, *, n_bins: int = 15) -> float:
    """Top-label expected calibration error with equal-width confidence bins.

    ``ECE = sum_b (|B_b| / n) |acc(B_b) - conf(B_b)|`` where confidence is the top-class
    probability, bin b = ((b-1)/B, b/B] (confidence 0 goes to the first bin), acc the share of
    rows whose argmax equals the label.

    Parameters
    ----------
    probs : array of shape (n, C); labels : int array of shape (n,); n_bins : int >= 1
    """
    P = _probs(probs)
    yt = _labels(labels, name="labels")
    _same_length(P, yt, names=("probs", "labels"))
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins: expected a positive int, got {n_bins!r}")
    conf = P.max(axis=1)
    correct = (P.argmax(axis=1) == yt).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.searchsorted(edges[1:-1], conf, side="left")  # conf in (e_b, e_b+1] -> b
    acc_sum = np.bincount(b, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(b, weights=conf, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / P.shape[0])


def subgroup_gap(y_true: Any, y_pred: Any, groups: Any) -> tuple[float, dict]:
    """Largest minus smallest accuracy over subgroups.

    Parameters
    ----------
    y_true, y_pred : int arrays of shape (n,)
    groups : array of shape (n,) of hashable group ids (ints or strings)

    Returns
    -------
    gap : float (0.0 with a single group)
    per_group : dict {group id: accuracy}
    """
    yt, yp = _pair(y_true, y_pred)
    g = np.asarray(groups.detach().cpu().numpy() if is_torch(groups) else groups)
    if g.ndim != 1:
        raise ValueError(f"groups: expected a 1-D array, got shape {g.shape}")
    _same_length(yt, g, names=("y_true", "groups"))
    ids, inv = np.unique(g, return_inverse=True)
    hits = np.bincount(inv, weights=(yt == yp).astype(np.float64), minlength=ids.size)
    acc = hits / np.bincount(inv, minlength=ids.size)
    per = {(k.item() if hasattr(k, "item") else k): float(a) for k, a in zip(ids, acc, strict=True)}
    return float(acc.max() - acc.min()), per


def labels_to_reach(
    labels_curve: Any, accuracy_curve: Any, target: float, *, interpolate: bool = False
) -> float:
    """Number of labels at which a learning curve first reaches ``target`` accuracy.

    Parameters
    ----------
    labels_curve : array of shape (k,), strictly increasing label counts
    accuracy_curve : array of shape (k,), the accuracy after each count
    target : float
    interpolate : bool, default False
        False: the first ``labels_curve[i]`` with ``accuracy_curve[i] >= target``.
        True: linear interpolation between that point and the previous one (the count at
        which the straight line between them crosses ``target``); the first point itself
        when it already reaches the target.

    Returns
    -------
    float, NaN when the curve never reaches ``target``.
    """
    L = check_array(labels_curve, name="labels_curve", ndim=1)
    A = check_array(accuracy_curve, name="accuracy_curve", ndim=1)
    _same_length(L, A, names=("labels_curve", "accuracy_curve"))
    if L.size > 1 and not (np.diff(L) > 0).all():
        raise ValueError("labels_curve: expected strictly increasing label counts")
    if isinstance(target, bool) or not isinstance(target, int | float | np.floating | np.integer):
        raise TypeError(f"target: expected a number, got {type(target).__name__}")
    hit = np.flatnonzero(A >= target)
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if not interpolate or i == 0:
        return float(L[i])
    a0, a1 = A[i - 1], A[i]
    t = (target - a0) / (a1 - a0)
    return float(L[i - 1] + t * (L[i] - L[i - 1]))


def membership_inference_auc(loss_train: Any, loss_heldout: Any) -> float:
    """AUC of the loss-threshold membership-inference attack.

    The attacker calls a sample a training member when its loss is below a threshold; over
    all thresholds this is the AUC of ``-loss`` for members (train) vs non-members
    (held-out): ``P(loss_train < loss_heldout) + P(tie) / 2``. 0.5 = no leakage; 1.0 = every
    training loss below every held-out loss.

    Parameters
    ----------
    loss_train : array of shape (n_train,); loss_heldout : array of shape (n_heldout,)
    """
    a = check_array(loss_train, name="loss_train", ndim=1)
    b = check_array(loss_heldout, name="loss_heldout", ndim=1)
    member = np.concatenate([np.ones(a.size, dtype=bool), np.zeros(b.size, dtype=bool)])
    return _binary_auc(member, -np.concatenate([a, b]))


def evaluate(
    probs_mean: Any,
    y_true: Any,
    *,
    minority_classes: Any = None,
    groups: Any = None,
    n_bins: int = 15,
) -> dict:
    """All evaluation metrics from mean (ensemble) probabilities, as one dict.

    Parameters
    ----------
    probs_mean : array of shape (n, C)
    y_true : int array of shape (n,)
    minority_classes : int array, optional
    groups : array of shape (n,), optional -- subgroup ids for :func:`subgroup_gap`
    n_bins : int, default 15 -- ECE bins

    Returns
    -------
    dict: ``accuracy``, ``macro_f1``, ``auroc`` (NaN with < 2 classes in y_true), ``ece``,
    ``nll`` (mean negative log-likelihood, probabilities clipped at 1e-12),
    ``per_class_recall`` (list, NaN for absent classes), and when asked
    ``minority_recall``, ``subgroup_gap`` and ``per_group_accuracy``.
    """
    P = _probs(probs_mean, name="probs_mean")
    yt = _labels(y_true, name="y_true")
    _same_length(P, yt, names=("probs_mean", "y_true"))
    C = P.shape[1]
    if yt.min() < 0 or yt.max() >= C:
        raise ValueError(f"y_true: expected labels in [0, {C - 1}], got [{yt.min()}, {yt.max()}]")
    yp = P.argmax(axis=1)
    out: dict[str, Any] = {
        "accuracy": accuracy(yt, yp),
        "macro_f1": macro_f1(yt, yp),
        "auroc": auroc(yt, P) if np.unique(yt).size >= 2 else float("nan"),
        "ece": expected_calibration_error(P, yt, n_bins=n_bins),
        "nll": float(-np.mean(np.log(np.clip(P[np.arange(yt.size), yt], 1e-12, None)))),
        "per_class_recall": per_class_recall(yt, yp, C).tolist(),
    }
    if minority_classes is not None:
        out["minority_recall"] = minority_recall(yt, yp, minority_classes)
    if groups is not None:
        gap, per = subgroup_gap(yt, yp, groups)
        out["subgroup_gap"] = gap
        out["per_group_accuracy"] = per
    return out


def round_metrics(probs_mean: Any, y_true: Any, *, minority_classes: Any = None, groups: Any = None) -> dict:
    """:func:`evaluate` as flat scalar columns (one row of a learning curve).

    ``per_class_recall`` becomes ``recall_class_<c>`` and ``per_group_accuracy`` becomes
    ``accuracy_group_<g>``; every other value is kept as it is.
    """
    out: dict[str, Any] = {}
    res = evaluate(probs_mean, y_true, minority_classes=minority_classes, groups=groups)
    for k, v in res.items():
        if k == "per_class_recall":
            out.update({f"recall_class_{c}": r for c, r in enumerate(v)})
        elif k == "per_group_accuracy":
            out.update({f"accuracy_group_{g}": a for g, a in dict(v).items()})
        else:
            out[k] = v
    return out


def per_item_loss(probs_mean: Any, y_true: Any) -> np.ndarray:
    """Cross-entropy of each item, -log p(y_i | x_i) (probabilities clipped at 1e-12), shape (n,)."""
    P = _probs(probs_mean, name="probs_mean")
    yt = _labels(y_true, name="y_true", min_rows=0)
    _same_length(P, yt, names=("probs_mean", "y_true"))
    return -np.log(np.clip(P[np.arange(yt.size), yt], 1e-12, None))


def diversity_metrics(Z: Any, clusters: Any, labeled_idx: Any) -> dict:
    """Diversity of a labeled subset in a fixed reference space.

    Parameters
    ----------
    Z : array of shape (n, d)
        The reference space of the whole pool.
    clusters : int array of shape (n,)
        Reference clusters of the pool items.
    labeled_idx : int array of shape (k,)
        Positions of the labeled items.

    Returns
    -------
    dict: ``d_score`` (cluster entropy), ``evenness``, ``coverage`` of the pool by the labeled
    set, and ``cluster_jsd`` (Jensen-Shannon divergence of the labeled set's cluster mix from
    the pool's).
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    idx = np.asarray(labeled_idx, dtype=np.int64)
    if idx.size == 0:
        return {}
    n_clusters = int(clusters.max()) + 1
    lab = clusters[idx]
    pool_mix = np.bincount(clusters, minlength=n_clusters).astype(float)
    lab_mix = np.bincount(lab, minlength=n_clusters).astype(float)
    return {
        "d_score": cluster_entropy(lab),
        "evenness": evenness(lab),
        "coverage": coverage(np.asarray(Z)[idx], Z),
        "cluster_jsd": js_divergence(lab_mix / lab_mix.sum(), pool_mix / pool_mix.sum()),
    }


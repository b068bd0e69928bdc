"""helpers.metrics against scikit-learn / scipy / float64 numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import jensenshannon, pdist
from scipy.stats import entropy as scipy_entropy

from gapscope.helpers import metrics as M

# --------------------------------------------------------------------------------------------
# diversity
# --------------------------------------------------------------------------------------------


def test_cluster_entropy_and_evenness_reference():
    lab = np.array([0] * 50 + [1] * 30 + [2] * 20 + [-1] * 40)
    counts = np.array([50, 30, 20])
    assert math.isclose(M.cluster_entropy(lab), scipy_entropy(counts), rel_tol=1e-12)
    assert math.isclose(M.evenness(lab), scipy_entropy(counts) / math.log(3), rel_tol=1e-12)
    # counting empty clusters (k-means with k = 5)
    assert math.isclose(M.evenness(lab, n_clusters=5), scipy_entropy(counts) / math.log(5), rel_tol=1e-12)
    # equal clusters: log K and evenness 1; non-contiguous ids are fine
    eq = np.repeat([3, 7, 11, 20], 10)
    assert math.isclose(M.cluster_entropy(eq), math.log(4), rel_tol=1e-12)
    assert math.isclose(M.evenness(eq), 1.0, rel_tol=1e-12)
    assert M.cluster_entropy(np.zeros(5, int)) == 0.0
    assert math.isnan(M.evenness(np.zeros(5, int)))
    assert M.cluster_entropy(np.full(4, -1)) == 0.0


@settings(max_examples=50, deadline=None)
@given(arrays(np.int64, st.integers(1, 60), elements=st.integers(-1, 6)))
def test_entropy_properties(lab):
    h = M.cluster_entropy(lab)
    k = np.unique(lab[lab >= 0]).size
    assert -1e-12 <= h <= math.log(max(k, 1)) + 1e-12
    e = M.evenness(lab)
    assert (k <= 1 and math.isnan(e)) or (-1e-12 <= e <= 1 + 1e-12)


def test_coverage_reference(rng):
    from scipy.spatial.distance import cdist

    R = rng.normal(size=(300, 3))
    X = rng.normal(size=(200, 3)) + [1.0, 0.0, 0.0]
    D = cdist(R, X).min(axis=1)
    assert math.isclose(M.coverage(X, R, radius=0.5), float(np.mean(D <= 0.5)), rel_tol=1e-12)
    # default radius: median nearest-other-reference distance
    DR = cdist(R, R)
    np.fill_diagonal(DR, np.inf)
    r0 = np.median(DR.min(axis=1))
    assert math.isclose(M.coverage(X, R), float(np.mean(D <= r0)), rel_tol=1e-12)
    assert M.coverage(R, R) == 1.0
    assert M.coverage(R + 100.0, R) == 0.0


def test_distinctiveness_exact_and_sampled(rng):
    X = rng.normal(size=(700, 5))
    ref = pdist(X).mean()
    assert math.isclose(M.distinctiveness(X), ref, rel_tol=1e-12)
    # exact when max_pairs >= all pairs
    m, se = M.distinctiveness(X, max_pairs=10**6, return_std_error=True)
    assert math.isclose(m, ref, rel_tol=1e-12) and se == 0.0
    # sampled: within 4 stated standard errors, and the stated error is about right
    m, se = M.distinctiveness(X, max_pairs=20000, random_state=0, return_std_error=True)
    assert abs(m - ref) < 4 * se
    assert math.isclose(se, pdist(X).std() / math.sqrt(20000), rel_tol=0.05)
    assert M.distinctiveness(np.zeros((3, 2))) == 0.0


def test_js_divergence_vs_scipy(rng):
    for _ in range(5):
        p = rng.random(6)
        q = rng.random(6)
        q[2] = 0.0
        assert math.isclose(M.js_divergence(p, q), jensenshannon(p, q, base=2) ** 2, rel_tol=1e-9)
        assert math.isclose(
            M.js_divergence(p * 7, q, base=math.e), jensenshannon(p, q) ** 2, rel_tol=1e-9
        )
    assert M.js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert M.js_divergence([2, 2], [5, 5]) == 0.0


def test_gap_regions():
    lab = np.array([0] * 10 + [1] * 10 + [2] * 2 + [-1] * 5)
    err = np.zeros(27)
    err[:3] = 1  # cluster 0: 0.3
    err[10:18] = 1  # cluster 1: 0.8
    err[20:22] = 1  # cluster 2: 1.0 but size 2
    err[22:] = 1  # noise: never a gap
    rep = M.gap_regions(err, lab, tau=0.25, min_size=3)
    np.testing.assert_array_equal(rep.clusters, [0, 1, 2])
    np.testing.assert_array_equal(rep.sizes, [10, 10, 2])
    np.testing.assert_allclose(rep.error_rates, [0.3, 0.8, 1.0])
    np.testing.assert_array_equal(rep.gap_clusters, [1, 0])  # worst first; 2 too small
    np.testing.assert_array_equal(rep.point_mask, np.isin(np.arange(27), np.arange(20)))
    assert M.gap_regions(err, lab, tau=0.8).gap_clusters.tolist() == [2]  # strictly greater
    d = rep.as_dict()
    assert d["per_cluster"][1] == {"size": 10, "error_rate": 0.8} and d["n_gap_points"] == 20


def test_summarize_dataset(rng):
    Z = rng.normal(size=(120, 3))
    lab = np.repeat([0, 1, 2, -1], 30)
    err = (rng.random(120) < 0.3).astype(float)
    s = M.summarize_dataset(Z, lab, errors=err, Z_reference=Z[:60] + 0.01, max_pairs=None)
    assert s["n"] == 120 and s["n_clusters"] == 3 and s["n_noise"] == 30
    assert s["cluster_sizes"] == {0: 30, 1: 30, 2: 30}
    assert math.isclose(s["entropy"], math.log(3)) and math.isclose(s["evenness"], 1.0)
    assert math.isclose(s["distinctiveness"], pdist(Z).mean(), rel_tol=1e-12)
    assert s["coverage"] == M.coverage(Z, Z[:60] + 0.01)
    assert s["per_cluster_error"] == {c: float(err[lab == c].mean()) for c in range(3)}
    assert set(s) >= {"gap_clusters", "distinctiveness_se"}


def test_diversity_bad_input(rng):
    with pytest.raises(ValueError, match="cluster_labels: expected ids >= 0"):
        M.cluster_entropy([0, -2])
    with pytest.raises(ValueError, match="cluster_labels: expected integer labels"):
        M.cluster_entropy([0.5, 1.0])
    with pytest.raises(ValueError, match="Z_reference: expected 3 features"):
        M.coverage(rng.normal(size=(5, 3)), rng.normal(size=(5, 2)))
    with pytest.raises(ValueError, match="radius: expected a finite number > 0"):
        M.coverage(rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), radius=0.0)
    with pytest.raises(ValueError, match="Z: expected at least 2 row"):
        M.distinctiveness(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="Z: expected finite"):
        M.distinctiveness(np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="p: expected non-negative"):
        M.js_divergence([-1, 2], [1, 1])
    with pytest.raises(ValueError, match="q: expected 2 entries"):
        M.js_divergence([1, 2], [1, 1, 1])
    with pytest.raises(ValueError, match="tau: expected a number in"):
        M.gap_regions([0, 1], [0, 0], tau=1.5)
    with pytest.raises(ValueError, match="cluster_labels: expected 2 entries"):
        M.gap_regions([0, 1], [0, 0, 1], tau=0.5)


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


def _random_probs(rng, n, C):
    logits = rng.normal(size=(n, C)) * 2
    P = np.exp(logits)
    return P / P.sum(axis=1, keepdims=True)


def test_accuracy_f1_recall_vs_sklearn(rng):
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    y = rng.integers(0, 5, 400)
    yp = np.where(rng.random(400) < 0.6, y, rng.integers(0, 6, 400))  # predicts an extra class 5
    assert M.accuracy(y, yp) == accuracy_score(y, yp)
    assert math.isclose(M.macro_f1(y, yp), f1_score(y, yp, average="macro", zero_division=0), rel_tol=1e-12)
    assert math.isclose(
        M.macro_f1(y, yp, labels=[0, 1, 2]),
        f1_score(y, yp, labels=[0, 1, 2], average="macro", zero_division=0),
        rel_tol=1e-12,
    )
    y2 = y.copy()
    y2[y2 == 3] = 0  # class 3 absent from y_true
    rec = M.per_class_recall(y2, yp, 6)
    ref = recall_score(y2, yp, labels=range(6), average=None, zero_division=0)
    present = np.isin(np.arange(6), y2)
    np.testing.assert_allclose(rec[present], ref[present], rtol=1e-12)
    assert np.isnan(rec[~present]).all()
    assert math.isclose(M.minority_recall(y2, yp, [1, 3, 4]), np.mean(ref[[1, 4]]), rel_tol=1e-12)
    assert math.isnan(M.minority_recall(y2, yp, [3]))


def test_auroc_vs_sklearn(rng):
    from sklearn.metrics import roc_auc_score

    P = _random_probs(rng, 300, 4)
    y = np.array([rng.choice(4, p=p) for p in P])
    assert math.isclose(M.auroc(y, P), roc_auc_score(y, P, multi_class="ovr", average="macro"), rel_tol=1e-12)
    # binary
    P2 = _random_probs(rng, 200, 2)
    y2 = (rng.random(200) < P2[:, 1]).astype(int)
    assert math.isclose(M.auroc(y2, P2), roc_auc_score(y2, P2[:, 1]), rel_tol=1e-12)
    # ties in scores
    Pt = np.round(P, 1)
    assert math.isclose(
        M.auroc(y, Pt), np.mean([roc_auc_score(y == c, Pt[:, c]) for c in range(4)]), rel_tol=1e-12
    )
    # a class absent from y_true is left out of the macro mean
    keep = y != 2
    ref = np.mean([roc_auc_score(y[keep] == c, P[keep, c]) for c in (0, 1, 3)])
    assert math.isclose(M.auroc(y[keep], P[keep]), ref, rel_tol=1e-12)
    with pytest.raises(ValueError, match="at least 2 classes present"):
        M.auroc(np.zeros(10, int), P[:10])


def ece_reference(P, y, n_bins):
    """float64 loop reference: bins ((b-1)/B, b/B], first bin closed at 0."""
    conf = P.max(axis=1)
    pred = P.argmax(axis=1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        m = (conf > lo) & (conf <= hi) if b > 0 else (conf >= lo) & (conf <= hi)
        if m.any():
            total += m.sum() / len(P) * abs(np.mean(pred[m] == y[m]) - conf[m].mean())
    return total


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_vs_reference(rng, n_bins):
    P = _random_probs(rng, 500, 3)
    y = np.array([rng.choice(3, p=p) for p in P])  # calibrated by construction
    ece = M.expected_calibration_error(P, y, n_bins=n_bins)
    assert math.isclose(ece, ece_reference(P, y, n_bins), rel_tol=1e-9, abs_tol=1e-12)
    # an overconfident model has a larger ECE
    sharp = P**4 / (P**4).sum(axis=1, keepdims=True)
    assert M.expected_calibration_error(sharp, y, n_bins=n_bins) > ece
    # exact bin edges (conf = 0.5, 1.0) land in the right bin
    Pe = np.array([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
    ye = np.array([0, 1, 1])
    assert math.isclose(
        M.expected_calibration_error(Pe, ye, n_bins=n_bins), ece_reference(Pe, ye, n_bins), abs_tol=1e-12
    )
    # every bin edge as a top-class confidence (20 classes so conf > the other entries)
    c = np.linspace(0.0, 1.0, n_bins + 1)[1:]
    c = c[c > 1 / 20]
    Pb = np.column_stack([c] + [(1 - c) / 19] * 19)
    yb = np.arange(len(c)) % 2
    assert math.isclose(
        M.expected_calibration_error(Pb, yb, n_bins=n_bins), ece_reference(Pb, yb, n_bins), abs_tol=1e-12
    )


def test_subgroup_gap():
    y = np.array([0, 1, 1, 0, 1, 0, 1, 1])
    yp = np.array([0, 1, 0, 0, 1, 1, 1, 1])
    g = np.array(["a", "a", "a", "b", "b", "c", "c", "c"])
    gap, per = M.subgroup_gap(y, yp, g)
    assert per == {"a": 2 / 3, "b": 1.0, "c": 2 / 3}
    assert math.isclose(gap, 1 / 3)
    assert M.subgroup_gap(y, yp, np.zeros(8, int))[0] == 0.0


def test_labels_to_reach():
    L = [10, 20, 40, 80]
    A = [0.5, 0.6, 0.8, 0.9]
    assert M.labels_to_reach(L, A, 0.8) == 40.0
    assert M.labels_to_reach(L, A, 0.7) == 40.0
    assert M.labels_to_reach(L, A, 0.7, interpolate=True) == pytest.approx(30.0)
    assert M.labels_to_reach(L, A, 0.4, interpolate=True) == 10.0
    assert math.isnan(M.labels_to_reach(L, A, 0.95))
    with pytest.raises(ValueError, match="strictly increasing"):
        M.labels_to_reach([10, 10], [0.1, 0.2], 0.1)


def test_membership_inference_auc(rng):
    from sklearn.metrics import roc_auc_score

    a = rng.exponential(0.5, 300)
    b = np.round(rng.exponential(1.0, 200), 1)
    ref = roc_auc_score(np.r_[np.ones(300), np.zeros(200)], -np.r_[a, b])
    assert math.isclose(M.membership_inference_auc(a, b), ref, rel_tol=1e-12)
    assert M.membership_inference_auc([1.0, 1.0], [1.0]) == 0.5
    assert M.membership_inference_auc([0.1], [0.2, 0.3]) == 1.0


def test_evaluate_bundle(rng):
    from sklearn.metrics import log_loss, roc_auc_score

    P = _random_probs(rng, 400, 3)
    y = np.array([rng.choice(3, p=p) for p in P])
    g = rng.integers(0, 3, 400)
    out = M.evaluate(P, y, minority_classes=[2], groups=g)
    yp = P.argmax(1)
    assert out["accuracy"] == M.accuracy(y, yp)
    assert math.isclose(out["auroc"], roc_auc_score(y, P, multi_class="ovr"), rel_tol=1e-12)
    assert math.isclose(out["nll"], log_loss(y, P), rel_tol=1e-9)
    assert out["ece"] == M.expected_calibration_error(P, y)
    assert out["minority_recall"] == M.minority_recall(y, yp, [2])
    assert (out["subgroup_gap"], out["per_group_accuracy"]) == M.subgroup_gap(y, yp, g)
    assert len(out["per_class_recall"]) == 3
    one = M.evaluate(P[y == 0], y[y == 0])
    assert math.isnan(one["auroc"])


def test_evaluation_bad_input(rng):
    P = _random_probs(rng, 10, 3)
    with pytest.raises(ValueError, match="y_pred: expected 10 entries"):
        M.accuracy(np.zeros(10, int), np.zeros(9, int))
    with pytest.raises(ValueError, match="y_true: expected labels in"):
        M.auroc(np.full(10, 3), P)
    with pytest.raises(ValueError, match="probs: expected probabilities in"):
        M.expected_calibration_error(P * 3, np.zeros(10, int))
    with pytest.raises(ValueError, match="n_bins: expected a positive int"):
        M.expected_calibration_error(P, np.zeros(10, int), n_bins=0)
    with pytest.raises(ValueError, match="y_true: expected labels in"):
        M.per_class_recall(np.full(10, 5), np.zeros(10, int), 3)
    with pytest.raises(ValueError, match="loss_train: expected finite"):
        M.membership_inference_auc([np.nan], [1.0])
    with pytest.raises(ValueError, match="groups: expected 10 entries"):
        M.subgroup_gap(np.zeros(10, int), np.zeros(10, int), np.zeros(3))

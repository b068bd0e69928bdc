"""TypiClust (helpers.selection.typiclust) against the paper's algorithm.

Hacohen, Dekel & Weinshall, "Active Learning on a Budget" (ICML 2022): k-means on all
embeddings into |L| + B clusters; B times, the cluster with the fewest labeled items
(uncovered first), the largest among those, and in it the most typical item,
typicality = 1 / mean distance to its nearest cluster members.
"""

from __future__ import annotations

import numpy as np
import pytest

from gapscope.helpers.selection import typiclust

# 10 blobs of unequal sizes, all above the default min_cluster_size (5)
SIZES = (300, 150, 80, 60, 50, 40, 30, 25, 20, 15)


def _separated_blobs(rng, sizes=SIZES, spread=40.0):
    """Unit-variance Gaussian blobs centred at ``spread`` times the unit vectors."""
    k = len(sizes)
    Z = np.vstack([spread * np.eye(k)[i] + rng.normal(size=(n, k)) for i, n in enumerate(sizes)])
    return Z, np.repeat(np.arange(k), sizes)


# ----------------------------------------------------------------------------------------
# coverage on well-separated clusters
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_item_from_every_cluster_before_repeating(rng, seed):
    Z, blob = _separated_blobs(rng)
    info: dict = {}
    out = typiclust(10, embeddings=Z, random_state=seed, info=info)
    # 10 clusters = the 10 blobs: exactly one pick in each
    assert sorted(blob[out].tolist()) == list(range(10))
    # larger uncovered clusters first (the blobs are ordered by size)
    assert blob[out].tolist() == list(range(10))
    # 15 clusters split the large blobs: 15 different clusters, every blob among them
    out = typiclust(15, embeddings=Z, random_state=seed, info=info)
    assert np.unique(info["clusters"]).size == 15
    assert set(blob[out].tolist()) == set(range(10))


def test_unlabeled_clusters_first(rng):
    Z, blob = _separated_blobs(rng)
    labeled = np.zeros(len(Z), bool)
    for b in (0, 1, 4, 7):  # one labeled item in four blobs
        labeled[np.flatnonzero(blob == b)[0]] = True
    out = typiclust(6, embeddings=Z, labeled_mask=labeled, random_state=0)
    assert sorted(blob[out].tolist()) == [2, 3, 5, 6, 8, 9]
    assert not labeled[out].any()
    # with |L| + B clusters at least B hold no labeled item: every pick takes a different one
    labeled[out] = True
    info: dict = {}
    typiclust(10, embeddings=Z, labeled_mask=labeled, random_state=0, info=info)
    clusters, labels = info["clusters"], info["cluster_labels"]
    assert np.unique(clusters).size == 10
    assert not np.isin(clusters, labels[labeled]).any()


def test_small_uncovered_clusters_come_before_covered_large_ones(rng):
    """Regression (issue 13): with the small clusters skipped, every pick went to the dense
    region once its clusters were covered."""
    d = 6
    big = rng.normal(size=(200, d)) * 0.5  # one dense blob, its clusters already labeled
    small_centres = 30.0 * np.eye(d, dtype=float)
    small_centres = np.vstack([small_centres, -30.0 * np.eye(d)[:2]])  # 8 far small blobs
    smalls = [c + rng.normal(size=(4, d)) * 0.5 for c in small_centres]  # 4 items each (<= 5)
    Z = np.vstack([big, *smalls])
    blob = np.r_[np.zeros(200, int), np.repeat(np.arange(1, 9), 4)]
    labeled = np.zeros(len(Z), bool)
    labeled[rng.choice(200, size=4, replace=False)] = True
    for seed in range(3):
        info: dict = {}
        out = typiclust(8, embeddings=Z, labeled_mask=labeled, random_state=seed, info=info)
        clusters, labels = info["clusters"], info["cluster_labels"]
        # 12 clusters, at most 4 labeled: 8 different clusters without a labeled item ...
        assert np.unique(clusters).size == 8
        assert not np.isin(clusters, labels[labeled]).any()
        # ... so the small blobs get most picks (the old rule put all 8 in the dense blob)
        assert (blob[out] > 0).sum() >= 6, blob[out]


# ----------------------------------------------------------------------------------------
# against an independent reference written from the paper
# ----------------------------------------------------------------------------------------
def _ref_typicality(F: np.ndarray, k_nn: int = 20) -> np.ndarray:
    """1 / mean distance to the k nearest other members, k = min(k_nn, |c| // 2) >= 1."""
    from sklearn.neighbors import NearestNeighbors

    if len(F) == 1:
        return np.ones(1)
    k = max(1, min(k_nn, len(F) // 2))
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(F).kneighbors(F)
    return 1.0 / (dist[:, 1:].mean(axis=1) + 1e-12)


def _ref_step(labels, taken, min_cluster_size=5):
    """The clusters the paper allows next: fewest labeled-or-selected members, then larger
    than min_cluster_size, then the largest (all that tie on those three)."""
    C = labels.max() + 1
    sizes = np.bincount(labels, minlength=C)
    count = np.bincount(labels[taken], minlength=C)
    free = np.bincount(labels[~taken], minlength=C)
    key = [(count[c], sizes[c] <= min_cluster_size, -sizes[c]) for c in range(C)]
    best = min(key[c] for c in range(C) if free[c] > 0)
    return {c for c in range(C) if free[c] > 0 and key[c] == best}


def _check_against_reference(Z, labels, labeled, out, clusters):
    """Step by step: each pick's cluster is one the reference allows, and the pick is the
    reference's most typical not-yet-taken member of it."""
    taken = labeled.copy()
    for j, c in zip(out, clusters, strict=True):
        assert c in _ref_step(labels, taken)
        members = np.flatnonzero(labels == c)
        typ = _ref_typicality(Z[members])
        typ[taken[members]] = -np.inf
        # exact ties (a 2-item cluster: both members) may go either way
        assert typ[members == j][0] >= typ.max() * (1 - 1e-9)
        taken[j] = True


def test_matches_sklearn_reference_on_blobs(rng):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    Z, blob = _separated_blobs(rng)
    labeled = np.zeros(len(Z), bool)
    labeled[np.flatnonzero(blob == 3)[:2]] = True
    labeled[np.flatnonzero(blob == 0)[0]] = True
    B = 7  # |L| + B = 10 clusters: the blobs, a partition both k-means find
    info: dict = {}
    out = typiclust(B, embeddings=Z, labeled_mask=labeled, random_state=0, info=info)
    # the reference's own clustering: scikit-learn KMeans into |L| + B clusters
    ref_labels = KMeans(labeled.sum() + B, n_init=3, random_state=0).fit_predict(Z)
    assert adjusted_rand_score(ref_labels, info["cluster_labels"]) == 1.0
    taken = labeled.copy()
    ref_picks = []
    for _ in range(B):
        c = min(_ref_step(ref_labels, taken))  # no size ties here: a single cluster
        assert len(_ref_step(ref_labels, taken)) == 1
        members = np.flatnonzero(ref_labels == c)
        typ = _ref_typicality(Z[members])
        typ[taken[members]] = -np.inf
        ref_picks.append(int(members[np.argmax(typ)]))
        taken[ref_picks[-1]] = True
    assert out.tolist() == ref_picks
    assert sorted(blob[out].tolist()) == [1, 2, 4, 5, 6, 7, 8]  # the 7 largest uncovered


@pytest.mark.parametrize("n_labeled", [0, 30, 200])
def test_matches_reference_selection_on_digits(n_labeled):
    """On a pool without clear clusters (digits pixels), many of them small, the picks follow
    the reference rule on the same k-means labels (k-means itself is tested elsewhere)."""
    from sklearn.datasets import load_digits

    X = load_digits().data[:600] / 16.0
    r = np.random.default_rng(n_labeled)
    labeled = np.zeros(len(X), bool)
    labeled[r.choice(len(X), n_labeled, replace=False)] = True
    info: dict = {}
    out = typiclust(40, embeddings=X, labeled_mask=labeled, random_state=1, info=info)
    labels = info["cluster_labels"]
    if n_labeled == 200:  # 240 clusters on 600 items: mostly small ones, the case
        assert (np.bincount(labels) <= 5).mean() > 0.5
    _check_against_reference(
        X.astype(np.float32).astype(np.float64), labels, labeled, out, info["clusters"]
    )


# ----------------------------------------------------------------------------------------
# a real pool: better than random at small budgets
# ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_beats_random_at_small_budgets_on_digits():
    """Measured (5 seeds, logistic regression on the picked labels, 1257-item pool):
    TypiClust 0.772 / 0.879 / 0.900 vs random 0.632 / 0.775 / 0.836 at 20 / 40 / 60 labels."""
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xp, Xt, yp, yt = train_test_split(X / 16.0, y, test_size=0.3, random_state=0, stratify=y)

    def acc(idx):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return LogisticRegression(max_iter=1000).fit(Xp[idx], yp[idx]).score(Xt, yt)

    budgets = (20, 40, 60)
    tc = np.zeros((5, 3))
    rand = np.zeros((5, 3))
    for s in range(5):
        labeled = np.zeros(len(Xp), bool)
        rng = np.random.default_rng(s)
        perm = np.random.default_rng(100 + s).permutation(len(Xp))
        for i, b in enumerate(budgets):  # rounds of 20, as the loop runs them
            picks = typiclust(20, embeddings=Xp, labeled_mask=labeled, random_state=rng)
            labeled[picks] = True
            if b == 40:
                assert len(set(yp[labeled].tolist())) >= 8  # the picks cover the classes
            tc[s, i] = acc(labeled)
            rand[s, i] = acc(perm[:b])
    gain = tc.mean(0) - rand.mean(0)
    assert (gain > 0.02).all(), (tc.mean(0), rand.mean(0))
    assert gain.mean() > 0.05, (tc.mean(0), rand.mean(0))


@pytest.mark.slow
def test_long_tailed_pool_is_not_piled_onto_the_majority_class():
    """Regression (issue 13): on digits-lt, 9 rounds of 20 put ~45% of the picks into
    class 0 (29% of the pool); now ~21%, with every class picked."""
    from gapscope.helpers import data

    ds = data.load_dataset("digits-lt", random_state=0)
    X = ds.pool.X.reshape(len(ds.pool.X), -1).astype(np.float64)
    y = np.asarray(ds.oracle.true_labels(ds.pool.ids))
    labeled = np.zeros(len(X), bool)
    rng = np.random.default_rng(0)
    for _ in range(9):
        labeled[typiclust(20, embeddings=X, labeled_mask=labeled, random_state=rng)] = True
    counts = np.bincount(y[labeled], minlength=10)
    assert (counts > 0).all(), counts
    assert counts[0] / counts.sum() < np.mean(y == 0), counts


def test_min_cluster_size_is_validated(rng):
    Z, _ = _separated_blobs(rng, sizes=(20, 20))
    for bad in (-1, 2.5, True, "5"):
        with pytest.raises(ValueError, match="min_cluster_size"):
            typiclust(2, embeddings=Z, min_cluster_size=bad)
    assert typiclust(2, embeddings=Z, min_cluster_size=0, random_state=0).size == 2

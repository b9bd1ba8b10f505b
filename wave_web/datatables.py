"""Dynamic data tables, one per experiment type: DDL, reflection and row access.

Identifiers come only from validated registry entries and are used through `sa.Table`
objects, so the dialect quotes them; values are always bound parameters.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import math
import threading
import uuid
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from flask import current_app

from wave_web import columns
from wave_web.columns import ColumnDef
from wave_web.errors import MESSAGES
from wave_web.errors import Conflict
from wave_web.errors import InvalidValue
from wave_web.errors import NotFound
from wave_web.errors import WaveError
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import record
from wave_web.models import record_now
from wave_web.models import utcnow

if TYPE_CHECKING:
    from wave_web.queries import RowQuery

log = logging.getLogger(__name__)


def naive_utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def index_name(table_name: str, suffix: str) -> str:
    """A short, schema-unique index name (PostgreSQL truncates names over 63 bytes)."""
    digest = hashlib.sha1(table_name.encode("utf-8")).hexdigest()[:8]
    return f"ix_{table_name[:36]}_{digest}_{suffix}"


# SQLite would reuse the id of a deleted last row (a PostgreSQL sequence never does):
# with AUTOINCREMENT an exported id never comes to mean another row, on either database.
TABLE_OPTIONS = {"sqlite_autoincrement": True}


def standard_columns(partitioned: bool = False) -> list[sa.Column]:
    """The seed's columns that every data table starts with.

    A table partitioned by experiment_uuid (partitioning.py) must have it in its
    primary key: (id, experiment_uuid); id stays the one SERIAL of the table.
    """
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_uuid", sa.Uuid, nullable=False, primary_key=partitioned),
        sa.Column("participant_id", columns.text_type(100), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False, default=naive_utcnow),
        sa.Column(
            "updated_at",
            sa.DateTime,
            nullable=False,
            default=naive_utcnow,
            onupdate=naive_utcnow,
        ),
    ]


def custom_column(col: ColumnDef, name: str | None = None) -> sa.Column:
    """The SQLAlchemy column for a registry entry."""
    ctype = columns.COLUMN_TYPES[col.type]
    return sa.Column(name or col.name, ctype.sql(), nullable=col.nullable)


def build_table(
    table_name: str,
    defs: Iterable[ColumnDef],
    metadata: sa.MetaData | None = None,
    partitioned: bool = False,
    indexes: bool = True,
) -> sa.Table:
    """The full Table (standard + custom columns + indexes) for a registry entry.

    `partitioned`: the PostgreSQL parent PARTITION BY HASH (experiment_uuid), whose
    partitions partitioning.create_partitions makes.
    """
    options: dict[str, Any] = dict(TABLE_OPTIONS)
    if partitioned:
        options["postgresql_partition_by"] = "HASH (experiment_uuid)"
    table = sa.Table(
        table_name,
        metadata if metadata is not None else sa.MetaData(),
        *standard_columns(partitioned),
        *(custom_column(c) for c in defs),
        **options,
    )
    if not indexes:
        return table
    sa.Index(index_name(table_name, "exp"), table.c.experiment_uuid)
    sa.Index(index_name(table_name, "pid"), table.c.participant_id)
    sa.Index(index_name(table_name, "exp_id"), table.c.experiment_uuid, table.c.id)
    # The grid's participant filter: its count and its pages in id order, read from
    # this one index (migration 0009 adds it to tables made before it).
    sa.Index(
        index_name(table_name, "exp_pid"),
        table.c.experiment_uuid,
        table.c.participant_id,
        table.c.id,
    )
    return table


def existing_table_names(conn: sa.Connection) -> set[str]:
    """Every table in the current schema, static or dynamic (a catalog query)."""
    return set(sa.inspect(conn).get_table_names())


def create_table(
    conn: sa.Connection,
    table_name: str,
    defs: Iterable[ColumnDef],
    partitioned: bool = False,
) -> sa.Table:
    """CREATE TABLE + indexes on `conn`, inside the caller's transaction.

    `partitioned` (PostgreSQL only): a parent partitioned by experiment_uuid and its
    hash partitions, which inherit the parent's indexes.
    """
    from wave_web import partitioning  # partitioning imports this module

    if partitioned:
        partitioning.require_supported(conn.dialect)
    table = build_table(table_name, defs, partitioned=partitioned)
    table.create(conn)
    if partitioned:
        partitioning.create_partitions(conn, table_name)
    return table


def lock_against_writes(conn: sa.Connection, table: sa.Table) -> None:
    """Hold off row writes to `table` until commit (reads go on), on PostgreSQL.

    A scan that decides whether an ALTER is safe must not miss rows written after it.
    SQLite needs nothing: a write transaction already excludes every other writer.
    """
    if conn.dialect.name != "postgresql":
        return
    # The name comes from the registry (a validated identifier), quoted by the dialect.
    name = conn.dialect.identifier_preparer.format_table(table)
    conn.exec_driver_sql(f"LOCK TABLE {name} IN SHARE ROW EXCLUSIVE MODE")


# ----------------------------------------------------------------------
# Reflection cache
# ----------------------------------------------------------------------


class TableMismatch(WaveError):
    """The physical table does not match the registry: an operator has to look.

    The details (table and column names) go to the log; users see the plain 500 page.
    """

    status = 500

    def __init__(self) -> None:
        super().__init__(MESSAGES[500][1])


# Threads of one worker share the cache: the lock guards lookups and evictions, but
# never a reflection (catalog I/O may wait on a database lock held by a thread that
# needs the cache).
_cache_lock = threading.RLock()


def _cache() -> dict[tuple[Any, ...], sa.Table]:
    return current_app.extensions.setdefault("wave_tables", {})


def reflect(xtype: Any) -> sa.Table:
    """The Table of a type, reflected once per (table_name, schema_version) and cached.

    A warm call costs no catalog query; a worker that sees a newer schema_version in the
    registry reflects again.
    """
    key = (xtype.table_name, xtype.schema_version, xtype.created_at)
    with _cache_lock:
        table = _cache().get(key)
    if table is None:
        table = _reflect(db.session.connection(), xtype.table_name, xtype.columns)
        with _cache_lock:
            forget(xtype.table_name)
            _cache()[key] = table
    return table


def forget(table_name: str) -> None:
    """Drop cached Tables of `table_name` (after DDL in this worker)."""
    with _cache_lock:
        cache = _cache()
        for old in [k for k in cache if k[0] == table_name]:
            del cache[old]


def reflect_now(
    conn: sa.Connection, table_name: str, defs: list[ColumnDef]
) -> sa.Table:
    """The Table as it is in this transaction (between steps of one schema change)."""
    return _reflect(conn, table_name, defs)


def _reflect(conn: sa.Connection, table_name: str, defs: list[ColumnDef]) -> sa.Table:
    inspector = sa.inspect(conn)
    found = {c["name"] for c in inspector.get_columns(table_name)}
    expected = set(columns.STANDARD_COLUMNS) | {c.name for c in defs}
    if found != expected:
        log.error(
            "data table %s does not match its type definition (missing: %s, extra: %s)",
            table_name,
            sorted(expected - found),
            sorted(found - expected),
        )
        raise TableMismatch()
    # Column types come from the registry: they carry how values are bound and read
    # (ExactFloat, JSON null as NULL, COLLATE "C"); reflection contributes the indexes.
    # A partitioned table's primary key is (id, experiment_uuid): declared as found.
    key = inspector.get_pk_constraint(table_name)["constrained_columns"]
    return sa.Table(
        table_name,
        sa.MetaData(),
        *standard_columns(partitioned="experiment_uuid" in key),
        *(custom_column(c) for c in defs),
        autoload_with=conn,
        **TABLE_OPTIONS,
    )


# ----------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------


def insert_rows(
    xtype: Any, experiment_uuid: uuid.UUID, rows: list[dict[str, Any]]
) -> int:
    """Insert parsed rows of one experiment with one executemany; returns the count."""
    if not rows:
        return 0
    table = reflect(xtype)
    now = naive_utcnow()
    payload = [
        {
            **row,
            "experiment_uuid": experiment_uuid,
            "created_at": now,
            "updated_at": now,
        }
        for row in rows
    ]
    db.session.execute(table.insert(), payload)
    adjust_row_count(experiment_uuid, len(payload))
    return len(payload)


def adjust_row_count(experiment_uuid: uuid.UUID, delta: int) -> None:
    """Keep experiments.row_count exact, in the transaction that changes the rows."""
    if delta:
        db.session.execute(
            sa.update(Experiment)
            .where(Experiment.uuid == experiment_uuid)
            .values(row_count=Experiment.row_count + delta)
            .execution_options(synchronize_session=False)
        )


def touch_experiment(experiment_uuid: uuid.UUID) -> None:
    """Mark an experiment's rows as changed, in the transaction that changes them.

    experiments.updated_at (with row_count) is the data version that cached column
    summaries check: a row write that keeps the count (an edit) must call this.
    """
    db.session.execute(
        sa.update(Experiment)
        .where(Experiment.uuid == experiment_uuid)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def count_rows(xtype: Any, experiment_uuids: Iterable[uuid.UUID] | None = None) -> dict:
    """Row counts per experiment uuid (all experiments of the type when None)."""
    stmt = sa.select(Experiment.uuid, Experiment.row_count).where(
        Experiment.experiment_type_id == xtype.id
    )
    if experiment_uuids is not None:
        wanted = list(experiment_uuids)
        if not wanted:
            return {}
        stmt = stmt.where(Experiment.uuid.in_(wanted))
    return {u: n for u, n in db.session.execute(stmt)}


def has_rows(xtype: Any) -> bool:
    """True when the type's table holds at least one row (looks at one row only)."""
    table = reflect(xtype)
    return db.session.execute(sa.select(table.c.id).limit(1)).first() is not None


def newest_rows(xtype: Any, experiment_uuid: uuid.UUID, limit: int = 20) -> list[dict]:
    """The newest rows of one experiment (served by the (experiment_uuid, id) index)."""
    table = reflect(xtype)
    stmt = (
        sa.select(table)
        .where(table.c.experiment_uuid == experiment_uuid)
        .order_by(table.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in db.session.execute(stmt).mappings()]


def delete_experiment_rows(xtype: Any, experiment_uuid: uuid.UUID) -> int:
    """Delete every row of one experiment; returns the count."""
    table = reflect(xtype)
    result = db.session.execute(
        sa.delete(table).where(table.c.experiment_uuid == experiment_uuid)
    )
    return result.rowcount


# ----------------------------------------------------------------------
# Row edits: one function per operation, shared by the web UI and the API. Each write
# is one transaction that keeps experiments.row_count exact and writes an audit entry.
# ----------------------------------------------------------------------

MAX_PARTICIPANT_ID = 100
MAX_DELETE_IDS = 1000


class RowNotFound(NotFound):
    """The id is not a row of this experiment (it may be a row of another one)."""


class RowProblems(WaveError):
    """Some values of a row are invalid; `problems` maps each field to its message."""

    status = 422

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__(
            " ".join(self.problems.values()), field=next(iter(self.problems), None)
        )


class StaleRow(Conflict):
    """Someone saved the row after it was read; `current` holds its values now."""

    def __init__(self, current: dict[str, Any]) -> None:
        super().__init__(
            f"Row {current['id']} was changed by someone else after you opened it; "
            "nothing was saved."
        )
        self.current = current


def row_ref(xtype: Any, row_id: int) -> str:
    """The audit log's object id of a row: type id and row id."""
    return f"{xtype.id}:{row_id}"


def _editable(xtype: Any) -> list[tuple[str, ColumnDef | None]]:
    """participant_id (None: not a registry column) then the custom columns."""
    return [("participant_id", None), *((c.name, c) for c in xtype.columns)]


def parse_participant_id(text: str) -> str:
    if not text.strip():
        raise ValueError("participant_id is required: give the participant's id.")
    if "\x00" in text:
        raise ValueError("participant_id cannot contain the NUL character.")
    if len(text) > MAX_PARTICIPANT_ID:
        raise ValueError(
            f"participant_id is {len(text)} characters long; "
            f"the limit is {MAX_PARTICIPANT_ID}."
        )
    return text


def _parse_field(name: str, col: ColumnDef | None, text: Any) -> Any:
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ValueError(f"{name}: expected the value as text.")
    if col is None:
        return parse_participant_id(text)
    try:
        value = columns.parse_value(col.type, text)
    except ValueError as exc:
        raise ValueError(
            f"{name}: “{columns.shorten(text)}” is not a valid {col.type} value: {exc}."
        ) from None
    if value is None and not col.nullable:
        raise ValueError(f"{name} is required: the column does not allow empty values.")
    return value


def parse_row(
    xtype: Any, form_values: Mapping[str, str], partial: bool = False
) -> dict[str, Any]:
    """Text values of a row (participant_id and custom columns) → Python values.

    Empty text means NULL. Every problem is collected and raised together as
    RowProblems (field → message). Keys that are not columns are ignored; with
    `partial` only the fields present are read (an edit form without hidden columns).
    """
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, col in _editable(xtype):
        if partial and name not in form_values:
            continue
        try:
            values[name] = _parse_field(name, col, form_values.get(name))
        except ValueError as exc:
            problems[name] = str(exc)
    if problems:
        raise RowProblems(problems)
    return values


def _check_values(xtype: Any, values: Mapping[str, Any], new: bool) -> None:
    """Refuse keys that are not editable columns and, for a new row, missing values."""
    editable = dict(_editable(xtype))
    problems = {
        k: f"{columns.shorten(k)} is not a column of this type that can be set."
        for k in values
        if k not in editable
    }
    if new:
        for name, col in editable.items():
            if name not in values and (col is None or not col.nullable):
                problems[name] = f"{name} is required."
    if problems:
        raise RowProblems(problems)


def _texts(
    xtype: Any, row: Mapping[str, Any], names: Iterable[str] | None = None
) -> dict[str, str | None]:
    """Canonical text of a row's editable values (None for NULL), e.g. for the log."""
    types = {"participant_id": "STRING", **{c.name: c.type for c in xtype.columns}}
    wanted = types if names is None else names
    return {
        n: None if row[n] is None else columns.format_value(types[n], row[n])
        for n in wanted
        if n in row
    }


def get_row(xtype: Any, experiment_uuid: uuid.UUID, row_id: int) -> dict[str, Any]:
    """One row of one experiment, or RowNotFound (also for another experiment's id)."""
    if not 1 <= row_id <= columns.INT_MAX:
        raise RowNotFound(f"This experiment has no row {row_id}.")
    table = reflect(xtype)
    stmt = sa.select(table).where(
        table.c.id == row_id, table.c.experiment_uuid == experiment_uuid
    )
    row = db.session.execute(stmt).mappings().first()
    if row is None:
        raise RowNotFound(f"This experiment has no row {row_id}.")
    return dict(row)


def list_rows(
    xtype: Any,
    experiment_uuid: uuid.UUID,
    equals: Mapping[str, Any] | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Rows of one experiment, newest first (id descending), for the API's lists.

    `equals` maps column names (checked by the caller against the type) to values;
    None means IS NULL. Date bounds are inclusive, naive UTC.
    """
    table = reflect(xtype)
    stmt = sa.select(table).where(*_row_filters(table, experiment_uuid, equals))
    if created_after is not None:
        stmt = stmt.where(table.c.created_at >= created_after)
    if created_before is not None:
        stmt = stmt.where(table.c.created_at <= created_before)
    stmt = stmt.order_by(table.c.id.desc()).limit(limit).offset(offset)
    return [dict(r) for r in db.session.execute(stmt).mappings()]


def count_matching(
    xtype: Any, experiment_uuid: uuid.UUID, equals: Mapping[str, Any] | None = None
) -> int:
    """How many rows of one experiment match `equals` (see list_rows)."""
    table = reflect(xtype)
    stmt = (
        sa.select(sa.func.count())
        .select_from(table)
        .where(*_row_filters(table, experiment_uuid, equals))
    )
    return int(db.session.scalar(stmt) or 0)


def _row_filters(
    table: sa.Table, experiment_uuid: uuid.UUID, equals: Mapping[str, Any] | None
) -> list[sa.ColumnElement[bool]]:
    clauses = [table.c.experiment_uuid == experiment_uuid]
    for name, value in (equals or {}).items():
        column = table.c[name]
        clauses.append(column.is_(None) if value is None else column == value)
    return clauses


def existing_ids(
    xtype: Any, experiment_uuid: uuid.UUID, ids: Iterable[int]
) -> list[int]:
    """The ids among `ids` that are rows of this experiment, sorted (confirmations)."""
    wanted = _valid_ids(ids)
    if not wanted:
        return []
    table = reflect(xtype)
    stmt = (
        sa.select(table.c.id)
        .where(table.c.experiment_uuid == experiment_uuid, table.c.id.in_(wanted))
        .order_by(table.c.id)
    )
    return list(db.session.scalars(stmt))


def _valid_ids(ids: Iterable[int]) -> list[int]:
    wanted = sorted({i for i in ids if 1 <= i <= columns.INT_MAX})
    if len(wanted) > MAX_DELETE_IDS:
        raise InvalidValue(
            f"At most {MAX_DELETE_IDS} rows can be selected at once; "
            "delete by filter instead."
        )
    return wanted


def require_experiment(xtype: Any, experiment_uuid: uuid.UUID) -> None:
    stmt = sa.select(Experiment.experiment_type_id).where(
        Experiment.uuid == experiment_uuid
    )
    if db.session.execute(stmt).scalar_one_or_none() != xtype.id:
        raise NotFound(f"There is no experiment {experiment_uuid} of this type.")


_EXP = Experiment.__table__.c
# Built once: a statement is costlier to build than to run (the API's hot path).
_COUNT_ONE_MORE = (
    sa.update(Experiment.__table__)
    .where(
        _EXP.uuid == sa.bindparam("experiment_uuid"),
        _EXP.experiment_type_id == sa.bindparam("type_id"),
    )
    .values(row_count=_EXP.row_count + 1)
)
_INSERTS: dict[sa.Table, sa.Insert] = {}


def _insert_returning(table: sa.Table) -> sa.Insert:
    """INSERT … RETURNING every column, built once per reflected Table."""
    stmt = _INSERTS.get(table)
    if stmt is None:
        with _cache_lock:
            if len(_INSERTS) > 1000:  # Tables of old schema versions
                _INSERTS.clear()
            stmt = _INSERTS[table] = table.insert().returning(*table.c)
    return stmt


def insert_row(
    xtype: Any, experiment_uuid: uuid.UUID, values: Mapping[str, Any]
) -> dict[str, Any]:
    """Add one row (values from parse_row) to an experiment; returns the stored row.

    One transaction: the INSERT … RETURNING of the stored values, the audit entry,
    and last the experiment's row count. That UPDATE proves the experiment exists and
    is of this type (no match: everything is rolled back); a delete holds the
    experiment's row lock first, so it waits for it or it finds nothing. Last,
    because its row lock is held until commit: concurrent inserts into one
    experiment queue for it during the commit only, not during the whole request.
    """
    _check_values(xtype, values, new=True)
    table = reflect(xtype)
    now = naive_utcnow()
    row = {
        **values,
        "experiment_uuid": experiment_uuid,
        "created_at": now,
        "updated_at": now,
    }
    try:
        conn = db.session.connection()
        stored = conn.execute(_insert_returning(table), row)
        result = dict(stored.mappings().one())
        record_now(
            "row.create",
            "row",
            row_ref(xtype, result["id"]),
            f"Added row {result['id']} to experiment {experiment_uuid}",
            experiment=str(experiment_uuid),
            table=xtype.table_name,
            after=_texts(xtype, result),
        )
        counted = conn.execute(
            _COUNT_ONE_MORE, {"experiment_uuid": experiment_uuid, "type_id": xtype.id}
        )
        if counted.rowcount != 1:
            raise NotFound(f"There is no experiment {experiment_uuid} of this type.")
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return result


def _naive(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def update_row(
    xtype: Any,
    experiment_uuid: uuid.UUID,
    row_id: int,
    values: Mapping[str, Any],
    expected_updated_at: dt.datetime,
    always: bool = False,
) -> dict[str, Any]:
    """Save changed values if nobody else saved since `expected_updated_at`.

    Optimistic concurrency: the UPDATE matches id, experiment and the updated_at the
    editor saw; no match → StaleRow carrying the current row. Only values that differ
    are written; when none does, nothing is written (with `always`, updated_at
    still is: the API's PUT). Returns the row as stored.
    """
    _check_values(xtype, values, new=False)
    expected = _naive(expected_updated_at)
    current = get_row(xtype, experiment_uuid, row_id)
    types = {"participant_id": "STRING", **{c.name: c.type for c in xtype.columns}}
    changed = {
        k: v
        for k, v in values.items()
        if columns.format_value(types[k], v)
        != columns.format_value(types[k], current[k])
    }
    if not changed and not always:
        return current
    if current["updated_at"] != expected:
        raise StaleRow(current)
    table = reflect(xtype)
    # Strictly later than the version it replaces, even within one clock tick.
    now = max(naive_utcnow(), expected + dt.timedelta(microseconds=1))
    stmt = (
        sa.update(table)
        .where(
            table.c.id == row_id,
            table.c.experiment_uuid == experiment_uuid,
            table.c.updated_at == expected,
        )
        .values(**changed, updated_at=now)
    )
    try:
        if db.session.execute(stmt).rowcount != 1:
            db.session.rollback()
            raise StaleRow(get_row(xtype, experiment_uuid, row_id))
        touch_experiment(experiment_uuid)
        record(
            "row.update",
            "row",
            row_ref(xtype, row_id),
            f"Edited row {row_id} of experiment {experiment_uuid}: "
            + (", ".join(changed) or "no value changed"),
            experiment=str(experiment_uuid),
            table=xtype.table_name,
            before=_texts(xtype, current, changed),
            after=_texts(xtype, changed),
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return {**current, **changed, "updated_at": now}


def delete_rows(xtype: Any, experiment_uuid: uuid.UUID, ids: Iterable[int]) -> int:
    """Delete rows of one experiment by id; ids of other experiments are left alone.

    One transaction with the row count and an audit entry holding the deleted values;
    returns how many rows were deleted.
    """
    wanted = _valid_ids(ids)
    if not wanted:
        return 0
    table = reflect(xtype)
    stmt = (
        sa.delete(table)
        .where(table.c.experiment_uuid == experiment_uuid, table.c.id.in_(wanted))
        .returning(*table.c)
    )
    try:
        deleted = [dict(r) for r in db.session.execute(stmt).mappings()]
        if deleted:
            adjust_row_count(experiment_uuid, -len(deleted))
            _record_deleted(xtype, experiment_uuid, deleted)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return len(deleted)


def _record_deleted(
    xtype: Any, experiment_uuid: uuid.UUID, deleted: list[dict[str, Any]]
) -> None:
    if len(deleted) == 1:
        row = deleted[0]
        record(
            "row.delete",
            "row",
            row_ref(xtype, row["id"]),
            f"Deleted row {row['id']} of experiment {experiment_uuid}",
            experiment=str(experiment_uuid),
            table=xtype.table_name,
            before=_texts(xtype, row),
        )
        return
    record(
        "rows.delete",
        "experiment",
        experiment_uuid,
        f"Deleted {len(deleted)} selected rows",
        table=xtype.table_name,
        count=len(deleted),
        ids=[r["id"] for r in deleted],
        before=[{"id": r["id"], **_texts(xtype, r)} for r in deleted[:100]],
    )


def delete_matching(
    xtype: Any,
    experiment_uuid: uuid.UUID,
    query: RowQuery,
    expected: int | None = None,
) -> int:
    """Delete every row of one experiment that matches the query's filters.

    With `expected` (the count the user confirmed) any other count deletes nothing
    and raises Conflict. One transaction with the row count and an audit entry;
    returns the number of rows deleted.
    """
    from wave_web import queries  # queries imports this module

    if experiment_uuid is None:
        raise ValueError("delete_matching needs an experiment")  # never a whole type
    table = reflect(xtype)
    stmt = sa.delete(table).where(*queries._where(table, query, experiment_uuid))
    labels = [f.label for f in query.filters]
    try:
        count = db.session.execute(stmt).rowcount
        if expected is not None and count != expected:
            db.session.rollback()
            raise Conflict(
                f"{count:,} rows match now, not the {expected:,} you confirmed; "
                "nothing was deleted. Check the filters and confirm again."
            )
        adjust_row_count(experiment_uuid, -count)
        record(
            "rows.delete_matching",
            "experiment",
            experiment_uuid,
            f"Deleted {count} rows matching "
            + ("; ".join(labels) if labels else "no filter (all rows)"),
            table=xtype.table_name,
            count=count,
            filters=labels,
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return count


# ----------------------------------------------------------------------
# Sorting/filtering indexes on (experiment_uuid, column, id)
# ----------------------------------------------------------------------


def _sort_index_column(names: list[str]) -> str | None:
    if len(names) == 3 and names[0] == "experiment_uuid" and names[2] == "id":
        return names[1]
    return None


def sort_indexed_columns(table: sa.Table) -> set[str]:
    """Columns of a reflected Table that have a sorting/filtering index (no I/O)."""
    found = (_sort_index_column([c.name for c in ix.columns]) for ix in table.indexes)
    return {name for name in found if name}


def has_sort_index(conn: sa.Connection, table_name: str, column: str) -> bool:
    """True when the catalog shows an (experiment_uuid, column, id) index."""
    return any(
        _sort_index_column(list(ix["column_names"])) == column
        for ix in sa.inspect(conn).get_indexes(table_name)
    )


def create_sort_index(
    conn: sa.Connection, table: sa.Table, column: str, salt: object
) -> str:
    """CREATE INDEX on (experiment_uuid, column, id) in the caller's transaction.

    Keyset pages of one experiment sorted or filtered by `column` then read the index
    in order. The name hashes the column and `salt` (the schema version): unique even
    after a rename frees the column name for another column. Returns the index name.
    """
    digest = hashlib.sha1(f"{column}:{salt}".encode()).hexdigest()[:10]
    name = index_name(table.name, f"s_{digest}")
    # A throwaway Table: the cached reflected one must not gain an index before commit.
    holder = sa.Table(
        table.name,
        sa.MetaData(),
        sa.Column("experiment_uuid", sa.Uuid),
        table.c[column]._copy(),
        sa.Column("id", sa.Integer),
    )
    sa.Index(name, holder.c.experiment_uuid, holder.c[column], holder.c.id).create(conn)
    return name


# ----------------------------------------------------------------------
# Schema evolution: each function runs inside the caller's transaction.
# ----------------------------------------------------------------------


def _operations(conn: sa.Connection) -> Operations:
    return Operations(MigrationContext.configure(conn))


@contextlib.contextmanager
def _batch(conn: sa.Connection, table: sa.Table, recreate: str = "auto"):
    # SQLite cannot ALTER a column's nullability: Alembic rebuilds the table (copy,
    # drop, rename) from our Table, keeping its indexes; PostgreSQL just ALTERs it.
    # The rebuild lowers AUTOINCREMENT's mark to the largest id left, which would hand
    # a deleted last row's id to the next row: the mark is put back.
    mark = _sequence_mark(conn, table.name)
    with _operations(conn).batch_alter_table(
        table.name, copy_from=table, recreate=recreate
    ) as batch:
        yield batch
    _restore_sequence_mark(conn, table.name, mark)


_SQLITE_SEQUENCE = sa.table("sqlite_sequence", sa.column("name"), sa.column("seq"))


def _sequence_mark(conn: sa.Connection, table_name: str) -> int | None:
    """The largest id SQLite ever handed out in `table_name` (None elsewhere)."""
    if conn.dialect.name != "sqlite":
        return None
    seq = _SQLITE_SEQUENCE
    return conn.execute(sa.select(seq.c.seq).where(seq.c.name == table_name)).scalar()


def _restore_sequence_mark(
    conn: sa.Connection, table_name: str, mark: int | None
) -> None:
    if mark is None:
        return
    seq = _SQLITE_SEQUENCE
    now = _sequence_mark(conn, table_name)
    if now is None:
        conn.execute(sa.insert(seq).values(name=table_name, seq=mark))
    elif now < mark:
        conn.execute(sa.update(seq).where(seq.c.name == table_name).values(seq=mark))


def add_column(
    conn: sa.Connection, table: sa.Table, col: ColumnDef, fill: Any = None
) -> None:
    """Add a column; a NOT NULL one on a table with rows is filled with `fill` first."""
    with _batch(conn, table) as batch:
        batch.add_column(_nullable(col))
    if fill is not None:
        added = sa.table(
            table.name, sa.column(col.name, columns.COLUMN_TYPES[col.type].sql())
        )
        conn.execute(sa.update(added).values({col.name: fill}))
    if not col.nullable:
        widened = _variant(table, add=_nullable(col))
        with _batch(conn, widened) as batch:
            batch.alter_column(
                col.name, nullable=False, existing_type=_nullable(col).type
            )


def _nullable(col: ColumnDef) -> sa.Column:
    return custom_column(ColumnDef(col.name, col.type, True, col.description))


def _variant(
    table: sa.Table,
    add: sa.Column | None = None,
    drop: str | None = None,
    unindex: str | None = None,
) -> sa.Table:
    """A copy of `table` with a column added/replaced and/or dropped (for copy_from).

    Indexes on `drop` or `unindex` are left out: SQLite's rebuild would recreate them
    on a column that is about to go.
    """
    gone = {drop, add.name if add is not None else None}
    cols = [c._copy() for c in table.columns if c.name not in gone]
    extra = [add] if add is not None else []
    copy = sa.Table(table.name, sa.MetaData(), *cols, *extra, **TABLE_OPTIONS)
    for index in table.indexes:
        names = [c.name for c in index.columns]
        if drop not in names and (unindex is None or unindex not in names):
            sa.Index(index.name, *(copy.c[n] for n in names), unique=index.unique)
    return copy


def rename_column(conn: sa.Connection, table: sa.Table, old: str, new: str) -> None:
    """Rename a column (its data and indexes stay)."""
    with _batch(conn, table) as batch:
        batch.alter_column(old, new_column_name=new, existing_type=table.c[old].type)


def set_nullable(
    conn: sa.Connection, table: sa.Table, name: str, nullable: bool
) -> None:
    """Allow or forbid empty values; the caller checked that no NULL remains."""
    with _batch(conn, table) as batch:
        batch.alter_column(name, nullable=nullable, existing_type=table.c[name].type)


def drop_column(conn: sa.Connection, table: sa.Table, name: str) -> None:
    """Drop a column, its data and its indexes."""
    with _batch(conn, _variant(table, unindex=name)) as batch:
        batch.drop_column(name)


@dataclass(frozen=True)
class Offender:
    """A row whose value cannot be converted or is empty where a value is required."""

    id: int
    participant_id: str
    value: str
    reason: str


def null_rows(
    conn: sa.Connection, table: sa.Table, name: str, limit: int = 20
) -> tuple[int, list[Offender]]:
    """How many rows have no value in `name`, and the first few of them."""
    col = table.c[name]
    count = conn.execute(
        sa.select(sa.func.count()).select_from(table).where(col.is_(None))
    ).scalar_one()
    rows = conn.execute(
        sa.select(table.c.id, table.c.participant_id)
        .where(col.is_(None))
        .order_by(table.c.id)
        .limit(limit)
    )
    return count, [Offender(r.id, r.participant_id, "", "is empty") for r in rows]


def convert_value(old_type: str, new_type: str, value: Any) -> Any:
    """Convert a stored value to another column type, or raise ValueError saying why."""
    if value is None:
        return None
    if old_type == "FLOAT" and new_type == "INTEGER":
        if not float(value).is_integer():
            raise ValueError("has a fractional part")
        return columns.parse_integer(str(int(value)))
    if new_type == "JSON" and old_type in ("INTEGER", "FLOAT", "BOOLEAN"):
        return value
    text = columns.format_value(old_type, value)
    if new_type in ("STRING", "TEXT") and old_type == "DATETIME":
        return text
    # Not parse_value: there blank text means "no value", but a stored value ("", "  ")
    # must convert or be refused, never silently become NULL.
    return columns.COLUMN_TYPES[new_type].parse(text)


def _iter_values(
    conn: sa.Connection, table: sa.Table, name: str, batch: int = 5000
) -> Iterator[Any]:
    """(id, participant_id, value) for every row, in keyset batches on id."""
    last = 0
    while True:
        rows = conn.execute(
            sa.select(table.c.id, table.c.participant_id, table.c[name])
            .where(table.c.id > last)
            .order_by(table.c.id)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def conversion_problems(
    conn: sa.Connection, table: sa.Table, col: ColumnDef, new_type: str, limit: int = 50
) -> tuple[int, list[Offender], dict[int, Any]]:
    """Try converting every value: (problem count, first problems, converted values)."""
    count, offenders, converted = 0, [], {}
    for row_id, participant, value in _iter_values(conn, table, col.name):
        try:
            new_value = convert_value(col.type, new_type, value)
        except ValueError as exc:
            count += 1
            if len(offenders) < limit:
                shown = columns.shorten(columns.format_value(col.type, value))
                offenders.append(Offender(row_id, participant, shown, str(exc)))
            continue
        if new_value is not None:
            converted[row_id] = new_value
    return count, offenders, converted


def change_type(
    conn: sa.Connection,
    table: sa.Table,
    col: ColumnDef,
    new_type: str,
    values: dict[int, Any],
) -> None:
    """Replace a column by one of `new_type` holding the already converted `values`.

    The conversion is done in Python so both databases accept and refuse the same
    values: add a temporary column, fill it by id, drop the old column, rename the
    new one.
    """
    temp = ColumnDef(f"wave_tmp_{uuid.uuid4().hex[:12]}", new_type, True)
    with _batch(conn, table) as batch:
        batch.add_column(custom_column(temp))
    holder = sa.table(
        table.name,
        sa.column("id", sa.Integer),
        sa.column(temp.name, columns.COLUMN_TYPES[new_type].sql()),
    )
    stmt = (
        sa.update(holder)
        .where(holder.c.id == sa.bindparam("row_id"))
        .values({temp.name: sa.bindparam("new_value")})
    )
    items = [{"row_id": k, "new_value": v} for k, v in values.items()]
    for start in range(0, len(items), 5000):
        conn.execute(stmt, items[start : start + 5000])
    widened = _variant(table, add=custom_column(temp), unindex=col.name)
    with _batch(conn, widened) as batch:
        batch.drop_column(col.name)
    narrowed = _variant(widened, drop=col.name)
    with _batch(conn, narrowed) as batch:
        batch.alter_column(
            temp.name,
            new_column_name=col.name,
            nullable=col.nullable,
            existing_type=columns.COLUMN_TYPES[new_type].sql(),
        )
    if col.name in sort_indexed_columns(table) and new_type != "JSON":
        # The old column's index went with it: index the new one the same way.
        create_sort_index(conn, table, col.name, temp.name)


# ----------------------------------------------------------------------
# SQLite storage classes: tables made before FLOAT and JSON stored values exactly
# ----------------------------------------------------------------------


def sqlite_affinity(declared: str) -> str:
    """The affinity SQLite gives a column declared `declared` (datatype3.html §3.1)."""
    name = declared.upper()
    if "INT" in name:
        return "INTEGER"
    if "CHAR" in name or "CLOB" in name or "TEXT" in name:
        return "TEXT"
    if "BLOB" in name or not name:
        return "BLOB"
    if "REAL" in name or "FLOA" in name or "DOUB" in name:
        return "REAL"
    return "NUMERIC"


def stale_sqlite_columns(
    conn: sa.Connection, table_name: str, defs: Iterable[ColumnDef]
) -> list[ColumnDef]:
    """Custom columns whose SQLite affinity is not the one the registry declares now.

    Columns declared FLOAT (REAL affinity: -0.0 read back as 0.0) or JSON (NUMERIC
    affinity: the document 1.0 read back as 1) before FLOAT BLOB and JSON TEXT.
    """
    info = sa.func.pragma_table_info(table_name).table_valued("name", "type")
    declared = dict(conn.execute(sa.select(info.c.name, info.c.type)).all())
    return [
        c
        for c in defs
        if c.name in declared
        and sqlite_affinity(declared[c.name])
        != sqlite_affinity(custom_column(c).type.compile(dialect=conn.dialect))
    ]


def restore_exact_storage(
    conn: sa.Connection, table_name: str, defs: list[ColumnDef]
) -> list[str]:
    """Rebuild a SQLite data table whose columns have a stale affinity; their names.

    The rebuild keeps ids, indexes and the AUTOINCREMENT mark. JSON values that the
    NUMERIC affinity turned into numbers become JSON text again: the number as read
    (the spelling 1.0 or digits beyond a double's precision were lost on insert).
    """
    stale = stale_sqlite_columns(conn, table_name, defs)
    if not stale:
        return []
    table = _reflect(conn, table_name, defs)
    numbers = {
        c.name: _json_numbers(conn, table_name, c.name)
        for c in stale
        if c.type == "JSON"
    }
    with _batch(conn, table, recreate="always"):
        pass  # the Table holds the new declarations; nothing else changes
    for name, found in numbers.items():
        holder = sa.table(table_name, sa.column("id"), sa.column(name))
        stmt = (
            sa.update(holder)
            .where(holder.c.id == sa.bindparam("row_id"))
            .values({name: sa.bindparam("text")})
        )
        items = [{"row_id": k, "text": v} for k, v in found.items()]
        for start in range(0, len(items), 5000):
            conn.execute(stmt, items[start : start + 5000])
    return [c.name for c in stale]


def _json_numbers(conn: sa.Connection, table_name: str, name: str) -> dict[int, str]:
    """id → JSON text of the values SQLite stores as numbers in column `name`."""
    holder = sa.table(table_name, sa.column("id"), sa.column(name))
    col = holder.c[name]
    stmt = sa.select(holder.c.id, col).where(
        sa.func.typeof(col).in_(["integer", "real"])
    )
    found = {}
    for row_id, value in conn.execute(stmt):
        if isinstance(value, float) and not math.isfinite(value):
            log.warning(
                "%s.%s row %s holds %r: left as is", table_name, name, row_id, value
            )
            continue
        found[row_id] = columns.format_json(value)
    return found


def create_statements(
    table_name: str,
    defs: Iterable[ColumnDef],
    dialect: sa.Dialect,
    partitioned: bool = False,
) -> list[str]:
    """The CREATE TABLE and CREATE INDEX statements for a preview (nothing is run)."""
    from wave_web import partitioning  # partitioning imports this module

    table = build_table(table_name, defs, partitioned=partitioned)
    statements = [str(sa.schema.CreateTable(table).compile(dialect=dialect)).strip()]
    if partitioned:
        statements += partitioning.partition_statements(table_name, dialect)
    statements += [
        str(sa.schema.CreateIndex(index).compile(dialect=dialect)).strip()
        for index in sorted(table.indexes, key=lambda i: i.name)
    ]
    return statements

"""Dynamic data tables, one per experiment type: DDL, reflection and row access.

Identifiers come only from validated registry entries and are used through `sa.Table`
objects, so the dialect quotes them; values are always bound parameters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from flask import current_app

from wave_web import columns
from wave_web.columns import ColumnDef
from wave_web.errors import WaveError
from wave_web.extensions import db
from wave_web.models import Experiment


def _naive_utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def index_name(table_name: str, suffix: str) -> str:
    """A short, schema-unique index name (PostgreSQL truncates names over 63 bytes)."""
    digest = hashlib.sha1(table_name.encode("utf-8")).hexdigest()[:8]
    return f"ix_{table_name[:36]}_{digest}_{suffix}"


# SQLite would reuse the id of a deleted last row (a PostgreSQL sequence never does):
# with AUTOINCREMENT an exported id never comes to mean another row, on either database.
TABLE_OPTIONS = {"sqlite_autoincrement": True}


def standard_columns() -> list[sa.Column]:
    """The seed's columns that every data table starts with."""
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_uuid", sa.Uuid, nullable=False),
        sa.Column("participant_id", columns.text_type(100), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False, default=_naive_utcnow),
        sa.Column(
            "updated_at",
            sa.DateTime,
            nullable=False,
            default=_naive_utcnow,
            onupdate=_naive_utcnow,
        ),
    ]


def custom_column(col: ColumnDef, name: str | None = None) -> sa.Column:
    """The SQLAlchemy column for a registry entry."""
    ctype = columns.COLUMN_TYPES[col.type]
    return sa.Column(name or col.name, ctype.sql(), nullable=col.nullable)


def build_table(
    table_name: str, defs: Iterable[ColumnDef], metadata: sa.MetaData | None = None
) -> sa.Table:
    """The full Table (standard + custom columns + indexes) for a registry entry."""
    table = sa.Table(
        table_name,
        metadata if metadata is not None else sa.MetaData(),
        *standard_columns(),
        *(custom_column(c) for c in defs),
        **TABLE_OPTIONS,
    )
    sa.Index(index_name(table_name, "exp"), table.c.experiment_uuid)
    sa.Index(index_name(table_name, "pid"), table.c.participant_id)
    sa.Index(index_name(table_name, "exp_id"), table.c.experiment_uuid, table.c.id)
    return table


def existing_table_names(conn: sa.Connection) -> set[str]:
    """Every table in the current schema, static or dynamic (a catalog query)."""
    return set(sa.inspect(conn).get_table_names())


def create_table(
    conn: sa.Connection, table_name: str, defs: Iterable[ColumnDef]
) -> sa.Table:
    """CREATE TABLE + indexes on `conn`, inside the caller's transaction."""
    table = build_table(table_name, defs)
    table.create(conn)
    return table


def drop_table(conn: sa.Connection, table: sa.Table) -> None:
    """DROP TABLE (its indexes go with it), inside the caller's transaction."""
    table.drop(conn)


# ----------------------------------------------------------------------
# Reflection cache
# ----------------------------------------------------------------------


class TableMismatch(WaveError):
    """The physical table does not match the registry: an operator has to look."""

    status = 500


def _cache() -> dict[tuple[Any, ...], sa.Table]:
    return current_app.extensions.setdefault("wave_tables", {})


def reflect(xtype: Any) -> sa.Table:
    """The Table of a type, reflected once per (table_name, schema_version) and cached.

    A warm call costs no catalog query; a worker that sees a newer schema_version in the
    registry reflects again.
    """
    key = (xtype.table_name, xtype.schema_version, xtype.created_at)
    cache = _cache()
    table = cache.get(key)
    if table is None:
        table = _reflect(db.session.connection(), xtype.table_name, xtype.columns)
        for old in [k for k in cache if k[0] == xtype.table_name]:
            del cache[old]
        cache[key] = table
    return table


def forget(table_name: str) -> None:
    """Drop cached Tables of `table_name` (after DDL in this worker)."""
    cache = _cache()
    for old in [k for k in cache if k[0] == table_name]:
        del cache[old]


def _reflect(conn: sa.Connection, table_name: str, defs: list[ColumnDef]) -> sa.Table:
    found = {c["name"] for c in sa.inspect(conn).get_columns(table_name)}
    expected = set(columns.STANDARD_COLUMNS) | {c.name for c in defs}
    if found != expected:
        raise TableMismatch(
            f"The data table {table_name} does not match its type definition "
            f"(missing: {sorted(expected - found)}, extra: {sorted(found - expected)})."
        )
    # Column types come from the registry (reflection cannot tell JSON text from TEXT on
    # SQLite); reflection contributes the indexes.
    return sa.Table(
        table_name,
        sa.MetaData(),
        *standard_columns(),
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
    now = _naive_utcnow()
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
# Schema evolution: each function runs inside the caller's transaction.
# ----------------------------------------------------------------------


def _operations(conn: sa.Connection) -> Operations:
    return Operations(MigrationContext.configure(conn))


def _batch(conn: sa.Connection, table: sa.Table):
    # SQLite cannot ALTER a column's nullability: Alembic rebuilds the table (copy,
    # drop, rename) from our Table, keeping its indexes; PostgreSQL just ALTERs it.
    return _operations(conn).batch_alter_table(
        table.name, copy_from=table, recreate="auto"
    )


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
    table: sa.Table, add: sa.Column | None = None, drop: str | None = None
) -> sa.Table:
    """A copy of `table` with a column added/replaced and/or dropped (for copy_from)."""
    gone = {drop, add.name if add is not None else None}
    cols = [c._copy() for c in table.columns if c.name not in gone]
    extra = [add] if add is not None else []
    copy = sa.Table(table.name, sa.MetaData(), *cols, *extra, **TABLE_OPTIONS)
    for index in table.indexes:
        names = [c.name for c in index.columns]
        if drop not in names:
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
    """Drop a column and its data."""
    with _batch(conn, table) as batch:
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
    widened = _variant(table, add=custom_column(temp))
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


def create_statements(
    table_name: str, defs: Iterable[ColumnDef], dialect: sa.Dialect
) -> list[str]:
    """The CREATE TABLE and CREATE INDEX statements for a preview (nothing is run)."""
    table = build_table(table_name, defs)
    statements = [str(sa.schema.CreateTable(table).compile(dialect=dialect)).strip()]
    statements += [
        str(sa.schema.CreateIndex(index).compile(dialect=dialect)).strip()
        for index in sorted(table.indexes, key=lambda i: i.name)
    ]
    return statements

"""Rows that arrive parsed (the API's batch) through the import pipeline's writers.

COPY on PostgreSQL, one executemany under SQLite's write lock: the same writers, SQL
and value formats as a file import (csv_io.importing), without the text parsing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from wave_web import datatables
from wave_web.csv_io.importing import _COPY_FORMATS
from wave_web.csv_io.importing import SET_BY_APP
from wave_web.csv_io.importing import _bind_processor
from wave_web.csv_io.importing import _ChunkReader
from wave_web.csv_io.importing import _copy_statement
from wave_web.csv_io.importing import _copy_text
from wave_web.extensions import db


def write_rows(
    xtype: Any,
    experiment_uuid: uuid.UUID,
    chunks: Iterable[list[dict[str, Any]]],
    count: int,
) -> list[int]:
    """Insert `count` validated rows, given in chunks, with the pipeline's writers.

    The fast path of a file import for rows that arrive parsed (the API's batch):
    COPY on PostgreSQL, with ids drawn from the table's sequence first so they come
    back in input order; executemany under SQLite's write lock, whose ids are
    consecutive. Chunks are converted while the database reads the previous ones;
    an exception raised by `chunks` (a row found bad later) stops the write and is
    raised here: the caller rolls back, nothing is kept. In the caller's
    transaction; the row count is kept exact. Returns the ids in input order.
    """
    if not count:
        return []
    table = datatables.reflect(xtype)
    conn = db.session.connection()
    names = ["participant_id", *(c.name for c in xtype.columns)]
    now = datatables.naive_utcnow()
    if conn.dialect.name == "postgresql":
        ids = _draw_ids(conn, table, count)
        _copy_rows(conn, table, xtype, names, experiment_uuid, now, ids, chunks)
    else:
        ids = _insert_rows(conn, table, names, experiment_uuid, now, chunks, count)
    datatables.adjust_row_count(experiment_uuid, count)
    return ids


def _copy_rows(
    conn: sa.Connection,
    table: sa.Table,
    xtype: Any,
    names: list[str],
    experiment_uuid: uuid.UUID,
    now: Any,
    ids: list[int],
    chunks: Iterable[list[dict[str, Any]]],
) -> None:
    formats = [
        _copy_text if n == "participant_id" else _COPY_FORMATS[xtype.column(n).type]
        for n in names
    ]
    stamp = now.isoformat()
    suffix = f"\t{experiment_uuid}\t{stamp}\t{stamp}\n"
    pairs = list(zip(names, formats, strict=True))

    def line(row_id: int, row: dict[str, Any]) -> str:
        cells = ["\\N" if row.get(n) is None else fmt(row[n]) for n, fmt in pairs]
        return f"{row_id}\t" + "\t".join(cells) + suffix

    def texts() -> Iterator[str]:
        done = 0
        for chunk in chunks:
            yield "".join(map(line, ids[done : done + len(chunk)], chunk))
            done += len(chunk)
        if done != len(ids):
            raise ValueError(f"write_rows: {done} rows given, {len(ids)} announced")

    source = _ChunkReader(t for t in texts() if t)
    statement = _copy_statement(conn.dialect, table, ["id", *names, *SET_BY_APP])
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(statement, source)
    except Exception:
        # psycopg2 reports an exception raised by read() as a cancelled COPY.
        if source.error is not None:
            raise source.error from None
        raise
    finally:
        cursor.close()


def _insert_rows(
    conn: sa.Connection,
    table: sa.Table,
    names: list[str],
    experiment_uuid: uuid.UUID,
    now: Any,
    chunks: Iterable[list[dict[str, Any]]],
    count: int,
) -> list[int]:
    keys = [*names, *SET_BY_APP]
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=keys)
    processors = {n: _bind_processor(table.c[n], conn.dialect) for n in keys}
    fixed = {"experiment_uuid": experiment_uuid, "created_at": now, "updated_at": now}

    def bound(name: str, value: Any) -> Any:
        convert = processors[name]
        return value if value is None or convert is None else convert(value)

    constants = {n: bound(n, v) for n, v in fixed.items()}
    order = list(compiled.positiontup)
    done = 0
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        for chunk in chunks:
            params = [
                tuple(
                    constants[n] if n in constants else bound(n, row.get(n))
                    for n in order
                )
                for row in chunk
            ]
            cursor.executemany(compiled.string, params)
            done += len(chunk)
        last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
    finally:
        cursor.close()
    if done != count:
        raise ValueError(f"write_rows: {done} rows given, {count} announced")
    return list(range(last - count + 1, last + 1))


def _draw_ids(conn: sa.Connection, table: sa.Table, count: int) -> list[int]:
    """`count` new ids of `table` from its sequence, in increasing order."""
    target = conn.dialect.identifier_preparer.format_table(table)
    sequence = sa.func.pg_get_serial_sequence(target, "id")
    series = sa.func.generate_series(1, count).table_valued("n")
    stmt = sa.select(sa.func.nextval(sequence)).select_from(series)
    return sorted(conn.scalars(stmt))

"""Rows that arrive parsed (the API's batch) through the import pipeline's writers.

COPY on PostgreSQL, one executemany under SQLite's write lock: the same writers, SQL
and value formats as a file import (csv_io.importing), without the text parsing.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from wave_web import datatables
from wave_web.csv_io.importing import _COPY_FORMATS
from wave_web.csv_io.importing import CHUNK_ROWS
from wave_web.csv_io.importing import SET_BY_APP
from wave_web.csv_io.importing import _bind_processor
from wave_web.csv_io.importing import _ChunkReader
from wave_web.csv_io.importing import _copy_statement
from wave_web.csv_io.importing import _copy_text
from wave_web.extensions import db


def write_rows(
    xtype: Any, experiment_uuid: uuid.UUID, rows: list[dict[str, Any]]
) -> list[int]:
    """Insert already validated rows with the pipeline's writers; their ids in order.

    The fast path of a file import for rows that arrive parsed (the API's batch):
    COPY on PostgreSQL, with ids drawn from the table's sequence first so they come
    back in input order; one executemany under SQLite's write lock, whose ids are
    consecutive. In the caller's transaction; the row count is kept exact.
    """
    if not rows:
        return []
    table = datatables.reflect(xtype)
    conn = db.session.connection()
    names = ["participant_id", *(c.name for c in xtype.columns)]
    names = [n for n in names if any(n in row for row in rows)]
    now = datatables.naive_utcnow()
    if conn.dialect.name == "postgresql":
        ids = _draw_ids(conn, table, len(rows))
        formats = [
            _copy_text if n == "participant_id" else _COPY_FORMATS[xtype.column(n).type]
            for n in names
        ]
        stamp = now.isoformat()
        suffix = f"\t{experiment_uuid}\t{stamp}\t{stamp}\n"
        lines = [
            "\t".join(
                [
                    str(row_id),
                    *(
                        "\\N" if row.get(n) is None else fmt(row[n])
                        for n, fmt in zip(names, formats, strict=True)
                    ),
                ]
            )
            + suffix
            for row_id, row in zip(ids, rows, strict=True)
        ]
        chunks = (
            "".join(lines[i : i + CHUNK_ROWS]) for i in range(0, len(lines), CHUNK_ROWS)
        )
        source = _ChunkReader(chunks)
        statement = _copy_statement(conn.dialect, table, ["id", *names, *SET_BY_APP])
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.copy_expert(statement, source)
        finally:
            cursor.close()
    else:
        keys = [*names, *SET_BY_APP]
        compiled = table.insert().compile(dialect=conn.dialect, column_keys=keys)
        processors = {n: _bind_processor(table.c[n], conn.dialect) for n in keys}
        fixed = {
            "experiment_uuid": experiment_uuid,
            "created_at": now,
            "updated_at": now,
        }
        order = list(compiled.positiontup)

        def bound(name: str, value: Any) -> Any:
            convert = processors[name]
            return value if value is None or convert is None else convert(value)

        constants = {n: bound(n, v) for n, v in fixed.items()}
        params = [
            tuple(
                constants[n] if n in constants else bound(n, row.get(n)) for n in order
            )
            for row in rows
        ]
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.executemany(compiled.string, params)
            last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
        finally:
            cursor.close()
        ids = list(range(last - len(rows) + 1, last + 1))
    datatables.adjust_row_count(experiment_uuid, len(rows))
    return ids


def _draw_ids(conn: sa.Connection, table: sa.Table, count: int) -> list[int]:
    """`count` new ids of `table` from its sequence, in increasing order."""
    target = conn.dialect.identifier_preparer.format_table(table)
    sequence = sa.func.pg_get_serial_sequence(target, "id")
    series = sa.func.generate_series(1, count).table_valued("n")
    stmt = sa.select(sa.func.nextval(sequence)).select_from(series)
    return sorted(conn.scalars(stmt))

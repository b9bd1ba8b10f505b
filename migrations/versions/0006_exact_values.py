"""SQLite data tables: FLOAT and JSON columns that give every value back exactly.

Data tables made before this revision declare FLOAT (REAL affinity: -0.0 is stored as
the integer 0) and JSON (NUMERIC affinity: the document 1.0 is stored as 1, a 22-digit
integer as a rounded REAL). SQLite cannot change a column's declared type, so each
such table is rebuilt with today's declarations (FLOAT BLOB, JSON TEXT), keeping ids,
indexes and the AUTOINCREMENT mark. Values already changed on insert stay as they
were read. PostgreSQL's float8 and json columns need nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import logging

import sqlalchemy as sa
from alembic import op
from wave_web import columns
from wave_web import datatables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade():
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    types = sa.table(
        "experiment_types",
        sa.column("table_name", sa.String),
        sa.column("schema_definition", sa.JSON),
    )
    found = conn.execute(sa.select(types.c.table_name, types.c.schema_definition))
    for table_name, definition in found.all():
        defs = columns.normalise_schema(definition)
        try:
            rebuilt = datatables.restore_exact_storage(conn, table_name, defs)
        except datatables.TableMismatch:
            continue  # logged; the app refuses the table until an operator looks
        if rebuilt:
            log.info("rebuilt %s for exact values: %s", table_name, ", ".join(rebuilt))


def downgrade():
    # Nothing to undo: older code reads and writes FLOAT BLOB and JSON TEXT columns
    # (only without the exactness).
    pass

"""Every data table gets the grid's participant index: (experiment_uuid, participant_id,
id). New tables have it from datatables.build_table; this adds it to the tables made
before. Without it a participant filter read all of the experiment's rows on SQLite
(its planner took the experiment_uuid index).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from wave_web.datatables import index_name

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SUFFIX = "exp_pid"


def _data_tables(conn: sa.Connection) -> list[str]:
    """The registered data tables that exist (a type's table is made with it)."""
    names = conn.execute(sa.text("SELECT table_name FROM experiment_types")).scalars()
    present = set(sa.inspect(conn).get_table_names())
    return [name for name in names if name in present]


def upgrade():
    conn = op.get_bind()
    for table_name in _data_tables(conn):
        found = {ix["name"] for ix in sa.inspect(conn).get_indexes(table_name)}
        name = index_name(table_name, SUFFIX)
        if name in found:
            continue
        # IF NOT EXISTS too: the catalog may not list a partitioned parent's indexes
        op.create_index(
            name,
            table_name,
            ["experiment_uuid", "participant_id", "id"],
            if_not_exists=True,
        )


def downgrade():
    conn = op.get_bind()
    for table_name in _data_tables(conn):
        found = {ix["name"] for ix in sa.inspect(conn).get_indexes(table_name)}
        name = index_name(table_name, SUFFIX)
        if name in found:
            op.drop_index(name, table_name=table_name)

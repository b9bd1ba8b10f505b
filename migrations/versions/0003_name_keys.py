"""tags.name_key, experiment_types.name_key: names unique ignoring case, in Python.

SQLite's lower() folds only A–Z, so the expression index on lower(name) let "Ä" and
"ä" both in; the keys are str.casefold() of the name, computed here for existing rows
and by the application for new ones.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

NAME_KEY_LENGTH = 300
TABLES = ("tags", "experiment_types")


def upgrade():
    op.drop_index("ix_tags_name_lower", table_name="tags")
    for table_name in TABLES:
        # SQLite adds a NOT NULL column only with a default. Rebuilding the table
        # instead would trip the foreign key from experiments (checked at commit).
        with op.batch_alter_table(table_name) as batch:
            batch.add_column(
                sa.Column(
                    "name_key",
                    sa.String(NAME_KEY_LENGTH),
                    nullable=False,
                    server_default="",
                )
            )
        _fill_keys(table_name)
        if op.get_bind().dialect.name != "sqlite":
            op.alter_column(table_name, "name_key", server_default=None)
        op.create_index(
            f"ix_{table_name}_name_key", table_name, ["name_key"], unique=True
        )


def _fill_keys(table_name):
    """name_key = name.casefold(); a name folding onto an earlier one adds its id.

    Such pairs could exist before (e.g. "Straße" and "STRASSE", or "Ä" and "ä" on
    SQLite); nothing is renamed, the later one just gets a distinct key.
    """
    table = sa.table(
        table_name,
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("name_key", sa.String),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(table.c.id, table.c.name).order_by(table.c.id))
    seen = set()
    updates = []
    for row_id, name in rows.all():
        key = name.casefold()
        if key in seen:
            log.warning(
                "%s %s: %r differs from another name only by case",
                table_name,
                row_id,
                name,
            )
            key = f"{key} (#{row_id})"
        seen.add(key)
        updates.append({"row_id": row_id, "key": key})
    if updates:
        stmt = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("row_id"))
            .values(name_key=sa.bindparam("key"))
        )
        conn.execute(stmt, updates)


def downgrade():
    for table_name in TABLES:
        op.drop_index(f"ix_{table_name}_name_key", table_name=table_name)
        # not batch: a rebuild of experiment_types would trip the foreign key on SQLite
        op.drop_column(table_name, "name_key")
    op.create_index("ix_tags_name_lower", "tags", [sa.text("lower(name)")], unique=True)

"""experiments.row_count: the exact row count, maintained with every row write.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(
            sa.Column("row_count", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("row_count")

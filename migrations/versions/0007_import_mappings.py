"""Remembered import mappings: per type and file header, where each column went.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from wave_web.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "import_mappings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "experiment_type_id",
            sa.Integer(),
            sa.ForeignKey(
                "experiment_types.id",
                name="fk_import_mappings_experiment_type_id",
                ondelete="CASCADE",
            ),
            nullable=False,
        ),
        sa.Column("header_key", sa.String(64), nullable=False),
        sa.Column("header", sa.JSON(), nullable=False),
        sa.Column("mapping", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("uses", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(
            "experiment_type_id", "header_key", name="uq_import_mappings_type_header"
        ),
    )


def downgrade():
    op.drop_table("import_mappings")

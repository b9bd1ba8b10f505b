"""import_jobs: CSV uploads on their way through check, preview and import.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from wave_web.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "import_jobs",
        sa.Column("uuid", sa.Uuid(), primary_key=True),
        sa.Column(
            "experiment_uuid",
            sa.Uuid(),
            sa.ForeignKey(
                "experiments.uuid",
                name="fk_import_jobs_experiment_uuid",
                ondelete="CASCADE",
            ),
            nullable=False,
        ),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column(
            "auto_confirm", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
        sa.Column("schema_version", sa.Integer(), nullable=True),
        sa.Column("rows_total", sa.BigInteger(), nullable=True),
        sa.Column("rows_done", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column(
            "cancel_requested",
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
        ),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "ix_import_jobs_experiment_uuid", "import_jobs", ["experiment_uuid"]
    )
    op.create_index("ix_import_jobs_state", "import_jobs", ["state"])


def downgrade():
    op.drop_table("import_jobs")

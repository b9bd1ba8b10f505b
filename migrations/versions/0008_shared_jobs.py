"""Import jobs any server can run: a claim (worker, attempts) and the upload's bytes.

On PostgreSQL a worker process claims a job (claimed_by; heartbeat_at is its lease)
and the uploaded file is kept in import_uploads, in chunks, so every server reads it.
SQLite keeps its in-process runner and files on disk (the table stays empty).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("import_jobs") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(100), nullable=True))
        batch.add_column(
            sa.Column("attempts", sa.Integer(), server_default="0", nullable=False)
        )
    op.create_table(
        "import_uploads",
        sa.Column(
            "job_uuid",
            sa.Uuid(),
            sa.ForeignKey(
                "import_jobs.uuid",
                name="fk_import_uploads_job_uuid",
                ondelete="CASCADE",
            ),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade():
    op.drop_table("import_uploads")
    with op.batch_alter_table("import_jobs") as batch:
        batch.drop_column("attempts")
        batch.drop_column("claimed_by")

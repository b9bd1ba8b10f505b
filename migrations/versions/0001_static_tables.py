"""Static tables of the seed (tags, experiment_types, experiments) and the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from wave_web.models import TagList
from wave_web.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamps():
    return [
        sa.Column(
            "created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", UTCDateTime(), server_default=sa.func.now(), nullable=False
        ),
    ]


def upgrade():
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        *_timestamps(),
    )
    op.create_index("ix_tags_name", "tags", ["name"], unique=True)
    op.create_index("ix_tags_name_lower", "tags", [sa.text("lower(name)")], unique=True)

    op.create_table(
        "experiment_types",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("table_name", sa.String(100), nullable=False),
        sa.Column("schema_definition", sa.JSON(), server_default="{}", nullable=False),
        sa.Column("schema_version", sa.Integer(), server_default="1", nullable=False),
        *_timestamps(),
    )
    op.create_index(
        "ix_experiment_types_name", "experiment_types", ["name"], unique=True
    )
    op.create_index(
        "ix_experiment_types_table_name",
        "experiment_types",
        ["table_name"],
        unique=True,
    )

    op.create_table(
        "experiments",
        sa.Column("uuid", sa.Uuid(), primary_key=True),
        sa.Column(
            "experiment_type_id",
            sa.Integer(),
            sa.ForeignKey(
                "experiment_types.id", name="fk_experiments_experiment_type_id"
            ),
            nullable=False,
        ),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", TagList(), nullable=True),
        sa.Column("additional_data", sa.JSON(), nullable=True),
        *_timestamps(),
    )
    op.create_index(
        "ix_experiments_experiment_type_id", "experiments", ["experiment_type_id"]
    )
    op.create_index("ix_experiments_created_at", "experiments", ["created_at"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("remote_addr", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
    )
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_index(
        "ix_audit_log_object", "audit_log", ["object_type", "object_id", "id"]
    )


def downgrade():
    op.drop_table("audit_log")
    op.drop_table("experiments")
    op.drop_table("experiment_types")
    op.drop_table("tags")

"""Static tables (seed: tags, experiment_types, experiments) plus our audit log."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from flask import g
from flask import has_app_context
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship
from sqlalchemy.orm import validates

from wave_web import columns
from wave_web.extensions import db


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(sa.TypeDecorator):
    """TIMESTAMPTZ on PostgreSQL, naive UTC text on SQLite; aware UTC in Python."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class TagList(sa.TypeDecorator):
    """VARCHAR(50)[] on PostgreSQL (as in the seed), a JSON array on SQLite."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Any):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(
                postgresql.ARRAY(sa.String(columns.MAX_TAG_LENGTH))
            )
        return dialect.type_descriptor(sa.JSON())

    def process_bind_param(self, value: list[str] | None, dialect: Any):
        return list(value) if value is not None else []

    def process_result_value(self, value: list[str] | None, dialect: Any):
        return list(value) if value else []


def _created_at(context: Any) -> dt.datetime:
    """On insert, updated_at is created_at (one clock reading; api-v1.md §8)."""
    return context.get_current_parameters().get("created_at") or utcnow()


class Timestamps:
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=sa.func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, default=_created_at, onupdate=utcnow, server_default=sa.func.now()
    )


# casefold() can triple a name's length ("ΐ" → three characters).
NAME_KEY_LENGTH = 300


def name_key(name: str) -> str:
    """The form in which names are unique: case folded, so "STRASSE" = "Straße".

    Computed in Python: SQLite's lower() folds only A–Z.
    """
    return name.casefold()


def _name_key_default(context: Any) -> str:
    return name_key(context.get_current_parameters()["name"])


class NamedMixin:
    """A display name that is unique ignoring case, through the name_key column."""

    name: Mapped[str] = mapped_column(sa.String(100), unique=True, index=True)
    name_key: Mapped[str] = mapped_column(
        sa.String(NAME_KEY_LENGTH), unique=True, index=True, default=_name_key_default
    )

    @validates("name")
    def _keep_name_key(self, _attribute: str, value: str) -> str:
        self.name_key = name_key(value)
        return value


class Tag(NamedMixin, Timestamps, db.Model):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    description: Mapped[str | None] = mapped_column(sa.Text)


class ExperimentType(NamedMixin, Timestamps, db.Model):
    __tablename__ = "experiment_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    table_name: Mapped[str] = mapped_column(sa.String(100), unique=True, index=True)
    schema_definition: Mapped[dict[str, Any]] = mapped_column(
        sa.JSON, default=dict, server_default="{}"
    )
    schema_version: Mapped[int] = mapped_column(default=1, server_default="1")
    # Every UPDATE bumps schema_version and checks the old value: a concurrent change
    # of the same type fails instead of overwriting (and reflection caches see the
    # new version).
    __mapper_args__ = {"version_id_col": schema_version}

    experiments: Mapped[list[Experiment]] = relationship(
        back_populates="experiment_type", order_by="Experiment.created_at.desc()"
    )

    @property
    def columns(self) -> list[columns.ColumnDef]:
        return columns.normalise_schema(self.schema_definition)

    def column(self, name: str) -> columns.ColumnDef | None:
        return next((c for c in self.columns if c.name == name), None)


class Experiment(Timestamps, db.Model):
    __tablename__ = "experiments"

    uuid: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid, primary_key=True, default=uuid.uuid4
    )
    experiment_type_id: Mapped[int] = mapped_column(
        sa.ForeignKey("experiment_types.id", name="fk_experiments_experiment_type_id"),
        index=True,
    )
    description: Mapped[str] = mapped_column(sa.Text)
    # NULLABLE as in the seed; TagList reads NULL as [] and always writes an array.
    tags: Mapped[list[str]] = mapped_column(TagList, default=list, nullable=True)
    additional_data: Mapped[dict[str, Any] | None] = mapped_column(
        sa.JSON, default=dict
    )
    # Exact, kept in the same transaction as every insert and delete of its rows, so
    # the grid and the lists never count a million rows.
    row_count: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")

    __table_args__ = (sa.Index("ix_experiments_created_at", "created_at"),)

    experiment_type: Mapped[ExperimentType] = relationship(back_populates="experiments")


ROLES = ("viewer", "researcher", "admin")  # each may do what the one before may
API_ROLES = ("experimentee", "researcher", "admin", "test")  # api-v1.md §2


class User(Timestamps, db.Model):
    """A person who signs in. `role` is one of ROLES; disabled users cannot sign in."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254))
    email_key: Mapped[str] = mapped_column(sa.String(NAME_KEY_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16))
    is_disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    must_change_password: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @validates("email")
    def _keep_email_key(self, _attribute: str, value: str) -> str:
        self.email_key = name_key(value)
        return value

    # Flask-Login's user interface
    @property
    def is_active(self) -> bool:
        return not self.is_disabled

    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)

    def may(self, role: str) -> bool:
        """True when the user's role includes `role` (admin ⊃ researcher ⊃ viewer)."""
        return ROLES.index(self.role) >= ROLES.index(role)


class UserSession(db.Model):
    """A signed-in browser. Only the token's hash is stored; ending it logs it out."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    remote_addr: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(255))

    user: Mapped[User] = relationship()


class ApiKey(db.Model):
    """A key for the JSON API: shown once, stored as a hash, revocable."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(100))
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    created_by: Mapped[User | None] = relationship()


class AuditEntry(db.Model):
    """Append-only record of a change; written in the same transaction as the change."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, default=utcnow, index=True
    )
    actor: Mapped[str | None] = mapped_column(sa.String(255))
    remote_addr: Mapped[str | None] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    object_type: Mapped[str] = mapped_column(sa.String(32))
    object_id: Mapped[str] = mapped_column(sa.String(64))
    summary: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)

    __table_args__ = (
        sa.Index("ix_audit_log_object", "object_type", "object_id", "id"),
    )


def record(
    action: str, obj_type: str, obj_id: Any, summary: str, **details: Any
) -> None:
    """Add an audit entry to the current transaction (committed with the change).

    Who and from where come from flask.g (set per request by wave_web.access, or by
    a background job for the user who started it).
    """
    actor = addr = None
    if has_app_context():
        actor = g.get("audit_actor")
        addr = g.get("audit_addr")
    db.session.add(
        AuditEntry(
            actor=actor[:255] if actor else None,
            remote_addr=addr[:64] if addr else None,
            action=action,
            object_type=obj_type,
            object_id=str(obj_id),
            summary=summary,
            details=details or None,
        )
    )


_AUDIT_INSERT = sa.insert(AuditEntry.__table__)  # built once (hot paths)


def record_now(
    action: str, obj_type: str, obj_id: Any, summary: str, **details: Any
) -> None:
    """record(), written at once with one INSERT (no unit of work): for hot paths."""
    actor = addr = None
    if has_app_context():
        actor = g.get("audit_actor")
        addr = g.get("audit_addr")
    db.session.connection().execute(
        _AUDIT_INSERT,
        dict(
            created_at=utcnow(),
            actor=actor[:255] if actor else None,
            remote_addr=addr[:64] if addr else None,
            action=action,
            object_type=obj_type,
            object_id=str(obj_id),
            summary=summary,
            details=details or None,
        ),
    )


def lock_type(type_id: int, shared: bool = False) -> bool:
    """Lock a type's registry row until commit; False when the type is gone.

    FOR UPDATE (deleting the type) excludes FOR SHARE (adding an experiment to it), so
    the two cannot interleave on PostgreSQL. SQLite's write lock already serialises.
    """
    stmt = (
        sa.select(ExperimentType.id)
        .where(ExperimentType.id == type_id)
        .with_for_update(read=shared)
    )
    return db.session.execute(stmt).first() is not None


def history(obj_type: str, obj_id: Any, limit: int = 50) -> list[AuditEntry]:
    """The newest audit entries of one object."""
    stmt = (
        sa.select(AuditEntry)
        .where(AuditEntry.object_type == obj_type, AuditEntry.object_id == str(obj_id))
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(stmt))


def has_tag(tag: str) -> sa.ColumnElement[bool]:
    """WHERE clause: the experiment has `tag` (array on PostgreSQL, JSON on SQLite)."""
    if db.session.get_bind().dialect.name == "postgresql":
        tags = sa.type_coerce(Experiment.tags, postgresql.ARRAY(sa.String(50)))
        return tags.contains([tag])
    each = sa.func.json_each(Experiment.tags).table_valued("value").alias("tag_each")
    return sa.exists(sa.select(1).select_from(each).where(each.c.value == tag))


def tag_usage() -> dict[str, int]:
    """How many experiments carry each tag name."""
    if db.session.get_bind().dialect.name == "postgresql":
        name = sa.func.unnest(Experiment.tags).label("name")
        inner = sa.select(name).subquery()
        stmt = sa.select(inner.c.name, sa.func.count()).group_by(inner.c.name)
    else:
        each = (
            sa.func.json_each(Experiment.tags).table_valued("value").alias("tag_each")
        )
        stmt = (
            sa.select(each.c.value, sa.func.count())
            .select_from(Experiment)
            .join(each, sa.true())
            .group_by(each.c.value)
        )
    return {name: count for name, count in db.session.execute(stmt)}


# Import jobs: an uploaded file on its way through check → preview → import.
JOB_STATES = (
    "uploaded",
    "checking",
    "checked",
    "queued",
    "importing",
    "succeeded",
    "failed",
    "cancelled",
)
FINAL_JOB_STATES = ("succeeded", "failed", "cancelled")


class ImportJob(db.Model):
    """One CSV upload into one experiment: options, state, progress and report.

    The file itself lives under the upload folder, named by the job's uuid (never by
    the user's file name), and is deleted when the job reaches a final state.
    """

    __tablename__ = "import_jobs"

    uuid: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid, primary_key=True, default=uuid.uuid4
    )
    experiment_uuid: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid,
        sa.ForeignKey(
            "experiments.uuid",
            name="fk_import_jobs_experiment_uuid",
            ondelete="CASCADE",
        ),
        index=True,
    )
    file_name: Mapped[str] = mapped_column(sa.String(255))
    file_size: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    options: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    # Check and import in one go (scripts): no preview step.
    auto_confirm: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # The type's schema_version the check ran against.
    schema_version: Mapped[int | None] = mapped_column()
    rows_total: Mapped[int | None] = mapped_column(sa.BigInteger)
    rows_done: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    report: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    message: Mapped[str | None] = mapped_column(sa.Text)
    cancel_requested: Mapped[bool] = mapped_column(
        default=False, server_default=sa.false()
    )
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # PostgreSQL: the worker process running it (heartbeat_at is its lease) and how
    # many runs it took (csv_io/queue.py); SQLite runs jobs in-process, no claim.
    claimed_by: Mapped[str | None] = mapped_column(sa.String(100))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_JOB_STATES


class ImportUpload(db.Model):
    """A chunk of a job's uploaded file, on PostgreSQL (csv_io/storage.py): every
    server reads it; deleted with the job's end (or its row, by cascade)."""

    __tablename__ = "import_uploads"

    job_uuid: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid,
        sa.ForeignKey(
            "import_jobs.uuid", name="fk_import_uploads_job_uuid", ondelete="CASCADE"
        ),
        primary_key=True,
    )
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class ImportMapping(db.Model):
    """Where the columns of a file header went the last time (per type).

    `mapping` is header text → target column ("" ignored); `options` keeps the
    missing-value spellings and value formats, so the next file from the same tool
    imports in one click.
    """

    __tablename__ = "import_mappings"
    __table_args__ = (
        sa.UniqueConstraint(
            "experiment_type_id", "header_key", name="uq_import_mappings_type_header"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_type_id: Mapped[int] = mapped_column(
        sa.ForeignKey(
            "experiment_types.id",
            name="fk_import_mappings_experiment_type_id",
            ondelete="CASCADE",
        )
    )
    header_key: Mapped[str] = mapped_column(sa.String(64))
    header: Mapped[list[str]] = mapped_column(sa.JSON)
    mapping: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    options: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    uses: Mapped[int] = mapped_column(default=0, server_default="0")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

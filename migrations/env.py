"""Alembic environment for the static tables (dynamic data tables are ignored)."""

from __future__ import annotations

from alembic import context
from flask import current_app
from wave_web import models  # noqa: F401  (registers the static tables)
from wave_web.extensions import db

config = context.config
target_metadata = db.metadata


def include_object(obj, name, type_, reflected, compare_to):
    # Experiment types create tables at run time; autogenerate must leave them alone.
    return not (type_ == "table" and reflected and compare_to is None)


def run_migrations_offline() -> None:
    context.configure(
        url=str(db.engine.url),
        target_metadata=target_metadata,
        literal_binds=True,
        include_object=include_object,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = current_app.extensions["migrate"].db.engine
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

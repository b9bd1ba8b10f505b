"""What the benchmarks share: throwaway databases and a signed-in test client."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import sqlalchemy as sa
from wave_web import accounts
from wave_web import create_app
from wave_web.access import SEEN_KEY
from wave_web.access import SESSION_KEY
from wave_web.columns import ColumnDef
from wave_web.config import normalise_database_url
from wave_web.extensions import db
from wave_web.models import User

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
BENCH_EMAIL = "bench@example.org"
# The generator's columns, in its order (participant_id first, then these).
BENCH_COLUMNS = (
    ColumnDef("reaction_time", "FLOAT"),
    ColumnDef("accuracy", "FLOAT"),
    ColumnDef("difficulty_level", "INTEGER"),
    ColumnDef("stimulus_type", "STRING"),
    ColumnDef("correct", "BOOLEAN"),
    ColumnDef("response_at", "DATETIME"),
    ColumnDef("notes", "TEXT"),
    ColumnDef("extra", "JSON"),
)


@contextlib.contextmanager
def database_url(backend: str) -> Iterator[str]:
    """An empty database: SQLite in a temp dir, or a throwaway PostgreSQL schema."""
    if backend == "sqlite":
        tmp = tempfile.mkdtemp(prefix="wave_bench_")
        try:
            yield f"sqlite:///{tmp}/bench.db"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    base = os.environ.get("WAVE_BENCH_DATABASE_URL", DEFAULT_PG_URL)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(normalise_database_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.schema.CreateSchema(name))
    try:
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}options={quote(f'-csearch_path={name}')}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.schema.DropSchema(name, cascade=True))
        admin.dispose()


@contextlib.contextmanager
def bench_app(url: str, **config) -> Iterator:
    """The app on `url` (CSRF off); on leaving, its import runner stopped and its
    connections closed, so the throwaway database can be dropped."""
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench"}
        | {"WTF_CSRF_ENABLED": False}
        | config
    )
    try:
        yield app
    finally:
        with app.app_context():
            runner = app.extensions.get("wave_import_runner")
            if runner is not None:
                runner.shutdown()
            db.session.remove()
            db.engine.dispose()


def load_csv(xtype, experiment_uuid: uuid.UUID, path) -> int:
    """Load a CSV with the app's own import pipeline (not the upload form): values are
    validated and stored exactly as an import stores them. Returns the rows written."""
    from wave_web.csv_io.importing import ImportOptions
    from wave_web.csv_io.importing import import_file

    report = import_file(xtype, experiment_uuid, str(path), ImportOptions())
    db.session.commit()
    return report.written


def sign_in(app, client) -> None:
    """Sign `client` in as the bench admin (created on first use): pages need it."""
    with app.app_context():
        user = db.session.query(User).filter_by(email=BENCH_EMAIL).one_or_none()
        if user is None:
            user = accounts.create_user(
                BENCH_EMAIL, accounts.generated_password(), "admin"
            )
            db.session.flush()
        token = accounts.start_session(user, "127.0.0.1", "bench")
        user_id = user.id
        db.session.commit()
    with client.session_transaction() as session:
        session.update(
            {
                "_user_id": str(user_id),
                "_fresh": True,
                SESSION_KEY: token,
                SEEN_KEY: int(time.time()),
            }
        )


def signed_in_client(app):
    """A test client of `app` signed in as the bench admin."""
    client = app.test_client()
    sign_in(app, client)
    return client

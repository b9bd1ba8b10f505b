"""Engine set-up: SQLite pragmas and transactional DDL, migrations on first start."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from typing import TypeVar

import filelock
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from flask import Flask
from flask import current_app
from flask import has_request_context
from flask import request
from flask_migrate import upgrade

from wave_web import sqlitelock
from wave_web.extensions import db

log = logging.getLogger(__name__)

V = TypeVar("V", bound=Callable[..., Any])

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")


def configure_engine(engine: sa.Engine) -> None:
    """WAL, foreign keys and transactional DDL on SQLite (busy timeout: config.py);
    on PostgreSQL, the time limit of a page's statements."""
    if engine.dialect.name == "postgresql":

        @sa.event.listens_for(engine, "begin")
        def limit_page_statements(conn):
            seconds = page_time_limit()
            if seconds:
                conn.exec_driver_sql(
                    "SELECT set_config('statement_timeout', %(ms)s, true)",
                    {"ms": str(seconds * 1000)},
                )

    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # pysqlite's own transaction handling would commit before every CREATE/ALTER;
        # SQLAlchemy's recipe: turn it off, emit BEGIN ourselves, so DDL can roll back.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA case_sensitive_like=ON")  # LIKE as on PostgreSQL
        cursor.close()
        # SQLite's lower() folds only A–Z; filters "in any case" use Python's.
        dbapi_connection.create_function(
            "wave_lower", 1, _lower_or_none, deterministic=True
        )

    turn = sqlitelock.turn_file(engine)

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn):
        if not _is_write_request():
            conn.exec_driver_sql("BEGIN")
        elif has_request_context():
            sqlitelock.begin_for_request(conn, turn)
        else:  # import jobs and their bookkeeping let waiting requests go first
            sqlitelock.begin_in_background(conn, turn)


def _lower_or_none(value):
    return value.lower() if isinstance(value, str) else value


def unhurried(view: V) -> V:
    """Mark a GET view that may rightly run long (a whole export): no time limit."""
    view.wave_unhurried = True  # type: ignore[attr-defined]
    return view


def page_time_limit() -> int | None:
    """Seconds a statement of this request may take (PostgreSQL), or None.

    Pages (GET) get WAVE_PAGE_QUERY_SECONDS: a runaway query is stopped and answered
    with a 503 that says so, instead of holding a worker and the database. Writes,
    imports, jobs and the views marked unhurried (exports) have no limit.
    """
    if not has_request_context() or request.method not in ("GET", "HEAD"):
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "wave_unhurried", False):
        return None
    return current_app.config.get("WAVE_PAGE_QUERY_SECONDS") or None


def read_only(view: V) -> V:
    """Mark a POST view that never writes: SQLite need not take its write lock."""
    return read_only_when(lambda: True)(view)


def read_only_when(is_read_only: Callable[[], bool]) -> Callable[[V], V]:
    """Mark a view that does not write when `is_read_only()` holds for the request."""

    def mark(view: V) -> V:
        view.wave_read_only = is_read_only  # type: ignore[attr-defined]
        return view

    return mark


def primary_only(view: V) -> V:
    """Mark a GET view that must read the primary, never a read replica (/health)."""
    view.wave_primary = True  # type: ignore[attr-defined]
    return view


_intent = threading.local()


def intent() -> bool | None:
    """True inside writing(), False inside reading(), else None (the request's own).

    Either way the statements go to the primary, never a read replica (replica.py).
    """
    return getattr(_intent, "writes", None)


@contextlib.contextmanager
def _intending(writes: bool) -> Iterator[None]:
    before = getattr(_intent, "writes", None)
    _intent.writes = writes
    try:
        yield
    finally:
        _intent.writes = before


def writing() -> contextlib.AbstractContextManager[None]:
    """Transactions begun inside take SQLite's write lock at BEGIN (background jobs).

    Outside requests nothing says a transaction will write; a deferred one that reads,
    then writes after another writer committed, fails at once on SQLite.
    """
    return _intending(True)


def reading() -> contextlib.AbstractContextManager[None]:
    """Transactions begun inside do not take the write lock, even in a POST.

    For the short look-ups before a view runs (who is signed in, which API key): on
    the primary, so a session ended or a key revoked a moment ago is seen at once; the
    caller ends that transaction before the view begins its own.
    """
    return _intending(False)


def _is_write_request() -> bool:
    """A POST/PUT/PATCH/DELETE request: take SQLite's write lock up front.

    A deferred transaction that reads and then writes fails at once with "database is
    locked" when another writer committed in between; BEGIN IMMEDIATE waits its turn
    (busy_timeout) instead, so racing requests are serialised, not refused. Views
    marked read_only (live checks on every keystroke) do not queue behind writers.
    """
    intent = getattr(_intent, "writes", None)
    if intent is not None:
        return intent
    if not has_request_context() or request.method in ("GET", "HEAD", "OPTIONS"):
        return False
    view = current_app.view_functions.get(request.endpoint or "")
    is_read_only = getattr(view, "wave_read_only", None)
    return not (is_read_only is not None and is_read_only())


def migrate_database(app: Flask, then: Callable[[], None] | None = None) -> bool:
    """Apply pending migrations, then run `then` (the first admin), under one lock.

    Any number of workers may start at once: the lock lets one migrate while the
    others wait, and they find the work done. False if the database is down (503
    until it works; the next request tries again).
    """
    with app.app_context():
        try:
            with _migration_lock():
                upgrade(directory=MIGRATIONS_DIR)
                if then is not None:
                    then()
        except sa_exc.OperationalError:
            log.warning(
                "database unavailable; migrations will be retried on the next request"
            )
            db.session.rollback()
            return False
    app.extensions["wave_migrated"] = True
    return True


_HEAD: list[str] = []


def code_revision() -> str:
    """The newest migration this code has (alembic's head), read once."""
    if not _HEAD:
        from alembic.script import ScriptDirectory

        _HEAD.append(ScriptDirectory(MIGRATIONS_DIR).get_current_head() or "")
    return _HEAD[0]


def database_revision() -> str | None:
    """The migration the database is at (alembic_version), in the current session."""
    return db.session.execute(
        sa.text("SELECT version_num FROM alembic_version")
    ).scalar()


def _is_sqlite_file(url: sa.URL) -> bool:
    """A SQLite database in a file whose folder exists (else connecting fails, and
    the lock file must not create the folder)."""
    path = url.database
    if not path or path == ":memory:" or "mode=memory" in str(url):
        return False
    return os.path.isdir(os.path.dirname(os.path.abspath(path)))


class _migration_lock:
    """Workers starting together take turns: a PostgreSQL advisory lock, or on SQLite
    a lock file next to the database file (SQLite's own lock cannot span alembic's
    transactions, and two upgrades at once fail with "database is locked")."""

    KEY = 0x57415645  # "WAVE"
    WAIT_SECONDS = 300  # a long migration of a large database, at most

    def __enter__(self):
        self.conn = None
        self.file = None
        url = db.engine.url
        if db.engine.dialect.name == "postgresql":
            self.conn = db.engine.connect()
            self.conn.execute(sa.select(sa.func.pg_advisory_lock(self.KEY)))
            self.conn.commit()
        elif _is_sqlite_file(url):
            self.file = filelock.FileLock(
                url.database + ".lock", timeout=self.WAIT_SECONDS
            )
            self.file.acquire()
        return self

    def __exit__(self, *exc):
        if self.conn is not None:
            self.conn.execute(sa.select(sa.func.pg_advisory_unlock(self.KEY)))
            self.conn.close()
        if self.file is not None:
            self.file.release()
        return False

"""Fixtures: an app on a fresh database per test; SQLite always, PostgreSQL if set up.

The PostgreSQL case uses a throwaway schema (search_path) in WAVE_TEST_DATABASE_URL,
dropped at teardown; tests never assume an empty database and never use rollback
tricks, because our code runs DDL.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from urllib.parse import quote

import jinja2
import pytest
import sqlalchemy as sa
from flask import current_app
from flask import g
from flask import has_app_context
from flask.testing import FlaskClient
from wave_web import create_app
from wave_web.config import normalise_database_url
from wave_web.extensions import db as _db
from werkzeug.security import generate_password_hash

PG_URL = os.environ.get("WAVE_TEST_DATABASE_URL")
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=[
            pytest.mark.postgresql,
            pytest.mark.skipif(not PG_URL, reason="WAVE_TEST_DATABASE_URL is not set"),
        ],
    ),
]


def postgresql_problem(url: str | None) -> str | None:
    """Why the PostgreSQL tests cannot run against `url`, or None when they can."""
    if not url:
        return "WAVE_TEST_DATABASE_URL is not set"
    engine = sa.create_engine(
        normalise_database_url(url), connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect():
            return None
    except sa.exc.DBAPIError as exc:
        first_line = str(exc.orig).strip().splitlines()[0] if exc.orig else ""
        return f"cannot connect to WAVE_TEST_DATABASE_URL ({first_line})"
    finally:
        engine.dispose()


def pytest_sessionstart(session):
    """With WAVE_REQUIRE_POSTGRESQL=1 (as in CI), fail at once instead of skipping."""
    if os.environ.get("WAVE_REQUIRE_POSTGRESQL") != "1":
        return
    problem = postgresql_problem(PG_URL)
    if problem:
        pytest.exit(
            f"WAVE_REQUIRE_POSTGRESQL=1 but {problem}: "
            "the PostgreSQL tests would be skipped.",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def _with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def database_url(request, tmp_path):
    """A URL of an empty database for one test: SQLite file or PostgreSQL schema."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'wave.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        normalise_database_url(PG_URL), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    try:
        yield _with_search_path(PG_URL, schema)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


def pytest_generate_tests(metafunc):
    """Every test that uses a database runs on both backends."""
    if (
        "database_url" in metafunc.fixturenames
        and "backend" not in metafunc.fixturenames
    ):
        metafunc.parametrize("database_url", BACKENDS, indirect=True)


# One scrypt hash for every test user: hashing per test would cost seconds in total.
TEST_PASSWORD = "test password 1234"
TEST_PASSWORD_HASH = generate_password_hash(TEST_PASSWORD)


def make_test_user(app, role: str = "admin") -> tuple[int, str]:
    """(id, session token) of a signed-in test user with `role`, made on first use."""
    from wave_web import accounts
    from wave_web.models import User

    known = app.extensions.setdefault("wave_test_users", {})
    if role not in known:
        with app.app_context():
            email = f"{role}@example.org"
            user = _db.session.query(User).filter_by(email=email).one_or_none()
            if user is None:  # a second app on the same database has it already
                user = User(email=email, password_hash=TEST_PASSWORD_HASH, role=role)
                _db.session.add(user)
                _db.session.flush()
            token = accounts.start_session(user, "127.0.0.1", "pytest")
            _db.session.commit()
            known[role] = (user.id, token)
    return known[role]


def session_for(app, role: str) -> dict:
    """The cookie session of a signed-in `role` user (Flask-Login + wave_web keys)."""
    from wave_web.access import SEEN_KEY
    from wave_web.access import SESSION_KEY

    user_id, token = make_test_user(app, role)
    return {
        "_user_id": str(user_id),
        "_fresh": True,
        SESSION_KEY: token,
        SEEN_KEY: int(time.time()),
    }


class RequestIsolatedClient(FlaskClient):
    """Each request runs in a transaction of its own, as in production.

    pytest-flask keeps an app context (and so one database session) open for the whole
    test, and requests reuse it: without this, a request would continue the test's
    transaction (an old SQLite snapshot) and leave its own open, e.g. holding SQLite's
    write lock (BEGIN IMMEDIATE on POST) while the test inspects the database.

    The client is signed in as an admin unless made with `user=None` (signed out) or
    another role: `app.test_client(user="viewer")`.
    """

    def __init__(self, *args, user: str | None = "admin", **kwargs):
        super().__init__(*args, **kwargs)
        if user is not None:
            with self.session_transaction() as session:
                session.update(session_for(self.application, user))

    def open(self, *args, **kwargs):
        self._end_shared_transaction()
        try:
            return super().open(*args, **kwargs)
        finally:
            self._end_shared_transaction()

    def _end_shared_transaction(self) -> None:
        if has_app_context() and current_app._get_current_object() is self.application:
            _db.session.rollback()
            # In production every request has its own app context, so flask.g starts
            # empty: the signed-in user (Flask-Login caches it in g) must not leak
            # from one client's request into the next.
            for name in list(vars(g)):
                delattr(g, name)


@contextlib.contextmanager
def statements(containing: str | None = None):
    """The SQL statements the app's engine runs inside the block (app context);
    with `containing`, only those whose text holds it (e.g. a table name)."""
    seen: list[str] = []

    def listen(conn, cursor, statement, *args):
        if containing is None or containing in statement:
            seen.append(statement)

    sa.event.listen(_db.engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        sa.event.remove(_db.engine, "before_cursor_execute", listen)


def make_app(database_url: str, tmp_path, with_admin: bool = True, **overrides):
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": "test-secret",
        "WTF_CSRF_ENABLED": False,
        **overrides,
    }
    app = create_app(config)
    app.jinja_env.undefined = jinja2.StrictUndefined
    app.test_client_class = RequestIsolatedClient
    if with_admin and app.extensions.get("wave_migrated"):
        # Now, not at the first client: a test may hold SQLite's write lock by then.
        make_test_user(app, "admin")
    return app


@pytest.fixture
def app(database_url, tmp_path):
    app = make_app(database_url, tmp_path)
    yield app
    with app.app_context():
        _db.session.remove()
        _db.engine.dispose()


@pytest.fixture
def csrf_app(database_url, tmp_path):
    """An app with CSRF protection on, as in production."""
    app = make_app(database_url, tmp_path, WTF_CSRF_ENABLED=True)
    yield app
    with app.app_context():
        _db.session.remove()
        _db.engine.dispose()


@pytest.fixture
def db(app):
    """The app's database session inside an application context."""
    with app.app_context():
        yield _db
        _db.session.rollback()


@pytest.fixture
def dialect(app) -> str:
    with app.app_context():
        return _db.engine.dialect.name


def close_app_with_jobs(app) -> None:
    """Tear down an app whose tests ran import jobs: none may be left running."""
    from wave_web.csv_io import jobs

    with app.app_context():
        assert jobs.wait_all(60), "an import job is stuck"
        runner = app.extensions.get("wave_import_runner")
        if runner is not None:
            runner.shutdown()
        _db.session.remove()
        _db.engine.dispose()

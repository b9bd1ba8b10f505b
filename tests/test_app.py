"""The app as a whole: configuration, migrations, error pages, lost database, CSRF."""

from __future__ import annotations

import os
import time
import uuid

import flask
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from tests.conftest import make_app
from tests.htmlparse import parse
from wave_web import config
from wave_web import create_app
from wave_web.access import requires
from wave_web.database import MIGRATIONS_DIR
from wave_web.extensions import db as _db
from wave_web.models import Tag

PG_URL = os.environ.get("WAVE_TEST_DATABASE_URL")
STATIC_TABLES = {
    "tags",
    "experiment_types",
    "experiments",
    "audit_log",
    "alembic_version",
}


@pytest.fixture
def apps():
    """Build extra apps in a test; their connections are closed at teardown."""
    built: list[flask.Flask] = []

    def build(*args, **kwargs) -> flask.Flask:
        app = make_app(*args, **kwargs)
        built.append(app)
        return app

    yield build
    for app in built:
        with app.app_context():
            _db.session.remove()
            _db.engine.dispose()


def needs_postgresql(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("needs a PostgreSQL server")


def assert_no_internals(text: str) -> None:
    for leak in ("Traceback", 'File "', "sqlalchemy", "psycopg2", "Werkzeug Debugger"):
        assert leak not in text


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@db:5432/wave", "postgresql+psycopg2://u:p@db:5432/wave"),
        (
            "postgresql://u@db/wave?sslmode=require",
            "postgresql+psycopg2://u@db/wave?sslmode=require",
        ),
        ("postgresql+psycopg2://u@db/wave", "postgresql+psycopg2://u@db/wave"),
        ("sqlite:////tmp/wave.db", "sqlite:////tmp/wave.db"),
    ],
)
def test_database_urls_are_mapped_to_psycopg2(url, expected):
    assert config.normalise_database_url(url) == expected


def test_environment_sets_only_what_is_given():
    assert config.from_environment({}) == {}
    environ = {"DATABASE_URL": "postgres://h/db", "SECRET_KEY": "s", "OTHER": "x"}
    found = config.from_environment(environ)
    assert found == {"SQLALCHEMY_DATABASE_URI": "postgres://h/db", "SECRET_KEY": "s"}


def test_plain_postgresql_url_works_with_psycopg2(app, client, database_url):
    needs_postgresql(database_url)
    assert database_url.startswith("postgresql://")
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg2://")
    with app.app_context():
        assert _db.engine.dialect.driver == "psycopg2"
    assert client.get("/").status_code == 200


def test_default_database_is_sqlite_in_the_instance_folder(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    monkeypatch.setattr(
        flask.Flask, "auto_find_instance_path", lambda self: str(instance)
    )
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    app = create_app({"TESTING": True})
    try:
        wave_db = instance / "wave.db"
        assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{wave_db}"
        assert wave_db.exists()  # created and migrated on first start
        assert (instance / "secret_key").exists()
        with app.app_context():
            assert set(sa.inspect(_db.engine).get_table_names()) >= STATIC_TABLES
    finally:
        with app.app_context():
            _db.engine.dispose()


def test_migrations_are_applied_on_first_start(app, db):
    assert set(sa.inspect(db.engine).get_table_names()) >= STATIC_TABLES
    version = db.session.scalar(sa.text("SELECT version_num FROM alembic_version"))
    head = ScriptDirectory(MIGRATIONS_DIR).get_current_head()
    assert version == head


def test_second_start_on_a_migrated_database_keeps_the_data(
    app, db, apps, database_url, tmp_path
):
    db.session.add(Tag(name="kept"))
    db.session.commit()
    again = apps(database_url, tmp_path)
    with again.app_context():
        assert _db.session.scalars(sa.select(Tag.name)).all() == ["kept"]


def test_sqlite_runs_in_wal_mode_with_foreign_keys(apps, tmp_path):
    app = apps(f"sqlite:///{tmp_path / 'wal.db'}", tmp_path)
    with app.app_context(), _db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0


# ---------------------------------------------------------------------------
# Error pages
# ---------------------------------------------------------------------------


def test_unknown_url_gives_the_404_page_in_the_layout(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    page = parse(response.data)
    assert page.find("nav", class_="navbar") is not None
    assert page.find("h1").text == "Not found"
    assert_no_internals(response.get_data(as_text=True))


def test_wrong_method_gives_the_405_page(client):
    response = client.delete("/tags/")
    assert response.status_code == 405
    assert parse(response.data).find("h1").text == "Method not allowed"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_htmx_request_gets_an_error_fragment(client):
    response = client.get("/no/such/page", headers={"HX-Request": "true"})
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "<html" not in html
    assert "<nav" not in html
    assert parse(html).find("div", role="alert").find("strong").text == "Not found."


def test_missing_api_address_answers_json(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json() == {"detail": "Not Found"}  # api-v1.md §1.6


def test_unexpected_exception_gives_the_500_page_without_details(app, client):
    @app.get("/boom")
    @requires("viewer")
    def boom():
        raise RuntimeError("secret internal detail 1234")

    response = client.get("/boom")
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "secret internal detail" not in text
    assert "RuntimeError" not in text
    assert_no_internals(text)
    page = parse(text)
    assert page.find("h1").text == "Something went wrong"
    assert page.find("nav", class_="navbar") is not None
    assert client.get("/").status_code == 200  # the app carries on


def test_unexpected_database_error_gives_500_without_sql(app, client):
    @app.get("/bad-sql")
    @requires("viewer")
    def bad_sql():
        _db.session.execute(sa.text("SELECT * FROM no_such_table_xyz"))

    response = client.get("/bad-sql")
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "no_such_table_xyz" not in text
    assert_no_internals(text)
    assert client.get("/tags/").status_code == 200  # the session was rolled back


def test_request_over_the_size_limit_gets_the_friendly_413_page(
    apps, database_url, tmp_path
):
    app = apps(database_url, tmp_path, MAX_CONTENT_LENGTH=1024)
    client = app.test_client()
    response = client.post("/tags/", data={"name": "x", "description": "y" * 5000})
    assert response.status_code == 413
    page = parse(response.data)
    assert page.find("h1").text == "Upload too large"
    assert page.find("nav", class_="navbar") is not None
    with app.app_context():
        assert _db.session.scalar(sa.select(sa.func.count()).select_from(Tag)) == 0


# ---------------------------------------------------------------------------
# Database loss
# ---------------------------------------------------------------------------


def test_unreachable_database_gives_503_quickly(apps, tmp_path):
    started = time.monotonic()
    app = apps(
        "postgresql://postgres@127.0.0.1:1/test", tmp_path, WAVE_AUTO_MIGRATE=True
    )
    response = app.test_client(user=None).get("/")  # signing in needs the database
    assert time.monotonic() - started < 10
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    page = parse(response.data)
    assert page.find("h1").text == "Database unavailable"
    assert_no_internals(response.get_data(as_text=True))


def test_app_recovers_after_its_connections_are_killed(apps, database_url, tmp_path):
    needs_postgresql(database_url)
    name = f"wave_test_{uuid.uuid4().hex[:12]}"
    app = apps(f"{database_url}&application_name={name}", tmp_path)
    client = app.test_client()
    assert client.post("/tags/", data={"name": "before"}).status_code == 303
    admin = sa.create_engine(config.normalise_database_url(PG_URL))
    try:
        with admin.connect() as conn:
            killed = (
                conn.execute(
                    sa.select(sa.func.pg_terminate_backend(sa.column("pid")))
                    .select_from(sa.table("pg_stat_activity"))
                    .where(sa.column("application_name") == name)
                )
                .scalars()
                .all()
            )
    finally:
        admin.dispose()
    assert killed and all(killed)
    assert client.get("/tags/").status_code == 200
    assert client.post("/tags/", data={"name": "after"}).status_code == 303
    with app.app_context():
        assert sorted(_db.session.scalars(sa.select(Tag.name))) == ["after", "before"]


# ---------------------------------------------------------------------------
# CSRF
# ---------------------------------------------------------------------------


def test_post_without_csrf_token_is_refused(apps, database_url, tmp_path):
    app = apps(database_url, tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    response = client.post("/tags/", data={"name": "pilot"})
    assert response.status_code == 400
    assert parse(response.data).find("h1").text == "Bad request"
    with app.app_context():
        assert _db.session.scalar(sa.select(sa.func.count()).select_from(Tag)) == 0


def test_post_with_the_form_token_succeeds(apps, database_url, tmp_path):
    app = apps(database_url, tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    form = parse(client.get("/tags/").data).find("main").find("form", method="post")
    token = form.find("input", name="csrf_token").attrs["value"]
    response = client.post("/tags/", data={"name": "pilot", "csrf_token": token})
    assert response.status_code == 303
    with app.app_context():
        assert _db.session.scalars(sa.select(Tag.name)).all() == ["pilot"]


def test_htmx_post_with_the_token_in_a_header_succeeds(apps, database_url, tmp_path):
    app = apps(database_url, tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    body = parse(client.get("/tags/").data).find("body")
    token = body.attrs["hx-headers"].split('"')[3]
    response = client.post(
        "/tags/",
        data={"name": "pilot"},
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/tags/"

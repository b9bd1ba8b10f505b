"""WAVE_PAGE_QUERY_SECONDS: a page's runaway statement is stopped (PostgreSQL).

Pages (GET) run their statements under `statement_timeout`; writes and the views
marked unhurried (whole exports) do not. A stopped page answers 503 with a message
that says so, never driver text; the next request works.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.conftest import make_app
from wave_web import database
from wave_web.access import requires
from wave_web.extensions import db


@pytest.fixture
def slow_app(database_url, tmp_path):
    app = make_app(database_url, tmp_path, WAVE_PAGE_QUERY_SECONDS=1)
    sleep = (
        "SELECT pg_sleep(1.5)"
        if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
        else "SELECT 1"
    )

    @app.get("/slow-page")
    @requires("viewer")
    def slow_page():
        db.session.execute(sa.text(sleep))
        return "done"

    @app.post("/slow-write")
    @requires("viewer")
    def slow_write():
        db.session.execute(sa.text(sleep))
        return "done"

    @app.get("/slow-export")
    @requires("viewer")
    @database.unhurried
    def slow_export():
        db.session.execute(sa.text(sleep))
        return "done"

    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _dialect(app) -> str:
    return app.config["SQLALCHEMY_DATABASE_URI"].split(":")[0].split("+")[0]


def test_a_page_statement_over_the_limit_is_stopped_with_a_clear_503(slow_app):
    dialect = _dialect(slow_app)
    client = slow_app.test_client()
    response = client.get("/slow-page")
    if dialect != "postgresql":
        assert response.status_code == 200  # SQLite: no server to stop it
        return
    assert response.status_code == 503
    text = response.get_data(as_text=True)
    assert "took longer than 1 seconds to prepare and was stopped" in text
    assert "statement timeout" not in text and "canceling" not in text
    assert client.get("/tags/").status_code == 200  # the connection carries on


def test_writes_and_unhurried_pages_have_no_time_limit(slow_app):
    client = slow_app.test_client()
    assert client.post("/slow-write").text == "done"
    assert client.get("/slow-export").text == "done"


def test_the_limit_is_local_to_the_page_transaction(slow_app):
    if _dialect(slow_app) != "postgresql":
        pytest.skip("statement_timeout is PostgreSQL's")
    client = slow_app.test_client()
    assert client.get("/slow-page").status_code == 503
    with slow_app.app_context():  # a job's transaction on a pooled connection
        assert db.session.execute(sa.text("SHOW statement_timeout")).scalar() == "0"
        db.session.execute(sa.text("SELECT pg_sleep(1.2)"))


def test_export_downloads_are_unhurried(app):
    unhurried = {
        e
        for e, view in app.view_functions.items()
        if getattr(view, "wave_unhurried", 0)
    }
    assert unhurried == {
        f"data.{scope}_{kind}"
        for scope in ("experiment", "type")
        for kind in ("download", "csv", "zip", "xlsx")
    }

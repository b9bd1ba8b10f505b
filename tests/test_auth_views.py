"""Signing in and out: first-admin set-up, sessions, rate limits, safe redirects."""

from __future__ import annotations

import pytest
from tests.conftest import TEST_PASSWORD
from tests.conftest import make_app
from tests.conftest import make_test_user
from wave_web.extensions import db as _db
from wave_web.models import AuditEntry
from wave_web.models import User

NEW_PASSWORD = "a brand new password"


def sign_in(client, email="admin@example.org", password=TEST_PASSWORD, **extra):
    return client.post("/login", data={"email": email, "password": password, **extra})


def audit_actions(app) -> list[str]:
    with app.app_context():
        return [e.action for e in _db.session.query(AuditEntry).order_by(AuditEntry.id)]


@pytest.fixture
def empty_app(database_url, tmp_path):
    """An app without any user yet."""
    app = make_app(database_url, tmp_path, with_admin=False)
    yield app
    with app.app_context():
        _db.session.remove()
        _db.engine.dispose()


def test_first_visit_without_users_goes_to_setup(empty_app):
    client = empty_app.test_client(user=None)
    response = client.get("/experiments/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/setup")
    assert client.get("/login").headers["Location"].endswith("/setup")


def test_setup_creates_the_first_admin_and_then_disappears(empty_app):
    client = empty_app.test_client(user=None)
    response = client.post(
        "/setup",
        data={
            "email": "boss@example.org",
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302
    assert client.get("/experiments/").status_code == 200
    with empty_app.app_context():
        assert _db.session.query(User).one().role == "admin"
    assert empty_app.test_client(user=None).get("/setup").status_code == 404


def test_setup_refuses_a_short_password_at_its_field(empty_app):
    client = empty_app.test_client(user=None)
    response = client.post(
        "/setup",
        data={"email": "boss@example.org", "password": "short", "confirm": "short"},
    )
    assert response.status_code == 422
    assert b"at least 12 characters" in response.data
    with empty_app.app_context():
        assert _db.session.query(User).count() == 0


def test_signed_out_visitor_is_sent_to_sign_in_with_next(app):
    make_test_user(app)
    response = app.test_client(user=None).get("/tags/?q=x")
    assert response.status_code == 302
    assert "/login?next=" in response.headers["Location"]


def test_sign_in_redirects_to_a_local_next_only(app):
    make_test_user(app)
    client = app.test_client(user=None)
    response = sign_in(client, next="/tags/")
    assert response.headers["Location"] == "/tags/"
    for evil in (
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "tags",
    ):
        client = app.test_client(user=None)
        response = sign_in(client, next=evil)
        assert response.headers["Location"] == "/", evil


def test_wrong_password_is_refused_and_audited(app):
    make_test_user(app)
    client = app.test_client(user=None)
    response = sign_in(client, password="not the password")
    assert response.status_code == 401
    assert b"not correct" in response.data
    assert client.get("/tags/").status_code == 302
    assert "login.failed" in audit_actions(app)


def test_sign_in_gives_a_new_session_and_logout_ends_it_on_the_server(app):
    make_test_user(app)
    client = app.test_client(user=None)
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    sign_in(client)
    with client.session_transaction() as session:
        assert "planted" not in session
        stolen = dict(session)
    assert client.get("/tags/").status_code == 200
    client.post("/logout")
    assert client.get("/tags/").status_code == 302
    replay = app.test_client(user=None)
    with replay.session_transaction() as session:
        session.update(stolen)
    assert replay.get("/tags/").status_code == 302
    assert audit_actions(app)[-2:] == ["login", "logout"]


def test_password_change_ends_other_sessions(app):
    make_test_user(app)
    first, second = app.test_client(user=None), app.test_client(user=None)
    sign_in(first)
    sign_in(second)
    response = first.post(
        "/account/password",
        data={
            "current": TEST_PASSWORD,
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302
    assert first.get("/tags/").status_code == 200
    assert second.get("/tags/").status_code == 302


def test_sign_in_is_rate_limited_per_account(app):
    make_test_user(app)
    app.config["WAVE_LOGIN_LIMIT"] = "3 per minute"
    client = app.test_client(user=None)
    codes = [sign_in(client, password="wrong password 1").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    # the right password is refused too while the account is limited
    assert sign_in(app.test_client(user=None)).status_code == 429


def test_idle_session_is_signed_out(app):
    client = app.test_client()
    assert client.get("/tags/").status_code == 200
    with client.session_transaction() as session:
        session["wave_seen"] -= app.config["WAVE_SESSION_IDLE_MINUTES"] * 60 + 1
    assert client.get("/tags/").status_code == 302


def test_one_time_password_must_be_changed_first(app):
    client = app.test_client()
    client.post(
        "/admin/users/new",
        data={"email": "new@example.org", "role": "viewer", "password": NEW_PASSWORD},
    )
    newcomer = app.test_client(user=None)
    sign_in(newcomer, "new@example.org", NEW_PASSWORD)
    response = newcomer.get("/tags/")
    assert response.headers["Location"].endswith("/account/password")

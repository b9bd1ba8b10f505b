"""Administration pages: users, API keys and the audit log."""

from __future__ import annotations

import datetime as dt
import re

from tests.conftest import make_test_user
from tests.htmlparse import parse
from wave_web import accounts
from wave_web.extensions import db as _db
from wave_web.models import ApiKey
from wave_web.models import AuditEntry
from wave_web.models import User

PASSWORD = "a good long password"


def test_admin_adds_a_user_and_sees_the_one_time_password_once(app):
    client = app.test_client()
    response = client.post(
        "/admin/users/new", data={"email": "ada@example.org", "role": "researcher"}
    )
    assert response.status_code == 200
    secret = parse(response.data).find("input", id="secret").attrs["value"]
    assert len(secret) >= 12
    with app.app_context():
        user = _db.session.query(User).filter_by(email="ada@example.org").one()
        assert user.must_change_password
        assert secret not in user.password_hash
    listing = client.get("/admin/users").data.decode()
    assert "ada@example.org" in listing
    assert secret not in listing


def test_duplicate_user_is_refused_at_the_email_field(app):
    client = app.test_client()
    data = {"email": "ada@example.org", "role": "viewer", "password": PASSWORD}
    client.post("/admin/users/new", data=data)
    response = client.post(
        "/admin/users/new", data={**data, "email": "ADA@example.org"}
    )
    assert response.status_code == 409 or response.status_code == 422
    assert b"already has an account" in response.data


def test_role_change_disable_and_delete(app):
    client = app.test_client()
    user_id, _ = make_test_user(app, "viewer")
    client.post(
        f"/admin/users/{user_id}", data={"action": "role", "role": "researcher"}
    )
    client.post(f"/admin/users/{user_id}", data={"action": "disable"})
    with app.app_context():
        user = _db.session.get(User, user_id)
        assert (user.role, user.is_disabled) == ("researcher", True)
    viewer = app.test_client(user="viewer")
    assert viewer.get("/tags/").status_code == 302  # disabled: signed out
    assert client.get(f"/admin/users/{user_id}/delete").status_code == 200
    assert client.post(f"/admin/users/{user_id}/delete").status_code == 302
    with app.app_context():
        assert _db.session.get(User, user_id) is None


def test_admin_cannot_delete_or_demote_the_last_admin(app):
    client = app.test_client()
    admin_id, _ = make_test_user(app, "admin")
    response = client.post(
        f"/admin/users/{admin_id}", data={"action": "role", "role": "viewer"}
    )
    assert response.status_code == 409
    assert b"last active admin" in response.data


def test_unknown_user_and_key_ids_are_404(app):
    client = app.test_client()
    assert client.get("/admin/users/99999").status_code == 404
    assert client.get("/admin/keys/99999/revoke").status_code == 404


def test_key_is_created_shown_once_listed_by_prefix_and_revoked(app):
    client = app.test_client()
    response = client.post(
        "/admin/keys/new", data={"label": "Stroop online", "role": "experimentee"}
    )
    secret = parse(response.data).find("input", id="secret").attrs["value"]
    prefix = re.match(r"wave_([0-9a-f]{8})_", secret).group(1)
    listing = client.get("/admin/keys").data.decode()
    assert f"wave_{prefix}_" in listing
    assert secret not in listing
    with app.app_context():
        key = _db.session.query(ApiKey).one()
        assert accounts.key_for_secret(secret).id == key.id
    client.post(f"/admin/keys/{key.id}/revoke")
    with app.app_context():
        assert accounts.key_for_secret(secret) is None


def key_row(client, label: str) -> list[str]:
    page = parse(client.get("/admin/keys").data)
    for row in page.find_all("tr"):
        cells = [" ".join(td.text.split()) for td in row.find_all("td")]
        if label in cells:
            return cells
    raise AssertionError(f"no key {label!r} listed")


def test_key_expiry_is_listed_as_the_day_chosen_and_stored_as_its_end(app):
    client = app.test_client()
    form = client.get("/admin/keys/new").data.decode()
    assert "The key stops working at the end of this day (UTC)." in form
    client.post(
        "/admin/keys/new",
        data={"label": "until June", "role": "researcher", "expires": "2099-06-30"},
    )
    with app.app_context():
        key = _db.session.query(ApiKey).one()
        stored = key.expires_at.astimezone(dt.UTC)
        assert stored == dt.datetime(2099, 7, 1, tzinfo=dt.UTC)
        assert accounts.key_last_day(key.expires_at) == dt.date(2099, 6, 30)
    cells = key_row(client, "until June")
    assert "until 30 Jun 2099 (end of day, UTC)" in cells
    assert "live" in cells

    with app.app_context():  # the day has passed
        key = _db.session.query(ApiKey).one()
        key.expires_at = accounts.key_expiry(dt.date(2001, 1, 31))
        _db.session.commit()
    cells = key_row(client, "until June")
    assert "until 31 Jan 2001 (end of day, UTC)" in cells
    assert "expired" in cells and "live" not in cells


def test_key_expiry_set_to_another_instant_is_listed_to_the_second(app):
    with app.app_context():
        instant = dt.datetime(2099, 6, 30, 12, 30, tzinfo=dt.UTC)
        accounts.create_key("noon", "researcher", instant)
        _db.session.commit()
    cells = key_row(app.test_client(), "noon")
    assert "until 2099-06-30 12:30:00 UTC" in cells


def test_key_with_a_past_expiry_is_refused_at_the_field(app):
    response = app.test_client().post(
        "/admin/keys/new",
        data={"label": "old", "role": "researcher", "expires": "2001-01-01"},
    )
    assert response.status_code == 422
    assert b"must be in the future" in response.data


def test_audit_log_filters_pages_and_exports(app):
    client = app.test_client()
    client.post("/tags/", data={"name": "pilot"})
    client.post("/tags/", data={"name": "lab-b"})
    page = client.get("/admin/audit?action=tag").data.decode()
    assert "pilot" in page and "lab-b" in page
    assert "admin@example.org" in page
    only = client.get("/admin/audit?action=tag&object_id=1").data.decode()
    assert "lab-b" not in only or "pilot" not in only
    csv_text = client.get("/admin/audit.csv?action=tag").data.decode()
    assert csv_text.splitlines()[0].startswith("id,created_at,actor")
    assert len(csv_text.strip().splitlines()) == 3


def test_audit_log_bad_date_is_a_400_with_a_message(app):
    response = app.test_client().get("/admin/audit?since=yesterday")
    assert response.status_code == 400
    assert b"is not a date like" in response.data


def test_audit_entries_name_who_and_from_where(app):
    app.test_client().post("/tags/", data={"name": "pilot"})
    with app.app_context():
        entry = _db.session.query(AuditEntry).filter_by(action="tag.create").one()
        assert entry.actor == "admin@example.org"
        assert entry.remote_addr == "127.0.0.1"


def test_admin_cannot_disable_their_own_account(app):
    admin_id, _ = make_test_user(app, "admin")
    make_test_user(app, "viewer")
    client = app.test_client()
    page = client.get(f"/admin/users/{admin_id}").get_data(as_text=True)
    assert 'value="disable"' not in page
    response = client.post(f"/admin/users/{admin_id}", data={"action": "disable"})
    assert response.status_code == 400
    assert b"cannot disable your own account" in response.data


def test_sign_in_is_audited_with_the_user_as_actor(app):
    from tests.conftest import TEST_PASSWORD

    make_test_user(app)
    app.test_client(user=None).post(
        "/login", data={"email": "admin@example.org", "password": TEST_PASSWORD}
    )
    with app.app_context():
        entry = _db.session.query(AuditEntry).filter_by(action="login").one()
        assert entry.actor == "admin@example.org"

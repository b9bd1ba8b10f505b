"""API keys on requests (api-v1.md §2): texts, roles, check order, last use, audit."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from tests.api_helpers import Api
from tests.api_helpers import bearer
from tests.api_helpers import call
from tests.api_helpers import detail
from tests.api_helpers import mint_key
from wave_web import accounts
from wave_web.extensions import db as _db
from wave_web.models import ApiKey
from wave_web.models import AuditEntry

NOT_AUTHENTICATED = "Not authenticated"
INVALID = "Authentication failed: Invalid API key or insufficient permissions"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def api(app, client):
    return Api(app, client)


def assert_401(response, text: str) -> None:
    assert detail(response, 401) == text
    assert response.headers["WWW-Authenticate"] == "Bearer"


def key_row(app, secret: str) -> ApiKey:
    prefix = secret.split("_")[1]
    with app.app_context():
        key = _db.session.scalar(sa.select(ApiKey).where(ApiKey.prefix == prefix))
        _db.session.expunge(key)
        return key


# ----------------------------------------------------------------------
# §2.4 texts
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token wave_abc", ""],
    ids=["no-header", "basic", "bearer-only", "bearer-blank", "other-scheme", "empty"],
)
def test_missing_or_other_credentials_are_401_not_authenticated(client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/api/v1/tags/", headers=headers)
    assert_401(response, NOT_AUTHENTICATED)


@pytest.mark.parametrize(
    "token",
    ["wave_00000000_" + "x" * 43, "not-a-wave-key", "wave_", "x" * 500],
    ids=["unknown", "malformed", "prefix-only", "very-long"],
)
def test_unknown_or_malformed_key_is_401_invalid(client, token):
    response = client.get("/api/v1/tags/", headers=bearer(token))
    assert_401(response, INVALID)


def test_revoked_key_is_401_invalid(app, api):
    secret = api.key("admin")
    assert api.get("tags/", key=secret).status_code == 200
    with app.app_context():
        key = _db.session.scalar(
            sa.select(ApiKey).where(ApiKey.prefix == secret.split("_")[1])
        )
        accounts.revoke_key(key)
        _db.session.commit()
    assert_401(api.get("tags/", key=secret), INVALID)


def test_expired_key_is_401_invalid(app, api):
    secret = mint_key(
        app, "admin", expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    )
    assert api.get("tags/", key=secret).status_code == 200
    with app.app_context():
        _db.session.execute(
            sa.update(ApiKey)
            .where(ApiKey.prefix == secret.split("_")[1])
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
        _db.session.commit()
    assert_401(api.get("tags/", key=secret), INVALID)


def test_key_without_a_usable_role_is_403(app, api):
    secret = api.key("researcher")
    with app.app_context():
        _db.session.execute(
            sa.update(ApiKey)
            .where(ApiKey.prefix == secret.split("_")[1])
            .values(role="visitor")
        )
        _db.session.commit()
    response = api.get("tags/", key=secret)
    assert detail(response, 403) == "Authorization failed: No role assigned to API key"


@pytest.mark.parametrize(
    ("role", "method", "path", "required"),
    [
        ("experimentee", "GET", "tags/", "researcher"),
        ("experimentee", "POST", "experiment-types/", "researcher"),
        ("experimentee", "GET", f"experiment-data/{ZERO_UUID}/data/", "researcher"),
        ("researcher", "DELETE", "tags/1", "admin"),
        ("researcher", "DELETE", f"experiment-data/{ZERO_UUID}/data/row/1", "admin"),
    ],
)
def test_role_below_the_route_minimum_is_403_naming_both_roles(
    api, role, method, path, required
):
    response = api.call(method, path, role=role)
    assert detail(response, 403) == (
        "Authorization failed: Insufficient permissions. "
        f"Required: {required}, Found: {role}"
    )


@pytest.mark.parametrize("role", ["experimentee", "researcher", "admin", "test"])
def test_every_role_may_post_a_row(api, role):
    response = api.post(
        f"experiment-data/{ZERO_UUID}/data/",
        {"participant_id": "P1", "data": {}},
        role=role,
    )
    assert detail(response, 404) == "Experiment not found"


@pytest.mark.parametrize("role", ["admin", "test"])
def test_admin_and_test_keys_may_delete(api, role):
    assert detail(api.delete("tags/1", role=role), 404) == "Tag not found"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_scheme_word_is_case_insensitive(api, scheme):
    secret = api.key("researcher")
    response = api.client.get(
        "/api/v1/tags/", headers={"Authorization": f"{scheme} {secret}"}
    )
    assert response.status_code == 200


def test_key_in_query_string_is_not_accepted(api):
    secret = api.key("researcher")
    response = api.client.get(f"/api/v1/tags/?key={secret}&api_key={secret}")
    assert_401(response, NOT_AUTHENTICATED)


# ----------------------------------------------------------------------
# Order of checks (§1.7)
# ----------------------------------------------------------------------


def test_unauthenticated_request_with_a_broken_body_is_401_not_422(client):
    response = call(client, "POST", "tags/", None, b"{not json")
    assert_401(response, NOT_AUTHENTICATED)
    response = call(client, "GET", "experiments/not-a-uuid", None)
    assert_401(response, NOT_AUTHENTICATED)


def test_experimentee_with_a_broken_body_on_a_researcher_route_is_403_not_422(api):
    response = api.post("tags/", {"name": 5}, role="experimentee")
    assert response.status_code == 403
    response = api.get("experiment-types/?limit=0", role="experimentee")
    assert response.status_code == 403


def test_unknown_route_and_wrong_method_need_no_key(client):
    assert detail(client.get("/api/v1/nothing"), 404) == "Not Found"
    assert detail(client.put("/api/v1/tags/"), 405) == "Method Not Allowed"


# ----------------------------------------------------------------------
# Keys only: no cookie, no CSRF
# ----------------------------------------------------------------------


def test_session_cookie_of_a_signed_in_web_user_is_not_accepted(client):
    # the test client is signed in as an admin of the web UI
    assert client.get("/types/").status_code == 200
    response = client.get("/api/v1/experiment-types/")
    assert_401(response, NOT_AUTHENTICATED)
    response = call(client, "POST", "tags/", None, {"name": "cookie"})
    assert_401(response, NOT_AUTHENTICATED)


def test_api_post_needs_no_csrf_token(csrf_app):
    client = csrf_app.test_client()
    secret = mint_key(csrf_app, "researcher")
    response = call(client, "POST", "tags/", secret, {"name": "no token needed"})
    assert response.status_code == 200
    assert response.get_json()["name"] == "no token needed"
    # while the web form without a token is refused
    assert client.post("/tags/", data={"name": "form"}).status_code == 400


# ----------------------------------------------------------------------
# Last use of a key
# ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def last_used(app, secret: str) -> dt.datetime | None:
    value = key_row(app, secret).last_used_at
    return value.astimezone(dt.UTC) if value is not None else None


def test_a_read_records_the_keys_last_use_at_most_once_a_second(app, api, monkeypatch):
    clock = Clock()
    monkeypatch.setattr("wave_web.api.keys.utcnow", clock)
    secret = api.key("researcher")
    assert last_used(app, secret) is None
    assert api.get("tags/", key=secret).status_code == 200
    assert last_used(app, secret) == clock.now
    first = clock.now
    clock.advance(0.5)
    assert api.get("tags/", key=secret).status_code == 200
    assert last_used(app, secret) == first  # not written again within the second
    clock.advance(0.6)
    assert api.get("tags/", key=secret).status_code == 200
    assert last_used(app, secret) == clock.now


def test_a_write_records_the_keys_last_use(app, api, monkeypatch):
    clock = Clock()
    monkeypatch.setattr("wave_web.api.keys.utcnow", clock)
    secret = api.key("researcher")
    assert api.post("tags/", {"name": "a"}, key=secret).status_code == 200
    assert last_used(app, secret) == clock.now
    clock.advance(5)
    assert api.post("tags/", {"name": "b"}, key=secret).status_code == 200
    assert last_used(app, secret) == clock.now


def test_a_refused_request_still_records_the_keys_use(app, api):
    secret = api.key("researcher")
    assert api.get("tags/99", key=secret).status_code == 404
    assert last_used(app, secret) is not None


# ----------------------------------------------------------------------
# Audit log
# ----------------------------------------------------------------------


def audit_actors(app, since: int) -> list[tuple[str, str | None]]:
    with app.app_context():
        rows = _db.session.execute(
            sa.select(AuditEntry.action, AuditEntry.actor)
            .where(AuditEntry.id > since)
            .order_by(AuditEntry.id)
        ).all()
        return [tuple(r) for r in rows]


def last_audit_id(app) -> int:
    with app.app_context():
        return _db.session.scalar(sa.select(sa.func.max(AuditEntry.id))) or 0


def test_every_api_write_is_audited_with_the_keys_prefix(app, api):
    secret = api.key("admin")
    prefix = secret.split("_")[1]
    mark = last_audit_id(app)
    writes = []

    def write(method, path, body=None, status=200):
        nonlocal mark
        kwargs = {} if body is None else {"body": body}
        response = api.call(method, path, key=secret, **kwargs)
        assert response.status_code == status, response.get_data(as_text=True)
        entries = audit_actors(app, mark)
        assert entries, f"{method} {path} left no audit entry"
        for action, actor in entries:
            assert actor == f"API key {prefix} “admin key” (admin)", action
        writes.append((method, path))
        mark = last_audit_id(app)
        return response.get_json()

    xtype = write("POST", "experiment-types/", {"name": "T", "table_name": "t_data"})
    type_path = f"experiment-types/{xtype['id']}"
    write("PUT", type_path, {"schema_definition": {"score": "INTEGER"}})
    tag = write("POST", "tags/", {"name": "cog"})
    write("PUT", f"tags/{tag['id']}", {"name": "cognition"})
    experiment = write(
        "POST",
        "experiments/",
        {"experiment_type_id": xtype["id"], "description": "d", "tags": ["cognition"]},
    )
    e_path = f"experiments/{experiment['uuid']}"
    write("PUT", e_path, {"description": "changed"})
    data = f"experiment-data/{experiment['uuid']}/data"
    row = write("POST", f"{data}/", {"participant_id": "P1", "data": {}}, 201)
    write(
        "POST",
        f"{data}/batch",
        {"rows": [{"participant_id": "P2", "data": {"score": 1}}]},
        201,
    )
    write("PUT", f"{data}/row/{row['id']}", {"data": {"score": 3}})
    write("DELETE", f"{data}/row/{row['id']}")
    write("DELETE", f"tags/{tag['id']}")
    write("DELETE", e_path)
    write("DELETE", type_path)
    assert len(writes) == 13


def test_a_refused_write_leaves_no_audit_entry(app, api):
    api.key()
    mark = last_audit_id(app)
    response = api.post("experiment-types/", {"name": "T", "table_name": "tags"})
    assert response.status_code == 400
    assert api.post("tags/", {"name": 1}).status_code == 422
    assert audit_actors(app, mark) == []

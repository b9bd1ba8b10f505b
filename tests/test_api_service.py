"""Service endpoints (/, /health, /version), headers and CORS (api-v1.md §1, §3)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.api_helpers import Api
from tests.api_helpers import call
from tests.conftest import make_app
from wave_web.extensions import db as _db

ALLOWED = "http://localhost:5173"
RULE = "Semantic versioning: same major version = compatible"
EXPOSE = "X-WAVE-API-Version"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
def api(app, client):
    return Api(app, client)


@pytest.fixture
def apps():
    """Extra apps made in a test; their connections are closed at teardown."""
    built = []

    def build(*args, **kwargs):
        app = make_app(*args, **kwargs)
        built.append(app)
        return app

    yield build
    for app in built:
        with app.app_context():
            _db.session.remove()
            _db.engine.dispose()


def assert_version_headers(response) -> None:
    assert response.headers["X-WAVE-API-Version"] == "1.0.0"
    exposed = response.headers["Access-Control-Expose-Headers"].split(",")
    assert EXPOSE in [h.strip() for h in exposed]


# ----------------------------------------------------------------------
# GET /
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Accept": "*/*"},
        {"Accept": "application/json"},
        {"Content-Type": "application/json"},
        {"Accept": BROWSER_ACCEPT, "Authorization": "Bearer anything"},
    ],
    ids=["curl", "accept-json", "json-content-type", "with-key"],
)
def test_root_greets_programs_with_json(client, headers):
    response = client.get("/", headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {
        "message": "Welcome to the WAVE Backend API",
        "version": "1.0.0",
    }
    assert_version_headers(response)


def test_root_from_a_browser_is_still_the_web_page(client):
    response = client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b"<html" in response.data
    assert_version_headers(response)


# ----------------------------------------------------------------------
# GET /health
# ----------------------------------------------------------------------


def test_health_is_healthy_without_a_key(client):
    response = client.get("/health", headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "healthy", "service": "wave-backend"}
    assert_version_headers(response)


@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres@127.0.0.1:1/test", "sqlite:///{missing}/dir/wave.db"],
    ids=["postgresql", "sqlite"],
)
def test_health_is_503_unhealthy_when_the_database_is_unreachable(apps, tmp_path, url):
    app = apps(url.format(missing=tmp_path / "missing"), tmp_path)
    response = app.test_client(user=None).get("/health")
    assert response.status_code == 503
    assert response.mimetype == "application/json"
    assert response.get_json() == {
        "status": "unhealthy",
        "service": "wave-backend",
        "detail": "database unreachable",
    }
    assert_version_headers(response)


def test_health_is_503_unhealthy_when_migrations_are_not_applied(
    apps, database_url, tmp_path
):
    app = apps(database_url, tmp_path, WAVE_AUTO_MIGRATE=False)
    response = app.test_client(user=None).get("/health")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "unhealthy",
        "service": "wave-backend",
        "detail": "database migrations not applied",
    }


def test_health_is_503_when_the_database_is_at_another_migration(
    apps, database_url, tmp_path
):
    """A newer release migrated the database: this server's code is out of date."""
    from wave_web import database

    app = apps(database_url, tmp_path)
    with app.app_context():
        head = database.code_revision()
        _db.session.execute(
            sa.text("UPDATE alembic_version SET version_num = :v"), {"v": "newer1"}
        )
        _db.session.commit()
    try:
        response = app.test_client(user=None).get("/health")
        assert response.status_code == 503
        assert response.get_json()["detail"] == (
            "database migrations not current: the database is at newer1, "
            f"this server's code at {head}"
        )
    finally:
        with app.app_context():
            _db.session.execute(
                sa.text("UPDATE alembic_version SET version_num = :v"), {"v": head}
            )
            _db.session.commit()
    assert app.test_client(user=None).get("/health").status_code == 200


def test_api_routes_answer_503_json_when_the_database_is_unreachable(apps, tmp_path):
    app = apps(f"sqlite:///{tmp_path / 'missing'}/dir/wave.db", tmp_path)
    response = call(app.test_client(user=None), "GET", "tags/", "wave_x")
    assert response.status_code == 503
    assert response.get_json() == {
        "detail": "Database unavailable, please retry shortly"
    }
    assert response.headers["Retry-After"]
    assert_version_headers(response)


# ----------------------------------------------------------------------
# GET /version
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (
            None,
            {
                "api_version": "1.0.0",
                "client_version": None,
                "compatibility_rule": RULE,
                "compatible": None,
                "warning": "No client version provided",
            },
        ),
        (
            "1.0.0",
            {
                "api_version": "1.0.0",
                "client_version": "1.0.0",
                "compatibility_rule": RULE,
                "compatible": True,
            },
        ),
        (
            "v1.2.3-beta+x",
            {
                "api_version": "1.0.0",
                "client_version": "v1.2.3-beta+x",
                "compatibility_rule": RULE,
                "compatible": True,
            },
        ),
        (
            "2.3.0",
            {
                "api_version": "1.0.0",
                "client_version": "2.3.0",
                "compatibility_rule": RULE,
                "compatible": False,
                "warning": "Major version mismatch: Client v2.3.0 may not be "
                "compatible with API v1.0.0. Consider upgrading your client library.",
            },
        ),
        (
            "junk",
            {
                "api_version": "1.0.0",
                "client_version": "junk",
                "compatibility_rule": RULE,
                "compatible": False,
                "warning": "Invalid version format detected: Client vjunk, API "
                "v1.0.0. Please check your client library version.",
            },
        ),
    ],
    ids=["absent", "same-major", "same-major-v-prefix", "other-major", "not-a-version"],
)
def test_version_reports_compatibility_of_the_client_version(client, sent, expected):
    headers = {} if sent is None else {"X-WAVE-Client-Version": sent}
    response = client.get("/version", headers=headers)
    assert response.status_code == 200
    assert response.get_json() == expected
    assert_version_headers(response)


# ----------------------------------------------------------------------
# Headers on every response
# ----------------------------------------------------------------------


def _failing_view(*_args, **_kwargs):
    raise RuntimeError("SELECT secret FROM internals")


@pytest.mark.parametrize(
    ("method", "path", "with_key", "status"),
    [
        ("GET", "/health", False, 200),
        ("GET", "/api/v1/tags/", True, 200),
        ("GET", "/api/v1/tags/", False, 401),
        ("GET", "/api/v1/tags/7", True, 404),
        ("GET", "/api/v1/no-such-route", False, 404),
        ("PATCH", "/api/v1/tags/", True, 405),
        ("GET", "/api/v1/tags/?limit=0", True, 422),
        ("GET", "/api/v1/tags/1", True, 500),
    ],
    ids=["health", "success", "401", "404", "unknown-route", "405", "422", "500"],
)
def test_every_api_answer_carries_the_version_headers(
    api, monkeypatch, method, path, with_key, status
):
    if status == 500:
        monkeypatch.setattr("wave_web.api.tags.find", _failing_view)
    key = api.key("researcher") if with_key else None
    response = call(api.client, method, path, key)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert_version_headers(response)
    if status != 200:
        assert list(response.get_json()) == ["detail"]


def test_unknown_route_is_404_not_found_json(client):
    response = client.get("/api/v1/experiment-types/1/nothing")
    assert response.status_code == 404
    assert response.get_json() == {"detail": "Not Found"}


def test_wrong_method_is_405_with_allow_header(client):
    response = client.patch("/api/v1/experiment-types/")
    assert response.status_code == 405
    assert response.get_json() == {"detail": "Method Not Allowed"}
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed


def test_unexpected_failure_is_500_without_internal_text(api, monkeypatch):
    monkeypatch.setattr("wave_web.api.tags.find", _failing_view)
    response = api.get("tags/1", role="researcher")
    assert response.status_code == 500
    assert response.get_json() == {"detail": "Internal server error"}
    assert b"secret" not in response.data
    assert b"Traceback" not in response.data


# ----------------------------------------------------------------------
# CORS (§1.4)
# ----------------------------------------------------------------------


def preflight(client, origin: str, path: str = "/api/v1/tags/", **extra):
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,"
        "x-wave-client-version",
        **extra,
    }
    return client.options(path, headers=headers)


@pytest.mark.parametrize(
    "origin",
    ["http://localhost:3000", "http://localhost:5173", "http://localhost:8080"],
)
def test_preflight_from_an_allowed_origin_is_200_without_a_key(client, origin):
    response = preflight(client, origin)
    assert response.status_code == 200
    h = response.headers
    assert h["Access-Control-Allow-Origin"] == origin
    assert "Origin" in [v.strip() for v in h.get_all("Vary") for v in v.split(",")]
    assert h["Access-Control-Allow-Credentials"] == "true"
    methods = {m.strip() for m in h["Access-Control-Allow-Methods"].split(",")}
    assert methods >= {"GET", "POST", "PUT", "DELETE", "OPTIONS"}
    allowed = {x.strip().lower() for x in h["Access-Control-Allow-Headers"].split(",")}
    assert allowed >= {"authorization", "content-type", "x-wave-client-version"}
    assert_version_headers(response)


def test_preflight_allows_the_headers_the_browser_asks_for(client):
    response = preflight(
        client,
        ALLOWED,
        "/api/v1/experiment-data/00000000-0000-0000-0000-000000000000/data/",
        **{"Access-Control-Request-Headers": "X-Custom-Thing, Authorization"},
    )
    assert response.status_code == 200
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "x-custom-thing" in allowed
    assert "authorization" in allowed


def test_preflight_from_an_origin_matching_the_configured_regex_is_allowed(app, client):
    app.config["WAVE_CORS_ORIGIN_REGEX"] = r"https://[a-z]+\.lab\.example\.org"
    response = preflight(client, "https://stroop.lab.example.org")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == (
        "https://stroop.lab.example.org"
    )
    # the expression must match the whole origin
    assert preflight(client, "https://stroop.lab.example.org.evil.net").status_code == (
        400
    )


def test_preflight_from_a_disallowed_origin_is_400_plain_text(client):
    response = preflight(client, "https://evil.example.net")
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "Disallowed CORS origin"
    assert "Access-Control-Allow-Origin" not in response.headers
    assert_version_headers(response)


def test_request_from_a_disallowed_origin_is_served_without_allow_origin(api):
    response = api.get("tags/", role="researcher", headers={"Origin": "https://x.net"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert_version_headers(response)


def test_request_from_an_allowed_origin_gets_allow_origin_even_on_errors(client):
    response = client.get("/api/v1/tags/", headers={"Origin": ALLOWED})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert_version_headers(response)


# ----------------------------------------------------------------------
# Trailing slashes (§1.1, F1)
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "experiment-types/",
        "experiment-types",
        "tags/",
        "tags",
        "experiments/",
        "experiments",
    ],
)
def test_collections_are_served_with_and_without_trailing_slash(api, path):
    response = api.get(path, role="researcher")
    assert response.status_code == 200
    assert response.get_json() == []


def test_item_and_data_paths_are_served_with_a_slash_added_or_removed(api):
    xtype = api.make_type(schema={"score": "INTEGER"})
    experiment = api.make_experiment(xtype["id"])["uuid"]
    base = f"experiment-data/{experiment}/data"
    for path in (
        f"experiment-types/{xtype['id']}",
        f"experiment-types/{xtype['id']}/",
        f"experiments/{experiment}/",
        f"{base}",
        f"{base}/",
        f"{base}/count/",
        f"{base}/columns/",
    ):
        response = api.get(path)
        assert response.status_code == 200, path
    created = api.post(base, {"participant_id": "P1", "data": {"score": 1}})
    assert created.status_code == 201

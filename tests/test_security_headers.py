"""Protective headers on every kind of response: page, fragment, error, download."""

from __future__ import annotations

import pytest
from tests.factories import make_experiment
from tests.factories import make_type


@pytest.fixture
def experiment(app, db):
    xtype = make_type()
    return make_experiment(xtype, "Headers")


def responses(app, experiment):
    client = app.test_client()
    grid = f"/experiments/{experiment.uuid}"
    yield "page", client.get("/tags/")
    yield "htmx fragment", client.get(grid, headers={"HX-Request": "true"})
    yield "error page", client.get("/no/such/page")
    yield "htmx error", client.get(grid + "?_sort=nope", headers={"HX-Request": "true"})
    yield "form error", client.post("/tags/", data={"name": ""})
    yield "csv download", client.get("/admin/audit.csv")
    yield "api error", client.get("/api/v1/nothing")
    yield "signed out redirect", app.test_client(user=None).get("/tags/")
    yield "sign-in page", app.test_client(user=None).get("/login")
    yield "static file", client.get("/static/app.css")


def test_every_response_type_carries_the_security_headers(app, experiment):
    for kind, response in responses(app, experiment):
        headers = response.headers
        csp = headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp, kind
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, kind
        assert headers.get("X-Content-Type-Options") == "nosniff", kind
        assert headers.get("Referrer-Policy") == "same-origin", kind
        if response.mimetype.startswith("text/"):
            assert "charset=utf-8" in headers["Content-Type"], kind


def test_session_cookie_is_httponly_and_samesite_lax(app):
    from tests.conftest import TEST_PASSWORD
    from tests.conftest import make_test_user

    make_test_user(app)
    response = app.test_client(user=None).post(
        "/login", data={"email": "admin@example.org", "password": TEST_PASSWORD}
    )
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # only when configured for HTTPS


def test_secure_cookies_and_hsts_when_configured(database_url, tmp_path):
    from tests.conftest import make_app

    app = make_app(database_url, tmp_path, SESSION_COOKIE_SECURE=True)
    response = app.test_client().get("/tags/")
    assert "max-age" in response.headers["Strict-Transport-Security"]


def test_templates_have_no_inline_script_or_style():
    """The CSP forbids them: an inline one would silently stop working."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent / "templates"
    offenders = []
    for path in root.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text):
            offenders.append(f"{path.name}: inline <script>")
        if re.search(r"\sstyle=", text) or "<style" in text:
            offenders.append(f"{path.name}: style attribute or element")
        if re.search(r"\son[a-z]+=", text):
            offenders.append(f"{path.name}: inline event handler")
    assert not offenders

"""The JSON API v1 (api-v1.md): experiment software posts rows, scripts read them.

A package of its own: it imports the domain (schema, catalog, datatables, csv_io,
audit), never the web views, and the web views never import it. Keys only, never
the session cookie, so it is exempt from CSRF. Every response of the app carries
`X-WAVE-API-Version`; API and service answers also get CORS (§1.4).
"""

from __future__ import annotations

import re

from flask import Flask
from flask import Request
from flask import Response
from flask import current_app
from flask import request
from flask.sessions import SecureCookieSessionInterface

from wave_web.api import http
from wave_web.api.http import API_VERSION
from wave_web.api.http import bp
from wave_web.extensions import csrf
from wave_web.extensions import limiter

EXPOSE = "X-WAVE-API-Version"
ALLOWED_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
ALLOWED_HEADERS = ("authorization", "content-type", "x-wave-client-version")


def _is_api_path(path: str) -> bool:
    return path.startswith("/api/") or path in ("/health", "/version", "/api")


def wants_json_home() -> bool:
    """GET / from a program (JSON, a key, no text/html preferred) gets the API's hello.

    Browsers ask for text/html first; curl asks for */* (JSON); the clients send a
    JSON content type and a key. A request without Accept header gets the page.
    """
    if request.headers.get("Authorization") or request.mimetype == "application/json":
        return True
    accept = request.accept_mimetypes
    if not accept.provided:
        return False  # no Accept header at all: the page, as before the API existed
    html = accept["text/html"] if "text/html" in accept.values() else 0
    json_q = accept["application/json"]
    return html == 0 or json_q > html


def origin_allowed(origin: str) -> bool:
    cfg = current_app.config
    if origin in cfg["WAVE_CORS_ORIGINS"]:
        return True
    pattern = cfg["WAVE_CORS_ORIGIN_REGEX"]
    return bool(pattern) and re.fullmatch(pattern, origin) is not None


def _preflight():
    """OPTIONS with Origin and Access-Control-Request-Method: answered without a key."""
    if request.method != "OPTIONS" or not _is_api_path(request.path):
        return None
    origin = request.headers.get("Origin")
    if not origin or "Access-Control-Request-Method" not in request.headers:
        return None
    if not origin_allowed(origin):
        return Response("Disallowed CORS origin", 400, mimetype="text/plain")
    response = Response("OK", 200, mimetype="text/plain")
    asked = request.headers.get("Access-Control-Request-Headers", "")
    names = [h.strip() for h in asked.split(",") if h.strip()]
    for wanted in ALLOWED_HEADERS:
        if wanted not in {n.lower() for n in names}:
            names.append(wanted)
    response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    response.headers["Access-Control-Allow-Headers"] = ", ".join(names)
    response.headers["Access-Control-Max-Age"] = "600"
    return response


def _json_home():
    if request.path == "/" and request.method == "GET" and wants_json_home():
        return http.json_response(
            {"message": "Welcome to the WAVE Backend API", "version": API_VERSION}
        )
    return None


def _body_limit():
    path = request.path
    if path.startswith("/api/v1/") and not path.rstrip("/").endswith("/upload"):
        request.max_content_length = current_app.config["WAVE_API_MAX_BODY_BYTES"]


def _headers(response: Response) -> Response:
    headers = response.headers
    headers["X-WAVE-API-Version"] = API_VERSION
    listed = headers.get("Access-Control-Expose-Headers", "").split(",")
    exposed = [h.strip() for h in listed if h.strip()]
    if EXPOSE.lower() not in {h.lower() for h in exposed}:
        exposed.append(EXPOSE)
    headers["Access-Control-Expose-Headers"] = ", ".join(exposed)
    origin = request.headers.get("Origin")
    if origin and (_is_api_path(request.path) or request.path == "/"):
        if origin_allowed(origin):
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Credentials"] = "true"
        headers.add("Vary", "Origin")
    return response


class _SessionInterface(SecureCookieSessionInterface):
    """No cookie session for the API (it never reads one): a null session, which
    costs nothing to open, where a signed cookie would be checked on every call."""

    def open_session(self, app: Flask, request: Request):
        if request.path.startswith("/api/v1/"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def _skip_rate_limits() -> bool:
    """Flask-Limiter's request filter: the limits are the sign-in form's; an API
    request has none to count (its key is 256 random bits, not a password)."""
    return request.path.startswith("/api/v1/")


def init_app(app: Flask) -> None:
    from wave_web.api import data  # noqa: F401  (each module declares its routes)
    from wave_web.api import experiment_types  # noqa: F401
    from wave_web.api import experiments  # noqa: F401
    from wave_web.api import openapi  # noqa: F401
    from wave_web.api import search  # noqa: F401
    from wave_web.api import tags  # noqa: F401
    from wave_web.api import uploads  # noqa: F401
    from wave_web.api.services import service

    csrf.exempt(bp)
    csrf.exempt(service)
    limiter.request_filter(_skip_rate_limits)
    if type(app.session_interface) is SecureCookieSessionInterface:
        app.session_interface = _SessionInterface()
    app.register_blueprint(bp)
    app.register_blueprint(service)
    # before every other hook: a preflight needs no session, no key, no database
    app.before_request_funcs.setdefault(None, []).insert(0, _preflight)
    app.before_request_funcs[None].insert(1, _json_home)
    app.before_request_funcs[None].insert(2, _body_limit)
    app.after_request(_headers)

"""Domain exceptions and the handlers that turn every failure into a friendly page."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy.exc as sa_exc
from flask import Flask
from flask import jsonify
from flask import make_response
from flask import render_template
from flask import request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from wave_web import requestlog

log = logging.getLogger(__name__)


class WaveError(Exception):
    """A problem the user can fix; `message` is safe to show, `field` says where."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidName(WaveError):
    """A table, column or type name broke a naming rule."""

    def __init__(self, name: str, message: str, suggestion: str | None = None) -> None:
        if suggestion and suggestion != name:
            message = f"{message} Try “{suggestion}”."
        super().__init__(message)
        self.name = name
        self.suggestion = suggestion


class InvalidValue(WaveError):
    """A value (form field, JSON, cell) broke a rule."""


class NameTaken(WaveError):
    """Someone else has the name: a unique constraint or a concurrent creation won."""

    status = 409


class NotFound(WaveError):
    status = 404


class NoSpace(WaveError):
    """The server's disk is full: the upload was refused and nothing was kept."""

    status = 507


class Conflict(WaveError):
    """The operation is refused in the current state (e.g. a type with experiments)."""

    status = 409


MESSAGES = {
    400: (
        "Bad request",
        "The request could not be understood. Check the address and the form.",
    ),
    403: ("Forbidden", "You do not have permission to do this."),
    404: (
        "Not found",
        "There is nothing at this address. It may have been deleted or renamed.",
    ),
    405: ("Method not allowed", "This address does not accept that kind of request."),
    409: ("Conflict", "The change conflicts with the current state."),
    413: (
        "Upload too large",
        "The file or form is larger than this server accepts. Split the file or ask an "
        "administrator to raise the limit.",
    ),
    422: ("Invalid input", "Some fields need fixing."),
    500: ("Something went wrong", "An unexpected error occurred. Nothing was saved."),
    507: (
        "No disk space",
        "The server has no disk space left for this. Nothing was saved.",
    ),
    503: (
        "Database unavailable",
        "The database is not reachable right now. Nothing was saved; "
        "please try again in a moment.",
    ),
}


# The JSON API's texts for framework errors (api-v1.md §1.6); the clients parse them.
API_DETAILS = {
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal server error",
    503: "Database unavailable, please retry shortly",
}
API_SERVICE_PATHS = ("/health", "/version")


CSRF_MESSAGE = (
    "This form has expired or was sent from another page. "
    "Reload the page and submit again; nothing was saved."
)


def render_error(code: int, detail: str | None = None):
    """An error response in the form the client expects: JSON, htmx fragment or page."""
    title, default = MESSAGES.get(code, (f"Error {code}", "The request failed."))
    message = detail or default
    if request.path.startswith("/api/") or request.path in API_SERVICE_PATHS:
        return _api_error(code, detail or API_DETAILS.get(code, message))
    template = (
        "errors/_error.html"
        if request.headers.get("HX-Request")
        else "errors/error.html"
    )
    reference = requestlog.current() if code >= 500 else None
    response = render_template(
        template, code=code, title=title, message=message, reference=reference
    )
    headers = {"Retry-After": "5"} if code == 503 else {}
    return response, code, headers


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):,.1f}".removesuffix(".0") + " MB"


def too_large_message(cfg: Mapping[str, Any]) -> str:
    """What a 413 refused, with the limit that applied (nothing is ever cut short)."""
    length = request.content_length or 0
    upload = cfg.get("MAX_CONTENT_LENGTH")
    text = cfg.get("MAX_FORM_MEMORY_SIZE")
    if upload and length > upload:
        return (
            f"This upload is {_megabytes(length)}; the server accepts at most "
            f"{_megabytes(upload)}. Nothing was saved: split the file, or ask an "
            "administrator to raise the limit (WAVE_MAX_UPLOAD_MB)."
        )
    if request.mimetype == "multipart/form-data":
        parts = cfg.get("MAX_FORM_PARTS") or 1000
        return (
            f"This form sends more than {parts:,} fields, or a text field over "
            f"{_megabytes(text or 0)}; a form holds at most {parts:,} fields. "
            "Nothing was saved."
        )
    return (
        f"This form sends {_megabytes(length)} of text; a form holds at most "
        f"{_megabytes(text or 0)}. Nothing was saved: shorten the longest fields, "
        "or import the data from a file."
    )


def _api_error(code: int, detail: str):
    if code >= 500:  # never internal text; the clients retry these
        detail = API_DETAILS.get(code, API_DETAILS[500])
        if code == 500 and (request.endpoint or "").startswith("api.search"):
            detail = "Search failed: internal error"
    headers = {"Retry-After": "5"} if code == 503 else {}
    return jsonify({"detail": detail}), code, headers


def _rollback() -> None:
    from wave_web.extensions import db

    try:
        db.session.rollback()
    except sa_exc.SQLAlchemyError:  # the connection itself may be gone
        log.warning("rollback failed after an error", exc_info=True)


TOO_SLOW = (
    "This page took longer than {} seconds to prepare and was stopped; nothing was "
    "changed. Narrow the filters, or try again when the server is less busy."
)


def is_page_time_limit(exc: BaseException) -> bool:
    """True when PostgreSQL cancelled a statement (statement_timeout of a page)."""
    return getattr(getattr(exc, "orig", None), "pgcode", None) == "57014"


def is_database_down(exc: BaseException) -> bool:
    """True when the error means the database cannot be reached or is locked."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.OperationalError):
        # SQLite also reports "no such table" and syntax errors as OperationalError
        # (SQLITE_ERROR): a bug to log as a 500, not an outage.
        return getattr(exc.orig, "sqlite_errorname", None) != "SQLITE_ERROR"
    return isinstance(exc, sa_exc.InterfaceError | sa_exc.TimeoutError)


def init_app(app: Flask) -> None:
    @app.errorhandler(WaveError)
    def domain_error(exc: WaveError):
        _rollback()
        return render_error(exc.status, exc.message)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        # flask-wtf's descriptions ("The CSRF token is missing.") mean nothing to users
        return render_error(400, CSRF_MESSAGE)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        detail = exc.description if code in (400, 409, 422) and _is_ours(exc) else None
        if code == 413 and not request.path.startswith("/api/"):
            detail = too_large_message(app.config)
        response = make_response(render_error(code, detail))
        for name, value in exc.get_headers():  # e.g. Allow on a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(sa_exc.SQLAlchemyError)
    def database_error(exc: sa_exc.SQLAlchemyError):
        _rollback()
        if is_page_time_limit(exc):
            _without_user_lookup()
            log.warning("page statement stopped after WAVE_PAGE_QUERY_SECONDS")
            return render_error(
                503, TOO_SLOW.format(app.config["WAVE_PAGE_QUERY_SECONDS"])
            )
        if is_database_down(exc):
            _without_user_lookup()
            locked = "locked" in str(getattr(exc, "orig", ""))
            log.warning("database unavailable: %s", type(exc).__name__)
            detail = (
                "The database is busy with another change. Nothing was saved; "
                "please try again in a moment."
                if locked
                else None
            )
            return render_error(503, detail)
        log.exception("database error")
        return render_error(500)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        if isinstance(exc, HTTPException):
            return http_error(exc)
        _rollback()
        log.exception("unhandled error")
        return render_error(500)


def _without_user_lookup() -> None:
    """Render the page as signed out if the user was not loaded yet.

    Looking the user up needs the database that just failed; the error page would fail
    again instead of saying so.
    """
    from flask import g
    from flask_login import AnonymousUserMixin

    if "_login_user" not in g:
        g._login_user = AnonymousUserMixin()


def _is_ours(exc: HTTPException) -> bool:
    """Our abort(code, message) descriptions are user-facing; werkzeug's are generic."""
    return bool(getattr(exc, "wave_message", False))


def bad_request(message: str) -> HTTPException:
    """A 400 whose description is shown to the user."""
    from werkzeug.exceptions import BadRequest

    exc = BadRequest(message)
    exc.wave_message = True  # type: ignore[attr-defined]
    return exc

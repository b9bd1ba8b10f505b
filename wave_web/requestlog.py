"""A request id on every log line, every response and every error page.

The id is the client's (or the reverse proxy's) `X-Request-ID` when it is a short
token, else a new random one; it is sent back as `X-Request-ID`, printed on error
pages as the reference a user quotes, and added to every log line written while
the request runs. Logs go to standard error, one line per record.
"""

from __future__ import annotations

import logging
import re
import secrets

from flask import Flask
from flask import g
from flask import has_request_context
from flask import request
from flask.logging import default_handler

HEADER = "X-Request-ID"
_GIVEN = re.compile(r"[A-Za-z0-9._:-]{8,64}")
FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


def current() -> str | None:
    """The id of the request being served, or None outside requests."""
    if not has_request_context():
        return None
    return g.get("request_id")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to a record: the request's id, or "-" outside requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current() or "-"
        return True


def _assign() -> None:
    given = request.headers.get(HEADER, "")
    g.request_id = given if _GIVEN.fullmatch(given) else secrets.token_hex(8)


def _send_back(response):
    request_id = current()
    if request_id:
        response.headers[HEADER] = request_id
    return response


def init_app(app: Flask) -> None:
    # first of all hooks, so even the API's preflight answer carries it
    app.before_request_funcs.setdefault(None, []).insert(0, _assign)
    app.after_request(_send_back)
    default_handler.setFormatter(logging.Formatter(FORMAT))
    if not any(isinstance(f, RequestIdFilter) for f in default_handler.filters):
        default_handler.addFilter(RequestIdFilter())
    # Flask adds its handler only when no other handler would print the app's lines
    # (e.g. a test runner's); ours always prints them, in our format, to stderr.
    if default_handler not in app.logger.handlers:
        app.logger.addHandler(default_handler)
    if app.logger.level == logging.NOTSET:
        app.logger.setLevel(logging.INFO)

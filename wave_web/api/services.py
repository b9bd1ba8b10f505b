"""The service endpoints at the root: /health and /version (no key; api-v1.md §3).

`/` is answered in wave_web.api (JSON for programs, the home page for browsers).
"""

from __future__ import annotations

import contextlib
import re

import sqlalchemy as sa
from flask import Blueprint
from flask import current_app
from flask import request

import wave_web.database as database
from wave_web import replica
from wave_web.api.http import API_VERSION
from wave_web.api.http import json_response
from wave_web.extensions import db

RULE = "Semantic versioning: same major version = compatible"
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-[a-zA-Z0-9.-]+)?(?:\+[a-zA-Z0-9.-]+)?$")
SERVICE = "wave-backend"  # kept for monitoring that matches it


def _api(view):
    view.wave_api = True  # the API's own rules, not the web's sign-in
    return view


@_api
@database.primary_only
def health():
    """200 when the database answers and is at this code's newest migration, else
    503 with the reason (one indexed read of alembic_version per probe).

    With DATABASE_READ_URL, `read_replica` says whether the replica is used (ok) or
    passed over (lagging, unreachable); the app then reads the primary, so it stays 200.
    """
    reason = None
    if not current_app.extensions.get("wave_migrated"):
        reason = "database migrations not applied"
    else:
        try:
            found = database.database_revision()
            if found != database.code_revision():
                # e.g. a newer release migrated the database: this server is old
                reason = (
                    f"database migrations not current: the database is at {found}, "
                    f"this server's code at {database.code_revision()}"
                )
        except sa.exc.SQLAlchemyError:
            reason = "database unreachable"
        finally:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                db.session.rollback()
    if reason:
        return unhealthy(reason)
    body = {"status": "healthy", "service": SERVICE}
    read_replica = replica.health()
    if read_replica is not None:
        body["read_replica"] = read_replica
    return json_response(body)


def unhealthy(reason: str):
    """The 503 of /health, also when the app cannot reach its database to migrate."""
    return json_response(
        {"status": "unhealthy", "service": SERVICE, "detail": reason}, 503
    )


def compatibility(client: str | None) -> dict:
    """The /version answer for the client version sent (or None)."""
    body: dict = {
        "api_version": API_VERSION,
        "client_version": client,
        "compatibility_rule": RULE,
        "compatible": None,
    }
    if client is None:
        body["warning"] = "No client version provided"
        return body
    text = client[1:] if client.startswith("v") else client
    match = _VERSION.match(text)
    if match is None:
        body["compatible"] = False
        body["warning"] = (
            f"Invalid version format detected: Client v{text}, API v{API_VERSION}. "
            "Please check your client library version."
        )
        return body
    if match.group(1) == API_VERSION.split(".")[0]:
        body["compatible"] = True
        return body
    body["compatible"] = False
    body["warning"] = (
        f"Major version mismatch: Client v{text} may not be compatible with API "
        f"v{API_VERSION}. Consider upgrading your client library."
    )
    return body


@_api
def version():
    return json_response(compatibility(request.headers.get("X-WAVE-Client-Version")))


service = Blueprint("api_service", __name__)
service.add_url_rule("/health", "health", health, methods=["GET"])
service.add_url_rule("/version", "version", version, methods=["GET"])

"""API keys on requests: `Authorization: Bearer <key>`, roles by rank (api-v1.md §2).

The API never reads the session cookie: a browser's sign-in is not a key. The key
found is kept in `flask.g` for the audit log ("API key 1a2b3c4d “lab PC”"); its last
use is written with the request's own transaction when the request writes, and in a
short transaction of its own (at most once a second per key) when it only reads.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from flask import g
from flask import request

import wave_web.database as database
from wave_web import accounts
from wave_web.extensions import db
from wave_web.models import API_ROLES
from wave_web.models import record
from wave_web.models import utcnow

log = logging.getLogger(__name__)
ROLES = API_ROLES  # experimentee < researcher < admin < test
SEEN_EVERY = dt.timedelta(seconds=1)  # last use is kept to the second

NOT_AUTHENTICATED = "Not authenticated"
INVALID_KEY = "Authentication failed: Invalid API key or insufficient permissions"
NO_ROLE = "Authorization failed: No role assigned to API key"


def rank(role: str | None) -> int:
    return ROLES.index(role) + 1 if role in ROLES else 0


def _unauthorised(detail: str):
    from wave_web.api.http import ApiError

    return ApiError(401, detail, {"WWW-Authenticate": "Bearer"})


def bearer_token() -> str | None:
    """The token of `Authorization: Bearer <token>` (scheme in any case), or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(least_role: str, writes: bool) -> accounts.KeyRef:
    """The request's key, checked for `least_role`; ApiError 401/403 otherwise.

    `writes`: the operation may write (then the key's use is part of its transaction).
    """
    from wave_web.api.http import ApiError

    token = bearer_token()
    if token is None:
        raise _unauthorised(NOT_AUTHENTICATED)
    if writes:  # in the request's own transaction (SQLite: BEGIN IMMEDIATE)
        key = accounts.live_key(token)
    else:
        with database.reading():
            key = accounts.live_key(token)
        db.session.rollback()  # the view begins its own transaction
    if key is None:
        raise _unauthorised(INVALID_KEY)
    g.api_key = key
    g.audit_actor = f"API key {key.prefix} “{key.label}” ({key.role})"
    g.audit_addr = request.remote_addr
    if key.role not in ROLES:
        raise ApiError(403, NO_ROLE)
    if rank(key.role) < rank(least_role):
        _record_refusal(key, least_role)
        raise ApiError(
            403,
            "Authorization failed: Insufficient permissions. "
            f"Required: {least_role}, Found: {key.role}",
        )
    _note_use(key, writes)
    return key


def _note_use(key: accounts.KeyRef, writes: bool) -> None:
    """Record the key's use (to the second): with a write's own transaction, or in a
    short write of its own for a request that only reads."""
    now = utcnow()
    if key.last_used_at is not None and now - key.last_used_at < SEEN_EVERY:
        return
    if writes:
        accounts.note_key_use(key.id, now)  # committed with the request's change
        return
    with database.writing():
        accounts.note_key_use(key.id, now)
        db.session.commit()


def _record_refusal(key: accounts.KeyRef, least_role: str) -> None:
    """A key below the route's role is an audited refusal, as for signed-in users."""
    with database.writing():
        record(
            "access.refused",
            "route",
            (request.endpoint or "")[:64],
            f"Refused {request.method} {request.path[:200]} (needs {least_role})",
            role=key.role,
            needed=least_role,
        )
        try:
            db.session.commit()
        except sa.exc.SQLAlchemyError:
            db.session.rollback()
            log.warning("could not record a refused API request", exc_info=True)

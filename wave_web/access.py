"""Who may do what: sign-in state, the role each view declares, security headers.

Every view declares the least role it needs with one decorator, in one visible place:

    @bp.get("/")
    @requires("viewer")
    def index(): ...

`public` views need no sign-in (sign-in page, first-admin set-up). A before_request
hook enforces the declaration for every request; a view without one is refused
(tests/test_access_matrix.py walks app.url_map so that none is left undeclared).
Signed-out visitors are sent to the sign-in page; a signed-in user without the role
gets a 403 page, recorded in the audit log.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Flask
from flask import current_app
from flask import g
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from flask_login import LoginManager
from flask_login import current_user
from werkzeug.exceptions import Forbidden

from wave_web import accounts
from wave_web import database
from wave_web.errors import WaveError
from wave_web.extensions import db
from wave_web.htmx import is_htmx
from wave_web.models import ROLES
from wave_web.models import User
from wave_web.models import record

log = logging.getLogger(__name__)

V = TypeVar("V", bound=Callable)
PUBLIC = "public"
SESSION_KEY = "wave_sid"
login_manager = LoginManager()


def requires(role: str) -> Callable[[V], V]:
    """Declare the least role a view needs: viewer, researcher, admin or public."""
    if role not in (PUBLIC, *ROLES):
        raise ValueError(f"unknown role {role!r}")

    def declare(view: V) -> V:
        view.wave_role = role  # type: ignore[attr-defined]
        return view

    return declare


public = requires(PUBLIC)


def declared_role(endpoint: str | None) -> str | None:
    """The role the view of `endpoint` declared (None: undeclared)."""
    if endpoint == "static":
        return PUBLIC
    view = current_app.view_functions.get(endpoint or "")
    return getattr(view, "wave_role", None)


def safe_next(target: str | None) -> str | None:
    """`target` if it is a path on this site, else None (no open redirects)."""
    if not target or not isinstance(target, str) or len(target) > 2000:
        return None
    if "\\" in target or any(ord(c) < 32 for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/"):
        return None
    if target.startswith("//"):
        return None
    return target


SEEN_KEY = "wave_seen"  # last activity (epoch seconds), in the signed cookie


@login_manager.user_loader
def _load_user(user_id: str):
    """The signed-in user, if the session is live on the server and not idle."""
    cfg = current_app.config
    now = int(time.time())
    seen = session.get(SEEN_KEY)
    if not isinstance(seen, int) or now - seen > cfg["WAVE_SESSION_IDLE_MINUTES"] * 60:
        return None
    max_age = dt.timedelta(hours=cfg["WAVE_SESSION_MAX_HOURS"])
    user = accounts.session_user(session.get(SESSION_KEY), max_age)
    if user is None or str(user.id) != str(user_id):
        return None
    if now - seen >= 60:
        session[SEEN_KEY] = now  # the cookie is re-sent; the database is not written
    return user


class AccessDenied(WaveError):
    """The signed-in user's role does not allow this; the message says which role."""

    status = 403


def _refuse(role: str):
    """A signed-in user lacks `role`: audit the refusal, answer 403."""
    _record_refusal(role)
    raise AccessDenied(
        f"This needs the {role} role; you are signed in as a {current_user.role}. "
        "Ask an administrator if you need it."
    )


def _record_refusal(role: str) -> None:
    """The refusal is the request's only write: nothing else happened before it."""
    db.session.rollback()
    record(
        "access.refused",
        "route",
        (request.endpoint or "")[:64],
        f"Refused {request.method} {request.path[:200]} (needs {role})",
        role=current_user.role,
        needed=role,
    )
    try:
        db.session.commit()
    except sa.exc.SQLAlchemyError:
        db.session.rollback()
        log.warning("could not record a refused authorisation", exc_info=True)


def _sign_in_first():
    if not accounts.has_users():
        target = url_for("auth.setup")
    else:
        wanted = request.full_path if request.method == "GET" else None
        target = url_for("auth.login", next=safe_next((wanted or "").rstrip("?")))
    if is_htmx():
        response = current_app.response_class(status=204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


def _load_signed_in_user() -> None:
    """Look the user up in a read transaction of its own, then end it.

    A POST begins its transaction with SQLite's write lock; taking it just to see who
    is signed in would queue every request behind a long import. The user stays
    loaded, detached: views that change it use signed_in_user().
    """
    with database.reading():
        user = current_user._get_current_object()
        if user.is_authenticated:
            db.session.expunge(user)
    db.session.rollback()


def signed_in_user() -> User:
    """The signed-in user as part of the current transaction (for changing it)."""
    return db.session.get(User, current_user.id)


def enforce():
    """before_request: the declared role of the view, for this user."""
    if request.endpoint is None or request.endpoint == "static":
        return None  # 404/405 follow; static files need nobody
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "wave_api", False):
        return None  # the JSON API: its own key check, never the session cookie
    role = declared_role(request.endpoint)
    if role is None:
        log.error("view %s declares no role; refused", request.endpoint)
        raise Forbidden("This page is not available.")
    _load_signed_in_user()
    if current_user.is_authenticated:
        g.audit_actor = current_user.email
    g.audit_addr = request.remote_addr
    if role == PUBLIC:
        return None
    if not current_user.is_authenticated:
        return _sign_in_first()
    if current_user.must_change_password and request.endpoint not in (
        "auth.password",
        "auth.logout",
    ):
        return redirect(url_for("auth.password"))
    if not current_user.may(role):
        return _refuse(role)
    return None


# ----------------------------------------------------------------------
# Security headers
# ----------------------------------------------------------------------

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)


def secure_headers(response):
    """after_request: the same protective headers on every response type."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if current_app.config["SESSION_COOKIE_SECURE"]:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    mimetype = response.mimetype or ""
    if mimetype.startswith("text/") and "charset" not in headers.get(
        "Content-Type", ""
    ):
        response.charset = "utf-8"
        headers["Content-Type"] = f"{mimetype}; charset=utf-8"
    return response


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = None  # our own server-side sessions instead
    app.before_request(enforce)
    app.after_request(secure_headers)

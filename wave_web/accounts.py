"""Accounts: users, their server-side sessions, and API keys.

Passwords are hashed with werkzeug's default (scrypt). A browser session is a random
token in the signed cookie; only its SHA-256 is stored, so ending the row (logout,
password change, disabling the user) makes a replayed cookie worthless. API keys work
the same way: the secret is shown once, its hash is kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from wave_web import columns
from wave_web.errors import Conflict
from wave_web.errors import InvalidValue
from wave_web.errors import NameTaken
from wave_web.errors import NotFound
from wave_web.errors import WaveError
from wave_web.extensions import db
from wave_web.models import API_ROLES
from wave_web.models import ROLES
from wave_web.models import ApiKey
from wave_web.models import User
from wave_web.models import UserSession
from wave_web.models import name_key
from wave_web.models import record
from wave_web.models import utcnow

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_EMAIL = 254
# Checked when the email is unknown, so that both cases take as long.
_DUMMY_HASH = generate_password_hash("not a password of anyone")


class LoginFailed(WaveError):
    """Wrong email or password, or a disabled account: one message for all."""

    status = 401

    def __init__(self) -> None:
        super().__init__("The email address or the password is not correct.")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------
# Users
# ----------------------------------------------------------------------


def clean_email(raw: str) -> str:
    """An email address as typed, trimmed; InvalidValue when it cannot be one."""
    email = str(raw or "").strip()
    if not email:
        raise InvalidValue("Enter an email address.", field="email")
    if len(email) > MAX_EMAIL:
        raise InvalidValue(
            f"An email address has at most {MAX_EMAIL} characters.", field="email"
        )
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in email):
        raise InvalidValue(
            f"“{columns.shorten(email)}” is not an email address like "
            "name@example.org.",
            field="email",
        )
    return email


def check_password(password: str, email: str = "") -> str:
    """The password if it is acceptable; InvalidValue naming the rule otherwise."""
    password = str(password or "")
    if len(password) < MIN_PASSWORD:
        raise InvalidValue(
            f"A password needs at least {MIN_PASSWORD} characters "
            f"(this one has {len(password)}). A few unrelated words work well.",
            field="password",
        )
    if len(password) > MAX_PASSWORD:
        raise InvalidValue(
            f"A password has at most {MAX_PASSWORD} characters.", field="password"
        )
    if email and password.casefold() == email.casefold():
        raise InvalidValue(
            "The password cannot be the email address.", field="password"
        )
    return password


def check_role(role: str, roles: tuple[str, ...] = ROLES) -> str:
    if role not in roles:
        raise InvalidValue(
            f"Unknown role “{columns.shorten(str(role))}”; use one of "
            f"{', '.join(roles)}.",
            field="role",
        )
    return role


def has_users() -> bool:
    return db.session.execute(sa.select(User.id).limit(1)).first() is not None


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"There is no user {user_id}.")
    return user


def list_users(page: int = 1, per_page: int = 50):
    """One page of users by email (a Flask-SQLAlchemy Pagination)."""
    stmt = sa.select(User).order_by(User.email_key, User.id)
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False)


def create_user(
    email: str, password: str, role: str, must_change_password: bool = False
) -> User:
    """A new user; NameTaken when the email address (ignoring case) has an account."""
    email = clean_email(email)
    password = check_password(password, email)
    check_role(role)
    if db.session.scalar(sa.select(User.id).where(User.email_key == name_key(email))):
        raise NameTaken(f"{email} already has an account.", field="email")
    user = User(
        email=email,
        password_hash=generate_password_hash(password),
        role=role,
        must_change_password=must_change_password,
    )
    db.session.add(user)
    try:
        db.session.flush()
    except sa.exc.IntegrityError:
        db.session.rollback()
        raise NameTaken(f"{email} already has an account.", field="email") from None
    record("user.create", "user", user.id, f"Created user {email} ({role})", role=role)
    return user


def authenticate(email: str, password: str) -> User:
    """The active user with this email and password, or LoginFailed."""
    user = db.session.scalar(
        sa.select(User).where(User.email_key == name_key(str(email or "").strip()))
    )
    hashed = user.password_hash if user is not None else _DUMMY_HASH
    if not check_password_hash(hashed, str(password or "")) or user is None:
        raise LoginFailed()
    if user.is_disabled:
        raise LoginFailed()
    return user


def _admins_left(excluding: User) -> int:
    stmt = sa.select(sa.func.count(User.id)).where(
        User.role == "admin", User.is_disabled.is_(False), User.id != excluding.id
    )
    return db.session.scalar(stmt) or 0


def _keep_an_admin(user: User, action: str) -> None:
    if user.role == "admin" and not user.is_disabled and _admins_left(user) == 0:
        raise Conflict(
            f"{user.email} is the last active admin and cannot be {action}; "
            "make someone else an admin first."
        )


def set_role(user: User, role: str) -> None:
    check_role(role)
    if role == user.role:
        return
    if role != "admin":
        _keep_an_admin(user, "demoted")
    before, user.role = user.role, role
    record(
        "user.role",
        "user",
        user.id,
        f"Changed the role of {user.email} from {before} to {role}",
        before={"role": before},
        after={"role": role},
    )


def set_disabled(user: User, disabled: bool) -> None:
    """Disable (ending every session of the user) or enable an account."""
    if disabled == user.is_disabled:
        return
    if disabled:
        _keep_an_admin(user, "disabled")
        end_all_sessions(user)
    user.is_disabled = disabled
    verb = "Disabled" if disabled else "Enabled"
    record(
        "user.disable" if disabled else "user.enable",
        "user",
        user.id,
        f"{verb} user {user.email}",
    )


def delete_user(user: User) -> None:
    _keep_an_admin(user, "deleted")
    record("user.delete", "user", user.id, f"Deleted user {user.email}")
    db.session.delete(user)


def change_password(user: User, current: str, new: str) -> None:
    """Set a new password (the current one is required); ends every session."""
    if not check_password_hash(user.password_hash, str(current or "")):
        raise InvalidValue("The current password is not correct.", field="current")
    set_password(user, new)


def set_password(user: User, new: str) -> None:
    """Set a new password without the old one (first sign-in, admin reset)."""
    new = check_password(new, user.email)
    if check_password_hash(user.password_hash, new):
        raise InvalidValue(
            "Choose a password different from the current one.", field="password"
        )
    user.password_hash = generate_password_hash(new)
    user.must_change_password = False
    end_all_sessions(user)
    record("user.password", "user", user.id, f"Changed the password of {user.email}")


def generated_password() -> str:
    """A strong one-time password for a new account (shown to the admin once)."""
    return secrets.token_urlsafe(15)


# ----------------------------------------------------------------------
# Sessions
# ----------------------------------------------------------------------


def start_session(user: User, remote_addr: str | None, user_agent: str | None) -> str:
    """A new session for `user`; returns the token for the cookie."""
    token = secrets.token_urlsafe(32)
    db.session.add(
        UserSession(
            token_hash=_hash(token),
            user_id=user.id,
            remote_addr=(remote_addr or "")[:64] or None,
            user_agent=(user_agent or "")[:255] or None,
        )
    )
    user.last_login_at = utcnow()
    return token


def session_user(token: str | None, max_age: dt.timedelta) -> User | None:
    """The user of a live session token, or None (unknown, ended, too old, disabled).

    Reads only: the idle timeout is kept in the signed cookie (wave_web.access), so a
    page view never writes to the database.
    """
    if not token or not isinstance(token, str) or len(token) > 100:
        return None
    found = db.session.scalar(
        sa.select(UserSession).where(UserSession.token_hash == _hash(token))
    )
    if found is None or found.ended_at is not None:
        return None
    if utcnow() - found.created_at > max_age or found.user.is_disabled:
        return None
    return found.user


def end_session(token: str | None) -> None:
    if token:
        db.session.execute(
            sa.update(UserSession)
            .where(
                UserSession.token_hash == _hash(token), UserSession.ended_at.is_(None)
            )
            .values(ended_at=utcnow())
        )


def end_all_sessions(user: User) -> int:
    """End every session of `user`; returns how many were live."""
    result = db.session.execute(
        sa.update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )
    return result.rowcount or 0


# ----------------------------------------------------------------------
# API keys
# ----------------------------------------------------------------------

KEY_PREFIX = "wave_"


def key_expiry(last_day: dt.date) -> dt.datetime:
    """The instant a key chosen to work until the end of `last_day` (UTC) stops."""
    return dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(), dt.UTC)


def key_last_day(expires_at: dt.datetime) -> dt.date | None:
    """The last day a key works, as the admin chose it (None: not at midnight UTC)."""
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=dt.UTC)
    expires_at = expires_at.astimezone(dt.UTC)
    if expires_at.time() != dt.time():
        return None
    return expires_at.date() - dt.timedelta(days=1)


def create_key(
    label: str,
    role: str,
    expires_at: dt.datetime | None = None,
    created_by: User | None = None,
) -> tuple[ApiKey, str]:
    """A new API key and its secret (shown once; only its hash is stored)."""
    label = columns.clean_text(str(label or "").strip(), "key label", field="label")
    if not label:
        raise InvalidValue("Give the key a label, e.g. “lab PC 3”.", field="label")
    if len(label) > 100:
        raise InvalidValue("A label has at most 100 characters.", field="label")
    check_role(role, API_ROLES)
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidValue("The expiry date must be in the future.", field="expires")
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        label=label,
        prefix=prefix,
        key_hash=_hash(secret),
        role=role,
        expires_at=expires_at,
        created_by_id=created_by.id if created_by is not None else None,
    )
    db.session.add(key)
    db.session.flush()
    record(
        "key.create",
        "api_key",
        key.id,
        f"Created API key {prefix} “{label}” ({role})",
        role=role,
        expires_at=expires_at.isoformat() if expires_at else None,
    )
    return key, secret


def list_keys(page: int = 1, per_page: int = 50):
    """One page of keys, live ones first, newest first (a Pagination)."""
    stmt = sa.select(ApiKey).order_by(ApiKey.revoked_at.is_not(None), ApiKey.id.desc())
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False)


def get_key(key_id: int) -> ApiKey:
    key = db.session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"There is no API key {key_id}.")
    return key


def revoke_key(key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        record(
            "key.revoke",
            "api_key",
            key.id,
            f"Revoked API key {key.prefix} “{key.label}”",
        )


@dataclass(frozen=True)
class KeyRef:
    """A live API key as a request needs it (read without the ORM)."""

    id: int
    prefix: str
    label: str
    role: str
    last_used_at: dt.datetime | None


_K = ApiKey.__table__.c
# Built once: a statement is costlier to build than to run (the API's hot path).
_LIVE_KEY = sa.select(
    _K.id, _K.prefix, _K.label, _K.role, _K.last_used_at, _K.expires_at
).where(_K.key_hash == sa.bindparam("key_hash"), _K.revoked_at.is_(None))


def live_key(secret: str | None) -> KeyRef | None:
    """The live key with this secret (one indexed Core query), or None."""
    if not secret or len(secret) > 200 or not secret.startswith(KEY_PREFIX):
        return None
    found = (
        db.session.connection().execute(_LIVE_KEY, {"key_hash": _hash(secret)}).first()
    )
    if found is None or (found.expires_at is not None and found.expires_at <= utcnow()):
        return None
    return KeyRef(*found[:5])


def note_key_use(key_id: int, when: dt.datetime) -> None:
    """Set a key's last use in the current transaction."""
    db.session.execute(
        sa.update(ApiKey.__table__).where(ApiKey.id == key_id).values(last_used_at=when)
    )


def key_for_secret(secret: str | None, touch: bool = True) -> ApiKey | None:
    """The live key with this secret, or None (unknown, revoked, expired).

    With `touch` its last use is set, committed with the request that used the key
    (every request that writes; see wave_web.api.keys for those that only read).
    """
    if not secret or len(secret) > 200 or not secret.startswith(KEY_PREFIX):
        return None
    key = db.session.scalar(sa.select(ApiKey).where(ApiKey.key_hash == _hash(secret)))
    if key is None or key.revoked_at is not None:
        return None
    now = utcnow()
    if key.expires_at is not None and key.expires_at <= now:
        return None
    if touch:
        key.last_used_at = now
    return key

"""Configuration: defaults, then instance/config.py, then the environment."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from typing import Any

from wave_web.columns import format_json


def defaults(instance_path: str) -> dict[str, Any]:
    """Settings that work on a fresh machine: SQLite in instance/wave.db."""
    return {
        "SQLALCHEMY_DATABASE_URI": "sqlite:///"
        + os.path.join(instance_path, "wave.db"),
        "SECRET_KEY": None,
        "MAX_CONTENT_LENGTH": 512 * 1024 * 1024,
        "MAX_FORM_MEMORY_SIZE": 2 * 1024 * 1024,
        "WAVE_PAGE_SIZE": 50,
        "WAVE_DB_TIMEOUT_SECONDS": 3,
        "WAVE_SQLITE_BUSY_MS": 10_000,
        "WAVE_AUTO_MIGRATE": True,
        "WTF_CSRF_TIME_LIMIT": None,
        # CSV import jobs (wave_web/csv_io/jobs.py)
        "WAVE_UPLOAD_DIR": os.path.join(instance_path, "uploads"),
        "WAVE_IMPORT_WORKERS": 2,
        "WAVE_IMPORT_SYNC_SECONDS": 5,
        "WAVE_IMPORT_HEARTBEAT_SECONDS": 5,
        "WAVE_IMPORT_STALE_SECONDS": 60,
        "WAVE_IMPORT_ABANDON_HOURS": 24,
        # PostgreSQL: job queue (wave_web/csv_io/queue.py)
        "WAVE_RUN_JOBS": True,  # web processes claim jobs too; 0: only `flask worker`
        "WAVE_IMPORT_ATTEMPTS": 3,  # runs of a job whose worker died, then failed
        "WAVE_JOB_POLL_SECONDS": 2,
        # Accounts and sessions (wave_web/access.py, wave_web/accounts.py)
        "WAVE_SESSION_IDLE_MINUTES": 120,
        "WAVE_SESSION_MAX_HOURS": 12,
        "WAVE_PROXY_COUNT": 0,
        "WAVE_PAGE_QUERY_SECONDS": 30,
        # Read replica (wave_web/replica.py): DATABASE_READ_URL, PostgreSQL only
        "WAVE_DATABASE_READ_URL": None,
        "WAVE_READ_PIN_SECONDS": 5,  # primary after a write; the replica's lag limit
        "WAVE_LOGIN_LIMIT": "10 per minute",  # per address and per account
        "RATELIMIT_STORAGE_URI": "memory://",  # redis://… when several workers run
        "RATELIMIT_HEADERS_ENABLED": False,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": False,  # WAVE_SECURE_COOKIES=1 behind HTTPS
        "REMEMBER_COOKIE_DURATION": 0,
        "WAVE_ADMIN_EMAIL": None,
        "WAVE_ADMIN_PASSWORD": None,
        # JSON API (wave_web/api/)
        "WAVE_CORS_ORIGINS": [
            "http://localhost:3000",
            "http://localhost:5173",
            "http://localhost:8080",
        ],
        "WAVE_CORS_ORIGIN_REGEX": None,
        "WAVE_API_MAX_BODY_BYTES": 32 * 1024 * 1024,
        "WAVE_API_BATCH_MAX_ROWS": 10_000,
    }


def normalise_database_url(url: str) -> str:
    """Map postgres[ql]:// URLs to psycopg2; SQLAlchemy 2.1 would pick psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


class ConfigError(ValueError):
    """A setting from the environment has the wrong form; the message names it."""


# (variable, config key, multiplier, example value)
POSITIVE_INTEGERS = (
    ("WAVE_MAX_UPLOAD_MB", "MAX_CONTENT_LENGTH", 1024 * 1024, "512"),
    ("WAVE_PAGE_SIZE", "WAVE_PAGE_SIZE", 1, "50"),
    ("WAVE_DB_TIMEOUT_SECONDS", "WAVE_DB_TIMEOUT_SECONDS", 1, "3"),
    ("WAVE_IMPORT_SYNC_SECONDS", "WAVE_IMPORT_SYNC_SECONDS", 1, "5"),
    ("WAVE_IMPORT_WORKERS", "WAVE_IMPORT_WORKERS", 1, "2"),
    ("WAVE_IMPORT_HEARTBEAT_SECONDS", "WAVE_IMPORT_HEARTBEAT_SECONDS", 1, "5"),
    ("WAVE_IMPORT_STALE_SECONDS", "WAVE_IMPORT_STALE_SECONDS", 1, "60"),
    ("WAVE_IMPORT_ATTEMPTS", "WAVE_IMPORT_ATTEMPTS", 1, "3"),
    ("WAVE_JOB_POLL_SECONDS", "WAVE_JOB_POLL_SECONDS", 1, "2"),
    ("WAVE_SESSION_IDLE_MINUTES", "WAVE_SESSION_IDLE_MINUTES", 1, "120"),
    ("WAVE_SESSION_MAX_HOURS", "WAVE_SESSION_MAX_HOURS", 1, "12"),
    ("WAVE_PROXY_COUNT", "WAVE_PROXY_COUNT", 1, "1"),
    ("WAVE_PAGE_QUERY_SECONDS", "WAVE_PAGE_QUERY_SECONDS", 1, "30"),
    ("WAVE_READ_PIN_SECONDS", "WAVE_READ_PIN_SECONDS", 1, "5"),
    ("WAVE_API_MAX_BODY_MB", "WAVE_API_MAX_BODY_BYTES", 1024 * 1024, "32"),
    ("WAVE_API_BATCH_MAX_ROWS", "WAVE_API_BATCH_MAX_ROWS", 1, "10000"),
)
# Taken as they are when set (variable, config key)
TEXTS = (
    ("WAVE_UPLOAD_DIR", "WAVE_UPLOAD_DIR"),
    ("WAVE_RATELIMIT_STORAGE_URI", "RATELIMIT_STORAGE_URI"),
    ("WAVE_LOGIN_LIMIT", "WAVE_LOGIN_LIMIT"),
    ("WAVE_ADMIN_EMAIL", "WAVE_ADMIN_EMAIL"),
    ("WAVE_ADMIN_PASSWORD", "WAVE_ADMIN_PASSWORD"),
    ("WAVE_CORS_ORIGIN_REGEX", "WAVE_CORS_ORIGIN_REGEX"),
)


def positive_integer(variable: str, raw: str, example: str) -> int:
    """The whole number in `raw` (1 to 999999999), else a ConfigError naming it."""
    text = raw.strip()
    if text.isascii() and text.isdigit() and len(text) <= 9 and int(text) >= 1:
        return int(text)
    raise ConfigError(
        f"{variable} must be a whole number from 1 to 999999999 (e.g. "
        f"{variable}={example}), not {raw[:40]!r}."
    )


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Only the variables that are set, so an unset one never blanks instance config.

    A malformed value raises ConfigError with a one-line message, not a traceback
    from int().
    """
    env = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    if env.get("DATABASE_URL"):
        found["SQLALCHEMY_DATABASE_URI"] = env["DATABASE_URL"]
    if env.get("DATABASE_READ_URL"):
        found["WAVE_DATABASE_READ_URL"] = env["DATABASE_READ_URL"]
    if env.get("SECRET_KEY"):
        found["SECRET_KEY"] = env["SECRET_KEY"]
    for variable, key in TEXTS:
        if env.get(variable):
            found[key] = env[variable]
    if env.get("WAVE_SECURE_COOKIES"):
        found["SESSION_COOKIE_SECURE"] = env["WAVE_SECURE_COOKIES"].strip() in (
            "1",
            "true",
            "yes",
        )
    if env.get("WAVE_RUN_JOBS"):
        off = ("0", "false", "no")
        found["WAVE_RUN_JOBS"] = env["WAVE_RUN_JOBS"].strip().lower() not in off
    if env.get("WAVE_CORS_ORIGINS"):
        found["WAVE_CORS_ORIGINS"] = [
            o.strip() for o in env["WAVE_CORS_ORIGINS"].split(",") if o.strip()
        ]
    for variable, key, multiplier, example in POSITIVE_INTEGERS:
        if env.get(variable):
            value = positive_integer(variable, env[variable], example)
            found[key] = value * multiplier
    return found


def engine_options(url: str, timeout: int, sqlite_busy_ms: int) -> dict[str, Any]:
    """Pool settings: pre-ping so a returning database is picked up without restart.

    On SQLite, pysqlite's `timeout` is the busy timeout: how long a writer waits for
    another writer before "database is locked". JSON is stored compact (the canonical
    spelling): PostgreSQL's json type gives back the stored text, so CSV exports by
    COPY print exactly what format_json wrote.
    """
    if url.startswith("sqlite"):
        busy_seconds = sqlite_busy_ms / 1000
        return {
            "connect_args": {"timeout": busy_seconds, "check_same_thread": False},
            "json_serializer": format_json,
        }
    return {
        "json_serializer": format_json,
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        # per process: gunicorn.conf.py's 2 threads, 2 import jobs with their
        # heartbeats; a request that finds none free within 10 s gets the 503 page
        "pool_size": 5,
        "max_overflow": 5,
        "pool_timeout": 10,
        "connect_args": {"connect_timeout": timeout},
    }


def instance_secret(instance_path: str) -> str:
    """A secret generated once into instance/secret_key so sessions survive restarts."""
    path = os.path.join(instance_path, "secret_key")
    if os.path.exists(path):
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    # Written whole under a private name, then linked into place: of workers
    # starting at once one link wins, the others read its key, and nobody ever
    # reads a half-written file.
    key = secrets.token_hex(32)
    fd, tmp = tempfile.mkstemp(prefix=".secret_key.", dir=instance_path)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key)
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            with open(path, encoding="ascii") as fh:
                return fh.read().strip()
    finally:
        os.unlink(tmp)
    return key

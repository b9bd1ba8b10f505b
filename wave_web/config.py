"""Configuration: defaults, then instance/config.py, then the environment."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any


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
    if env.get("SECRET_KEY"):
        found["SECRET_KEY"] = env["SECRET_KEY"]
    for variable, key, multiplier, example in POSITIVE_INTEGERS:
        if env.get(variable):
            value = positive_integer(variable, env[variable], example)
            found[key] = value * multiplier
    return found


def engine_options(url: str, timeout: int, sqlite_busy_ms: int) -> dict[str, Any]:
    """Pool settings: pre-ping so a returning database is picked up without restart.

    On SQLite, pysqlite's `timeout` is the busy timeout: how long a writer waits for
    another writer before "database is locked".
    """
    if url.startswith("sqlite"):
        busy_seconds = sqlite_busy_ms / 1000
        return {"connect_args": {"timeout": busy_seconds, "check_same_thread": False}}
    return {
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        "connect_args": {"connect_timeout": timeout},
    }


def instance_secret(instance_path: str) -> str:
    """A secret generated once into instance/secret_key so sessions survive restarts."""
    path = os.path.join(instance_path, "secret_key")
    if os.path.exists(path):
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key)
    return key

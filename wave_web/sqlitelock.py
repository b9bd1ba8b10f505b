"""SQLite's write lock goes to a waiting request before a background writer.

SQLite gives its write lock to whichever waiter polls first once it is free (the
busy timeout polls about every 100 ms), not to the one that waited longest. Two
import jobs taking turns kept an inline edit waiting past its busy timeout under
load (bench/load.py on SQLite: "The database is busy", a 503). A file next to the
database orders them: a request holds a shared lock on it while it waits for the
write lock, and a background writer (import jobs, their bookkeeping) begins only
while it can lock that file exclusively, i.e. while no request is waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator

import sqlalchemy as sa

POLL_SECONDS = 0.05  # a background writer's pause between tries


def turn_file(engine: sa.Engine) -> str | None:
    """The lock file beside the database, None for a database in memory."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database + ".writers"


@contextlib.contextmanager
def _locked(path: str, how: int) -> Iterator[bool]:
    """flock(2) on a descriptor of our own (threads of one process exclude each
    other too); yields False when a non-blocking lock is taken by someone else."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, how)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # and so unlocked


def _usable(path: str | None) -> bool:
    """A lock file can be made there (never a missing database folder)."""
    return path is not None and os.path.isdir(os.path.dirname(path) or ".")


def begin_for_request(conn: sa.Connection, path: str | None) -> None:
    """BEGIN IMMEDIATE for a request: waits its busy timeout, marked as waiting."""
    if not _usable(path):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    with _locked(path, fcntl.LOCK_SH):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def begin_in_background(conn: sa.Connection, path: str | None) -> None:
    """BEGIN IMMEDIATE after every waiting request, within the connection's busy
    timeout; then the same error as a busy timeout ("database is locked")."""
    if not _usable(path):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    saved = int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0)
    deadline = time.monotonic() + saved / 1000
    conn.exec_driver_sql("PRAGMA busy_timeout=0")  # try, never queue
    try:
        while time.monotonic() < deadline:
            with _locked(path, fcntl.LOCK_EX | fcntl.LOCK_NB) as no_request_waits:
                if no_request_waits:
                    with contextlib.suppress(sa.exc.OperationalError):
                        conn.exec_driver_sql("BEGIN IMMEDIATE")
                        return
            time.sleep(POLL_SECONDS)
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # raises when still busy
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={saved}")

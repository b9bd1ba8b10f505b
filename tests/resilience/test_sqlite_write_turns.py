"""SQLite's write lock goes to a waiting request before a background writer
(wave_web/sqlitelock.py), so import jobs taking turns cannot keep an inline edit
waiting past its busy timeout (bench/load.py on SQLite answered 2 edits of 65 with
"The database is busy", a 503). SQLite only: PostgreSQL has row locks, no such lock.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa
from tests.conftest import make_app
from wave_web import database
from wave_web.extensions import db


@pytest.fixture
def sqlite_app(tmp_path):
    app = make_app(
        f"sqlite:///{tmp_path / 'wave.db'}", tmp_path, WAVE_SQLITE_BUSY_MS=5000
    )
    with app.app_context():
        db.session.execute(
            sa.text("CREATE TABLE turns (id INTEGER PRIMARY KEY, who TEXT)")
        )
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _write(app, who: str, in_request: bool) -> None:
    insert = sa.text("INSERT INTO turns (who) VALUES (:who)")
    context = (
        app.test_request_context("/", method="POST")
        if in_request
        else app.app_context()
    )
    with context:
        if in_request:
            db.session.execute(insert, {"who": who})
        else:
            with database.writing():  # as an import job writes
                db.session.execute(insert, {"who": who})
        db.session.commit()
        db.session.remove()


def _request_waits(path: str) -> bool:
    """A request holds its shared 'waiting' lock (an exclusive one cannot be had)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_a_waiting_request_writes_before_a_waiting_background_writer(
    sqlite_app, tmp_path
):
    path = str(tmp_path / "wave.db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    # import jobs trying for a while already
    background = [
        threading.Thread(target=_write, args=(sqlite_app, "background", False))
        for _ in range(3)
    ]
    for thread in background:
        thread.start()
    time.sleep(0.3)
    request = threading.Thread(target=_write, args=(sqlite_app, "request", True))
    request.start()
    deadline = time.monotonic() + 5
    while not _request_waits(path + ".writers"):
        assert time.monotonic() < deadline, "the request never waited"
        time.sleep(0.01)
    time.sleep(0.5)  # all wait alike now: SQLite polls each every 100 ms
    holder.execute("COMMIT")
    for thread in [request, *background]:
        thread.join(20)
    order = [r[0] for r in holder.execute("SELECT who FROM turns ORDER BY id")]
    holder.close()
    assert order == ["request", "background", "background", "background"]


def test_a_background_writer_still_gives_up_after_the_busy_timeout(tmp_path):
    app = make_app(
        f"sqlite:///{tmp_path / 'wave.db'}", tmp_path, WAVE_SQLITE_BUSY_MS=300
    )
    holder = sqlite3.connect(str(tmp_path / "wave.db"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with app.app_context():
            locked = pytest.raises(sa.exc.OperationalError, match="database is locked")
            with locked, database.writing():
                db.session.connection()
            db.session.rollback()
            holder.execute("COMMIT")
            # the connection's own busy timeout is back for its next user
            with db.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 300
    finally:
        holder.close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()

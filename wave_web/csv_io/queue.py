"""The queue of import jobs on PostgreSQL: any server process claims and runs them.

A job waiting for work (state `uploaded`: to check; `queued`: to import) with no
`claimed_by` is claimed with `SELECT … FOR UPDATE SKIP LOCKED`, so two processes never
take the same one. The claim's lease is the row's `heartbeat_at`, renewed by the
runner's heartbeat; a claim whose heartbeat is older than WAVE_IMPORT_STALE_SECONDS
belonged to a worker that died. Its import transaction never committed (the runner
holds the row FOR KEY SHARE while importing, which the reclaim skips), so the job is
put back in the queue, at most WAVE_IMPORT_ATTEMPTS times, then failed with nothing
written.

Who claims: every web process (unless WAVE_RUN_JOBS=0) and `flask worker`. SQLite
runs jobs in the process that received the upload (csv_io.runner), as before.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from flask import Flask
from flask import current_app

from wave_web.csv_io import storage
from wave_web.csv_io.runner import INTERRUPTED
from wave_web.csv_io.runner import Runner
from wave_web.csv_io.runner import runner
from wave_web.csv_io.runner import wait_all
from wave_web.extensions import db
from wave_web.models import ImportJob
from wave_web.models import ImportUpload
from wave_web.models import utcnow

log = logging.getLogger(__name__)

WAITING = {"uploaded": "check", "queued": "import"}
GAVE_UP = (
    "Interrupted: the server running this import stopped ({attempts} times). "
    "Nothing was written; upload the file again."
)


class NotNeeded(Exception):
    """`flask worker` on SQLite: the web server runs the jobs itself."""


def is_queue(app: Flask | None = None) -> bool:
    """True when jobs go through the queue (PostgreSQL)."""
    app = app or current_app
    return not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")


def claim(
    owner: str, job_uuid: uuid.UUID | None = None
) -> tuple[uuid.UUID, str] | None:
    """Claim the oldest waiting job (or that one); its uuid and the step to run.

    Its own short transaction: the claim is visible to every process at once.
    """
    table = ImportJob.__table__
    stmt = (
        sa.select(table.c.uuid, table.c.state)
        .where(table.c.state.in_(tuple(WAITING)), table.c.claimed_by.is_(None))
        .order_by(table.c.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if job_uuid is not None:
        stmt = stmt.where(table.c.uuid == job_uuid)
    with db.engine.begin() as conn:
        row = conn.execute(stmt).first()
        if row is None:
            return None
        conn.execute(
            sa.update(table)
            .where(table.c.uuid == row.uuid)
            .values(
                claimed_by=owner,
                heartbeat_at=utcnow(),
                attempts=table.c.attempts + 1,
            )
        )
    return row.uuid, WAITING[row.state]


def reclaim(now: dt.datetime | None = None) -> int:
    """Put jobs whose worker died back in the queue (or fail them); how many.

    Rows locked by a live import transaction are skipped, whatever their heartbeat.
    """
    cfg = current_app.config
    now = now or utcnow()
    stale = now - dt.timedelta(seconds=cfg["WAVE_IMPORT_STALE_SECONDS"])
    table = ImportJob.__table__
    claimed = sa.or_(
        table.c.state.in_(("checking", "importing")),
        sa.and_(table.c.state.in_(tuple(WAITING)), table.c.claimed_by.is_not(None)),
    )
    stmt = (
        sa.select(table.c.uuid, table.c.state, table.c.attempts)
        .where(claimed, table.c.heartbeat_at < stale)
        .limit(20)
        .with_for_update(skip_locked=True)
    )
    count = 0
    with db.engine.begin() as conn:
        for row in conn.execute(stmt).all():
            count += 1
            keep = row.attempts < cfg["WAVE_IMPORT_ATTEMPTS"]
            if keep and storage.is_stored(row.uuid, conn):
                again = row.state in ("uploaded", "checking")
                back = "uploaded" if again else "queued"
                values = {"state": back, "claimed_by": None, "rows_done": 0}
                log.warning("import job %s: its worker stopped; queued again", row.uuid)
            else:
                message = GAVE_UP.format(attempts=row.attempts) if not keep else ""
                values = {
                    "state": "failed",
                    "message": message or INTERRUPTED,
                    "finished_at": now,
                }
                uploads = ImportUpload.__table__
                conn.execute(sa.delete(uploads).where(uploads.c.job_uuid == row.uuid))
                log.warning("import job %s: its worker stopped; failed", row.uuid)
            conn.execute(
                sa.update(table)
                .where(table.c.uuid == row.uuid)
                .values(heartbeat_at=now, **values)
            )
    return count


def dispatch(job_uuid: uuid.UUID, start: str) -> bool:
    """Run a job that just became ready: here at once when this process may.

    SQLite: always here (the in-process pool). PostgreSQL: claimed for this process
    when it runs jobs and has a free slot (or polls nothing itself, then it waits in
    this process's pool); otherwise a polling process takes it. True when this
    process runs it.
    """
    found = runner()
    if found.is_sqlite:
        found.submit(job_uuid, start)
        return True
    if not current_app.config["WAVE_RUN_JOBS"]:
        return False
    if found.free_slots() <= 0 and found.poller is not None:
        return False
    claimed = claim(found.owner, job_uuid)
    if claimed is None:
        return False
    found.submit(*claimed)
    return True


def poll_once(found: Runner) -> int:
    """Reclaim dead workers' jobs, then claim what this process has room for."""
    started = 0
    with found.app.app_context():
        reclaim()
        while found.free_slots() > 0 and not found.stopping.is_set():
            claimed = claim(found.owner)
            if claimed is None:
                break
            found.submit(*claimed)
            started += 1
        db.session.remove()
    return started


def _poll_forever(found: Runner) -> None:
    """The poller thread: it must outlive any error (start_polling never makes a
    second one in this process, so its jobs would wait for other processes)."""
    interval = found.app.config["WAVE_JOB_POLL_SECONDS"]
    while not found.stopping.wait(interval):
        try:
            poll_once(found)
        except sa_exc.SQLAlchemyError:
            log.warning("import jobs: the database is not reachable; polling on")
        except Exception:
            log.exception("import jobs: polling failed; polling on")


def start_polling(app: Flask) -> None:
    """Claim jobs in this process from now on (a thread; once per process)."""
    found = runner(app)
    if found.is_sqlite or found.poller is not None:
        return
    with _start_lock:
        if found.poller is None:
            found.poller = threading.Thread(
                target=_poll_forever, args=(found,), name="wave-jobs", daemon=True
            )
            found.poller.start()


_start_lock = threading.Lock()


def init_app(app: Flask) -> None:
    """Web processes on PostgreSQL claim jobs too, from their first request on.

    Not under tests (each test's app would poll its own database forever) and not
    with WAVE_RUN_JOBS=0 (then `flask worker` runs them).
    """
    if not runs_jobs(app):
        return

    @app.before_request
    def _claim_jobs_here() -> None:
        start_polling(app)  # cheap once started (per process: after a fork too)


def runs_jobs(app: Flask) -> bool:
    """True when this web process claims jobs from the queue (see init_app)."""
    return not app.testing and app.config["WAVE_RUN_JOBS"] and is_queue(app)


def start_in_server(app: object) -> None:
    """From a server's worker start-up (gunicorn.conf.py): claim jobs at once, not
    only from the first request on (jobs of a server that was down resume)."""
    if isinstance(app, Flask) and runs_jobs(app):
        start_polling(app)


def work(app: Flask, stop: threading.Event, until_idle: bool = False) -> int:
    """`flask worker`: claim and run jobs until `stop` is set; how many it ran.

    On stop no new job is claimed; the running ones finish, unless stop is asked
    again (`release`), then they go back to the queue for another worker.
    Raises NotNeeded on SQLite.
    """
    if not is_queue(app):
        raise NotNeeded(
            "Not needed with SQLite: the web server runs import jobs itself (one "
            "server). Separate workers need PostgreSQL (DATABASE_URL)."
        )
    found = runner(app)
    interval = app.config["WAVE_JOB_POLL_SECONDS"]
    ran = 0
    while not stop.is_set():
        try:
            ran += poll_once(found)
        except sa_exc.SQLAlchemyError:
            log.warning("import jobs: the database is not reachable; polling on")
        if until_idle and found.free_slots() == app.config["WAVE_IMPORT_WORKERS"]:
            with app.app_context():
                waiting = _waiting_count()
            if not waiting:
                break
        stop.wait(interval)
    return ran


def run_worker(
    app: Flask, until_idle: bool = False, ready: Callable[[], None] | None = None
) -> int:
    """`flask worker` with its signals: the first SIGTERM/SIGINT stops claiming and
    lets running jobs finish; a second one hands them back to the queue at once."""
    if not is_queue(app):
        work(app, threading.Event())  # raises NotNeeded
    found = runner(app)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            log.warning("worker: handing running import jobs back to the queue")
            found.release_all()
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    if ready is not None:
        ready()
    try:
        ran = work(app, stop, until_idle)
        while not wait_all(0.5):
            pass
        found.shutdown()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return ran


def _waiting_count() -> int:
    table = ImportJob.__table__
    stmt = sa.select(sa.func.count()).where(
        table.c.state.in_(tuple(WAITING)), table.c.claimed_by.is_(None)
    )
    with db.engine.connect() as conn:
        return conn.execute(stmt).scalar_one()


def wait_for_state(
    job_uuid: uuid.UUID, seconds: float, active: tuple[str, ...]
) -> None:
    """Wait up to `seconds` while the job's row is in an active state (any server)."""
    table = ImportJob.__table__
    stmt = sa.select(table.c.state).where(table.c.uuid == job_uuid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with db.engine.connect() as conn:
            state = conn.execute(stmt).scalar()
        if state not in active:
            return
        time.sleep(0.1)

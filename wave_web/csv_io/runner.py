"""The runner of import jobs: a thread pool per process, live progress, heartbeats.

Checks and imports run in a small thread pool per process, each with its own app
context and session, so no request waits long enough for a worker timeout.

Live progress is kept in an in-process registry (`_live`), which the pages read first:
on SQLite the import transaction holds the database's write lock from start to end,
so nothing else, not even a progress counter, can be written meanwhile. A heartbeat
thread per job writes progress to the row when that cannot block (PostgreSQL: always,
in short transactions of its own; SQLite: outside the import phase, when no import
holds the lock). On SQLite a job seen in an active state with an old heartbeat and no
thread in this process is shown, and later stored, as failed ("interrupted"): its
transaction never committed, so it left no rows.

On PostgreSQL any server process runs jobs it claimed from the table (csv_io.queue):
the runner's `owner` is written in the row's `claimed_by`, the heartbeat is the claim's
lease, and every write of the runner applies only while the claim is still its own.
The upload is copied from the database (csv_io.storage) for the run and removed after.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from flask import Flask
from flask import current_app
from flask import g
from flask import has_app_context

from wave_web import columns
from wave_web import database
from wave_web.csv_io import storage
from wave_web.csv_io.importing import ImportOptions
from wave_web.csv_io.importing import ImportRefused
from wave_web.csv_io.importing import Report
from wave_web.csv_io.importing import check_file
from wave_web.csv_io.importing import import_file
from wave_web.csv_io.options import options_from_json
from wave_web.csv_io.options import remember
from wave_web.csv_io.reading import FileRefused
from wave_web.csv_io.uploads import job_path
from wave_web.csv_io.uploads import remove_file
from wave_web.errors import NotFound
from wave_web.errors import is_database_down
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import ImportJob
from wave_web.models import record
from wave_web.models import utcnow

log = logging.getLogger(__name__)

ACTIVE_STATES = ("uploaded", "checking", "queued", "importing")
INTERRUPTED = (
    "Interrupted: the server stopped while this job was running. "
    "Nothing was written; upload the file again."
)
UNEXPECTED = "The import stopped on an unexpected error. Nothing was written."
DATABASE_LOST = (
    "The connection to the database was lost during the import. Nothing was "
    "written; upload the file again."
)
CANCELLED = "Cancelled. Nothing was written."
ABANDONED = "Not confirmed in time; the uploaded file was deleted. Nothing was written."


class Cancelled(Exception):
    """Raised from the progress callback when the user asked to stop."""


# ----------------------------------------------------------------------
# The in-process registry of running jobs
# ----------------------------------------------------------------------


@dataclass
class Live:
    """What this process knows about a job it runs; the row may lag behind."""

    job_uuid: uuid.UUID
    phase: str = "waiting"  # waiting, checking, locked (for the lock), importing
    rows_done: int = 0
    rows_total: int | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    # The row to insert, while an SQLite import holds the write lock (see start()).
    pending: dict[str, Any] | None = None
    # Who started this run, for the audit entry: (g.audit_actor, g.audit_addr).
    actor: tuple[str | None, str | None] = (None, None)
    # Stopped by a worker's shutdown: the job goes back to the queue, not cancelled.
    release: bool = False

    def progress(self, rows_done: int) -> None:
        """The pipeline's progress callback: count, and stop when asked to."""
        self.rows_done = rows_done
        if self.cancel.is_set():
            raise Cancelled()


_live: dict[uuid.UUID, Live] = {}
_live_lock = threading.Lock()


def live_job(job_uuid: uuid.UUID | str) -> Live | None:
    """The job's live state when this process is running it."""
    try:
        key = uuid.UUID(str(job_uuid))
    except ValueError:
        return None
    with _live_lock:
        return _live.get(key)


def _register(job_uuid: uuid.UUID) -> Live | None:
    with _live_lock:
        if job_uuid in _live:
            return None
        live = _live[job_uuid] = Live(job_uuid)
        return live


def _unregister(live: Live) -> None:
    with _live_lock:
        _live.pop(live.job_uuid, None)
    live.done.set()


# ----------------------------------------------------------------------
# The runner: a thread pool per app (so per process)
# ----------------------------------------------------------------------


class Runner:
    """Runs jobs in threads; on SQLite one import at a time (the write lock)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(
            max_workers=app.config["WAVE_IMPORT_WORKERS"],
            thread_name_prefix="wave-import",
        )
        # Reentrant: the import thread holds it and also stores its own outcome.
        self.sqlite_writes = threading.RLock()
        self.importing = 0  # imports inside the SQLite lock (0 or 1)
        self.pid = os.getpid()
        with app.app_context():
            self.is_sqlite = db.engine.dialect.name == "sqlite"
        # PostgreSQL: who claims jobs (import_jobs.claimed_by); None on SQLite.
        self.owner = (
            None
            if self.is_sqlite
            else f"{socket.gethostname()[:60]}:{self.pid}:{secrets.token_hex(4)}"
        )
        self.stopping = threading.Event()
        self.poller: threading.Thread | None = None

    def submit(
        self, job_uuid: uuid.UUID, start: str, pending: dict | None = None
    ) -> Live | None:
        """Run a job from `start` ("create", "check" or "import"); None if running."""
        live = _register(job_uuid)
        if live is None:
            return None
        live.phase = "pending" if pending is not None else "waiting"
        live.pending = pending
        if has_app_context():
            live.actor = (g.get("audit_actor"), g.get("audit_addr"))
        self.pool.submit(self._work, live, start)
        beat = threading.Thread(
            target=self._beat, args=(live,), name="wave-heartbeat", daemon=True
        )
        beat.start()
        return live

    def free_slots(self) -> int:
        """How many more jobs this process may run now."""
        with _live_lock:
            running = len(_live)
        return self.app.config["WAVE_IMPORT_WORKERS"] - running

    def release_all(self) -> None:
        """Stop every running job of this process and hand it back to the queue."""
        with _live_lock:
            running = list(_live.values())
        for live in running:
            live.release = True
            live.cancel.set()

    def shutdown(self, wait: bool = True) -> None:
        self.stopping.set()
        if self.poller is not None and self.poller is not threading.current_thread():
            self.poller.join(10)
        self.pool.shutdown(wait=wait)

    # -- writes that must not collide with a running SQLite import -----------

    @contextlib.contextmanager
    def exclusive_write(self) -> Iterator[None]:
        """On SQLite, run a long write as an import (a type from a file): one at a time,
        and uploads arriving meanwhile are deferred (must_wait_for_import)."""
        if not self.is_sqlite:
            yield
            return
        with self.sqlite_writes:
            self.importing += 1
            try:
                yield
            finally:
                self.importing -= 1

    @contextlib.contextmanager
    def writing(self, blocking: bool = True) -> Iterator[bool]:
        """On SQLite, hold the import lock for a short write (yields False if busy)."""
        if not self.is_sqlite:
            yield True
            return
        got = self.sqlite_writes.acquire(blocking=blocking)
        try:
            yield got
        finally:
            if got:
                self.sqlite_writes.release()

    # -- the work -------------------------------------------------------------

    def _work(self, live: Live, start: str) -> None:
        with self.app.app_context():
            g.audit_actor, g.audit_addr = live.actor
            try:
                if self.owner is not None:
                    storage.ensure_local(live.job_uuid)
                first = {
                    "create": self._create,
                    "recheck": self._decide,
                    "confirm": self._decide,
                    "discard": self._decide,
                }.get(start)
                if first is not None and not first(live, start):
                    return
                if start in ("create", "check", "recheck") and not self._check(live):
                    return
                self._import(live)
            except Exception as exc:
                log.exception("import job %s failed", live.job_uuid)
                db.session.rollback()
                lost = is_database_down(exc)  # e.g. restarted: its transaction is gone
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    self._finish(
                        live.job_uuid,
                        "failed",
                        message=DATABASE_LOST if lost else UNEXPECTED,
                    )
            finally:
                db.session.rollback()
                if self.owner is not None:  # the database keeps the upload
                    remove_file(job_path(live.job_uuid))
                _unregister(live)

    def _decide(self, live: Live, start: str) -> bool:
        """A preview's decision made while an import held the SQLite lock."""
        new = {"recheck": "uploaded", "confirm": "queued", "discard": "cancelled"}
        values = dict(live.pending or {})
        if start == "discard":
            values |= {"message": "Discarded the upload.", "finished_at": utcnow()}
        with self.writing():
            changed = transition(live.job_uuid, new[start], **values)
        live.pending = None
        if start == "discard" and changed:
            remove_file(job_path(live.job_uuid, self.app.config["WAVE_UPLOAD_DIR"]))
        return changed and start != "discard"

    def _create(self, live: Live, start: str = "create") -> bool:
        """Insert the row of an upload that arrived while an import held the lock."""
        with self.writing():
            try:
                db.session.add(ImportJob(**live.pending))
                db.session.commit()
            except sa_exc.IntegrityError:  # the experiment was deleted meanwhile
                db.session.rollback()
                remove_file(job_path(live.job_uuid))
                return False
        live.pending = None
        return True

    def _check(self, live: Live) -> bool:
        """Check the file; True when the import should follow (one-step jobs)."""
        info = _load(live.job_uuid)
        if info is None:
            return False
        if info.cancel_requested or live.cancel.is_set():
            self._cancelled(live)
            return False
        if info.auto_confirm:
            # One step (scripts): the import checks every cell itself and writes
            # nothing when one is bad, so a separate check would read the file twice.
            # The version of the upload (else of now) tells the import whether the
            # type changed meanwhile.
            live.phase = "saving"
            with self.writing():
                saved = set_job(
                    info.uuid,
                    owner=self.owner,
                    only_if=("uploaded",),
                    state="queued",
                    started_at=utcnow(),
                    rows_done=0,
                    schema_version=(
                        info.schema_version
                        if info.uploaded_version is None
                        else info.uploaded_version
                    ),
                    heartbeat_at=utcnow(),
                )
            return saved
        with self.writing(blocking=False) as free:
            if free:
                set_job(
                    info.uuid,
                    owner=self.owner,
                    only_if=("uploaded",),
                    state="checking",
                    started_at=utcnow(),
                    rows_done=0,
                )
        live.phase = "checking"
        try:
            report = check_file(info.xtype, info.path, info.options, live.progress)
        except FileRefused as exc:
            self._finish(info.uuid, "failed", message=exc.message)
            return False
        except Cancelled:
            self._cancelled(live)
            return False
        if live.cancel.is_set():  # asked while the last rows were checked
            self._cancelled(live)
            return False
        go_on = report.ok and info.auto_confirm
        live.phase = "saving"  # on SQLite, an import may hold the lock for long
        with self.writing():
            saved = set_job(
                info.uuid,
                owner=self.owner,
                only_if=("uploaded", "checking"),
                state="queued" if go_on else "checked",
                # a preview waits for a decision; a one-step job stays claimed
                claimed_by=self.owner if go_on else None,
                report=report.bounded_json(),
                rows_total=report.rows,
                rows_done=report.rows,
                schema_version=info.schema_version,
                heartbeat_at=utcnow(),
                message=None if report.ok else report.summary(),
            )
        if saved and live.cancel.is_set():  # asked while waiting to store the check
            self._cancelled(live)
            return False
        return go_on and saved

    def _import(self, live: Live) -> None:
        info = _load(live.job_uuid)
        if info is None or info.state != "queued":
            return
        if info.cancel_requested or live.cancel.is_set():
            self._cancelled(live)
            return
        live.rows_total, live.rows_done = info.rows_total, 0
        with self.writing(blocking=False) as free:
            if free:
                set_job(
                    info.uuid,
                    owner=self.owner,
                    only_if=("queued",),
                    state="importing",
                    rows_done=0,
                    heartbeat_at=utcnow(),
                )
        live.phase = "locked"
        try:
            with self._import_lock(live):
                live.phase = "importing"
                self._import_locked(info, live)
        except Cancelled:
            db.session.rollback()
            self._cancelled(live)

    @contextlib.contextmanager
    def _import_lock(self, live: Live) -> Iterator[None]:
        """On SQLite, wait for the other import of this process (cancellable)."""
        if not self.is_sqlite:
            yield
            return
        while not self.sqlite_writes.acquire(timeout=0.5):
            if live.cancel.is_set():
                raise Cancelled()
        self.importing += 1
        try:
            yield
        finally:
            self.importing -= 1
            self.sqlite_writes.release()

    def _import_locked(self, info: _JobInfo, live: Live) -> None:
        """The import transaction: rows, the job's final state and the audit entry."""
        _begin_write(info.uuid, live)
        if self.owner is not None and not _hold(info.uuid, self.owner):
            db.session.rollback()  # claimed again by another worker meanwhile
            return
        xtype = db.session.get(ExperimentType, info.xtype_id)
        changed = (
            xtype is not None
            and info.schema_version is not None  # a job queued before it was kept
            and xtype.schema_version != info.schema_version
        )
        try:
            report = import_file(
                xtype, info.experiment_uuid, info.path, info.options, live.progress
            )
        except ImportRefused as exc:
            db.session.rollback()
            self._refused(info, exc.report, changed, xtype)
            return
        except (FileRefused, NotFound) as exc:
            db.session.rollback()
            self._finish(info.uuid, "failed", message=exc.message)
            return
        note = f" {_changed(info)}, so the file was checked again." if changed else ""
        verb = "Updated" if info.options.mode == "update" else "Imported"
        rows = f"{report.written:,} row{'s' if report.written != 1 else ''}"
        message = f"{verb} {rows}.{note}"
        if not set_job(
            info.uuid,
            commit=False,
            owner=self.owner,
            only_if=("queued", "importing"),
            state="succeeded",
            rows_done=report.written,
            report=report.bounded_json(),
            message=message,
            finished_at=utcnow(),
            heartbeat_at=utcnow(),
        ):
            db.session.rollback()  # the job (so its experiment) was deleted meanwhile
            return
        record(
            "rows.import",
            "experiment",
            info.experiment_uuid,
            f"{verb} {rows} from “{columns.shorten(info.file_name)}” "
            f"({info.options.mode})",
            file_name=info.file_name,
            file_size=info.file_size,
            sha256=info.sha256,
            rows=report.written,
            mode=info.options.mode,
            job=str(info.uuid),
            table=xtype.table_name,
        )
        if info.options.mode == "insert":
            remember(xtype, report, info.options)  # the next such file: one click
        storage.delete_stored(info.uuid)  # with the rows: all or nothing
        db.session.commit()
        remove_file(info.path)

    def _refused(
        self, info: _JobInfo, report: Report, changed: bool, xtype: Any
    ) -> None:
        """A refused import: failed, or back to its preview when the type changed.

        A one-step job has no preview to go back to: it fails and its file goes.
        """
        message = report.summary()
        if changed:
            message = f"{_changed(info)}, so the file was checked again. {message}"
        if changed and not info.auto_confirm:
            # The preview no longer holds: back to the preview, with the new problems.
            with self.writing():
                set_job(
                    info.uuid,
                    owner=self.owner,
                    state="checked",
                    claimed_by=None,
                    report=report.bounded_json(),
                    rows_total=report.rows,
                    schema_version=xtype.schema_version,
                    message=message,
                    heartbeat_at=utcnow(),
                )
            return
        self._finish(info.uuid, "failed", message=message, report=report.bounded_json())

    def _finish(self, job_uuid: uuid.UUID, state: str, **values: Any) -> None:
        """Store a final state in a short transaction and delete the job's upload."""
        with self.writing():
            if set_job(
                job_uuid,
                commit=False,
                owner=self.owner,
                only_if=ACTIVE_STATES + ("checked",),
                state=state,
                finished_at=utcnow(),
                heartbeat_at=utcnow(),
                **values,
            ):
                storage.delete_stored(job_uuid)
            db.session.commit()
        remove_file(job_path(job_uuid, self.app.config["WAVE_UPLOAD_DIR"]))

    def _cancelled(self, live: Live) -> None:
        """A stopped job: cancelled, or back in the queue when its worker stops."""
        if not live.release:
            self._finish(live.job_uuid, "cancelled", message=CANCELLED)
            return
        back = {"uploaded": "uploaded", "checking": "uploaded"}
        back |= {"queued": "queued", "importing": "queued"}
        for before, after in back.items():
            if set_job(
                live.job_uuid,
                owner=self.owner,
                only_if=(before,),
                state=after,
                claimed_by=None,
                rows_done=0,
                attempts=ImportJob.attempts - 1,  # not a failed attempt
            ):
                return

    # -- heartbeat ------------------------------------------------------------

    def _beat(self, live: Live) -> None:
        interval = self.app.config["WAVE_IMPORT_HEARTBEAT_SECONDS"]
        while not live.done.wait(interval):
            try:
                self._write_heartbeat(live)
            except sa_exc.SQLAlchemyError:
                log.warning("heartbeat of import job %s failed", live.job_uuid)

    def _write_heartbeat(self, live: Live) -> None:
        """Progress and liveness into the row, in a short transaction of its own."""
        if self.is_sqlite and live.phase in ("pending", "locked", "importing"):
            return  # the import transaction holds (or waits for) the write lock
        table = ImportJob.__table__
        stmt = (
            sa.update(table)
            .where(table.c.uuid == live.job_uuid, table.c.state.in_(ACTIVE_STATES))
            .where(table.c.claimed_by == self.owner if self.owner else sa.true())
            .values(heartbeat_at=utcnow(), rows_done=live.rows_done)
            .returning(table.c.cancel_requested)
        )
        with self.app.app_context(), self.writing(blocking=False) as free:
            if not free:
                return
            with db.engine.begin() as conn:
                cancel = conn.execute(stmt).scalar()
        if cancel:
            live.cancel.set()


def _changed(info: _JobInfo) -> str:
    """The start of a message saying the type changed since the job's check."""
    since = "upload" if info.auto_confirm else "check"
    return f"The experiment type changed after the {since} (its columns were edited)"


_runners_lock = threading.Lock()


def runner(app: Flask | None = None) -> Runner:
    """The app's job runner, created on first use (after a fork: per process)."""
    app = app or current_app._get_current_object()
    with _runners_lock:
        found = app.extensions.get("wave_import_runner")
        if found is None or found.pid != os.getpid():
            found = app.extensions["wave_import_runner"] = Runner(app)
        return found


def wait(job_uuid: uuid.UUID, seconds: float) -> bool:
    """Wait up to `seconds` for a job this process runs; True when it stopped."""
    live = live_job(job_uuid)
    return live is None or live.done.wait(seconds)


def wait_all(seconds: float = 30) -> bool:
    """Wait for every job of this process (tests, shutdown); True when none is left."""
    deadline = time.monotonic() + seconds
    while True:
        with _live_lock:
            running = list(_live.values())
        if not running:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        running[0].done.wait(min(left, 0.5))


# ----------------------------------------------------------------------
# Rows of import_jobs
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class _JobInfo:
    """A job's row and type as plain values, read in a transaction that then ends."""

    uuid: uuid.UUID
    experiment_uuid: uuid.UUID
    state: str
    file_name: str
    file_size: int
    sha256: str
    options: ImportOptions
    auto_confirm: bool
    cancel_requested: bool
    rows_total: int | None
    schema_version: int | None  # of the check (import) or of the type now (check)
    uploaded_version: int | None  # of the upload, for one-step jobs
    xtype_id: int
    xtype: Any
    path: str


def _load(job_uuid: uuid.UUID) -> _JobInfo | None:
    job = db.session.get(ImportJob, job_uuid)
    if job is None:
        db.session.rollback()
        return None
    experiment = db.session.get(Experiment, job.experiment_uuid)
    if experiment is None:  # deleted meanwhile (the job row goes with it)
        db.session.rollback()
        return None
    xtype = experiment.experiment_type
    xtype.schema_definition  # noqa: B018  (load it before detaching)
    info = _JobInfo(
        uuid=job.uuid,
        experiment_uuid=job.experiment_uuid,
        state=job.state,
        file_name=job.file_name,
        file_size=job.file_size,
        sha256=job.sha256,
        options=options_from_json(job.options),
        auto_confirm=job.auto_confirm,
        cancel_requested=job.cancel_requested,
        rows_total=job.rows_total,
        schema_version=(
            job.schema_version if job.state == "queued" else xtype.schema_version
        ),
        uploaded_version=job.schema_version if job.auto_confirm else None,
        xtype_id=xtype.id,
        xtype=xtype,
        path=job_path(job.uuid),
    )
    db.session.expunge(xtype)  # the check reads its columns without a transaction
    db.session.rollback()
    return info


def set_job(
    job_uuid: uuid.UUID,
    only_if: tuple[str, ...] | None = None,
    commit: bool = True,
    owner: str | None = None,
    **values: Any,
) -> bool:
    """Update one job row (in the current session); False when no row matched.

    With `owner`, only while that worker's claim holds (PostgreSQL).
    """
    stmt = sa.update(ImportJob).where(ImportJob.uuid == job_uuid).values(**values)
    if only_if:
        stmt = stmt.where(ImportJob.state.in_(only_if))
    if owner is not None:
        stmt = stmt.where(ImportJob.claimed_by == owner)
    result = db.session.execute(stmt.execution_options(synchronize_session=False))
    if commit:
        db.session.commit()
    return result.rowcount > 0


LOCK_WAIT_SECONDS = 600


def _begin_write(job_uuid: uuid.UUID, live: Live) -> None:
    """Begin the import transaction, locked against what must not happen meanwhile.

    SQLite: BEGIN IMMEDIATE (a transaction that reads first and writes later fails at
    once when another connection wrote in between), retried while another process
    holds the lock. PostgreSQL: the experiment is locked against deletion with KEY
    SHARE, as a foreign key check would, which two imports can hold together.
    """
    if db.engine.dialect.name != "sqlite":
        stmt = (
            sa.select(Experiment.uuid)
            .join(ImportJob, ImportJob.experiment_uuid == Experiment.uuid)
            .where(ImportJob.uuid == job_uuid)
            .with_for_update(read=True, key_share=True, of=Experiment)
        )
        db.session.execute(stmt)
        return
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            with database.writing():
                db.session.connection()  # BEGIN IMMEDIATE waits (busy timeout)
            return
        except sa_exc.OperationalError:
            db.session.rollback()
            if live.cancel.is_set():
                raise Cancelled() from None
            if time.monotonic() > deadline:
                raise


def transition(job_uuid: uuid.UUID, new: str, **values: Any) -> bool:
    """Leave the preview if the job still is in it (two clicks cannot both win).

    The next step is a new claim with its own attempts (PostgreSQL).
    """
    return set_job(
        job_uuid,
        only_if=("checked",),
        state=new,
        heartbeat_at=utcnow(),
        cancel_requested=False,
        claimed_by=None,
        attempts=0,
        **values,
    )


def _hold(job_uuid: uuid.UUID, owner: str) -> bool:
    """In the import transaction: lock the job's row against being claimed again
    (FOR KEY SHARE: the heartbeat's updates still pass) and say if it is ours."""
    stmt = (
        sa.select(ImportJob.claimed_by, ImportJob.state)
        .where(ImportJob.uuid == job_uuid)
        .with_for_update(read=True, key_share=True)
    )
    row = db.session.execute(stmt).first()
    return (
        row is not None
        and row.claimed_by == owner
        and row.state in ("queued", "importing")
    )

"""CSV import jobs: uploads kept on disk, checked and imported in background threads.

A job is a row of `import_jobs` plus a file in the upload folder named by the job's
uuid (the user's file name is only ever displayed). Its life:

    uploaded → checking → checked → queued → importing → succeeded | failed | cancelled

Checks and imports run in a small thread pool per process, each with its own app
context and session, so no request waits long enough for a worker timeout.

Live progress is kept in an in-process registry (`_live`), which the pages read first:
on SQLite the import transaction holds the database's write lock from start to end,
so nothing else, not even a progress counter, can be written meanwhile. A heartbeat
thread per job writes progress to the row when that cannot block (PostgreSQL: always,
in short transactions of its own; SQLite: outside the import phase, when no import
holds the lock). A job seen in an active state with an old heartbeat and no thread in
this process is shown, and later stored, as failed ("interrupted"): its transaction
never committed, so it left no rows.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import io
import itertools
import logging
import os
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from typing import IO
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from flask import Flask
from flask import current_app
from flask import g
from flask import has_app_context

from wave_web import columns
from wave_web import database
from wave_web.csv_io.importing import MISSING_TOKENS
from wave_web.csv_io.importing import ImportOptions
from wave_web.csv_io.importing import ImportRefused
from wave_web.csv_io.importing import Report
from wave_web.csv_io.importing import check_file
from wave_web.csv_io.importing import import_file
from wave_web.csv_io.importing import mapping_from_form
from wave_web.csv_io.importing import offending_rows
from wave_web.csv_io.reading import FileRefused
from wave_web.errors import Conflict
from wave_web.errors import InvalidValue
from wave_web.errors import NotFound
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import ImportJob
from wave_web.models import record
from wave_web.models import utcnow

log = logging.getLogger(__name__)

ACTIVE_STATES = ("uploaded", "checking", "queued", "importing")
COPY_CHUNK = 1024 * 1024
MAX_FILE_NAME = 255
BY_NAME = "?"  # mapping form value: match the header text by name
PARTICIPANT_ALIASES = (
    "participant",
    "participant_nr",
    "participant_number",
    "participant_private_id",
    "participant_public_id",
    "subject",
    "subject_id",
    "subject_nr",
    "subject_number",
    "subj",
    "sub",
    "vp",
    "vp_nr",
    "prolific_pid",
    "responseid",
    "worker_id",
    "workerid",
)
INTERRUPTED = (
    "Interrupted: the server stopped while this job was running. "
    "Nothing was written; upload the file again."
)
UNEXPECTED = "The import stopped on an unexpected error. Nothing was written."
CANCELLED = "Cancelled. Nothing was written."
ABANDONED = "Not confirmed in time; the uploaded file was deleted. Nothing was written."


class Cancelled(Exception):
    """Raised from the progress callback when the user asked to stop."""


# ----------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    path: str
    size: int
    sha256: str


def upload_dir() -> str:
    return current_app.config["WAVE_UPLOAD_DIR"]


def job_path(job_uuid: uuid.UUID, folder: str | None = None) -> str:
    """Where a job's file lives: named by the uuid only, never by user input."""
    return os.path.join(folder or upload_dir(), uuid.UUID(str(job_uuid)).hex + ".csv")


def remove_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def store_upload(stream: IO[bytes], job_uuid: uuid.UUID) -> StoredFile:
    """Copy an upload into the upload folder in chunks, measuring and hashing it.

    The copy is written as `<uuid>.part` and renamed when complete, so a half-written
    file never looks like an upload; on any failure it is removed.
    """
    folder = upload_dir()
    os.makedirs(folder, exist_ok=True)
    final = job_path(job_uuid, folder)
    part = final + ".part"
    digest = hashlib.sha256()
    size = 0
    try:
        with open(part, "xb") as out:
            while chunk := stream.read(COPY_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        os.replace(part, final)
    except BaseException:
        remove_file(part)
        raise
    return StoredFile(final, size, digest.hexdigest())


def display_name(raw: str | None) -> str:
    """The user's file name for display: last path part, no control characters."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:MAX_FILE_NAME] or "upload.csv"


# ----------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------


def options_from_form(form: Mapping[str, str]) -> ImportOptions:
    """ImportOptions from the upload or mapping form; InvalidValue names the field.

    Mapping selects (`map-<position>`) hold a target column, "" to ignore the column,
    or BY_NAME to match its header text; with `ignore_unmatched` the last become "".
    """
    mode = form.get("mode") or "insert"
    if mode not in ("insert", "update"):
        raise InvalidValue("Choose insert or update.", field="mode")
    ignore = bool(form.get("ignore_unmatched"))
    mapping = {}
    for position, target in mapping_from_form(form.items()).items():
        if len(target) > 100:
            raise InvalidValue("A mapping target is too long.", field="mapping")
        if target == BY_NAME:
            if ignore:
                mapping[position] = ""
        else:
            mapping[position] = target
    missing = frozenset(MISSING_TOKENS) if form.get("missing") else frozenset()
    return ImportOptions(mode=mode, mapping=mapping, missing=missing)


def options_to_json(options: ImportOptions) -> dict[str, Any]:
    return {
        "mode": options.mode,
        "mapping": sorted([p, t] for p, t in options.mapping.items()),
        "missing": sorted(options.missing),
    }


def options_from_json(data: Mapping[str, Any]) -> ImportOptions:
    return ImportOptions(
        mode=data.get("mode", "insert"),
        mapping={int(p): t for p, t in data.get("mapping", [])},
        missing=frozenset(data.get("missing", [])),
    )


def _loose(text: str) -> str:
    return columns.suggest_name(text) if text.strip() else ""


def proposed_targets(report: Report, xtype: Any, options: ImportOptions) -> dict:
    """The target each mapping select shows: the current one, or a proposal.

    An unmatched column whose name is a usual participant column (`subject_nr`,
    `participant`, …) is proposed for participant_id when no column has it yet; the
    user confirms it by checking again.
    """
    chosen = {c.position: c.target or "" for c in report.header}
    used = {t for t in chosen.values() if t}
    for cell in report.header:
        if cell.position in options.mapping or cell.target:
            continue
        chosen[cell.position] = BY_NAME  # unnamed columns: checked to be empty
        if not cell.text.strip():
            continue
        if "participant_id" not in used and _loose(cell.text) in PARTICIPANT_ALIASES:
            chosen[cell.position] = "participant_id"
            used.add("participant_id")
    return chosen


def mapping_choices(xtype: Any, mode: str) -> list[tuple[str, str]]:
    """(value, label) of every column a file column can go to."""
    choices = [("participant_id", "participant_id (STRING)")]
    if mode == "update":
        choices.insert(0, ("id", "id (row to update)"))
    choices += [(c.name, f"{c.name} ({c.type})") for c in xtype.columns]
    return choices


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

    def shutdown(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait)

    # -- writes that must not collide with a running SQLite import -----------

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
            except Exception:
                log.exception("import job %s failed", live.job_uuid)
                db.session.rollback()
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    self._finish(live.job_uuid, "failed", message=UNEXPECTED)
            finally:
                db.session.rollback()
                _unregister(live)

    def _decide(self, live: Live, start: str) -> bool:
        """A preview's decision made while an import held the SQLite lock."""
        new = {"recheck": "uploaded", "confirm": "queued", "discard": "cancelled"}
        values = dict(live.pending or {})
        if start == "discard":
            values |= {"message": "Discarded the upload.", "finished_at": utcnow()}
        with self.writing():
            changed = _transition(live.job_uuid, new[start], **values)
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
            self._finish(info.uuid, "cancelled", message=CANCELLED)
            return False
        if info.auto_confirm:
            # One step (scripts): the import checks every cell itself and writes
            # nothing when one is bad, so a separate check would read the file twice.
            live.phase = "saving"
            with self.writing():
                saved = _set(
                    info.uuid,
                    only_if=("uploaded",),
                    state="queued",
                    started_at=utcnow(),
                    rows_done=0,
                    heartbeat_at=utcnow(),
                )
            return saved
        with self.writing(blocking=False) as free:
            if free:
                _set(
                    info.uuid,
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
            self._finish(info.uuid, "cancelled", message=CANCELLED)
            return False
        if live.cancel.is_set():  # asked while the last rows were checked
            self._finish(info.uuid, "cancelled", message=CANCELLED)
            return False
        go_on = report.ok and info.auto_confirm
        live.phase = "saving"  # on SQLite, an import may hold the lock for long
        with self.writing():
            saved = _set(
                info.uuid,
                only_if=("uploaded", "checking"),
                state="queued" if go_on else "checked",
                report=report.to_json(),
                rows_total=report.rows,
                rows_done=report.rows,
                schema_version=info.schema_version,
                heartbeat_at=utcnow(),
                message=None if report.ok else report.summary(),
            )
        if saved and live.cancel.is_set():  # asked while waiting to store the check
            self._finish(info.uuid, "cancelled", message=CANCELLED)
            return False
        return go_on and saved

    def _import(self, live: Live) -> None:
        info = _load(live.job_uuid)
        if info is None or info.state != "queued":
            return
        if info.cancel_requested or live.cancel.is_set():
            self._finish(info.uuid, "cancelled", message=CANCELLED)
            return
        live.rows_total, live.rows_done = info.rows_total, 0
        with self.writing(blocking=False) as free:
            if free:
                _set(
                    info.uuid,
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
            self._finish(info.uuid, "cancelled", message=CANCELLED)

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
        xtype = db.session.get(ExperimentType, info.xtype_id)
        changed = xtype is not None and xtype.schema_version != info.schema_version
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
        note = (
            " The experiment type changed after the check, so the file was checked "
            "again against the new columns."
            if changed
            else ""
        )
        verb = "Updated" if info.options.mode == "update" else "Imported"
        rows = f"{report.written:,} row{'s' if report.written != 1 else ''}"
        message = f"{verb} {rows}.{note}"
        if not _set(
            info.uuid,
            commit=False,
            only_if=("queued", "importing"),
            state="succeeded",
            rows_done=report.written,
            report=report.to_json(),
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
        db.session.commit()
        remove_file(info.path)

    def _refused(
        self, info: _JobInfo, report: Report, changed: bool, xtype: Any
    ) -> None:
        if changed:
            # The preview no longer holds: back to the preview, with the new problems.
            with self.writing():
                _set(
                    info.uuid,
                    state="checked",
                    report=report.to_json(),
                    rows_total=report.rows,
                    schema_version=xtype.schema_version,
                    message=(
                        "The experiment type changed after the check (its columns "
                        "were edited), so the file was checked again and nothing was "
                        "imported: " + report.summary()
                    ),
                    heartbeat_at=utcnow(),
                )
            return
        self._finish(
            info.uuid, "failed", message=report.summary(), report=report.to_json()
        )

    def _finish(self, job_uuid: uuid.UUID, state: str, **values: Any) -> None:
        """Store a final state in a short transaction and delete the job's file."""
        with self.writing():
            _set(
                job_uuid,
                only_if=ACTIVE_STATES + ("checked",),
                state=state,
                finished_at=utcnow(),
                heartbeat_at=utcnow(),
                **values,
            )
        remove_file(job_path(job_uuid, self.app.config["WAVE_UPLOAD_DIR"]))

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
    schema_version: int  # of the check (import) or of the type now (check)
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
        xtype_id=xtype.id,
        xtype=xtype,
        path=job_path(job.uuid),
    )
    db.session.expunge(xtype)  # the check reads its columns without a transaction
    db.session.rollback()
    return info


def _set(
    job_uuid: uuid.UUID,
    only_if: tuple[str, ...] | None = None,
    commit: bool = True,
    **values: Any,
) -> bool:
    """Update one job row (in the current session); False when no row matched."""
    stmt = sa.update(ImportJob).where(ImportJob.uuid == job_uuid).values(**values)
    if only_if:
        stmt = stmt.where(ImportJob.state.in_(only_if))
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


def reap(now: dt.datetime | None = None) -> int:
    """Store interrupted jobs as failed, abandoned previews as cancelled; delete files.

    Runs in the caller's write transaction (the upload's), so on SQLite no import is
    running anywhere meanwhile. Also removes files no job owns any more.
    """
    now = now or utcnow()
    cfg = current_app.config
    stale = now - dt.timedelta(seconds=cfg["WAVE_IMPORT_STALE_SECONDS"])
    abandoned = now - dt.timedelta(hours=cfg["WAVE_IMPORT_ABANDON_HOURS"])
    count = 0
    stmt = (
        sa.select(ImportJob)
        .where(
            sa.or_(
                sa.and_(
                    ImportJob.state.in_(ACTIVE_STATES), ImportJob.heartbeat_at < stale
                ),
                sa.and_(
                    ImportJob.state == "checked", ImportJob.heartbeat_at < abandoned
                ),
            )
        )
        .limit(100)
    )
    for job in db.session.scalars(stmt):
        if job.state != "checked" and live_job(job.uuid) is not None:
            continue
        interrupted = job.state != "checked"
        job.state = "failed" if interrupted else "cancelled"
        job.message = INTERRUPTED if interrupted else ABANDONED
        job.finished_at = now
        remove_file(job_path(job.uuid))
        count += 1
    _remove_orphans(abandoned)
    return count


def _remove_orphans(older_than: dt.datetime) -> None:
    """Files of the upload folder no active or checked job owns, once old."""
    folder = upload_dir()
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    limit = older_than.timestamp()
    old = [e for e in entries if e.is_file() and e.stat().st_mtime < limit]
    if not old:
        return
    keep = set(
        db.session.scalars(
            sa.select(ImportJob.uuid).where(
                ImportJob.state.in_(ACTIVE_STATES + ("checked",))
            )
        )
    )
    kept_names = {job_path(u, folder) for u in keep}
    for entry in old:
        if entry.path not in kept_names:
            remove_file(entry.path)


# ----------------------------------------------------------------------
# What the views call
# ----------------------------------------------------------------------


def must_wait_for_import() -> bool:
    """True when an SQLite import of this process holds the write lock right now.

    An upload arriving then is not written at once (it would wait for the lock and
    time out): its row is inserted by a job thread when the import has finished.
    """
    found = runner()
    return found.is_sqlite and found.importing > 0


def start(
    experiment_uuid: str,
    upload: Any,
    options: ImportOptions,
    confirm: bool = False,
    defer_row: bool = False,
) -> ImportJob:
    """Store an upload (a werkzeug FileStorage), create its job, start the check.

    With `defer_row` (see must_wait_for_import) this request writes nothing: the job
    row is inserted by the runner, and until then the job lives in the registry. The
    same happens when SQLite's lock was taken by an import meanwhile.
    Raises InvalidValue (field "file") for a missing or empty file and NotFound for an
    unknown experiment; the stored file is removed on every failure.
    """
    if upload is None or (not upload.filename and not upload.content_length):
        raise InvalidValue("Choose a CSV file to upload.", field="file")
    try:
        key = uuid.UUID(str(experiment_uuid))
    except ValueError:
        raise NotFound("There is no experiment with that id.") from None
    job_uuid = uuid.uuid4()
    stored = store_upload(upload.stream, job_uuid)
    try:
        if stored.size == 0:
            raise InvalidValue(
                f"The file “{display_name(upload.filename)}” is empty (0 bytes): it "
                "needs a header row and data rows.",
                field="file",
            )
        now = utcnow()
        values = {
            "uuid": job_uuid,
            "experiment_uuid": key,
            "file_name": display_name(upload.filename),
            "file_size": stored.size,
            "sha256": stored.sha256,
            "options": options_to_json(options),
            "state": "uploaded",
            "auto_confirm": confirm,
            "rows_done": 0,
            "cancel_requested": False,
            "heartbeat_at": now,
            "created_at": now,
        }
        if defer_row or not _insert_job(values):
            db.session.rollback()
            runner().submit(job_uuid, "create", pending=values)
            return ImportJob(**values)
    except BaseException:
        db.session.rollback()
        remove_file(stored.path)
        raise
    runner().submit(job_uuid, "check")
    return ImportJob(**values)  # transient: reading the row would open a transaction


def _insert_job(values: dict[str, Any]) -> bool:
    """Insert a new job row; False when SQLite's lock is held (by an import)."""
    from wave_web import catalog

    try:
        catalog.get_experiment(values["experiment_uuid"])
        reap()
        db.session.add(ImportJob(**values))
        db.session.commit()
    except sa_exc.OperationalError as exc:
        if not (runner().is_sqlite and "locked" in str(exc.orig)):
            raise
        db.session.rollback()
        return False
    return True


def get_job(experiment: Experiment, job_uuid: str) -> ImportJob:
    """The job of this experiment, or NotFound (also for malformed ids)."""
    try:
        key = uuid.UUID(job_uuid)
    except ValueError:
        raise NotFound("There is no import with that id.") from None
    job = db.session.get(ImportJob, key)
    if job is None:
        live = live_job(key)
        pending = live.pending if live is not None else None
        if pending and pending["experiment_uuid"] == experiment.uuid:
            return ImportJob(**pending)  # not stored yet (an import holds the lock)
    if job is None or job.experiment_uuid != experiment.uuid:
        raise NotFound("There is no such import for this experiment.")
    return job


def recent_jobs(experiment: Experiment, limit: int = 10) -> list[ImportJob]:
    stmt = (
        sa.select(ImportJob)
        .where(ImportJob.experiment_uuid == experiment.uuid)
        .order_by(ImportJob.created_at.desc())
        .limit(limit)
    )
    return list(db.session.scalars(stmt))


NOT_WAITING = "This import is no longer waiting for a decision."


def recheck(job: ImportJob, options: ImportOptions, defer: bool = False) -> None:
    """Check a previewed file again with other options (mapping, mode, missing).

    With `defer` (see must_wait_for_import) the runner makes the change when the
    SQLite lock is free; this request writes nothing. Likewise for confirm and cancel.
    """
    _require_decision(job)
    values = {"options": options_to_json(options), "auto_confirm": False}
    if defer:
        runner().submit(job.uuid, "recheck", pending=values)
    elif _transition(job.uuid, "uploaded", **values):
        runner().submit(job.uuid, "check")
    else:
        raise Conflict(NOT_WAITING)


def confirm(job: ImportJob, defer: bool = False) -> None:
    """Queue the import of a checked, valid file."""
    _require_decision(job)
    if not Report.from_json(job.report or {}).ok:
        raise Conflict("The file has problems; fix them before importing.")
    if defer:
        runner().submit(job.uuid, "confirm", pending={})
    elif _transition(job.uuid, "queued"):
        runner().submit(job.uuid, "import")
    else:
        raise Conflict(NOT_WAITING)


def _require_decision(job: ImportJob) -> None:
    # Decided by reading only: a refusal needs no lock to wait for.
    if job.state != "checked" or live_job(job.uuid) is not None:
        raise Conflict(NOT_WAITING)


def _transition(job_uuid: uuid.UUID, new: str, **values: Any) -> bool:
    """Leave the preview if the job still is in it (two clicks cannot both win)."""
    return _set(
        job_uuid,
        only_if=("checked",),
        state=new,
        heartbeat_at=utcnow(),
        cancel_requested=False,
        **values,
    )


def is_running_here(job_uuid: str) -> bool:
    """True when this process runs the job (cancelling it needs no database write)."""
    return live_job(job_uuid) is not None


def cancel(job: ImportJob, defer: bool = False) -> str:
    """Stop a running job or discard a previewed one; returns what happened."""
    live = live_job(job.uuid)
    if live is not None:
        live.cancel.set()  # the runner stores "cancelled" when it has stopped
        return "Stopping the import; nothing will be written."
    if job.is_final:
        return "This import has already finished."
    if defer and job.state == "checked":
        runner().submit(job.uuid, "discard", pending={})
        return "Discarding the upload."
    if job.state in ("checked", "uploaded", "queued") or _is_interrupted(job):
        message = CANCELLED if job.state != "checked" else "Discarded the upload."
        _set(
            job.uuid,
            only_if=(job.state,),
            state="cancelled",
            message=message,
            finished_at=utcnow(),
        )
        remove_file(job_path(job.uuid))
        return message
    # Running in another process: its heartbeat reads the flag.
    _set(job.uuid, cancel_requested=True)
    return "Stopping the import; nothing will be written."


def _is_interrupted(job: ImportJob, now: dt.datetime | None = None) -> bool:
    if job.state not in ACTIVE_STATES or live_job(job.uuid) is not None:
        return False
    stale = current_app.config["WAVE_IMPORT_STALE_SECONDS"]
    beat = job.heartbeat_at or job.created_at
    return beat < (now or utcnow()) - dt.timedelta(seconds=stale)


PHASES = {
    "pending": "Waiting for another import to finish",
    "uploaded": "Waiting to be checked",
    "waiting": "Waiting for a free worker",
    "checking": "Checking rows",
    "queued": "Waiting to import",
    "saving": "Checked; waiting for another import to finish",
    "locked": "Waiting for another import to finish",
    "importing": "Writing rows",
}


@dataclass(frozen=True)
class JobStatus:
    """A job as the pages show it: the row, corrected by the live registry."""

    state: str
    phase: str  # a key of PHASES while active, else ""
    rows_done: int
    rows_total: int | None  # known while rows are written
    is_active: bool
    cancel_pending: bool
    message: str | None
    report: Report | None

    @property
    def phase_label(self) -> str:
        return PHASES.get(self.phase, "")

    @property
    def percent(self) -> int | None:
        if self.rows_total and self.phase == "importing":
            return min(100, self.rows_done * 100 // self.rows_total)
        return None


def status(job: ImportJob) -> JobStatus:
    """The job's state for display; a stale active job shows as failed (interrupted)."""
    live = live_job(job.uuid)
    report = Report.from_json(job.report) if job.report else None
    if _is_interrupted(job):
        return JobStatus(
            "failed", "", job.rows_done, None, False, False, INTERRUPTED, report
        )
    if live is not None and (job.state in ACTIVE_STATES or live.pending is not None):
        phase = live.phase
        if phase == "waiting":
            phase = "queued" if job.state == "queued" else "uploaded"
        state = job.state if job.state in ACTIVE_STATES else "uploaded"
        importing = phase in ("locked", "importing")
        return JobStatus(
            "importing" if importing else state,
            phase,
            live.rows_done,
            live.rows_total if importing else None,
            True,
            live.cancel.is_set(),
            job.message,
            report,
        )
    active = job.state in ACTIVE_STATES
    return JobStatus(
        job.state,
        job.state if active else "",
        job.rows_done,
        job.rows_total if job.state == "importing" else None,
        active,
        job.cancel_requested,
        job.message,
        report,
    )


def summary(job: ImportJob) -> dict[str, Any]:
    """The job as JSON for scripts."""
    st = status(job)
    report = st.report
    return {
        "job": str(job.uuid),
        "experiment_uuid": str(job.experiment_uuid),
        "state": st.state,
        "file_name": job.file_name,
        "file_size": job.file_size,
        "sha256": job.sha256,
        "mode": job.options.get("mode", "insert"),
        "rows": report.rows if report else None,
        "rows_done": st.rows_done,
        "written": report.written if report and st.state == "succeeded" else 0,
        "message": st.message,
        "problem_count": report.problem_count if report else 0,
        "problems": [p.__dict__ for p in report.problems] if report else [],
    }


def wait_quietly(job_uuid: uuid.UUID, seconds: float) -> None:
    """Wait up to `seconds` for a job of this process, holding no transaction."""
    db.session.rollback()  # no snapshot (SQLite) or idle transaction meanwhile
    wait(job_uuid, seconds)


def offending_csv_chunks(job: ImportJob) -> Iterator[bytes]:
    """The offending rows of a previewed file as CSV bytes (UTF-8 with BOM for Excel).

    Raises Conflict at once when the file is no longer kept; then streams.
    """
    if job.state != "checked":
        raise Conflict(
            "The file of this import is no longer kept; upload it again to get "
            "its offending rows."
        )
    path = job_path(job.uuid)
    if not os.path.exists(path):
        raise Conflict("The uploaded file is gone; upload it again.")
    experiment = db.session.get(Experiment, job.experiment_uuid)
    rows = offending_rows(
        experiment.experiment_type, path, options_from_json(job.options)
    )
    header = next(rows)  # reads the header now: errors come before the response
    return _csv_bytes(itertools.chain([header], rows))


def _csv_bytes(rows: Iterable[list[str]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % 1000 == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")

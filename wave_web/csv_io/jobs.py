"""CSV import jobs: what the views call (start, decide, cancel, status).

A job is a row of `import_jobs` plus a file in the upload folder named by the job's
uuid (csv_io.uploads). Its life:

    uploaded → checking → checked → queued → importing → succeeded | failed | cancelled

The work runs in csv_io.runner's thread pool: on SQLite in the process that received
the upload; on PostgreSQL in whichever server process claims it (csv_io.queue), with
the upload kept in the database (csv_io.storage). The options a job carries come from
csv_io.options.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import uuid
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from flask import current_app

from wave_web.csv_io import excel
from wave_web.csv_io import queue
from wave_web.csv_io import storage
from wave_web.csv_io.importing import ImportOptions
from wave_web.csv_io.importing import Report
from wave_web.csv_io.importing import effective_type
from wave_web.csv_io.importing import mapping_from_form
from wave_web.csv_io.importing import offending_rows
from wave_web.csv_io.importing import plan_header
from wave_web.csv_io.options import BY_NAME
from wave_web.csv_io.options import header_mapping_from_form
from wave_web.csv_io.options import mapping_choices
from wave_web.csv_io.options import options_from_form
from wave_web.csv_io.options import options_from_json
from wave_web.csv_io.options import options_to_json
from wave_web.csv_io.options import propose
from wave_web.csv_io.options import proposed_targets
from wave_web.csv_io.options import read_header
from wave_web.csv_io.reading import FileRefused
from wave_web.csv_io.runner import ABANDONED
from wave_web.csv_io.runner import ACTIVE_STATES
from wave_web.csv_io.runner import CANCELLED
from wave_web.csv_io.runner import INTERRUPTED
from wave_web.csv_io.runner import UNEXPECTED
from wave_web.csv_io.runner import Live
from wave_web.csv_io.runner import live_job
from wave_web.csv_io.runner import runner
from wave_web.csv_io.runner import set_job
from wave_web.csv_io.runner import transition
from wave_web.csv_io.runner import wait
from wave_web.csv_io.runner import wait_all
from wave_web.csv_io.uploads import csv_bytes
from wave_web.csv_io.uploads import display_name
from wave_web.csv_io.uploads import job_path
from wave_web.csv_io.uploads import remove_file
from wave_web.csv_io.uploads import store_upload
from wave_web.csv_io.uploads import upload_dir
from wave_web.errors import Conflict
from wave_web.errors import InvalidValue
from wave_web.errors import NotFound
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import ImportJob
from wave_web.models import utcnow

# What the views and tests use, importable from here as before.
__all__ = [
    "BY_NAME",
    "header_mapping_from_form",
    "CANCELLED",
    "UNEXPECTED",
    "Live",
    "display_name",
    "live_job",
    "mapping_choices",
    "options_from_form",
    "options_from_json",
    "options_to_json",
    "proposed_targets",
    "runner",
    "store_upload",
    "wait",
    "wait_all",
]

log = logging.getLogger(__name__)


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
    if queue.is_queue():  # dead workers' jobs: csv_io.queue.reclaim
        stmt = stmt.where(ImportJob.state == "checked")
    for job in db.session.scalars(stmt):
        if job.state != "checked" and live_job(job.uuid) is not None:
            continue
        interrupted = job.state != "checked"
        job.state = "failed" if interrupted else "cancelled"
        job.message = INTERRUPTED if interrupted else ABANDONED
        job.finished_at = now
        storage.forget(job.uuid)
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
    old = [e for e in entries if _modified(e) < limit]
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


def _modified(entry: os.DirEntry) -> float:
    """A file's modification time; +inf (never old) for a file gone meanwhile (an
    upload's .part renamed, or a job's file deleted, while the folder was read)."""
    try:
        return entry.stat().st_mtime if entry.is_file() else float("inf")
    except FileNotFoundError:
        return float("inf")


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
    by_header: Mapping[str, str] | None = None,
    sheet: str | None = None,
) -> ImportJob:
    """Store an upload (a werkzeug FileStorage), create its job, start the check.

    Before the check every unmatched file column gets a proposed target (see
    options.propose: a script's `by_header` mapping, the remembered mapping, labels;
    for previews also participant aliases and close names), so the problems the
    check lists are those of the mapping the page shows.

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
        _workbook_to_csv(stored.path, upload.filename or "", sheet)
        options, version = _proposed(key, stored.path, options, by_header, confirm)
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
            # One step: the version proposed against (a check records its own).
            "schema_version": version if confirm else None,
            "rows_done": 0,
            "cancel_requested": False,
            "heartbeat_at": now,
            "created_at": now,
        }
        if defer_row or not _insert_job(values, stored.path):
            db.session.rollback()
            runner().submit(job_uuid, "create", pending=values)
            return ImportJob(**values)
    except BaseException:
        db.session.rollback()
        remove_file(stored.path)
        raise
    if not queue.dispatch(job_uuid, "check"):
        _drop_unclaimed_copy(job_uuid, stored.path)  # run from the database's copy
    return ImportJob(**values)  # transient: reading the row would open a transaction


def _drop_unclaimed_copy(job_uuid: uuid.UUID, path: str) -> None:
    """Remove the receiver's file of a job left to the queue, unless a process has
    claimed the job already: the worker processes of a server share the upload
    folder, and a claimer that found the file reads it (under load an import failed
    with FileNotFoundError when the receiver removed it meanwhile). The row lock
    keeps claims (SKIP LOCKED) out while the file goes, so a later claimer fetches
    the database's copy; a claimer removes the file itself when it ends."""
    table = ImportJob.__table__
    stmt = sa.select(table.c.claimed_by).where(table.c.uuid == job_uuid)
    with db.engine.begin() as conn:
        if conn.execute(stmt.with_for_update()).scalar() is None:
            remove_file(path)


def _workbook_to_csv(path: str, file_name: str, sheet: str | None) -> None:
    """An .xlsx upload becomes the CSV the pipeline reads (the chosen sheet)."""
    if not excel.is_xlsx(path, file_name):
        if sheet:
            raise InvalidValue("Only Excel workbooks have sheets.", field="sheet")
        return
    converted = path + ".csv.part"
    try:
        excel.xlsx_to_csv(path, converted, sheet)
    except FileRefused as exc:
        remove_file(converted)
        raise InvalidValue(exc.message, field="file") from None
    os.replace(converted, path)


def _proposed(
    experiment_uuid: uuid.UUID,
    path: str,
    options: ImportOptions,
    by_header: Mapping[str, str] | None,
    one_step: bool,
) -> tuple[ImportOptions, int]:
    """The options with proposed targets, and the type's schema version read."""
    from wave_web import catalog

    xtype = catalog.get_experiment(experiment_uuid).experiment_type
    check_added(xtype, options)
    proposed = propose(xtype, path, options, by_header, guess=not one_step)
    return proposed, xtype.schema_version


def check_added(xtype: Any, options: ImportOptions) -> None:
    """InvalidValue when a column the import would add clashes with the type's."""
    if not options.add_columns:
        return
    taken = {c.name for c in xtype.columns} | {"participant_id"}
    for col in options.add_columns:
        if col.name in taken:
            raise InvalidValue(
                f"The type already has a column “{col.name}”: map the file column "
                "to it, or give the new column another name.",
                field="mapping",
            )


def _insert_job(values: dict[str, Any], path: str) -> bool:
    """Insert a new job row (PostgreSQL: and its upload's chunks, in the same
    transaction); False when SQLite's lock is held (by an import)."""
    from wave_web import catalog

    try:
        catalog.get_experiment(values["experiment_uuid"])
        reap()
        db.session.add(ImportJob(**values))
        if storage.is_shared():
            db.session.flush()
            storage.save(values["uuid"], path)
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
    from wave_web import catalog

    check_added(catalog.get_experiment(job.experiment_uuid).experiment_type, options)
    values = {"options": options_to_json(options), "auto_confirm": False}
    if defer:
        runner().submit(job.uuid, "recheck", pending=values)
    elif transition(job.uuid, "uploaded", **values):
        queue.dispatch(job.uuid, "check")
    else:
        raise Conflict(NOT_WAITING)


def recheck_options(job: ImportJob, form: Mapping[str, str]) -> ImportOptions:
    """The options of a preview's mapping form, for the columns it does not list too.

    The form lists the first header cells only (Report.bounded_json): the others keep
    the target the job gave them, and with `ignore_unmatched` every column that goes
    nowhere is ignored, listed or not. A new column's label is the file's header
    (the page does not send it back). InvalidValue names a bad field.
    """
    options = options_from_form(form)
    listed = set(mapping_from_form(form.items()))
    before = options_from_json(job.options)
    added = {c.name for c in before.add_columns}
    mapping = {
        p: t for p, t in before.mapping.items() if p not in listed and t not in added
    }
    options = replace(options, mapping=mapping | dict(options.mapping))
    if options.add_columns:
        header = {c.position: c.text for c in Report.from_json(job.report or {}).header}
        source = {t: header.get(p, "") for p, t in options.mapping.items()}
        labelled = tuple(
            c if c.label else replace(c, label=source.get(c.name, "")[:255])
            for c in options.add_columns
        )
        options = replace(options, add_columns=labelled)
    if form.get("ignore_unmatched"):
        options = _ignore_unmatched(job, options)
    return options


def _ignore_unmatched(job: ImportJob, options: ImportOptions) -> ImportOptions:
    """Options that also ignore the file columns the header plan leaves unmatched."""
    from wave_web import catalog

    with storage.local_copy(job.uuid) as path:
        header = read_header(path, options) if path else None
    if header is None:  # the check will say why the file cannot be read
        return options
    xtype = catalog.get_experiment(job.experiment_uuid).experiment_type
    planned = Report(mode=options.mode)
    plan_header(effective_type(xtype, options), header, options, planned)
    mapping = dict(options.mapping)
    for cell in planned.header:
        if cell.target is None and cell.position not in mapping:
            mapping[cell.position] = ""
    return replace(options, mapping=mapping)


def confirm(job: ImportJob, defer: bool = False) -> None:
    """Queue the import of a checked, valid file."""
    _require_decision(job)
    if not Report.from_json(job.report or {}).ok:
        raise Conflict("The file has problems; fix them before importing.")
    if defer:
        runner().submit(job.uuid, "confirm", pending={})
    elif transition(job.uuid, "queued"):
        queue.dispatch(job.uuid, "import")
    else:
        raise Conflict(NOT_WAITING)


def _require_decision(job: ImportJob) -> None:
    # Decided by reading only: a refusal needs no lock to wait for.
    if job.state != "checked" or live_job(job.uuid) is not None:
        raise Conflict(NOT_WAITING)


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
        if set_job(
            job.uuid,
            commit=False,
            only_if=(job.state,),
            state="cancelled",
            message=message,
            finished_at=utcnow(),
        ):
            storage.forget(job.uuid)
            db.session.commit()
            return message
        db.session.rollback()  # a worker took it meanwhile: ask it to stop
    # Running in another process: its heartbeat reads the flag.
    set_job(job.uuid, cancel_requested=True)
    return "Stopping the import; nothing will be written."


def _is_interrupted(job: ImportJob, now: dt.datetime | None = None) -> bool:
    if job.state not in ACTIVE_STATES or live_job(job.uuid) is not None:
        return False
    if queue.is_queue():  # another worker takes it up again (queue.reclaim)
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
    if live_job(job_uuid) is None and queue.is_queue():  # run by another process
        queue.wait_for_state(job_uuid, seconds, ACTIVE_STATES)
        return
    wait(job_uuid, seconds)


def offending_csv_chunks(job: ImportJob) -> Iterator[bytes]:
    """The offending rows of a previewed file as CSV bytes (UTF-8 with BOM for Excel).

    The `error` column comes first (see `_error_first`). Raises Conflict at once when
    the file is no longer kept; then streams.
    """
    if job.state != "checked":
        raise Conflict(
            "The file of this import is no longer kept; upload it again to get "
            "its offending rows."
        )
    copy = storage.local_copy(job.uuid)
    path = copy.__enter__()
    try:
        if path is None or not os.path.exists(path):
            raise Conflict("The uploaded file is gone; upload it again.")
        experiment = db.session.get(Experiment, job.experiment_uuid)
        rows = offending_rows(
            experiment.experiment_type, path, options_from_json(job.options)
        )
        header = next(rows)  # reads the header now: errors come before the response
    except BaseException:
        copy.__exit__(None, None, None)
        raise
    return _closing(csv_bytes(_error_first(itertools.chain([header], rows))), copy)


def _error_first(rows: Iterator[list]) -> Iterator[list]:
    """Each row with its message (the last cell) moved to the first column.

    A row with fewer or more cells than the header (a decimal comma in a
    comma-separated file) would put the message under another column, or a cell
    under `error`. First, the message is always in column A under `error`, and the
    file's own cells keep their place after it: a short row ends early and a long
    row spills past the last named column, as it does in the file. After fixing,
    deleting column A gives the file's layout back, ready to upload.
    """
    for row in rows:
        yield [row[-1], *row[:-1]]


def _closing(chunks: Iterator[bytes], copy: Any) -> Iterator[bytes]:
    """The chunks, then the request's copy of the file removed (also on abort)."""
    try:
        yield from chunks
    finally:
        copy.__exit__(None, None, None)

"""Import jobs (wave_web.csv_io.jobs) without the web layer, on both databases.

Storage of uploads, options from forms, the runner's states, cancel, crash recovery,
clean-up of abandoned files, SQLite's single writer and two imports at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import threading
import time

import pytest
import sqlalchemy as sa
from tests.conftest import close_app_with_jobs
from tests.conftest import make_app
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.uploads_kept import kept_uploads
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.csv_io import jobs
from wave_web.csv_io import runner as runner_module
from wave_web.csv_io.importing import ImportOptions
from wave_web.errors import InvalidValue
from wave_web.errors import NotFound
from wave_web.extensions import db as _db
from wave_web.models import AuditEntry
from wave_web.models import Experiment
from wave_web.models import ImportJob
from wave_web.models import utcnow
from werkzeug.datastructures import FileStorage

WAIT = 30
COLUMNS = (
    ColumnDef("rt", "FLOAT"),
    ColumnDef("correct", "BOOLEAN"),
    ColumnDef("word", "STRING"),
)
HEADER = "participant_id,rt,correct,word\n"


def rows_text(count: int, start: int = 0) -> str:
    return "".join(
        f"P{i},{i / 1000},{'true' if i % 2 else 'false'},w{i}\n"
        for i in range(start, start + count)
    )


@pytest.fixture
def app(database_url, tmp_path):
    app = make_app(
        database_url,
        tmp_path,
        WAVE_UPLOAD_DIR=str(tmp_path / "uploads"),
        WAVE_IMPORT_HEARTBEAT_SECONDS=0.05,
        WAVE_SQLITE_BUSY_MS=300,
    )
    yield app
    close_app_with_jobs(app)


@pytest.fixture
def xtype(db):
    return make_type("Stroop", "stroop", COLUMNS)


@pytest.fixture
def experiment(xtype):
    return make_experiment(xtype, "Pilot")


def upload(experiment, text: str | bytes, name: str = "data.csv", **kwargs):
    """Start a job as the upload view does (rows deferred while an import runs)."""
    body = text.encode("utf-8") if isinstance(text, str) else text
    storage = FileStorage(io.BytesIO(body), filename=name)
    options = kwargs.pop("options", ImportOptions())
    defer = jobs.must_wait_for_import()
    job = jobs.start(str(experiment.uuid), storage, options, defer_row=defer, **kwargs)
    return job.uuid


def finished(job_uuid) -> ImportJob:
    assert jobs.wait_all(WAIT)
    _db.session.rollback()
    _db.session.expire_all()
    return _db.session.get(ImportJob, job_uuid)


def row_count(experiment) -> int:
    _db.session.rollback()
    return _db.session.get(Experiment, experiment.uuid).row_count


def upload_files(app) -> list[str]:
    return kept_uploads(app)


class Gate:
    """Stops job threads in their progress callback until released."""

    def __init__(self, monkeypatch, phase: str = "importing", parties: int = 1):
        self.reached = threading.Barrier(parties + 1, timeout=WAIT)
        self.go = threading.Event()
        self.phase = phase
        self.seen: set = set()
        original = jobs.Live.progress
        gate = self

        def progress(live, rows_done):
            if (
                live.phase == gate.phase
                and live.job_uuid not in gate.seen
                and not gate.go.is_set()
            ):
                gate.seen.add(live.job_uuid)
                gate.reached.wait()
                assert gate.go.wait(WAIT), "the test never opened the gate"
            return original(live, rows_done)

        monkeypatch.setattr(jobs.Live, "progress", progress)

    def wait(self) -> None:
        self.reached.wait()

    def open(self) -> None:
        self.go.set()


# ----------------------------------------------------------------------
# Files and options
# ----------------------------------------------------------------------


def test_upload_is_stored_by_uuid_with_size_and_hash(app, db, tmp_path):
    body = os.urandom(3 * 1024 * 1024 + 17)
    job_uuid = __import__("uuid").uuid4()
    stored = jobs.store_upload(io.BytesIO(body), job_uuid)
    assert stored.size == len(body)
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert os.path.basename(stored.path) == job_uuid.hex + ".csv"
    assert upload_files(app) == [job_uuid.hex + ".csv"]


def test_a_failing_upload_stream_leaves_no_partial_file(app, db):
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, size=-1):
            self.calls += 1
            if self.calls > 2:
                raise OSError("connection reset")
            return b"x" * 1024

    with pytest.raises(OSError):
        jobs.store_upload(Broken(), __import__("uuid").uuid4())
    assert upload_files(app) == []


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\lab\\data.csv", "data.csv"),
        ("a\x00b\u202ec.csv", "abc.csv"),
        ("", "upload.csv"),
        ("x" * 300 + ".csv", "x" * 255),
    ],
)
def test_display_name_is_the_last_path_part_without_control_characters(raw, shown):
    assert jobs.display_name(raw) == shown


def test_options_from_form_reads_mode_mapping_and_missing_words():
    form = {
        "mode": "update",
        "missing": "1",
        "map-0": "participant_id",
        "map-1": "",
        "map-2": jobs.BY_NAME,
        "map-x": "rt",
    }
    options = jobs.options_from_form(form)
    assert options.mode == "update"
    assert options.mapping == {0: "participant_id", 1: ""}
    assert "NA" in options.missing and "null" in options.missing
    ignoring = jobs.options_from_form(form | {"ignore_unmatched": "1"})
    assert ignoring.mapping == {0: "participant_id", 1: "", 2: ""}
    assert jobs.options_from_json(jobs.options_to_json(options)) == options


@pytest.mark.parametrize("mode", ["replace", "INSERT", "<b>"])
def test_unknown_mode_is_refused_at_its_field(mode):
    with pytest.raises(InvalidValue) as caught:
        jobs.options_from_form({"mode": mode})
    assert caught.value.field == "mode"


# ----------------------------------------------------------------------
# The runner
# ----------------------------------------------------------------------


def test_check_then_confirm_imports_and_deletes_the_file(app, db, experiment):
    job_uuid = upload(experiment, HEADER + rows_text(12_000))
    job = finished(job_uuid)
    assert job.state == "checked"
    assert job.rows_total == 12_000 and job.report["problem_count"] == 0
    assert job.schema_version == experiment.experiment_type.schema_version
    assert upload_files(app) == [job_uuid.hex + ".csv"]
    assert row_count(experiment) == 0  # the check writes nothing

    jobs.confirm(job)
    job = finished(job_uuid)
    assert job.state == "succeeded", job.message
    assert job.rows_done == 12_000
    assert job.message == "Imported 12,000 rows."
    assert job.finished_at is not None
    assert row_count(experiment) == 12_000
    assert upload_files(app) == []


def test_the_audit_entry_is_written_with_the_rows(app, db, experiment):
    body = HEADER + rows_text(3)
    job_uuid = upload(experiment, body, name="pilot.csv", confirm=True)
    assert finished(job_uuid).state == "succeeded"
    entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "rows.import")
    ).one()
    assert entry.object_id == str(experiment.uuid)
    assert entry.details["file_name"] == "pilot.csv"
    assert entry.details["file_size"] == len(body)
    assert entry.details["sha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert entry.details["rows"] == 3
    assert entry.details["mode"] == "insert"


def test_a_refused_audit_write_leaves_no_rows_either(app, db, experiment, monkeypatch):
    """Rows, final state and audit entry commit together: one failing, none stay."""

    def broken(*args, **kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr(runner_module, "record", broken)
    job = finished(upload(experiment, HEADER + rows_text(10), confirm=True))
    assert job.state == "failed"
    assert job.message == jobs.UNEXPECTED
    assert row_count(experiment) == 0
    assert upload_files(app) == []


def test_one_step_job_with_problems_fails_with_its_report_and_keeps_no_file(
    app, db, experiment
):
    """A one-step import has no preview to go back to: it fails, its report kept."""
    job = finished(upload(experiment, HEADER + "P1,fast,true,a\n", confirm=True))
    assert job.state == "failed"
    assert "Nothing was imported" in job.message
    assert "changed" not in job.message
    assert job.report["problems"][0]["column"] == "rt"
    assert row_count(experiment) == 0
    assert upload_files(app) == []


def test_unreadable_file_fails_with_its_line_and_keeps_no_file(app, db, experiment):
    body = (HEADER + "P1,1,true,ok\nP2,2,true,caf\xe9\n").encode("latin-1")
    job = finished(upload(experiment, body, confirm=True))
    assert job.state == "failed"
    assert job.message.startswith("Line 3 has a byte that is not valid UTF-8")
    assert upload_files(app) == []
    assert row_count(experiment) == 0


def test_empty_upload_is_refused_before_a_job_exists(app, db, experiment):
    with pytest.raises(InvalidValue) as caught:
        upload(experiment, b"", name="empty.csv")
    assert caught.value.field == "file"
    assert "empty (0 bytes)" in caught.value.message
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ImportJob)) == 0
    assert upload_files(app) == []


def test_upload_to_an_unknown_experiment_keeps_no_file(app, db):
    storage = FileStorage(io.BytesIO(b"participant_id\nP1\n"), filename="a.csv")
    with pytest.raises(NotFound):
        jobs.start("00000000-0000-0000-0000-000000000000", storage, ImportOptions())
    assert upload_files(app) == []


def test_cancel_during_the_import_leaves_no_rows(app, db, experiment, monkeypatch):
    make_rows(experiment.experiment_type, experiment, [{"participant_id": "OLD"}])
    gate = Gate(monkeypatch, "importing")
    job_uuid = upload(experiment, HEADER + rows_text(12_000), confirm=True)
    gate.wait()  # 5,000 rows are written in the open transaction
    job = db.session.get(ImportJob, job_uuid)
    status = jobs.status(job)
    assert status.is_active and status.phase == "importing"
    # one step: the import is the only pass over the file, so no total is known
    assert status.rows_done == 0 and status.rows_total is None
    assert jobs.cancel(job).startswith("Stopping")
    db.session.rollback()
    gate.open()
    job = finished(job_uuid)
    assert job.state == "cancelled"
    assert job.message == jobs.CANCELLED
    assert row_count(experiment) == 1
    assert upload_files(app) == []


def test_cancel_during_the_check(app, db, experiment, monkeypatch):
    gate = Gate(monkeypatch, "checking")
    job_uuid = upload(experiment, HEADER + rows_text(6_000))
    gate.wait()
    jobs.cancel(db.session.get(ImportJob, job_uuid))
    db.session.rollback()
    gate.open()
    assert finished(job_uuid).state == "cancelled"
    assert upload_files(app) == []


def test_discarding_a_preview_deletes_its_file(app, db, experiment):
    job = finished(upload(experiment, HEADER + rows_text(2)))
    assert jobs.cancel(job) == "Discarded the upload."
    job = finished(job.uuid)
    assert job.state == "cancelled"
    assert upload_files(app) == []


def test_heartbeat_and_progress_reach_the_row_while_checking(
    app, db, experiment, monkeypatch
):
    gate = Gate(monkeypatch, "checking")
    job_uuid = upload(experiment, HEADER + rows_text(6_000))
    gate.wait()
    first = db.session.get(ImportJob, job_uuid).heartbeat_at
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        db.session.rollback()
        job = db.session.get(ImportJob, job_uuid)
        if job.heartbeat_at > first and job.state == "checking":
            break
        time.sleep(0.05)
    assert job.heartbeat_at > first
    assert job.state == "checking"
    assert jobs.status(job).state != "failed"
    db.session.rollback()
    gate.open()
    assert finished(job_uuid).state == "checked"


def test_stale_job_shows_as_interrupted_and_is_stored_failed_by_the_next_upload(
    app, db, dialect, experiment
):
    if dialect != "sqlite":
        pytest.skip("PostgreSQL runs it again: tests/test_jobs_shared.py")
    job_uuid = upload(experiment, HEADER + rows_text(2))
    finished(job_uuid)
    old = utcnow() - dt.timedelta(minutes=5)
    db.session.execute(
        sa.update(ImportJob)
        .where(ImportJob.uuid == job_uuid)
        .values(state="importing", heartbeat_at=old)
    )
    db.session.commit()
    job = db.session.get(ImportJob, job_uuid)
    status = jobs.status(job)
    assert (status.state, status.is_active) == ("failed", False)
    assert status.message.startswith("Interrupted")
    assert job.state == "importing"  # showing it changed nothing

    finished(upload(experiment, HEADER + rows_text(1)))  # any upload reaps
    job = finished(job_uuid)
    assert job.state == "failed" and job.message.startswith("Interrupted")
    assert job_uuid.hex + ".csv" not in upload_files(app)
    assert row_count(experiment) == 0


def test_abandoned_previews_and_orphan_files_are_cleaned_up(app, db, experiment):
    abandoned = finished(upload(experiment, HEADER + rows_text(2))).uuid
    fresh = finished(upload(experiment, HEADER + rows_text(2))).uuid
    day_ago = utcnow() - dt.timedelta(hours=25)
    db.session.execute(
        sa.update(ImportJob)
        .where(ImportJob.uuid == abandoned)
        .values(heartbeat_at=day_ago)
    )
    db.session.commit()
    folder = app.config["WAVE_UPLOAD_DIR"]
    orphan = os.path.join(folder, "0" * 32 + ".csv.part")
    young_orphan = os.path.join(folder, "1" * 32 + ".csv")
    for path in (orphan, young_orphan):
        with open(path, "wb") as f:
            f.write(b"x")
    stamp = day_ago.timestamp()
    os.utime(orphan, (stamp, stamp))

    newest = finished(upload(experiment, HEADER + rows_text(2))).uuid
    assert finished(abandoned).state == "cancelled"
    assert finished(fresh).state == "checked"
    assert upload_files(app) == sorted(
        [fresh.hex + ".csv", newest.hex + ".csv", "1" * 32 + ".csv"]
    )


def test_a_type_change_after_the_check_is_checked_again(app, db, experiment):
    xtype = experiment.experiment_type
    job = finished(upload(experiment, HEADER + rows_text(3)))
    schema.add_column(xtype, ColumnDef("block", "INTEGER"))
    jobs.confirm(finished(job.uuid))
    job = finished(job.uuid)
    assert job.state == "succeeded"
    assert "checked again" in job.message
    assert row_count(experiment) == 3


def test_a_type_change_that_breaks_the_file_returns_to_the_preview(app, db, experiment):
    xtype = experiment.experiment_type
    job = finished(upload(experiment, HEADER + rows_text(3)))
    schema.drop_column(xtype, "word", "word")
    jobs.confirm(finished(job.uuid))
    job = finished(job.uuid)
    assert job.state == "checked"
    assert job.message.startswith("The experiment type changed after the check")
    assert (
        "did you mean" in job.report["problems"][0]["rule"]
        or job.report["problems"][0]["column"] == "word"
    )
    assert job.schema_version == db.session.get(type(xtype), xtype.id).schema_version
    assert row_count(experiment) == 0
    assert upload_files(app) == [job.uuid.hex + ".csv"]  # kept for a new mapping


def test_confirm_twice_imports_once(app, db, experiment):
    job = finished(upload(experiment, HEADER + rows_text(4)))
    jobs.confirm(job)
    with pytest.raises(jobs.Conflict):
        jobs.confirm(db.session.get(ImportJob, job.uuid))
    assert finished(job.uuid).state == "succeeded"
    assert row_count(experiment) == 4


def test_two_imports_into_one_experiment_at_once_both_count_exactly(
    app, db, experiment, monkeypatch, dialect
):
    # PostgreSQL: both jobs are inside their COPY at the same moment. SQLite: one
    # import at a time (the write lock); the second waits for the first.
    parties = 2 if dialect == "postgresql" else 1
    gate = Gate(monkeypatch, "importing", parties=parties)
    first = upload(experiment, HEADER + rows_text(11_000), confirm=True)
    second = upload(experiment, HEADER + rows_text(7_000, 20_000), confirm=True)
    gate.wait()
    try:
        if dialect == "sqlite":
            # The second one waits for the lock (or, still checking, to store its
            # check): it never writes rows while the first holds the lock.
            time.sleep(0.5)
            live = [jobs.live_job(u) for u in (first, second)]
            phases = [x.phase for x in live if x is not None]
            assert phases.count("importing") == 1, phases
    finally:
        gate.open()
    assert finished(first).state == "succeeded"
    assert finished(second).state == "succeeded"
    assert row_count(experiment) == 18_000
    table = sa.table("stroop", sa.column("experiment_uuid"))
    count = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(table)
        .where(table.c.experiment_uuid == experiment.uuid)
    )
    assert count == 18_000


def test_sqlite_import_leaves_readers_working_and_writers_a_busy_message(
    app, db, experiment, monkeypatch, dialect
):
    if dialect != "sqlite":
        pytest.skip("PostgreSQL writers do not wait for an import")
    client = app.test_client()  # signs in (a write) before the import holds the lock
    gate = Gate(monkeypatch, "importing")
    job_uuid = upload(experiment, HEADER + rows_text(6_000), confirm=True)
    gate.wait()
    db.session.rollback()
    url = f"/experiments/{experiment.uuid}/imports/{job_uuid}"
    try:
        page = client.get(url)
        assert page.status_code == 200
        assert "Writing rows" in page.get_data(as_text=True)
        busy = client.post("/tags/", data={"name": "during-import"})
        assert busy.status_code == 503
        assert "busy" in busy.get_data(as_text=True)
        cancel = client.post(url + "/cancel")  # no write lock needed
        assert cancel.status_code == 303
    finally:
        gate.open()
    assert finished(job_uuid).state == "cancelled"
    assert row_count(experiment) == 0


def test_decisions_during_an_sqlite_import_wait_in_memory_then_run(
    app, db, experiment, monkeypatch, dialect
):
    """Upload, confirm and discard while an import holds SQLite's lock: no 503."""
    if dialect != "sqlite":
        pytest.skip("PostgreSQL writes these at once")
    to_confirm = finished(upload(experiment, HEADER + rows_text(4, 100))).uuid
    to_discard = finished(upload(experiment, HEADER + rows_text(2, 200))).uuid
    client = app.test_client()  # signs in (a write) before the import holds the lock
    gate = Gate(monkeypatch, "importing")
    first = upload(experiment, HEADER + rows_text(6_000), confirm=True)
    gate.wait()
    db.session.rollback()
    base = f"/experiments/{experiment.uuid}"
    started = time.monotonic()
    try:
        response = client.post(
            base + "/import",
            data={"file": (io.BytesIO((HEADER + rows_text(5)).encode()), "late.csv")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 303
        late_url = response.headers["Location"]
        page = client.get(late_url)
        assert page.status_code == 200
        assert "Waiting for another import to finish" in page.get_data(as_text=True)
        confirmed = client.post(f"{base}/imports/{to_confirm}/confirm")
        assert confirmed.status_code == 303
        page = client.get(f"{base}/imports/{to_confirm}")
        assert "Waiting for another import to finish" in page.get_data(as_text=True)
        assert client.post(f"{base}/imports/{to_discard}/cancel").status_code == 303
        assert time.monotonic() - started < 3  # nobody waited for the lock
    finally:
        gate.open()
    assert finished(first).state == "succeeded"
    assert finished(to_confirm).state == "succeeded"
    assert finished(to_discard).state == "cancelled"
    late = finished(__import__("uuid").UUID(late_url[-36:]))
    assert late.state == "checked" and late.file_name == "late.csv"
    assert row_count(experiment) == 6_004
    assert sorted(upload_files(app)) == [late.uuid.hex + ".csv"]


def test_postgresql_heartbeat_runs_during_the_import_and_carries_a_cancel(
    app, db, experiment, monkeypatch, dialect
):
    if dialect != "postgresql":
        pytest.skip("SQLite cannot write while its import holds the lock")
    gate = Gate(monkeypatch, "importing")
    job_uuid = upload(experiment, HEADER + rows_text(6_000), confirm=True)
    gate.wait()
    db.session.rollback()
    first = db.session.get(ImportJob, job_uuid).heartbeat_at
    # Another process asks to stop: only the row carries the request.
    db.session.execute(
        sa.update(ImportJob)
        .where(ImportJob.uuid == job_uuid)
        .values(cancel_requested=True)
    )
    db.session.commit()
    deadline = time.monotonic() + 5
    while not jobs.live_job(job_uuid).cancel.is_set():
        assert time.monotonic() < deadline, "the heartbeat never read the flag"
        time.sleep(0.05)
    db.session.rollback()
    assert db.session.get(ImportJob, job_uuid).heartbeat_at > first
    db.session.rollback()
    gate.open()
    assert finished(job_uuid).state == "cancelled"
    assert row_count(experiment) == 0


def test_two_uploads_posted_at_once_both_import_exactly(app, db, experiment):
    url = f"/experiments/{experiment.uuid}/import?confirm=1"
    clients = {"a.csv": app.test_client(), "b.csv": app.test_client()}
    db.session.rollback()
    results = {}

    def post(name, count, start):
        body = (HEADER + rows_text(count, start)).encode()
        response = clients[name].post(
            url,
            data={"file": (io.BytesIO(body), name)},
            content_type="multipart/form-data",
        )
        results[name] = response.status_code

    threads = [
        threading.Thread(target=post, args=("a.csv", 9_000, 0)),
        threading.Thread(target=post, args=("b.csv", 6_000, 50_000)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert jobs.wait_all(WAIT)
    assert sorted(results) == ["a.csv", "b.csv"]
    assert set(results.values()) <= {200, 202}, results
    states = db.session.scalars(sa.select(ImportJob.state)).all()
    assert states == ["succeeded", "succeeded"]
    assert row_count(experiment) == 15_000


def test_deleting_the_experiment_deletes_its_jobs(app, db, experiment):
    from wave_web import catalog

    job_uuid = finished(upload(experiment, HEADER + rows_text(2))).uuid
    catalog.delete_experiment(db.session.get(Experiment, experiment.uuid))
    assert db.session.get(ImportJob, job_uuid) is None


def test_the_audit_entry_names_who_started_the_import(app, db, experiment):
    from flask import g

    g.audit_actor, g.audit_addr = "ada@example.org", "192.0.2.7"
    job = finished(upload(experiment, HEADER + rows_text(2), confirm=True))
    assert job.state == "succeeded"
    entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "rows.import")
    ).one()
    assert (entry.actor, entry.remote_addr) == ("ada@example.org", "192.0.2.7")

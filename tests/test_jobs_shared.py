"""Import jobs any server process runs (csv_io.queue, csv_io.storage) on PostgreSQL.

Claims with SKIP LOCKED, leases that expire when a worker dies, uploads kept in the
database, progress read by another server, `flask worker`; SQLite keeps its
in-process runner. Two apps on one database stand for two servers.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import signal
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from tests.conftest import close_app_with_jobs
from tests.conftest import make_app
from tests.factories import make_experiment
from tests.factories import make_type
from tests.servers import ROOT
from wave_web.columns import ColumnDef
from wave_web.csv_io import jobs
from wave_web.csv_io import queue
from wave_web.csv_io import storage
from wave_web.csv_io.importing import ImportOptions
from wave_web.csv_io.runner import runner
from wave_web.extensions import db as _db
from wave_web.models import Experiment
from wave_web.models import ImportJob
from wave_web.models import ImportUpload
from wave_web.models import utcnow
from werkzeug.datastructures import FileStorage

WAIT = 30
COLUMNS = (ColumnDef("rt", "FLOAT"), ColumnDef("word", "STRING"))
HEADER = "participant_id,rt,word\n"


def rows_text(count: int) -> str:
    return "".join(f"P{i},{i / 1000},w{i}\n" for i in range(count))


def server(database_url, tmp_path, name: str, **overrides):
    """An app standing for one server: its own instance and upload folder."""
    folder = tmp_path / name
    folder.mkdir()
    return make_app(
        database_url,
        folder,
        with_admin=name == "a",
        WAVE_UPLOAD_DIR=str(folder / "uploads"),
        WAVE_IMPORT_HEARTBEAT_SECONDS=0.05,
        WAVE_JOB_POLL_SECONDS=0.05,
        **overrides,
    )


@pytest.fixture
def app(database_url, tmp_path):
    """Server A: a web process that leaves every job to the workers."""
    app = server(database_url, tmp_path, "a", WAVE_RUN_JOBS=False)
    yield app
    close_app_with_jobs(app)


@pytest.fixture
def other(app, database_url, tmp_path):
    """Server B on the same database; it runs jobs."""
    other = server(database_url, tmp_path, "b")
    yield other
    close_app_with_jobs(other)


@pytest.fixture
def postgresql(dialect):
    if dialect == "sqlite":
        pytest.skip("SQLite runs jobs in-process (no queue)")


@pytest.fixture
def experiment(db):
    return make_experiment(make_type("Stroop", "stroop", COLUMNS), "Pilot")


def upload(experiment, text: str, **kwargs) -> ImportJob:
    storage_ = FileStorage(io.BytesIO(text.encode()), filename="data.csv")
    return jobs.start(str(experiment.uuid), storage_, ImportOptions(), **kwargs)


def job_row(app, job_uuid) -> ImportJob:
    with app.app_context():
        job = _db.session.get(ImportJob, job_uuid)
        _db.session.expunge(job)
        return job


def chunks(app, job_uuid) -> list[bytes]:
    with app.app_context(), _db.engine.connect() as conn:
        table = ImportUpload.__table__
        stmt = sa.select(table.c.data).where(table.c.job_uuid == job_uuid)
        return list(conn.scalars(stmt.order_by(table.c.seq)))


def row_count(app, experiment) -> int:
    with app.app_context():
        return _db.session.get(Experiment, experiment.uuid).row_count


def local_files(app) -> list[str]:
    folder = app.config["WAVE_UPLOAD_DIR"]
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def run_waiting_jobs(app) -> None:
    """What a polling process does once, then wait for what it started."""
    with app.app_context():
        found = runner(app)
    queue.poll_once(found)
    assert jobs.wait_all(WAIT)


def set_row(app, job_uuid, **values) -> None:
    with app.app_context(), _db.engine.begin() as conn:
        table = ImportJob.__table__
        conn.execute(sa.update(table).where(table.c.uuid == job_uuid).values(values))


def test_upload_is_stored_in_the_database_in_chunks_and_removed_when_it_ends(
    app, other, postgresql, experiment, monkeypatch
):
    monkeypatch.setattr(storage, "CHUNK", 1000)
    text = HEADER + rows_text(300)
    job = upload(experiment, text)
    assert job_row(app, job.uuid).state == "uploaded"  # nobody on A runs it
    stored = chunks(app, job.uuid)
    assert len(stored) > 1 and b"".join(stored) == text.encode()
    assert local_files(app) == []  # A kept no copy: the database has it

    run_waiting_jobs(other)
    assert job_row(app, job.uuid).state == "checked"
    assert b"".join(chunks(app, job.uuid)) == text.encode()  # kept for the decision
    assert local_files(other) == []

    with app.app_context():
        jobs.confirm(_db.session.get(ImportJob, job.uuid))
    run_waiting_jobs(other)
    assert job_row(app, job.uuid).state == "succeeded"
    assert row_count(app, experiment) == 300
    assert chunks(app, job.uuid) == []
    assert local_files(app) == local_files(other) == []


def test_two_claimers_take_one_job_each_and_skip_a_locked_one(
    app, postgresql, experiment
):
    first = upload(experiment, HEADER + rows_text(2))
    second = upload(experiment, HEADER + rows_text(2))
    table = ImportJob.__table__
    claimed: dict[str, object] = {}
    with app.app_context(), _db.engine.connect() as holder:
        with holder.begin():
            # Another claimer in the middle of its claim of the first job.
            holder.execute(
                sa.select(table.c.uuid)
                .where(table.c.uuid == first.uuid)
                .with_for_update(skip_locked=True)
            )

            def claim_as(owner: str) -> None:
                with app.app_context():
                    claimed[owner] = queue.claim(owner)

            thread = threading.Thread(target=claim_as, args=("b",))
            thread.start()
            thread.join(WAIT)
            assert not thread.is_alive(), "the claim waited for a locked job"
        with app.app_context():
            claimed["a"] = queue.claim("a")
            claimed["c"] = queue.claim("c")
    assert claimed["b"] == (second.uuid, "check")
    assert claimed["a"] == (first.uuid, "check")
    assert claimed["c"] is None  # no job is taken twice
    assert job_row(app, first.uuid).claimed_by == "a"
    assert job_row(app, second.uuid).claimed_by == "b"


def test_claimers_at_the_same_time_never_share_a_job(app, postgresql, experiment):
    made = {upload(experiment, HEADER + rows_text(1)).uuid for _ in range(4)}
    start = threading.Barrier(6)
    got: list = []

    def claimer(owner: str) -> None:
        with app.app_context():
            start.wait()
            got.append(queue.claim(owner))
            _db.session.remove()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    taken = [c[0] for c in got if c is not None]
    assert sorted(taken) == sorted(made)  # each job once, two claimers got none


def test_a_dead_workers_job_is_run_again_and_imports_exactly_its_rows(
    app, other, postgresql, experiment
):
    job = upload(experiment, HEADER + rows_text(120), confirm=True)
    with app.app_context():
        assert queue.claim("dead-worker") == (job.uuid, "check")
    # It died while importing: no heartbeat since, its transaction rolled back.
    old = utcnow() - dt.timedelta(seconds=61)
    set_row(app, job.uuid, state="importing", heartbeat_at=old, rows_done=40)
    with app.app_context():
        status = jobs.status(_db.session.get(ImportJob, job.uuid))
    assert status.is_active  # not shown as failed: another worker takes it

    run_waiting_jobs(other)  # reclaims, then claims and runs it
    done = job_row(app, job.uuid)
    assert (done.state, done.attempts) == ("succeeded", 2)
    assert done.claimed_by == runner(other).owner
    assert row_count(app, experiment) == 120
    assert chunks(app, job.uuid) == []


def test_a_job_whose_import_transaction_is_alive_is_never_taken(
    app, other, postgresql, experiment
):
    job = upload(experiment, HEADER + rows_text(3), confirm=True)
    old = utcnow() - dt.timedelta(seconds=61)
    set_row(app, job.uuid, state="importing", claimed_by="slow", heartbeat_at=old)
    table = ImportJob.__table__
    # The import's lock, as runner._hold takes it, held by a live transaction.
    with app.app_context(), _db.engine.connect() as importer, importer.begin():
        importer.execute(
            sa.select(table.c.uuid)
            .where(table.c.uuid == job.uuid)
            .with_for_update(read=True, key_share=True)
        )
        with other.app_context():
            assert queue.reclaim() == 0
    assert job_row(app, job.uuid).claimed_by == "slow"
    with app.app_context():
        assert queue.reclaim() == 1  # once the transaction is gone
    assert job_row(app, job.uuid).claimed_by is None


def test_a_job_out_of_attempts_fails_with_nothing_written(app, postgresql, experiment):
    job = upload(experiment, HEADER + rows_text(3), confirm=True)
    old = utcnow() - dt.timedelta(seconds=61)
    set_row(
        app, job.uuid, state="importing", claimed_by="x", heartbeat_at=old, attempts=3
    )
    with app.app_context():
        assert queue.reclaim() == 1
    failed = job_row(app, job.uuid)
    assert failed.state == "failed"
    assert "Nothing was written" in failed.message and "3 times" in failed.message
    assert chunks(app, job.uuid) == []
    assert row_count(app, experiment) == 0


def test_another_server_shows_progress_and_serves_the_preview(
    app, other, postgresql, experiment, monkeypatch
):
    reached, go = threading.Event(), threading.Event()
    original = jobs.Live.progress

    def held(live, rows_done):
        original(live, rows_done)
        if live.phase == "importing" and rows_done >= 5000:
            reached.set()
            assert go.wait(WAIT)

    monkeypatch.setattr(jobs.Live, "progress", held)
    job = upload(experiment, HEADER + rows_text(12_000), confirm=True)
    with other.app_context():
        found = runner(other)
    try:
        queue.poll_once(found)
        assert reached.wait(WAIT)
        seen = None
        for _ in range(200):  # the heartbeat writes the count every 0.05 s
            with app.app_context():
                seen = jobs.status(_db.session.get(ImportJob, job.uuid))
            if seen.rows_done:
                break
            threading.Event().wait(0.05)
        assert (seen.state, seen.is_active) == ("importing", True)
        assert seen.rows_done >= 5000
    finally:
        go.set()
        assert jobs.wait_all(WAIT)
    assert job_row(app, job.uuid).state == "succeeded"
    assert row_count(app, experiment) == 12_000


def test_offending_rows_download_from_a_server_without_the_file(
    app, other, postgresql, experiment
):
    job = upload(experiment, HEADER + "P1,fast,w\nP2,0.5,w\n")
    run_waiting_jobs(other)
    assert job_row(app, job.uuid).state == "checked"
    with app.app_context():
        body = b"".join(jobs.offending_csv_chunks(_db.session.get(ImportJob, job.uuid)))
    text = body.decode("utf-8-sig")
    assert "P1,fast,w" in text and "P2" not in text
    assert local_files(app) == [] and local_files(other) == []  # copy removed


def test_the_poller_thread_polls_on_after_an_unexpected_error(monkeypatch, caplog):
    calls = []

    def flaky(found) -> int:
        calls.append(found)
        if len(calls) == 1:
            raise RuntimeError("a bug in one round")
        found.stopping.set()
        return 0

    monkeypatch.setattr(queue, "poll_once", flaky)
    found = SimpleNamespace(
        app=SimpleNamespace(config={"WAVE_JOB_POLL_SECONDS": 0.01}),
        stopping=threading.Event(),
    )
    queue._poll_forever(found)
    assert len(calls) == 2  # the round after the error ran
    assert "polling failed; polling on" in caplog.text


def test_flask_worker_runs_the_jobs_web_processes_leave(app, postgresql, experiment):
    job = upload(experiment, HEADER + rows_text(5), confirm=True)
    assert job_row(app, job.uuid).state == "uploaded"
    result = app.test_cli_runner().invoke(args=["worker", "--until-idle"])
    assert result.exit_code == 0, result.output
    assert "Stopped after 1 import job." in result.output
    assert job_row(app, job.uuid).state == "succeeded"
    assert row_count(app, experiment) == 5


def test_a_stopping_worker_hands_its_job_back(
    app, other, postgresql, experiment, monkeypatch
):
    reached = threading.Event()
    original = jobs.Live.progress

    def held(live, rows_done):
        reached.set()
        live.cancel.wait(WAIT)
        return original(live, rows_done)

    job = upload(experiment, HEADER + rows_text(12_000), confirm=True)
    monkeypatch.setattr(jobs.Live, "progress", held)
    with other.app_context():
        found = runner(other)
    queue.poll_once(found)
    assert reached.wait(WAIT)
    found.release_all()
    assert jobs.wait_all(WAIT)
    back = job_row(app, job.uuid)
    assert (back.state, back.claimed_by, back.attempts) == ("queued", None, 0)
    assert row_count(app, experiment) == 0
    assert chunks(app, job.uuid)  # still there for the next worker


def test_flask_worker_is_refused_on_sqlite(app, dialect):
    if dialect != "sqlite":
        pytest.skip("SQLite only")
    result = app.test_cli_runner().invoke(args=["worker"])
    assert result.exit_code == 1
    assert "Not needed with SQLite" in result.output


def test_sqlite_runs_jobs_in_process_with_the_file_on_disk(app, dialect, experiment):
    if dialect != "sqlite":
        pytest.skip("SQLite only")
    job = upload(experiment, HEADER + rows_text(3))  # WAVE_RUN_JOBS is for queues
    assert jobs.wait_all(WAIT)
    row = job_row(app, job.uuid)
    assert (row.state, row.claimed_by, row.attempts) == ("checked", None, 0)
    assert local_files(app) == [job.uuid.hex + ".csv"]
    assert chunks(app, job.uuid) == []


def test_flask_worker_stops_cleanly_on_sigterm(app, postgresql, database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVE_")}
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY="worker test",
        WAVE_INSTANCE_PATH=str(tmp_path / "worker"),
        WAVE_JOB_POLL_SECONDS="1",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wave_web", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert "Running import jobs" in worker.stdout.readline()
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=WAIT)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, output
    assert "Stopped after 0 import jobs." in output

"""DATABASE_READ_URL: GET pages read a real streaming replica, writes go to the primary.

One private primary and its replica (tests/pgcluster.py: initdb, pg_basebackup -R) for
the whole module, never the shared cluster. The replica's answers are told apart from
the primary's by pausing its WAL replay (`pg_wal_replay_pause()`) and writing on the
primary: a page that shows the new row read the primary, one that does not read the
replica. Statements are also counted per server (port) with an Engine-wide listener.
"""

from __future__ import annotations

import contextlib
import csv
import io
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from tests.api_helpers import bearer
from tests.api_helpers import mint_key
from tests.conftest import close_app_with_jobs
from tests.conftest import make_app
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import row_fields
from tests.pgcluster import PgCluster
from tests.pgcluster import new_folder
from wave_web import create_app
from wave_web import database
from wave_web import replica
from wave_web import schema
from wave_web.access import requires
from wave_web.columns import ColumnDef
from wave_web.config import ConfigError
from wave_web.config import from_environment
from wave_web.extensions import db as _db
from wave_web.models import AuditEntry

pytestmark = pytest.mark.postgresql
COLUMNS = (ColumnDef("score", "INTEGER"), ColumnDef("label", "STRING"))
PIN = 20  # WAVE_READ_PIN_SECONDS here: a paused replica stays "fit" during a test


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[PgCluster, PgCluster]]:
    """A private primary and its streaming replica, for the whole module."""
    # synchronous_commit on, as in production: a commit is flushed before it answers
    primary = PgCluster(new_folder()).init(synchronous_commit="on").start()
    standby = None
    try:
        primary.create_database("wave")
        standby = primary.make_replica(new_folder())
        yield primary, standby
    finally:
        if standby is not None:
            standby.remove()
        primary.remove()


@pytest.fixture(scope="module")
def app(pair, tmp_path_factory):
    primary, standby = pair
    app = make_app(
        primary.url("wave"),
        tmp_path_factory.mktemp("replica"),
        WAVE_DATABASE_READ_URL=standby.url("wave"),
        WAVE_READ_PIN_SECONDS=PIN,
        WAVE_PAGE_QUERY_SECONDS=1,
    )

    @app.get("/test-sleep")
    @requires("viewer")
    def sleepy_page():
        _db.session.execute(sa.text("SELECT pg_sleep(1.5)"))
        return "slept"

    with app.app_context():
        xtype = make_type("Replica test", "replica_test", COLUMNS)
        experiment = make_experiment(xtype, "Replicated")
        make_rows(xtype, experiment, [_row(f"p{i}", i) for i in range(3)])
        app.config["TEST_TYPE_ID"] = xtype.id
        app.config["TEST_EXPERIMENT"] = str(experiment.uuid)
    app.test_client(user="viewer")  # its user and session, before any pause
    app.test_client(user="researcher")
    yield app
    close_app_with_jobs(app)


@pytest.fixture(autouse=True)
def replaying(pair):
    """Every test starts and ends with the replica replaying and caught up."""
    primary, standby = pair
    resume(standby)
    caught_up(primary, standby)
    yield
    if standby.is_running():
        resume(standby)


def _row(pid: str, score: int) -> dict:
    return {"participant_id": pid, "score": score, "label": "first"}


def caught_up(primary: PgCluster, standby: PgCluster, wait: float = 30) -> None:
    """Wait until the replica has replayed everything the primary has written."""
    lsn = primary.psql("SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + wait
    sql = f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"
    while standby.psql(sql) != "t":
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.05)


def pause(standby: PgCluster) -> None:
    standby.psql("SELECT pg_wal_replay_pause()")


def resume(standby: PgCluster) -> None:
    standby.psql("SELECT pg_wal_replay_resume()")


@contextlib.contextmanager
def statements_by_server() -> Iterator[dict[int, list[str]]]:
    """SQL statements run in the block on any engine, by the server's port."""
    seen: dict[int, list[str]] = {}

    def listen(conn, cursor, statement, *args):
        seen.setdefault(conn.engine.url.port, []).append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", listen)


@contextlib.contextmanager
def on_primary(app) -> Iterator[None]:
    """Domain code run by the test itself: pytest-flask keeps a GET request context
    pushed, which would send its reads to the replica; writing() keeps them on the
    primary, as for a background job."""
    with app.app_context(), database.writing():
        yield
        _db.session.rollback()


def add_on_primary(app, pid: str) -> None:
    """A row written on the primary outside any request (as another server would)."""
    from wave_web import catalog

    with on_primary(app):
        experiment = catalog.get_experiment(app.config["TEST_EXPERIMENT"])
        make_rows(experiment.experiment_type, experiment, [_row(pid, 99)])


def grid(client, app) -> str:
    response = client.get(f"/experiments/{app.config['TEST_EXPERIMENT']}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def export_ids(client, app) -> list[str]:
    response = client.get(f"/experiments/{app.config['TEST_EXPERIMENT']}/export.csv")
    assert response.status_code == 200
    text = response.get_data(as_text=True).lstrip("\ufeff")
    return [row["participant_id"] for row in csv.DictReader(io.StringIO(text))]


def summary(client, app) -> str:
    response = client.get(f"/experiments/{app.config['TEST_EXPERIMENT']}/summary")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def api_ids(client, app, key: str) -> list[str]:
    path = f"/api/v1/experiment-data/{app.config['TEST_EXPERIMENT']}/data/?limit=1000"
    response = client.get(path, headers=bearer(key))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    rows = body if isinstance(body, list) else body.get("data", body.get("items"))
    return [r["participant_id"] for r in rows]


# ----------------------------------------------------------------------
# Reads go to the replica
# ----------------------------------------------------------------------


def test_grid_summary_and_export_read_the_replica(app, pair):
    primary, standby = pair
    viewer = app.test_client(user="viewer")
    pause(standby)
    add_on_primary(app, "only-on-primary")
    with statements_by_server() as seen:
        assert "only-on-primary" not in grid(viewer, app)
        assert "only-on-primary" not in export_ids(viewer, app)
        assert "only-on-primary" not in summary(viewer, app)
    on_replica = " ".join(seen.get(standby.port, []))
    on_primary = " ".join(seen.get(primary.port, []))
    assert "replica_test" in on_replica  # the data table was read there
    assert "replica_test" not in on_primary  # and never on the primary
    assert "user_sessions" in on_primary  # who is signed in: the primary, always
    resume(standby)
    caught_up(primary, standby)
    assert "only-on-primary" in grid(viewer, app)
    assert "only-on-primary" in export_ids(viewer, app)


def test_an_export_is_audited_on_the_primary_while_its_rows_come_from_the_replica(
    app, pair
):
    primary, standby = pair
    viewer = app.test_client(user="viewer")
    pause(standby)
    with statements_by_server() as seen:
        export_ids(viewer, app)
    assert not any("INSERT" in s for s in seen.get(standby.port, []))
    assert any("INSERT INTO audit_log" in s for s in seen[primary.port])
    with on_primary(app):
        found = _db.session.scalar(
            sa.select(sa.func.count()).where(AuditEntry.action == "rows.export")
        )
    assert found >= 1


def test_api_reads_use_the_replica_once_it_has_every_change(app, pair):
    primary, standby = pair
    key = mint_key(app, "researcher", "reader")
    add_on_primary(app, "api-replayed")
    caught_up(primary, standby)
    client = app.test_client(user=None)
    for _ in range(2):  # the first also writes the key's last use (primary)
        with statements_by_server() as seen:
            assert "api-replayed" in api_ids(client, app, key)
        assert any("replica_test" in s for s in seen[standby.port])
        assert not any("replica_test" in s for s in seen.get(primary.port, []))


# ----------------------------------------------------------------------
# Read-your-writes
# ----------------------------------------------------------------------


def test_after_a_web_edit_its_author_reads_the_primary_and_others_the_replica(
    app, pair
):
    primary, standby = pair
    author = app.test_client(user="researcher")
    other = app.test_client(user="viewer")
    pause(standby)
    form = row_fields(participant_id="written-by-web", score="5", label="web")
    with statements_by_server() as seen:
        response = author.post(
            f"/experiments/{app.config['TEST_EXPERIMENT']}/rows/new", data=form
        )
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    assert standby.port not in seen  # a POST never touches the replica
    with author.session_transaction() as cookie:
        assert cookie[replica.PIN_KEY] > time.time() + PIN - 5
    assert "written-by-web" in grid(author, app)  # pinned to the primary
    assert "written-by-web" in export_ids(author, app)
    assert "written-by-web" not in grid(other, app)  # the (paused) replica


def test_after_an_api_write_the_key_reads_the_primary_until_the_replica_has_it(
    app, pair
):
    primary, standby = pair
    writer = mint_key(app, "researcher", "writer")
    reader = mint_key(app, "researcher", "other reader")
    caught_up(primary, standby)
    client = app.test_client(user=None)
    pause(standby)
    path = f"/api/v1/experiment-data/{app.config['TEST_EXPERIMENT']}/data/"
    body = {"participant_id": "written-by-api", "data": {"score": 3}}
    response = client.post(path, json=body, headers=bearer(writer))
    assert response.status_code == 201, response.get_data(as_text=True)
    with statements_by_server() as seen:
        assert "written-by-api" in api_ids(client, app, writer)
        assert "written-by-api" in api_ids(client, app, reader)  # on any key
    assert not any("replica_test" in s for s in seen.get(standby.port, []))
    resume(standby)
    caught_up(primary, standby)
    with statements_by_server() as seen:
        assert "written-by-api" in api_ids(client, app, writer)
    assert any("replica_test" in s for s in seen[standby.port])  # the replica again


def test_an_unaudited_api_change_is_read_back_too(app, pair):
    """No audit entry needed: the replica must have replayed the primary's WAL."""
    primary, standby = pair
    key = mint_key(app, "researcher", "tagger")
    caught_up(primary, standby)
    client = app.test_client(user=None)
    pause(standby)
    made = client.post("/api/v1/tags/", json={"name": "fresh-tag"}, headers=bearer(key))
    assert made.status_code == 200, made.get_data(as_text=True)
    found = client.get(f"/api/v1/tags/{made.get_json()['id']}", headers=bearer(key))
    assert found.status_code == 200
    assert found.get_json()["name"] == "fresh-tag"


def test_a_schema_change_is_seen_by_the_pinned_reader_and_not_mixed_for_others(
    app, pair
):
    """The reflection cache is per (table, schema_version): the replica's older
    version is reflected from the replica's own catalog, the newer from the primary."""
    primary, standby = pair
    viewer = app.test_client(user="viewer")
    pinned = app.test_client(user="researcher")
    grid(viewer, app)  # the replica's version is cached
    pause(standby)
    with on_primary(app):
        xtype = schema.get_type(app.config["TEST_TYPE_ID"])
        schema.add_column(xtype, ColumnDef("added_later", "STRING"))
        _db.session.commit()
    with pinned.session_transaction() as cookie:
        cookie[replica.PIN_KEY] = int(time.time()) + PIN
    for _ in range(2):  # alternate: each reads its own server's version
        assert "added_later" not in grid(viewer, app)
        assert "added_later" in grid(pinned, app)
    assert "added_later" not in export_ids(viewer, app)
    resume(standby)
    caught_up(primary, standby)
    assert "added_later" in grid(viewer, app)


# ----------------------------------------------------------------------
# Limits, jobs, faults
# ----------------------------------------------------------------------


def test_the_page_time_limit_applies_on_the_replica(app, pair):
    _primary, standby = pair
    viewer = app.test_client(user="viewer")
    with statements_by_server() as seen:
        response = viewer.get("/test-sleep")
    assert response.status_code == 503
    assert "pg_sleep" not in response.get_data(as_text=True)
    assert any("pg_sleep" in s for s in seen[standby.port])
    assert viewer.get("/test-sleep").status_code == 503  # and the next one too


def test_an_import_job_writes_on_the_primary_only(app, pair):
    primary, standby = pair
    key = mint_key(app, "researcher", "uploader")
    caught_up(primary, standby)
    client = app.test_client(user=None)
    replica_port = standby.port
    from_threads: list[str] = []

    def listen(conn, cursor, statement, *args):
        if conn.engine.url.port == replica_port and (
            threading.current_thread() is not threading.main_thread()
        ):
            from_threads.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", listen)
    try:
        body = "participant_id,score,label\nJ1,1,job\nJ2,2,job\n"
        response = client.post(
            f"/api/v1/experiment-data/{app.config['TEST_EXPERIMENT']}/data/upload",
            headers=bearer(key) | {"Content-Type": "text/csv"},
            data=body.encode(),
        )
        assert response.status_code in (201, 202), response.get_data(as_text=True)
        from wave_web.csv_io import jobs

        with app.app_context():
            assert jobs.wait_all(60)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", listen)
    assert from_threads == []
    count = primary.psql(
        "SELECT count(*) FROM replica_test WHERE participant_id IN ('J1', 'J2')", "wave"
    )
    assert count == "2"


def test_migrations_run_on_the_primary_only(pair, tmp_path):
    primary, standby = pair
    with statements_by_server() as seen:
        app = make_app(
            primary.url("wave"),
            tmp_path,
            with_admin=False,
            WAVE_DATABASE_READ_URL=standby.url("wave"),
        )
    with app.app_context():
        _db.engine.dispose()
        _db.engines[replica.READ_BIND].dispose()
    assert any("alembic_version" in s for s in seen[primary.port])
    assert standby.port not in seen


def test_health_reports_the_replica(app):
    response = app.test_client(user=None).get("/health")
    assert response.status_code == 200
    assert response.get_json()["read_replica"]["status"] == "ok"


def test_a_lagging_replica_is_passed_over_for_the_primary(pair, tmp_path):
    primary, standby = pair
    app = make_app(
        primary.url("wave"),
        tmp_path,
        WAVE_DATABASE_READ_URL=standby.url("wave"),
        WAVE_READ_PIN_SECONDS=1,
    )
    try:
        app.config["TEST_EXPERIMENT"] = _experiment_of(app)
        viewer = app.test_client(user="viewer")
        caught_up(primary, standby)
        pause(standby)
        add_on_primary(app, "while-lagging")
        time.sleep(1.5)  # the replica's last replayed change is now older than 1 s
        assert "while-lagging" in grid(viewer, app)
        health = app.test_client(user=None).get("/health")
        assert health.status_code == 200
        assert health.get_json()["read_replica"]["status"] == "lagging"
    finally:
        with app.app_context():
            _db.engine.dispose()
            _db.engines[replica.READ_BIND].dispose()


def _experiment_of(app) -> str:
    from wave_web.models import Experiment

    with on_primary(app):
        found = _db.session.scalar(
            sa.select(Experiment.uuid).where(Experiment.description == "Replicated")
        )
    return str(found)


def test_a_stopped_replica_leaves_every_page_answering_from_the_primary(
    app, pair, monkeypatch
):
    """Last in the module: it stops the replica, then starts it again."""
    primary, standby = pair
    monkeypatch.setattr(replica, "DOWN_SECONDS", 0.5)
    viewer = app.test_client(user="viewer")
    key = mint_key(app, "researcher", "while down")
    grid(viewer, app)  # pooled replica connections, soon dead
    standby.stop()
    try:
        add_on_primary(app, "while-down")
        assert "while-down" in grid(viewer, app)
        assert "while-down" in export_ids(viewer, app)
        summary(viewer, app)
        assert "while-down" in api_ids(app.test_client(user=None), app, key)
        health = app.test_client(user=None).get("/health")
        assert health.status_code == 200
        assert health.get_json()["read_replica"] == {"status": "unreachable"}
    finally:
        standby.start()
    caught_up(primary, standby)
    time.sleep(0.6)
    with statements_by_server() as seen:
        assert "while-down" in grid(viewer, app)
    assert standby.port in seen  # used again once it is back


# ----------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------


def test_sqlite_refuses_a_read_url_at_start(tmp_path):
    with pytest.raises(ConfigError, match="DATABASE_READ_URL .*needs PostgreSQL"):
        create_app(
            {
                "TESTING": True,
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'wave.db'}",
                "WAVE_DATABASE_READ_URL": "postgresql://replica.example/wave",
            }
        )


@pytest.mark.parametrize(
    ("sql", "replica_may_run"),
    [
        ("SELECT id FROM t", True),
        ("  select id from t where note = 'format'", True),
        ("SELECT id FROM t FOR UPDATE", False),
        ("SELECT id FROM t FOR NO KEY UPDATE", False),
        ("SELECT id FROM t FOR SHARE", False),
        ("select id from t for key share skip locked", False),
        ("UPDATE t SET a = 1", False),
        ("WITH gone AS (DELETE FROM t RETURNING id) SELECT id FROM gone", False),
    ],
)
def test_only_selects_without_a_row_lock_go_to_the_replica(sql, replica_may_run):
    assert replica._is_read(sa.text(sql)) is replica_may_run
    assert replica._is_read(sa.select(sa.literal(1))) is True
    assert (
        replica._is_read(sa.select(sa.literal(1)).with_for_update(read=True)) is False
    )


def test_the_read_url_and_pin_come_from_the_environment():
    found = from_environment(
        {"DATABASE_READ_URL": "postgresql://r/wave", "WAVE_READ_PIN_SECONDS": "3"}
    )
    assert found["WAVE_DATABASE_READ_URL"] == "postgresql://r/wave"
    assert found["WAVE_READ_PIN_SECONDS"] == 3
    with pytest.raises(ConfigError, match="WAVE_READ_PIN_SECONDS"):
        from_environment({"WAVE_READ_PIN_SECONDS": "soon"})

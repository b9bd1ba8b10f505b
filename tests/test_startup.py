"""Start-up with many workers at once: migrations, first admin and secret key race.

gunicorn starts its workers together; each runs create_app(): migrate the database,
create the first admin from WAVE_ADMIN_EMAIL/_PASSWORD, make instance/secret_key.
Before these were serialised, a losing worker failed to boot ("database is locked",
"already has an account") and gunicorn shut the whole server down. Each start here
is on an empty database and an empty instance folder, with 4 workers, repeated.
"""

from __future__ import annotations

import re
import time

import requests
import sqlalchemy as sa
from tests.servers import ADMIN
from tests.servers import WORKERS
from tests.servers import start_gunicorn
from tests.servers import stop
from tests.servers import wait_for_every_worker
from wave_web.config import normalise_database_url

STARTS = 3


def _empty(url: str) -> None:
    """Drop every table of the test's database (SQLite file or PostgreSQL schema)."""
    engine = sa.create_engine(normalise_database_url(url))
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.begin() as conn:
            for table in reversed(meta.sorted_tables):
                conn.execute(sa.schema.DropTable(table))
    finally:
        engine.dispose()


def _accounts(url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(normalise_database_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT email, role FROM users"))
            return [tuple(r) for r in rows]
    finally:
        engine.dispose()


def test_four_workers_starting_together_on_an_empty_database_all_boot(
    database_url, tmp_path
):
    for start in range(STARTS):
        if start:
            _empty(database_url)
        instance = tmp_path / f"instance-{start}"
        log_path = tmp_path / f"gunicorn-{start}.log"
        process = start_gunicorn(database_url, instance, log_path)
        try:
            base = wait_for_every_worker(process, log_path)
            for _ in range(2 * WORKERS):  # every answer from a booted worker
                assert requests.get(base + "/health", timeout=10).status_code == 200
            time.sleep(0.5)
            text = log_path.read_text()
            assert process.poll() is None, text[-4000:]
            assert "Worker failed to boot" not in text, text[-4000:]
            assert "Traceback" not in text, text[-4000:]
            # memory:// counts sign-ins per worker: every worker says so
            assert text.count("Sign-in limits are counted in each of the 4") == 4
        finally:
            stop(process)
        assert _accounts(database_url) == [(ADMIN, "admin")]
        secret = (instance / "secret_key").read_text()
        assert re.fullmatch(r"[0-9a-f]{64}", secret)
        assert [
            p.name for p in instance.iterdir() if p.name.startswith(".secret")
        ] == []


def test_the_secret_key_file_is_made_once_and_read_by_everyone_else(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from wave_web.config import instance_secret

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: instance_secret(str(tmp_path)), range(32)))
    assert len(keys) == 1
    assert (tmp_path / "secret_key").read_text() == keys.pop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]


def test_init_db_brings_the_database_up_to_date(app):
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0 and "Database is up to date." in result.output


def test_init_db_fails_when_the_database_is_unreachable(tmp_path):
    from wave_web import create_app

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": "postgresql://nobody@127.0.0.1:1/none",
            "SECRET_KEY": "x",
            "WAVE_DB_TIMEOUT_SECONDS": 1,
        }
    )
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 1
    assert "The database is not reachable." in result.output
    assert "Traceback" not in result.output

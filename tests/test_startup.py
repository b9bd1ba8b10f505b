"""Start-up with many workers at once: migrations, first admin and secret key race.

gunicorn starts its workers together; each runs create_app(): migrate the database,
create the first admin from WAVE_ADMIN_EMAIL/_PASSWORD, make instance/secret_key.
Before these were serialised, a losing worker failed to boot ("database is locked",
"already has an account") and gunicorn shut the whole server down. Each start here
is on an empty database and an empty instance folder, with 4 workers, repeated.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from wave_web.config import normalise_database_url

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 4
STARTS = 3
BOOT_SECONDS = 90  # 4 workers importing at once on a busy 2-core machine
LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")
READY = re.compile(r"Worker \d+ ready")
FAILED = ("Worker failed to boot", "Traceback", "Shutting down: Master")
ADMIN = "first.admin@example.org"


def _empty(url: str) -> None:
    """Drop every table of the test's database (SQLite file or PostgreSQL schema)."""
    engine = sa.create_engine(normalise_database_url(url))
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.begin() as conn:
            for table in reversed(meta.sorted_tables):
                conn.execute(
                    sa.text(f'DROP TABLE "{table.name}" CASCADE')
                    if engine.dialect.name == "postgresql"
                    else sa.schema.DropTable(table)
                )
    finally:
        engine.dispose()


def _start(url: str, instance: Path, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVE_")}
    env.pop("SECRET_KEY", None)  # made by the workers, in the instance folder
    env.update(
        DATABASE_URL=url,
        WAVE_INSTANCE_PATH=str(instance),
        WAVE_ADMIN_EMAIL=ADMIN,
        WAVE_ADMIN_PASSWORD="a long first password",
        PYTHONPATH=str(ROOT),
    )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        str(WORKERS),
        "-b",
        "127.0.0.1:0",
        "--graceful-timeout",
        "5",
        "wsgi:app",
    ]
    with open(log_path, "w") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def _wait_for_every_worker(process: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + BOOT_SECONDS
    while time.monotonic() < deadline:
        text = log_path.read_text()
        failed = [m for m in FAILED if m in text]
        if failed or process.poll() is not None:
            pytest.fail(f"gunicorn: {failed or 'exited'}\n{text[-4000:]}")
        found = LISTENING.search(text)
        if found and len(READY.findall(text)) >= WORKERS:
            return found.group(1)
        time.sleep(0.2)
    pytest.fail("not every worker booted in time:\n" + log_path.read_text()[-4000:])


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _accounts(url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(normalise_database_url(url))
    try:
        with engine.connect() as conn:
            return [
                tuple(r) for r in conn.execute(sa.text("SELECT email, role FROM users"))
            ]
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
        process = _start(database_url, instance, log_path)
        try:
            base = _wait_for_every_worker(process, log_path)
            for _ in range(2 * WORKERS):  # every answer from a booted worker
                assert requests.get(base + "/health", timeout=10).status_code == 200
            time.sleep(0.5)
            text = log_path.read_text()
            assert process.poll() is None, text[-4000:]
            assert not [m for m in FAILED if m in text], text[-4000:]
        finally:
            _stop(process)
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

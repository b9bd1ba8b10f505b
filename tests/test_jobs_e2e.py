"""Two app servers on one PostgreSQL database share import jobs (issue 14 item 2).

Gunicorn A and gunicorn B, each with its own instance folder (so its own upload
folder), run against one database. A file is uploaded through A; B shows the job's
progress; A is killed with SIGKILL (master and workers) in the middle of the import;
B takes the job up when its lease expires and imports it. The rows are then exactly
the file's (or none, if the job failed), never part of them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time

import pytest
import requests
from tests.conftest import make_app
from tests.factories import make_experiment
from tests.factories import make_type
from tests.servers import ADMIN
from tests.servers import start_gunicorn
from tests.servers import stop
from tests.servers import wait_for_every_worker
from wave_web.columns import ColumnDef
from wave_web.extensions import db as _db
from wave_web.models import Experiment
from wave_web.models import ImportJob

ROWS = 300_000  # several seconds of import here (~8 s): A dies in the middle
DEADLINE = 60
SETTINGS = {
    "SECRET_KEY": "two servers share this secret",
    "WAVE_IMPORT_STALE_SECONDS": "4",  # the lease: B takes the job 4 s after A died
    "WAVE_IMPORT_HEARTBEAT_SECONDS": "1",
    "WAVE_JOB_POLL_SECONDS": "1",
    "WAVE_IMPORT_SYNC_SECONDS": "1",
}


def csv_file(path) -> int:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("participant_id,rt,word\n")
        for start in range(0, ROWS, 50_000):
            fh.write(
                "".join(
                    f"P{i % 700},{i / 1000},w{i}\n"
                    for i in range(start, min(ROWS, start + 50_000))
                )
            )
    return os.path.getsize(path)


def csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(base: str) -> requests.Session:
    browser = requests.Session()
    token = csrf(browser.get(base + "/login", timeout=10).text)
    r = browser.post(
        base + "/login",
        data={"email": ADMIN, "password": "a long first password", "csrf_token": token},
        timeout=10,
    )
    assert r.status_code == 200 and "/login" not in r.url, r.text[:300]
    return browser


def kill_everything(process: subprocess.Popen) -> None:
    """SIGKILL gunicorn's workers and its master: the server dies mid-work."""
    found = subprocess.run(
        ["pgrep", "-P", str(process.pid)], capture_output=True, text=True
    )
    for pid in [int(p) for p in found.stdout.split()] + [process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(10)


def job_state(browser: requests.Session, url: str) -> dict:
    r = browser.get(url, headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text[:300]
    return r.json()


def test_a_server_killed_mid_import_leaves_the_job_to_the_other(database_url, tmp_path):
    if database_url.startswith("sqlite"):
        pytest.skip("several servers need PostgreSQL")
    app = make_app(database_url, tmp_path, with_admin=False, WAVE_RUN_JOBS=False)
    with app.app_context():
        xtype = make_type(
            "Flanker",
            "flanker",
            (ColumnDef("rt", "FLOAT"), ColumnDef("word", "STRING")),
        )
        experiment_uuid = make_experiment(xtype, "Pilot").uuid
        _db.session.remove()
    data = tmp_path / "big.csv"
    csv_file(data)

    servers = {}
    try:
        for name in ("a", "b"):  # both at once: they share the first start-up
            (tmp_path / name).mkdir()
            log = tmp_path / f"{name}.log"
            process = start_gunicorn(
                database_url, tmp_path / name, log, workers=2, **SETTINGS
            )
            servers[name] = (process, log)
        for name, (process, log) in list(servers.items()):
            servers[name] += (wait_for_every_worker(process, log, 2),)
        (process_a, _, base_a), (_, _, base_b) = servers["a"], servers["b"]
        a, b = sign_in(base_a), sign_in(base_b)

        page = f"/experiments/{experiment_uuid}/import"
        token = csrf(a.get(base_a + page, timeout=10).text)
        with open(data, "rb") as fh:
            r = a.post(
                base_a + page,
                data={"csrf_token": token, "confirm": "1"},
                files={"file": ("big.csv", fh, "text/csv")},
                allow_redirects=False,
                timeout=60,
            )
        assert r.status_code == 202, r.text[:500]
        job_url = base_b + r.headers["Location"].replace(base_a, "")

        # B follows the job A runs, from the database, until rows are being written.
        deadline = time.monotonic() + DEADLINE
        seen = job_state(b, job_url)
        while not (seen["state"] == "importing" and seen["rows_done"] > 0):
            assert seen["state"] in ("uploaded", "queued", "importing"), seen
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
            seen = job_state(b, job_url)
        killed = time.monotonic()
        kill_everything(process_a)

        while seen["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, seen
            time.sleep(0.5)
            seen = job_state(b, job_url)
        print(f"B finished the job {time.monotonic() - killed:.1f} s after A died")
    finally:
        for process, *_ in servers.values():
            if process.poll() is None:
                stop(process)

    with app.app_context():
        rows = _db.session.get(Experiment, experiment_uuid).row_count
        job = _db.session.scalars(
            _db.select(ImportJob).where(ImportJob.experiment_uuid == experiment_uuid)
        ).one()
        _db.session.remove()
        _db.engine.dispose()
    if seen["state"] == "failed":  # allowed: then nothing at all was written
        assert "Nothing was written" in seen["message"] and rows == 0
        return
    assert rows == seen["written"] == ROWS
    assert job.attempts == 2 and job.claimed_by.split(":")[1] != str(process_a.pid)

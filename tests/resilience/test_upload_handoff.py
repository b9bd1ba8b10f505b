"""An upload left to the job queue (PostgreSQL) keeps its file for a process of the
same server that claimed it first: the worker processes of a server share the
upload folder, and the load test (tests/resilience/test_load.py) saw an import fail
with FileNotFoundError when the receiving process removed the file meanwhile.
"""

from __future__ import annotations

import pytest
from tests.conftest import close_app_with_jobs
from tests.factories import make_experiment
from tests.factories import make_type
from tests.test_jobs_shared import COLUMNS
from tests.test_jobs_shared import HEADER
from tests.test_jobs_shared import local_files
from tests.test_jobs_shared import rows_text
from tests.test_jobs_shared import server
from tests.test_jobs_shared import upload
from wave_web.csv_io import queue
from wave_web.extensions import db


@pytest.mark.parametrize("claimed", [True, False], ids=["claimed", "unclaimed"])
def test_the_receiver_removes_its_copy_only_when_nobody_claimed_the_job(
    database_url, tmp_path, monkeypatch, claimed
):
    app = server(database_url, tmp_path, "a", WAVE_RUN_JOBS=False)
    try:
        with app.app_context():
            if db.engine.dialect.name == "sqlite":
                pytest.skip("SQLite runs jobs in-process (no queue)")
            experiment = make_experiment(make_type("Stroop", "stroop", COLUMNS), "P")

            def another_process_claims_first(job_uuid, start):
                if claimed:  # a sibling worker's poller, between commit and dispatch
                    assert queue.claim("sibling", job_uuid) is not None
                return False

            monkeypatch.setattr(queue, "dispatch", another_process_claims_first)
            job = upload(experiment, HEADER + rows_text(10))
        expected = [job.uuid.hex + ".csv"] if claimed else []  # else: the database's
        assert local_files(app) == expected
    finally:
        close_app_with_jobs(app)

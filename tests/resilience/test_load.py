"""The app holds up under load (issue 14 item 4, short version of bench/load.py).

gunicorn with the repository's gunicorn.conf.py, 200,000 rows preloaded, then for
20 s: 16 users browsing (lists, grid pages and next pages, a filter, a sort, inline
edits with CSRF and optimistic concurrency), 2 users uploading 10,000-row CSVs back
to back through the upload form, 1 user streaming the whole export in a loop.
Every answer below 500, every connection kept, every uploaded row stored once.
Percentiles are printed (`pytest -s`), never asserted: bench/load.py measures.
"""

from __future__ import annotations

from tests.resilience import scenario
from tests.servers import ADMIN
from tests.servers import start_gunicorn
from tests.servers import wait_for_every_worker

SECONDS = 20


def test_load_leaves_no_5xx_no_connection_error_and_no_lost_row(database_url, tmp_path):
    experiment = scenario.prepare(database_url, tmp_path)
    upload_csv = scenario.write_csv(tmp_path / "upload.csv", scenario.UPLOAD_ROWS)
    plan = scenario.Plan(experiment, upload_csv)
    with scenario.served(
        database_url, tmp_path, start_gunicorn, wait_for_every_worker
    ) as (base, log_path):
        results = scenario.run(base, ADMIN, plan, SECONDS)
    print("\n" + "\n".join(results.table()))
    counted, stored = scenario.count_rows(database_url, tmp_path, experiment)
    expected = scenario.ROWS + scenario.UPLOAD_ROWS * results.uploads_completed

    assert results.responses_5xx == 0, results.unexpected
    assert results.connection_errors == []
    assert results.unexpected == []
    assert scenario.server_problems(log_path) == []
    assert (counted, stored) == (expected, expected)
    # every kind of user got its work done, so the run proves something
    assert results.uploads_completed >= 1, results.uploads_refused
    assert results.exports_completed >= 1
    assert results.edits_saved >= 1
    assert {"experiments", "types", "grid", "grid_next", "filter", "sort"} <= set(
        results.times
    )

"""A researcher uploads a CSV file, confirms, sees and downloads it."""

from __future__ import annotations

import csv
import re
import threading

import pytest
from playwright.sync_api import expect
from tests.conftest import make_app
from tests.factories import make_experiment
from tests.factories import make_type
from wave_web.columns import ColumnDef
from wave_web.csv_io import jobs
from wave_web.extensions import db
from werkzeug.serving import make_server

pytestmark = pytest.mark.browser

FILE = "subject_nr,rt,word\n007,0.41,rot\n008,0.93,grün\n009,,blau\n"


@pytest.fixture
def server(database_url, tmp_path):
    """A live server with one empty experiment; yields (base url, experiment path)."""
    app = make_app(
        database_url,
        tmp_path,
        WTF_CSRF_ENABLED=True,
        WAVE_UPLOAD_DIR=str(tmp_path / "uploads"),
    )
    with app.app_context():
        xtype = make_type(
            "Stroop", "stroop", [ColumnDef("rt", "FLOAT"), ColumnDef("word", "STRING")]
        )
        path = f"/experiments/{make_experiment(xtype, 'Pilot').uuid}"
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", path
    server.shutdown()
    thread.join(timeout=5)
    with app.app_context():
        jobs.wait_all(30)
        db.session.remove()
        db.engine.dispose()


def test_upload_preview_map_confirm_and_see_the_rows(page, server, tmp_path):
    base, path = server
    csv_file = tmp_path / "stroop session 1.csv"
    csv_file.write_text(FILE, encoding="utf-8")

    page.goto(base + path)
    page.get_by_role("link", name="Import CSV").click()
    expect(page.get_by_role("heading", name="Import CSV")).to_be_visible()
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    page.get_by_role("button", name="Upload and check").click()

    # The check runs as a job; the page follows it and shows the preview.
    expect(page.get_by_role("heading", name="Columns of the file")).to_be_visible()
    # The participant column is proposed and applied before the check.
    select = page.get_by_label("Column 1 subject_nr goes to")
    expect(select).to_have_value("participant_id")

    expect(page.locator(".alert-success")).to_contain_text("All 3 rows are valid.")
    preview = page.locator("table.preview-rows tbody tr")
    expect(preview).to_have_count(3)
    expect(preview.first).to_contain_text("007")
    page.get_by_role("button", name="Import 3 rows").click()

    expect(page.locator(".alert-success")).to_contain_text("Imported 3 rows.")
    page.get_by_role("link", name="See the rows").click()
    expect(page.locator("#row-count")).to_have_text("3")
    grid = page.locator("#grid tbody")
    expect(grid).to_contain_text("grün")
    expect(grid).to_contain_text("007")

    # … and the same rows come back in a download.
    page.locator(".export-menu > summary").click()
    page.get_by_role("link", name="Export options…").click()
    with page.expect_download() as info:
        page.get_by_role("button", name=re.compile(r"^Download( CSV)?$")).click()
    with open(info.value.path(), encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["participant_id"], r["rt"], r["word"]) for r in rows] == [
        ("007", "0.41", "rot"),
        ("008", "0.93", "grün"),
        ("009", "", "blau"),
    ]


def test_a_file_over_the_limit_is_refused_before_it_is_sent(page, server, tmp_path):
    base, path = server
    page.goto(base + path + "/import")
    form = page.locator("#upload-form")
    form.evaluate("f => f.setAttribute('data-max-bytes', '10')")
    big = tmp_path / "big.csv"
    big.write_text(FILE, encoding="utf-8")
    expect(page.locator("#file-too-large")).to_be_hidden()
    page.get_by_label("CSV file").set_input_files(str(big))
    expect(page.locator("#file-too-large")).to_be_visible()
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_role("heading", name="Import CSV")).to_be_visible()
    assert page.url.endswith("/import")

"""A researcher creates a type from a PsychoPy file on one screen and sees its rows."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect
from tests.conftest import make_app
from wave_web.csv_io import jobs
from wave_web.extensions import db
from werkzeug.serving import make_server

pytestmark = pytest.mark.browser

SAMPLE = Path(__file__).parents[1] / "data" / "samples" / "psychopy_stroop.csv"


@pytest.fixture
def server(database_url, tmp_path):
    app = make_app(
        database_url,
        tmp_path,
        WTF_CSRF_ENABLED=True,
        WAVE_UPLOAD_DIR=str(tmp_path / "uploads"),
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    with app.app_context():
        jobs.wait_all(30)
        db.session.remove()
        db.engine.dispose()


def test_type_from_a_psychopy_file_in_one_screen(page, server, tmp_path):
    sample = tmp_path / "psychopy_stroop.csv"
    shutil.copyfile(SAMPLE, sample)
    page.goto(server + "/types/")
    page.get_by_role("link", name="Create a type from a file").first.click()
    page.get_by_label("Data file").set_input_files(str(sample))
    page.get_by_role("button", name="Upload and analyse").click()

    expect(page.locator("#row-count")).to_have_text("59")
    expect(page.locator("#check-ok")).to_contain_text("All 59 rows are valid")
    # key_resp.rt is proposed as key_resp_rt, a FLOAT; the participant column is found.
    expect(page.locator("input[value=key_resp_rt]")).to_be_visible()
    row = page.locator("tr", has=page.locator("input[value=key_resp_rt]"))
    expect(row.locator("select").first).to_have_value("FLOAT")
    expect(page.locator("tr.table-primary")).to_contain_text("participant")
    # A change is applied in place (htmx) and checked again.
    page.get_by_label("Type name").fill("PsychoPy stroop")
    page.get_by_label("Type name").press("Tab")
    expect(page.locator("#check-ok")).to_contain_text("All 59 rows are valid")
    page.get_by_role("button", name="Create the type and import 59 rows").click()

    expect(page.locator("#row-count")).to_have_text("59")
    expect(page.locator("#grid tbody")).to_contain_text("007")

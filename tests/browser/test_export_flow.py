"""A researcher exports the grid view they set up, with and without a dictionary."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import zipfile

import pytest
from playwright.sync_api import expect
from tests.conftest import make_app
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web.columns import ColumnDef
from wave_web.extensions import db
from werkzeug.serving import make_server

pytestmark = pytest.mark.browser

SCREENSHOT = "/tmp/wave_export_options.png"


@pytest.fixture
def stroop(database_url, tmp_path):
    """A live server with one experiment of six rows; yields (base url, grid path)."""
    app = make_app(database_url, tmp_path, WTF_CSRF_ENABLED=True)
    with app.app_context():
        xtype = make_type(
            "Stroop",
            "stroop",
            [ColumnDef("rt", "FLOAT"), ColumnDef("word", "STRING")],
        )
        experiment = make_experiment(xtype, "Pilot <i>one</i>")
        rows = [
            ("P0", 0.41, "Red"),
            ("P1", 0.93, "blue"),
            ("P2", 0.52, "=red()"),
            ("P3", 0.77, "RED"),
            ("P4", None, "red"),
            ("P5", 0.1, "green"),
        ]
        make_rows(
            xtype,
            experiment,
            [{"participant_id": p, "rt": rt, "word": w} for p, rt, w in rows],
        )
        grid_path = f"/experiments/{experiment.uuid}"
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", grid_path
    server.shutdown()
    thread.join(timeout=5)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def downloaded(download) -> bytes:
    with open(download.path(), "rb") as f:
        return f.read()


def test_export_options_download_the_view_as_csv_and_zip(page, stroop):
    base, path = stroop
    # a filter in any case (needs the database's lower()) and a sort, as in the grid
    page.goto(f"{base}{path}?word__icontains=RED&_sort=rt&_dir=desc&_size=25")
    page.locator("details.export-menu summary").click()
    page.get_by_role("link", name="Export options…").click()

    expect(page).to_have_title(re.compile(r"^Export · Pilot <i>one</i>"))
    expect(page.locator("#export-count")).to_have_text(
        re.compile(r"4 rows matching the view")
    )
    expect(page.get_by_label("Neutralise formulas (recommended)")).to_be_checked()
    page.screenshot(path=SCREENSHOT, full_page=True)

    with page.expect_download() as info:
        page.get_by_role("button", name=re.compile(r"^Download( CSV)?$")).click()
    csv_file = info.value
    assert re.fullmatch(
        r"stroop-[0-9a-f]{8}-filtered-\d{4}-\d\d-\d\d\.csv", csv_file.suggested_filename
    )
    rows = list(csv.DictReader(io.StringIO(downloaded(csv_file).decode("utf-8"))))
    assert [r["participant_id"] for r in rows] == ["P3", "P2", "P0", "P4"]
    assert [r["word"] for r in rows] == ["RED", "'=red()", "Red", "red"]
    assert list(rows[0]) == ["id", "participant_id", "rt", "word"]

    page.get_by_label("Neutralise formulas (recommended)").uncheck()
    page.get_by_label("Include a data dictionary (download a .zip)").check()
    page.get_by_label("Add a byte order mark for Excel").check()
    with page.expect_download() as info:
        page.get_by_role("button", name=re.compile(r"^Download( CSV)?$")).click()
    zip_file = info.value
    assert zip_file.suggested_filename.endswith(".zip")
    archive = zipfile.ZipFile(io.BytesIO(downloaded(zip_file)))
    names = archive.namelist()
    body = archive.read(names[0])
    assert body.startswith(b"\xef\xbb\xbf")
    assert b",=red()" in body
    sidecar = json.loads(archive.read(names[1]))
    assert sidecar["row_count"] == 4
    assert sidecar["view"]["filters"][0]["label"] == "word contains (any case) RED"


def test_grid_download_link_exports_the_view_directly(page, stroop):
    base, path = stroop
    page.goto(f"{base}{path}?rt__lt=0.6")
    page.locator("details.export-menu summary").click()
    page.screenshot(path="/tmp/wave_export_menu.png")
    with page.expect_download() as info:
        name = "Download CSV: 3 rows, filtered by rt < 0.6"
        page.get_by_role("link", name=name).click()
    rows = list(csv.DictReader(io.StringIO(downloaded(info.value).decode("utf-8"))))
    assert [r["participant_id"] for r in rows] == ["P0", "P2", "P5"]
    expect(page.locator("#grid")).to_be_visible()  # the page stayed where it was

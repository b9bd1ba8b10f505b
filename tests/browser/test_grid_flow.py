"""A researcher filters and sorts rows, edits a cell inline, and goes back."""

from __future__ import annotations

import threading

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


@pytest.fixture
def stroop(database_url, tmp_path):
    """A live server with one experiment of six rows; yields (base url, grid url)."""
    app = make_app(database_url, tmp_path, WTF_CSRF_ENABLED=True)
    with app.app_context():
        xtype = make_type(
            "Stroop", "stroop", [ColumnDef("rt", "FLOAT"), ColumnDef("word", "STRING")]
        )
        experiment = make_experiment(xtype, "Pilot")
        rows = [
            (0.41, "red"),
            (0.93, "blue"),
            (0.52, "red"),
            (0.77, "red"),
            (None, "red"),
        ]
        make_rows(
            xtype,
            experiment,
            [
                {"participant_id": f"P{i}", "rt": rt, "word": w}
                for i, (rt, w) in enumerate(rows)
            ],
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


def participants(page) -> list[str]:
    return [
        cell.inner_text()
        for cell in page.locator("#grid tbody tr td:nth-child(3)").all()
    ]


def test_filter_sort_and_inline_edit_keep_the_view_in_the_address(page, stroop):
    base, path = stroop
    page.goto(base + path)
    page.get_by_label("Column").select_option("word")
    page.get_by_label("Condition").select_option("exact")
    page.get_by_label("Value").fill("red")
    page.get_by_role("button", name="Add filter").click()
    expect(page.locator("#grid-range")).to_contain_text("Rows 1–4 of 4 matching")
    assert "word__exact=red" in page.url

    page.locator("#grid thead").get_by_role("link", name="rt", exact=True).click()
    expect(page.locator("#grid thead th[aria-sort=ascending]")).to_contain_text("rt")
    assert participants(page) == ["P0", "P2", "P3", "P4"]  # empty rt last
    assert "_sort=rt" in page.url and "word__exact=red" in page.url

    row = page.locator("#grid tbody tr").first
    row.get_by_role("link", name="Edit row").click()
    editing = page.locator("#grid tbody tr[data-editing]")
    # focus moves in once htmx has settled the row: its form is live from then on
    expect(editing.get_by_label("participant_id")).to_be_focused()
    editing.get_by_label("rt", exact=True).fill("0.99")
    editing.get_by_label("rt", exact=True).press("Enter")
    expect(page.locator("#row-status")).to_contain_text("Saved row")
    expect(page.locator("#grid tbody tr").first).to_contain_text("0.99")

    page.go_back()  # back to the unsorted, filtered view
    expect(page.locator("#grid thead th[aria-sort]")).to_have_text("id ▲")
    assert "word__exact=red" in page.url and "_sort" not in page.url

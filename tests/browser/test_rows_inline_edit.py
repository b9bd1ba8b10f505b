"""Editing rows in the grid: inline edit with Enter/Escape, conflicts, deletes."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from playwright.sync_api import expect
from tests.conftest import make_app
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import datatables
from wave_web.columns import ColumnDef
from wave_web.extensions import db
from wave_web.models import Experiment
from werkzeug.serving import make_server

pytestmark = pytest.mark.browser


@dataclass
class Live:
    url: str
    app: object
    experiment_uuid: object
    ids: list[int]


@pytest.fixture
def grid(database_url, tmp_path):
    """A live server with one experiment of three rows, CSRF on."""
    app = make_app(database_url, tmp_path, WTF_CSRF_ENABLED=True)
    with app.app_context():
        xtype = make_type(
            "Stroop",
            "stroop",
            [ColumnDef("score", "INTEGER"), ColumnDef("word", "STRING")],
        )
        experiment = make_experiment(xtype, "Pilot")
        make_rows(
            xtype,
            experiment,
            [{"participant_id": f"p{i}", "score": i, "word": "red"} for i in range(3)],
        )
        ids = sorted(r["id"] for r in datatables.newest_rows(xtype, experiment.uuid))
        experiment_uuid = experiment.uuid
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Live(f"http://127.0.0.1:{server.server_port}", app, experiment_uuid, ids)
    server.shutdown()
    thread.join(timeout=5)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _row(live: Live, row_id: int) -> dict:
    with live.app.app_context():
        experiment = db.session.get(Experiment, live.experiment_uuid)
        row = datatables.get_row(experiment.experiment_type, experiment.uuid, row_id)
        db.session.remove()
        return row


def _save_elsewhere(live: Live, row_id: int, values: dict) -> None:
    """Someone else saves the row (as the domain function does for any client)."""
    with live.app.app_context():
        experiment = db.session.get(Experiment, live.experiment_uuid)
        xtype = experiment.experiment_type
        row = datatables.get_row(xtype, experiment.uuid, row_id)
        datatables.update_row(xtype, experiment.uuid, row_id, values, row["updated_at"])
        db.session.remove()


def test_inline_edit_saves_with_enter_and_cancels_with_escape(page, grid):
    first = grid.ids[0]
    page.goto(f"{grid.url}/experiments/{grid.experiment_uuid}")
    row = page.locator(f"#row-{first}")
    row.get_by_role("link", name=f"Edit row {first}").click()
    editing = page.locator(f"#row-{first}[data-editing]")
    expect(editing).to_be_visible()
    expect(editing.get_by_label("participant_id")).to_be_focused()
    page.keyboard.press("Tab")
    expect(editing.get_by_label("score")).to_be_focused()
    editing.get_by_label("score").fill("77")  # typing races the focus handling
    editing.get_by_label("score").press("Enter")

    expect(row.locator(".saved-badge")).to_have_text("Saved")
    expect(page.locator("#row-status")).to_have_text(f"Saved row {first}.")
    expect(row.get_by_role("link", name=f"Edit row {first}")).to_be_focused()
    assert _row(grid, first)["score"] == 77
    assert page.url.endswith(f"/experiments/{grid.experiment_uuid}")  # not pushed

    row.get_by_role("link", name=f"Edit row {first}").click()
    # focus moves once htmx has settled the new row (its controls are live then)
    expect(editing.get_by_label("participant_id")).to_be_focused()
    editing.get_by_label("word").fill("blue")
    editing.get_by_label("score").fill("1.5")
    editing.get_by_label("score").press("Enter")
    expect(editing.get_by_text("whole number")).to_be_visible()
    expect(editing.get_by_label("score")).to_be_focused()  # the field with the error
    editing.get_by_label("score").press("Escape")
    expect(page.locator(f"#row-{first}[data-editing]")).to_have_count(0)
    expect(row).to_contain_text("77")
    assert _row(grid, first)["word"] == "red"

    row.locator("td", has_text="red").dblclick()  # double-click edits in place too
    expect(editing).to_be_visible()


def test_stale_inline_edit_shows_both_values(page, grid):
    second = grid.ids[1]
    page.goto(f"{grid.url}/experiments/{grid.experiment_uuid}")
    page.get_by_role("link", name=f"Edit row {second}").click()
    editing = page.locator(f"#row-{second}[data-editing]")
    expect(editing.get_by_label("participant_id")).to_be_focused()
    _save_elsewhere(grid, second, {"score": 500})
    editing.get_by_label("score").fill("600")
    editing.get_by_label("score").press("Enter")
    expect(editing.locator(".row-conflict")).to_be_visible()
    expect(editing.get_by_label("score")).to_have_value("600")
    expect(editing).to_contain_text("Saved now: 500")
    expect(editing.get_by_label("participant_id")).to_be_focused()
    editing.get_by_role("button", name="Save").click()
    expect(page.locator(f"#row-{second} .saved-badge")).to_be_visible()
    assert _row(grid, second)["score"] == 600


def test_delete_one_inline_then_selected_rows_with_confirmation(page, grid):
    page.goto(f"{grid.url}/experiments/{grid.experiment_uuid}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("link", name=f"Delete row {grid.ids[0]}").click()
    expect(page.locator(f"#row-{grid.ids[0]}")).to_have_count(0)
    expect(page.locator("#row-count")).to_have_text("2")
    page.get_by_label(f"Select row {grid.ids[1]}").check()
    page.get_by_label(f"Select row {grid.ids[2]}").check()
    page.get_by_role("button", name="Delete selected…").click()
    expect(page.get_by_role("heading", name="Delete 2 rows?")).to_be_visible()
    page.get_by_role("button", name="Delete 2 rows").click()
    expect(page.get_by_text("Deleted 2 rows.")).to_be_visible()
    expect(page.locator("#row-count")).to_have_text("0")

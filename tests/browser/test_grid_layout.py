"""The grid of a type with many columns: its own scroll box, menus over the page,
inline edit of the cell that was double-clicked."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import datatables
from wave_web.columns import ColumnDef
from wave_web.extensions import db
from wave_web.models import Experiment

pytestmark = pytest.mark.browser

TYPES = ("INTEGER", "FLOAT", "STRING", "BOOLEAN", "DATETIME")
COLUMNS = (
    [ColumnDef("rt", "FLOAT")]
    + [
        ColumnDef(f"measure_{i:02d}_{TYPES[i % 5].lower()}", TYPES[i % 5])
        for i in range(30)
    ]
    + [ColumnDef("note", "STRING")]
)
FILTER_BAR = "form[aria-label='Add a filter']"


@pytest.fixture
def wide(live_app):
    """One experiment of a type with 32 columns and 20 rows; its address and uuid."""
    with live_app.app_context():
        xtype = make_type("Wide", "wide", COLUMNS)
        experiment = make_experiment(xtype, "Pilot")
        make_rows(
            xtype,
            experiment,
            [
                {"participant_id": f"P{i:02d}", "rt": 0.5 + i, "note": f"note {i}"}
                for i in range(20)
            ],
        )
        uuid = experiment.uuid
        db.session.remove()
    return f"/experiments/{uuid}", uuid


def _row(app, uuid, row_id: int) -> dict:
    with app.app_context():
        experiment = db.session.get(Experiment, uuid)
        row = datatables.get_row(experiment.experiment_type, uuid, row_id)
        db.session.remove()
        return row


def _box(page, selector: str) -> dict:
    """Where the element is on the page (not in the window: the page may scroll)."""
    return page.locator(selector).first.evaluate(
        """el => { const b = el.getBoundingClientRect();
          return [b.x + scrollX, b.y + scrollY, b.width, b.height]; }"""
    )


def _is_on_top(page, locator) -> bool:
    """The element is what the user sees at its centre (no sticky cell covers it)."""
    return locator.evaluate(
        """el => { const b = el.getBoundingClientRect();
          const hit = document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);
          return el === hit || el.contains(hit); }"""
    )


@pytest.mark.parametrize("width", [1366, 390])
def test_grid_scrolls_in_its_box_with_header_and_first_cells_in_view(
    page, live_url, wide, width
):
    path, _uuid = wide
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(live_url + path)
    bar, id_cell = _box(page, FILTER_BAR), _box(page, "#grid tbody tr td:nth-child(2)")
    header = _box(page, "#grid thead th:nth-child(2)")

    page.locator(".grid-scroll").evaluate(
        "box => { box.scrollLeft = box.scrollWidth; box.scrollTop = 200; }"
    )
    assert page.evaluate("window.scrollX") == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert _box(page, FILTER_BAR) == bar  # nothing else on the page moved
    assert _box(page, "#grid tbody tr td:nth-child(2)")[0] == id_cell[0]
    assert _box(page, "#grid thead th:nth-child(2)")[1] == header[1]
    last_header = page.locator("#grid thead th").nth(-2)  # the last column: note
    expect(last_header).to_have_text("note")
    assert _is_on_top(page, last_header)


@pytest.mark.parametrize("width", [1366, 390])
def test_columns_menu_opens_over_the_page_and_closes(page, live_url, wide, width):
    path, _uuid = wide
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(live_url + path)
    bar, table = _box(page, FILTER_BAR), _box(page, "#grid table")
    summary = page.locator(".column-picker > summary")
    menu = page.get_by_role("form", name="Hide from the grid")

    summary.click()
    expect(menu).to_be_visible()
    assert _box(page, FILTER_BAR) == bar and _box(page, "#grid table") == table
    menu_box = menu.bounding_box()
    assert menu_box["x"] >= 0 and menu_box["x"] + menu_box["width"] <= width
    assert _is_on_top(page, menu.get_by_label("id", exact=True))  # over the grid
    apply = menu.get_by_role("button", name="Apply")
    expect(apply).to_be_in_viewport(ratio=1)  # opened low in the window: scrolled to
    assert _is_on_top(page, apply)
    page.keyboard.press("Tab")  # into the menu: its first choice
    expect(menu.get_by_label("id", exact=True)).to_be_focused()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(summary).to_be_focused()

    page.keyboard.press("Enter")  # the keyboard opens it too; Tab out closes it
    expect(menu).to_be_visible()
    page.keyboard.press("Shift+Tab")
    expect(menu).to_be_hidden()

    summary.click()
    expect(menu).to_be_visible()
    page.locator("h1").click()  # outside
    expect(menu).to_be_hidden()

    summary.click()  # one menu at a time: opening Export closes Columns
    page.locator(".export-menu > summary").click()
    expect(menu).to_be_hidden()
    expect(page.locator(".export-menu ul")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator(".export-menu ul")).to_be_hidden()

    summary.click()  # and the menu still does its job
    menu.get_by_label("note").check()
    menu.get_by_role("button", name="Apply").click()
    expect(page.locator("#grid thead th", has_text="note")).to_have_count(0)
    expect(summary).to_have_text("Columns (1 hidden)")


@pytest.mark.parametrize("width", [1366, 390])
def test_double_click_edits_the_clicked_cell_with_save_in_view(
    page, live_app, live_url, wide, width
):
    path, uuid = wide
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(live_url + path)
    row = page.locator("#grid tbody tr").nth(2)
    row_id = int(row.get_attribute("id").removeprefix("row-"))
    note = row.locator("td", has_text="note 2")
    note.scroll_into_view_if_needed()
    note.dblclick()

    editing = page.locator(f"#row-{row_id}[data-editing]")
    field = editing.get_by_label("note", exact=True)
    expect(field).to_be_focused()
    expect(field).to_be_in_viewport(ratio=1)  # scrolled to (smoothly)
    assert _is_on_top(page, field)
    save = editing.get_by_role("button", name="Save")
    box = save.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width
    assert _is_on_top(page, save)
    field.fill("edited")
    field.press("Enter")
    expect(page.locator(f"#row-{row_id} .saved-badge")).to_be_visible()
    assert _row(live_app, uuid, row_id)["note"] == "edited"

    rt = page.locator(f"#row-{row_id} td.num").nth(1)  # id, then rt
    rt.scroll_into_view_if_needed()
    rt.dblclick()
    expect(editing.get_by_label("rt", exact=True)).to_be_focused()
    editing.get_by_label("rt", exact=True).fill("99")
    page.keyboard.press("Escape")
    expect(page.locator(f"#row-{row_id}[data-editing]")).to_have_count(0)
    assert _row(live_app, uuid, row_id)["rt"] == 2.5

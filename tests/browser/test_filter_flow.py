"""A researcher filters the grid with conditions that fit each column, fixes a refused
filter where it is shown, and exports exactly the rows the grid shows."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re

import pytest
from playwright.sync_api import expect
from tests.browser.conftest import signed_in_cookie
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web.columns import ColumnDef
from wave_web.extensions import db

pytestmark = pytest.mark.browser

SHOTS = "/tmp/shots/b_filters"
RTS = [0.1 * i for i in range(1, 21)]  # 0.1 … 2.0: 15 are above 0.5
FLOAT_CONDITIONS = ["=", "≠", "<", "≤", ">", "≥", "is empty", "is not empty"]


@pytest.fixture
def stroop(live_app, live_url):
    """A live server with one experiment of 20 rows: (base url, grid path)."""
    with live_app.app_context():
        xtype = make_type(
            "Stroop",
            "stroop",
            [
                ColumnDef("rt", "FLOAT"),
                ColumnDef("correct", "BOOLEAN"),
                ColumnDef("shown_at", "DATETIME"),
                ColumnDef("word", "STRING"),
            ],
        )
        experiment = make_experiment(xtype, "Pilot")
        start = dt.datetime(2024, 3, 4, 14, 30)
        make_rows(
            xtype,
            experiment,
            [
                {
                    "participant_id": f"P{i:02}",
                    "rt": rt,
                    "correct": i % 3 != 0,
                    "shown_at": start + dt.timedelta(minutes=i),
                    "word": "red" if i % 2 else "blue",
                }
                for i, rt in enumerate(RTS)
            ],
        )
        grid_path = f"/experiments/{experiment.uuid}"
        db.session.remove()
    return live_url, grid_path


def options(select) -> list[str]:
    return [t.strip() for t in select.locator("option").all_inner_texts()]


def shot(page, name: str, width: int) -> None:
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=f"{SHOTS}/{name}-{width}.png", full_page=True)


@pytest.mark.parametrize("width", [1366, 390])
def test_filter_fits_the_column_and_export_has_the_filtered_rows(page, stroop, width):
    base, path = stroop
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(base + path)
    form = page.get_by_role("form", name="Add a filter")
    toolbar = page.locator(".grid-toolbar")
    column, condition = form.get_by_label("Column"), form.get_by_label("Condition")

    # The conditions and the value field follow the column (no button needed).
    expect(form.locator("[data-filter-pick]")).to_be_hidden()
    column.select_option("rt")
    expect(condition).to_have_js_property("length", len(FLOAT_CONDITIONS))
    assert options(condition) == FLOAT_CONDITIONS
    expect(form.locator("#f-val")).to_have_attribute("type", "number")
    shot(page, "filter-float", width)
    column.select_option("correct")
    assert options(condition) == ["=", "≠", "is empty", "is not empty"]
    assert options(form.locator("select#f-val")) == ["true", "false"]
    shot(page, "filter-boolean", width)
    column.select_option("shown_at")
    expect(form.locator("#f-val")).to_have_attribute("type", "datetime-local")
    shot(page, "filter-datetime", width)
    column.select_option("word")
    assert "contains" in options(condition)
    assert not [o for o in options(condition) if o.startswith("JSON")]

    # A refused filter keeps its reason next to it, in the dropdown's words…
    column.select_option("rt")
    condition.select_option(label=">")
    form.get_by_role("button", name="Add filter").click()
    error = toolbar.get_by_role("alert")
    expect(error).to_contain_text("Filter rt >: enter a value")
    expect(page.locator("#toast")).to_be_hidden()
    expect(column).to_have_value("rt")
    expect(condition).to_have_value("gt")
    shot(page, "filter-refused", width)

    # … until it is fixed there.
    form.locator("#f-val").fill("0.5")
    form.get_by_role("button", name="Apply filter").click()
    expect(page.locator(".filter-chip")).to_contain_text("rt > 0.5")
    expect(toolbar.get_by_role("alert")).to_have_count(0)
    expect(page.locator("#grid-range")).to_contain_text("of 15 matching")

    # The one export entry says what it exports, and downloads exactly that.
    page.locator(".export-menu > summary").click()
    summary = page.locator("#export-view-summary")
    expect(summary).to_have_text("15 rows, filtered by rt > 0.5")
    expect(page.locator("#export-all-csv")).to_contain_text("all 20 rows")
    shot(page, "export-entry", width)
    with page.expect_download() as info:
        page.locator("#export-view-csv").click()
    with open(info.value.path(), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    assert len(rows) == 15
    assert all(float(r["rt"]) > 0.5 for r in rows)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert re.search(r"rt__gt=0\.5", page.url)


def test_without_javascript_the_form_follows_the_column_and_refuses_a_misfit(
    browser, live_app, stroop
):
    base, path = stroop
    context = browser.new_context(
        viewport={"width": 1366, "height": 900}, java_script_enabled=False
    )
    context.add_cookies([signed_in_cookie(live_app, base)])
    page = context.new_page()
    try:
        page.goto(base + path)
        form = page.get_by_role("form", name="Add a filter")
        toolbar = page.locator(".grid-toolbar")
        column, condition = form.get_by_label("Column"), form.get_by_label("Condition")
        column.select_option("word")
        form.get_by_role("button", name="Conditions for this column").click()
        assert "contains" in options(condition)
        condition.select_option(label="contains")
        form.locator("#f-val").fill("re")
        form.get_by_role("button", name="Add filter").click()
        expect(page.locator(".filter-chip")).to_contain_text("word contains re")

        # The form is back on id: its "<" does not apply to word, in words.
        column.select_option("word")
        condition.select_option(label="<")
        form.locator("#f-val").fill("1")
        form.get_by_role("button", name="Add filter").click()
        expect(toolbar.get_by_role("alert")).to_contain_text(
            "The condition “<” does not apply to word"
        )
        expect(column).to_have_value("word")
        assert "contains" in options(condition)
        expect(page.locator(".filter-chip")).to_contain_text("word contains re")
        shot(page, "filter-refused-nojs", 1366)
    finally:
        context.close()

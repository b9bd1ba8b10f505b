"""Enter in a builder field adds a column and focuses it, with or without JS."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from tests.browser.conftest import signed_in_cookie

pytestmark = pytest.mark.browser


def _type_columns_with_enter(page) -> None:
    """Name the type, then type two column names, pressing Enter after each."""
    page.get_by_label("Name", exact=True).fill("Flanker task")
    page.get_by_label("Name", exact=True).press("Enter")
    expect(page.get_by_label("Column 2 name")).to_be_focused()
    page.keyboard.type("rt")
    page.keyboard.press("Enter")
    expect(page.get_by_label("Column 3 name")).to_be_focused()
    page.keyboard.type("correct")


def test_enter_adds_a_column_and_focuses_it_with_htmx(page, live_url):
    page.goto(f"{live_url}/types/new")
    _type_columns_with_enter(page)
    assert page.url.endswith("/types/new")
    assert page.locator("li.builder-row").count() == 3
    assert page.get_by_label("Column 2 name").input_value() == "rt"
    assert page.get_by_label("Name", exact=True).input_value() == "Flanker task"
    page.get_by_role("button", name="Create type").click()
    page.wait_for_url(f"{live_url}/types/*")
    assert page.locator("table code", has_text="correct").count() == 1


def test_enter_adds_a_column_and_focuses_it_without_javascript(
    browser, live_app, live_url
):
    context = browser.new_context(java_script_enabled=False)
    context.add_cookies([signed_in_cookie(live_app, live_url)])
    page = context.new_page()
    try:
        page.goto(f"{live_url}/types/new")
        _type_columns_with_enter(page)
        assert page.locator("li.builder-row").count() == 3
        assert page.get_by_label("Column 2 name").input_value() == "rt"
        page.get_by_role("button", name="Create type").click()
        page.wait_for_url(f"{live_url}/types/*")
        assert page.locator("table code", has_text="correct").count() == 1
    finally:
        context.close()


def test_name_without_latin_letters_gets_a_live_hint(page, live_url):
    page.goto(f"{live_url}/types/new")
    page.get_by_label("Name", exact=True).fill("日本語")
    page.locator("#name-hint").get_by_text("No table name can be made").wait_for()
    feedback = page.locator("#table_name-feedback").inner_text()
    assert "is empty" not in feedback
    assert "a–z" in feedback

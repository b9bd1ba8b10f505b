"""A researcher builds a type, creates an experiment with two tags, sees it listed."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser


def test_build_type_with_three_columns_then_tagged_experiment_is_listed(page, live_url):
    page.goto(f"{live_url}/")
    page.get_by_role("link", name="Create the first type").click()
    page.wait_for_url("**/types/new")
    page.wait_for_function("window.htmx !== undefined")  # live checks need htmx
    page.get_by_label("Name", exact=True).fill("Flanker task")
    page.get_by_label("Column 1 name").fill("Reaction Time")
    # the live check explains the rule and suggests a fix without a page load
    feedback = page.locator("#columns-0-feedback")
    feedback.get_by_text("reaction_time").wait_for()
    assert "upper-case" in feedback.inner_text()
    page.get_by_label("Column 1 name").fill("reaction_time")
    page.get_by_role("button", name="+ Add column").click()
    page.get_by_label("Column 2 name").fill("correct")
    page.get_by_label("Type").nth(1).select_option("BOOLEAN")
    page.get_by_role("button", name="+ Add column").click()
    page.get_by_label("Column 3 name").fill("stimulus")
    page.get_by_label("Type").nth(2).select_option("STRING")
    page.locator("#table_name-hint").get_by_text("flanker_task").wait_for()
    page.get_by_role("button", name="Create type").click()

    page.wait_for_url(re.compile(r"/types/\d+$"))
    assert page.get_by_role("heading", name="Flanker task").is_visible()
    for name in ("reaction_time", "correct", "stimulus"):
        assert page.locator("table code", has_text=name).count() == 1
    page.get_by_role("link", name="New experiment").first.click()

    page.get_by_label("Description").fill("Pilot with lab B")
    page.get_by_label("Tags", exact=True).fill("pilot, lab-b")
    page.get_by_role("button", name="Create experiment").click()
    page.get_by_text("Created the experiment.").wait_for()

    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Experiments"
    ).click()
    page.wait_for_url("**/experiments/")
    row = page.locator("tbody tr", has_text="Pilot with lab B")
    row.first.wait_for()  # count() does not wait for the page
    assert row.count() == 1
    assert row.get_by_role("link", name="pilot", exact=True).is_visible()
    assert row.get_by_role("link", name="lab-b", exact=True).is_visible()
    assert "Flanker task" in row.inner_text()

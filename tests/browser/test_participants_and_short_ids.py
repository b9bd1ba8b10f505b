"""In Chromium, at 1366 and 390 px: a short experiment id in the address bar lands on
the experiment, and a participant is found from the top bar, searched by prefix and
followed to the experiments of their rows."""

from __future__ import annotations

import pytest
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web.columns import ColumnDef

pytestmark = pytest.mark.browser

WIDTHS = (1366, 390)


@pytest.fixture
def stroop(live_app):
    with live_app.app_context():
        xtype = make_type("Stroop", "stroop_data", [ColumnDef("rt", "FLOAT")])
        experiment = make_experiment(xtype, "Stroop pilot")
        ids = ["P001", "P002", "<b>P003</b>", "Q001"]
        make_rows(xtype, experiment, [{"participant_id": p, "rt": 0.5} for p in ids])
        return str(experiment.uuid)


@pytest.mark.parametrize("width", WIDTHS)
def test_short_id_and_participants_in_the_browser(page, live_url, stroop, width):
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{live_url}/experiments/{stroop[:8].upper()}")
    assert page.url == f"{live_url}/experiments/{stroop}"
    assert "Stroop pilot" in page.locator("h1").inner_text()

    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Participants"
    ).click()
    page.wait_for_url(f"{live_url}/participants/")
    page.get_by_role("searchbox").fill("P00")
    page.get_by_role("searchbox").press("Enter")
    page.wait_for_url("**/participants/?q=P00")
    links = page.locator("table.participants tbody a")
    assert links.all_inner_texts() == ["P001", "P002"]
    width_of_page = page.evaluate("document.documentElement.scrollWidth")
    assert width_of_page <= width

    links.first.click()
    page.wait_for_url(f"{live_url}/participants/P001")
    assert "(1 row)" in page.locator("section h2").inner_text()
    page.get_by_role("link", name="Stroop pilot · Stroop").click()
    page.wait_for_url(f"{live_url}/experiments/{stroop}")

"""An open "Change…" editor on a type page hides no column of the type."""

from __future__ import annotations

import pytest
from tests.browser.conftest import signed_in_cookie
from tests.factories import make_type
from wave_web.columns import ColumnDef
from wave_web.extensions import db

pytestmark = pytest.mark.browser

COLUMNS = [
    ColumnDef(f"column_{i}", t, description=f"What column {i} holds")
    for i, t in enumerate(["FLOAT", "STRING", "BOOLEAN", "DATETIME", "TEXT", "JSON"])
]

# Whether the page itself (no inner box scrolled) shows `el` at its centre: scroll the
# window to it (at once: Bootstrap scrolls smoothly), then ask what is drawn there. A
# clipping box answers with its neighbour.
SHOWN_BY_THE_PAGE = """el => {
  const before = el.getBoundingClientRect();
  window.scrollTo({top: window.scrollY + before.top - 80, behavior: "instant"});
  const r = el.getBoundingClientRect();
  const x = r.left + Math.min(r.width / 2, 20), y = r.top + r.height / 2;
  const hit = document.elementFromPoint(x, y);
  return x >= 0 && x <= window.innerWidth && hit !== null && el.contains(hit);
}"""


@pytest.fixture
def type_url(live_app, live_url):
    with live_app.app_context():
        xtype = make_type("Stroop", "stroop", COLUMNS)
        url = f"{live_url}/types/{xtype.id}"
        db.session.remove()
    return url


@pytest.mark.parametrize("width", [1366, 390])
def test_open_change_editor_leaves_every_column_reachable(
    browser, live_app, live_url, type_url, width
):
    context = browser.new_context(viewport={"width": width, "height": 700})
    context.add_cookies([signed_in_cookie(live_app, live_url)])
    page = context.new_page()
    try:
        page.goto(type_url)
        editor = page.locator("details.column-actions").first
        editor.locator("summary").click()
        assert editor.get_attribute("open") is not None
        for name in ("Rename", "Change type", "Drop column"):
            button = editor.get_by_role("button", name=name)
            assert button.evaluate(SHOWN_BY_THE_PAGE), f"{name} is hidden"
        rows = page.locator("table[aria-describedby=columns] tbody tr")
        assert rows.count() == 5 + len(COLUMNS)
        for i in range(rows.count()):
            name = rows.nth(i).locator("code").first
            assert name.evaluate(SHOWN_BY_THE_PAGE), f"{name.inner_text()} is hidden"
        last = page.locator("details.column-actions").last
        last.locator("summary").click()  # a second editor opens below the first
        drop = last.get_by_role("button", name="Drop column")
        assert drop.evaluate(SHOWN_BY_THE_PAGE)
    finally:
        context.close()

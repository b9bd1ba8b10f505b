"""The builder's column Type dropdown shows its whole choice, laptop and phone."""

from __future__ import annotations

import os

import pytest
from tests.browser.conftest import signed_in_cookie
from wave_web.columns import COLUMN_TYPES

pytestmark = pytest.mark.browser

# Width of each option's text in the select's font, and the room the select gives it
# (its inner width less the padding, which holds the arrow on the right).
FITS = """select => {
    const style = getComputedStyle(select);
    const room = select.clientWidth - parseFloat(style.paddingLeft)
        - parseFloat(style.paddingRight);
    const context = document.createElement("canvas").getContext("2d");
    context.font = style.font;
    return [...select.options].map(
        o => [o.text, context.measureText(o.text).width, room]);
}"""


@pytest.mark.parametrize("width", [1280, 390])
def test_column_type_choices_are_not_cut_off(browser, live_app, live_url, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_cookies([signed_in_cookie(live_app, live_url)])
    page = context.new_page()
    try:
        page.goto(f"{live_url}/types/new")
        select = page.get_by_label("Type", exact=True).first
        measured = select.evaluate(FITS)
        assert [text.split(" ")[0] for text, _, _ in measured] == list(COLUMN_TYPES)
        for text, needed, room in measured:
            assert needed <= room, f"“{text}” needs {needed:.0f} px, has {room:.0f}"
        if os.environ.get("WAVE_SHOTS_DIR"):  # to look at the builder by eye
            name = os.path.join(os.environ["WAVE_SHOTS_DIR"], f"builder-{width}.png")
            page.screenshot(path=name, full_page=True)
    finally:
        context.close()

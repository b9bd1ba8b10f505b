"""No page of the app is wider than the window, at 1366 and at 390 px.

Every GET page of the url_map is loaded with real ids (the walk of the access
matrix), over data with long names and values: a type of 40 columns, an experiment
with rows, a tag, an import job, a type draft, an API key and a user. A route whose
arguments the walk cannot fill fails the test, so a new page is covered the day it
is added.
"""

from __future__ import annotations

import datetime as dt
import io
from urllib.parse import unquote

import pytest
from flask import url_for
from playwright.sync_api import Error as PlaywrightError
from tests.browser.conftest import serving
from tests.browser.conftest import signed_in_cookie
from tests.conftest import close_app_with_jobs
from tests.conftest import make_app
from tests.conftest import make_test_user
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.test_access_matrix import is_api
from wave_web import accounts
from wave_web import catalog
from wave_web import datatables
from wave_web.columns import ColumnDef
from wave_web.csv_io import drafts
from wave_web.csv_io import jobs
from wave_web.csv_io.importing import ImportOptions
from wave_web.extensions import db
from wave_web.models import User
from werkzeug.datastructures import FileStorage

pytestmark = pytest.mark.browser

WIDTHS = (1366, 390)
# No break opportunity in 150 characters: as a pasted address or file name.
LONG_WORD = "https://lab.example.org/protocols/" + "stroop_colour_word_" * 6
LONG_NAME = "reaction_time_after_the_second_stimulus_onset_in_ms"  # 51 bytes
TYPES = ("INTEGER", "FLOAT", "STRING", "TEXT", "BOOLEAN", "DATETIME", "JSON")
COLUMNS = [ColumnDef(LONG_NAME, "FLOAT", True, f"What it measures: {LONG_WORD}")] + [
    ColumnDef(f"measure_{i:02d}_{TYPES[i % 7].lower()}", TYPES[i % 7])
    for i in range(39)
]
PARTICIPANT = "participant-" + "0123456789abcdef" * 3


def _row(i: int) -> dict:
    values = {"participant_id": PARTICIPANT if i == 0 else f"P{i:03d}"}
    values[LONG_NAME] = 1234.5678 * i
    samples = {
        "INTEGER": 123456789,
        "FLOAT": 98765.4321,
        "STRING": "a-long-unbroken-value-" * 10,
        "TEXT": ("A long free-text comment that goes on and on. " * 8) + LONG_WORD,
        "BOOLEAN": i % 2 == 0,
        "DATETIME": dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
        "JSON": {"block": i, "note": LONG_WORD, "keys": list("dfjk") * 8},
    }
    for c in COLUMNS[1:]:
        values[c.name] = None if (i + len(c.name)) % 5 == 0 else samples[c.type]
    return values


@pytest.fixture
def site(live_app):
    """Real data of every kind a page shows; yields the values of route arguments."""
    app = live_app
    admin_id, _token = make_test_user(app, "admin")
    with app.app_context():
        xtype = make_type(
            ("Stroop " + LONG_WORD)[:100],
            "stroop_wide",
            COLUMNS,
            description="Colour-word interference. " + LONG_WORD,
        )
        experiment = make_experiment(
            xtype,
            "Pilot session of the spring term " + LONG_WORD,
            tags=["pilot", "tag-" + "x" * 46],
            data={"room": LONG_WORD, "settings": {"screen": "x" * 120}},
        )
        make_rows(xtype, experiment, [_row(i) for i in range(12)])
        row_id = min(r["id"] for r in datatables.newest_rows(xtype, experiment.uuid))
        tag = catalog.find_tag("tag-" + "x" * 46)
        key, _secret = accounts.create_key(LONG_WORD[:100], "test")
        user = accounts.create_user(
            "someone.with.a.rather.long.address." + "x" * 30 + "@example.org",
            "correct horse battery staple",
            "viewer",
        )
        db.session.commit()
        header = ",".join(["participant_id", LONG_NAME, "unknown_column"])
        body = f"{header}\n{PARTICIPANT},1.5,{LONG_WORD}\nP2,oops,x\n"
        job = jobs.start(
            str(experiment.uuid),
            FileStorage(io.BytesIO(body.encode()), filename=f"{LONG_WORD}.csv"),
            ImportOptions(),
        )
        draft = drafts.start_draft(
            FileStorage(io.BytesIO(body.encode()), filename="wide file.csv"),
            db.session.get(User, admin_id),
        )
        drafts.wait(draft, 30)
        jobs.wait_all(30)
        values = {
            "type_id": xtype.id,
            "experiment_uuid": str(experiment.uuid),
            "row_id": row_id,
            "participant_id": PARTICIPANT,
            "job_uuid": str(job.uuid),
            "draft_uuid": draft.uuid,
            "tag_id": tag.id,
            "user_id": user.id,
            "key_id": key.id,
        }
        db.session.remove()
    yield values
    close_app_with_jobs(app)


# The first-run page answers 404 once an account exists: walked on its own below.
NOT_IN_THIS_STATE = {"static", "auth.setup"}


def page_urls(app, values: dict) -> list[str]:
    """The address of every GET page (not the API, not static files), with real ids."""
    urls, unfilled = [], []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint in NOT_IN_THIS_STATE:
                continue
            if is_api(app, rule.endpoint):
                continue
            missing = rule.arguments - values.keys()
            if missing:
                unfilled.append(f"{rule.endpoint} needs {sorted(missing)}")
                continue
            urls.append(
                url_for(rule.endpoint, **{a: values[a] for a in rule.arguments})
            )
    assert not unfilled, f"the walk has no real value for: {unfilled}"
    return sorted(urls)


# What sticks out of the window: the outermost elements (and text) past its right
# edge that no scroll box clips. An absolute box escapes the scroll boxes between it
# and its containing block: the visually-hidden labels of the grid did.
OVERFLOW = """() => {
  const width = window.innerWidth;
  const page = document.documentElement.scrollWidth;
  if (page <= width) return {width, page, widest: []};
  const style = (el) => getComputedStyle(el);
  function clipped(el, position) {
    let escapes = position === "absolute";
    if (position === "fixed") return true;
    for (let a = el; a && a !== document.body; a = a.parentElement) {
      const s = style(a);
      if (escapes && s.position === "static") continue;
      escapes = false;
      if (s.overflowX !== "visible") return true;
    }
    return false;
  }
  function name(el) {
    const cls = typeof el.className === "string" && el.className.trim()
      ? "." + el.className.trim().split(/\\s+/).join(".") : "";
    return el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + cls;
  }
  const out = [];
  const seen = new Set();
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.right <= width + 1 || box.width === 0) continue;
    const position = style(el).position;
    if (el.parentElement && clipped(el.parentElement, position)) continue;
    seen.add(el);
    if (seen.has(el.parentElement)) continue;
    out.push([box.right, name(el)]);
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    if (!t.data.trim() || seen.has(t.parentElement)) continue;
    range.selectNodeContents(t);
    const right = range.getBoundingClientRect().right;
    if (right > width + 1 && !clipped(t.parentElement, "static")) {
      const text = t.data.trim().slice(0, 30);
      out.push([right, name(t.parentElement) + ' text "' + text + '"']);
    }
  }
  out.sort((a, b) => b[0] - a[0]);
  return {
    width,
    page,
    widest: out.slice(0, 3).map(([r, d]) => d + " (right " + Math.round(r) + ")"),
  };
}"""


def width_problem(page, url: str, width: int) -> str | None:
    """Why the page at `url` is wider than the window, or None."""
    found = page.evaluate(OVERFLOW)
    if found["page"] <= found["width"]:
        return None
    return (
        f"{unquote(url)} at {width} px is {found['page']} px wide; "
        f"widest: {found['widest']}"
    )


def test_no_page_is_wider_than_the_window(browser, live_app, live_url, site):
    urls = page_urls(live_app, site)
    assert len(urls) > 30
    problems: list[str] = []
    pages = None  # the urls that answer a page: found at the first width
    for width in WIDTHS:
        context = browser.new_context(viewport={"width": width, "height": 800})
        context.add_cookies([signed_in_cookie(live_app, live_url)])
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        found = []
        for url in urls if pages is None else pages:
            try:
                response = page.goto(live_url + url, wait_until="domcontentloaded")
            except PlaywrightError as exc:
                if "Download is starting" in str(exc):
                    continue  # a file, not a page
                raise
            kind = response.headers.get("content-type", "")
            if response.status != 200:
                problems.append(f"{url} answers {response.status} to the walk")
            elif kind.startswith("text/html"):
                found.append(url)
                problems.append(width_problem(page, url, width))
        pages = found
        grid = f"/experiments/{site['experiment_uuid']}"
        problems.append(summaries_problem(page, live_url + grid, width))
        context.close()
        assert not errors, f"JavaScript errors at {width} px: {errors}"
    assert len(pages) > 25, pages
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


def summaries_problem(page, url: str, width: int) -> str | None:
    """Why the grid's page is wider than the window once htmx loaded its summaries."""
    page.goto(url)
    page.get_by_role("link", name="Column summaries").click()
    page.locator("#summary-panel .summary-card").first.wait_for()
    return width_problem(page, url + " with its column summaries", width)


def test_first_run_page_is_not_wider_than_the_window(browser, database_url, tmp_path):
    app = make_app(database_url, tmp_path, with_admin=False, WTF_CSRF_ENABLED=True)
    problems = []
    with serving(app) as url:
        for width in WIDTHS:
            page = browser.new_page(viewport={"width": width, "height": 800})
            assert page.goto(url + "/setup").status == 200
            problems.append(width_problem(page, "/setup", width))
            page.fill("#email", "first.admin." + "x" * 60 + "@example.org")
            page.fill("#password", "correct horse battery staple")
            page.fill("#confirm", "a different password " + LONG_WORD)
            page.get_by_role("button", name="Create the admin account").click()
            page.locator("#confirm.is-invalid").wait_for()
            problems.append(width_problem(page, "/setup (refused)", width))
            page.close()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)

"""The user guide (docs/guide.md) walked in real Chromium: every step is asserted,
and every picture of the guide is taken here.

`WAVE_GUIDE_SCREENSHOTS=1 pytest tests/browser/test_user_guide.py` writes the
pictures into docs/guide/ (that is how they are regenerated); otherwise they go to
a temporary folder, so a test run never changes the checkout. SQLite only: the walk
is long, the flows it covers run on both databases in the other browser tests.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect
from tests.browser.conftest import serving
from tests.conftest import close_app_with_jobs
from tests.conftest import make_app
from wave_web import accounts
from wave_web import catalog
from wave_web import demo
from wave_web import schema
from wave_web.access import SEEN_KEY
from wave_web.access import SESSION_KEY
from wave_web.columns import ColumnDef
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import User

pytestmark = pytest.mark.browser

GUIDE = Path(__file__).parents[2] / "docs" / "guide"
SAMPLES = Path(__file__).parents[1] / "data" / "samples"
EMAIL = "ada.lovelace@lab.example"
PASSWORD = "the analytical engine"
VIEWPORT = {"width": 1280, "height": 800}
JOBS = 30_000  # ms: checks and imports run as jobs, slower on a busy machine
FLANKER = [
    ColumnDef("trial", "INTEGER", False, "Trial number within the block"),
    ColumnDef("congruent", "BOOLEAN", False, "Flankers point the same way"),
    ColumnDef("reaction_time", "FLOAT", True, "Seconds from onset to key press"),
    ColumnDef("correct", "BOOLEAN", True, "Response matched the target"),
]


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where the pictures go: docs/guide/ when regenerating them, else tmp_path."""
    if os.environ.get("WAVE_GUIDE_SCREENSHOTS") == "1":
        GUIDE.mkdir(parents=True, exist_ok=True)
        return GUIDE
    return tmp_path


@pytest.fixture(scope="module")
def lab_database(tmp_path_factory) -> Path:
    """A migrated SQLite database with the demo data and one admin, Ada (made once)."""
    folder = tmp_path_factory.mktemp("lab")
    app = make_app(f"sqlite:///{folder / 'wave.db'}", folder, with_admin=False)
    with app.app_context():
        demo.fill_demo()
        accounts.create_user(EMAIL, PASSWORD, "admin")
        db.session.commit()
        db.session.remove()
        db.engine.dispose()  # the last connection folds the WAL into wave.db
    return folder / "wave.db"


@pytest.fixture
def lab(lab_database, tmp_path):
    """A live server on a copy of the lab's database; yields (app, base url)."""
    shutil.copyfile(lab_database, tmp_path / "wave.db")
    app = make_app(
        f"sqlite:///{tmp_path / 'wave.db'}",
        tmp_path,
        with_admin=False,
        WTF_CSRF_ENABLED=True,
        WAVE_UPLOAD_DIR=str(tmp_path / "uploads"),
    )
    with serving(app) as url:
        yield app, url
    close_app_with_jobs(app)


def _session_cookie(app, url: str) -> dict:
    """Ada's signed-in session cookie, as the sign-in form would have set it."""
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == EMAIL))
        token = accounts.start_session(user, "127.0.0.1", "guide")
        session = {
            "_user_id": str(user.id),
            "_fresh": True,
            SESSION_KEY: token,
            SEEN_KEY: int(time.time()),
        }
        db.session.commit()
        db.session.remove()
    value = app.session_interface.get_signing_serializer(app).dumps(session)
    return {"name": app.config["SESSION_COOKIE_NAME"], "value": value, "url": url}


@pytest.fixture
def new_page(browser):
    """A fresh browser page (1280×800) that fails the test on a JavaScript error."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(new_page, lab):
    """A page signed in as Ada."""
    app, url = lab
    new_page.context.add_cookies([_session_cookie(app, url)])
    return new_page


def shot(
    page, folder: Path, name: str, *, top=None, upto=None, element=None, margin=16
) -> None:
    """Save `name`.png: the page from `top` (default: its top) down to the bottom of
    `upto` (default: one window's height), or just `element` with a margin."""
    # The page and its htmx requests (live checks, summaries) have finished.
    page.wait_for_load_state()
    expect(page.locator(".htmx-request")).to_have_count(0, timeout=JOBS)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    if element is not None:
        box = _page_box(page, element)
        clip = {
            "x": max(box["x"] - 12, 0),
            "y": max(box["y"] - 12, 0),
            "width": box["width"] + 24,
            "height": box["height"] + 24,
        }
    else:
        y = max(_page_box(page, top)["y"] - 12, 0) if top is not None else 0
        if upto is not None:
            bottom = _page_box(page, upto)
            height = bottom["y"] + bottom["height"] + margin - y
        else:
            height = VIEWPORT["height"]
        clip = {"x": 0, "y": y, "width": VIEWPORT["width"], "height": height}
    page.screenshot(path=str(folder / f"{name}.png"), clip=clip, full_page=True)


def _page_box(page, locator) -> dict:
    """The locator's box in page (not window) coordinates."""
    box = locator.bounding_box()
    x, y = page.evaluate("[window.scrollX, window.scrollY]")
    return {**box, "x": box["x"] + x, "y": box["y"] + y}


def test_sign_in(new_page, lab, shots):
    page = new_page
    app, url = lab
    page.goto(url + "/")
    page.wait_for_url("**/login**")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    shot(page, shots, "sign-in", upto=page.get_by_role("button", name="Sign in"))
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("body")).to_contain_text(EMAIL)
    expect(page.get_by_role("link", name="Pilot, lab A", exact=True)).to_be_visible()
    shot(page, shots, "home")


def _column(page, number: int, name: str, kind: str, description: str) -> None:
    """Fill column `number` of the builder (adding the row when it is not there)."""
    if page.get_by_label(f"Column {number} name").count() == 0:
        page.get_by_role("button", name="+ Add column").click()
    page.get_by_label(f"Column {number} name").fill(name)
    page.locator(f"#columns-{number - 1}-type").select_option(kind)
    page.get_by_label(f"Column {number} description").fill(description)


def test_create_a_type_by_hand(page, lab, shots):
    app, url = lab
    page.goto(url + "/types/")
    page.get_by_role("link", name="New type").click()
    page.wait_for_url("**/types/new")
    page.wait_for_function("window.htmx !== undefined")  # live checks need htmx
    page.get_by_label("Name", exact=True).fill("Flanker task")
    page.locator("#description").fill("Eriksen flanker, arrows, keyboard responses.")
    _column(page, 1, "trial", "INTEGER", "Trial number within the block")
    page.locator("#columns-0-nullable").uncheck()
    _column(page, 2, "congruent", "BOOLEAN", "Flankers point the same way")
    page.locator("#columns-1-nullable").uncheck()
    _column(page, 3, "Reaction Time", "FLOAT", "Seconds from onset to key press")
    # The name is checked as it is typed, with a fix proposed.
    feedback = page.locator("#columns-2-feedback")
    expect(feedback).to_contain_text("reaction_time")
    expect(feedback).to_contain_text("upper-case")
    shot(
        page,
        shots,
        "builder-name-check",
        element=page.locator("#column-rows li").nth(2),
    )
    page.get_by_label("Column 3 name").fill("reaction_time")
    expect(feedback).to_be_empty()
    _column(page, 4, "correct", "BOOLEAN", "Response matched the target")
    expect(page.locator("#table_name-hint")).to_contain_text("flanker_task")
    shot(page, shots, "builder", upto=page.locator("#create-type"))
    page.get_by_role("button", name="Create type").click()

    expect(page.get_by_role("heading", name="Flanker task", level=1)).to_be_visible()
    columns = page.locator("table code")
    for name in ("trial", "congruent", "reaction_time", "correct"):
        expect(columns.filter(has_text=name)).to_have_count(1)
    expect(page.get_by_role("link", name="New experiment").first).to_be_visible()
    shot(page, shots, "type-page")


def test_create_a_type_from_a_file(page, lab, shots, tmp_path):
    app, url = lab
    all_valid = "All 59 rows are valid"
    sample = tmp_path / "subject-007_stroop_2024-03-14.csv"
    sample.write_bytes((SAMPLES / "psychopy_stroop.csv").read_bytes())
    page.goto(url + "/types/")
    page.get_by_role("link", name="Create a type from a file").first.click()
    page.get_by_label("Data file").set_input_files(str(sample))
    shot(page, shots, "from-file-upload", upto=page.locator("main form").first)
    page.get_by_role("button", name="Upload and analyse").click()

    # One screen proposes the whole type: names, types, the participant column.
    expect(page.locator("#row-count")).to_have_text("59", timeout=JOBS)
    expect(page.locator("#check-ok")).to_contain_text(all_valid, timeout=JOBS)
    key_rt = page.locator("tr", has=page.locator("input[value=key_resp_rt]"))
    expect(key_rt.locator("select").first).to_have_value("FLOAT")
    expect(page.locator("tr.table-primary")).to_contain_text("participant")
    page.get_by_label("Type name").fill("PsychoPy Stroop")
    page.get_by_label("Experiment", exact=True).fill("Stroop pilot, participant 007")
    page.get_by_label("Type name").press("Tab")
    expect(page.locator("#check-ok")).to_contain_text(all_valid, timeout=JOBS)
    expect(page.locator("#table_name-help")).to_contain_text(
        "Leave empty to use psychopy_stroop."
    )
    names = page.locator("section", has=page.locator("#names-heading"))
    names.evaluate("e => e.scrollIntoView()")  # the sticky buttons below the picture
    shot(page, shots, "from-file-proposal", top=names)
    page.get_by_role("button", name="Create the type and import 59 rows").click()

    expect(page.locator("#row-count")).to_have_text("59", timeout=JOBS)
    expect(page.locator("#grid tbody")).to_contain_text("007")
    expect(page.locator(".alert-success")).to_have_text(
        "Created the type “PsychoPy Stroop” with 59 rows in the experiment "
        "“Stroop pilot, participant 007”."
    )
    shot(page, shots, "from-file-created")


def _flanker(app, experiment: str | None = None) -> tuple[int, str | None]:
    """The Flanker task type (and an experiment of it): (type id, experiment path)."""
    with app.app_context():
        xtype = schema.create_type(
            "Flanker task",
            "Eriksen flanker, arrows, keyboard responses.",
            "flanker_task",
            FLANKER,
        )
        path = None
        if experiment:
            made = catalog.create_experiment(xtype, experiment, ["pilot", "lab-b"], {})
            path = f"/experiments/{made.uuid}"
        type_id = xtype.id
        db.session.remove()
    return type_id, path


def test_run_an_experiment(page, lab, shots):
    app, url = lab
    type_id, _ = _flanker(app)
    page.goto(f"{url}/types/{type_id}")
    page.get_by_role("link", name="New experiment").first.click()
    expect(page.get_by_label("Type")).to_have_value(str(type_id))
    page.get_by_label("Description").fill("Flanker pilot, lab B")
    page.get_by_label("pilot", exact=True).check()
    page.get_by_label("lab-b", exact=True).check()
    page.get_by_label("Other tags").fill("flanker")
    page.get_by_label("Additional data").fill('{"site": "Berlin", "room": "B.204"}')
    shot(
        page,
        shots,
        "experiment-new",
        upto=page.get_by_role("button", name="Create experiment"),
    )
    page.get_by_role("button", name="Create experiment").click()

    expect(page.get_by_text("Created the experiment.")).to_be_visible()
    expect(page.get_by_role("heading", name="Flanker pilot, lab B")).to_be_visible()
    expect(page.get_by_role("link", name="Import CSV")).to_be_visible()
    shot(page, shots, "experiment-created")

    # Every tag is a link to the experiments that carry it.
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Experiments"
    ).click()
    listed = page.locator("tbody tr", has_text="Flanker pilot, lab B")
    expect(listed).to_have_count(1)
    listed.get_by_role("link", name="pilot", exact=True).click()
    expect(page.locator("tbody tr")).to_have_count(
        3
    )  # the new one and the demo's pilot
    expect(page.locator("tbody")).to_contain_text("Flanker pilot, lab B")
    expect(page.locator("tbody")).not_to_contain_text("Main study")
    shot(page, shots, "experiments-by-tag", upto=page.locator("main table"))


FLANKER_FILE = """\
participant_id,trial,congruent,reaction_time,correct
P014,1,true,0.512,true
P014,2,false,{rt2},true
P014,3,true,0.455,true
P014,4,false,NA,false
P014,5,{c5},0.498,true
P014,6,false,0.601,true
P014,7,true,0.447,true
P014,8,false,0.583,false
P014,9,true,0.462,true
P014,10,false,0.640,true
P014,11,true,0.431,true
P014,12,false,0.577,true
"""


def test_upload_a_csv_and_fix_its_errors(page, lab, shots, tmp_path):
    app, url = lab
    _, path = _flanker(app, "Flanker pilot, lab B")
    broken = tmp_path / "flanker_P014.csv"
    broken.write_text(FLANKER_FILE.format(rt2="0,634", c5="ture"), encoding="utf-8")
    page.goto(url + path)
    page.get_by_role("link", name="Import CSV").click()
    expect(page.get_by_role("heading", name="Import CSV")).to_be_visible()
    page.get_by_label("CSV file").set_input_files(str(broken))
    shot(
        page,
        shots,
        "import-form",
        upto=page.get_by_role("button", name="Upload and check"),
    )
    page.get_by_role("button", name="Upload and check").click()

    # The check lists every problem: row, line, column, value and what to fix.
    expect(page.get_by_role("heading", name="Columns of the file")).to_be_visible(
        timeout=JOBS
    )
    alert = page.locator(".alert-danger").first
    expect(alert).to_contain_text("3 problems in 3 rows")
    problems = page.locator("table", has=page.get_by_text("what to fix")).locator(
        "tbody tr"
    )
    expect(problems).to_have_count(3)
    expect(problems.nth(0)).to_contain_text("has 6 cells but the header has 5")
    expect(problems.nth(1)).to_contain_text("NA")
    expect(problems.nth(2)).to_contain_text("ture")
    expect(page.get_by_role("button", name="Import 12 rows")).to_have_count(0)
    shot(page, shots, "import-problems", upto=problems.last)

    # The offending rows come back as a CSV with an error column.
    with page.expect_download() as info:
        page.get_by_role("link", name="Download the offending rows").click()
    offending = list(
        csv.reader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8-sig")))
    )
    header = ["error", "participant_id", "trial", "congruent", "reaction_time"]
    assert offending[0] == [*header, "correct"]
    assert [row[2] for row in offending[1:]] == ["2", "4", "5"]
    assert offending[1][0] == "has 6 cells but the header has 5"

    # Fixed file, NA read as empty: every row is valid, and the import writes them.
    fixed = tmp_path / "flanker_P014_fixed.csv"
    fixed.write_text(FLANKER_FILE.format(rt2="0.634", c5="true"), encoding="utf-8")
    page.get_by_role("link", name="Upload another file").click()
    page.get_by_label("CSV file").set_input_files(str(fixed))
    page.get_by_label("Treat NA").check()
    page.get_by_role("button", name="Upload and check").click()
    ok = page.locator(".alert-success")
    expect(ok).to_contain_text("All 12 rows are valid.", timeout=JOBS)
    preview = page.locator("table.preview-rows tbody tr")
    expect(preview.first).to_contain_text("P014")
    shot(page, shots, "import-valid", upto=preview.nth(3), margin=1)
    page.get_by_role("button", name="Import 12 rows").click()

    expect(ok).to_contain_text("Imported 12 rows.", timeout=JOBS)
    shot(page, shots, "import-done", upto=page.get_by_role("link", name="See the rows"))
    page.get_by_role("link", name="See the rows").click()
    expect(page.locator("#row-count")).to_have_text("12")


def _open_experiment(page, url: str, description: str) -> None:
    page.goto(url + "/")
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Experiments"
    ).click()
    page.get_by_role("link", name=description, exact=True).click()
    expect(page.get_by_role("heading", name=description, level=1)).to_be_visible()


def test_browse_filter_sort_edit_and_summarise(page, lab, shots):
    app, url = lab
    _open_experiment(page, url, "Main study wave 1, lab A")
    expect(page.locator("#row-count")).to_have_text("1,200")
    expect(page.locator("#grid-range")).to_contain_text("Rows 1–50 of 1,200")
    shot(page, shots, "grid")

    # Hide the columns not needed now.
    page.get_by_text("Columns", exact=True).click()
    for name in ("created_at", "updated_at", "extra"):
        page.get_by_label(name, exact=True).check()
    page.get_by_role("form", name="Hide from the grid").get_by_role(
        "button", name="Apply"
    ).click()
    expect(page.get_by_text("Columns (3 hidden)")).to_be_visible()
    expect(page.locator("#grid thead")).not_to_contain_text("created_at")

    # Two filters: slow incongruent trials.
    form = page.get_by_role("form", name="Add a filter")
    form.get_by_label("Column").select_option("reaction_time")
    form.get_by_label("Condition").select_option(label=">")
    form.locator("#f-val").fill("0.8")
    form.get_by_role("button", name="Add filter").click()
    expect(page.locator(".filter-chip")).to_contain_text("reaction_time > 0.8")
    form.get_by_label("Column").select_option("congruent")
    form.get_by_label("Condition").select_option(label="=")
    form.locator("select#f-val").select_option("false")
    form.get_by_role("button", name="Add filter").click()
    expect(page.locator(".filter-chip")).to_have_count(2)
    expect(page.locator("#grid-range")).to_contain_text("matching (1,200 in total)")

    # Slowest first: the column header sorts, a second click reverses.
    header = page.locator("#grid thead").get_by_role("link", name="reaction_time")
    header.click()
    expect(page.locator("#grid thead th[aria-sort=ascending]")).to_contain_text(
        "reaction_time"
    )
    page.locator("#grid thead").get_by_role("link", name="reaction_time").click()
    expect(page.locator("#grid thead th[aria-sort=descending]")).to_contain_text(
        "reaction_time"
    )
    assert "reaction_time__gt=0.8" in page.url and "_dir=desc" in page.url
    times = [
        float(t)
        for t in page.locator("#grid tbody td.num").all_inner_texts()
        if "." in t
    ]
    assert times == sorted(times, reverse=True) and min(times) > 0.8
    shot(page, shots, "grid-filtered")

    # Edit a value in place: the slowest trial was not a correct response.
    row = page.locator("#grid tbody tr").first
    row_id = row.get_attribute("id").removeprefix("row-")
    row.get_by_role("link", name=f"Edit row {row_id}").click()
    editing = page.locator("#grid tbody tr[data-editing]")
    expect(editing.get_by_label("participant_id")).to_be_focused()
    editing.get_by_label("correct", exact=True).select_option("false")
    shot(
        page,
        shots,
        "grid-inline-edit",
        top=page.locator(".filter-chip").first,
        upto=editing,
    )
    editing.get_by_role("button", name="Save").click()
    expect(page.locator("#row-status")).to_have_text(f"Saved row {row_id}.")
    expect(page.locator(f"#row-{row_id} .saved-badge")).to_have_text("Saved")

    # Column summaries of exactly this view.
    page.get_by_role("link", name="Column summaries").click()
    summaries = page.locator("section.column-summaries")
    expect(summaries.get_by_role("heading", name="Column summaries")).to_be_visible()
    expect(summaries.locator("#summary-reaction_time")).to_be_visible()
    shot(page, shots, "grid-summaries", element=summaries)


def test_download_a_view_as_csv_or_excel(page, lab, shots):
    app, url = lab
    _open_experiment(page, url, "Main study wave 1, lab A")
    form = page.get_by_role("form", name="Add a filter")
    form.get_by_label("Column").select_option("participant_id")
    form.locator("#f-val").fill("P003")
    form.get_by_role("button", name="Add filter").click()
    expect(page.locator("#grid-range")).to_contain_text("of 60 matching")

    # The Export menu downloads exactly the rows of the view.
    page.get_by_text("Export", exact=True).click()
    entry = page.locator("#export-view-summary")
    expect(entry).to_have_text("60 rows, filtered by participant_id = P003")
    shot(page, shots, "export-menu", upto=page.locator(".export-list"))
    with page.expect_download() as info:
        page.locator("#export-view-csv").click()
    lines = Path(info.value.path()).read_text(encoding="utf-8-sig").splitlines()
    assert len(lines) == 61 and all(",P003," in line for line in lines[1:])

    # The export page: options, then Excel.
    options = page.get_by_role("link", name="Export options…")
    if not options.is_visible():
        page.get_by_text("Export", exact=True).click()
    options.click()
    expect(
        page.get_by_role("heading", name="Export rows as CSV or Excel")
    ).to_be_visible()
    expect(page.locator("main")).to_contain_text("60 rows")
    shot(page, shots, "export-page", upto=page.locator("#xlsx-help"))
    with page.expect_download() as info:
        page.get_by_role("button", name="Download Excel (.xlsx)").click()
    assert info.value.suggested_filename.endswith(".xlsx")
    book = openpyxl.load_workbook(io.BytesIO(Path(info.value.path()).read_bytes()))
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    assert len(rows) == 61 and {
        r[rows[0].index("participant_id")] for r in rows[1:]
    } == {"P003"}
    assert "columns" in book.sheetnames


def _post_row(url: str, experiment_uuid: str, key: str) -> int:
    """Status of adding a row over the JSON API with `key` (as experiment software)."""
    body = {
        "participant_id": "P099",
        "data": {"trial": 1, "word": "red", "ink": "blue", "congruent": False},
    }
    request = urllib.request.Request(
        f"{url}/api/v1/experiment-data/{experiment_uuid}/data/",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_manage_users_and_api_keys(page, lab, shots):
    app, url = lab
    with app.app_context():
        pilot = db.session.scalar(
            sa.select(Experiment.uuid).where(Experiment.description == "Pilot, lab A")
        )
        db.session.remove()

    # A new account: the one-time password is shown once.
    page.goto(url + "/")
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Users"
    ).click()
    page.get_by_role("link", name="Add a user").click()
    page.get_by_label("Email address").fill("grace.hopper@lab.example")
    page.get_by_label("Role").select_option("researcher")
    page.get_by_role("button", name="Add the user").click()
    expect(
        page.get_by_role("heading", name="grace.hopper@lab.example can now sign in")
    ).to_be_visible()
    expect(page.get_by_label("One-time password")).not_to_have_value("")
    shot(
        page,
        shots,
        "user-added",
        upto=page.get_by_role("link", name="Back to the users"),
    )
    page.get_by_role("link", name="Back to the users").click()
    grace = page.locator("tbody tr", has_text="grace.hopper@lab.example")
    expect(grace).to_contain_text("researcher")
    shot(page, shots, "users", upto=page.locator("main table"))

    # An API key for a browser experiment: it may only add rows.
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="API keys"
    ).click()
    page.get_by_role("link", name="Create a key").first.click()
    page.get_by_label("Label").fill("Stroop online study")
    page.get_by_label("Role").select_option("experimentee")
    page.get_by_label("Expires after").fill("2027-06-30")
    shot(page, shots, "key-new", upto=page.get_by_role("button", name="Create the key"))
    page.get_by_role("button", name="Create the key").click()
    expect(
        page.get_by_role("heading", name="Key “Stroop online study” created")
    ).to_be_visible()
    secret = page.get_by_label("API key (experimentee)").input_value()
    shot(
        page,
        shots,
        "key-created",
        upto=page.get_by_role("link", name="Back to the keys"),
    )
    assert _post_row(url, pilot, secret) == 201

    # The list shows the key's label, role and expiry, never the key; Revoke ends it.
    page.get_by_role("link", name="Back to the keys").click()
    listed = page.locator("tbody tr", has_text="Stroop online study")
    expect(listed).to_contain_text("experimentee")
    expect(listed).to_contain_text("until 30 Jun 2027 (end of day, UTC)")
    assert secret not in page.content()
    shot(page, shots, "keys", upto=page.locator("main table"))
    listed.get_by_role("link", name="Revoke").click()
    page.get_by_role("button", name="Revoke the key").click()
    expect(page.locator("tbody tr", has_text="Stroop online study")).to_contain_text(
        "revoked"
    )
    assert _post_row(url, pilot, secret) == 401


def test_every_picture_of_the_guide_is_taken_by_this_walk():
    guide = (GUIDE.parent / "guide.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"\]\(guide/([a-z-]+)\.png\)", guide))
    taken = set(
        re.findall(r'shot\(\s*page,\s*shots,\s*"([a-z-]+)"', Path(__file__).read_text())
    )
    assert shown == taken
    assert {p.stem for p in GUIDE.glob("*.png")} == taken  # none left over

"""CSV import through the web pages, on both databases.

Upload → check → preview → confirm → result; the one-step mode for scripts; every
refusal leaves the data as it was; mapping, update mode, cancel, limits, escaping.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import time

import pytest
import sqlalchemy as sa
from tests.conftest import close_app_with_jobs
from tests.conftest import make_app
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import parse
from tests.uploads_kept import kept_uploads
from wave_web import datatables
from wave_web.columns import ColumnDef
from wave_web.csv_io import jobs
from wave_web.extensions import db as _db
from wave_web.models import AuditEntry
from wave_web.models import Experiment
from wave_web.models import ImportJob

SAMPLES = os.path.join(os.path.dirname(__file__), "data", "samples")
WAIT = 30
COLUMNS = (
    ColumnDef("reaction_time", "FLOAT"),
    ColumnDef("accuracy", "FLOAT"),
    ColumnDef("difficulty_level", "INTEGER"),
    ColumnDef("stimulus_type", "STRING"),
)
HEADER = "participant_id,reaction_time,accuracy,difficulty_level,stimulus_type\n"
GOOD = HEADER + "P1,0.41,1,2,red\nP2,0.93,0.5,3,blue\nP3,,,,\n"


def settings(tmp_path, **overrides):
    return {
        "WAVE_UPLOAD_DIR": str(tmp_path / "uploads"),
        "WAVE_IMPORT_HEARTBEAT_SECONDS": 0.05,
        "WAVE_IMPORT_SYNC_SECONDS": 10,
        **overrides,
    }


@pytest.fixture
def app(database_url, tmp_path):
    app = make_app(database_url, tmp_path, **settings(tmp_path))
    yield app
    close_app_with_jobs(app)


@pytest.fixture
def xtype(db):
    return make_type("Cognitive test", "cognitive_test_data", COLUMNS)


@pytest.fixture
def experiment(xtype):
    return make_experiment(xtype, "Pilot")


@pytest.fixture
def other(xtype):
    """Another experiment of the type with one row: imports must not touch it."""
    other = make_experiment(xtype, "Other")
    make_rows(xtype, other, [{"participant_id": "KEEP", "reaction_time": 1.5}])
    return other


def post_file(client, experiment, data, name="data.csv", **form):
    body = data.encode("utf-8") if isinstance(data, str) else data
    fields = {"mode": "insert", **form}
    if data is not None:
        fields["file"] = (io.BytesIO(body), name)
    url = f"/experiments/{getattr(experiment, 'uuid', experiment)}/import"
    if fields.pop("query_confirm", None):
        url += "?confirm=1"
    return client.post(url, data=fields, content_type="multipart/form-data")


def settle():
    assert jobs.wait_all(WAIT)
    _db.session.rollback()


def job_url(response) -> str:
    location = response.headers["Location"]
    assert re.fullmatch(r"/experiments/[0-9a-f-]{36}/imports/[0-9a-f-]{36}", location)
    return location


def upload_and_check(client, experiment, data, **form):
    response = post_file(client, experiment, data, **form)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    settle()
    url = job_url(response)
    return url, client.get(url)


def text_of(response) -> str:
    return parse(response.data).text


def stored(xtype, experiment) -> list[dict]:
    _db.session.rollback()
    table = datatables.reflect(xtype)
    names = ["participant_id", *(c.name for c in xtype.columns)]
    stmt = (
        sa.select(*(table.c[n] for n in names))
        .where(table.c.experiment_uuid == experiment.uuid)
        .order_by(table.c.id)
    )
    return [dict(r) for r in _db.session.execute(stmt).mappings()]


def snapshot(xtype, *experiments) -> list:
    """Everything an import could change: rows and row counts."""
    _db.session.rollback()
    counts = [_db.session.get(Experiment, e.uuid).row_count for e in experiments]
    return [counts, *(stored(xtype, e) for e in experiments)]


def uploads(app) -> list[str]:
    return kept_uploads(app)


def form_fields(page, form) -> dict[str, str]:
    """The values a browser would send for a form (selected options included)."""
    values = {}
    for e in form.iter():
        name = e.attrs.get("name")
        if not name:
            continue
        if e.tag == "input" and e.attrs.get("type") in ("checkbox", "radio"):
            if "checked" in e.attrs:
                values[name] = e.attrs.get("value", "on")
        elif e.tag == "input" and e.attrs.get("type") != "submit":
            values[name] = e.attrs.get("value", "")
        elif e.tag == "select":
            chosen = [o for o in e.find_all("option") if "selected" in o.attrs]
            option = chosen[0] if chosen else e.find("option")
            values[name] = option.attrs.get("value", option.text)
    return values


def mapping_form(page):
    return next(
        f for f in page.find_all("form") if f.attrs["action"].endswith("/check")
    )


# ----------------------------------------------------------------------
# The upload form
# ----------------------------------------------------------------------


def test_upload_form_states_the_limits_and_labels_every_input(client, experiment):
    response = client.get(f"/experiments/{experiment.uuid}/import")
    assert response.status_code == 200
    page = parse(response.data)
    assert page.find("title").text.startswith("Import CSV")
    crumbs = page.find("nav", **{"aria-label": "Breadcrumb"}).text
    assert "Experiments" in crumbs and "Pilot" in crumbs
    help_text = page.find(id="file-help").text
    assert "512.0 MiB" in help_text and "64.0 MiB" in help_text
    form = page.find("form", id="upload-form")
    assert form.attrs["enctype"] == "multipart/form-data"
    labels = {e.attrs["for"] for e in page.find_all("label") if "for" in e.attrs}
    for field in form.iter():
        if field.tag in ("input", "select") and field.attrs.get("type") != "hidden":
            assert field.attrs["id"] in labels, field.attrs
    assert "No imports into this experiment yet." in page.text
    assert "accuracy" in page.find("table").text


def test_experiment_page_links_to_the_import(client, experiment):
    page = parse(client.get(f"/experiments/{experiment.uuid}").data)
    link = page.find("a", href=f"/experiments/{experiment.uuid}/import")
    assert link is not None and link.text == "Import CSV"


# ----------------------------------------------------------------------
# Upload → preview → confirm
# ----------------------------------------------------------------------


def test_upload_preview_confirm_and_see_the_result(
    app, client, xtype, experiment, other
):
    before_other = snapshot(xtype, other)
    url, response = upload_and_check(client, experiment, GOOD, name="pilot.csv")
    assert response.status_code == 200
    page = parse(response.data)
    assert "All 3 rows are valid." in page.text
    assert "UTF-8, comma-separated" in page.text
    preview = page.find("table", class_="preview-rows")
    assert [th.text for th in preview.find_all("th")][1:] == [
        "participant_id",
        "reaction_time",
        "accuracy",
        "difficulty_level",
        "stimulus_type",
    ]
    first_row = [td.text for td in preview.find("tbody").find_all("td")][:6]
    assert first_row == ["1", "P1", "0.41", "1.0", "2", "red"]
    assert snapshot(xtype, experiment)[0] == [0]  # the preview wrote nothing

    button = page.find("button", id="confirm-import")
    assert button.text == "Import 3 rows"
    response = client.post(url + "/confirm")
    assert response.status_code == 303 and response.headers["Location"] == url
    settle()
    page = parse(client.get(url).data)
    assert "Imported 3 rows." in page.text
    links = page.find_all("a", href=f"/experiments/{experiment.uuid}")
    assert "See the rows" in [a.text for a in links]
    assert [r["participant_id"] for r in stored(xtype, experiment)] == [
        "P1",
        "P2",
        "P3",
    ]
    assert stored(xtype, experiment)[2]["reaction_time"] is None
    assert snapshot(xtype, other) == before_other
    assert uploads(app) == []

    grid = parse(client.get(f"/experiments/{experiment.uuid}").data)
    assert grid.find(id="row-count").text == "3"
    history = client.get(f"/experiments/{experiment.uuid}/import")
    assert "succeeded" in text_of(history)


def test_progress_fragment_asks_for_a_reload_when_the_job_is_done(client, experiment):
    url, _ = upload_and_check(client, experiment, GOOD)
    response = client.get(url + "/progress", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.headers["HX-Refresh"] == "true"


def test_job_page_answers_json_for_scripts(client, experiment):
    url, _ = upload_and_check(client, experiment, GOOD)
    response = client.get(url, headers={"Accept": "application/json"})
    data = response.get_json()
    assert data["state"] == "checked"
    assert data["rows"] == 3 and data["problem_count"] == 0
    assert data["url"] == url


# ----------------------------------------------------------------------
# One step (scripts)
# ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["form", "query"])
def test_one_step_import_answers_with_the_result(client, xtype, experiment, how):
    extra = {"confirm": "1"} if how == "form" else {"query_confirm": True}
    response = post_file(client, experiment, GOOD, **extra)
    assert response.status_code == 200
    assert "Imported 3 rows." in text_of(response)
    assert len(stored(xtype, experiment)) == 3


def test_one_step_import_as_json(client, xtype, experiment):
    response = client.post(
        f"/experiments/{experiment.uuid}/import?confirm=1",
        data={"file": (io.BytesIO(GOOD.encode()), "a.csv")},
        content_type="multipart/form-data",
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    data = response.get_json()
    assert data["state"] == "succeeded" and data["written"] == 3
    assert data["sha256"] == __import__("hashlib").sha256(GOOD.encode()).hexdigest()


def test_one_step_import_with_problems_is_422_and_writes_nothing(
    client, xtype, experiment, other
):
    before = snapshot(xtype, experiment, other)
    response = post_file(client, experiment, HEADER + "P1,fast,1,2,red\n", confirm="1")
    assert response.status_code == 422
    page = parse(response.data)
    row = page.find("table", class_="problems-table").find("tbody").find("tr")
    assert [td.text for td in row.find_all("td")] == [
        "1",
        "2",
        "reaction_time",
        "fast",
        "expected a number like 0.25 or 1.5e-3",
    ]
    assert snapshot(xtype, experiment, other) == before


def test_slow_one_step_import_answers_202_with_the_job_address(
    database_url, tmp_path, monkeypatch
):
    app = make_app(
        database_url, tmp_path, **settings(tmp_path, WAVE_IMPORT_SYNC_SECONDS=1)
    )
    release = __import__("threading").Event()
    original = jobs.Live.progress

    def slow(live, rows_done):
        release.wait(WAIT)
        return original(live, rows_done)

    monkeypatch.setattr(jobs.Live, "progress", slow)
    try:
        with app.app_context():
            xtype = make_type("Cognitive test", "cognitive_test_data", COLUMNS)
            experiment = make_experiment(xtype, "Pilot").uuid
            _db.session.remove()
        body = HEADER + "".join(f"P{i},0.5,1,2,x\n" for i in range(6_000))
        started = time.monotonic()
        response = post_file(app.test_client(), experiment, body, confirm="1")
        assert time.monotonic() - started < 5
        assert response.status_code == 202
        url = job_url(response)
        page = parse(response.data)
        assert page.find(id="job-progress") is not None
        assert page.find("form", action=url + "/cancel") is not None
        release.set()
        with app.app_context():
            assert jobs.wait_all(WAIT)
        assert "Imported 6,000 rows." in text_of(app.test_client().get(url))
    finally:
        release.set()
        close_app_with_jobs(app)


# ----------------------------------------------------------------------
# Refusals change nothing
# ----------------------------------------------------------------------


def test_bad_cell_is_shown_with_row_line_column_value_and_rule(
    app, client, xtype, experiment, other
):
    make_rows(xtype, experiment, [{"participant_id": "OLD"}])
    before = snapshot(xtype, experiment, other)
    data = HEADER + "P1,0.5,1,2,a\n" + 'P2,0.5,1,"2\nx",b\n' + "P3,0.5,1,1.0,c\n"
    url, response = upload_and_check(client, experiment, data)
    page = parse(response.data)
    assert "2 problems in 2 rows" in page.text
    rows = page.find("table", class_="problems-table").find("tbody").find_all("tr")
    cells = [[td.text for td in r.find_all("td")] for r in rows]
    assert cells[0][:4] == ["2", "3", "difficulty_level", "2\\nx"]
    assert cells[1][:4] == ["3", "5", "difficulty_level", "1.0"]
    assert "whole number" in cells[1][4]
    assert page.find("button", id="confirm-import") is None
    assert client.post(url + "/confirm").status_code == 303  # refused, flashed
    settle()
    assert "fix them before importing" in text_of(client.get(url))
    assert snapshot(xtype, experiment, other) == before

    download = client.get(url + "/offending.csv")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"] == (
        'attachment; filename="data-offending-rows.csv"'
    )
    body = download.data.decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(body)))
    assert table[0] == ["error"] + HEADER.strip().split(",")
    assert [r[1] for r in table[1:]] == ["P2", "P3"]
    assert table[2][0].startswith("difficulty_level:")


def test_offending_rows_keep_the_message_under_error_whatever_the_row_length(
    client, xtype, experiment
):
    """A decimal comma makes a row too long, a lost cell too short: the message
    stays in the `error` column and the row's cells keep their places after it;
    with column A deleted and the rows fixed, the file imports."""
    data = HEADER + "P1,0.41,1,2,red\nP2,0,93,0.5,3,blue\nP3,0.5,1\n"
    url, response = upload_and_check(client, experiment, data)
    assert "2 problems in 2 rows" in text_of(response)
    table = list(
        csv.reader(
            io.StringIO(client.get(url + "/offending.csv").data.decode("utf-8-sig"))
        )
    )
    assert table[0] == ["error"] + HEADER.strip().split(",")
    too_long, too_short = table[1:]
    assert too_long[1:] == ["P2", "0", "93", "0.5", "3", "blue"]
    assert too_short[1:] == ["P3", "0.5", "1"]
    assert too_long[0] == "has 6 cells but the header has 5"
    assert too_short[0] == "has 3 cells but the header has 5"
    fixed = [row[1:] for row in table]  # column A deleted
    fixed[1][1:3] = ["0.93"]
    fixed[2] += ["2", "green"]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(fixed)
    url, response = upload_and_check(client, experiment, out.getvalue())
    assert client.post(url + "/confirm").status_code == 303
    settle()
    assert sorted(r["participant_id"] for r in stored(xtype, experiment)) == [
        "P2",
        "P3",
    ]


def test_preview_has_no_empty_checkbox_holders(client, experiment):
    """Every form-check of the check page holds its checkbox (an empty one left a
    gap in the row of recheck options)."""
    for data in (GOOD, HEADER + "P1,fast,1,2,red\n"):
        url, response = upload_and_check(client, experiment, data)
        holders = parse(response.data).find_all("div", class_="form-check")
        assert holders
        assert all(h.find("input") is not None for h in holders)


def test_latin1_file_fails_with_its_line(app, client, xtype, experiment, other):
    before = snapshot(xtype, experiment, other)
    data = (HEADER + "P1,0.5,1,2,rot\nP2,0.5,1,2,gr\xfcn\n").encode("latin-1")
    _, response = upload_and_check(client, experiment, data)
    page = parse(response.data)
    assert "Nothing was imported." in page.text
    assert "Line 3 has a byte that is not valid UTF-8" in page.text
    assert snapshot(xtype, experiment, other) == before
    assert uploads(app) == []


def test_unknown_header_is_refused_with_a_suggestion(client, xtype, experiment):
    data = GOOD.replace("accuracy", "accur")
    _, response = upload_and_check(client, experiment, data)
    page = parse(response.data)
    problems = page.find("table", class_="problems-table").text
    assert "accur" in problems and "did you mean accuracy?" in problems
    assert stored(xtype, experiment) == []


def test_misspelt_header_is_proposed_for_the_close_column_before_the_check(
    client, xtype, experiment
):
    data = GOOD.replace("accuracy", "acuracy")
    _, response = upload_and_check(client, experiment, data)
    page = parse(response.data)
    assert page.find("table", class_="problems-table") is None  # no problem listed
    select = page.find("select", name="map-2")
    chosen = [o for o in select.find_all("option") if "selected" in o.attrs]
    assert [o.attrs["value"] for o in chosen] == ["accuracy"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "Choose a CSV file to upload."),
        ("", "is empty (0 bytes)"),
    ],
)
def test_missing_or_empty_file_is_refused_at_the_field(
    app, client, xtype, experiment, data, message
):
    response = post_file(client, experiment, data)
    assert response.status_code == 422
    page = parse(response.data)
    assert message in page.find(id="file-error").text
    assert page.find("input", id="file").attrs["aria-invalid"] == "true"
    assert _db.session.scalar(sa.select(sa.func.count()).select_from(ImportJob)) == 0
    assert uploads(app) == []


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (HEADER, "The file has a header but no rows."),
        ("\n\n  \n", "The file is empty: it needs a header row and data rows."),
    ],
)
def test_header_only_or_blank_file_is_refused(client, xtype, experiment, data, shown):
    response = post_file(client, experiment, data, confirm="1")
    assert response.status_code == 422
    assert shown in text_of(response)
    assert stored(xtype, experiment) == []


def test_bad_mode_is_refused_at_its_field(app, client, experiment):
    response = post_file(client, experiment, GOOD, mode="<replace>")
    assert response.status_code == 422
    assert "Choose insert or update." in text_of(response)
    assert uploads(app) == []


def test_upload_over_the_limit_gets_the_friendly_413_page(
    database_url, tmp_path, apps=None
):
    app = make_app(
        database_url, tmp_path, **settings(tmp_path, MAX_CONTENT_LENGTH=4096)
    )
    try:
        with app.app_context():
            xtype = make_type("Cognitive test", "cognitive_test_data", COLUMNS)
            experiment = make_experiment(xtype, "Pilot").uuid
            _db.session.remove()
        body = HEADER + "P1,0.5,1,2,red\n" * 1000
        response = post_file(app.test_client(), experiment, body)
        assert response.status_code == 413
        page = parse(response.data)
        assert page.find("h1").text == "Upload too large"
        assert "Traceback" not in page.text
        assert uploads(app) == []
        with app.app_context():
            count = sa.select(sa.func.count()).select_from(ImportJob)
            assert _db.session.scalar(count) == 0
    finally:
        close_app_with_jobs(app)


def test_unknown_experiment_or_job_is_404(client, experiment):
    response = post_file(
        client, type("E", (), {"uuid": "00000000-0000-0000-0000-000000000000"}), GOOD
    )
    assert response.status_code == 404
    assert client.get(f"/experiments/{experiment.uuid}/imports/nope").status_code == 404
    unknown = (
        f"/experiments/{experiment.uuid}/imports/{'0' * 8}-0000-0000-0000-{'0' * 12}"
    )
    assert client.get(unknown).status_code == 404


def test_a_job_is_only_found_under_its_own_experiment(client, experiment, other):
    url, _ = upload_and_check(client, experiment, GOOD)
    elsewhere = url.replace(str(experiment.uuid), str(other.uuid))
    assert client.get(elsewhere).status_code == 404
    assert client.post(elsewhere + "/confirm").status_code == 404


# ----------------------------------------------------------------------
# Mapping, missing words, update mode
# ----------------------------------------------------------------------


def test_mapping_form_maps_a_participant_column_and_ignores_others(
    client, xtype, experiment
):
    data = "subject_nr,Reaction_Time ,accuracy,notes\n7,0.5,1,hi\n8,0.7,0,bye\n"
    url, response = upload_and_check(client, experiment, data)
    page = parse(response.data)
    assert "is not a column of this type" in page.text
    form = mapping_form(page)
    values = form_fields(page, form)
    assert values["map-0"] == "participant_id"  # proposed
    assert values["map-3"] == jobs.BY_NAME  # notes: unmatched
    # The proposal is applied before the check: no "participant_id is required".
    assert "is required but the file has no such column" not in page.text
    assert "proposed" in mapping_form(page).text

    values["ignore_unmatched"] = "1"
    response = client.post(url + "/check", data=values)
    assert response.status_code == 303
    settle()
    page = parse(client.get(url).data)
    assert "All 2 rows are valid." in page.text, page.text[:2000]
    notes = mapping_form(page).text
    assert "mapped to participant_id" in notes and "ignored" in notes

    client.post(url + "/confirm")
    settle()
    rows = stored(xtype, experiment)
    assert [(r["participant_id"], r["reaction_time"]) for r in rows] == [
        ("7", 0.5),
        ("8", 0.7),
    ]


def test_missing_words_become_empty_cells_when_asked(client, xtype, experiment):
    data = HEADER + "P1,NA,null,None,NA\n"
    url, response = upload_and_check(client, experiment, data)
    assert "problem" in text_of(response)
    values = form_fields(parse(response.data), mapping_form(parse(response.data)))
    values["missing"] = "1"
    client.post(url + "/check", data=values)
    settle()
    client.post(url + "/confirm")
    settle()
    assert stored(xtype, experiment) == [
        {
            "participant_id": "P1",
            "reaction_time": None,
            "accuracy": None,
            "difficulty_level": None,
            "stimulus_type": None,
        }
    ]


def test_update_mode_through_the_form_changes_only_this_experiment(
    client, xtype, experiment, other
):
    make_rows(
        xtype,
        experiment,
        [
            {"participant_id": "A", "reaction_time": 0.1},
            {"participant_id": "B", "reaction_time": 0.2},
        ],
    )
    _db.session.rollback()
    table = datatables.reflect(xtype)
    ids = list(
        _db.session.scalars(
            sa.select(table.c.id)
            .where(table.c.experiment_uuid == experiment.uuid)
            .order_by(table.c.id)
        )
    )
    other_id = _db.session.scalar(
        sa.select(table.c.id).where(table.c.experiment_uuid == other.uuid)
    )
    before_other = snapshot(xtype, other)

    bad = f"id,reaction_time\n{ids[0]},0.9\n{other_id},0.9\n"
    _, response = upload_and_check(client, experiment, bad, mode="update")
    # the check cannot know the ids: the import refuses, nothing is written
    url = response.request.path
    client.post(url + "/confirm")
    settle()
    page = parse(client.get(url).data)
    assert "Nothing was imported." in page.text
    assert "is not a row of this experiment" in page.text
    assert [r["reaction_time"] for r in stored(xtype, experiment)] == [0.1, 0.2]

    good = f"id,reaction_time\n{ids[1]},0.25\n"
    url, response = upload_and_check(client, experiment, good, mode="update")
    page = parse(response.data)
    assert page.find("button", id="confirm-import").text == "Update 1 row"
    client.post(url + "/confirm")
    settle()
    assert "Updated 1 row." in text_of(client.get(url))
    assert [r["reaction_time"] for r in stored(xtype, experiment)] == [0.1, 0.25]
    assert snapshot(xtype, other) == before_other


# ----------------------------------------------------------------------
# Cancel, discard, files, audit, escaping, CSRF
# ----------------------------------------------------------------------


def test_discarding_a_preview_deletes_the_upload(app, client, experiment):
    url, _ = upload_and_check(client, experiment, GOOD)
    assert len(uploads(app)) == 1
    response = client.post(url + "/cancel")
    assert response.status_code == 303
    settle()
    page = parse(client.get(url).data)
    assert "Discarded the upload." in page.text
    assert uploads(app) == []
    assert client.post(url + "/confirm").status_code == 303
    settle()
    assert "no longer waiting" in text_of(client.get(url))


def test_no_file_is_left_behind_in_any_outcome(app, client, experiment):
    post_file(client, experiment, GOOD, confirm="1")  # succeeded
    post_file(client, experiment, b"participant_id\nM\xfcller\n", confirm="1")
    post_file(client, experiment, b"", confirm="1")  # empty
    url, _ = upload_and_check(client, experiment, GOOD)
    client.post(url + "/cancel")  # discarded
    settle()
    assert uploads(app) == []


def test_the_import_is_audited_with_name_size_hash_rows_and_mode(client, experiment):
    post_file(client, experiment, GOOD, name="pilot.csv", confirm="1")
    entry = _db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "rows.import")
    ).one()
    assert entry.details["file_name"] == "pilot.csv"
    assert entry.details["rows"] == 3 and entry.details["mode"] == "insert"
    assert len(entry.details["sha256"]) == 64
    assert entry.details["file_size"] == len(GOOD)


def test_hostile_file_names_and_headers_are_escaped(client, experiment):
    name = '<img src=x onerror="alert(1)">.csv'
    data = 'participant_id,"<script>alert(2)</script>"\nP1,x\n'
    url, response = upload_and_check(client, experiment, data, name=name)
    html = response.get_data(as_text=True)
    assert "<script>alert(2)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert "&lt;img src=x" in html
    listing = client.get(f"/experiments/{experiment.uuid}/import")
    assert "<img src=x" not in listing.get_data(as_text=True)


def test_upload_needs_the_csrf_token(csrf_app, tmp_path):
    csrf_app.config.update(settings(tmp_path))
    try:
        with csrf_app.app_context():
            xtype = make_type("Cognitive test", "cognitive_test_data", COLUMNS)
            experiment = make_experiment(xtype, "Pilot").uuid
            _db.session.remove()
        client = csrf_app.test_client()
        response = post_file(client, experiment, GOOD)
        assert response.status_code == 400
        assert "expired" in text_of(response)
        page = parse(client.get(f"/experiments/{experiment}/import").data)
        token = page.find("input", name="csrf_token").attrs["value"]
        response = post_file(client, experiment, GOOD, csrf_token=token)
        assert response.status_code == 303
    finally:
        with csrf_app.app_context():
            assert jobs.wait_all(WAIT)


# ----------------------------------------------------------------------
# Files as researchers' tools write them
# ----------------------------------------------------------------------


def copy_sample(tmp_path, name: str) -> bytes:
    path = os.path.join(SAMPLES, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} is not there")
    target = tmp_path / name
    shutil.copyfile(path, target)
    return target.read_bytes()


def test_psychopy_file_imports_after_mapping_its_participant_column(
    client, db, tmp_path
):
    xtype = make_type(
        "Stroop",
        "stroop",
        (
            ColumnDef("word", "STRING"),
            ColumnDef("colour", "STRING"),
            ColumnDef("congruent", "BOOLEAN"),
            ColumnDef("key_resp_keys", "STRING"),
            ColumnDef("key_resp_corr", "INTEGER"),
            ColumnDef("key_resp_rt", "FLOAT"),
        ),
    )
    experiment = make_experiment(xtype, "Stroop pilot")
    data = copy_sample(tmp_path, "psychopy_stroop.csv")
    url, response = upload_and_check(
        client, experiment, data, name="psychopy_stroop.csv"
    )
    page = parse(response.data)
    values = form_fields(page, mapping_form(page))
    assert values["map-23"] == "participant_id"  # "participant", proposed
    assert "read as key_resp_rt" in page.text
    values["ignore_unmatched"] = "1"
    client.post(url + "/check", data=values)
    settle()
    page = parse(client.get(url).data)
    assert "All 59 rows are valid." in page.text, page.text[:3000]
    client.post(url + "/confirm")
    settle()
    rows = stored(xtype, experiment)
    assert len(rows) == 59
    assert {r["participant_id"] for r in rows} == {"007"}  # text, not 7
    trial = next(r for r in rows if r["word"])
    assert trial["word"] == "gelb" and trial["congruent"] is False
    assert trial["key_resp_rt"] == 0.8763237446075


def test_jspsych_file_imports_with_null_as_missing(client, db, tmp_path):
    xtype = make_type(
        "RT task",
        "rt_task",
        (
            ColumnDef("trial_type", "STRING"),
            ColumnDef("trial_index", "INTEGER"),
            ColumnDef("rt", "FLOAT"),
            ColumnDef("correct", "BOOLEAN"),
        ),
    )
    experiment = make_experiment(xtype, "jsPsych")
    data = copy_sample(tmp_path, "jspsych_rt.csv")
    url, response = upload_and_check(
        client, experiment, data, name="jspsych_rt.csv", missing="1"
    )
    page = parse(response.data)
    values = form_fields(page, mapping_form(page))
    assert values["map-9"] == "participant_id"  # subject_id
    assert "missing_token" in values  # the chosen spellings are kept in the form
    values["missing"] = "1"  # form_fields keeps one value per name: all of them
    values["ignore_unmatched"] = "1"
    client.post(url + "/check", data=values)
    settle()
    assert "All 79 rows are valid." in text_of(client.get(url))
    client.post(url + "/confirm")
    settle()
    rows = stored(xtype, experiment)
    assert len(rows) == 79
    assert rows[1]["rt"] is None  # "null"


def test_job_of_one_experiment_under_another_experiments_address_is_404(
    client, experiment, other
):
    url, _page = upload_and_check(client, experiment, "participant_id\nP1\n")
    job = url.rsplit("/", 1)[1]
    swapped = f"/experiments/{other.uuid}/imports/{job}"
    for suffix, method in [
        ("", "GET"),
        ("/progress", "GET"),
        ("/offending.csv", "GET"),
        ("/confirm", "POST"),
        ("/cancel", "POST"),
        ("/check", "POST"),
    ]:
        response = client.open(swapped + suffix, method=method)
        assert response.status_code == 404, suffix
    assert client.get(url).status_code == 200

"""Import messages that are true and pages that stay small, on both databases.

A one-step import says the type changed only when it did, and a refused one ends as a
failed job that keeps its report but not its file. A file with thousands of unknown
columns, or with every cell bad, gets a job page and a JSON answer under 100 KB that
count what they do not list; "ignore every unmatched column" ignores the unlisted ones
too. Header problems name the cell's position; long lists of names stop after 20.
"""

from __future__ import annotations

import csv
import io
import uuid

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_type
from tests.htmlparse import parse
from tests.test_import_views import app  # noqa: F401  (the fixture, with job settings)
from tests.test_import_views import form_fields
from tests.test_import_views import mapping_form
from tests.test_import_views import post_file
from tests.test_import_views import settle
from tests.test_import_views import stored
from tests.test_import_views import text_of
from tests.test_import_views import upload_and_check
from tests.test_import_views import uploads
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.csv_io import jobs
from wave_web.csv_io import runner as runner_module
from wave_web.extensions import db as _db
from wave_web.models import ImportJob

COLUMNS = (
    ColumnDef("rt", "FLOAT"),
    ColumnDef("correct", "BOOLEAN"),
    ColumnDef("word", "STRING"),
)
HEADER = "participant_id,rt,correct,word\n"
GOOD = HEADER + "P1,0.41,true,red\nP2,0.93,false,blue\n"
LIMIT = 100_000  # bytes of any page or answer about a job
CHANGED_AFTER_UPLOAD = (
    "The experiment type changed after the upload (its columns were edited), "
    "so the file was checked again."
)


@pytest.fixture
def xtype(db):
    return make_type("Reaction task", "reaction_task", COLUMNS)


@pytest.fixture
def experiment(xtype):
    return make_experiment(xtype, "Pilot")


def job_of(url: str) -> ImportJob:
    _db.session.rollback()
    return _db.session.get(ImportJob, uuid.UUID(url.rsplit("/", 1)[1]))


def as_json(client, url: str):
    return client.get(url, headers={"Accept": "application/json"})


@pytest.fixture
def held(monkeypatch):
    """Holds the jobs an upload submits, so the type can change before they run.

    Calling the fixture's value hands the held jobs to the runner.
    """
    waiting = []
    original = runner_module.Runner.submit

    def hold(runner, *args, **kwargs):
        waiting.append((runner, args, kwargs))

    monkeypatch.setattr(runner_module.Runner, "submit", hold)

    def release():
        _db.session.rollback()  # the test's reads hold no SQLite lock meanwhile
        monkeypatch.setattr(runner_module.Runner, "submit", original)
        for runner, args, kwargs in waiting:
            original(runner, *args, **kwargs)
        waiting.clear()
        settle()

    yield release
    release()


def one_step_upload_held(client, experiment, data) -> str:
    """Post a one-step upload whose job waits (held) and give the job's address."""
    response = post_file(client, experiment, data, confirm="1")
    assert response.status_code == 202, response.get_data(as_text=True)[:500]
    return response.headers["Location"]


# ----------------------------------------------------------------------
# One step: the "type changed" note only when it did
# ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["form", "query"])
def test_one_step_import_into_an_unchanged_type_says_nothing_about_a_change(
    client, xtype, experiment, how
):
    extra = {"confirm": "1"} if how == "form" else {"query_confirm": True}
    response = post_file(client, experiment, GOOD, **extra)
    assert response.status_code == 200
    page = text_of(response)
    assert "Imported 2 rows." in page
    assert "changed" not in page
    job = _db.session.scalars(sa.select(ImportJob)).one()
    assert job.message == "Imported 2 rows."
    assert job.schema_version == xtype.schema_version  # recorded at the upload
    assert len(stored(xtype, experiment)) == 2


def test_one_step_import_as_json_into_an_unchanged_type_says_nothing_about_a_change(
    client, experiment
):
    response = client.post(
        f"/experiments/{experiment.uuid}/import?confirm=1",
        data={"file": (io.BytesIO(GOOD.encode()), "a.csv")},
        content_type="multipart/form-data",
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    assert response.get_json()["message"] == "Imported 2 rows."


def test_one_step_import_says_so_when_the_type_changed_after_the_upload(
    client, xtype, experiment, held
):
    url = one_step_upload_held(client, experiment, GOOD)
    schema.add_column(xtype, ColumnDef("block", "INTEGER"))
    held()
    job = job_of(url)
    assert job.state == "succeeded"
    assert job.message == "Imported 2 rows. " + CHANGED_AFTER_UPLOAD
    assert CHANGED_AFTER_UPLOAD in text_of(client.get(url))
    assert [r["block"] for r in stored(xtype, experiment)] == [None, None]
    assert uploads(client.application) == []


def test_one_step_import_that_a_type_change_breaks_fails_and_says_why(
    client, xtype, experiment, held
):
    url = one_step_upload_held(client, experiment, GOOD)
    schema.drop_column(xtype, "word", "word")
    held()
    job = job_of(url)
    assert job.state == "failed"  # no preview to go back to
    assert job.message.startswith(CHANGED_AFTER_UPLOAD + " Nothing was imported: ")
    assert job.report["problems"][0]["column"] == "word"
    assert job.report["problems"][0]["position"] == 3
    page = text_of(client.get(url))
    assert CHANGED_AFTER_UPLOAD in page and "(column 4)" in page
    assert stored(xtype, experiment) == []
    assert uploads(client.application) == []


# ----------------------------------------------------------------------
# One step: a refusal is a failed job with its report, and no file left
# ----------------------------------------------------------------------


def test_refused_one_step_import_fails_keeps_its_report_and_deletes_the_file(
    client, xtype, experiment
):
    response = post_file(client, experiment, HEADER + "P1,fast,true,a\n", confirm="1")
    assert response.status_code == 422
    page = parse(response.data)
    assert "Nothing was imported" in page.text and "changed" not in page.text
    row = page.find("table", class_="problems-table").find("tbody").find("tr")
    assert [td.text for td in row.find_all("td")][2:4] == ["rt", "fast"]
    job = _db.session.scalars(sa.select(ImportJob)).one()
    assert job.state == "failed"
    assert job.report["problem_count"] == 1
    assert job.report["problems"][0]["value"] == "fast"
    assert uploads(client.application) == []
    data = as_json(client, f"/experiments/{experiment.uuid}/imports/{job.uuid}")
    assert data.get_json()["state"] == "failed"
    assert data.get_json()["problems"][0]["column"] == "rt"
    assert stored(xtype, experiment) == []


def test_many_refused_one_step_imports_leave_no_file_and_no_waiting_preview(
    client, xtype, experiment
):
    bad_files = [
        HEADER + "P1,fast,true,a\n",
        "participant_id,rt,rt\nP1,1,2\n",
        "participant_id,unknown\nP1,x\n",
        "rt\n0.5\n",  # participant_id is required
        HEADER + "P1,1,maybe,a\n",
    ]
    for data in bad_files:
        assert post_file(client, experiment, data, confirm="1").status_code == 422
    _db.session.rollback()
    states = _db.session.scalars(sa.select(ImportJob.state)).all()
    assert states == ["failed"] * len(bad_files)
    assert uploads(client.application) == []
    assert stored(xtype, experiment) == []


def test_two_step_preview_of_a_bad_file_still_waits_with_its_file(client, experiment):
    url, _ = upload_and_check(client, experiment, HEADER + "P1,fast,true,a\n")
    assert job_of(url).state == "checked"
    assert uploads(client.application) == [
        url.rsplit("/", 1)[1].replace("-", "") + ".csv"
    ]


# ----------------------------------------------------------------------
# Bounded pages
# ----------------------------------------------------------------------


def wide_unmatched_file(extra: int, rows: int = 3) -> str:
    names = [f"extra_{i:04d}" for i in range(extra)]
    header = "participant_id,rt,correct,word," + ",".join(names) + "\n"
    cells = ",".join("v" for _ in names)
    body = "".join(f"P{r},0.5,true,w{r},{cells}\n" for r in range(rows))
    return header + body


def test_five_thousand_unmatched_columns_give_a_small_page_that_counts_them(
    client, xtype, experiment
):
    url, response = upload_and_check(client, experiment, wide_unmatched_file(5_000))
    assert response.status_code == 200
    assert len(response.data) < LIMIT
    answer = as_json(client, url)
    assert len(answer.data) < LIMIT
    assert answer.get_json()["problem_count"] == 5_000
    page = parse(response.data)
    listed = mapping_form(page).find("tbody").find_all("tr")
    assert len(listed) == 25  # the first header cells
    hidden = page.find(id="hidden-columns").text
    assert "The first 25 of 5,004 columns are listed" in hidden
    assert "4,979 of them match no column" in hidden
    assert "extra_0021" in hidden and "extra_0040" in hidden  # 20 names shown
    assert "extra_0020" not in hidden and "extra_0041" not in hidden
    assert "The first 100 of 5,000 problems" in page.text
    rest = page.find("tr", class_="per-column-rest").text
    assert "4,950 more columns" in rest

    values = form_fields(page, mapping_form(page))
    values["ignore_unmatched"] = "1"
    assert client.post(url + "/check", data=values).status_code == 303
    settle()
    response = client.get(url)
    assert len(response.data) < LIMIT
    page = parse(response.data)
    assert "All 3 rows are valid." in page.text
    assert "is not a column of this type" not in page.text
    assert page.find(id="hidden-columns") is None or (
        "match no column" not in page.find(id="hidden-columns").text
    )
    job = job_of(url)
    assert job.report["problem_count"] == 0
    ignored = [p for p, t in job.options["mapping"] if t == ""]
    assert len(ignored) == 5_000

    client.post(url + "/confirm")
    settle()
    assert job_of(url).state == "succeeded"
    assert [r["word"] for r in stored(xtype, experiment)] == ["w0", "w1", "w2"]


def test_long_unmatched_header_names_still_give_a_small_page(client, experiment):
    names = [f"{i:04d} " + '<&"long name>' * 19 + "..." for i in range(2_000)]
    assert {len(n) for n in names} == {255}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["participant_id", "rt", "correct", "word", *names])
    writer.writerow(["P1", "0.5", "true", "w", *("x" for _ in names)])
    data = out.getvalue()
    url, response = upload_and_check(client, experiment, data)
    assert len(response.data) < LIMIT
    assert len(as_json(client, url).data) < LIMIT
    assert "1,979 of them match no column" in text_of(response)


def test_a_column_the_page_does_not_list_keeps_its_proposed_mapping_on_a_recheck(
    client, xtype, experiment
):
    names = [f"extra_{i:02d}" for i in range(40)]
    header = ["rt", "correct", "word", *names, "subject"]  # subject: column 44
    data = ",".join(header) + "\n" + ",".join(["0.5", "true", "w", *"x" * 40, "S1"])
    url, response = upload_and_check(client, experiment, data + "\n")
    page = parse(response.data)
    assert "map-43" not in form_fields(page, mapping_form(page))  # not listed
    assert "is required but the file has no such column" not in page.text
    values = form_fields(page, mapping_form(page))
    values["ignore_unmatched"] = "1"
    client.post(url + "/check", data=values)
    settle()
    assert "All 1 row are valid." in text_of(client.get(url))
    assert [43, "participant_id"] in job_of(url).options["mapping"]
    client.post(url + "/confirm")
    settle()
    assert [(r["participant_id"], r["rt"]) for r in stored(xtype, experiment)] == [
        ("S1", 0.5)
    ]


def test_a_wide_type_maps_through_one_shared_list_of_its_columns(db, client):
    wide = [ColumnDef(f"x{i:02d}", "FLOAT") for i in range(40)]
    xtype = make_type("Wide task", "wide_task", wide)
    experiment = make_experiment(xtype, "Wide")
    header = ["participant_id", *(c.name for c in wide)]
    header[5] = "fifth score"  # x04, under another name
    data = ",".join(header) + "\nP1," + ",".join("0.5" for _ in wide) + "\n"
    url, response = upload_and_check(client, experiment, data)
    page = parse(response.data)
    options = page.find("datalist", id="mapping-targets").find_all("option")
    assert [o.attrs["value"] for o in options][:3] == ["participant_id", "x00", "x01"]
    field = page.find("input", id="map-5")
    assert field.attrs["list"] == "mapping-targets"
    assert page.find("select", id="map-0") is None  # no select per row
    values = form_fields(page, mapping_form(page))
    assert values["map-0"] == "participant_id"
    assert values["map-5"] == jobs.BY_NAME
    values["map-5"] = "x04"  # typed, as the list proposes
    client.post(url + "/check", data=values)
    settle()
    assert "All 1 row are valid." in text_of(client.get(url))
    assert [5, "x04"] in job_of(url).options["mapping"]

    values["map-5"] = "no_such_column"
    client.post(url + "/check", data=values)
    settle()
    assert "cannot go to no_such_column" in text_of(client.get(url))


def test_a_file_where_every_cell_is_bad_gives_a_small_page_and_answer(db, client):
    wide = [ColumnDef(f"x{i:02d}", "FLOAT") for i in range(80)]
    xtype = make_type("Wide task", "wide_task", wide)
    experiment = make_experiment(xtype, "Wide")
    bad = ",".join("not a number " + "z" * 200 for _ in wide)
    data = "participant_id," + ",".join(c.name for c in wide) + "\n"
    data += "".join(f"P{r},{bad}\n" for r in range(500))
    url, response = upload_and_check(client, experiment, data)
    assert len(response.data) < LIMIT
    answer = as_json(client, url)
    assert len(answer.data) < LIMIT
    assert answer.get_json()["problem_count"] == 80 * 500
    page = parse(response.data)
    assert "The first 100 of 40,000 problems" in page.text
    per_column = page.find("table", class_="problems-per-column")
    assert len(per_column.find("tbody").find_all("tr")) == 51  # 50 and the rest
    assert "30 more columns" in per_column.find("tr", class_="per-column-rest").text
    assert "15,000" in per_column.find("tr", class_="per-column-rest").text

    response = post_file(client, experiment, data, confirm="1")  # one step
    assert response.status_code == 422
    assert len(response.data) < LIMIT
    assert stored(xtype, experiment) == []


def test_a_wide_valid_file_previews_the_first_columns_with_shortened_values(db, client):
    wide = [ColumnDef(f"s{i:02d}", "TEXT") for i in range(60)]
    xtype = make_type("Texts", "texts", wide)
    experiment = make_experiment(xtype, "Texts")
    data = "participant_id," + ",".join(c.name for c in wide) + "\n"
    data += "".join(
        f"P{r}," + ",".join("long text " * 200 for _ in wide) + "\n" for r in range(10)
    )
    url, response = upload_and_check(client, experiment, data)
    assert len(response.data) < LIMIT
    page = parse(response.data)
    assert "All 10 rows are valid." in page.text
    cut = page.find("p", class_="preview-cut").text
    assert "and 31 more columns; long values are shortened" in cut  # 30 of 61 shown
    client.post(url + "/confirm")
    settle()
    assert stored(xtype, experiment)[0]["s59"] == ("long text " * 200)


# ----------------------------------------------------------------------
# Names and positions in messages
# ----------------------------------------------------------------------


def test_columns_not_in_the_file_are_listed_up_to_20_then_counted(db, client):
    many = [ColumnDef(f"c{i:02d}", "STRING") for i in range(25)]
    xtype = make_type("Many columns", "many_columns", many)
    experiment = make_experiment(xtype, "Many")
    _, response = upload_and_check(client, experiment, "participant_id\nP1\n")
    note = next(
        li.text
        for li in parse(response.data).find_all("li")
        if li.text.startswith("Not in the file")
    )
    listed = ", ".join(f"c{i:02d}" for i in range(20))
    assert note == f"Not in the file, left empty: {listed} and 5 more."


def test_columns_not_in_the_file_are_all_listed_when_there_are_20(db, client):
    many = [ColumnDef(f"c{i:02d}", "STRING") for i in range(21)]
    xtype = make_type("Many columns", "many_columns", many)
    experiment = make_experiment(xtype, "Many")
    _, response = upload_and_check(client, experiment, "participant_id,c20\nP1,x\n")
    text = text_of(response)
    listed = ", ".join(f"c{i:02d}" for i in range(20))
    assert f"Not in the file, left empty: {listed}." in text
    assert "more." not in text


def test_a_header_naming_a_column_twice_says_duplicate_column_and_where(
    client, experiment
):
    data = "participant_id,rt,correct,rt\nP1,0.5,true,0.6\n"
    url, response = upload_and_check(client, experiment, data)
    page = parse(response.data)
    row = page.find("table", class_="problems-table").find("tbody").find("tr")
    cells = [td.text for td in row.find_all("td")]
    assert cells[2] == "rt (column 4)"
    assert cells[4] == (
        "is a duplicate column: the header already has rt in column 2; "
        "ignore one of them"
    )
    mapping = mapping_form(page).find("tbody").find_all("tr")[3]
    assert "duplicate column" in mapping.text

    response = post_file(client, experiment, data, confirm="1")
    assert response.status_code == 422
    job = _db.session.scalars(
        sa.select(ImportJob).where(ImportJob.auto_confirm.is_(True))
    ).one()
    assert job.message == (
        "Nothing was imported: 1 problem found. First: Column 4 “rt” is a duplicate "
        "column: the header already has rt in column 2; ignore one of them"
    )
    assert job.message in text_of(response)


# ----------------------------------------------------------------------
# Permissions
# ----------------------------------------------------------------------


def test_a_viewer_can_neither_see_nor_recheck_a_job(client, experiment):
    url, response = upload_and_check(client, experiment, wide_unmatched_file(60))
    values = form_fields(parse(response.data), mapping_form(parse(response.data)))
    values["ignore_unmatched"] = "1"
    before = job_of(url).options
    viewer = client.application.test_client(user="viewer")
    assert viewer.get(url).status_code == 403
    assert viewer.post(url + "/check", data=values).status_code == 403
    settle()
    job = job_of(url)
    assert job.options == before and job.state == "checked"
    assert job.report["problem_count"] == 60

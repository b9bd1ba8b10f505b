"""Mapping a file onto an existing type: proposals, new columns, remembered mappings.

Also the per-import missing-value spellings and JSON's literal null.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_type
from tests.htmlparse import parse
from tests.test_import_views import app  # noqa: F401  (the fixture, with job settings)
from tests.test_import_views import form_fields
from tests.test_import_views import job_url
from tests.test_import_views import mapping_form
from tests.test_import_views import post_file
from tests.test_import_views import settle
from tests.test_import_views import stored
from tests.test_import_views import text_of
from tests.test_import_views import upload_and_check
from wave_web import datatables
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.csv_io.importing import ImportOptions
from wave_web.csv_io.importing import check_file
from wave_web.extensions import db as _db
from wave_web.models import ExperimentType
from wave_web.models import ImportMapping

COLUMNS = (ColumnDef("rt", "FLOAT"), ColumnDef("correct", "BOOLEAN"))
TOOL_FILE = "subject,rt,correct,Block\nS1,0.5,true,1\nS2,0.7,false,2\n"


@pytest.fixture
def xtype(db):
    return make_type("Reaction task", "reaction_task", COLUMNS)


@pytest.fixture
def experiment(xtype):
    return make_experiment(xtype, "Pilot")


def _fresh_type(xtype) -> ExperimentType:
    _db.session.rollback()
    return _db.session.get(ExperimentType, xtype.id)


def test_new_column_from_the_mapping_commits_with_the_import(client, xtype, experiment):
    url, response = upload_and_check(client, experiment, TOOL_FILE)
    page = parse(response.data)
    values = form_fields(page, mapping_form(page))
    assert values["map-0"] == "participant_id"  # proposed and already applied
    # The unknown column `block` is offered as a new column, its type inferred.
    assert values["add_name-3"] == "block" and values["add_type-3"] == "INTEGER"
    values["map-3"] = "+"
    client.post(url + "/check", data=values)
    settle()
    assert "All 2 rows are valid." in text_of(client.get(url))
    assert [c.name for c in _fresh_type(xtype).columns] == ["rt", "correct"]
    client.post(url + "/confirm")
    settle()
    fresh = _fresh_type(xtype)
    assert [(c.name, c.type, c.label) for c in fresh.columns][-1] == (
        "block",
        "INTEGER",
        "Block",  # the file's header is kept as the label
    )
    table = datatables.reflect(fresh)
    rows = _db.session.execute(
        sa.select(table.c.participant_id, table.c.block).order_by(table.c.id)
    ).all()
    assert [tuple(r) for r in rows] == [("S1", 1), ("S2", 2)]


def test_new_column_is_not_added_when_the_import_is_refused(client, xtype, experiment):
    data = TOOL_FILE + "S3,fast,true,3\n"  # rt "fast" is refused at import time
    url, response = upload_and_check(client, experiment, data)
    page = parse(response.data)
    values = form_fields(page, mapping_form(page))
    values["map-3"] = "+"
    client.post(url + "/check", data=values)
    settle()
    assert "All" not in text_of(client.get(url)).split("rows are valid")[0][-5:]
    # Confirm is refused while problems are listed; force the import path directly:
    fresh = _fresh_type(xtype)
    options = ImportOptions(
        mapping={0: "participant_id", 3: "block"},
        add_columns=(ColumnDef("block", "INTEGER"),),
    )
    report = check_file(fresh, _write(data), options)
    assert not report.ok and report.per_column["rt"] == 1
    assert [c.name for c in _fresh_type(xtype).columns] == ["rt", "correct"]
    assert "block" not in {c.name for c in datatables.reflect(_fresh_type(xtype)).c}


def test_import_that_adds_a_column_rolls_the_column_back_on_a_bad_cell(
    xtype, experiment
):
    from wave_web.csv_io.importing import ImportRefused
    from wave_web.csv_io.importing import import_file

    data = TOOL_FILE + "S3,fast,true,3\n"
    options = ImportOptions(
        mapping={0: "participant_id", 3: "block"},
        add_columns=(ColumnDef("block", "INTEGER", True, "", "block"),),
    )
    fresh = _fresh_type(xtype)
    with pytest.raises(ImportRefused):
        import_file(fresh, experiment.uuid, _write(data), options)
    _db.session.rollback()
    datatables.forget(xtype.table_name)
    fresh = _fresh_type(xtype)
    assert [c.name for c in fresh.columns] == ["rt", "correct"]
    assert "block" not in {c.name for c in datatables.reflect(fresh).c}
    assert stored(fresh, experiment) == []


def _write(text: str) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write(text)
        return f.name


def test_mapping_is_remembered_and_the_next_file_needs_one_click(
    client, xtype, experiment
):
    url, response = upload_and_check(client, experiment, TOOL_FILE)
    values = form_fields(parse(response.data), mapping_form(parse(response.data)))
    values["map-3"] = ""  # ignore block
    client.post(url + "/check", data=values)
    settle()
    client.post(url + "/confirm")
    settle()
    assert _db.session.scalars(sa.select(ImportMapping)).one().uses == 1
    # The same tool's next file: the preview is clean at once.
    second = make_experiment(xtype, "Main")
    data = "subject,rt,correct,Block\nS9,0.9,true,4\n"
    url2, response2 = upload_and_check(client, second, data)
    assert "All 1 row are valid." in text_of(response2) or "All 1 rows" in text_of(
        response2
    )
    client.post(url2 + "/confirm")
    settle()
    assert stored(xtype, second)[0]["participant_id"] == "S9"


def test_script_passes_a_mapping_by_header_in_one_step(client, xtype, experiment):
    response = post_file(
        client,
        experiment,
        TOOL_FILE,
        confirm="1",
        mapping='{"subject": "participant_id", "Block": ""}',
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert [r["participant_id"] for r in stored(xtype, experiment)] == ["S1", "S2"]


def test_script_mapping_that_is_not_json_is_refused_at_the_field(client, experiment):
    response = post_file(client, experiment, TOOL_FILE, confirm="1", mapping="{nope")
    assert response.status_code == 422
    assert "The mapping must be a JSON object" in response.get_data(as_text=True)


def test_one_step_import_does_not_guess_close_names(client, xtype, experiment):
    data = "participant_id,rtt,correct\nP1,0.5,true\n"  # rtt is close to rt
    response = post_file(client, experiment, data, confirm="1")
    assert response.status_code == 422
    assert stored(xtype, experiment) == []


def test_missing_token_is_refused_with_a_hint_until_it_is_chosen(
    client, xtype, experiment
):
    data = "participant_id,rt,correct\nP1,NA,true\nP2,0.5,NA\n"
    url, response = upload_and_check(client, experiment, data)
    text = text_of(response)
    assert "choose “NA” under missing values" in text
    page = parse(response.data)
    values = form_fields(page, mapping_form(page))
    values["missing_token"] = "NA"
    client.post(url + "/check", data=values)
    settle()
    page = text_of(client.get(url))
    assert "All 2 rows are valid." in page
    assert "Read as empty" in page
    client.post(url + "/confirm")
    settle()
    assert [(r["rt"], r["correct"]) for r in stored(xtype, experiment)] == [
        (None, True),
        (0.5, None),
    ]


def test_missing_value_hint_names_the_choices_as_the_preview_does(client, experiment):
    url, response = upload_and_check(client, experiment, "participant_id,rt\nP1,NA\n")
    page = parse(response.data)
    assert "choose “NA” under missing values" in page.text
    token = page.find("input", name="missing_token", value="NA")
    legends = [f.find("legend") for f in page.find_all("fieldset") if token in f.iter()]
    assert legends[-1].text.startswith("Missing values")


def test_read_as_empty_names_only_the_columns_that_had_such_cells(
    client, xtype, experiment
):
    # rt has a "NA"; correct has none: the line has no separator left dangling
    data = "participant_id,rt,correct\nP1,NA,true\nP2,0.5,false\n"
    response = post_file(client, experiment, data, missing="1")
    settle()
    page = parse(client.get(job_url(response)).data)
    note = next(p for p in page.find_all("p") if "Read as empty" in p.text)
    assert " ".join(note.text.split()) == "Read as empty: rt “NA” × 1"


def test_missing_token_still_refused_by_a_required_column(client, db, experiment):
    required = make_type("Strict", "strict_data", (ColumnDef("rt", "FLOAT", False),))
    strict = make_experiment(required, "Strict")
    data = "participant_id,rt\nP1,NA\n"
    response = post_file(client, strict, data, confirm="1", missing_token="NA")
    assert response.status_code == 422
    assert "is required" in response.get_data(as_text=True)


def test_unknown_missing_token_is_refused(client, experiment):
    response = post_file(client, experiment, TOOL_FILE, missing_token="n.a.")
    assert response.status_code == 422
    assert "offered missing-value" in response.get_data(as_text=True)


def test_json_null_is_stored_as_an_empty_value(client, db):
    xtype = make_type("Json", "json_data", (ColumnDef("extra", "JSON"),))
    experiment = make_experiment(xtype, "J")
    response = post_file(
        client, experiment, 'participant_id,extra\nP1,null\nP2,"[1]"\n', confirm="1"
    )
    assert response.status_code == 200
    assert [r["extra"] for r in stored(xtype, experiment)] == [None, [1]]


def test_json_null_is_refused_by_a_required_json_column(client, db):
    xtype = make_type("Json2", "json_req", (ColumnDef("extra", "JSON", False),))
    experiment = make_experiment(xtype, "J")
    response = post_file(
        client, experiment, "participant_id,extra\nP1,null\n", confirm="1"
    )
    assert response.status_code == 422
    assert stored(xtype, experiment) == []


def test_added_column_that_exists_already_is_refused(client, xtype, experiment):
    url, response = upload_and_check(client, experiment, TOOL_FILE)
    values = form_fields(parse(response.data), mapping_form(parse(response.data)))
    values["map-3"] = "+"
    values["add_name-3"] = "rt"
    response = client.post(url + "/check", data=values, follow_redirects=True)
    assert "already has a column “rt”" in response.get_data(as_text=True)
    assert schema.get_type(xtype.id).columns == list(COLUMNS)


@pytest.fixture
def timed(db):
    return make_type(
        "Timed",
        "timed_data",
        (
            ColumnDef("rt", "FLOAT"),
            ColumnDef("at", "DATETIME"),
            ColumnDef("ok", "BOOLEAN"),
        ),
    )


def test_locale_formats_are_proposed_and_change_only_their_column(client, timed):
    experiment = make_experiment(timed, "DE")
    data = (
        "participant_id;rt;at;ok\n"
        "P1;0,532;23.10.2024 14:31:08;WAHR\n"
        "P2;1,5;24.10.2024;FALSCH\n"
    )
    url, response = upload_and_check(client, experiment, data)
    page = parse(response.data)
    values = form_fields(page, mapping_form(page))
    # Proposed (pre-selected, stated), not applied: the check still refuses them.
    assert values["format-rt"] == "decimal_comma"
    assert values["format-at"] == "dmy"
    assert values["format-ok"] == "bool_words"
    assert "check again to apply" in text_of(response)
    client.post(url + "/check", data=values)
    settle()
    assert "All 2 rows are valid." in text_of(client.get(url))
    client.post(url + "/confirm")
    settle()
    rows = stored(timed, experiment)
    assert [(r["participant_id"], r["rt"], r["ok"]) for r in rows] == [
        ("P1", 0.532, True),
        ("P2", 1.5, False),
    ]
    assert rows[0]["at"].isoformat() == "2024-10-23T14:31:08"


def test_dates_that_fit_both_orders_are_not_guessed(client, timed):
    experiment = make_experiment(timed, "Ambiguous")
    data = "participant_id,at\nP1,01/02/2024\nP2,03/04/2024\n"
    url, response = upload_and_check(client, experiment, data)
    page = parse(response.data)
    values = form_fields(page, mapping_form(page))
    assert values["format-at"] == ""  # nothing chosen for the user
    assert "choose one" in text_of(response)
    values["format-at"] = "mdy"
    client.post(url + "/check", data=values)
    settle()
    client.post(url + "/confirm")
    settle()
    assert [r["at"].isoformat() for r in stored(timed, experiment)] == [
        "2024-01-02T00:00:00",
        "2024-03-04T00:00:00",
    ]


def test_unknown_format_is_refused_at_its_field(client, timed):
    experiment = make_experiment(timed, "X")
    data = "participant_id,at\nP1,2024-01-02\n"
    response = post_file(client, experiment, data, **{"format-at": "yyyy"})
    assert response.status_code == 422
    assert "is not a known value format" in response.get_data(as_text=True)


def _workbook(rows: list[list]) -> bytes:
    import io

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Trials"
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_excel_workbook_imports_with_the_cells_types(client, timed):
    import datetime as dt

    experiment = make_experiment(timed, "XL")
    data = _workbook(
        [
            ["participant_id", "rt", "at", "ok"],
            ["007", 0.5, dt.datetime(2024, 10, 23, 13, 56, 15), True],
            ["008", 2, None, False],
        ]
    )
    response = post_file(client, experiment, data, name="trials.xlsx", confirm="1")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    rows = stored(timed, experiment)
    assert [(r["participant_id"], r["rt"], r["ok"]) for r in rows] == [
        ("007", 0.5, True),
        ("008", 2.0, False),
    ]
    assert rows[0]["at"].isoformat() == "2024-10-23T13:56:15" and rows[1]["at"] is None


def test_excel_sheet_can_be_chosen_and_an_unknown_one_is_refused(client, timed):
    experiment = make_experiment(timed, "XL2")
    data = _workbook([["participant_id", "rt"], ["P1", 1.5]])
    response = post_file(client, experiment, data, name="t.xlsx", sheet="Nope")
    assert response.status_code == 422
    assert "Trials" in response.get_data(as_text=True)  # names the sheets it has
    response = post_file(
        client, experiment, data, name="t.xlsx", sheet="Trials", confirm="1"
    )
    assert response.status_code == 200


def test_renamed_zip_is_refused_as_not_a_workbook(client, timed):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    experiment = make_experiment(timed, "Zip")
    response = post_file(client, experiment, buffer.getvalue(), name="data.xlsx")
    assert response.status_code == 422
    assert "not an Excel workbook" in response.get_data(as_text=True)
    assert stored(timed, experiment) == []

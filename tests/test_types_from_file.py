"""A new experiment type from a researcher's file: every sample, all or nothing."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.htmlparse import parse
from tests.test_import_views import app  # noqa: F401  (the fixture, with job settings)
from tests.test_import_views import form_fields
from tests.test_import_views import settle
from wave_web import columns
from wave_web import datatables
from wave_web.csv_io import drafts
from wave_web.extensions import db as _db
from wave_web.models import Experiment
from wave_web.models import ExperimentType

SAMPLES = Path(__file__).parent / "data" / "samples"

# file → rows, participant header, {column: type} that must be proposed and created
EXPECTED = {
    "psychopy_stroop.csv": (
        59,
        "participant",
        {"key_resp_rt": "FLOAT", "congruent": "BOOLEAN", "date": "DATETIME"},
    ),
    "jspsych_rt.csv": (
        79,
        "subject_id",
        {"rt": "FLOAT", "trial_index": "INTEGER", "correct": "BOOLEAN"},
    ),
    "qualtrics_survey.csv": (
        20,
        "ResponseId",  # PROLIFIC_PID is empty on the survey preview: never-empty id
        {"duration_in_seconds": "INTEGER", "start_date": "DATETIME"},
    ),
    "gorilla_long.csv": (96, "Participant Private ID", {"reaction_time": "FLOAT"}),
    "eprime_export.txt": (
        30,
        "Subject",
        {"stimulus_rt": "INTEGER", "procedure_trial": "STRING"},
    ),
    "opensesame_subject-1.csv": (40, "subject_nr", {"response_time": "FLOAT"}),
}


def upload(client, name: str, data: bytes | None = None):
    body = data if data is not None else (SAMPLES / name).read_bytes()
    return client.post(
        "/types/from-file",
        data={"file": (io.BytesIO(body), name)},
        content_type="multipart/form-data",
    )


def settle_draft(url: str) -> None:
    drafts.wait(_draft(url), 30)
    settle()


def ready_page(client, url: str):
    settle_draft(url)
    response = client.get(url)
    assert b"spinner-border" not in response.data
    return response


def screen_form(response) -> dict[str, str]:
    page = parse(response.data)
    form = next(f for f in page.find_all("form") if f.attrs.get("hx-post"))
    return form_fields(page, form)


def create(client, url: str, values: dict) -> str:
    response = client.post(url + "/create", data=values)
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    settle_draft(url)
    done = client.get(url)
    assert done.status_code == 303, done.get_data(as_text=True)[:2000]
    return done.headers["Location"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_becomes_a_type_an_experiment_and_its_rows(client, db, name):
    rows, participant, types = EXPECTED[name]
    response = upload(client, name)
    assert response.status_code == 303
    url = response.headers["Location"]
    page = ready_page(client, url)
    assert parse(page.data).find(id="row-count").text.strip() == str(rows)
    assert parse(page.data).find(id="check-ok") is not None
    values = screen_form(page)
    chosen = int(values["participant"])
    headers = {g["position"]: g["header"] for g in _draft(url).analysis["columns"]}
    assert headers[chosen] == participant
    location = create(client, url, values)

    _db.session.rollback()
    experiment = _db.session.get(Experiment, uuid.UUID(location.rsplit("/", 1)[-1]))
    xtype = experiment.experiment_type
    found = {c.name: c.type for c in xtype.columns}
    for column, type_name in types.items():
        assert found[column] == type_name, (column, found)
    table = datatables.reflect(xtype)
    count = _db.session.scalar(sa.select(sa.func.count()).select_from(table))
    assert count == rows == experiment.row_count


def _draft(url: str) -> drafts.Draft:
    return drafts._read(url.rsplit("/", 1)[-1])


def test_participant_ids_keep_their_zeros_and_headers_become_labels(client, db):
    url = upload(client, "psychopy_stroop.csv").headers["Location"]
    location = create(client, url, screen_form(ready_page(client, url)))
    _db.session.rollback()
    experiment = _db.session.get(Experiment, uuid.UUID(location.rsplit("/", 1)[-1]))
    xtype = experiment.experiment_type
    table = datatables.reflect(xtype)
    ids = set(_db.session.scalars(sa.select(table.c.participant_id)))
    assert ids == {"007"}
    labels = {c.name: c.label for c in xtype.columns}
    assert labels["key_resp_rt"] == "key_resp.rt"


def test_created_message_names_the_type_its_rows_and_the_experiment(client, db):
    url = upload(client, "psychopy_stroop.csv").headers["Location"]
    values = screen_form(ready_page(client, url))
    values["type_name"] = "Stroop (PsychoPy)"
    values["experiment_description"] = "Pilot <b>1</b>"
    location = create(client, url, values)
    page = client.get(location)
    [flash] = parse(page.data).find_all("div", class_="alert-success")
    assert " ".join(flash.text.split()) == (
        "Created the type “Stroop (PsychoPy)” with 59 rows in the experiment "
        "“Pilot <b>1</b>”."
    )
    assert b"Pilot <b>1" not in page.data  # escaped


def test_created_message_shortens_a_long_experiment_description():
    message = drafts.created_message(
        {"type_name": "T", "rows": 1, "experiment_description": "x " * 100}
    )
    assert message.startswith("Created the type “T” with 1 row in the experiment “x")
    assert message.endswith("…”.") and len(message) < 160


def table_name_help(response) -> str:
    """The help under Table name, with the proposal's <code> as `code`."""
    help_ = parse(response.data).find(id="table_name-help")
    code = help_.find("code")
    text = " ".join(help_.text.split())
    return text.replace(f"{code.text} .", f"`{code.text}`.") if code else text


def test_table_name_field_shows_the_name_proposed_from_the_type_name(client, db):
    url = upload(client, "psychopy_stroop.csv").headers["Location"]
    values = screen_form(ready_page(client, url))
    proposed = columns.suggest_name(values["type_name"], "table")
    page = client.get(url)
    assert f"Leave empty to use `{proposed}`." in table_name_help(page)
    assert parse(page.data).find(id="table_name").attrs["placeholder"] == proposed

    # Without JavaScript: the form posts, the page comes back with the new proposal.
    values["type_name"] = "Stroop (PsychoPy)"
    assert client.post(url, data=values).status_code == 303
    settle_draft(url)
    assert "Leave empty to use `stroop_psychopy`." in table_name_help(client.get(url))
    # Live (htmx re-renders the draft on change): the answer holds it too.
    values["type_name"] = "Flanker task"
    live = client.post(url, data=values, headers={"HX-Request": "true"})
    assert "Leave empty to use `flanker_task`." in table_name_help(live)
    # A table name typed in: no proposal is shown.
    values["table_name"] = "my_table"
    typed = client.post(url, data=values, headers={"HX-Request": "true"})
    assert "Leave empty" not in table_name_help(typed)


def test_refused_create_leaves_no_type_and_no_table(client, db):
    url = upload(client, "psychopy_stroop.csv").headers["Location"]
    values = screen_form(ready_page(client, url))
    # Make key_resp.keys (letters and "None") an INTEGER column: the import refuses it.
    position = next(
        k.split("-", 1)[1] for k, v in values.items() if v == "key_resp_keys"
    )
    values[f"type-{position}"] = "INTEGER"
    values["table_name"] = "stroop_refused"
    response = client.post(url + "/create", data=values)
    assert response.status_code == 303
    settle_draft(url)
    page = client.get(url)
    assert page.status_code == 200
    assert "Nothing was created" in page.get_data(as_text=True)
    _db.session.rollback()
    assert _db.session.scalars(sa.select(ExperimentType)).all() == []
    with _db.engine.connect() as conn:
        assert "stroop_refused" not in sa.inspect(conn).get_table_names()


def test_skipped_header_rows_are_shown_and_can_be_undone(client, db):
    url = upload(client, "qualtrics_survey.csv").headers["Location"]
    page = ready_page(client, url)
    text = page.get_data(as_text=True)
    assert "Lines that are not data" in text
    draft = _draft(url)
    skipped = [s["line"] for s in draft.analysis["skips"] if s["kind"] != "preamble"]
    assert skipped, draft.analysis["skips"]
    values = screen_form(page)
    values["undo_skip"] = str(skipped[0])
    client.post(url, data=values)
    settle_draft(url)
    again = _draft(url)
    assert again.choices["undone_skips"] == [skipped[0]]
    assert again.analysis["rows"] == draft.analysis["rows"] + 1


def test_file_of_another_kind_is_refused_at_the_field(client, db):
    response = upload(client, "notes.pdf", b"%PDF-1.4")
    assert response.status_code == 422
    assert "is not a CSV, TSV, TXT or XLSX file" in response.get_data(as_text=True)


def test_empty_file_is_refused(client, db):
    response = upload(client, "empty.csv", b"")
    assert response.status_code == 422
    assert "is empty" in response.get_data(as_text=True)


def test_draft_of_another_user_is_not_found(app, client, db):  # noqa: F811
    from tests.conftest import session_for

    url = upload(client, "jspsych_rt.csv").headers["Location"]
    settle_draft(url)
    other = app.test_client()
    with other.session_transaction() as session:
        session.update(session_for(app, "researcher"))
    assert other.get(url).status_code == 404


def test_discard_removes_the_upload(app, client, db):  # noqa: F811
    url = upload(client, "jspsych_rt.csv").headers["Location"]
    ready_page(client, url)
    response = client.post(url + "/discard")
    assert response.status_code == 303
    folder = os.path.join(app.config["WAVE_UPLOAD_DIR"], "drafts")
    assert os.listdir(folder) == []
    assert client.get(url).status_code == 404


def test_bad_column_name_is_reported_at_its_field(client, db):
    url = upload(client, "jspsych_rt.csv").headers["Location"]
    values = screen_form(ready_page(client, url))
    position = next(k.split("-", 1)[1] for k, v in values.items() if v == "rt")
    values[f"name-{position}"] = "select"  # a reserved word
    response = client.post(url + "/create", data=values)
    assert response.status_code == 422
    page = parse(response.data)
    assert page.find(id=f"name-{position}-error") is not None
    _db.session.rollback()
    assert _db.session.scalars(sa.select(ExperimentType)).all() == []


def test_qualtrics_times_are_read_in_their_zone_and_stored_in_utc(client, db):
    url = upload(client, "qualtrics_survey.csv").headers["Location"]
    values = screen_form(ready_page(client, url))
    position = next(k.split("-", 1)[1] for k, v in values.items() if v == "start_date")
    assert values[f"format-{position}"] == "zone:America/Denver"
    location = create(client, url, values)
    _db.session.rollback()
    experiment = _db.session.get(Experiment, uuid.UUID(location.rsplit("/", 1)[-1]))
    table = datatables.reflect(experiment.experiment_type)
    first = (
        _db.session.execute(sa.select(table).order_by(table.c.id)).mappings().first()
    )
    # The file says 2024-04-02 12:34:00 in Denver (MDT, UTC-6).
    assert first["start_date"].isoformat() == "2024-04-02T18:34:00"


def test_unknown_time_zone_format_is_not_accepted(client, db):
    url = upload(client, "qualtrics_survey.csv").headers["Location"]
    values = screen_form(ready_page(client, url))
    position = next(k.split("-", 1)[1] for k, v in values.items() if v == "start_date")
    values[f"format-{position}"] = "zone:Nowhere/Land"
    client.post(url, data=values)
    settle_draft(url)
    assert _draft(url).choices["columns"][position]["format"] == ""


def test_file_with_thousands_of_columns_gives_bounded_pages_and_a_capped_type(
    client, db
):
    width = 5000
    header = "participant," + ",".join(f"c{i}" for i in range(width))
    rows = [f"P{r}," + ",".join(str(i * r) for i in range(width)) for r in range(3)]
    data = ("\n".join([header, *rows]) + "\n").encode()
    url = upload(client, "wide.csv", data).headers["Location"]
    page = ready_page(client, url)
    assert len(page.data) < 100_000
    assert "a type holds at most 200" in page.get_data(as_text=True)
    second = client.get(url + "?cols=50")
    assert len(second.data) < 100_000 and b'value="c50"' in second.data
    location = create(client, url, screen_form(page))
    _db.session.rollback()
    experiment = _db.session.get(Experiment, uuid.UUID(location.rsplit("/", 1)[-1]))
    assert len(experiment.experiment_type.columns) == 200
    assert experiment.row_count == 3


def test_more_columns_than_a_type_holds_are_refused_with_the_limit(client, db):
    width = 201
    header = "participant," + ",".join(f"c{i}" for i in range(width))
    data = (header + "\nP1," + ",".join("1" for _ in range(width)) + "\n").encode()
    url = upload(client, "wide.csv", data).headers["Location"]
    page = ready_page(client, url)
    draft = _draft(url)
    assert sum(c["include"] for c in draft.choices["columns"].values()) == 200
    values = screen_form(client.get(url + "?cols=200"))
    values["include-201"] = "1"  # tick the 201st column too
    response = client.post(url + "/create", data=values)
    assert response.status_code == 422
    assert "at most 200 columns" in response.get_data(as_text=True)
    assert page.status_code == 200
    _db.session.rollback()
    assert _db.session.scalars(sa.select(ExperimentType)).all() == []

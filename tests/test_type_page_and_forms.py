"""The type page and the forms use what the user wrote (issue 12 item 10).

Column descriptions are help text on the row forms, the automatic table name keeps
product names whole, the tags field has one label, an empty experiment offers its
first steps.
"""

from __future__ import annotations

import pytest
from flask import url_for
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import Element
from tests.htmlparse import parse
from wave_web import catalog
from wave_web import columns
from wave_web import datatables
from wave_web.columns import ColumnDef
from wave_web.csv_io import inference
from wave_web.extensions import db as _db
from wave_web.models import ExperimentType

RT_HELP = "Reaction time in seconds, from stimulus onset to the key press"
COLUMNS = (
    ColumnDef("rt", "FLOAT", description=RT_HELP),
    ColumnDef("word", "STRING", nullable=False, description="  The colour word  "),
    ColumnDef("ink", "STRING"),
    ColumnDef("notes", "TEXT", description="<b>not bold</b>"),
)
HX = {"HX-Request": "true"}


@pytest.fixture
def described(db):
    """A type whose columns have descriptions (one without), an experiment, a row."""
    xtype = make_type("Stroop", "stroop", COLUMNS)
    experiment = make_experiment(xtype, "Pilot")
    make_rows(xtype, experiment, [{"participant_id": "P1", "rt": 0.5, "word": "red"}])
    return experiment


def rows_url(experiment, rest: str = "") -> str:
    return f"/experiments/{experiment.uuid}/rows{rest}"


def described_by(page: Element, input_id: str) -> list[str]:
    field = page.find(id=input_id)
    assert field is not None, f"no #{input_id}"
    return field.attrs.get("aria-describedby", "").split()


def help_of(page: Element, input_id: str) -> Element | None:
    return page.find(id=f"{input_id}-help")


# ----------------------------------------------------------------------
# Column descriptions on the row forms
# ----------------------------------------------------------------------


def test_add_row_form_shows_each_description_as_linked_help_text(client, described):
    page = parse(client.get(rows_url(described, "/new")).data)
    assert help_of(page, "field-rt").text == RT_HELP
    assert "form-text" in help_of(page, "field-rt").classes()
    assert described_by(page, "field-rt") == ["field-rt-help"]
    assert help_of(page, "field-word").text == "The colour word"
    assert help_of(page, "field-ink") is None  # no description: no help, no link
    assert described_by(page, "field-ink") == []
    notes_help = help_of(page, "field-notes")
    assert notes_help.text == "<b>not bold</b>" and notes_help.find("b") is None


def test_add_row_errors_keep_the_help_text_linked(client, described):
    form = {"row.participant_id": "P2", "row.rt": "fast", "row.word": "red"}
    response = client.post(rows_url(described, "/new"), data=form)
    assert response.status_code == 422
    page = parse(response.data)
    assert described_by(page, "field-rt") == ["field-rt-help", "field-rt-error"]
    assert help_of(page, "field-rt").text == RT_HELP


def test_edit_row_form_shows_the_descriptions(client, described):
    rid = first_row_id(described)
    page = parse(client.get(rows_url(described, f"/{rid}/edit")).data)
    assert help_of(page, "field-rt").text == RT_HELP
    assert described_by(page, "field-rt") == ["field-rt-help"]
    assert described_by(page, "field-participant_id") == []


def test_inline_edit_reads_the_description_out_without_showing_it(client, described):
    rid = first_row_id(described)
    page = parse(client.get(rows_url(described, f"/{rid}/edit"), headers=HX).data)
    input_id = f"edit-row-{rid}-rt"
    assert described_by(page, input_id) == [f"{input_id}-help"]
    hint = help_of(page, input_id)
    assert hint.text == RT_HELP and "visually-hidden" in hint.classes()


def first_row_id(experiment) -> int:
    [row] = datatables.newest_rows(experiment.experiment_type, experiment.uuid, 1)
    return row["id"]


# ----------------------------------------------------------------------
# The automatic table name
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "table_name"),
    [
        ("PsychoPy stroop", "psychopy_stroop"),
        ("jsPsych flanker", "jspsych_flanker"),
        ("reactionTime", "reaction_time"),
        ("LabJS survey", "labjs_survey"),
        ("PsyToolkit task", "psytoolkit_task"),
        ("REDCap export", "redcap_export"),
        ("EyeLink fixations", "eyelink_fixations"),
        ("iPad drawing", "ipad_drawing"),
        ("MTurk batch 2", "mturk_batch_2"),
        ("Stroop (PsychoPy)", "stroop_psychopy"),
        ("Scenarios and ratios", "scenarios_and_ratios"),
        ("NeuroBS flanker", "neurobs_flanker"),  # a name no list knows
        ("Stroop in OpenSesame", "stroop_in_opensesame"),
        ("GoNoGo task", "gonogo_task"),
    ],
)
def test_automatic_table_name_keeps_words_whole(name, table_name):
    assert columns.suggest_name(name, "table") == table_name


def test_builder_proposes_the_table_name_with_the_product_name_whole(client):
    form = {"name": "PsychoPy stroop", "description": "", "table_name": ""}
    form |= {"columns-0-name": "rt", "columns-0-type": "FLOAT"}
    page = parse(client.post("/types/new/check", data=form, headers=HX).data)
    assert page.find(id="table_name-hint").find("code").text == "psychopy_stroop"
    response = client.post("/types/new", data={**form, "action": "create"})
    assert response.status_code == 303
    assert catalog_table_names() == ["psychopy_stroop"]


def catalog_table_names() -> list[str]:
    _db.session.rollback()
    return [t.table_name for t in _db.session.query(ExperimentType)]


def test_type_from_a_file_names_columns_by_the_same_rule():
    """Headers of a file and type names go through the one function."""
    assert inference.columns is columns  # no second copy of the rule
    assert columns.suggest_name("jsPsychTrialType") == "jspsych_trial_type"


# ----------------------------------------------------------------------
# The tags field
# ----------------------------------------------------------------------


def visible_labels(page: Element) -> list[str]:
    """Texts of the labels and legends a sighted user sees in the form."""
    form = page.find("main").find("form", method="post")
    return [
        e.text
        for e in form.iter()
        if e.tag in ("label", "legend") and "visually-hidden" not in e.classes()
    ]


def tag_labels(page: Element) -> list[str]:
    names = set(catalog.all_tag_names())
    return [t for t in visible_labels(page) if "tag" in t.lower() and t not in names]


def test_tags_field_has_one_label_when_no_tag_exists(client, db):
    make_type()
    page = parse(client.get("/experiments/new").data)
    assert tag_labels(page) == ["Tags"]
    label = page.find("label", **{"for": "new_tags"})
    assert label.text == "Tags"
    assert described_by(page, "new_tags") == ["new_tags-help"]
    assert "Comma-separated" in page.find(id="new_tags-help").text
    assert page.find("fieldset") is None  # a group of one field is no group


@pytest.mark.parametrize("tag_count", [3, 40])
def test_tags_field_has_one_label_when_tags_exist(client, db, tag_count):
    make_type()
    for i in range(tag_count):
        catalog.create_tag(f"tag-{i:02}")
    db.session.commit()
    page = parse(client.get("/experiments/new").data)
    assert tag_labels(page) == ["Tags"]
    assert page.find("fieldset").find("legend").text == "Tags"
    # The text box still has an accessible name and says what it does.
    assert page.find("label", **{"for": "new_tags"}).text == "Other tags"
    assert described_by(page, "new_tags") == ["new_tags-help"]


def test_tag_error_is_linked_with_the_help_text(client, db):
    xtype = make_type()
    form = {"experiment_type_id": str(xtype.id), "description": "P"}
    response = client.post("/experiments/new", data={**form, "new_tags": "x" * 51})
    assert response.status_code == 422
    page = parse(response.data)
    assert described_by(page, "new_tags") == ["new_tags-error", "new_tags-help"]
    assert tag_labels(page) == ["Tags"]


# ----------------------------------------------------------------------
# An empty experiment
# ----------------------------------------------------------------------


def empty_state(page: Element) -> Element | None:
    return page.find("div", class_="empty-state")


@pytest.mark.parametrize("role", ["researcher", "admin"])
def test_empty_experiment_offers_to_add_a_row_and_import_a_csv(app, db, role):
    experiment = make_experiment(make_type(), "Empty")
    db.session.commit()
    page = parse(app.test_client(user=role).get(f"/experiments/{experiment.uuid}").data)
    links = {a.text: a.attrs["href"] for a in empty_state(page).find_all("a")}
    with app.test_request_context():
        assert links == {
            "Add a row": url_for("data.create_row", experiment_uuid=experiment.uuid),
            "Import a CSV": url_for(
                "data.import_upload", experiment_uuid=experiment.uuid
            ),
        }


def test_empty_experiment_offers_a_viewer_no_writing(app, db):
    experiment = make_experiment(make_type(), "Empty")
    db.session.commit()
    viewer = app.test_client(user="viewer")
    page = parse(viewer.get(f"/experiments/{experiment.uuid}").data)
    assert "No rows yet" in empty_state(page).text
    assert empty_state(page).find_all("a") == []
    assert "/rows/new" not in page.find("main").text
    hrefs = [a.attrs.get("href", "") for a in page.find("main").find_all("a")]
    assert not [h for h in hrefs if h.endswith(("/rows/new", "/import"))]


def test_experiment_with_rows_has_no_empty_state(client, described):
    page = parse(client.get(f"/experiments/{described.uuid}").data)
    assert empty_state(page) is None

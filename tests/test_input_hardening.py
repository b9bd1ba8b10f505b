"""Hostile ids, page numbers, free text and JSON: 4xx with a message, never 500.

Ids: "²".isdigit() is True but int("²") fails, and an id beyond 32 bits overflows
SQLite. Text: PostgreSQL cannot store NUL (the driver fails), SQLite would. JSON: very
deep nesting breaks serialisers later.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import catalog
from wave_web import columns
from wave_web.errors import InvalidValue
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import Tag
from wave_web.params import parse_id

# ----------------------------------------------------------------------
# Ids and page numbers
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["", "0", "-1", "+1", " 1", "1 ", "1.0", "²", "1²", "٣", "１", "2147483648"]
    + ["9" * 20, pytest.param("1" * 5000, id="5000-digits"), "abc"],
)
def test_parse_id_refuses_anything_but_ascii_digits_in_range(raw):
    assert parse_id(raw) is None


@pytest.mark.parametrize(
    ("raw", "value"), [("1", 1), ("007", 7), ("2147483647", 2**31 - 1)]
)
def test_parse_id_accepts_ascii_digits_in_range(raw, value):
    assert parse_id(raw) == value


@pytest.mark.parametrize(
    "url",
    [
        "/experiments/?page=²",
        "/experiments/?page=٣",
        "/tags/?page=²",
        "/types/?page=²",
        "/experiments/?type_id=²",
        "/experiments/?type_id=99999999999999999999",
    ],
)
def test_non_ascii_or_huge_number_in_the_query_is_a_400(client, db, url):
    response = client.get(url)
    assert response.status_code == 400
    assert "not valid" in response.text or "type id" in response.text


@pytest.mark.parametrize("raw", ["²", "99999999999999999999", "2147483648"])
def test_hostile_type_id_in_the_experiment_form_is_a_422(client, db, raw):
    make_type()
    form = {"experiment_type_id": raw, "description": "Pilot"}
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 422
    assert "Choose the experiment type" in response.text
    assert db.session.scalar(sa.select(sa.func.count(Experiment.uuid))) == 0


@pytest.mark.parametrize("type_id", ["2147483648", "99999999999999999999"])
@pytest.mark.parametrize("path", ["", "/edit", "/delete"])
def test_type_id_beyond_32_bits_in_the_address_is_a_404(client, db, type_id, path):
    assert client.get(f"/types/{type_id}{path}").status_code == 404


def test_type_id_beyond_32_bits_in_a_schema_change_is_a_404(client, db):
    response = client.post("/types/99999999999999999999/columns", data={"name": "x"})
    assert response.status_code == 404


@pytest.mark.parametrize("path", ["/edit", "/delete"])
def test_tag_id_beyond_32_bits_in_the_address_is_a_404(client, db, path):
    assert client.get(f"/tags/99999999999999999999{path}").status_code == 404
    assert client.post(f"/tags/2147483648{path}").status_code == 404


# ----------------------------------------------------------------------
# NUL in free text: 422 at the field, nothing stored
# ----------------------------------------------------------------------

NUL = "a\x00b"


def count(db, model) -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def feedback(response, field: str) -> str:
    """The message at a builder field (its live-check feedback element)."""
    element = parse(response.data).find(id=f"{field}-feedback")
    assert element is not None, f"no feedback element for {field}"
    return element.text


def field_error(response, field: str) -> str:
    element = parse(response.data).find(id=f"{field}-error")
    assert element is not None, f"no error shown at {field}"
    return element.text


def test_clean_text_refuses_nul_with_the_field():
    assert columns.clean_text("fine", "name") == "fine"
    with pytest.raises(InvalidValue) as caught:
        columns.clean_text(NUL, "description", "description")
    assert caught.value.field == "description"
    assert "NUL" in caught.value.message


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"name": NUL}, "name"),
        ({"name": "Stroop", "description": NUL}, "description"),
        (
            {
                "name": "Stroop",
                "columns-0-name": "rt",
                "columns-0-type": "FLOAT",
                "columns-0-description": NUL,
            },
            "columns-0",
        ),
    ],
)
def test_builder_refuses_nul_in_names_and_descriptions(client, db, form, field):
    response = client.post("/types/new", data={"table_name": "stroop", **form})
    assert response.status_code == 422
    assert "NUL" in feedback(response, field)
    assert count(db, ExperimentType) == 0


def test_live_check_reports_nul_in_the_description(client, db):
    response = client.post(
        "/types/new/check", data={"name": "Stroop", "description": NUL}
    )
    assert response.status_code == 200
    assert "NUL" in feedback(response, "description")


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"name": NUL, "description": ""}, "name"),
        ({"name": "X", "description": NUL}, "description"),
    ],
)
def test_type_edit_refuses_nul(client, db, form, field):
    xtype = make_type()
    response = client.post(f"/types/{xtype.id}/edit", data=form)
    assert response.status_code == 422
    assert "NUL" in field_error(response, field)
    db.session.expire_all()
    assert db.session.get(ExperimentType, xtype.id).name == "Cognitive test"


def test_column_description_with_nul_is_refused(client, db):
    xtype = make_type()
    response = client.post(
        f"/types/{xtype.id}/columns/accuracy/describe", data={"description": NUL}
    )
    assert response.status_code == 422
    assert "NUL" in response.text
    db.session.expire_all()
    assert db.session.get(ExperimentType, xtype.id).column("accuracy").description == ""


def test_experiment_create_refuses_nul_in_the_description(client, db):
    xtype = make_type()
    form = {"experiment_type_id": str(xtype.id), "description": NUL}
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 422
    assert "NUL" in field_error(response, "description")
    assert count(db, Experiment) == 0


def test_experiment_edit_refuses_nul_in_the_description(client, db):
    experiment = make_experiment(make_type(), "Pilot")
    response = client.post(
        f"/experiments/{experiment.uuid}/edit", data={"description": NUL}
    )
    assert response.status_code == 422
    assert "NUL" in field_error(response, "description")
    db.session.expire_all()
    assert db.session.get(Experiment, experiment.uuid).description == "Pilot"


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"name": NUL}, "name", "control characters"),
        ({"name": "pilot", "description": NUL}, "description", "NUL"),
    ],
)
def test_tag_create_refuses_nul(client, db, form, field, message):
    response = client.post("/tags/", data=form)
    assert response.status_code == 422
    assert message in field_error(response, field)
    assert count(db, Tag) == 0


def test_tag_edit_refuses_nul_in_the_description(client, db):
    tag = catalog.create_tag("pilot", "first runs")
    response = client.post(
        f"/tags/{tag.id}/edit", data={"name": "pilot", "description": NUL}
    )
    assert response.status_code == 422
    assert "NUL" in field_error(response, "description")
    db.session.expire_all()
    assert db.session.get(Tag, tag.id).description == "first runs"


@pytest.mark.parametrize(
    ("url", "args"),
    [
        ("/experiments/", {"q": NUL}),
        ("/experiments/", {"tag": NUL}),
        ("/tags/", {"q": NUL}),
    ],
)
def test_search_with_nul_is_a_400_with_a_message(client, db, url, args):
    make_experiment(make_type(), "Pilot", ["pilot"])
    response = client.get(url, query_string=args)
    assert response.status_code == 400
    assert "NUL" in response.text


# ----------------------------------------------------------------------
# JSON nesting
# ----------------------------------------------------------------------


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def nested_array(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def test_json_cell_nested_64_deep_is_accepted_65_refused():
    assert columns.parse_json(nested_array(64)) is not None
    with pytest.raises(ValueError, match="nested at most 64 levels"):
        columns.parse_json(nested_array(65))


def test_json_cell_deeply_nested_with_a_big_integer_is_refused_not_a_crash():
    # the big integer sends the text through Python's json parser (recursion limit)
    text = "[" * 995 + "123456789012345678901234" + "]" * 995
    with pytest.raises(ValueError, match="nested at most"):
        columns.parse_value("JSON", text)


def test_many_brackets_in_strings_do_not_count_as_nesting():
    value = columns.parse_json('{"a": "' + "[" * 200 + '"}')
    assert value == {"a": "[" * 200}


def test_additional_data_nested_too_deep_is_refused_with_a_message():
    assert catalog.parse_additional_data(nested_object(64))
    with pytest.raises(InvalidValue, match="too deeply nested") as caught:
        catalog.parse_additional_data(nested_object(65))
    assert caught.value.field == "additional_data"


@pytest.mark.parametrize("depth", [500, 990])
def test_experiment_with_deeply_nested_data_is_a_422(client, db, depth):
    xtype = make_type()
    form = {
        "experiment_type_id": str(xtype.id),
        "description": "Pilot",
        "additional_data": nested_object(depth),
    }
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 422
    assert "nested" in field_error(response, "additional_data")
    assert count(db, Experiment) == 0


def test_edit_with_deeply_nested_data_is_a_422_and_the_page_still_renders(client, db):
    experiment = make_experiment(make_type(), "Pilot", data={"site": "Berlin"})
    url = f"/experiments/{experiment.uuid}/edit"
    form = {"description": "Pilot", "additional_data": nested_object(500)}
    response = client.post(url, data=form)
    assert response.status_code == 422
    assert "nested" in field_error(response, "additional_data")
    assert client.get(url).status_code == 200

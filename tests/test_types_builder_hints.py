"""Builder: Enter adds a column, table-name hints, one standard-column list."""

from __future__ import annotations

import pytest
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import columns
from wave_web import templating

NO_PROPOSAL = ["日本語", "¿¡!", "___"]


def builder_form(name: str, table_name: str = "", **extra) -> dict:
    form = {"name": name, "description": "", "table_name": table_name, **extra}
    form |= {"columns-0-name": "rt", "columns-0-type": "FLOAT"}
    return form


def text_of(page, element_id: str) -> str:
    element = page.find(id=element_id)
    assert element is not None, f"no #{element_id}"
    return element.text


def submit_buttons(form) -> list:
    return [
        b for b in form.find_all("button") if b.attrs.get("type", "submit") == "submit"
    ]


# ----------------------------------------------------------------------
# Enter adds a column: the form's default button
# ----------------------------------------------------------------------


@pytest.mark.parametrize("htmx", [True, False])
def test_first_submit_button_adds_a_column_and_is_enabled(client, htmx):
    headers = {"HX-Request": "true"} if htmx else {}
    page = parse(
        client.post(
            "/types/new", data=builder_form("X", action="add"), headers=headers
        ).data
    )
    default = submit_buttons(page.find("form", id="builder"))[0]
    assert (default.attrs["name"], default.attrs["value"]) == ("action", "add")
    assert "disabled" not in default.attrs
    assert "visually-hidden" in default.classes()
    assert default.attrs["hx-post"] == "/types/new"
    assert default.attrs["hx-target"] == "#builder"


@pytest.mark.parametrize("htmx", [True, False])
def test_default_add_focuses_the_new_column(client, htmx):
    headers = {"HX-Request": "true"} if htmx else {}
    form = builder_form("Stroop", action="add")
    page = parse(client.post("/types/new", data=form, headers=headers).data)
    focused = page.find_all(autofocus="")
    assert [e.attrs["id"] for e in focused] == ["columns-1-name"]


# ----------------------------------------------------------------------
# A name with nothing to propose a table name from
# ----------------------------------------------------------------------


@pytest.mark.parametrize("name", NO_PROPOSAL)
def test_live_check_explains_what_to_type_when_no_table_name_can_be_proposed(
    client, name
):
    response = client.post(
        "/types/new/check", data=builder_form(name), headers={"HX-Request": "true"}
    )
    page = parse(response.data)
    assert "No table name can be made" in text_of(page, "name-hint")
    message = text_of(page, "table_name-feedback")
    assert "is empty" not in message
    assert "a–z" in message
    assert "my_task" in message
    assert page.find(id="name-hint").attrs["hx-swap-oob"] == "true"


@pytest.mark.parametrize("name", NO_PROPOSAL)
def test_create_with_such_a_name_says_what_to_type(client, db, name):
    form = builder_form(name, action="create")
    response = client.post("/types/new", data=form)
    assert response.status_code == 422
    page = parse(response.data)
    assert "No table name can be made" in text_of(page, "name-hint")
    assert "a–z" in text_of(page, "table_name-feedback")
    assert "is empty" not in text_of(page, "table_name-feedback")


def test_typing_a_table_name_removes_the_hints(client, db):
    response = client.post(
        "/types/new/check",
        data=builder_form("日本語", "nihongo"),
        headers={"HX-Request": "true"},
    )
    page = parse(response.data)
    assert text_of(page, "name-hint") == ""
    assert text_of(page, "table_name-feedback") == ""
    created = client.post(
        "/types/new", data=builder_form("日本語", "nihongo", action="create")
    )
    assert created.status_code == 303


def test_a_name_with_letters_gets_a_proposal_and_no_hint(client):
    response = client.post(
        "/types/new/check",
        data=builder_form("Stroop task"),
        headers={"HX-Request": "true"},
    )
    page = parse(response.data)
    assert text_of(page, "name-hint") == ""
    assert "stroop_task" in text_of(page, "table_name-hint")


def test_empty_name_while_typing_shows_no_table_name_error(client):
    response = client.post(
        "/types/new/check", data=builder_form(""), headers={"HX-Request": "true"}
    )
    page = parse(response.data)
    assert text_of(page, "table_name-feedback") == ""
    assert text_of(page, "name-hint") == ""


def test_empty_name_on_create_asks_for_a_table_or_type_name(client, db):
    response = client.post("/types/new", data=builder_form("", action="create"))
    assert response.status_code == 422
    message = text_of(parse(response.data), "table_name-feedback")
    assert message.startswith("Type a table name here, or a type name")


# ----------------------------------------------------------------------
# Standard columns: one list for the builder preview and the type page
# ----------------------------------------------------------------------


def test_standard_column_list_follows_the_registry():
    names = [name for name, _ in templating.standard_columns()]
    assert names == list(columns.STANDARD_COLUMNS)
    assert all(label for _, label in templating.standard_columns())


def _standard_rows(table) -> list[tuple[str, str]]:
    rows = []
    for tr in table.find("tbody").find_all("tr"):
        cells = tr.find_all("td")
        if cells[0].text in columns.STANDARD_COLUMNS:
            rows.append((cells[0].text, cells[1].text))
    return rows


def test_builder_preview_and_type_page_list_the_same_standard_columns(client, db):
    expected = templating.standard_columns()
    builder = parse(client.get("/types/new").data)
    assert _standard_rows(builder.find("table", class_="preview-table")) == expected
    xtype = make_type()
    page = parse(client.get(f"/types/{xtype.id}").data)
    columns_table = page.find("table", **{"aria-describedby": "columns"})
    assert _standard_rows(columns_table) == expected
    assert (
        "standard columns id , experiment_uuid , participant_id , created_at and "
        "updated_at ." in builder.text
    )

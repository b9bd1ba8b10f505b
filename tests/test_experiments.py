"""Experiments through the web UI: create, edit, list/search/filter, show, delete."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import datatables
from wave_web.models import Experiment
from wave_web.models import Tag


def experiments(db) -> list[Experiment]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(Experiment)))


def tag_names(db) -> list[str]:
    return sorted(db.session.scalars(sa.select(Tag.name)))


def field_error(response, name: str) -> str:
    """The message shown under a form field (fails when there is none)."""
    error = parse(response.data).find(id=f"{name}-error")
    assert error is not None, f"no error shown at {name}"
    return error.text


def listed(response) -> list[str]:
    """Descriptions in the experiments table, in page order."""
    page = parse(response.data)
    table = page.find("table")
    if table is None:
        return []
    return [td.text for td in table.find("tbody").find_all("td", class_="cell")]


def listed_row(response, description: str):
    page = parse(response.data)
    for tr in page.find("tbody").find_all("tr"):
        if tr.find("td", class_="cell").text == description:
            return tr
    raise AssertionError(f"{description!r} is not listed")


def new_form(xtype, **fields) -> dict:
    form = {"experiment_type_id": str(xtype.id), "description": "Spring pilot"}
    form.update(fields)
    return form


# ----------------------------------------------------------------------
# Create
# ----------------------------------------------------------------------


def test_create_redirects_to_the_experiment_and_stores_tags_and_data(client, db):
    xtype = make_type()
    form = new_form(
        xtype,
        description="  Spring pilot, lab B  ",
        new_tags="pilot, lab-b",
        additional_data='{"site": "Berlin", "session": 2}',
    )
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 303
    [experiment] = experiments(db)
    assert response.headers["Location"] == f"/experiments/{experiment.uuid}"
    assert experiment.experiment_type_id == xtype.id
    assert experiment.description == "Spring pilot, lab B"
    assert experiment.tags == ["pilot", "lab-b"]
    assert experiment.additional_data == {"site": "Berlin", "session": 2}
    assert tag_names(db) == ["lab-b", "pilot"]
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert "Spring pilot, lab B" in parse(page.data).find("h1").text


def test_create_with_empty_additional_data_stores_an_empty_object(client, db):
    xtype = make_type()
    form = new_form(xtype, additional_data=" ")
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 303
    [experiment] = experiments(db)
    assert experiment.additional_data == {}
    assert experiment.tags == []


@pytest.mark.parametrize("description", ["", "   \n  "])
def test_create_requires_a_description(client, db, description):
    xtype = make_type()
    form = new_form(xtype, description=description, new_tags="fresh")
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 422
    assert "Describe the experiment" in field_error(response, "description")
    textarea = parse(response.data).find("textarea", id="description")
    assert "is-invalid" in textarea.classes()
    assert experiments(db) == []
    assert tag_names(db) == []


@pytest.mark.parametrize("raw_type", ["", "999999", "abc"])
def test_create_refuses_a_missing_or_unknown_type(client, db, raw_type):
    make_type()
    response = client.post(
        "/experiments/new",
        data={
            "experiment_type_id": raw_type,
            "description": "Pilot",
            "new_tags": "fresh",
        },
    )
    assert response.status_code == 422
    assert "Choose the experiment type" in field_error(response, "experiment_type_id")
    assert experiments(db) == []
    assert tag_names(db) == []


def test_create_refuses_invalid_json_naming_line_and_column(client, db):
    xtype = make_type()
    form = new_form(xtype, additional_data='{\n  "site": "Berlin",\n  "session": }')
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 422
    message = field_error(response, "additional_data")
    assert "not valid JSON" in message
    assert "line 3" in message
    assert "column 14" in message
    assert experiments(db) == []
    # the user's text is kept for fixing
    assert '"session": }' in parse(response.data).find(id="additional_data").text


@pytest.mark.parametrize("text", ["[1]", '"text"', "null"])
def test_create_refuses_json_that_is_not_an_object(client, db, text):
    xtype = make_type()
    form = new_form(xtype, additional_data=text)
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 422
    assert "JSON object" in field_error(response, "additional_data")
    assert experiments(db) == []


def test_create_combines_chosen_and_new_tags(client, db):
    xtype = make_type()
    make_experiment(xtype, "Older", ["pilot", "lab-a"])
    form = new_form(xtype, tags=["lab-a"], new_tags="lab-b, online")
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 303
    created = db.session.scalars(
        sa.select(Experiment).where(Experiment.description == "Spring pilot")
    ).one()
    assert created.tags == ["lab-a", "lab-b", "online"]
    assert tag_names(db) == ["lab-a", "lab-b", "online", "pilot"]


def test_new_form_offers_existing_tags_as_checkboxes(client, db):
    xtype = make_type()
    make_experiment(xtype, "Older", ["pilot", "lab-a"])
    page = parse(client.get("/experiments/new").data)
    boxes = page.find_all("input", type="checkbox", name="tags")
    assert sorted(b.attrs["value"] for b in boxes) == ["lab-a", "pilot"]
    options = page.find("select", id="experiment_type_id").find_all("option")
    assert [o.attrs["value"] for o in options] == ["", str(xtype.id)]


def test_create_reuses_an_existing_tag_ignoring_case(client, db):
    xtype = make_type()
    make_experiment(xtype, "Older", ["pilot"])
    form = new_form(xtype, new_tags="Pilot, PILOT")
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 303
    created = db.session.scalars(
        sa.select(Experiment).where(Experiment.description == "Spring pilot")
    ).one()
    assert created.tags == ["pilot"]
    assert tag_names(db) == ["pilot"]


def test_create_refuses_a_tag_longer_than_50_characters(client, db):
    xtype = make_type()
    form = new_form(xtype, new_tags="ok, " + "x" * 51)
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 422
    assert "51 characters" in field_error(response, "new_tags")
    assert experiments(db) == []
    assert tag_names(db) == []


def test_create_accepts_a_tag_of_exactly_50_characters(client, db):
    xtype = make_type()
    response = client.post("/experiments/new", data=new_form(xtype, new_tags="x" * 50))
    assert response.status_code == 303
    assert experiments(db)[0].tags == ["x" * 50]


# ----------------------------------------------------------------------
# Edit
# ----------------------------------------------------------------------


def test_edit_form_shows_current_values(client, db):
    xtype = make_type()
    e = make_experiment(xtype, "Pilot", ["pilot"], {"site": "Berlin"})
    page = parse(client.get(f"/experiments/{e.uuid}/edit").data)
    assert page.find("textarea", id="description").text == "Pilot"
    assert '"site": "Berlin"' in page.find("textarea", id="additional_data").text
    checked = [
        b.attrs["value"]
        for b in page.find_all("input", name="tags")
        if "checked" in b.attrs
    ]
    assert checked == ["pilot"]
    assert "disabled" in page.find("input", id="experiment_type_id").attrs


def test_edit_changes_description_tags_and_data_but_keeps_the_type(client, db):
    xtype = make_type()
    other = make_type("Survey", "survey_data")
    e = make_experiment(xtype, "Pilot", ["pilot", "lab-a"], {"site": "Berlin"})
    response = client.post(
        f"/experiments/{e.uuid}/edit",
        data={
            "experiment_type_id": str(other.id),
            "description": "Main study",
            "tags": ["lab-a"],
            "new_tags": "main",
            "additional_data": '{"site": "Potsdam"}',
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"/experiments/{e.uuid}"
    [e] = experiments(db)
    assert e.experiment_type_id == xtype.id
    assert e.description == "Main study"
    assert e.tags == ["lab-a", "main"]
    assert e.additional_data == {"site": "Potsdam"}


def test_edit_with_invalid_json_changes_nothing(client, db):
    xtype = make_type()
    e = make_experiment(xtype, "Pilot", ["pilot"], {"site": "Berlin"})
    response = client.post(
        f"/experiments/{e.uuid}/edit",
        data={
            "description": "Changed",
            "new_tags": "fresh",
            "additional_data": "{oops",
        },
    )
    assert response.status_code == 422
    assert "line 1" in field_error(response, "additional_data")
    [e] = experiments(db)
    assert (e.description, e.tags, e.additional_data) == (
        "Pilot",
        ["pilot"],
        {"site": "Berlin"},
    )
    assert tag_names(db) == ["pilot"]


def test_edit_refuses_an_empty_description(client, db):
    xtype = make_type()
    e = make_experiment(xtype, "Pilot")
    response = client.post(f"/experiments/{e.uuid}/edit", data={"description": ""})
    assert response.status_code == 422
    assert field_error(response, "description")
    assert experiments(db)[0].description == "Pilot"


# ----------------------------------------------------------------------
# List
# ----------------------------------------------------------------------


def test_list_is_newest_first(client, db):
    xtype = make_type()
    for name in ("first", "second", "third"):
        make_experiment(xtype, name)
    assert listed(client.get("/experiments/")) == ["third", "second", "first"]


SEARCHES = {
    "pilot": ["PILOT again", "Pilot study"],
    "PiLoT": ["PILOT again", "Pilot study"],
    "100%": ["100% sure"],
    "%": ["100% sure"],
    "a_b": ["a_b test"],
    "_": ["a_b test"],
    "/": ["50/50 split"],
    "\\": ["back\\slash"],
    "nothing like this": [],
}


def test_list_searches_descriptions_literally_ignoring_case(client, db):
    xtype = make_type()
    for d in (
        "a_b test",
        "axb test",
        "100% sure",
        "1000 sure",
        "Pilot study",
        "PILOT again",
        "50/50 split",
        "back\\slash",
    ):
        make_experiment(xtype, d)
    for q, expected in SEARCHES.items():
        response = client.get("/experiments/", query_string={"q": q})
        assert response.status_code == 200
        assert sorted(listed(response)) == expected, q


def test_list_filters_by_type(client, db):
    first = make_type()
    second = make_type("Survey", "survey_data")
    make_experiment(first, "cognitive one")
    make_experiment(second, "survey one")
    make_experiment(second, "survey two")
    response = client.get(f"/experiments/?type_id={second.id}")
    assert response.status_code == 200
    assert listed(response) == ["survey two", "survey one"]
    selected = parse(response.data).find("option", value=str(second.id))
    assert "selected" in selected.attrs


def test_list_filters_by_tag(client, db):
    xtype = make_type()
    make_experiment(xtype, "both", ["pilot", "lab-b"])
    make_experiment(xtype, "lab only", ["lab-b"])
    make_experiment(xtype, "untagged")
    expectations = {
        "pilot": ["both"],
        "lab-b": ["lab only", "both"],
        "lab": [],  # a whole tag, never a substring of one
        "b": [],
    }
    for tag, expected in expectations.items():
        response = client.get("/experiments/", query_string={"tag": tag})
        assert response.status_code == 200
        assert listed(response) == expected, tag


def test_list_combines_search_type_and_tag(client, db):
    first = make_type()
    second = make_type("Survey", "survey_data")
    make_experiment(first, "pilot A", ["lab-b"])
    make_experiment(second, "pilot B", ["lab-b"])
    make_experiment(second, "pilot C", ["lab-a"])
    make_experiment(second, "main D", ["lab-b"])
    response = client.get(
        "/experiments/",
        query_string={"q": "pilot", "type_id": second.id, "tag": "lab-b"},
    )
    assert listed(response) == ["pilot B"]


def test_list_paginates_25_per_page(client, db):
    xtype = make_type()
    for i in range(27):
        make_experiment(xtype, f"exp {i:02d}")
    first = client.get("/experiments/")
    second = client.get("/experiments/?page=2")
    assert listed(first) == [f"exp {i:02d}" for i in range(26, 1, -1)]
    assert listed(second) == ["exp 01", "exp 00"]
    pager = parse(second.data).find("nav", **{"aria-label": "Pages"})
    assert "26–27 of 27" in pager.text
    next_link = parse(first.data).find("a", rel="next")
    assert next_link.attrs["href"] == "/experiments/?page=2"


def test_pagination_links_keep_the_filters(client, db):
    xtype = make_type()
    for i in range(26):
        make_experiment(xtype, f"pilot {i:02d}", ["pilot"])
    page = parse(client.get("/experiments/?q=pilot&tag=pilot").data)
    href = page.find("a", rel="next").attrs["href"]
    assert "q=pilot" in href
    assert "tag=pilot" in href
    assert "page=2" in href


def test_list_refuses_malformed_page_or_type_with_400(client, db):
    make_type()
    for query in (
        "page=abc",
        "page=0",
        "page=-1",
        "page=1.5",
        "type_id=x",
        "type_id=-1",
    ):
        response = client.get(f"/experiments/?{query}")
        assert response.status_code == 400, query
        page = parse(response.data)
        assert page.find("nav", class_="navbar") is not None
        assert "not valid" in page.text or "type id" in page.text, query


def test_page_beyond_the_last_shows_an_empty_list(client, db):
    xtype = make_type()
    make_experiment(xtype, "only")
    response = client.get("/experiments/?page=5")
    assert response.status_code == 200
    assert listed(response) == []


def test_list_shows_row_counts(client, db):
    xtype = make_type()
    other = make_type("Survey", "survey_data", columns=())
    with_rows = make_experiment(xtype, "with rows")
    make_rows(xtype, with_rows, [{"participant_id": f"P{i}"} for i in range(3)])
    make_experiment(xtype, "without rows")
    survey = make_experiment(other, "survey")
    make_rows(other, survey, [{"participant_id": "S1"}])
    response = client.get("/experiments/")

    def count(description):
        return listed_row(response, description).find("td", class_="num").text

    assert count("with rows") == "3"
    assert count("without rows") == "0"
    assert count("survey") == "1"


# ----------------------------------------------------------------------
# Show
# ----------------------------------------------------------------------


def test_experiment_page_shows_row_count_and_its_rows_in_the_grid(client, db):
    xtype = make_type()
    e = make_experiment(xtype, "Pilot", ["pilot"], {"site": "Berlin"})
    make_rows(
        xtype,
        e,
        [{"participant_id": f"P{i:02d}", "difficulty_level": i} for i in range(25)],
    )
    page = parse(client.get(f"/experiments/{e.uuid}").data)
    assert page.find(id="row-count").text == "25"
    body = page.find("tbody")
    # cells: select box, id, participant_id, …
    participants = [tr.find_all("td")[2].text for tr in body.find_all("tr")]
    assert participants == [f"P{i:02d}" for i in range(25)]
    assert "Rows 1–25 of 25" in " ".join(page.find(id="grid-range").text.split())
    assert "Berlin" in page.text


def test_experiment_page_without_rows_says_so(client, db):
    e = make_experiment(make_type(), "Pilot")
    page = parse(client.get(f"/experiments/{e.uuid}").data)
    assert page.find(id="row-count").text == "0"
    assert "No rows yet" in page.text


def test_malformed_uuid_is_404(client, db):
    for key in ("not-a-uuid", "12345", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"):
        for path in ("", "/edit", "/delete"):
            response = client.get(f"/experiments/{key}{path}")
            assert response.status_code == 404, (key, path)
            assert "no experiment" in parse(response.data).text


def test_unknown_uuid_is_404(client, db):
    make_experiment(make_type(), "Pilot")
    for path in ("", "/edit", "/delete"):
        response = client.get(f"/experiments/{uuid.uuid4()}{path}")
        assert response.status_code == 404, path
        assert "There is no experiment" in parse(response.data).text


def test_post_delete_of_unknown_uuid_is_404(client, db):
    response = client.post(f"/experiments/{uuid.uuid4()}/delete")
    assert response.status_code == 404


def test_html_in_description_is_escaped(client, db):
    xtype = make_type()
    e = make_experiment(xtype, "<script>alert(1)</script><b>bold</b>", ["<i>t</i>"])
    pages = ("", "/edit", "/delete")
    paths = [f"/experiments/{e.uuid}{p}" for p in pages] + ["/experiments/", "/"]
    for path in paths:
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert(1)" not in html, path
        assert "<b>bold</b>" not in html, path
        assert "<i>t</i>" not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get(
        f"/experiments/{e.uuid}"
    ).get_data(as_text=True)


# ----------------------------------------------------------------------
# Delete
# ----------------------------------------------------------------------


def test_delete_confirmation_states_the_row_count(client, db):
    xtype = make_type()
    e = make_experiment(xtype, "Pilot")
    make_rows(xtype, e, [{"participant_id": f"P{i}"} for i in range(3)])
    response = client.get(f"/experiments/{e.uuid}/delete")
    assert response.status_code == 200
    page = parse(response.data)
    assert "all its 3 rows" in page.text
    assert page.find("main").find("button").text == "Delete experiment and 3 rows"
    assert len(experiments(db)) == 1  # GET changes nothing


def test_delete_removes_the_experiment_and_only_its_rows(client, db):
    xtype = make_type()
    doomed = make_experiment(xtype, "Doomed")
    kept = make_experiment(xtype, "Kept")
    make_rows(xtype, doomed, [{"participant_id": f"D{i}"} for i in range(3)])
    make_rows(xtype, kept, [{"participant_id": f"K{i}"} for i in range(2)])
    doomed_uuid, kept_uuid = doomed.uuid, kept.uuid
    response = client.post(f"/experiments/{doomed_uuid}/delete")
    assert response.status_code == 303
    assert response.headers["Location"] == "/experiments/"
    assert [e.uuid for e in experiments(db)] == [kept_uuid]
    assert datatables.count_rows(xtype) == {kept_uuid: 2}
    assert (
        "Deleted the experiment and its 3 rows."
        in parse(client.get("/experiments/").data).text
    )


def test_tag_error_is_shown_at_the_tags_field_whatever_the_name(client, db):
    xtype = make_type()
    name = "additional data " + "x" * 40
    response = client.post("/experiments/new", data=new_form(xtype, new_tags=name))
    assert response.status_code == 422
    assert "56 characters" in field_error(response, "new_tags")
    assert parse(response.data).find(id="additional_data-error") is None


def test_create_refuses_a_description_over_10000_characters(client, db):
    xtype = make_type()
    form = new_form(xtype, description="x" * 10_001)
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 422
    assert "10,000 characters" in field_error(response, "description")
    assert experiments(db) == []

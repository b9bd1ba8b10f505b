"""Experiment form and lists: all errors at once, many tags, pages past the end."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import catalog
from wave_web.models import Experiment
from wave_web.models import Tag


def errors_shown(response) -> dict[str, str]:
    """Field name → the message shown under it."""
    page = parse(response.data)
    return {
        e.attrs["id"].removesuffix("-error"): e.text
        for e in page.find_all("div", class_="invalid-feedback")
        if e.attrs.get("id", "").endswith("-error")
    }


def nothing_written(db) -> bool:
    db.session.expire_all()
    experiments = db.session.scalar(sa.select(sa.func.count()).select_from(Experiment))
    tags = db.session.scalar(sa.select(sa.func.count()).select_from(Tag))
    return experiments == 0 and tags == 0


# ----------------------------------------------------------------------
# New experiment: every problem reported by one submit
# ----------------------------------------------------------------------


def test_empty_submit_reports_type_and_description_at_once(client, db):
    make_type()
    response = client.post("/experiments/new", data={})
    assert response.status_code == 422
    errors = errors_shown(response)
    assert set(errors) == {"experiment_type_id", "description"}
    assert "Choose the experiment type" in errors["experiment_type_id"]
    assert "Describe the experiment" in errors["description"]


def test_all_field_errors_are_reported_together(client, db):
    make_type()
    form = {
        "experiment_type_id": "",
        "description": " ",
        "new_tags": "ok, " + "x" * 51,
        "additional_data": "{nope",
    }
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 422
    errors = errors_shown(response)
    assert set(errors) == {
        "experiment_type_id",
        "description",
        "new_tags",
        "additional_data",
    }
    assert "51 characters" in errors["new_tags"]
    assert "not valid JSON" in errors["additional_data"]
    assert nothing_written(db)


def test_valid_type_with_bad_description_and_data_reports_both(client, db):
    xtype = make_type()
    form = {
        "experiment_type_id": str(xtype.id),
        "description": "",
        "additional_data": "[1, 2]",
    }
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 422
    assert set(errors_shown(response)) == {"description", "additional_data"}
    assert nothing_written(db)


# ----------------------------------------------------------------------
# Many tags: checkboxes up to 30, a list box beyond
# ----------------------------------------------------------------------


def _make_tags(count: int) -> list[str]:
    names = [f"tag-{i:03d}" for i in range(count)]
    for name in names:
        catalog.create_tag(name)
    return names


def test_up_to_30_tags_are_checkboxes(client, db):
    make_type()
    _make_tags(30)
    page = parse(client.get("/experiments/new").data)
    assert len(page.find_all("input", type="checkbox", name="tags")) == 30
    assert page.find("select", name="tags") is None


def test_more_than_30_tags_are_a_multi_select_with_suggestions(client, db):
    make_type()
    names = _make_tags(120)
    page = parse(client.get("/experiments/new").data)
    assert page.find_all("input", type="checkbox", name="tags") == []
    select = page.find("select", name="tags")
    assert "multiple" in select.attrs
    assert [o.attrs["value"] for o in select.find_all("option")] == names
    assert page.find("label", **{"for": select.attrs["id"]}) is not None
    datalist = page.find("datalist", id="tag-names")
    assert len(datalist.find_all("option")) == 120
    assert page.find("input", id="new_tags").attrs["list"] == "tag-names"


def test_multi_select_tags_are_stored_and_kept_on_errors(client, db):
    xtype = make_type()
    _make_tags(40)
    form = {
        "experiment_type_id": str(xtype.id),
        "description": "",
        "tags": ["tag-003", "tag-039"],
    }
    response = client.post("/experiments/new", data=form)
    assert response.status_code == 422
    select = parse(response.data).find("select", name="tags")
    chosen = [
        o.attrs["value"] for o in select.find_all("option") if "selected" in o.attrs
    ]
    assert chosen == ["tag-003", "tag-039"]
    form["description"] = "Many tags"
    assert client.post("/experiments/new", data=form).status_code == 303
    db.session.expire_all()
    created = db.session.scalars(sa.select(Experiment)).one()
    assert created.tags == ["tag-003", "tag-039"]


def test_edit_form_with_many_tags_preselects_the_experiments_tags(client, db):
    xtype = make_type()
    _make_tags(35)
    experiment = make_experiment(xtype, "Tagged", ["tag-010", "tag-020"])
    page = parse(client.get(f"/experiments/{experiment.uuid}/edit").data)
    options = page.find("select", name="tags").find_all("option")
    assert [o.attrs["value"] for o in options if "selected" in o.attrs] == [
        "tag-010",
        "tag-020",
    ]


# ----------------------------------------------------------------------
# A page number past the end
# ----------------------------------------------------------------------


def _past_the_end(response):
    page = parse(response.data)
    state = page.find("div", class_="empty-state")
    assert state is not None
    return state


@pytest.mark.parametrize("count", [1, 27])
def test_experiments_page_past_the_end_links_to_the_last_page(client, db, count):
    xtype = make_type()
    for i in range(count):
        make_experiment(xtype, f"exp {i}")
    response = client.get("/experiments/?page=9")
    assert response.status_code == 200
    state = _past_the_end(response)
    assert state.find("h2").text == "This page is past the end"
    assert "No experiments yet" not in parse(response.data).text
    last = 1 if count == 1 else 2
    assert state.find("a").attrs["href"] == f"/experiments/?page={last}"


def test_filtered_experiments_page_past_the_end_keeps_the_filters(client, db):
    xtype = make_type()
    make_experiment(xtype, "pilot A", ["pilot"])
    response = client.get("/experiments/?q=pilot&tag=pilot&page=3")
    state = _past_the_end(response)
    assert state.find("h2").text == "This page is past the end"
    href = state.find("a").attrs["href"]
    assert "page=1" in href
    assert "q=pilot" in href
    assert "tag=pilot" in href


def test_experiments_empty_list_still_says_no_experiments_yet(client, db):
    make_type()
    response = client.get("/experiments/?page=3")
    assert _past_the_end(response).find("h2").text == "No experiments yet"


def test_tags_page_past_the_end_links_to_the_last_page(client, db):
    _make_tags(3)
    response = client.get("/tags/?page=4")
    assert response.status_code == 200
    state = _past_the_end(response)
    assert state.find("h2").text == "This page is past the end"
    assert state.find("a").attrs["href"] == "/tags/?page=1"
    searched = _past_the_end(client.get("/tags/?q=tag&page=2"))
    assert "q=tag" in searched.find("a").attrs["href"]


def test_tags_empty_list_still_says_no_tags_yet(client, db):
    response = client.get("/tags/?page=2")
    assert _past_the_end(response).find("h2").text == "No tags yet"

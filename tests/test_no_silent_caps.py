"""Every limit on what a user sends is refused with a message that states it.

Nothing is cut short without a word: not the filters of a view, the search texts of
the lists, the audit log's filter fields, the rows selected for deletion, nor a form
or upload over the server's size limits. (Type columns: test_type_column_limit.py.)
"""

from __future__ import annotations

import pytest
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import columns
from wave_web import datatables
from wave_web import params
from wave_web import queries
from wave_web.audit import MAX_FILTER_TEXT
from wave_web.extensions import db as _db
from wave_web.models import Experiment
from wave_web.models import Tag
from werkzeug.datastructures import MultiDict


@pytest.fixture
def experiment(db):
    xtype = make_type()
    experiment = make_experiment(xtype, "Pilot " + "a" * params.MAX_SEARCH)
    make_rows(xtype, experiment, [{"participant_id": f"P{i}"} for i in range(3)])
    return experiment


def filters(count: int) -> str:
    return "&".join(["participant_id__startswith=P"] * count)


# -- filters per view ---------------------------------------------------------------


@pytest.mark.parametrize("count", [queries.MAX_FILTERS + 1, 1500])
def test_grid_refuses_a_view_over_the_filter_limit(client, experiment, count):
    response = client.get(f"/experiments/{experiment.uuid}?{filters(count)}")
    assert response.status_code == 400
    text = parse(response.data).text
    assert f"at most {queries.MAX_FILTERS} filters" in text
    assert f"this one has {count:,}" in text


def test_grid_at_the_filter_limit_applies_every_filter_and_says_it_is_full(
    client, experiment
):
    many = "&".join(["participant_id__startswith=P"] * (queries.MAX_FILTERS - 1))
    url = f"/experiments/{experiment.uuid}?{many}&participant_id__exact=P2"
    response = client.get(url)
    assert response.status_code == 200
    page = parse(response.data)
    cells = {td.text for td in page.find_all("td")}
    assert "P2" in cells and not {"P0", "P1"} & cells  # the 50th filter applied
    form = page.find("form", class_="filter-form")
    add = next(b for b in form.find_all("button") if "Add filter" in b.text)
    assert "disabled" in add.attrs
    assert f"at most {queries.MAX_FILTERS} filters" in page.find(id="filter-limit").text


def test_grid_under_the_filter_limit_offers_to_add_a_filter(client, experiment):
    page = parse(client.get(f"/experiments/{experiment.uuid}?{filters(2)}").data)
    assert page.find(id="filter-limit") is None


# -- rows per page ------------------------------------------------------------------


def test_grid_refuses_a_page_size_it_does_not_offer_and_lists_the_sizes(
    client, experiment
):
    response = client.get(f"/experiments/{experiment.uuid}?_size=10000")
    assert response.status_code == 400
    assert "must be one of 25, 50, 100, 500" in parse(response.data).text


# -- search texts of the lists ------------------------------------------------------


def test_experiment_search_over_the_limit_is_refused_not_cut(client, experiment):
    # cut to its first 200 characters, this text would find the experiment
    response = client.get("/experiments/", query_string={"q": "a" * 250})
    assert response.status_code == 400
    text = parse(response.data).text
    assert f"at most {params.MAX_SEARCH} characters; this one has 250" in text


def test_experiment_search_states_its_limit_on_the_field(client, experiment):
    page = parse(client.get("/experiments/").data)
    assert page.find(id="q").attrs["maxlength"] == str(params.MAX_SEARCH)
    found = client.get("/experiments/", query_string={"q": "a" * params.MAX_SEARCH})
    assert found.status_code == 200
    assert "Pilot" in parse(found.data).text


def test_experiment_tag_filter_over_the_limit_is_refused(client, db):
    response = client.get("/experiments/", query_string={"tag": "t" * 101})
    assert response.status_code == 400
    assert f"at most {params.MAX_TAG_FILTER} characters" in parse(response.data).text


def test_tag_search_over_the_limit_is_refused_and_stated_on_the_field(client, db):
    response = client.get("/tags/", query_string={"q": "t" * 101})
    assert response.status_code == 400
    assert f"at most {params.MAX_TAG_FILTER} characters" in parse(response.data).text
    page = parse(client.get("/tags/").data)
    assert page.find(id="q").attrs["maxlength"] == str(params.MAX_TAG_FILTER)


@pytest.mark.parametrize("field", ["actor", "object_id"])
def test_audit_filter_text_over_the_limit_is_refused_next_to_the_field(
    client, db, field
):
    response = client.get("/admin/audit", query_string={field: "x" * 300})
    assert response.status_code == 400
    page = parse(response.data)
    assert f"at most {MAX_FILTER_TEXT} characters; this one has 300" in page.text
    assert "is-invalid" in page.find(id=field).attrs["class"]


# -- rows selected for deletion -----------------------------------------------------


def test_deleting_more_selected_rows_than_the_limit_is_refused(client, experiment):
    ids = MultiDict(("ids", str(i)) for i in range(1, datatables.MAX_DELETE_IDS + 2))
    response = client.post(f"/experiments/{experiment.uuid}/rows/delete", data=ids)
    assert response.status_code == 400
    text = parse(response.data).text
    assert f"At most {datatables.MAX_DELETE_IDS} rows can be selected" in text
    assert experiment.row_count == 3


# -- forms and uploads over the server's limits -------------------------------------


def test_a_form_over_the_text_limit_gets_a_413_that_states_it(app, client, db):
    limit_mb = app.config["MAX_FORM_MEMORY_SIZE"] // (1024 * 1024)
    response = client.post("/tags/", data={"name": "x" * (limit_mb * 1024 * 1024 + 1)})
    assert response.status_code == 413
    assert f"a form holds at most {limit_mb} MB" in parse(response.data).text


def test_a_multipart_form_over_the_field_limit_gets_a_413_that_states_it(client, db):
    fields = {f"f{i}": "1" for i in range(1001)}
    response = client.post("/tags/", data=fields, content_type="multipart/form-data")
    assert response.status_code == 413
    assert "a form holds at most 1,000 fields" in parse(response.data).text


def test_an_upload_over_the_size_limit_gets_a_413_that_states_it(app, client, db):
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    response = client.post("/tags/", data={"name": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413
    text = parse(response.data).text
    assert "the server accepts at most 1 MB" in text
    assert "This upload is 2 MB" in text


# -- tags per experiment ------------------------------------------------------------


def experiment_form(xtype, tags: list[str]) -> dict[str, str]:
    return {
        "experiment_type_id": str(xtype.id),
        "description": "Many tags",
        "new_tags": ", ".join(tags),
        "additional_data": "",
    }


def test_experiment_form_refuses_more_tags_than_the_limit(client, db):
    xtype = make_type()
    tags = [f"t{i}" for i in range(columns.MAX_TAGS + 1)]
    response = client.post("/experiments/new", data=experiment_form(xtype, tags))
    assert response.status_code == 422
    page = parse(response.data)
    assert "is-invalid" in page.find(id="new_tags").attrs["class"]
    assert f"at most {columns.MAX_TAGS} tags; this one has 11" in page.text
    assert _db.session.query(Experiment).count() == 0
    assert _db.session.query(Tag).count() == 0  # refused before any tag is created


def test_experiment_form_keeps_tags_up_to_the_limit_and_states_it(client, db):
    xtype = make_type()
    page = parse(client.get(f"/experiments/new?type_id={xtype.id}").data)
    assert f"Up to {columns.MAX_TAGS} tags" in page.find(id="new_tags-help").text
    tags = [f"t{i}" for i in range(columns.MAX_TAGS)] + ["T0"]  # a repeat counts once
    response = client.post("/experiments/new", data=experiment_form(xtype, tags))
    assert response.status_code == 303
    assert len(_db.session.query(Experiment).one().tags) == columns.MAX_TAGS


def test_experiment_edit_refuses_more_tags_than_the_limit(client, db):
    xtype = make_type()
    experiment = make_experiment(xtype, "Tagged", ["a"])
    tags = [f"t{i}" for i in range(columns.MAX_TAGS + 1)]
    form = experiment_form(xtype, tags)
    response = client.post(f"/experiments/{experiment.uuid}/edit", data=form)
    assert response.status_code == 422
    assert f"at most {columns.MAX_TAGS} tags" in parse(response.data).text
    _db.session.expire_all()
    assert _db.session.get(Experiment, experiment.uuid).tags == ["a"]

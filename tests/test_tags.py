"""Tags through the web UI: list with usage, create, rename, delete, audit, paging."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import catalog
from wave_web.models import AuditEntry
from wave_web.models import Experiment
from wave_web.models import Tag


def tags(db) -> dict[str, str | None]:
    """Name → description of every tag in the database."""
    db.session.expire_all()
    return {t.name: t.description for t in db.session.scalars(sa.select(Tag))}


def tags_of(db) -> dict[str, list[str]]:
    """Experiment description → its tag array, read back from the database."""
    db.session.expire_all()
    return {e.description: e.tags for e in db.session.scalars(sa.select(Experiment))}


def name_error(response) -> str:
    error = parse(response.data).find(id="name-error")
    assert error is not None, "no error shown at the name field"
    return error.text


def listed_tags(response) -> dict[str, str]:
    """Tag name → usage count as shown in the tags table."""
    body = parse(response.data).find("tbody")
    if body is None:
        return {}
    rows = body.find_all("tr")
    return {tr.find("td").text: tr.find("td", class_="num").text for tr in rows}


@pytest.fixture
def tagged(db):
    """Three experiments over two types sharing the tags pilot and lab-b."""
    first = make_type()
    second = make_type("Survey", "survey_data")
    make_experiment(first, "both", ["pilot", "lab-b"])
    make_experiment(second, "pilot only", ["pilot"])
    make_experiment(first, "lab only", ["lab-b"])
    catalog.create_tag("unused", "never used")
    return {t.name: t for t in db.session.scalars(sa.select(Tag))}


def test_list_shows_usage_counts(client, tagged):
    response = client.get("/tags/")
    assert response.status_code == 200
    assert listed_tags(response) == {"lab-b": "2", "pilot": "2", "unused": "0"}


def test_list_is_sorted_ignoring_case(client, db):
    for name in ("beta", "Alpha", "gamma"):
        catalog.create_tag(name)
    assert list(listed_tags(client.get("/tags/"))) == ["Alpha", "beta", "gamma"]


def test_empty_list_invites_to_create_a_tag(client, db):
    page = parse(client.get("/tags/").data)
    assert "No tags yet" in page.text


# ---------------------------------------------------------------------------
# Create
# ---------------------------------------------------------------------------


def test_create_trims_and_collapses_whitespace(client, db):
    form = {"name": "  lab \t  B  ", "description": "  Lab B, Berlin  "}
    response = client.post("/tags/", data=form)
    assert response.status_code == 303
    assert response.headers["Location"] == "/tags/"
    assert tags(db) == {"lab B": "Lab B, Berlin"}
    assert "Created the tag “lab B”." in parse(client.get("/tags/").data).text


def test_create_without_description_stores_null(client, db):
    assert client.post("/tags/", data={"name": "pilot"}).status_code == 303
    assert tags(db) == {"pilot": None}


@pytest.mark.parametrize("name", ["pilot", "PILOT", " Pilot "])
def test_create_refuses_a_duplicate_ignoring_case(client, db, name):
    catalog.create_tag("Pilot")
    response = client.post("/tags/", data={"name": name})
    assert response.status_code == 422
    assert "already exists" in name_error(response)
    assert "Pilot" in name_error(response)
    assert tags(db) == {"Pilot": None}
    # the form keeps what was typed
    assert parse(response.data).find("input", id="name").attrs["value"] == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "cannot be empty"),
        ("   ", "cannot be empty"),
        ("x" * 51, "limited to 50 characters"),
        ("pilot, lab-b", "comma"),
        ("tab\x00null", "control characters"),
    ],
)
def test_create_refuses_bad_names(client, db, name, message):
    response = client.post("/tags/", data={"name": name})
    assert response.status_code == 422
    assert message in name_error(response)
    assert tags(db) == {}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == 0


def test_create_accepts_exactly_50_characters(client, db):
    assert client.post("/tags/", data={"name": "x" * 50}).status_code == 303
    assert list(tags(db)) == ["x" * 50]


# ---------------------------------------------------------------------------
# Rename / describe
# ---------------------------------------------------------------------------


def test_edit_form_shows_name_and_usage(client, tagged):
    page = parse(client.get(f"/tags/{tagged['pilot'].id}/edit").data)
    assert page.find("input", id="name").attrs["value"] == "pilot"
    assert "updates the 2 experiments" in page.find(id="name-help").text


def test_rename_updates_every_experiment_and_keeps_other_tags(client, db, tagged):
    response = client.post(
        f"/tags/{tagged['pilot'].id}/edit",
        data={"name": " pilot  2026 ", "description": "first wave"},
    )
    assert response.status_code == 303
    assert tags_of(db) == {
        "both": ["pilot 2026", "lab-b"],
        "pilot only": ["pilot 2026"],
        "lab only": ["lab-b"],
    }
    assert tags(db) == {
        "pilot 2026": "first wave",
        "lab-b": None,
        "unused": "never used",
    }
    assert "updated 2 experiments" in parse(client.get("/tags/").data).text


def test_renamed_tag_is_found_by_the_experiment_filter(client, db, tagged):
    client.post(f"/tags/{tagged['lab-b'].id}/edit", data={"name": "lab-c"})
    page = parse(client.get("/experiments/?tag=lab-c").data)
    listed = [td.text for td in page.find("tbody").find_all("td", class_="cell")]
    assert sorted(listed) == ["both", "lab only"]
    assert parse(client.get("/experiments/?tag=lab-b").data).find("tbody") is None


def test_rename_changing_only_case_is_allowed(client, db, tagged):
    response = client.post(f"/tags/{tagged['pilot'].id}/edit", data={"name": "Pilot"})
    assert response.status_code == 303
    assert tags_of(db)["both"] == ["Pilot", "lab-b"]


@pytest.mark.parametrize("name", ["lab-b", "LAB-B", "Unused"])
def test_rename_to_an_existing_name_is_refused(client, db, tagged, name):
    response = client.post(f"/tags/{tagged['pilot'].id}/edit", data={"name": name})
    assert response.status_code == 422
    assert "already exists" in name_error(response)
    assert sorted(tags(db)) == ["lab-b", "pilot", "unused"]
    assert tags_of(db)["both"] == ["pilot", "lab-b"]


def test_rename_to_a_bad_name_is_refused(client, db, tagged):
    response = client.post(f"/tags/{tagged['pilot'].id}/edit", data={"name": "a,b"})
    assert response.status_code == 422
    assert "comma" in name_error(response)
    assert tags_of(db)["pilot only"] == ["pilot"]


def test_unknown_tag_is_404(client, db):
    assert client.get("/tags/999/edit").status_code == 404
    assert client.get("/tags/999/delete").status_code == 404
    assert client.post("/tags/999/delete").status_code == 404


# ---------------------------------------------------------------------------
# Delete
# ---------------------------------------------------------------------------


def test_delete_confirmation_shows_usage_count(client, db, tagged):
    response = client.get(f"/tags/{tagged['lab-b'].id}/delete")
    assert response.status_code == 200
    page = parse(response.data)
    assert "It will be removed from 2 experiments." in page.text
    assert "lab-b" in tags(db)  # GET changes nothing


def test_delete_removes_the_tag_from_experiments(client, db, tagged):
    response = client.post(f"/tags/{tagged['pilot'].id}/delete")
    assert response.status_code == 303
    assert response.headers["Location"] == "/tags/"
    assert sorted(tags(db)) == ["lab-b", "unused"]
    assert tags_of(db) == {"both": ["lab-b"], "pilot only": [], "lab only": ["lab-b"]}
    assert "removed it from 2 experiments" in parse(client.get("/tags/").data).text


# ---------------------------------------------------------------------------
# Audit
# ---------------------------------------------------------------------------


def audit(db, tag_id: int) -> list[AuditEntry]:
    db.session.expire_all()
    stmt = (
        sa.select(AuditEntry)
        .where(AuditEntry.object_type == "tag", AuditEntry.object_id == str(tag_id))
        .order_by(AuditEntry.id)
    )
    return list(db.session.scalars(stmt))


def test_create_rename_and_delete_are_audited(client, db):
    client.post("/tags/", data={"name": "pilot"})
    tag_id = db.session.scalars(sa.select(Tag.id)).one()
    client.post(f"/tags/{tag_id}/edit", data={"name": "main", "description": "d"})
    client.post(f"/tags/{tag_id}/delete")
    entries = audit(db, tag_id)
    assert [e.action for e in entries] == ["tag.create", "tag.update", "tag.delete"]
    assert entries[1].details["before"] == {"name": "pilot", "description": None}
    assert entries[1].details["after"] == {"name": "main", "description": "d"}
    assert entries[2].details["before"]["name"] == "main"


def test_saving_an_unchanged_tag_writes_no_audit_entry(client, db):
    tag = catalog.create_tag("pilot")
    client.post(f"/tags/{tag.id}/edit", data={"name": "pilot", "description": ""})
    assert [e.action for e in audit(db, tag.id)] == ["tag.create"]


def test_tag_created_with_an_experiment_is_audited(client, db):
    xtype = make_type()
    form = {"experiment_type_id": str(xtype.id), "description": "P", "new_tags": "new"}
    assert client.post("/experiments/new", data=form).status_code == 303
    tag_id = db.session.scalars(sa.select(Tag.id)).one()
    assert [e.action for e in audit(db, tag_id)] == ["tag.create"]


# ---------------------------------------------------------------------------
# Paging and search
# ---------------------------------------------------------------------------


def test_list_paginates_50_per_page(client, db):
    for i in range(52):
        catalog.create_tag(f"tag-{i:02d}")
    first = client.get("/tags/")
    second = client.get("/tags/?page=2")
    assert second.status_code == 200
    assert list(listed_tags(first)) == [f"tag-{i:02d}" for i in range(50)]
    assert list(listed_tags(second)) == ["tag-50", "tag-51"]
    assert parse(first.data).find("a", rel="next").attrs["href"] == "/tags/?page=2"


@pytest.mark.parametrize("page", ["abc", "0", "-2"])
def test_malformed_page_is_400(client, db, page):
    assert client.get(f"/tags/?page={page}").status_code == 400


def test_search_is_literal_and_ignores_case(client, db):
    for name in ("Pilot", "co-pilot", "100%", "a_b", "axb"):
        catalog.create_tag(name)
    expectations = {"PILOT": ["co-pilot", "Pilot"], "%": ["100%"], "_": ["a_b"]}
    for q, expected in expectations.items():
        response = client.get("/tags/", query_string={"q": q})
        assert sorted(listed_tags(response), key=str.lower) == expected, q

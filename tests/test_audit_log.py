"""The audit log page: choosers of actions and people; entries link to objects."""

from __future__ import annotations

import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import accounts
from wave_web import catalog
from wave_web import datatables
from wave_web import models
from wave_web.extensions import db as _db
from wave_web.models import AuditEntry


def _page(client, query: str = ""):
    response = client.get("/admin/audit" + query)
    return response, parse(response.data)


def _entries(doc) -> list:
    return doc.find("tbody").find_all("tr") if doc.find("tbody") else []


def test_action_chooser_groups_readable_labels(app):
    _, doc = _page(app.test_client())
    chooser = doc.find("select", id="action")
    groups = {g.attrs["label"]: g for g in chooser.find_all("optgroup")}
    assert {"Rows", "Types", "Users", "API keys", "Tags"} <= groups.keys()
    rows = {o.attrs["value"]: o.text for o in groups["Rows"].find_all("option")}
    assert rows["rows.import"] == "Rows · imported"
    assert rows["row"] == "Rows · anything"


def test_action_chooser_filters_by_action_and_by_group(app):
    client = app.test_client()
    client.post("/tags/", data={"name": "pilot"})
    client.post("/tags/1/edit", data={"name": "pilot-b", "description": ""})
    _, group = _page(client, "?action=tag")
    assert len(_entries(group)) == 2
    _, one = _page(client, "?action=tag.update")
    assert [e.find("td", class_="audit-action").text for e in _entries(one)] == [
        "Tags · edited"
    ]
    chosen = one.find("select", id="action").find("option", selected="")
    assert chosen.attrs["value"] == "tag.update"


def test_unknown_action_or_object_type_is_a_clear_400(app):
    client = app.test_client()
    response, doc = _page(client, "?action=import")
    assert response.status_code == 400
    assert "“import” is not an action of the log" in doc.find("main").text
    assert "is-invalid" in doc.find("select", id="action").classes()
    response, doc = _page(client, "?object_type=table")
    assert response.status_code == 400
    assert "not a kind of object" in doc.find("main").text
    assert client.get("/admin/audit.csv?action=import").status_code == 400


def test_who_chooser_lists_accounts_and_keys_and_filters(app):
    client = app.test_client()
    with app.app_context():
        key, _ = accounts.create_key("Lab PC", "researcher", None, None)
        actor = f"API key {key.prefix} “Lab PC” (researcher)"
        _db.session.add(
            AuditEntry(
                actor=actor,
                action="rows.import",
                object_type="experiment",
                object_id="x",
                summary="by key",
            )
        )
        _db.session.commit()
    client.post("/tags/", data={"name": "pilot"})
    _, doc = _page(client)
    who = doc.find("select", id="actor")
    groups = {g.attrs["label"]: g for g in who.find_all("optgroup")}
    assert "admin@example.org" in groups["Accounts"].text
    assert [o.attrs["value"] for o in groups["API keys"].find_all("option")] == [actor]
    response = client.get("/admin/audit", query_string={"actor": actor})
    entries = _entries(parse(response.data))
    assert [e.find("td", class_="audit-summary").text for e in entries] == ["by key"]


def _objects_of_every_kind(app):
    """A tag, a type, an experiment with two rows, a user; one row deleted."""
    with app.app_context():
        xtype = make_type()
        experiment = make_experiment(xtype, "Stroop pilot")
        kept = datatables.insert_row(xtype, experiment.uuid, {"participant_id": "p1"})
        gone = datatables.insert_row(xtype, experiment.uuid, {"participant_id": "p2"})
        _db.session.commit()
        datatables.delete_rows(xtype, experiment.uuid, [gone["id"]])
        _db.session.commit()
        tag = catalog.create_tag("pilot")
        _db.session.commit()
        user = accounts.create_user("ada@example.org", "a good long password", "viewer")
        _db.session.commit()
        return xtype.id, str(experiment.uuid), kept["id"], gone["id"], tag.id, user.id


def test_objects_link_to_the_object_or_say_deleted(app):
    client = app.test_client()
    type_id, experiment_uuid, kept, gone, tag_id, user_id = _objects_of_every_kind(app)
    _, doc = _page(client)
    links = {a.attrs["href"]: a.text for a in doc.find("tbody").find_all("a")}
    assert links[f"/types/{type_id}"] == "Cognitive test"
    assert links[f"/experiments/{experiment_uuid}"] == "Stroop pilot"
    assert links[f"/experiments/{experiment_uuid}/rows/{kept}"] == (
        f"row {kept} of Cognitive test"
    )
    assert f"/experiments/{experiment_uuid}/rows/{gone}" not in links
    assert links[f"/tags/{tag_id}/edit"] == "pilot"
    assert links[f"/admin/users/{user_id}"] == "ada@example.org"
    deleted = [
        e for e in _entries(doc) if e.find("span", class_="audit-deleted") is not None
    ]
    assert [e.find("td", class_="audit-action").text for e in deleted] == [
        "Rows · row deleted",  # newest first
        "Rows · row added",
    ]
    with app.app_context():
        catalog.delete_tag(_db.session.get(catalog.Tag, tag_id))
        _db.session.commit()
    _, doc = _page(client, f"?object_type=tag&object_id={tag_id}")
    assert all(e.find("span", class_="audit-deleted") for e in _entries(doc))
    assert doc.find("tbody").find("a") is None


def _statements(app, client, query: str = "") -> int:
    count = 0

    def counted(*_args):
        nonlocal count
        count += 1

    with app.app_context():
        engine = _db.engine
    sa.event.listen(engine, "before_cursor_execute", counted)
    try:
        assert client.get("/admin/audit" + query).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", counted)
    return count


def test_query_count_does_not_grow_with_the_entries_of_a_page(app):
    client = app.test_client()
    type_id = _objects_of_every_kind(app)[0]
    _statements(app, client)  # the type's table is reflected once, then cached
    few = _statements(app, client)
    with app.app_context():  # ten more objects of each kind, rows of the same type
        xtype = _db.session.get(models.ExperimentType, type_id)
        for i in range(10):
            experiment = make_experiment(xtype, f"More {i}")
            row = datatables.insert_row(xtype, experiment.uuid, {"participant_id": "p"})
            _db.session.commit()
            datatables.delete_rows(xtype, experiment.uuid, [row["id"]])
            catalog.create_tag(f"tag-{i}")
            user = models.User(
                email=f"u{i}@example.org", password_hash="x", role="viewer"
            )
            _db.session.add(user)
            _db.session.flush()
            models.record("user.create", "user", user.id, "Created a user")
            _db.session.commit()
        assert _db.session.query(AuditEntry).count() > 40
    assert _statements(app, client) <= few  # some kinds are off the page now

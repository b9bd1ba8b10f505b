"""Issue 12 item 12: a column named like a form's own field never takes its value.

Row values are posted as `row.<column>`; the forms' own fields (csrf_token,
expected_updated_at, expected, back, ids; `action` is a reserved word no column may
have) keep their names. Each form is filled as a browser would (every field of the
page, CSRF on), on the add, edit and inline-edit (htmx) forms.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_type
from tests.htmlparse import parse
from tests.test_rows_edit import browser_values
from wave_web.columns import ColumnDef
from wave_web.columns import validate_name
from wave_web.extensions import db

FORM_FIELDS = ("csrf_token", "expected_updated_at", "expected", "back", "ids")
HX = {"HX-Request": "true"}


@pytest.fixture
def collide(csrf_app):
    with csrf_app.app_context():
        xtype = make_type(
            "Collide", "collide", [ColumnDef(n, "STRING") for n in FORM_FIELDS]
        )
        experiment = make_experiment(xtype)
        db.session.commit()
        return f"/experiments/{experiment.uuid}/rows"


def _stored(app) -> list[dict]:
    with app.app_context():
        rows = db.session.execute(sa.text("SELECT * FROM collide ORDER BY id"))
        return [dict(r._mapping) for r in rows]


def _typed(tag: str) -> dict[str, str]:
    return {f"row.{n}": f"{tag} {n}" for n in FORM_FIELDS}


def test_action_cannot_be_a_column_name():
    with pytest.raises(Exception, match="reserved word"):
        validate_name("action")


def test_add_row_stores_what_was_typed_not_the_forms_own_fields(csrf_app, collide):
    client = csrf_app.test_client()
    page = parse(client.get(f"{collide}/new").data)
    form = browser_values(page.find("main").find("form", method="post"))
    assert form["csrf_token"]  # the real token is on the page, under its own name
    form.update(_typed("new"), **{"row.participant_id": "p1", "action": "add"})
    assert client.post(f"{collide}/new", data=form).status_code == 303
    (row,) = _stored(csrf_app)
    assert {n: row[n] for n in FORM_FIELDS} == {n: f"new {n}" for n in FORM_FIELDS}


def test_edit_and_inline_edit_store_what_was_typed(csrf_app, collide):
    client = csrf_app.test_client()
    page = parse(client.get(f"{collide}/new").data)
    form = browser_values(page.find("main").find("form", method="post"))
    form.update(_typed("new"), **{"row.participant_id": "p1"})
    assert client.post(f"{collide}/new", data=form).status_code == 303
    row_id = _stored(csrf_app)[0]["id"]

    page = parse(client.get(f"{collide}/{row_id}/edit").data)
    form = browser_values(page.find("main").find("form", method="post"))
    assert form["expected_updated_at"] and form["row.expected_updated_at"] == (
        "new expected_updated_at"
    )
    form.update(_typed("edited"))
    assert client.post(f"{collide}/{row_id}", data=form).status_code == 303
    (row,) = _stored(csrf_app)
    assert {n: row[n] for n in FORM_FIELDS} == {n: f"edited {n}" for n in FORM_FIELDS}

    fragment = parse(client.get(f"{collide}/{row_id}/edit", headers=HX).data)
    form = browser_values(fragment)
    form.update(_typed("inline"))
    response = client.post(f"{collide}/{row_id}", data=form, headers=HX)
    assert response.status_code == 200
    (row,) = _stored(csrf_app)
    assert {n: row[n] for n in FORM_FIELDS} == {n: f"inline {n}" for n in FORM_FIELDS}


def test_a_bare_column_name_in_a_post_is_not_a_row_value(csrf_app, collide):
    """A value posted under the bare name (an old form, a script) is ignored."""
    client = csrf_app.test_client()
    page = parse(client.get(f"{collide}/new").data)
    form = browser_values(page.find("main").find("form", method="post"))
    form.update({"row.participant_id": "p1", "back": "not a value"})
    assert client.post(f"{collide}/new", data=form).status_code == 303
    (row,) = _stored(csrf_app)
    assert row["back"] is None and row["csrf_token"] is None

"""Row editing on the experiment grid: parse, add, edit (optimistic), delete, index."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import form_values
from tests.htmlparse import parse
from tests.htmlparse import row_fields
from wave_web import datatables
from wave_web import queries
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.errors import Conflict
from wave_web.errors import InvalidValue
from wave_web.extensions import db as _db
from wave_web.models import AuditEntry
from wave_web.models import Experiment
from wave_web.models import ExperimentType

COLUMNS = (
    ColumnDef("score", "INTEGER"),
    ColumnDef("rt", "FLOAT"),
    ColumnDef("label", "STRING"),
    ColumnDef("notes", "TEXT"),
    ColumnDef("correct", "BOOLEAN"),
    ColumnDef("seen_at", "DATETIME"),
    ColumnDef("meta", "JSON"),
    ColumnDef("trial_block", "INTEGER", nullable=False),
)

GOOD_FORM = {
    "participant_id": "p-1",
    "score": "42",
    "rt": "0.25",
    "label": "congruent",
    "notes": "line one\nline two",
    "correct": "yes",
    "seen_at": "2024-03-04T14:30:00+01:00",
    "meta": '{"a": [1, 2]}',
    "trial_block": "3",
}


@dataclass
class Setup:
    xtype: ExperimentType
    a: Experiment
    b: Experiment
    a_ids: list[int]
    b_ids: list[int]

    def url(self, experiment: Experiment, rest: str = "") -> str:
        return f"/experiments/{experiment.uuid}/rows{rest}"


def _row(pid: str, score: int | None, block: int = 1, **extra: Any) -> dict:
    return {"participant_id": pid, "score": score, "trial_block": block, **extra}


def ids_of(db, xtype, experiment) -> list[int]:
    table = datatables.reflect(xtype)
    stmt = (
        sa.select(table.c.id)
        .where(table.c.experiment_uuid == experiment.uuid)
        .order_by(table.c.id)
    )
    return list(db.session.scalars(stmt))


@pytest.fixture
def rows(db) -> Setup:
    """Type with every column type; experiments A and B with 5 and 3 rows."""
    xtype = make_type("Row editing", "row_editing", COLUMNS)
    a = make_experiment(xtype, "Experiment A")
    b = make_experiment(xtype, "Experiment B")
    make_rows(xtype, a, [_row(f"a{i}", i * 3, label=f"A{i}") for i in range(5)])
    make_rows(xtype, b, [_row(f"b{i}", i * 3, label=f"B{i}") for i in range(3)])
    return Setup(xtype, a, b, ids_of(db, xtype, a), ids_of(db, xtype, b))


def stored(db, s: Setup, row_id: int) -> dict:
    db.session.rollback()
    table = datatables.reflect(s.xtype)
    row = db.session.execute(sa.select(table).where(table.c.id == row_id)).mappings()
    found = row.first()
    return dict(found) if found else {}


def row_count(db, experiment: Experiment) -> int:
    """experiments.row_count as stored, checked against a real count."""
    db.session.rollback()
    xtype = db.session.get(ExperimentType, experiment.experiment_type_id)
    maintained = db.session.scalar(
        sa.select(Experiment.row_count).where(Experiment.uuid == experiment.uuid)
    )
    assert maintained == len(ids_of(db, xtype, experiment))
    return maintained


def browser_values(root) -> dict[str, str]:
    """What a browser submits for the fields under `root` (inputs, selects, textareas).

    A textarea drops one newline right after its start tag, as the HTML parser does.
    """
    values: dict[str, str] = {}
    for e in root.iter():
        name = e.attrs.get("name")
        if not name:
            continue
        if e.tag == "input":
            values[name] = e.attrs.get("value", "")
        elif e.tag == "select":
            chosen = e.find("option", selected="")
            values[name] = chosen.attrs["value"] if chosen else ""
        elif e.tag == "textarea":
            text = "".join(c for c in e.children if isinstance(c, str))
            values[name] = text[1:] if text.startswith("\n") else text
    return values


def edit_form(client, s: Setup, experiment, row_id: int) -> dict:
    """The values of the full-page edit form, as a browser would send them back."""
    response = client.get(s.url(experiment, f"/{row_id}/edit"))
    assert response.status_code == 200
    return browser_values(parse(response.data).find("main").find("form", method="post"))


# ----------------------------------------------------------------------
# parse_row
# ----------------------------------------------------------------------


def test_parse_row_accepts_every_type(rows):
    values = datatables.parse_row(rows.xtype, GOOD_FORM)
    assert values == {
        "participant_id": "p-1",
        "score": 42,
        "rt": 0.25,
        "label": "congruent",
        "notes": "line one\nline two",
        "correct": True,
        "seen_at": dt.datetime(2024, 3, 4, 13, 30),  # converted to UTC
        "meta": {"a": [1, 2]},
        "trial_block": 3,
    }


def test_parse_row_reads_empty_as_null_and_ignores_other_keys(rows):
    form = {"participant_id": "p", "trial_block": "1", "csrf_token": "x"}
    values = datatables.parse_row(rows.xtype, form)
    assert values["score"] is None and values["meta"] is None
    assert "csrf_token" not in values


@pytest.mark.parametrize(
    ("field", "text", "rule"),
    [
        ("score", "1.5", "whole number"),
        ("score", "99999999999", "between"),
        ("rt", "nan", "finite"),
        ("label", "x" * 256, "255"),
        ("correct", "maybe", "true or false"),
        ("seen_at", "03/04/2024", "ISO 8601"),
        ("meta", "{bad", "valid JSON"),
        ("trial_block", "", "required"),
        ("trial_block", "   ", "required"),
        ("participant_id", "", "required"),
        ("participant_id", "p" * 101, "limit is 100"),
        ("participant_id", "a\x00b", "NUL"),
        ("notes", "a\x00b", "NUL"),
    ],
)
def test_parse_row_refuses_with_field_and_rule(rows, field, text, rule):
    with pytest.raises(datatables.RowProblems) as caught:
        datatables.parse_row(rows.xtype, {**GOOD_FORM, field: text})
    assert list(caught.value.problems) == [field]
    message = caught.value.problems[field]
    assert field in message and rule in message
    assert caught.value.status == 422


def test_parse_row_collects_every_problem(rows):
    form = {**GOOD_FORM, "participant_id": "", "score": "x", "rt": "y"}
    with pytest.raises(datatables.RowProblems) as caught:
        datatables.parse_row(rows.xtype, form)
    assert set(caught.value.problems) == {"participant_id", "score", "rt"}


def test_partial_parse_reads_only_the_fields_sent(rows):
    values = datatables.parse_row(rows.xtype, {"score": "7"}, partial=True)
    assert values == {"score": 7}


# ----------------------------------------------------------------------
# Edit
# ----------------------------------------------------------------------


def test_edit_saves_and_moves_updated_at(client, db, rows):
    row_id = rows.a_ids[0]
    before = stored(db, rows, row_id)
    form = edit_form(client, rows, rows.a, row_id)
    form.update(row_fields(score="99", label="changed", correct="false"))
    response = client.post(rows.url(rows.a, f"/{row_id}"), data=form)
    assert response.status_code == 303
    after = stored(db, rows, row_id)
    assert (after["score"], after["label"], after["correct"]) == (99, "changed", False)
    assert after["updated_at"] > before["updated_at"]
    assert after["created_at"] == before["created_at"]
    assert after["rt"] is None and after["trial_block"] == 1  # untouched values kept
    entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "row.update")
    ).one()
    assert entry.details["before"] == {"score": "0", "label": "A0", "correct": None}
    assert entry.details["after"] == {
        "score": "99",
        "label": "changed",
        "correct": "false",
    }


def test_edit_with_invalid_values_shows_messages_at_the_fields(client, db, rows):
    row_id = rows.a_ids[1]
    form = edit_form(client, rows, rows.a, row_id)
    form.update(row_fields(score="1.5", trial_block=""))
    response = client.post(rows.url(rows.a, f"/{row_id}"), data=form)
    assert response.status_code == 422
    page = parse(response.data)
    assert "whole number" in page.find(id="field-score-error").text
    assert "required" in page.find(id="field-trial_block-error").text
    assert page.find("input", id="field-score").attrs["value"] == "1.5"  # kept
    assert stored(db, rows, row_id)["score"] == 3


def test_stale_edit_is_refused_and_shows_both_versions(client, db, rows):
    row_id = rows.a_ids[2]
    mine = edit_form(client, rows, rows.a, row_id)
    theirs = edit_form(client, rows, rows.a, row_id)
    theirs["row.score"] = "500"
    assert client.post(rows.url(rows.a, f"/{row_id}"), data=theirs).status_code == 303
    saved = stored(db, rows, row_id)

    mine["row.score"] = "600"
    response = client.post(rows.url(rows.a, f"/{row_id}"), data=mine)
    assert response.status_code == 409
    assert stored(db, rows, row_id) == saved  # unchanged
    page = parse(response.data)
    assert page.find("input", id="field-score").attrs["value"] == "600"  # not lost
    assert "500" in page.find(id="field-score-current").text
    # saving the form again replaces their version deliberately
    again = browser_values(page.find("main").find("form", method="post"))
    assert client.post(rows.url(rows.a, f"/{row_id}"), data=again).status_code == 303
    assert stored(db, rows, row_id)["score"] == 600


def test_update_row_refuses_a_stale_version_in_the_domain(db, rows):
    row_id = rows.b_ids[0]
    row = datatables.get_row(rows.xtype, rows.b.uuid, row_id)
    old = row["updated_at"]
    datatables.update_row(rows.xtype, rows.b.uuid, row_id, {"score": 1}, old)
    with pytest.raises(datatables.StaleRow) as caught:
        datatables.update_row(rows.xtype, rows.b.uuid, row_id, {"score": 2}, old)
    assert caught.value.status == 409
    assert caught.value.current["score"] == 1
    assert stored(db, rows, row_id)["score"] == 1


def test_saving_unchanged_values_writes_nothing(client, db, rows):
    row_id = rows.a_ids[0]
    before = stored(db, rows, row_id)
    form = edit_form(client, rows, rows.a, row_id)
    assert client.post(rows.url(rows.a, f"/{row_id}"), data=form).status_code == 303
    assert stored(db, rows, row_id) == before


def test_edit_keeps_multiline_text_and_json(client, db, rows):
    row_id = rows.a_ids[3]
    form = edit_form(client, rows, rows.a, row_id)
    form.update(row_fields(notes="\nfirst\r\nsecond", meta='{"k": "v"}'))
    assert client.post(rows.url(rows.a, f"/{row_id}"), data=form).status_code == 303
    row = stored(db, rows, row_id)
    assert row["notes"] == "\nfirst\nsecond"
    assert row["meta"] == {"k": "v"}
    again = edit_form(client, rows, rows.a, row_id)
    assert again["row.notes"] == "\nfirst\nsecond"
    assert client.post(rows.url(rows.a, f"/{row_id}"), data=again).status_code == 303
    assert stored(db, rows, row_id) == row  # an untouched form changes nothing


# ----------------------------------------------------------------------
# Another experiment's row id is a 404
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "rest"),
    [
        ("get", ""),
        ("get", "/edit"),
        ("post", ""),
        ("get", "/delete"),
        ("post", "/delete"),
    ],
)
def test_row_of_another_experiment_is_not_found(client, db, rows, method, rest):
    row_id = rows.a_ids[0]
    before = stored(db, rows, row_id)
    data = {
        "row.participant_id": "hijack",
        "expected_updated_at": "2020-01-01T00:00:00",
    }
    response = getattr(client, method)(rows.url(rows.b, f"/{row_id}{rest}"), data=data)
    assert response.status_code == 404
    assert stored(db, rows, row_id) == before
    assert row_count(db, rows.a) == 5 and row_count(db, rows.b) == 3


def test_row_ids_out_of_range_are_not_found(client, rows):
    assert client.get(rows.url(rows.a, "/2147483648")).status_code == 404
    assert client.get(rows.url(rows.a, "/0")).status_code == 404
    with pytest.raises(datatables.RowNotFound):
        datatables.get_row(rows.xtype, rows.a.uuid, 2**40)


# ----------------------------------------------------------------------
# Add
# ----------------------------------------------------------------------


def test_add_row_stores_it_and_counts_it(client, db, rows):
    response = client.get(rows.url(rows.a, "/new"))
    assert response.status_code == 200
    assert parse(response.data).find("input", id="field-participant_id") is not None
    response = client.post(rows.url(rows.a, "/new"), data=row_fields(**GOOD_FORM))
    assert response.status_code == 303
    assert row_count(db, rows.a) == 6
    assert row_count(db, rows.b) == 3
    new_id = max(ids_of(db, rows.xtype, rows.a))
    row = stored(db, rows, new_id)
    assert row["participant_id"] == "p-1" and row["meta"] == {"a": [1, 2]}
    assert row["created_at"] == row["updated_at"]
    assert (
        db.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "row.create")
        )
        .one()
        .details["after"]["score"]
        == "42"
    )


def test_add_row_with_errors_adds_nothing(client, db, rows):
    form = row_fields(**{**GOOD_FORM, "participant_id": "", "rt": "fast"})
    response = client.post(rows.url(rows.a, "/new"), data=form)
    assert response.status_code == 422
    page = parse(response.data)
    assert "required" in page.find(id="field-participant_id-error").text
    assert "rt" in page.find(id="field-rt-error").text
    assert page.find("input", id="field-score").attrs["value"] == "42"
    assert row_count(db, rows.a) == 5


def test_insert_row_refuses_an_experiment_of_another_type(db, rows):
    other = make_type("Other", "other_rows", [ColumnDef("x", "INTEGER")])
    stranger = make_experiment(other, "Stranger")
    values = datatables.parse_row(rows.xtype, GOOD_FORM)
    with pytest.raises(datatables.NotFound):
        datatables.insert_row(rows.xtype, stranger.uuid, values)
    assert row_count(db, stranger) == 0


# ----------------------------------------------------------------------
# Delete
# ----------------------------------------------------------------------


def test_delete_one_row_after_confirmation(client, db, rows):
    row_id = rows.a_ids[0]
    page = parse(client.get(rows.url(rows.a, f"/{row_id}/delete")).data)
    assert page.find(id="delete-count").text == "1 row"
    response = client.post(rows.url(rows.a, f"/{row_id}/delete"))
    assert response.status_code == 303
    assert stored(db, rows, row_id) == {}
    assert row_count(db, rows.a) == 4 and row_count(db, rows.b) == 3


def test_delete_selected_confirms_the_exact_count_of_this_experiment(client, db, rows):
    chosen = rows.a_ids[:3] + [rows.b_ids[0]]  # B's id must not count nor go
    query = "&".join(f"ids={i}" for i in chosen) + "&back=score__gt%3D1"
    response = client.get(rows.url(rows.a, f"/delete?{query}"))
    assert response.status_code == 200
    assert parse(response.data).find(id="delete-count").text == "3 selected rows"
    form = form_values(parse(response.data))
    form["ids"] = [str(i) for i in chosen]
    response = client.post(rows.url(rows.a, "/delete"), data=form)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("?score__gt=1")
    assert ids_of(db, rows.xtype, rows.a) == rows.a_ids[3:]
    assert ids_of(db, rows.xtype, rows.b) == rows.b_ids
    assert row_count(db, rows.a) == 2 and row_count(db, rows.b) == 3


def test_delete_selected_returns_to_the_same_grid_view(client, db, rows):
    grid = parse(client.get(f"/experiments/{rows.a.uuid}?score__gt=1&_sort=label").data)
    bulk = grid.find("form", id="bulk-form")
    sent = [*browser_values(bulk).items(), ("ids", str(rows.a_ids[2]))]
    response = client.get(f"{bulk.attrs['action']}?{urlencode(sent)}")
    assert response.status_code == 200
    confirm = parse(response.data)
    assert confirm.find(id="delete-count").text == "1 selected row"
    cancel = [a for a in confirm.find_all("a") if a.text == "Cancel"][0]
    assert cancel.attrs["href"].endswith("?score__gt=1&_sort=label")
    form = confirm.find("main").find("form", method="post")
    response = client.post(form.attrs["action"], data=browser_values(form))
    assert response.headers["Location"].endswith("?score__gt=1&_sort=label")
    assert row_count(db, rows.a) == 4


def test_delete_selected_without_selection_goes_back(client, rows):
    response = client.get(rows.url(rows.a, "/delete"))
    assert response.status_code == 303


def test_delete_selected_refuses_junk_ids(client, db, rows):
    response = client.get(rows.url(rows.a, "/delete?ids=1%20OR%201=1"))
    assert response.status_code == 400
    assert row_count(db, rows.a) == 5


def test_delete_matching_confirms_exact_count_and_deletes_only_those(client, db, rows):
    # A has scores 0 3 6 9 12, B has 0 3 6: score > 5 is 3 rows of A (2 of B)
    response = client.get(rows.url(rows.a, "/delete-matching?score__gt=5"))
    assert response.status_code == 200
    page = parse(response.data)
    assert page.find(id="delete-count").text == "3 rows"
    assert "score > 5" in page.text
    form = page.find("main").find("form", method="post")
    assert form.attrs["action"].endswith("?score__gt=5")
    response = client.post(form.attrs["action"], data=form_values(page, form))
    assert response.status_code == 303
    assert [stored(db, rows, i)["score"] for i in ids_of(db, rows.xtype, rows.a)] == [
        0,
        3,
    ]
    assert ids_of(db, rows.xtype, rows.b) == rows.b_ids
    assert row_count(db, rows.a) == 2 and row_count(db, rows.b) == 3
    entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "rows.delete_matching")
    ).one()
    assert entry.details["count"] == 3 and entry.details["filters"] == ["score > 5"]


def test_delete_matching_refuses_when_the_count_changed(client, db, rows):
    make_rows(rows.xtype, rows.a, [_row("late", 50)])  # arrived after confirming
    url = rows.url(rows.a, "/delete-matching?score__gt=5")
    response = client.post(url, data={"expected": "3"})
    assert response.status_code == 409
    page = parse(response.data)
    assert "4 rows match now" in page.find(id="delete-error").text
    assert page.find(id="delete-count").text == "4 rows"
    assert row_count(db, rows.a) == 6


def test_delete_matching_with_a_bad_filter_is_a_400(client, db, rows):
    url = rows.url(rows.a, "/delete-matching?sort%3Dx%22)%20OR%201%3D1%20--=1")
    assert client.get(url).status_code == 400
    assert client.post(url, data={"expected": "5"}).status_code == 400
    assert row_count(db, rows.a) == 5


def test_delete_matching_in_the_domain_keeps_other_experiments(db, rows):
    query = queries.RowQuery.from_args(
        queries.grid_columns(rows.xtype), {"label__istartswith": "a"}
    )
    count = datatables.delete_matching(rows.xtype, rows.a.uuid, query)
    assert count == 5
    assert row_count(db, rows.a) == 0 and row_count(db, rows.b) == 3


# ----------------------------------------------------------------------
# htmx fragments, escaping, CSRF
# ----------------------------------------------------------------------

HX = {"HX-Request": "true"}


def test_htmx_edit_is_a_row_fragment_with_labelled_inputs(client, rows):
    row_id = rows.a_ids[0]
    response = client.get(rows.url(rows.a, f"/{row_id}/edit?_hide=notes"), headers=HX)
    assert response.status_code == 200
    assert b"<html" not in response.data
    tr = parse(response.data).find("tr")
    assert tr.attrs["id"] == f"row-{row_id}" and "data-editing" in tr.attrs
    inputs = [e for e in tr.iter() if e.tag in ("input", "select", "textarea")]
    named = [e for e in inputs if e.attrs.get("type") != "hidden"]
    assert {e.attrs["name"] for e in named} == {
        "row.participant_id",
        "row.score",
        "row.rt",
        "row.label",
        "row.correct",
        "row.seen_at",
        "row.meta",
        "row.trial_block",
    }  # notes is hidden in the grid: not in the form, so not overwritten
    labels = {e.attrs["for"] for e in tr.find_all("label")}
    assert {e.attrs["id"] for e in named} <= labels
    assert tr.find("input", name="row.score").attrs["type"] == "number"
    assert tr.find("input", name="row.score").attrs["step"] == "any"
    assert tr.find("textarea", name="row.meta") is not None
    assert tr.find("input", name="row.seen_at").attrs["placeholder"].startswith("2024")
    assert tr.find("a", **{"data-cancel": ""}) is not None
    assert tr.find("input", name="csrf_token") is not None


def test_htmx_save_returns_the_display_row_marked_saved(client, db, rows):
    row_id = rows.a_ids[0]
    page = parse(client.get(rows.url(rows.a, f"/{row_id}/edit"), headers=HX).data)
    form = browser_values(page)
    form["row.score"] = "77"
    response = client.post(rows.url(rows.a, f"/{row_id}"), data=form, headers=HX)
    assert response.status_code == 200
    assert b"<html" not in response.data
    tr = parse(response.data).find("tr")
    assert "data-editing" not in tr.attrs
    assert "Saved" in tr.find("span", class_="saved-badge").text
    assert tr.find(id="row-status").attrs["hx-swap-oob"] == "innerHTML"
    assert stored(db, rows, row_id)["score"] == 77


def test_htmx_errors_and_conflicts_return_the_edit_row(client, db, rows):
    row_id = rows.a_ids[1]
    page = parse(client.get(rows.url(rows.a, f"/{row_id}/edit"), headers=HX).data)
    expected = page.find("input", name="expected_updated_at").attrs["value"]
    form = {
        **row_fields(participant_id="a1", score="x"),
        "expected_updated_at": expected,
    }
    response = client.post(rows.url(rows.a, f"/{row_id}"), data=form, headers=HX)
    assert response.status_code == 422
    assert b"<html" not in response.data
    tr = parse(response.data).find("tr")
    assert "data-editing" in tr.attrs
    assert tr.find("input", name="row.score").attrs["aria-invalid"] == "true"

    form["row.score"] = "8"
    assert client.post(rows.url(rows.a, f"/{row_id}"), data=form).status_code == 303
    form["row.score"] = "9"  # same old version again: stale
    response = client.post(rows.url(rows.a, f"/{row_id}"), data=form, headers=HX)
    assert response.status_code == 409
    tr = parse(response.data).find("tr")
    assert tr.find("form").attrs.get("data-swap-409") == ""
    assert tr.find("div", class_="row-conflict") is not None
    assert stored(db, rows, row_id)["score"] == 8


def test_htmx_cancel_and_delete(client, db, rows):
    row_id = rows.a_ids[4]
    response = client.get(rows.url(rows.a, f"/{row_id}"), headers=HX)
    assert parse(response.data).find("tr").attrs["id"] == f"row-{row_id}"
    assert b"<html" not in response.data
    response = client.post(rows.url(rows.a, f"/{row_id}/delete"), headers=HX)
    assert response.status_code == 200
    assert parse(response.data).find("tr") is None
    assert parse(response.data).find(id="row-count").text == "4"
    assert row_count(db, rows.a) == 4


def test_grid_has_select_boxes_and_row_actions(client, rows):
    page = parse(client.get(f"/experiments/{rows.a.uuid}").data)
    assert page.find("form", id="bulk-form") is not None
    boxes = page.find_all("input", name="ids")
    assert [int(b.attrs["value"]) for b in boxes] == rows.a_ids
    assert all(b.attrs["form"] == "bulk-form" for b in boxes)
    header = page.find("thead").find("tr").find_all("th")
    first_row = page.find("tbody").find("tr").find_all("td")
    assert len(header) == len(first_row)
    filtered = parse(client.get(f"/experiments/{rows.a.uuid}?score__gt=5").data)
    link = [a for a in filtered.find_all("a") if "delete-matching" in a.attrs["href"]]
    assert "Delete all 3 rows" in link[0].text
    # the inline edit keeps the grid's hidden columns hidden
    hiding = parse(client.get(f"/experiments/{rows.a.uuid}?_hide=notes").data)
    edit = hiding.find("a", **{"data-edit": ""})
    assert (
        edit.attrs["hx-get"] == f"{rows.url(rows.a)}/{rows.a_ids[0]}/edit?_hide=notes"
    )
    assert edit.attrs["href"] == f"{rows.url(rows.a)}/{rows.a_ids[0]}/edit"


def test_type_grid_links_rows_to_their_experiment(client, rows):
    page = parse(client.get(f"/types/{rows.xtype.id}/rows").data)
    header = page.find("thead").find("tr").find_all("th")
    assert len(header) == len(page.find("tbody").find("tr").find_all("td"))
    hrefs = [a.attrs["href"] for a in page.find("tbody").find_all("a")]
    assert f"/experiments/{rows.b.uuid}/rows/{rows.b_ids[0]}/edit" in hrefs


def test_html_in_values_is_escaped(client, db, rows):
    evil = '<script>alert("x")</script>'
    make_rows(rows.xtype, rows.a, [_row(evil, 1, label=evil, notes=evil)])
    row_id = max(ids_of(db, rows.xtype, rows.a))
    for url, headers in (
        (f"/experiments/{rows.a.uuid}?_last=1", {}),
        (rows.url(rows.a, f"/{row_id}"), {}),
        (rows.url(rows.a, f"/{row_id}/edit"), {}),
        (rows.url(rows.a, f"/{row_id}/edit"), HX),
        (rows.url(rows.a, f"/{row_id}/delete"), {}),
    ):
        body = client.get(url, headers=headers).get_data(as_text=True)
        assert "<script>alert" not in body, url
        assert "&lt;script&gt;" in body, url


def test_row_posts_need_the_csrf_token(csrf_app):
    with csrf_app.app_context():
        xtype = make_type("Row editing", "row_editing", COLUMNS)
        experiment = make_experiment(xtype, "A")
        make_rows(xtype, experiment, [_row("p", 1)])
        row_id = ids_of(_db, xtype, experiment)[0]
        _db.session.remove()
    client = csrf_app.test_client()
    base = f"/experiments/{experiment.uuid}/rows/{row_id}"
    page = parse(client.get(f"{base}/edit").data)
    form = form_values(page)
    assert form["csrf_token"]
    form["score"] = "2"
    without = {k: v for k, v in form.items() if k != "csrf_token"}
    assert client.post(base, data=without).status_code == 400
    assert client.post(f"{base}/delete").status_code == 400
    assert client.post(base, data=form).status_code == 303
    headers = {"HX-Request": "true", "X-CSRFToken": form["csrf_token"]}
    assert client.post(f"{base}/delete", headers=headers).status_code == 200


# ----------------------------------------------------------------------
# Add index
# ----------------------------------------------------------------------


def sort_indexes(db, table_name: str) -> dict[str, list[str]]:
    """The (experiment_uuid, column, id) indexes added to a table (not the ones every
    data table is made with)."""
    db.session.rollback()
    standard = {ix.name for ix in datatables.build_table(table_name, []).indexes}
    return {
        ix["name"]: ix["column_names"]
        for ix in sa.inspect(db.session.connection()).get_indexes(table_name)
        if len(ix["column_names"]) == 3 and ix["name"] not in standard
    }


def test_add_index_creates_it_records_it_and_bumps_the_version(db, rows):
    version = rows.xtype.schema_version
    name = schema.add_index(rows.xtype, "score")
    assert sort_indexes(db, "row_editing") == {name: ["experiment_uuid", "score", "id"]}
    assert len(name.encode()) <= 63
    assert rows.xtype.schema_version == version + 1
    # participant_id has its (experiment_uuid, participant_id, id) index from the start
    indexed = datatables.sort_indexed_columns(datatables.reflect(rows.xtype))
    assert indexed == {"participant_id", "score"}
    entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "type.add_index")
    ).one()
    assert entry.object_id == str(rows.xtype.id) and entry.details["column"] == "score"


def test_add_index_refuses_json_and_duplicates(db, rows):
    with pytest.raises(InvalidValue, match="JSON"):
        schema.add_index(rows.xtype, "meta")
    schema.add_index(rows.xtype, "label")
    with pytest.raises(Conflict, match="already has an index"):
        schema.add_index(rows.xtype, "label")
    with pytest.raises(datatables.NotFound):
        schema.add_index(rows.xtype, "nope")
    assert list(sort_indexes(db, "row_editing").values()) == [
        ["experiment_uuid", "label", "id"]
    ]


def test_add_index_names_are_short_and_unique_for_long_names(db):
    long_col = "c" * 63
    xtype = make_type("Long", "t" * 63, [ColumnDef(long_col, "INTEGER")])
    first = schema.add_index(xtype, long_col)
    schema.rename_column(xtype, long_col, "renamed")
    schema.add_column(xtype, ColumnDef(long_col, "INTEGER"))
    second = schema.add_index(xtype, long_col)
    assert first != second
    assert all(len(n.encode()) <= 63 for n in (first, second))
    assert sorted(sort_indexes(db, "t" * 63).values()) == [
        ["experiment_uuid", long_col, "id"],
        ["experiment_uuid", "renamed", "id"],
    ]


def test_indexed_columns_survive_other_schema_changes(db, rows):
    schema.add_index(rows.xtype, "score")
    schema.set_nullable(rows.xtype, "label", False)  # SQLite rebuilds the table
    assert list(sort_indexes(db, "row_editing").values()) == [
        ["experiment_uuid", "score", "id"]
    ]
    schema.change_type(rows.xtype, "score", "FLOAT")  # a new column: indexed again
    assert list(sort_indexes(db, "row_editing").values()) == [
        ["experiment_uuid", "score", "id"]
    ]
    assert [stored(db, rows, i)["score"] for i in rows.a_ids] == [0, 3, 6, 9, 12]
    schema.drop_column(rows.xtype, "score", "score")
    assert sort_indexes(db, "row_editing") == {}


def test_add_index_from_the_type_page(client, db, rows):
    page = parse(client.get(f"/types/{rows.xtype.id}").data)
    action = f"/types/{rows.xtype.id}/columns/score/index"
    assert page.find("form", action=action) is not None
    assert (
        page.find("form", action=f"/types/{rows.xtype.id}/columns/meta/index") is None
    )
    assert client.post(action).status_code == 303
    assert list(sort_indexes(db, "row_editing").values()) == [
        ["experiment_uuid", "score", "id"]
    ]
    page = parse(client.get(f"/types/{rows.xtype.id}").data)
    assert page.find("form", action=action) is None  # shown as indexed instead
    response = client.post(action)
    assert response.status_code == 422
    assert "already has an index" in response.get_data(as_text=True)
    assert "Added an index on “score”" in response.get_data(as_text=True)  # history

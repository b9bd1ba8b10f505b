"""A type posted with more columns than the limit is refused whole, never cut short."""

from __future__ import annotations

import pytest
from tests.htmlparse import parse
from wave_web import columns
from wave_web.extensions import db as _db
from wave_web.models import ExperimentType


def builder_form(count: int) -> dict[str, str]:
    form = {"name": "Wide task", "table_name": "wide_task", "action": "create"}
    for i in range(count):
        form[f"columns-{i}-name"] = f"m_{i}"
        form[f"columns-{i}-type"] = "FLOAT"
    return form


@pytest.mark.parametrize("count", [201, 1601])
def test_builder_refuses_a_type_over_the_column_limit(client, db, count):
    response = client.post("/types/new", data=builder_form(count))
    assert response.status_code == 422
    message = parse(response.data).find(id="columns-feedback").text
    assert f"at most {columns.MAX_COLUMNS}" in message
    assert f"this one has {count:,}" in message
    assert _db.session.query(ExperimentType).count() == 0


def test_builder_creates_a_type_at_the_column_limit(client, db):
    response = client.post("/types/new", data=builder_form(columns.MAX_COLUMNS))
    assert response.status_code == 303
    assert len(_db.session.query(ExperimentType).one().columns) == columns.MAX_COLUMNS


def test_builder_states_the_limit_and_stops_adding_at_it(client, db):
    page = parse(client.get("/types/new").data)
    assert f"Up to {columns.MAX_COLUMNS} columns" in page.text
    form = builder_form(columns.MAX_COLUMNS) | {"action": "add"}
    page = parse(client.post("/types/new", data=form).data)
    assert "disabled" in page.find(id="add-column").attrs


def test_ten_thousand_columns_are_refused_not_cut(client, db):
    response = client.post("/types/new", data=builder_form(10_000))
    assert response.status_code in (413, 422)
    assert _db.session.query(ExperimentType).count() == 0

"""Lists cost a fixed number of queries; a broken data table shows no internals."""

from __future__ import annotations

import contextlib
import logging
import uuid

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_type
from wave_web import datatables
from wave_web.models import Experiment


@contextlib.contextmanager
def statements(db):
    """The SQL statements run on the engine inside the block."""
    seen: list[str] = []

    def note(conn, cursor, statement, *args):
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", note)


@contextlib.contextmanager
def loaded_experiments():
    """How many Experiment objects the ORM loads inside the block."""
    loaded: list[int] = []

    def note(target, context):
        loaded.append(1)

    sa.event.listen(Experiment, "load", note)
    try:
        yield loaded
    finally:
        sa.event.remove(Experiment, "load", note)


def add_types_with_an_experiment(numbers: range) -> None:
    for i in numbers:
        make_experiment(make_type(f"Type {i}", f"type_{i}_data", []), f"run {i}")


@pytest.mark.parametrize("url", ["/experiments/", "/"])
def test_list_costs_the_same_queries_for_one_type_or_many(client, db, url):
    add_types_with_an_experiment(range(1))
    with statements(db) as one:
        assert client.get(url).status_code == 200
    add_types_with_an_experiment(range(1, 6))  # more types, each shown by name
    with statements(db) as many:
        response = client.get(url)
    assert response.status_code == 200
    assert "Type 5" in response.text
    assert len(many) == len(one), many


def many_experiments(db, xtype, count: int) -> None:
    """`count` experiments of `xtype` in one statement (quicker than the factory)."""
    db.session.execute(
        sa.insert(Experiment),
        [
            {
                "uuid": uuid.uuid4(),
                "experiment_type_id": xtype.id,
                "description": f"run {i}",
                "tags": [],
                "additional_data": {},
            }
            for i in range(count)
        ],
    )
    db.session.commit()


def test_type_page_loads_only_the_experiments_it_shows(client, db):
    xtype = make_type()
    many_experiments(db, xtype, 120)
    with loaded_experiments() as loaded:
        response = client.get(f"/types/{xtype.id}")
    assert response.status_code == 200
    assert "All 120 experiments of this type" in response.text
    assert len(loaded) == 100


def test_delete_page_counts_the_experiments_without_loading_them(client, db):
    xtype = make_type()
    many_experiments(db, xtype, 120)
    with loaded_experiments() as loaded:
        response = client.get(f"/types/{xtype.id}/delete")
    assert response.status_code == 200
    assert "still has 120 experiments" in response.text
    assert loaded == []


def test_delete_page_of_a_type_without_experiments_asks_for_confirmation(client, db):
    xtype = make_type()
    response = client.get(f"/types/{xtype.id}/delete")
    assert response.status_code == 200
    assert 'name="confirm"' in response.text


def test_table_that_no_longer_matches_its_type_gives_a_plain_500(client, db, caplog):
    xtype = make_type()
    experiment = make_experiment(xtype, "Pilot")
    db.session.execute(
        sa.text("ALTER TABLE cognitive_test_data ADD COLUMN stray_column INTEGER")
    )
    db.session.commit()
    datatables.forget(xtype.table_name)
    with caplog.at_level(logging.ERROR, logger="wave_web.datatables"):
        response = client.get(f"/experiments/{experiment.uuid}")
    assert response.status_code == 500
    assert "stray_column" not in response.text
    assert "does not match" not in response.text
    assert "An unexpected error occurred" in response.text
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "cognitive_test_data" in logged
    assert "stray_column" in logged

"""The grid's participant index: (experiment_uuid, participant_id, id) on every data
table, made with new tables and added to older ones by migration 0009; the grid's
participant filter reads its count and its page from it."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade
from flask_migrate import upgrade
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.database import MIGRATIONS_DIR
from wave_web.datatables import index_name
from wave_web.extensions import db as _db

WANTED = ["experiment_uuid", "participant_id", "id"]


def participant_indexes(table_name: str) -> list[str]:
    with _db.engine.connect() as conn:
        found = sa.inspect(conn).get_indexes(table_name)
    return [ix["name"] for ix in found if list(ix["column_names"]) == WANTED]


@pytest.fixture
def rows(db):
    xtype = make_type()
    experiment = make_experiment(xtype)
    people = ["P1", "P2", "P3"]
    make_rows(
        xtype,
        experiment,
        [{"participant_id": people[i % 3], "accuracy": i / 10} for i in range(30)],
    )
    return xtype, experiment


def test_new_data_tables_have_the_participant_index(rows):
    xtype, _ = rows
    assert participant_indexes(xtype.table_name) == [
        index_name(xtype.table_name, "exp_pid")
    ]


def test_migration_0009_adds_the_index_to_older_tables_and_takes_it_back(
    app, client, rows
):
    xtype, experiment = rows
    _db.session.commit()
    downgrade(directory=MIGRATIONS_DIR, revision="0008")
    assert participant_indexes(xtype.table_name) == []
    upgrade(directory=MIGRATIONS_DIR)
    assert participant_indexes(xtype.table_name) == [
        index_name(xtype.table_name, "exp_pid")
    ]
    upgrade(directory=MIGRATIONS_DIR)  # at the head: nothing to do, no error
    page = client.get(f"/experiments/{experiment.uuid}?participant_id__exact=P2")
    assert page.status_code == 200
    assert len(re.findall(rb'id="row-[0-9]+"', page.data)) == 10


def test_participant_filter_reads_the_participant_index_on_sqlite(
    client, rows, dialect
):
    """SQLite has no statistics: without this index it took the experiment_uuid
    index and read every row of the experiment."""
    if dialect != "sqlite":
        pytest.skip("PostgreSQL chooses by its statistics (EXPLAIN evidence: bench)")
    xtype, experiment = rows
    table_name, url = xtype.table_name, f"/experiments/{experiment.uuid}"
    seen: list[tuple[str, tuple]] = []

    def listen(conn, cursor, statement, params, *args):
        if table_name in statement and "participant_id =" in statement:
            seen.append((statement, params))

    sa.event.listen(_db.engine, "before_cursor_execute", listen)
    try:
        page = client.get(f"{url}?participant_id__exact=P2")
    finally:
        sa.event.remove(_db.engine, "before_cursor_execute", listen)
    assert page.status_code == 200
    assert len(seen) == 2  # the count and the page
    name = index_name(table_name, "exp_pid")
    with _db.engine.connect() as conn:
        for statement, params in seen:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            details = " ".join(row[-1] for row in plan)
            assert f"INDEX {name} (experiment_uuid=? AND participant_id=?)" in details


def test_migration_0009_covers_a_partitioned_table_on_postgresql(app, db, dialect):
    if dialect != "postgresql":
        pytest.skip("tables are partitioned on PostgreSQL only")
    xtype = schema.create_type(
        "Huge", "", "huge_data", [ColumnDef("score", "INTEGER")], partitioned=True
    )
    table_name = xtype.table_name
    _db.session.commit()
    downgrade(directory=MIGRATIONS_DIR, revision="0008")
    upgrade(directory=MIGRATIONS_DIR)
    with _db.engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT count(*) FROM pg_indexes WHERE indexname = :name"),
            {"name": index_name(table_name, "exp_pid")},
        ).scalar_one()
    assert found == 1

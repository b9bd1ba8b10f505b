"""Very large types: a data table partitioned by experiment_uuid (PostgreSQL only).

Every operation on a partitioned type behaves as on an ordinary one; the tests check
the physical table (catalog, partitions) and that rows land, move and go as usual.
On SQLite the option is not offered and asking for it is refused with a reason.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from tests.factories import make_experiment
from tests.factories import make_rows
from wave_web import datatables
from wave_web import partitioning
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.csv_io.importing import ImportOptions
from wave_web.csv_io.importing import import_file
from wave_web.errors import Conflict
from wave_web.models import AuditEntry
from wave_web.models import ExperimentType

COLUMNS = [
    ColumnDef("score", "INTEGER"),
    ColumnDef("label", "STRING"),
    ColumnDef("rt", "FLOAT"),
]


def rows(n: int, start: int = 0) -> list[dict]:
    return [
        {"participant_id": f"P{i:03d}", "score": i, "label": f"l{i % 3}", "rt": i / 4}
        for i in range(start, start + n)
    ]


@pytest.fixture
def pg(database_url):
    """PostgreSQL only; first in a test's arguments, it skips before an app is made."""
    if database_url.startswith("sqlite"):
        pytest.skip("partitioned tables exist on PostgreSQL only")


@pytest.fixture
def on_sqlite(database_url):
    """SQLite only (the refusals); first in a test's arguments."""
    if not database_url.startswith("sqlite"):
        pytest.skip("the refusal is SQLite's")


def partitioned_type(name: str = "Huge task", table: str = "huge_data"):
    return schema.create_type(name, "", table, COLUMNS, partitioned=True)


def partitions_holding(db, table_name: str, experiment_uuid) -> set[str]:
    """The partitions (tableoid) holding rows of one experiment."""
    holder = sa.table(table_name, sa.column("experiment_uuid", sa.Uuid))
    stmt = (
        sa.select(sa.literal_column("tableoid::regclass::text"))
        .select_from(holder)
        .where(holder.c.experiment_uuid == experiment_uuid)
        .distinct()
    )
    return set(db.session.scalars(stmt))


def test_a_partitioned_type_has_hash_partitions_and_a_composite_key(pg, db):
    xtype = partitioned_type()
    conn = db.session.connection()
    assert partitioning.is_partitioned(conn, "huge_data")
    inspector = sa.inspect(conn)
    key = inspector.get_pk_constraint("huge_data")["constrained_columns"]
    assert key == ["id", "experiment_uuid"]
    names = set(inspector.get_table_names())
    assert set(partitioning.partition_names("huge_data")) <= names
    indexed = {tuple(ix["column_names"]) for ix in inspector.get_indexes("huge_data")}
    assert ("experiment_uuid", "id") in indexed and ("participant_id",) in indexed
    table = datatables.reflect(xtype)
    assert [c.name for c in table.primary_key] == ["id", "experiment_uuid"]
    entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "type.create")
    ).one()
    assert "16 partitions" in entry.details["after"]["partitioned"]


def test_ids_are_unique_across_partitions_and_rows_of_one_experiment_share_one(pg, db):
    xtype = partitioned_type()
    experiments = [make_experiment(xtype, f"E{i}") for i in range(6)]
    for e in experiments:
        make_rows(xtype, e, rows(5))
    table = datatables.reflect(xtype)
    ids = list(db.session.scalars(sa.select(table.c.id)))
    assert len(ids) == len(set(ids)) == 30
    holders = [partitions_holding(db, "huge_data", e.uuid) for e in experiments]
    assert all(len(h) == 1 for h in holders)
    assert len(set().union(*holders)) > 1  # spread over partitions, not all in one


def test_grid_page_edit_and_delete_by_id_on_a_partitioned_type(pg, client, db):
    xtype = partitioned_type()
    a, b = make_experiment(xtype, "A"), make_experiment(xtype, "B")
    make_rows(xtype, a, rows(4))
    make_rows(xtype, b, rows(3, start=10))
    page = client.get(f"/experiments/{a.uuid}?score__gt=1")
    assert page.status_code == 200
    assert (
        b"P002" in page.data and b"P000" not in page.data and b"P010" not in page.data
    )
    a_ids = datatables.existing_ids(xtype, a.uuid, range(1, 100))
    b_ids = datatables.existing_ids(xtype, b.uuid, range(1, 100))
    row = datatables.get_row(xtype, a.uuid, a_ids[0])
    with pytest.raises(datatables.RowNotFound):
        datatables.get_row(xtype, b.uuid, a_ids[0])  # id of another experiment
    saved = datatables.update_row(
        xtype, a.uuid, a_ids[0], {"label": "edited"}, row["updated_at"]
    )
    assert saved["label"] == "edited"
    with pytest.raises(datatables.StaleRow):
        datatables.update_row(
            xtype, a.uuid, a_ids[0], {"label": "again"}, row["updated_at"]
        )
    assert datatables.delete_rows(xtype, a.uuid, [a_ids[1], b_ids[0]]) == 1
    assert datatables.existing_ids(xtype, b.uuid, b_ids) == b_ids
    shown = client.get(f"/experiments/{a.uuid}/rows/{a_ids[0]}")
    assert shown.status_code == 200 and b"edited" in shown.data
    new = datatables.insert_row(
        xtype, a.uuid, {"participant_id": "P9", "score": 9, "label": None, "rt": None}
    )
    assert new["id"] > max(a_ids + b_ids)


def test_import_and_export_on_a_partitioned_type(pg, client, db, tmp_path):
    xtype = partitioned_type()
    experiment = make_experiment(xtype, "Imported")
    path = tmp_path / "rows.csv"
    path.write_text(
        "participant_id,score,label,rt\n"
        + "".join(f"P{i},{i},x{i},{i}.5\n" for i in range(50)),
        encoding="utf-8",
    )
    report = import_file(xtype, experiment.uuid, str(path), ImportOptions())
    db.session.commit()
    assert report.written == 50
    export = client.get(f"/experiments/{experiment.uuid}/export.csv")
    assert export.status_code == 200
    lines = export.data.decode().splitlines()
    assert len(lines) == 51 and lines[1].endswith("P0,0,x0,0.5")
    assert len(partitions_holding(db, "huge_data", experiment.uuid)) == 1


def test_schema_changes_apply_to_every_partition(pg, db):
    xtype = partitioned_type()
    experiment = make_experiment(xtype, "E")
    make_rows(xtype, experiment, rows(3))
    schema.add_column(xtype, ColumnDef("done", "BOOLEAN", nullable=False), "true")
    schema.rename_column(xtype, "label", "tag")
    schema.change_type(xtype, "score", "FLOAT")
    schema.drop_column(xtype, "rt", "rt")
    schema.set_nullable(xtype, "done", True)
    schema.add_index(xtype, "tag")
    conn = db.session.connection()
    for name in ["huge_data", partitioning.partition_name("huge_data", 5)]:
        found = {c["name"]: c for c in sa.inspect(conn).get_columns(name)}
        assert set(found) == {
            "id",
            "experiment_uuid",
            "participant_id",
            "created_at",
            "updated_at",
            "score",
            "tag",
            "done",
        }
        assert found["done"]["nullable"]
    table = datatables.reflect(xtype)
    assert "tag" in datatables.sort_indexed_columns(table)
    stored = db.session.execute(
        sa.select(table.c.score, table.c.tag, table.c.done).order_by(table.c.id)
    ).all()
    assert stored == [(0.0, "l0", True), (1.0, "l1", True), (2.0, "l2", True)]


def test_partition_type_command_keeps_ids_indexes_and_the_sequence(pg, app, db):
    xtype = schema.create_type("Grown", "", "grown_data", COLUMNS)
    experiment = make_experiment(xtype, "E")
    make_rows(xtype, experiment, rows(5))
    schema.add_index(xtype, "score")
    table = datatables.reflect(xtype)
    last = datatables.existing_ids(xtype, experiment.uuid, range(1, 100))
    datatables.delete_rows(xtype, experiment.uuid, [last[-1]])  # the sequence is ahead
    before = db.session.execute(sa.select(table).order_by(table.c.id)).all()
    type_id, version = xtype.id, xtype.schema_version
    db.session.commit()
    result = CliRunner().invoke(
        app.cli, ["partition-type", "grown_data"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "5 rows" not in result.output and "4 rows" in result.output
    db.session.rollback()
    xtype = db.session.get(ExperimentType, type_id)
    assert xtype.schema_version > version
    conn = db.session.connection()
    assert partitioning.is_partitioned(conn, "grown_data")
    table = datatables.reflect(xtype)
    assert db.session.execute(sa.select(table).order_by(table.c.id)).all() == before
    assert "score" in datatables.sort_indexed_columns(table)
    new = datatables.insert_row(
        xtype, experiment.uuid, {"participant_id": "P", "score": 1}
    )
    assert new["id"] == last[-1] + 1  # a deleted row's id is never handed out again
    again = CliRunner().invoke(app.cli, ["partition-type", "grown_data"])
    assert again.exit_code == 1 and "already partitioned" in again.output
    unknown = CliRunner().invoke(app.cli, ["partition-type", "nope"])
    assert unknown.exit_code == 1 and "No experiment type has the table" in (
        unknown.output
    )


def test_partition_type_refuses_a_type_already_partitioned(pg, db):
    xtype = partitioned_type()
    with pytest.raises(Conflict, match="already partitioned"):
        partitioning.partition_type(xtype)


def test_builder_offers_very_large_on_postgresql_and_creates_it(pg, client, db):
    page = client.get("/types/new")
    assert b'value="partitioned"' in page.data and b"Expected size" in page.data
    form = {
        "name": "Builder huge",
        "table_name": "builder_huge",
        "columns-0-name": "score",
        "columns-0-type": "INTEGER",
        "size": "partitioned",
    }
    response = client.post("/types/new", data=form)
    assert response.status_code in (302, 303), response.data[:500]
    assert partitioning.is_partitioned(db.session.connection(), "builder_huge")
    ordinary = {**form, "name": "Builder small", "table_name": "builder_small"}
    ordinary["size"] = "ordinary"
    assert client.post("/types/new", data=ordinary).status_code in (302, 303)
    db.session.rollback()
    assert not partitioning.is_partitioned(db.session.connection(), "builder_small")


def test_sqlite_hides_the_option_and_refuses_a_partitioned_type(on_sqlite, client, db):
    page = client.get("/types/new")
    assert b"Expected size" not in page.data and b"partitioned" not in page.data
    form = {
        "name": "Huge on SQLite",
        "table_name": "huge_sqlite",
        "columns-0-name": "score",
        "columns-0-type": "INTEGER",
        "size": "partitioned",
    }
    response = client.post("/types/new", data=form)
    assert response.status_code == 422
    assert b"Partitioning a type&#39;s table needs PostgreSQL" in response.data
    with pytest.raises(schema.SchemaProblems, match="needs PostgreSQL"):
        partitioned_type()
    assert (
        db.session.scalar(sa.select(sa.func.count()).select_from(ExperimentType)) == 0
    )
    result = CliRunner().invoke(client.application.cli, ["partition-type", "x"])
    assert result.exit_code == 1


def test_partition_type_command_is_refused_on_sqlite(on_sqlite, app, db):
    schema.create_type("Plain", "", "plain_data", COLUMNS)
    db.session.commit()
    result = CliRunner().invoke(app.cli, ["partition-type", "plain_data"])
    assert result.exit_code == 1
    assert "needs PostgreSQL; this server uses SQLite" in result.output


def test_deleting_a_partitioned_type_drops_its_partitions(pg, db):
    xtype = partitioned_type()
    schema.delete_type(xtype, "Huge task")
    names = set(sa.inspect(db.session.connection()).get_table_names())
    assert "huge_data" not in names
    assert not names & set(partitioning.partition_names("huge_data"))

"""Large imports: one pass that validates and writes, all or nothing, on both databases.

A one-step import checks each cell as it writes (no separate check pass), so a bad
cell far into a large file must still leave nothing behind and be reported exactly as
the check reports it. On SQLite a large file into an empty table is written without
the secondary indexes, which are built again at the end: they must be there after a
success and after a refusal, and the connection's page cache setting is restored.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_type
from wave_web import datatables
from wave_web.columns import ColumnDef
from wave_web.csv_io import importing
from wave_web.csv_io.importing import ImportOptions
from wave_web.csv_io.importing import ImportRefused
from wave_web.csv_io.importing import check_file
from wave_web.csv_io.importing import import_file
from wave_web.extensions import db as _db

COLUMNS = (
    ColumnDef("rt", "FLOAT"),
    ColumnDef("level", "INTEGER"),
    ColumnDef("ok", "BOOLEAN"),
    ColumnDef("at", "DATETIME"),
    ColumnDef("extra", "JSON"),
)
ROWS = 12_000  # above 1 MiB of CSV: the deferred-index path on SQLite


@pytest.fixture
def xtype(db):
    return make_type("Bulk trials", "bulk_trials", COLUMNS)


@pytest.fixture
def experiment(xtype):
    return make_experiment(xtype, "Bulk target")


def big_file(tmp_path, bad_row: int | None = None, bad_cell: str = "fast") -> str:
    lines = ["participant_id,rt,level,ok,at,extra"]
    for i in range(1, ROWS + 1):
        rt = bad_cell if i == bad_row else f"{i / 7:.4f}"
        lines.append(
            f"P{i % 977:04d},{rt},{i % 5},{'true' if i % 2 else 'false'},"
            f'2025-03-01T10:{i % 60:02d}:00+02:00,"{{""trial"": {i}, '
            f'""keys"": [""f"", ""j""], ""note"": ""padding to pass one MiB""}}"'
        )
    path = tmp_path / "big.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    assert path.stat().st_size > importing.SQLITE_DEFER_INDEXES_BYTES
    return str(path)


def count(xtype, experiment) -> int:
    table = datatables.reflect(xtype)
    stmt = sa.select(sa.func.count()).where(table.c.experiment_uuid == experiment.uuid)
    return _db.session.scalar(stmt)


def index_sql(xtype) -> list:
    """The table's indexes as the database states them."""
    inspector = sa.inspect(_db.session.connection())
    found = sorted(
        (i["name"], tuple(i["column_names"]), bool(i["unique"]))
        for i in inspector.get_indexes(xtype.table_name)
    )
    _db.session.rollback()
    return found


def cache_size():
    if _db.engine.dialect.name != "sqlite":
        return None
    return _db.session.execute(sa.text("PRAGMA cache_size")).scalar()


def test_large_file_is_stored_whole_with_its_indexes(tmp_path, xtype, experiment):
    path = big_file(tmp_path)
    before, cache = index_sql(xtype), cache_size()
    report = import_file(xtype, experiment.uuid, path, ImportOptions())
    _db.session.commit()
    assert report.written == ROWS
    assert count(xtype, experiment) == ROWS
    assert index_sql(xtype) == before and len(before) >= 2
    assert cache_size() == cache
    table = datatables.reflect(xtype)
    last = _db.session.execute(
        sa.select(table.c.rt, table.c.ok, table.c.at, table.c.extra)
        .where(table.c.experiment_uuid == experiment.uuid)
        .order_by(table.c.id.desc())
        .limit(1)
    ).one()
    assert last.rt == float(f"{ROWS / 7:.4f}") and last.ok is False
    assert last.at.isoformat() == f"2025-03-01T08:{ROWS % 60:02d}:00"
    assert last.extra == {"trial": ROWS, "keys": ["f", "j"], "note": "padding to "
                          "pass one MiB"}  # fmt: skip
    # the indexes are used again: a filtered count reads participant_id's index
    pid = sa.select(sa.func.count()).where(table.c.participant_id == "P0001")
    assert _db.session.scalar(pid) == len(
        [i for i in range(1, ROWS + 1) if i % 977 == 1]
    )


def test_bad_cell_near_the_end_refuses_all_with_the_checks_message(
    tmp_path, xtype, experiment
):
    path = big_file(tmp_path, bad_row=ROWS - 3)
    before, cache = index_sql(xtype), cache_size()
    checked = check_file(xtype, path, ImportOptions())
    with pytest.raises(ImportRefused) as refused:
        import_file(xtype, experiment.uuid, path, ImportOptions())
    _db.session.rollback()
    report = refused.value.report
    assert report.written == 0 and report.rows == ROWS
    assert [p.describe() for p in report.problems] == [
        p.describe() for p in checked.problems
    ]
    assert report.summary() == checked.summary()
    (problem,) = report.problems
    assert (problem.row, problem.line, problem.column, problem.value) == (
        ROWS - 3,
        ROWS - 2,
        "rt",
        "fast",
    )
    assert problem.rule == "expected a number like 0.25 or 1.5e-3"
    assert count(xtype, experiment) == 0
    assert index_sql(xtype) == before
    assert cache_size() == cache


def test_rows_into_a_table_that_has_rows_keep_the_indexes_throughout(
    tmp_path, xtype, experiment
):
    other = make_experiment(xtype, "Already there")
    small = tmp_path / "small.csv"
    small.write_text("participant_id,rt\r\nP1,0.5\r\n", encoding="utf-8")
    import_file(xtype, other.uuid, str(small), ImportOptions())
    _db.session.commit()
    before = index_sql(xtype)
    report = import_file(xtype, experiment.uuid, big_file(tmp_path), ImportOptions())
    _db.session.commit()
    assert report.written == ROWS and count(xtype, other) == 1
    assert index_sql(xtype) == before

"""Every column type stores its values exactly on both databases (design §2).

Tricky values go in through each write path (insert_rows, insert_row and update_row as
the UI and the API use them, the CSV import's fast path, its cell-by-cell path and its
update mode) and must come back with the same type and value: floats with the same
sign of zero, JSON documents with the same number types, key order and big integers.

Two storage traps are covered: SQLite gives a column declared JSON NUMERIC affinity
(the document 1.0 came back as 1) and one declared FLOAT REAL affinity (-0.0 came
back as 0.0); psycopg2 sent -0.0 as a numeric literal that PostgreSQL read as 0.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import math
from typing import Any

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade
from flask_migrate import upgrade
from tests.factories import EVERY_TYPE
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import columns
from wave_web import datatables
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.csv_io.importing import ImportOptions
from wave_web.csv_io.importing import ImportRefused
from wave_web.csv_io.importing import import_file
from wave_web.database import MIGRATIONS_DIR
from wave_web.datatables import RowProblems

D = dt.datetime
NAMES = [c.name for c in EVERY_TYPE]  # n x s t b d j
TYPES = {c.name: c.type for c in EVERY_TYPE}

VALUES: dict[str, list[Any]] = {
    "n": [columns.INT_MIN, columns.INT_MAX, 0, -1],
    "x": [
        -0.0,
        0.0,
        0.1,
        2.0,
        1e-300,
        5e-324,
        -5e-324,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        1e15,
        1234567890123456.8,
        0.30000000000000004,
    ],
    "s": ["x" * 255, "ＡＢＣ 漢字", " padded ", "-0.0", "1.0"],
    "t": ["line\r\nbreak", "tab\there \\N", "😀 naïve", "x" * 10_000, "'\"", " "],
    "b": [True, False],
    "d": [
        D(2024, 3, 4, 14, 30, 0, 1),
        D(1, 1, 1),
        D(9999, 12, 31, 23, 59, 59, 999999),
        D(2000, 2, 29, 0, 0, 0, 500000),
    ],
    "j": [
        1.0,
        0,
        -0.0,
        0.0,
        2**70,
        -(2**70),
        1e300,
        5e-324,
        0.30000000000000004,
        "text",
        "1.0",
        "",
        [],
        {},
        True,
        False,
        {"a": {"b": [1, 2.5, {"c": None}]}, "list": [[[]]]},
        "naïve ☃ 😀 \u2028",
        {"ключ": "值", "z": 1, "a": 2},  # key order is kept
        [2**70, -(2**64), 1.0, -0.0, 1e300],
        {"big": 12345678901234567890123, "f": 1.5e-300},
    ],
}
ROWS = [
    {"participant_id": f"P{i}", **dict(zip(NAMES, values, strict=True))}
    for i, values in enumerate(
        itertools.zip_longest(*(VALUES[n] for n in NAMES)), start=1
    )
]


def same(a: Any, b: Any) -> bool:
    """Equal in type and value, floats to the sign of zero, dicts in key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def assert_same_rows(expected: list[dict], found: list[dict]) -> None:
    assert len(found) == len(expected)
    for want, got in zip(expected, found, strict=True):
        for name in want:
            assert same(want[name], got[name]), (name, want[name], got[name])


@pytest.fixture
def xtype(db):
    return make_type("Every type", "every_type_data", EVERY_TYPE)


@pytest.fixture
def experiment(xtype):
    return make_experiment(xtype, "Tricky values")


def stored(db, xtype, experiment) -> list[dict[str, Any]]:
    """The experiment's rows as a fresh transaction reads them, in id order."""
    db.session.rollback()
    table = datatables.reflect(xtype)
    stmt = (
        sa.select(table)
        .where(table.c.experiment_uuid == experiment.uuid)
        .order_by(table.c.id)
    )
    return [dict(r) for r in db.session.execute(stmt).mappings()]


def storage_classes(db, table_name: str, name: str) -> set[str]:
    """SQLite's storage classes of the non-NULL values in a column."""
    holder = sa.table(table_name, sa.column(name))
    col = holder.c[name]
    stmt = sa.select(sa.func.typeof(col)).where(col.is_not(None)).distinct()
    return set(db.session.scalars(stmt))


def texts_of(row: dict[str, Any]) -> dict[str, str]:
    """A row as the UI's form or a CSV file spells it (canonical texts)."""
    return {
        "participant_id": row["participant_id"],
        **{n: columns.format_value(TYPES[n], row[n]) for n in NAMES},
    }


def test_canonical_texts_parse_back_to_the_same_values():
    for row in ROWS:
        for name, text in texts_of(row).items():
            if name != "participant_id" and row[name] is not None:
                assert same(columns.parse_value(TYPES[name], text), row[name])


def test_values_written_by_insert_rows_come_back_identical(db, xtype, experiment):
    make_rows(xtype, experiment, ROWS)
    assert_same_rows(ROWS, stored(db, xtype, experiment))


def test_rows_added_one_by_one_come_back_identical(db, xtype, experiment):
    for row in ROWS:
        values = datatables.parse_row(xtype, texts_of(row))
        returned = datatables.insert_row(xtype, experiment.uuid, values)
        assert_same_rows([row], [returned])
    assert_same_rows(ROWS, stored(db, xtype, experiment))


def test_edits_store_negative_zero_and_exact_json(db, xtype, experiment):
    first = {"participant_id": "P1", "x": 0.0, "j": 1}
    row = datatables.insert_row(xtype, experiment.uuid, first)
    assert same(row["x"], 0.0) and same(row["j"], 1)
    for x, j in [(-0.0, 1.0), (0.0, -0.0), (-0.0, [1.0, 2**70])]:
        values = datatables.parse_row(xtype, {"x": repr(x), "j": repr(j)}, True)
        if isinstance(j, list):
            values["j"] = j  # repr() of a list is not JSON for every item
        row = datatables.update_row(
            xtype, experiment.uuid, row["id"], values, row["updated_at"]
        )
        [found] = stored(db, xtype, experiment)
        assert same(found["x"], x) and same(found["j"], j), (x, j, found)
        row = found


def write_csv(tmp_path, rows: list[dict[str, Any]], with_id: bool = False) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    header = ["id"] if with_id else ["participant_id"]
    writer.writerow([*header, *NAMES])
    for row in rows:
        texts = texts_of(row)
        first = str(row["id"]) if with_id else texts["participant_id"]
        writer.writerow([first, *(texts[n] for n in NAMES)])
    path = tmp_path / "values.csv"
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    return str(path)


def run_import(db, xtype, experiment, path: str, **options: Any):
    try:
        report = import_file(xtype, experiment.uuid, path, ImportOptions(**options))
        db.session.commit()
        return report
    except Exception:
        db.session.rollback()
        raise


def as_imported(row: dict[str, Any]) -> dict[str, Any]:
    """What a file stores for `row`: an empty text is an empty cell, i.e. no value."""
    return {
        k: None if v == "" and TYPES.get(k) == "TEXT" else v for k, v in row.items()
    }


@pytest.mark.parametrize(
    "missing",
    [frozenset(), frozenset({"NA"})],
    ids=["whole-column fast path", "cell by cell"],
)
def test_imported_values_come_back_identical(db, xtype, experiment, tmp_path, missing):
    report = run_import(
        db, xtype, experiment, write_csv(tmp_path, ROWS), missing=missing
    )
    assert report.written == len(ROWS)
    assert_same_rows([as_imported(r) for r in ROWS], stored(db, xtype, experiment))


def test_import_in_update_mode_stores_values_identically(
    db, xtype, experiment, tmp_path
):
    make_rows(
        xtype, experiment, [{"participant_id": r["participant_id"]} for r in ROWS]
    )
    ids = [r["id"] for r in stored(db, xtype, experiment)]
    rows = [{**r, "id": i} for r, i in zip(ROWS, ids, strict=True)]
    report = run_import(
        db, xtype, experiment, write_csv(tmp_path, rows, True), mode="update"
    )
    assert report.written == len(ROWS)
    assert_same_rows([as_imported(r) for r in ROWS], stored(db, xtype, experiment))


def test_text_with_nul_is_refused_by_every_write_path(db, xtype, experiment, tmp_path):
    for name in ("s", "t"):
        with pytest.raises(RowProblems) as caught:
            datatables.parse_row(xtype, {"participant_id": "P1", name: "a\x00b"})
        assert "NUL" in caught.value.problems[name]
        bad = {**ROWS[0], name: "a\x00b"}
        with pytest.raises(ImportRefused) as refused:
            run_import(db, xtype, experiment, write_csv(tmp_path, [ROWS[1], bad]))
        [problem] = refused.value.report.problems
        assert (problem.row, problem.column) == (2, name)
        assert "NUL" in problem.rule
    assert stored(db, xtype, experiment) == []


def test_columns_are_declared_for_exact_storage(db, xtype, experiment, dialect):
    make_rows(xtype, experiment, ROWS)
    found = {
        c["name"]: c["type"]
        for c in sa.inspect(db.session.connection()).get_columns(xtype.table_name)
    }
    assert isinstance(found["x"], sa.Float)
    assert isinstance(found["j"], sa.JSON)
    if dialect == "sqlite":
        conn = db.session.connection()
        assert datatables.stale_sqlite_columns(conn, xtype.table_name, EVERY_TYPE) == []
        assert storage_classes(db, xtype.table_name, "x") == {"real"}
        assert storage_classes(db, xtype.table_name, "j") == {"text"}


@pytest.mark.parametrize(
    ("declared", "affinity"),
    [
        ("FLOAT", "REAL"),
        ("FLOAT BLOB", "BLOB"),
        ("JSON", "NUMERIC"),
        ("JSON TEXT", "TEXT"),
        ("INTEGER", "INTEGER"),
        ("VARCHAR(255)", "TEXT"),
        ("TEXT", "TEXT"),
        ("BOOLEAN", "NUMERIC"),
        ("DATETIME", "NUMERIC"),
        ("", "BLOB"),
        ("FLOATING POINT", "INTEGER"),  # "INT" wins (sqlite.org/datatype3.html)
    ],
)
def test_sqlite_affinity_follows_the_documented_rules(declared, affinity):
    assert datatables.sqlite_affinity(declared) == affinity


def test_schema_changes_keep_values_exact(db, dialect):
    defs = [
        ColumnDef("x", "FLOAT"),
        ColumnDef("raw", "TEXT"),
        ColumnDef("k", "INTEGER"),
    ]
    xtype = make_type("Evolving", "evolving_data", defs)
    experiment = make_experiment(xtype)
    rows = [
        {"participant_id": "P1", "x": -0.0, "raw": "1.0", "k": 0},
        {"participant_id": "P2", "x": 5e-324, "raw": str(2**70), "k": -7},
        {"participant_id": "P3", "x": 0.1, "raw": '{"b": -0.0, "a": 1.0}', "k": 1},
    ]
    make_rows(xtype, experiment, rows)
    schema.rename_column(xtype, "x", "y")  # SQLite rebuilds the table
    schema.change_type(xtype, "raw", "JSON")
    schema.change_type(xtype, "k", "FLOAT")
    schema.add_column(xtype, ColumnDef("extra", "JSON"))
    schema.add_column(xtype, ColumnDef("z", "FLOAT", False), fill_text="-0.0")
    make_rows(
        xtype,
        experiment,
        [{"participant_id": "P4", "y": -0.0, "raw": 1.0, "extra": 2**70, "z": 1.0}],
    )
    found = stored(db, xtype, experiment)
    expected = [
        {"y": -0.0, "raw": 1.0, "k": 0.0, "extra": None, "z": -0.0},
        {"y": 5e-324, "raw": 2**70, "k": -7.0, "extra": None, "z": -0.0},
        {"y": 0.1, "raw": {"b": -0.0, "a": 1.0}, "k": 1.0, "extra": None, "z": -0.0},
        {"y": -0.0, "raw": 1.0, "k": None, "extra": 2**70, "z": 1.0},
    ]
    assert_same_rows(expected, found)
    if dialect == "sqlite":
        conn = db.session.connection()
        assert (
            datatables.stale_sqlite_columns(conn, "evolving_data", xtype.columns) == []
        )


def test_table_rebuild_never_hands_out_a_deleted_id_again(db, xtype, experiment):
    make_rows(xtype, experiment, [{"participant_id": f"P{i}"} for i in range(3)])
    last = stored(db, xtype, experiment)[-1]["id"]
    assert datatables.delete_rows(xtype, experiment.uuid, [last]) == 1
    schema.rename_column(xtype, "x", "y")  # SQLite rebuilds the table
    make_rows(xtype, experiment, [{"participant_id": "new"}])
    assert stored(db, xtype, experiment)[-1]["id"] > last


# ----------------------------------------------------------------------
# Migration 0006: SQLite tables made before exact storage
# ----------------------------------------------------------------------

LEGACY = [ColumnDef("x", "FLOAT"), ColumnDef("j", "JSON"), ColumnDef("n", "INTEGER")]
LEGACY_ROWS = [
    {"participant_id": "P1", "x": -0.0, "j": 1.0, "n": 1},
    {"participant_id": "P2", "x": 0.1, "j": 2**70, "n": 2},
    {"participant_id": "P3", "x": 2.0, "j": 0.30000000000000004, "n": 3},
    {"participant_id": "P4", "x": 1e300, "j": [1.0, "1"], "n": 4},
    {"participant_id": "P5", "x": None, "j": "1", "n": 5},
    {"participant_id": "P6", "x": 5e-324, "j": -0.0, "n": 6},
]
# What the old declarations kept: FLOAT lost the sign of zero, JSON the number types
# and a big integer's digits; the migration must keep the rest exactly.
LEGACY_READ = [
    {"x": 0.0, "j": 1},
    {"x": 0.1, "j": 1.1805916207174113e21},
    {"x": 2.0, "j": 0.30000000000000004},
    {"x": 1e300, "j": [1.0, "1"]},
    {"x": None, "j": "1"},
    {"x": 5e-324, "j": 0},
]


def make_legacy_table(db, xtype) -> None:
    """Replace the type's table by one declared as before 0006: FLOAT and JSON."""
    conn = db.session.connection()
    table = datatables.build_table(xtype.table_name, LEGACY)
    table.c.x.type = sa.Float()
    table.c.j.type = sa.JSON(none_as_null=True)
    table.drop(conn)
    table.create(conn)
    db.session.commit()
    datatables.forget(xtype.table_name)


def stale_names(db) -> set[str]:
    conn = db.session.connection()
    return {
        c.name for c in datatables.stale_sqlite_columns(conn, "legacy_data", LEGACY)
    }


def test_migration_0006_rebuilds_legacy_sqlite_tables_for_exact_values(db, dialect):
    xtype = make_type("Legacy", "legacy_data", LEGACY)
    experiment = make_experiment(xtype)
    if dialect == "sqlite":
        make_legacy_table(db, xtype)
        assert stale_names(db) == {"x", "j"}
    make_rows(xtype, experiment, LEGACY_ROWS)
    schema.add_index(xtype, "x")
    last = stored(db, xtype, experiment)[-1]["id"]
    assert datatables.delete_rows(xtype, experiment.uuid, [last]) == 1
    expected = LEGACY_READ[:-1] if dialect == "sqlite" else LEGACY_ROWS[:-1]
    assert_same_rows(expected, stored(db, xtype, experiment))
    inspector = sa.inspect(db.session.connection())
    indexes = {i["name"] for i in inspector.get_indexes("legacy_data")}
    db.session.rollback()

    downgrade(directory=MIGRATIONS_DIR, revision="0005")
    upgrade(directory=MIGRATIONS_DIR)

    datatables.forget("legacy_data")
    if dialect == "sqlite":
        assert stale_names(db) == set()
    assert_same_rows(expected, stored(db, xtype, experiment))
    inspector = sa.inspect(db.session.connection())
    assert {i["name"] for i in inspector.get_indexes("legacy_data")} == indexes
    if dialect == "sqlite":
        assert storage_classes(db, "legacy_data", "j") == {"text"}
        assert storage_classes(db, "legacy_data", "x") == {"real"}
    make_rows(xtype, experiment, [{"participant_id": "new", "x": -0.0, "j": 1.0}])
    found = stored(db, xtype, experiment)
    assert found[-1]["id"] == len(LEGACY_ROWS) + 1  # the deleted row's id stays used
    assert same(found[-1]["x"], -0.0) and same(found[-1]["j"], 1.0)

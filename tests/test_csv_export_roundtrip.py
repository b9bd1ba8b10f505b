"""Export → parse back: every column type reproduces its stored values (design §5).

The helpers `parse_export` and `assert_same_rows` are meant for the import tests too:
export rows, feed the file to the importer, and compare what was stored with the same
function. Two documented exceptions:

- an empty text is written as an empty cell, and an empty cell reads back as no value
  (design §4: "an empty cell means NULL"), so "" comes back as None;
- a neutralised cell (on by default) keeps its leading apostrophe: `=1+1` is exported as
  `'=1+1`. The round trip below turns neutralisation off (`_neutralise=0`), and a test
  shows that the apostrophe is the only difference when it is on.

A -0.0 comes back from both databases as -0.0 (columns.ExactFloat), and the export
spells it "-0.0"; tests/test_value_storage.py checks the sign of zero everywhere.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from tests.factories import EVERY_TYPE
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import columns
from wave_web import datatables
from wave_web.csv_io import exporting

D = dt.datetime

ROUND_TRIP_COLUMNS = EVERY_TYPE

TRICKY_ROWS = [
    dict(participant_id="P1", n=0, x=0.1, s="a,b", t='say "hi", then\nleave',
         b=True, d=D(2024, 3, 4, 14, 30), j={"a": {"b": [1, 2, {"c": None}]}}),
    dict(participant_id="P2", n=-2147483648, x=1e-05, s='"quoted"', t="line\r\nCRLF",
         b=False, d=D(2024, 3, 4, 14, 30, 0, 1), j={"ü": "naïve ☃", "emoji": "😀"}),
    dict(participant_id="P3", n=2147483647, x=1e20, s="=SUM(A1:A9)", t="+1 -1 @x",
         b=None, d=D(1, 1, 1), j=[2**70, -(2**70), 1.5, True, False]),
    dict(participant_id="=cmd|' /C calc'!A0", n=None, x=-0.0, s="", t="",
         b=True, d=D(9999, 12, 31, 23, 59, 59, 999999), j="a string"),
    dict(participant_id="P 5 ", n=42, x=1e15, s=" leading space", t="\ttab",
         b=False, d=None, j=0),
    dict(participant_id="P6", n=-7, x=1234567890123456.8, s="ＡＢＣ 漢字", t="\x01ctl",
         b=None, d=D(2000, 2, 29, 0, 0, 0, 500000), j={"nested": {"deep": {"x": 1}}}),
    dict(participant_id="P7", n=1, x=5e-324, s="-5", t="\\N", b=True,
         d=D(1970, 1, 1), j=[]),
    dict(participant_id="P8", n=2, x=1.7976931348623157e308, s="\\.", t=None,
         b=False, d=D(2024, 12, 31, 23, 59, 59), j={}),
    dict(participant_id="P9", n=3, x=None, s=None, t="x" * 5000, b=None, d=None,
         j=None),
    dict(participant_id="P10", n=4, x=-2.5, s="NULL", t="null", b=True,
         d=D(2024, 1, 1, 0, 0, 0, 10), j=9007199254740993),
]  # fmt: skip


# ----------------------------------------------------------------------
# Helpers (shared with the import tests)
# ----------------------------------------------------------------------


def parse_export(data: bytes, types: dict[str, str]) -> list[dict[str, Any]]:
    """The rows of an exported CSV, each cell parsed by the column registry.

    `types` maps header names to registry types (or "UUID"); the file must be UTF-8
    (an optional BOM is skipped) with CRLF record ends.
    """
    text = data.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    rows = []
    for record in reader:
        assert len(record) == len(header), record
        cells = zip(header, record, strict=True)
        rows.append({name: _parse(types[name], cell) for name, cell in cells})
    return rows


def _parse(type_name: str, cell: str) -> Any:
    if type_name == "UUID":
        return cell or None
    return columns.parse_value(type_name, cell)


def same_value(expected: Any, actual: Any) -> bool:
    """Equal values of the same kind (True is not 1, 1.0 is not 1, NaN never stored)."""
    if isinstance(expected, float) or isinstance(actual, float):
        return (
            type(expected) is type(actual)
            and expected == actual
            and not math.isnan(expected)
        )
    if isinstance(expected, dict) and isinstance(actual, dict):
        return list(expected) == list(actual) and all(
            same_value(expected[k], actual[k]) for k in expected
        )
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(
            same_value(e, a) for e, a in zip(expected, actual, strict=True)
        )
    return type(expected) is type(actual) and expected == actual


def assert_same_rows(
    expected: Sequence[dict[str, Any]],
    actual: Sequence[dict[str, Any]],
    names: Iterable[str],
) -> None:
    """Row by row, column by column; the message lists every differing cell."""
    names = list(names)
    assert len(actual) == len(expected), f"{len(actual)} rows, not {len(expected)}"
    pairs = zip(expected, actual, strict=True)
    wrong = [
        (i, name, expected_row.get(name), actual_row.get(name))
        for i, (expected_row, actual_row) in enumerate(pairs)
        for name in names
        if not same_value(expected_row.get(name), actual_row.get(name))
    ]
    assert wrong == [], wrong


TEXT_COLUMNS = frozenset({"participant_id", "s", "t"})


def as_imported(
    row: dict[str, Any], text_columns: Iterable[str] = TEXT_COLUMNS
) -> dict[str, Any]:
    """What an upload stores for `row`: an empty text is an empty cell, i.e. None."""
    texts = set(text_columns)
    return {k: (None if k in texts and v == "" else v) for k, v in row.items()}


def stored_rows(xtype, experiment) -> list[dict[str, Any]]:
    """The experiment's rows as the database gives them back, in id order."""
    from wave_web.extensions import db

    table = datatables.reflect(xtype)
    stmt = (
        sa.select(table)
        .where(table.c.experiment_uuid == experiment.uuid)
        .order_by(table.c.id)
    )
    return [dict(r) for r in db.session.execute(stmt).mappings()]


def export_types(xtype) -> dict[str, str]:
    types = {"id": "INTEGER", "experiment_uuid": "UUID", "participant_id": "STRING"}
    types |= {"created_at": "DATETIME", "updated_at": "DATETIME"}
    return types | {c.name: c.type for c in xtype.columns}


def download(client, experiment, query: str = "_neutralise=0") -> bytes:
    response = client.get(f"/experiments/{experiment.uuid}/export.csv?{query}")
    assert response.status_code == 200, response.data[-500:]
    return response.data


# ----------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------

NAMES = ["participant_id", *(c.name for c in ROUND_TRIP_COLUMNS)]


@pytest.fixture
def tricky(db):
    xtype = make_type("Round trip", "round_trip_data", ROUND_TRIP_COLUMNS)
    experiment = make_experiment(xtype, "Tricky values")
    make_rows(xtype, experiment, TRICKY_ROWS)
    return xtype, experiment


def test_export_parses_back_to_the_stored_values(client, tricky):
    xtype, experiment = tricky
    rows = parse_export(download(client, experiment), export_types(xtype))
    stored = stored_rows(xtype, experiment)
    assert_same_rows([as_imported(r) for r in stored], rows, ["id", *NAMES])


def test_export_parses_back_to_the_values_that_were_written(client, tricky):
    xtype, experiment = tricky
    rows = parse_export(download(client, experiment), export_types(xtype))
    assert_same_rows([as_imported(r) for r in TRICKY_ROWS], rows, NAMES)


def test_empty_text_and_no_value_both_export_as_an_empty_cell(client, tricky):
    xtype, experiment = tricky
    rows = parse_export(download(client, experiment), export_types(xtype))
    p4 = next(r for r in rows if r["n"] is None)
    assert p4["s"] is None and p4["t"] is None  # stored as "" (design: empty = NULL)


def test_exported_floats_and_times_are_spelled_canonically(client, tricky):
    xtype, experiment = tricky
    text = download(client, experiment, "_neutralise=0&_id=0").decode("utf-8")
    records = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [r["x"] for r in records] == [
        "0.1", "1e-05", "1e+20", "-0.0", "1000000000000000.0",
        "1234567890123456.8", "5e-324", "1.7976931348623157e+308", "", "-2.5",
    ]  # fmt: skip
    assert [r["x"] for r in records] == [
        "" if r["x"] is None else repr(r["x"]) for r in TRICKY_ROWS
    ]
    assert [r["d"] for r in records] == [
        "2024-03-04T14:30:00Z",
        "2024-03-04T14:30:00.000001Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "",
        "2000-02-29T00:00:00.500000Z",
        "1970-01-01T00:00:00Z",
        "2024-12-31T23:59:59Z",
        "",
        "2024-01-01T00:00:00.000010Z",
    ]
    assert [r["b"] for r in records] == [
        "true", "false", "", "true", "false", "", "true", "false", "", "true",
    ]  # fmt: skip
    assert records[1]["j"] == '{"ü":"naïve ☃","emoji":"😀"}'  # compact, not escaped
    assert records[2]["j"] == f"[{2**70},{-(2**70)},1.5,true,false]"


def test_neutralised_cells_are_the_only_difference(client, tricky):
    xtype, experiment = tricky
    plain = parse_export(download(client, experiment), export_types(xtype))
    safe = parse_export(download(client, experiment, ""), export_types(xtype))
    differences = {
        (name, p[name], s[name])
        for p, s in zip(plain, safe, strict=True)
        for name in NAMES
        if not same_value(p[name], s[name])
    }
    assert differences == {
        ("participant_id", "=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("s", "=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("t", "+1 -1 @x", "'+1 -1 @x"),
        ("t", "\ttab", "'\ttab"),
        ("s", "-5", "'-5"),
    }


def test_type_export_parses_back_with_experiment_uuids(client, tricky):
    xtype, experiment = tricky
    other = make_experiment(xtype, "Other")
    make_rows(xtype, other, [dict(participant_id="Q1", n=9, x=2.0)])
    response = client.get(f"/types/{xtype.id}/export.csv?_neutralise=0")
    rows = parse_export(response.data, export_types(xtype))
    assert [r["experiment_uuid"] for r in rows] == [str(experiment.uuid)] * len(
        TRICKY_ROWS
    ) + [str(other.uuid)]
    stored = stored_rows(xtype, experiment) + stored_rows(xtype, other)
    assert_same_rows([as_imported(r) for r in stored], rows, ["id", *NAMES])


# ----------------------------------------------------------------------
# Property: random valid rows → export → parse → the same values
# ----------------------------------------------------------------------

_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4)
    ),
    max_leaves=10,
).filter(lambda v: v is not None)
_row = st.fixed_dictionaries(
    {
        "participant_id": _text.filter(lambda s: 0 < len(s) <= 100),
        "n": st.none() | st.integers(columns.INT_MIN, columns.INT_MAX),
        "x": st.none() | st.floats(allow_nan=False, allow_infinity=False),
        "s": st.none() | _text,
        "t": st.none() | _text,
        "b": st.none() | st.booleans(),
        "d": st.none()
        | st.datetimes(min_value=D(1, 1, 1), max_value=D(9999, 12, 31, 23, 59, 59)),
        "j": st.none() | _json,
    }
)


def test_random_rows_round_trip_through_an_export(client, db):
    xtype = make_type("Property", "property_data", ROUND_TRIP_COLUMNS)

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(_row, min_size=1, max_size=12))
    def check(rows):
        experiment = make_experiment(xtype, "Generated")
        make_rows(xtype, experiment, rows)
        exported = parse_export(download(client, experiment), export_types(xtype))
        stored = stored_rows(xtype, experiment)
        assert_same_rows([as_imported(r) for r in stored], exported, ["id", *NAMES])

    check()


def test_neutralise_leaves_other_text_alone():
    for text in ("", "a=b", "'=x", " =x", "1", "é=", "\n=x"):
        assert exporting.neutralise(text) == text
    for text in ("=x", "+x", "-x", "@x", "\tx", "\rx"):
        assert exporting.neutralise(text) == "'" + text


def test_random_rows_survive_export_then_import_into_an_empty_experiment(
    client, db, tmp_path
):
    """The issue's round trip: rows → export → upload pipeline → identical values."""
    from wave_web.csv_io.importing import ImportOptions
    from wave_web.csv_io.importing import import_file

    xtype = make_type("Round trip import", "round_trip_import", ROUND_TRIP_COLUMNS)
    row = _row.filter(lambda r: r["participant_id"].strip() != "")

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(row, min_size=1, max_size=10))
    def check(rows):
        source = make_experiment(xtype, "Source")
        make_rows(xtype, source, rows)
        path = tmp_path / "export.csv"
        path.write_bytes(download(client, source, "_neutralise=0&_id=0"))
        target = make_experiment(xtype, "Target")
        try:
            import_file(xtype, target.uuid, str(path), ImportOptions())
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        expected = [as_imported(r) for r in stored_rows(xtype, source)]
        assert_same_rows(expected, stored_rows(xtype, target), NAMES)

    check()

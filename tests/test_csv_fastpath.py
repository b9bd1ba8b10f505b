"""The import's whole-column fast path gives what the registry gives cell by cell.

For every column type, random cell texts (including the spellings the registry refuses)
go through both paths: when the fast path accepts a column it must produce the same
values as wave_web.columns.parse_value, and it must never accept a column the registry
refuses.
"""

from __future__ import annotations

import math

import sqlalchemy as sa
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from wave_web import columns
from wave_web.csv_io import fastpath

SPELLINGS = {
    "INTEGER": ["0", "42", "-7", "+3", " 5 ", "1.0", "1e3", "1_000", "2147483648",
                "-2147483648", "0x10", "٣", "", " ", "--1", "+"],
    "FLOAT": ["0.25", "1e-05", "-0.0", "1E5", ".5", "5.", "nan", "inf", "1e400",
              "1_0", "", " ", "1.5.", "+-1", "１"],
    "STRING": ["a", "", " ", "x" * 255, "x" * 256, "a\x00b", "grün", "tab\there"],
    "TEXT": ["a", "", " ", "line\nline", "a\x00b", "back\\slash", "\r"],
    "BOOLEAN": ["true", "F", " yes ", "N", "1", "0", "", " ", "maybe", "WAHR", "İ"],
    "DATETIME": ["2024-03-04T14:30:00Z", "2024-03-04 14:30:00+02:00", "2024-03-04",
                 "2024-03-04T14:30:00.1234567", "2024-03-04T14:30:00,5",
                 "03/04/2024", "0001-01-01T00:30:00+01:00", "", " ",
                 "2024-03-04T14:30:00-05:30", "20240304", "2024-W10-1", "+2024-01-01"],
    "JSON": ['{"a": 1}', "[1, 2]", "null", "NaN", "", " ", '"s"', "1" * 25,
             "[" * 70 + "]" * 70, '{"k": "\\u0000"}', "{'a': 1}", " [ ] "],
}  # fmt: skip


def registry(type_name: str, nullable: bool, col: list[str]) -> list | None:
    """Cell by cell with the registry; None when any cell is refused."""
    values = []
    for text in col:
        try:
            value = columns.parse_value(type_name, text)
        except ValueError:
            return None
        if value is None and not nullable:
            return None
        values.append(value)
    return values


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        type(x) is type(y)
        and (x == y or (isinstance(x, float) and math.isnan(x)))
        and (not isinstance(x, float) or math.copysign(1, x) == math.copysign(1, y))
        for x, y in zip(a, b, strict=True)
    )


def cells(type_name: str):
    return st.lists(
        st.one_of(st.sampled_from(SPELLINGS[type_name]), st.text(max_size=12)),
        min_size=1,
        max_size=8,
    )


def check(type_name: str, nullable: bool, col: list[str]) -> None:
    fast = fastpath.PARSERS[type_name](list(col), nullable)
    slow = registry(type_name, nullable, col)
    if fast is not None:
        assert slow is not None, (
            f"fast path accepted what the registry refuses: {col!r}"
        )
        assert same(fast, slow), (col, fast, slow)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(SPELLINGS)), st.booleans(), st.data())
@example("DATETIME", True, None)
def test_fast_path_agrees_with_the_registry(type_name, nullable, data):
    if data is None:  # the fixed example: every listed spelling, one by one
        for text in SPELLINGS["DATETIME"]:
            check("DATETIME", True, [text])
        return
    check(type_name, nullable, data.draw(cells(type_name)))


def test_every_listed_spelling_agrees_alone_and_together():
    for type_name, spellings in SPELLINGS.items():
        for nullable in (True, False):
            for text in spellings:
                check(type_name, nullable, [text])
            check(type_name, nullable, list(spellings))


def test_fast_path_accepts_plain_columns():
    assert fastpath.PARSERS["INTEGER"](["1", "", "-3"], True) == [1, None, -3]
    assert fastpath.PARSERS["DATETIME"](["2024-01-01T10:00:00+02:00"], False)
    assert fastpath.PARSERS["JSON"](['{"a":[1]}', ""], True) == [{"a": [1]}, None]


def test_copy_output_escapes_and_marks_null():
    convert = fastpath.column_converter("TEXT", True, "copy")
    assert convert(["a\tb", "", "c\\d\n"]) == ["a\\tb", "\\N", "c\\\\d\\n"]
    assert fastpath.column_converter("BOOLEAN", True, "copy")(["yes", ""]) == [
        "t",
        "\\N",
    ]
    assert fastpath.column_converter("JSON", True, "copy")(['{ "a" : "\\\\" }']) == [
        '{"a":"\\\\\\\\"}'
    ]


def sqlite_processor(type_name: str):
    """The app engine's own bind processor for a column of this type on SQLite."""
    from wave_web.csv_io.importing import _bind_processor

    engine = sa.create_engine("sqlite://", json_serializer=columns.format_json)
    column = sa.Column("c", columns.COLUMN_TYPES[type_name].sql())
    return _bind_processor(column, engine.dialect)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["BOOLEAN", "DATETIME", "JSON"]), st.booleans(), st.data())
def test_sqlite_output_is_what_the_bind_processor_sends(type_name, nullable, data):
    col = data.draw(cells(type_name))
    processor = sqlite_processor(type_name)
    fast = fastpath.column_converter(type_name, nullable, "sqlite", processor)(col)
    values = fastpath.PARSERS[type_name](list(col), nullable)
    if values is not None:
        assert fast == [processor(v) for v in values]


def test_sqlite_output_takes_the_fast_form_only_when_it_agrees():
    assert (
        fastpath._sqlite_out("JSON", sqlite_processor("JSON"))
        is (fastpath._SQLITE_OUT["JSON"])
    )
    # another serializer (stdlib json: spaces after commas) keeps the processor
    other = sa.create_engine("sqlite://").dialect
    from wave_web.csv_io.importing import _bind_processor

    plain = _bind_processor(sa.Column("c", sa.JSON(none_as_null=True)), other)
    out = fastpath._sqlite_out("JSON", plain)
    assert out is not fastpath._SQLITE_OUT["JSON"]
    assert out([[1, 2], None]) == ["[1, 2]", None]


def test_json_texts_of_a_column_holding_the_separator_string():
    sentinel = fastpath._SENTINEL
    values = [{"a": 1}, None, [1, sentinel, 2], sentinel, [], None, "x"]
    expected = [None if v is None else columns.format_json(v) for v in values]
    assert fastpath._json_texts(values) == expected
    assert fastpath._json_texts([None, None]) == [None, None]

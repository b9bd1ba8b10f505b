"""columns: name rules, value parsers and schema definitions (no database)."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wave_web import columns
from wave_web.columns import ColumnDef
from wave_web.errors import InvalidName
from wave_web.errors import InvalidValue

# ------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------

REFUSED_NAMES = [
    # (name, kind, words the message must contain)
    ("select", "column", ["reserved"]),
    ("order", "column", ["reserved"]),
    ("user", "column", ["reserved"]),
    ("table", "table", ["reserved"]),
    ("group", "column", ["reserved"]),
    ("limit", "table", ["reserved"]),
    ("index", "column", ["reserved"]),
    ("key", "column", ["reserved"]),  # SQLite only
    ("analyze", "table", ["reserved"]),
    ("xmin", "column", ["reserved"]),  # PostgreSQL system columns
    ("ctid", "column", ["reserved"]),
    ("oid", "column", ["reserved"]),
    ("rowid", "column", ["reserved"]),  # SQLite's rowid alias
    ("pg_stats", "table", ["pg_"]),
    ("sqlite_master", "table", ["sqlite_"]),
    ("pg_value", "column", ["pg_"]),
    ("tags", "table", ["own tables"]),
    ("experiments", "table", ["own tables"]),
    ("experiment_types", "table", ["own tables"]),
    ("alembic_version", "table", ["own tables"]),
    ("id", "column", ["standard column"]),
    ("experiment_uuid", "column", ["standard column"]),
    ("participant_id", "column", ["standard column"]),
    ("created_at", "column", ["standard column"]),
    ("updated_at", "column", ["standard column"]),
    ("é" * 32, "column", ["64 bytes", "63 bytes"]),
    ("a" * 64, "table", ["64 bytes", "63 bytes"]),
    ("ReactionTime", "column", ["upper-case"]),
    ("SELECT", "column", ["upper-case"]),
    ('a"b', "column", ["double quote"]),
    ("a'b", "column", ["quote"]),
    ("x; drop table tags", "table", ["semicolon"]),
    ("reaction time", "column", ["space"]),
    (" rt", "column", ["space"]),
    ("", "column", ["empty"]),
    ("1st_block", "column", ["start with a letter"]),
    ("_rt", "table", ["start with a letter"]),
    ("größe", "column", ["ö"]),
    ("éclair", "column", ["start with a letter"]),
    ("a\x00b", "column", ["control character"]),
    ("a-b", "column", ["“-”"]),
]


@pytest.mark.parametrize(("name", "kind", "words"), REFUSED_NAMES)
def test_hostile_name_is_refused_with_the_rule_it_breaks(name, kind, words):
    with pytest.raises(InvalidName) as info:
        columns.validate_name(name, kind)
    for word in words:
        assert word in info.value.message
    assert info.value.name == name


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a" * 63, "column"),
        ("a" * 63, "table"),
        ("reaction_time", "column"),
        ("rt2", "column"),
        ("stroop_data", "table"),
        ("tags", "column"),  # a static table name is a fine column name
        ("id_value", "column"),
        ("selection", "column"),  # contains a reserved word, is not one
    ],
)
def test_valid_name_is_accepted_unchanged(name, kind):
    assert columns.validate_name(name, kind) == name


def test_static_table_names_cover_the_seed_tables():
    assert {"tags", "experiments", "experiment_types", "alembic_version"} <= (
        columns.STATIC_TABLES
    )


@pytest.mark.parametrize(("taken", "kind"), [(["RT"], "column"), (["rt"], "table")])
def test_name_already_taken_is_refused_ignoring_case(taken, kind):
    with pytest.raises(InvalidName) as info:
        columns.validate_name("rt", kind, taken)
    assert "already" in info.value.message
    assert info.value.suggestion not in {"rt", None}
    assert info.value.suggestion.lower() not in {t.lower() for t in taken}
    assert columns.validate_name(info.value.suggestion, kind, taken)


def test_suggestion_skips_every_taken_variant():
    with pytest.raises(InvalidName) as info:
        columns.validate_name("rt", "column", ["rt", "RT_2", "rt_3"])
    assert info.value.suggestion == "rt_4"


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("Reaction Time", "column", "reaction_time"),
        ("Reaction Task", "table", "reaction_task"),
        ("  Stroop -- task!  ", "table", "stroop_task"),
        ("Größe", "column", "groe"),
        ("pg_stats", "table", "stats"),
    ],
)
def test_suggestion_is_the_typed_text_made_valid(text, kind, expected):
    assert columns.suggest_name(text, kind) == expected


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("select", "column"),
        ("select", "table"),
        ("order", "column"),
        ("tags", "table"),
        ("id", "column"),
        ("1st block", "column"),
        ("9", "table"),
        ("x; drop table tags", "table"),
        ("sqlite_master", "table"),
        ("é" * 40, "column"),
        ("a" * 100, "table"),
        ('a"b', "column"),
    ],
)
def test_suggestion_for_a_refused_name_is_itself_valid(text, kind):
    suggestion = columns.suggest_name(text, kind)
    assert suggestion is not None
    assert suggestion != text
    assert columns.validate_name(suggestion, kind) == suggestion


@pytest.mark.parametrize("text", ["", "   ", "!!!", "日本語", "_-_"])
def test_no_suggestion_when_nothing_usable_is_left(text):
    assert columns.suggest_name(text) is None


@given(st.text(max_size=80), st.sampled_from(["column", "table"]))
def test_any_suggestion_passes_validation(text, kind):
    suggestion = columns.suggest_name(text, kind)
    if suggestion is not None:
        assert columns.validate_name(suggestion, kind) == suggestion


# ------------------------------------------------------------------------------------
# Values
# ------------------------------------------------------------------------------------

ACCEPTED = [
    ("INTEGER", "42", 42),
    ("INTEGER", " -7 ", -7),
    ("INTEGER", "+3", 3),
    ("INTEGER", "2147483647", 2147483647),
    ("INTEGER", "-2147483648", -2147483648),
    ("FLOAT", "0.25", 0.25),
    ("FLOAT", "1.5e-3", 0.0015),
    ("FLOAT", ".5", 0.5),
    ("FLOAT", "-0", -0.0),
    ("FLOAT", " 3 ", 3.0),
    ("STRING", "a" * 255, "a" * 255),
    ("STRING", "  padded  ", "  padded  "),
    ("STRING", "Grüße, 世界", "Grüße, 世界"),
    ("TEXT", "x" * (1 << 20), "x" * (1 << 20)),
    ("TEXT", " line\nbreak ", " line\nbreak "),
    ("DATETIME", "2024-03-04T14:30:00Z", dt.datetime(2024, 3, 4, 14, 30)),
    ("DATETIME", "2024-03-04 14:30:00.123", dt.datetime(2024, 3, 4, 14, 30, 0, 123000)),
    ("DATETIME", "2024-03-04", dt.datetime(2024, 3, 4)),
    ("DATETIME", "2024-03-04T16:30:00+02:00", dt.datetime(2024, 3, 4, 14, 30)),
    ("DATETIME", "2024-03-04T09:00:00-05:30", dt.datetime(2024, 3, 4, 14, 30)),
    ("JSON", '{"a": 1, "b": [true, null]}', {"a": 1, "b": [True, None]}),
    ("JSON", "null", None),  # the JSON literal null is "no value", like an empty cell
    ("JSON", "[1, 2.5]", [1, 2.5]),
    ("JSON", "3", 3),
    ("JSON", '"text"', "text"),
]
ACCEPTED += [
    ("BOOLEAN", t, True)
    for t in ("true", "TRUE", "t", "T", "yes", "Yes", "y", "Y", "1")
]
ACCEPTED += [
    ("BOOLEAN", t, False)
    for t in ("false", "False", "f", "F", "no", "NO", "n", "N", "0")
]

REFUSED = [
    # (type, text, words the message must contain)
    ("INTEGER", "1.0", "whole number"),
    ("INTEGER", "1e3", "whole number"),
    ("INTEGER", "1,000", "whole number"),
    ("INTEGER", "0x10", "whole number"),
    ("INTEGER", "2147483648", "2147483647"),
    ("INTEGER", "-2147483649", "-2147483648"),
    ("INTEGER", "١٢", "whole number"),
    ("INTEGER", "1_000", "whole number"),
    ("INTEGER", "+", "whole number"),
    ("INTEGER", "²", "whole number"),
    ("FLOAT", "NaN", "finite"),
    ("FLOAT", "nan", "finite"),
    ("FLOAT", "inf", "finite"),
    ("FLOAT", "-Infinity", "finite"),
    ("FLOAT", "1e400", "finite"),
    ("FLOAT", "1_0", "number"),
    ("FLOAT", "abc", "number"),
    ("FLOAT", "1,5", "number"),
    ("FLOAT", "١.٥", "number"),
    ("STRING", "a" * 256, "255"),
    ("STRING", "a\x00b", "NUL"),
    ("TEXT", "a\x00b", "NUL"),
    ("BOOLEAN", "2", "true or false"),
    ("BOOLEAN", "maybe", "true or false"),
    ("BOOLEAN", "on", "true or false"),
    ("DATETIME", "03/04/2024", "ISO 8601"),
    ("DATETIME", "4.3.2024", "ISO 8601"),
    ("DATETIME", "2024-13-01", "ISO 8601"),
    ("DATETIME", "2024-03-04T25:00", "ISO 8601"),
    ("DATETIME", "yesterday", "ISO 8601"),
    ("DATETIME", "0001-01-01T00:00:00+01:00", "years 1 and 9999"),
    ("DATETIME", "9999-12-31T23:59:59-01:00", "years 1 and 9999"),
    ("JSON", "NaN", "JSON"),
    ("JSON", "[1, Infinity]", "JSON"),
    ("JSON", "{'a': 1}", "JSON"),
    ("JSON", '{"a":}', "JSON"),
]


@pytest.mark.parametrize(("type_name", "text", "expected"), ACCEPTED)
def test_value_is_parsed(type_name, text, expected):
    value = columns.parse_value(type_name, text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(("type_name", "text", "words"), REFUSED)
def test_bad_value_is_refused_with_the_reason(type_name, text, words):
    with pytest.raises(ValueError) as info:
        columns.parse_value(type_name, text)
    assert words in str(info.value)


def test_negative_zero_keeps_its_sign():
    assert math.copysign(1, columns.parse_value("FLOAT", "-0")) == -1


@pytest.mark.parametrize("type_name", columns.TYPE_NAMES)
def test_empty_cell_is_none_for_every_type(type_name):
    assert columns.parse_value(type_name, "") is None
    assert columns.parse_value(type_name, None) is None
    assert columns.format_value(type_name, None) == ""


@pytest.mark.parametrize(
    "type_name", ["INTEGER", "FLOAT", "BOOLEAN", "DATETIME", "JSON"]
)
def test_blank_cell_is_none_for_non_text_types(type_name):
    assert columns.parse_value(type_name, "   ") is None


@pytest.mark.parametrize("type_name", ["STRING", "TEXT"])
def test_blank_cell_is_kept_for_text_types(type_name):
    assert columns.parse_value(type_name, "   ") == "   "


@pytest.mark.parametrize(
    ("type_name", "value", "text"),
    [
        ("INTEGER", -7, "-7"),
        ("FLOAT", 0.1, "0.1"),
        ("FLOAT", 0.1 + 0.2, "0.30000000000000004"),
        ("FLOAT", 1e16, "1e+16"),
        ("FLOAT", 2.0, "2.0"),
        ("BOOLEAN", True, "true"),
        ("BOOLEAN", False, "false"),
        ("DATETIME", dt.datetime(2024, 3, 4, 14, 30), "2024-03-04T14:30:00Z"),
        (
            "DATETIME",
            dt.datetime(2024, 3, 4, 16, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2024-03-04T14:30:00Z",
        ),
        ("JSON", {"b": [1, 2], "a": {"c": None}}, '{"b":[1,2],"a":{"c":null}}'),
        ("JSON", "é", '"é"'),
        ("STRING", " as typed ", " as typed "),
    ],
)
def test_value_is_written_in_its_canonical_form(type_name, value, text):
    assert columns.format_value(type_name, value) == text


def test_json_keeps_key_order():
    value = columns.parse_value("JSON", '{"z": 1, "a": 2, "m": 3}')
    assert list(value) == ["z", "a", "m"]
    assert columns.format_value("JSON", value) == '{"z":1,"a":2,"m":3}'


def _round_trips(type_name, value):
    text = columns.format_value(type_name, value)
    back = columns.parse_value(type_name, text)
    assert back == value
    assert columns.format_value(type_name, back) == text


@given(st.integers(columns.INT_MIN, columns.INT_MAX))
def test_integer_round_trips(value):
    _round_trips("INTEGER", value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_round_trips_through_its_shortest_repr(value):
    _round_trips("FLOAT", value)
    assert columns.format_value("FLOAT", value) == repr(value)


@given(
    st.text(
        st.characters(codec="utf-8", exclude_characters="\x00"),
        min_size=1,
        max_size=255,
    )
)
def test_string_round_trips(value):
    _round_trips("STRING", value)


@given(st.datetimes())
def test_datetime_round_trips(value):
    _round_trips("DATETIME", value)


_json_text = st.text(st.characters(codec="utf-8"), max_size=10)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _json_text
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(_json_text, inner, max_size=4)
    ),
    max_leaves=12,
).filter(lambda v: v is not None)


@given(_json_values)
def test_json_round_trips(value):
    _round_trips("JSON", value)


# ------------------------------------------------------------------------------------
# Schema definitions
# ------------------------------------------------------------------------------------


def test_both_seed_forms_are_read_in_order():
    definition = {
        "reaction_time": "FLOAT",
        "accuracy": {"type": "FLOAT", "nullable": False},
        "block": "integer",
        "notes": {"type": "TEXT", "description": "free text"},
    }
    assert columns.normalise_schema(definition) == [
        ColumnDef("reaction_time", "FLOAT"),
        ColumnDef("accuracy", "FLOAT", nullable=False),
        ColumnDef("block", "INTEGER"),
        ColumnDef("notes", "TEXT", description="free text"),
    ]


def test_stored_form_reads_back_the_same_columns():
    defs = [ColumnDef("z_last", "JSON", False, "x"), ColumnDef("a_first", "BOOLEAN")]
    stored = columns.schema_to_json(defs)
    assert list(stored) == ["z_last", "a_first"]
    assert columns.normalise_schema(stored) == defs


@pytest.mark.parametrize("definition", [None, {}])
def test_missing_schema_means_no_columns(definition):
    assert columns.normalise_schema(definition) == []


@pytest.mark.parametrize(
    ("definition", "words"),
    [
        ({"a": "DECIMAL"}, ["Unknown column type", "DECIMAL", "INTEGER"]),
        ({"a": {"type": "VARCHAR(10)"}}, ["Unknown column type", "VARCHAR(10)"]),
        ({"a": {"nullable": True}}, ["needs a type"]),
        ({"a": 5}, ["needs a type"]),
        (
            {"a": {"type": "FLOAT", "nullable": "no"}},
            ["nullable must be true or false"],
        ),
        (["a", "FLOAT"], ["JSON object"]),
    ],
)
def test_bad_schema_definition_is_refused_with_a_clear_message(definition, words):
    with pytest.raises(InvalidValue) as info:
        columns.normalise_schema(definition)
    for word in words:
        assert word in info.value.message

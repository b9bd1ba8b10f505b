"""Locale and tool value formats (csv_io/formats.py): accepted, refused, round trips."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wave_web import columns
from wave_web.csv_io import formats
from wave_web.errors import InvalidValue

ACCEPTED = [
    ("decimal_comma", "0,532", "0.532"),
    ("decimal_comma", "-1,5", "-1.5"),
    ("decimal_comma", " 3 ", "3"),
    ("decimal_comma", "1,5e3", "1.5e3"),
    ("decimal_comma", ",5", ".5"),
    ("dmy", "23.10.2024", "2024-10-23"),
    ("dmy", "23/10/2024", "2024-10-23"),
    ("dmy", "23-10-2024", "2024-10-23"),
    ("dmy", "4.4.2024", "2024-04-04"),
    ("dmy", "23.10.2024 14:31", "2024-10-23T14:31:00"),
    ("dmy", "04/04/2024 14:31:08", "2024-04-04T14:31:08"),
    ("dmy", "23.10.2024 14:31:08.123", "2024-10-23T14:31:08.123000"),
    ("dmy", "14/03/2024 1:22:07 PM", "2024-03-14T13:22:07"),
    ("dmy", "14/03/2024 12:05 am", "2024-03-14T00:05:00"),
    ("mdy", "10/23/2024 1:22:07 PM", "2024-10-23T13:22:07"),
    ("mdy", "03-14-2024", "2024-03-14"),
    ("mdy", "3/14/2024 12:00:00 PM", "2024-03-14T12:00:00"),
    ("psychopy", "2024-10-23_13h56.15.156", "2024-10-23T13:56:15.156000"),
    (
        "psychopy",
        "2024-10-23 13h56.21.519019 +0200",
        "2024-10-23T13:56:21.519019+02:00",
    ),
    (
        "psychopy",
        "2024-03-14 10h02.17.903518 +0100",
        "2024-03-14T10:02:17.903518+01:00",
    ),
    ("psychopy", "2024-10-23_13h56.15", "2024-10-23T13:56:15"),
    ("ctime", "Thu Mar 14 11:20:05 2024", "2024-03-14T11:20:05"),
    ("ctime", "Mon Mar  4 09:00:00 2024", "2024-03-04T09:00:00"),
    ("bool_words", "WAHR", "true"),
    ("bool_words", "FALSCH", "false"),
    ("bool_words", "wahr", "true"),
    ("bool_words", "Ja", "true"),
    ("bool_words", "nein", "false"),
    ("bool_words", "vrai", "true"),
    ("bool_words", "faux", "false"),
    ("bool_words", "oui", "true"),
    ("bool_words", "non", "false"),
    ("bool_words", "waar", "true"),
    ("bool_words", "onwaar", "false"),
    ("bool_words", "sí", "true"),
    ("bool_words", "SÍ", "true"),
    ("bool_words", "si", "true"),
    ("bool_words", "no", "false"),
    ("bool_words", "True", "true"),
    ("bool_words", "0", "false"),
    ("bool_words", " y ", "true"),
]

REFUSED = [
    ("decimal_comma", "1.234,5", "dot"),
    ("decimal_comma", "1,234,5", "thousands"),
    ("decimal_comma", "0.5", "dot"),
    ("decimal_comma", "1 234,5", "decimal comma"),
    ("decimal_comma", "abc", "decimal comma"),
    ("decimal_comma", "1,5e999", "finite"),
    ("decimal_comma", "", "decimal comma"),
    ("dmy", "23.10.24", "four digits"),
    ("dmy", "32.10.2024", "no such date"),
    ("dmy", "10/23/2024", "no such date"),
    ("dmy", "23.10.2024 25:00", "no such date"),
    ("dmy", "23.10.2024 13:00 PM", "day-first"),
    ("dmy", "23.10/2024", "day-first"),
    ("dmy", "2024-10-23", "day-first"),
    ("mdy", "23/10/2024", "no such date"),
    ("mdy", "3/14/24", "four digits"),
    ("mdy", "March 14, 2024", "month-first"),
    ("psychopy", "2024-10-23 13:56:15", "PsychoPy"),
    ("psychopy", "2024-10-23_25h56.15.156", "no such date"),
    ("psychopy", "2024-10-23 13h56.21.519019 +2500", "offset"),
    ("ctime", "Fri Mar 14 11:20:05 2024", "weekday"),
    ("ctime", "Thu Mrz 14 11:20:05 2024", "C-style"),
    ("ctime", "thu mar 14 11:20:05 2024", "C-style"),
    ("ctime", "Thu Mar 14 2024", "C-style"),
    ("bool_words", "vielleicht", "expected true or false"),
    ("bool_words", "2", "expected true or false"),
]


@pytest.mark.parametrize(("key", "text", "canonical"), ACCEPTED)
def test_format_turns_the_cell_into_the_canonical_text(key, text, canonical):
    assert formats.converter(key)(text) == canonical


@pytest.mark.parametrize(("key", "text", "canonical"), ACCEPTED)
def test_every_canonical_text_is_accepted_by_the_registry(key, text, canonical):
    type_name = formats.FORMATS[key].type
    columns.COLUMN_TYPES[type_name].parse(formats.converter(key)(text))


@pytest.mark.parametrize(("key", "text", "rule"), REFUSED)
def test_format_refuses_a_cell_that_does_not_fit_with_its_rule(key, text, rule):
    with pytest.raises(ValueError, match=rule):
        formats.converter(key)(text)


def test_offset_is_kept_so_the_registry_converts_to_utc():
    text = formats.converter("psychopy")("2024-10-23 13h56.21.519019 +0200")
    assert columns.parse_datetime(text) == dt.datetime(2024, 10, 23, 11, 56, 21, 519019)


def test_unknown_format_key_is_an_invalid_value_not_a_key_error():
    with pytest.raises(InvalidValue, match="not a known value format"):
        formats.converter("klingon")


def test_formats_for_lists_the_formats_of_a_type():
    assert [f.key for f in formats.formats_for("DATETIME")] == [
        "dmy",
        "mdy",
        "psychopy",
        "ctime",
    ]
    assert [f.key for f in formats.formats_for("FLOAT")] == ["decimal_comma"]
    assert [f.key for f in formats.formats_for("BOOLEAN")] == ["bool_words"]
    assert formats.formats_for("JSON") == []


def test_every_format_has_a_label_with_an_example_and_a_registry_type():
    for key, fmt in formats.FORMATS.items():
        assert fmt.key == key
        assert "(" in fmt.label
        assert fmt.type in columns.COLUMN_TYPES


# ----------------------------------------------------------------------
# Round trips over generated values
# ----------------------------------------------------------------------

moments = st.datetimes(
    min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 12, 31)
)
whole_seconds = moments.map(lambda d: d.replace(microsecond=0))


def _clock12(value: dt.datetime) -> str:
    hour = value.hour % 12 or 12
    ampm = "AM" if value.hour < 12 else "PM"
    return f"{hour}:{value:%M:%S} {ampm}"


@given(whole_seconds, st.sampled_from("./-"), st.booleans())
def test_day_first_round_trip(value, sep, twelve_hour):
    clock = _clock12(value) if twelve_hour else f"{value:%H:%M:%S}"
    text = f"{value.day:02d}{sep}{value.month:02d}{sep}{value.year:04d} {clock}"
    assert columns.parse_datetime(formats.converter("dmy")(text)) == value


@given(moments, st.sampled_from("./-"))
def test_day_first_with_fraction_round_trip(value, sep):
    text = f"{value.day}{sep}{value.month}{sep}{value.year:04d} {value:%H:%M:%S.%f}"
    assert columns.parse_datetime(formats.converter("dmy")(text)) == value


@given(whole_seconds, st.sampled_from("/-"), st.booleans())
def test_month_first_round_trip(value, sep, twelve_hour):
    clock = _clock12(value) if twelve_hour else f"{value:%H:%M:%S}"
    text = f"{value.month}{sep}{value.day}{sep}{value.year:04d} {clock}"
    assert columns.parse_datetime(formats.converter("mdy")(text)) == value


@given(st.dates(min_value=dt.date(1000, 1, 1)))
def test_month_first_date_round_trip(value):
    text = f"{value.month:02d}-{value.day:02d}-{value.year:04d}"
    parsed = columns.parse_datetime(formats.converter("mdy")(text))
    assert parsed == dt.datetime(value.year, value.month, value.day)


@given(moments)
def test_psychopy_date_round_trip(value):
    text = f"{value:%Y-%m-%d_%Hh%M.%S}.{value.microsecond // 1000:03d}"
    expected = value.replace(microsecond=value.microsecond // 1000 * 1000)
    assert columns.parse_datetime(formats.converter("psychopy")(text)) == expected


@given(
    moments.filter(lambda d: d.year > 1000 and d.year < 9999),
    st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_psychopy_start_with_offset_round_trip_to_utc(value, minutes):
    sign = "-" if minutes < 0 else "+"
    offset = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    text = f"{value:%Y-%m-%d %Hh%M.%S.%f} {offset}"
    expected = value - dt.timedelta(minutes=minutes)
    assert columns.parse_datetime(formats.converter("psychopy")(text)) == expected


@given(whole_seconds)
def test_ctime_round_trip(value):
    text = value.strftime("%a %b %d %H:%M:%S %Y")  # C locale in the test process
    assert columns.parse_datetime(formats.converter("ctime")(text)) == value


@given(whole_seconds, st.integers(min_value=1, max_value=6))
def test_ctime_with_a_wrong_weekday_is_refused(value, shift):
    wrong = (value + dt.timedelta(days=shift)).strftime("%a")
    text = f"{wrong} {value.strftime('%b %d %H:%M:%S %Y')}"
    with pytest.raises(ValueError, match="weekday"):
        formats.converter("ctime")(text)


@given(
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(
        lambda f: repr(f).replace(".", ",")
    )
)
def test_decimal_comma_round_trip(text):
    value = columns.parse_float(formats.converter("decimal_comma")(text))
    assert value == float(text.replace(",", "."))

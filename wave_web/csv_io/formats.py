"""Locale and tool formats of cell values, chosen per column (opt-in).

Each format turns a cell written the way a tool or a locale writes it (`23.10.2024`,
`0,532`, `WAHR`, PsychoPy's `2024-10-23_13h56.15.156`) into the canonical text that the
registry's parser (`columns.parse_*`) accepts, or refuses it with a short rule. Nothing
is guessed here: inference (csv_io/inference.py) proposes a format only when every
value of a column fits it, and the import applies the chosen one.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass

from wave_web import columns
from wave_web.errors import InvalidValue


@dataclass(frozen=True)
class Format:
    """One way of writing values of a column type, with its converter."""

    key: str  # stable id stored in import options
    label: str  # for the dropdown, with an example
    type: str  # the column type it serves: FLOAT, DATETIME or BOOLEAN
    convert: Callable[[str], str]  # cell text -> canonical text, or ValueError


# ----------------------------------------------------------------------
# Numbers
# ----------------------------------------------------------------------

_DECIMAL_COMMA = re.compile(r"[+-]?(?:\d+(?:,\d*)?|,\d+)(?:[eE][+-]?\d+)?")
_DECIMAL_COMMA_RULE = "expected a number with a decimal comma like 0,532"


def decimal_comma(text: str) -> str:
    """`0,532` → `0.532`; refuses dots and thousands separators."""
    s = text.strip()
    if "." in s:
        raise ValueError(
            f"{_DECIMAL_COMMA_RULE} (a dot is not allowed in a decimal-comma column)"
        )
    if s.count(",") > 1:
        raise ValueError(f"{_DECIMAL_COMMA_RULE} (no thousands separators)")
    if not (s.isascii() and _DECIMAL_COMMA.fullmatch(s)):
        raise ValueError(_DECIMAL_COMMA_RULE)
    canonical = s.replace(",", ".")
    if not math.isfinite(float(canonical)):
        raise ValueError("expected a finite number")
    return canonical


# ----------------------------------------------------------------------
# Dates and times
# ----------------------------------------------------------------------

_TIME = (
    r"(?:(?:[ T]+|,\s*)(?P<hour>\d{1,2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,6}))?)?"
    r"(?:\s*(?P<ampm>[AaPp]\.?[Mm]\.?))?)?"
)
_DAY_FIRST = re.compile(
    r"(?P<day>\d{1,2})(?P<sep>[./-])(?P<month>\d{1,2})(?P=sep)(?P<year>\d+)" + _TIME
)
_MONTH_FIRST = re.compile(
    r"(?P<month>\d{1,2})(?P<sep>[./-])(?P<day>\d{1,2})(?P=sep)(?P<year>\d+)" + _TIME
)
_PSYCHOPY = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[_ ]"
    r"(?P<hour>\d{2})h(?P<minute>\d{2})\.(?P<second>\d{2})"
    r"(?:\.(?P<fraction>\d{1,6}))?"
    r"(?:\s*(?P<offset>[+-]\d{2}):?(?P<offset_minutes>\d{2}))?"
)
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
_CTIME = re.compile(
    r"(?P<weekday>[A-Z][a-z]{2}) +(?P<month>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) +"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2}) +(?P<year>\d{4})"
)


def _build(parts: dict[str, str | None], rule: str) -> dt.datetime | dt.date:
    """A date or datetime from regex groups; ValueError(rule) when it does not exist."""
    year = parts["year"] or ""
    if len(year) != 4:
        raise ValueError(f"{rule} (the year needs four digits)")
    hour = parts.get("hour")
    try:
        if hour is None:
            return dt.date(int(year), int(parts["month"]), int(parts["day"]))
        clock = int(hour)
        ampm = (parts.get("ampm") or "").replace(".", "").lower()
        if ampm:
            if not 1 <= clock <= 12:
                raise ValueError(rule)
            clock = clock % 12 + (12 if ampm == "pm" else 0)
        fraction = parts.get("fraction") or ""
        return dt.datetime(
            int(year),
            int(parts["month"]),
            int(parts["day"]),
            clock,
            int(parts["minute"]),
            int(parts.get("second") or 0),
            int(fraction.ljust(6, "0")) if fraction else 0,
        )
    except ValueError:
        raise ValueError(f"{rule} (no such date or time)") from None


def _numeric_date(pattern: re.Pattern[str], rule: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        match = pattern.fullmatch(text.strip())
        if match is None:
            raise ValueError(rule)
        return _build(match.groupdict(), rule).isoformat()

    return convert


_DMY_RULE = "expected a day-first date like 23.10.2024 or 23/10/2024 14:31"
_MDY_RULE = "expected a month-first date like 10/23/2024 or 10/23/2024 1:22:07 PM"
day_first = _numeric_date(_DAY_FIRST, _DMY_RULE)
month_first = _numeric_date(_MONTH_FIRST, _MDY_RULE)

_PSYCHOPY_RULE = "expected a PsychoPy date like 2024-10-23_13h56.15.156"


def psychopy(text: str) -> str:
    """`2024-10-23_13h56.15.156` and `2024-10-23 13h56.21.519019 +0200` to ISO 8601."""
    match = _PSYCHOPY.fullmatch(text.strip())
    if match is None:
        raise ValueError(_PSYCHOPY_RULE)
    parts = match.groupdict()
    value = _build(parts, _PSYCHOPY_RULE)
    if parts["offset"] is not None:
        hours, minutes = int(parts["offset"]), int(parts["offset_minutes"])
        if abs(hours) > 23 or minutes > 59:
            raise ValueError(f"{_PSYCHOPY_RULE} (the time zone offset is not valid)")
        sign = -1 if parts["offset"].startswith("-") else 1
        zone = dt.timezone(sign * dt.timedelta(hours=abs(hours), minutes=minutes))
        value = value.replace(tzinfo=zone)
    return value.isoformat()


_CTIME_RULE = "expected a C-style date like Thu Mar 14 11:20:05 2024"


def ctime(text: str) -> str:
    """`Thu Mar 14 11:20:05 2024` to ISO 8601; the weekday must match the date."""
    match = _CTIME.fullmatch(text.strip())
    if match is None or match["month"] not in _MONTHS:
        raise ValueError(_CTIME_RULE)
    if match["weekday"] not in _WEEKDAYS:
        raise ValueError(_CTIME_RULE)
    parts = match.groupdict()
    parts["month"] = str(_MONTHS.index(match["month"]) + 1)
    value = _build(parts, _CTIME_RULE)
    if _WEEKDAYS[value.weekday()] != match["weekday"]:
        raise ValueError(
            f"{_CTIME_RULE} (the weekday {match['weekday']} does not match the date)"
        )
    return value.isoformat()


# ----------------------------------------------------------------------
# Booleans
# ----------------------------------------------------------------------

_TRUE_WORDS = {"wahr", "ja", "vrai", "oui", "waar", "sí", "si", "verdadero", "vero"}
_FALSE_WORDS = {"falsch", "nein", "faux", "non", "onwaar", "no", "falso"}
_BOOL_WORDS_RULE = "expected true or false, also WAHR/FALSCH, ja/nein, oui/non, sí/no"


def bool_words(text: str) -> str:
    """Localized true/false words (any case) and the registry's own spellings."""
    s = text.strip().lower()
    if s in _TRUE_WORDS:
        return "true"
    if s in _FALSE_WORDS:
        return "false"
    try:
        return "true" if columns.parse_boolean(s) else "false"
    except ValueError:
        raise ValueError(_BOOL_WORDS_RULE) from None


# ----------------------------------------------------------------------
# The catalogue
# ----------------------------------------------------------------------

FORMATS: dict[str, Format] = {
    f.key: f
    for f in (
        Format("decimal_comma", "decimal comma (0,532)", "FLOAT", decimal_comma),
        Format("dmy", "day first (23.10.2024)", "DATETIME", day_first),
        Format("mdy", "month first (10/23/2024)", "DATETIME", month_first),
        Format("psychopy", "PsychoPy (2024-10-23_13h56.15.156)", "DATETIME", psychopy),
        Format("ctime", "C-style (Thu Mar 14 11:20:05 2024)", "DATETIME", ctime),
        Format(
            "bool_words", "words (WAHR/FALSCH, ja/nein, oui/non)", "BOOLEAN", bool_words
        ),
    )
}


ZONE = "zone:"  # key prefix: date-times written in a named time zone (Qualtrics)


def _in_zone(name: str) -> Callable[[str], str]:
    zone = zoneinfo.ZoneInfo(name)
    rule = f"expected an ISO 8601 date-time in {name} like 2024-04-02 12:34:00"

    def convert(text: str) -> str:
        try:
            local = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(rule) from None
        if local.tzinfo is not None:
            return text  # the cell names its own offset
        aware = local.replace(tzinfo=zone)
        back = aware.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None)
        if back != local:  # skipped by a clock change: that time never existed there
            raise ValueError(f"{local:%Y-%m-%d %H:%M} does not exist in {name}")
        return aware.isoformat()

    return convert


def zone_format(name: str) -> Format | None:
    """The format of date-times written in the IANA time zone `name`, or None."""
    if not isinstance(name, str) or len(name) > 64 or not _ZONE_NAME.fullmatch(name):
        return None
    try:
        convert = _in_zone(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
    return Format(ZONE + name, f"local time of {name}", "DATETIME", convert)


_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,2}")


def lookup(key: str) -> Format | None:
    """The format of a key (a catalogue key or `zone:<IANA name>`), or None."""
    if isinstance(key, str) and key.startswith(ZONE):
        return zone_format(key[len(ZONE) :])
    return FORMATS.get(key)


def formats_for(type_name: str) -> list[Format]:
    """The formats that serve a column type, in catalogue order."""
    return [f for f in FORMATS.values() if f.type == type_name]


def converter(key: str) -> Callable[[str], str]:
    """The converter of a format key; InvalidValue (not KeyError) for an unknown key."""
    found = lookup(key)
    if found is None:
        raise InvalidValue(
            f"“{columns.shorten(str(key))}” is not a known value format; "
            f"use one of {', '.join(FORMATS)}."
        )
    return found.convert

"""Jinja filters and globals: times, numbers, ids."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import Flask

from wave_web import columns
from wave_web import gridcells
from wave_web.accounts import key_last_day

# How the type pages describe each standard column (see datatables.create_table).
STANDARD_COLUMN_LABELS = {
    "id": "INTEGER, key",
    "experiment_uuid": "UUID",
    "participant_id": "STRING (100)",
    "created_at": "DATETIME",
    "updated_at": "DATETIME",
}


def standard_columns() -> list[tuple[str, str]]:
    """(name, type label) of the columns every data table has, in table order.

    Built from columns.STANDARD_COLUMNS, so a new standard column without a label
    fails at start-up instead of going missing from the pages.
    """
    return [(name, STANDARD_COLUMN_LABELS[name]) for name in columns.STANDARD_COLUMNS]


def iso_time(value: dt.datetime | None) -> str:
    """Absolute UTC time, to the second."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def key_expiry(value: dt.datetime | None) -> str:
    """An API key's expiry as the admin chose it: its last day (it ends at midnight)."""
    if value is None:
        return "never"
    day = key_last_day(value)
    if day is None:  # set by a script to another instant
        return f"until {iso_time(value)}"
    return f"until {day.day} {day:%b %Y} (end of day, UTC)"


def is_past(value: dt.datetime | None) -> bool:
    """True for a time that has passed (a naive value is UTC)."""
    if value is None:
        return False
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value <= dt.datetime.now(dt.UTC)


def relative_time(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """'3 minutes ago' style text for a UTC time."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    seconds = int(((now or dt.datetime.now(dt.UTC)) - value).total_seconds())
    if seconds < 45:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            if unit == "day" and n > 30:
                return value.strftime("%Y-%m-%d")
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def number(value: Any) -> str:
    """Thousands separators for counts."""
    return f"{value:,}" if isinstance(value, int) else str(value)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """'1 row', '2 rows', '1,234 entries' (`nouns` for an irregular plural)."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


def short_id(value: Any) -> str:
    """First 8 characters of a uuid; the full value goes in a title attribute."""
    return str(value)[:8]


def cell(type_name: str, value: Any) -> str:
    """The canonical text of a stored value for display."""
    return columns.format_value(type_name, value)


def pretty_json(value: Any) -> str:
    """Indented JSON for an expander (non-ASCII kept readable)."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(
        iso_time=iso_time,
        key_expiry=key_expiry,
        is_past=is_past,
        relative_time=relative_time,
        number=number,
        plural=plural,
        short_id=short_id,
        pretty_json=pretty_json,
    )
    app.jinja_env.globals.update(
        cell=cell,
        grid_cell=gridcells.grid_cell,
        row_cells=gridcells.row_cells,
        row_url=gridcells.row_url,
        column_types=columns.COLUMN_TYPES,
        standard_columns=standard_columns(),
    )
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True

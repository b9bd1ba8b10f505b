"""JSON values of data rows: the cell rules of api-v1.md §11.4, by the registry.

A JSON body carries typed values (numbers, booleans, strings, objects) where a form or
a CSV file carries text. The rules stay the registry's (columns.py): a string is read
by the same parser as a form field, a number is held to the same bounds, so a value
the web UI refuses is refused here with the same reason. Nothing is rounded, cut or
converted silently. Rows are read and written as the JSON shapes of §4 and §1.5.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Mapping
from typing import Any

from wave_web import columns
from wave_web.columns import ColumnDef
from wave_web.datatables import MAX_PARTICIPANT_ID
from wave_web.datatables import RowProblems
from wave_web.datatables import parse_participant_id

STANDARD = ("id", "experiment_uuid", "participant_id", "created_at", "updated_at")
MANAGED_ON_INSERT = ("id", "created_at", "updated_at")
MANAGED_ON_UPDATE = ("id", "experiment_uuid", "created_at", "updated_at")
IGNORED_ON_INSERT = ("experiment_uuid", "participant_id")  # the path and body win


def _shown(value: Any) -> str:
    """A value as a message shows it: JSON spelling, cut when long."""
    if isinstance(value, str):
        return repr(columns.shorten(value, 60))
    return columns.shorten(columns.format_json(value), 60)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{_shown(value)} is a boolean, not a whole number")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{_shown(value)} is not a whole number")
        value = int(value)
    if isinstance(value, int):
        if not columns.INT_MIN <= value <= columns.INT_MAX:
            raise ValueError(
                f"{value} is outside the 32-bit range "
                f"({columns.INT_MIN} to {columns.INT_MAX})"
            )
        return value
    if isinstance(value, str):
        try:
            return columns.parse_integer(value)
        except ValueError as exc:
            raise ValueError(f"{_shown(value)}: {exc}") from None
    raise ValueError(f"{_shown(value)} is not a whole number")


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{_shown(value)} is a boolean, not a number")
    if isinstance(value, int | float):
        result = float(value)
        if not math.isfinite(result):
            raise ValueError(f"{_shown(value)} is not a finite number")
        if isinstance(value, int) and int(result) != value:
            raise ValueError(f"{value} cannot be stored exactly as a FLOAT")
        return result
    if isinstance(value, str):
        try:
            return columns.parse_float(value)
        except ValueError as exc:
            raise ValueError(f"{_shown(value)}: {exc}") from None
    raise ValueError(f"{_shown(value)} is not a number")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        try:
            return columns.parse_boolean(value)
        except ValueError as exc:
            raise ValueError(f"{_shown(value)}: {exc}") from None
    raise ValueError(f"{_shown(value)} is not true or false")


def _text(parse: Any) -> Any:
    def read(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{_shown(value)} is not a string")
        try:
            return parse(value)
        except ValueError as exc:
            raise ValueError(str(exc)) from None

    return read


def _datetime(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"{_shown(value)} is not an ISO 8601 date-time string")
    try:
        return columns.parse_datetime(value)
    except ValueError as exc:
        raise ValueError(f"{_shown(value)}: {exc}") from None


def _json(value: Any) -> Any:
    text = columns.format_json(value)
    columns.check_json_depth(text, value)
    return value


READERS = {
    "INTEGER": _integer,
    "FLOAT": _float,
    "BOOLEAN": _boolean,
    "STRING": _text(columns.parse_string),
    "TEXT": _text(columns.parse_text),
    "DATETIME": _datetime,
    "JSON": _json,
}


def read_value(col: ColumnDef, value: Any) -> Any:
    """The stored value of a JSON cell (None for null), or ValueError with the rule.

    The message names the column and its type:
    `Invalid value for column 'score' (INTEGER): 1.7 is not a whole number`.
    """
    if value is None:
        return None
    try:
        return READERS[col.type](value)
    except ValueError as exc:
        raise ValueError(
            f"Invalid value for column '{col.name}' ({col.type}): {exc}"
        ) from None


def participant_id(value: str) -> str:
    """A participant id from a JSON body: the web form's rule (not blank, ≤ 100)."""
    return parse_participant_id(value)


def unknown_columns_message(names: list[str]) -> str:
    return (
        f"Unknown columns: {names!r}. Please update the experiment type schema to "
        "include these columns."
    )


def read_row(
    xtype: Any, participant: str | None, data: Mapping[str, Any], new: bool
) -> dict[str, Any]:
    """The values of a row to insert (`new`) or update, or RowProblems.

    Problems come in the order: server-managed keys, unknown columns, values,
    missing required columns; all of them at once, joined by "; " in the message.
    """
    by_name = {c.name: c for c in xtype.columns}
    managed = MANAGED_ON_INSERT if new else MANAGED_ON_UPDATE
    problems: dict[str, str] = {}
    refused = [k for k in data if k in managed]
    if refused:
        problems["_managed"] = (
            f"Column(s) {refused!r} are managed by the server and cannot be set"
        )
    skip = IGNORED_ON_INSERT if new else ()
    unknown = [k for k in data if k not in by_name and k not in managed + skip]
    if not new and "participant_id" in unknown:
        unknown.remove("participant_id")
    if unknown:
        problems["_unknown"] = unknown_columns_message(unknown)
    values: dict[str, Any] = {}
    if participant is not None:
        try:
            values["participant_id"] = participant_id(participant)
        except ValueError as exc:
            problems["participant_id"] = str(exc)
    if not new and "participant_id" in data:
        raw = data["participant_id"]
        if not isinstance(raw, str):
            problems["participant_id"] = "participant_id must be a string"
        elif participant is None:
            try:
                values["participant_id"] = participant_id(raw)
            except ValueError as exc:
                problems["participant_id"] = str(exc)
    for name, col in by_name.items():
        if name not in data:
            if new and not col.nullable:
                problems[name] = (
                    f"Column '{name}' is required (NOT NULL) and was not provided"
                )
            continue
        try:
            value = read_value(col, data[name])
        except ValueError as exc:
            problems[name] = str(exc)
            continue
        if value is None and not col.nullable:
            problems[name] = (
                f"Column '{name}' is required (NOT NULL) and cannot be null"
            )
            continue
        values[name] = value
    if problems:
        raise RowProblemsJSON(problems)
    return values


def _plain(type_name: str) -> Any:
    """A check that a JSON value is stored as it is (None: no such shortcut)."""
    low, high = columns.INT_MIN, columns.INT_MAX
    return {
        "INTEGER": lambda v: type(v) is int and low <= v <= high,
        "FLOAT": lambda v: type(v) is float and math.isfinite(v),
        "BOOLEAN": lambda v: type(v) is bool,
        "STRING": lambda v: type(v) is str and len(v) <= 255 and "\x00" not in v,
        "TEXT": lambda v: type(v) is str and "\x00" not in v,
    }.get(type_name)


def row_reader(xtype: Any) -> Any:
    """read_row(xtype, participant, data, new=True) for many rows of one type.

    A row whose values are all plain (an int for INTEGER, a float for FLOAT …) is
    taken as it is; any other row goes through read_row, which gives the same values
    and the messages. So the result is read_row's, only faster on a batch.
    """
    cols = list(xtype.columns)
    checks = {c.name: _plain(c.type) for c in cols}
    nullable = {c.name: c.nullable for c in cols}
    required = [c.name for c in cols if not c.nullable]
    simple = all(check is not None for check in checks.values())

    def read(participant: str, data: Mapping[str, Any]) -> dict[str, Any]:
        if (
            simple
            and type(participant) is str
            and 0 < len(participant) <= MAX_PARTICIPANT_ID
            and participant.strip()
            and "\x00" not in participant
            and all(name in data for name in required)
        ):
            values: dict[str, Any] = {"participant_id": participant}
            for name, value in data.items():
                check = checks.get(name)
                if check is None:
                    break  # not a column (or a key read_row must refuse)
                if value is None:
                    if not nullable[name]:
                        break
                elif not check(value):
                    break
                values[name] = value
            else:
                return values
        return read_row(xtype, participant, data, new=True)

    return read


class RowProblemsJSON(RowProblems):
    """RowProblems whose message joins the API's sentences with "; "."""

    status = 400

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__(problems)
        self.message = "; ".join(self.problems.values())


# ----------------------------------------------------------------------
# Rows out (api-v1.md §1.5 and §4)
# ----------------------------------------------------------------------


def naive_iso(value: dt.datetime | None) -> str | None:
    """A data row's timestamp: ISO 8601 in UTC without offset."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat()


def utc_iso(value: dt.datetime | None) -> str | None:
    """A timestamp of a tag, type or experiment: ISO 8601 in UTC with Z."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def row_json(
    xtype: Any, row: Mapping[str, Any], cols: list[ColumnDef] | None = None
) -> dict[str, Any]:
    """A stored row as the API's DataRow: standard keys, then custom columns.

    `cols` (the type's columns read before a commit) saves reloading the type after.
    """
    out: dict[str, Any] = {
        "id": row["id"],
        "experiment_uuid": str(uuid.UUID(str(row["experiment_uuid"]))),
        "participant_id": row["participant_id"],
        "created_at": naive_iso(row["created_at"]),
        "updated_at": naive_iso(row["updated_at"]),
    }
    for col in xtype.columns if cols is None else cols:
        value = row.get(col.name)
        if value is None:
            out[col.name] = None
        elif col.type == "DATETIME":
            out[col.name] = naive_iso(value)
        elif col.type == "FLOAT":
            out[col.name] = float(value)
        else:
            out[col.name] = value
    return out

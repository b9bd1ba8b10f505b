"""Whole-column converters: the fast path of the import, same results as cell by cell.

A chunk of a column (a list of cell texts) is converted with C-level loops (`map`,
`str.join`, `in`) instead of one Python call per cell. Each converter answers None
when any cell of the chunk is not a plain valid value (empty where empty is not
allowed, a spelling that needs a message, an unusual character): the importer then
converts that chunk cell by cell with the registry's parsers, which report the
problem. So the fast path never accepts what the registry refuses, and yields exactly
what the registry would store (tests/test_csv_fastpath.py checks this on random
input).

Sinks: "python" gives Python values, "copy" the text of PostgreSQL's COPY text format
(`\\N` for NULL), "sqlite" DB-API values as SQLAlchemy would bind them.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from itertools import repeat
from operator import add
from operator import is_
from operator import itemgetter
from operator import methodcaller
from operator import sub
from typing import Any

import orjson

from wave_web import columns

ColumnConverter = Callable[[list[str]], "list[Any] | None"]

_INT_CHARS = str.maketrans("", "", "0123456789+- ")
_FLOAT_CHARS = str.maketrans("", "", "0123456789+-.eE ")
_COPY_SPECIAL = ("\\", "\t", "\n", "\r")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_LONG_FRACTION = re.compile(r"[.,]\d{7}")
_LONG_DIGITS = re.compile(r"\d{19}")
_BAD = object()
_BOOLEANS = {
    **dict.fromkeys(("true", "t", "yes", "y", "1"), True),
    **dict.fromkeys(("false", "f", "no", "n", "0"), False),
    "": None,
}
COPY_NULL = "\\N"
_COPY_BOOLEANS = {True: "t", False: "f", None: COPY_NULL}


def _with_empties(
    col: list[str], convert: Callable[[str], Any], nullable: bool
) -> list[Any] | None:
    """Convert `col` where "" means None; None when not allowed or not converted."""
    try:
        if "" not in col:
            return list(map(convert, col))
        if not nullable:
            return None
        return [convert(t) if t else None for t in col]
    except ValueError:
        return None


def integers(col: list[str], nullable: bool) -> list[Any] | None:
    joined = "".join(col)
    if joined.translate(_INT_CHARS):
        return None
    values = _with_empties(col, int, nullable)
    if values is None:
        return None
    present = [v for v in values if v is not None] if "" in col else values
    if present and (min(present) < columns.INT_MIN or max(present) > columns.INT_MAX):
        return None
    return values


def floats(col: list[str], nullable: bool) -> list[Any] | None:
    if "".join(col).translate(_FLOAT_CHARS):
        return None
    values = _with_empties(col, float, nullable)
    if values is None:
        return None
    present = [v for v in values if v is not None] if "" in col else values
    # inf or nan anywhere makes the sum non-finite (a huge sum only costs the fast path)
    if not math.isfinite(sum(present)):
        return None
    return values


def texts(limit: int | None) -> Callable[[list[str], bool], list[Any] | None]:
    def convert(col: list[str], nullable: bool) -> list[Any] | None:
        if "\x00" in "".join(col):
            return None
        if limit is not None and col and max(map(len, col)) > limit:
            return None
        if "" not in col:
            return list(col)
        if not nullable:
            return None
        return [t or None for t in col]

    return convert


def booleans(col: list[str], nullable: bool) -> list[Any] | None:
    keys = map(str.lower, map(str.strip, col))
    values = list(map(_BOOLEANS.get, keys, repeat(_BAD)))
    if _BAD in values or (not nullable and None in values):
        return None
    return values


_FIRST_FOUR = itemgetter(slice(None, 4))
_NAIVE = methodcaller("replace", tzinfo=None)
_OFFSET = methodcaller("utcoffset")


def _to_utc(value: dt.datetime) -> dt.datetime:
    offset = value.utcoffset()
    return value.replace(tzinfo=None) - offset if offset else value.replace(tzinfo=None)


def _all_to_utc(values: list[dt.datetime]) -> list[dt.datetime]:
    """Datetimes to naive UTC; C-level passes when they share one offset."""
    offsets = set(map(_OFFSET, values))
    if not offsets or offsets == {None}:
        return values
    if len(offsets) > 1:
        return [v if v.tzinfo is None else _to_utc(v) for v in values]
    (offset,) = offsets
    naive = list(map(_NAIVE, values))
    return list(map(sub, naive, repeat(offset))) if offset else naive


def datetimes(col: list[str], nullable: bool) -> list[Any] | None:
    joined = "".join(col)
    if not joined.isascii() or _LONG_FRACTION.search(joined):
        return None
    stripped = list(map(str.strip, col))
    if "" in stripped:
        if not nullable:
            return None
        present = [s for s in stripped if s]
    else:
        present = stripped
    if not all(map(str.isdigit, map(_FIRST_FOUR, present))):
        return None  # fromisoformat reads more than this import accepts
    try:
        values = list(map(dt.datetime.fromisoformat, present))
        values = _all_to_utc(values)
    except (ValueError, OverflowError):
        return None
    if len(present) == len(stripped):
        return values
    it = iter(values)
    return [next(it) if s else None for s in stripped]


def jsons(col: list[str], nullable: bool) -> list[Any] | None:
    joined = "".join(col)
    if _LONG_DIGITS.search(joined):
        return None
    try:
        if "" in col:
            if not nullable:
                return None
            values = [orjson.loads(t) if t else _BAD for t in col]
        else:
            values = list(map(orjson.loads, col))
    except orjson.JSONDecodeError:
        return None
    if "null" in joined and any(map(is_, values, repeat(None))):
        return None  # JSON null is refused, not stored
    if joined.count("[") + joined.count("{") > columns.MAX_JSON_DEPTH:
        # per value, as check_json_depth's own first test: brackets bound the depth
        squares = map(str.count, col, repeat("["))
        brackets = map(add, squares, map(str.count, col, repeat("{")))
        if max(brackets) > columns.MAX_JSON_DEPTH:
            try:
                for text, value in zip(col, values, strict=True):
                    if text:
                        columns.check_json_depth(text, value)
            except ValueError:
                return None
    return [None if v is _BAD else v for v in values] if "" in col else values


PARSERS: dict[str, Callable[[list[str], bool], list[Any] | None]] = {
    "INTEGER": integers,
    "FLOAT": floats,
    "STRING": texts(255),
    "TEXT": texts(None),
    "BOOLEAN": booleans,
    "DATETIME": datetimes,
    "JSON": jsons,
}


def _nullable_map(fn: Callable[[Any], Any], values: list[Any], null: Any) -> list[Any]:
    if None in values:
        return [null if v is None else fn(v) for v in values]
    return list(map(fn, values))


def copy_texts(values: list[Any]) -> list[str]:
    """Strings in COPY text format: backslash, tab and line breaks escaped.

    The values hold no NUL (refused in text, escaped by orjson in JSON), so the
    escaping runs once over the values joined by NUL, then splits them again.
    """
    present = [v for v in values if v is not None] if None in values else values
    joined = "\x00".join(present)
    if any(c in joined for c in _COPY_SPECIAL):
        escaped = joined.translate(_COPY_ESCAPES).split("\x00")
        if len(escaped) == len(present):
            present = escaped
        else:  # not expected: escape one by one
            present = [v.translate(_COPY_ESCAPES) for v in present]
        if None not in values:
            return present
        it = iter(present)
        return [COPY_NULL if v is None else next(it) for v in values]
    return [COPY_NULL if v is None else v for v in values] if None in values else values


_SENTINEL = "\x00wave\x00"  # never a value of a JSON column: a separator
_SEPARATOR = "," + orjson.dumps(_SENTINEL).decode("ascii") + ","


def _json_texts(values: list[Any]) -> list[Any]:
    """Compact JSON texts (orjson's, as columns.format_json writes them).

    One orjson.dumps of the whole column, values separated by a sentinel string, is
    ten times faster than one call per value. The separator (`,"\\u0000wave\\u0000",`
    with bare quotes) can only occur inside a value that is an array holding that very
    string: then there are more pieces than values, and each value is dumped alone.
    """
    present = [v for v in values if v is not None] if None in values else values
    if not present:
        return list(values)
    mixed = [_SENTINEL] * (2 * len(present) - 1)
    mixed[::2] = present
    texts = orjson.dumps(mixed).decode("utf-8")[1:-1].split(_SEPARATOR)
    if len(texts) != len(present):
        texts = [orjson.dumps(v).decode("utf-8") for v in present]
    if len(present) == len(values):
        return texts
    it = iter(texts)
    return [None if v is None else next(it) for v in values]


_COPY_OUT: dict[str, Callable[[list[Any]], list[str]]] = {
    "INTEGER": lambda vs: _nullable_map(str, vs, COPY_NULL),
    "FLOAT": lambda vs: _nullable_map(repr, vs, COPY_NULL),
    "STRING": copy_texts,
    "TEXT": copy_texts,
    "BOOLEAN": lambda vs: list(map(_COPY_BOOLEANS.__getitem__, vs)),
    "DATETIME": lambda vs: _nullable_map(methodcaller("isoformat"), vs, COPY_NULL),
    "JSON": lambda vs: copy_texts(_json_texts(vs)),
}


_BOOLEAN_INTS = {True: 1, False: 0, None: None}
_SQLITE_DATETIME = methodcaller("isoformat", " ", "microseconds")

# Whole-column stand-ins for SQLAlchemy's per-value SQLite bind processors, in C-level
# loops. Each is used only when it gives what the column's processor gives on the
# probe values below (checked once per column, see _sqlite_out); else the processor.
_SQLITE_OUT: dict[str, Callable[[list[Any]], list[Any]]] = {
    "BOOLEAN": lambda vs: list(map(_BOOLEAN_INTS.__getitem__, vs)),
    # SQLAlchemy's storage format: "YYYY-MM-DD HH:MM:SS.ffffff" (naive UTC here)
    "DATETIME": lambda vs: _nullable_map(_SQLITE_DATETIME, vs, None),
    # the engine's json_serializer is columns.format_json (orjson): compact JSON
    "JSON": _json_texts,
}
_PROBES: dict[str, list[Any]] = {
    "BOOLEAN": [True, False, None],
    "DATETIME": [
        dt.datetime(2024, 3, 4, 14, 30),
        dt.datetime(1, 1, 1, 0, 0, 0, 7),
        dt.datetime(999, 12, 31, 23, 59, 59, 999999),
        None,
    ],
    "JSON": [{"a": [1, 1.5, "é\u2028\\"]}, [], "s", 0, -0.0, True, None],
}


def _sqlite_out(
    type_name: str, processor: Callable[[Any], Any]
) -> Callable[[list[Any]], list[Any]]:
    """The column's values as SQLite is sent them: its processor's results."""
    fast = _SQLITE_OUT.get(type_name)
    if fast is not None:
        probes = _PROBES[type_name]
        try:
            agrees = fast(probes) == [processor(v) for v in probes]
        except (TypeError, ValueError):
            agrees = False
        if agrees:
            return fast

    def out(values: list[Any]) -> list[Any]:
        return list(map(processor, values))

    return out


def column_converter(
    type_name: str,
    nullable: bool,
    sink: str,
    processor: Callable[[Any], Any] | None = None,
) -> ColumnConverter:
    """The fast converter of one column for a sink (see the module docstring)."""
    parse = PARSERS[type_name]
    if sink == "copy":
        out = _COPY_OUT[type_name]
    elif sink == "sqlite" and processor is not None:
        out = _sqlite_out(type_name, processor)
    else:
        out = None

    def convert(col: list[str]) -> list[Any] | None:
        values = parse(col, nullable)
        if values is None or out is None:
            return values
        return out(values)

    return convert


def participant_ids(sink: str) -> ColumnConverter:
    """participant_id: required, no NUL, at most 100 characters."""
    limit = 100

    def convert(col: list[str]) -> list[Any] | None:
        if "\x00" in "".join(col) or not col:
            return None
        if max(map(len, col)) > limit or min(map(len, map(str.strip, col))) == 0:
            return None
        return copy_texts(col) if sink == "copy" else list(col)

    return convert

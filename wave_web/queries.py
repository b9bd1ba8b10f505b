"""Reading rows: the grid's view state (RowQuery), typed filters and keyset paging.

Every column name in a query string is looked up in the type's registry and then in the
reflected Table; values are parsed by the column registry and bound. Paging is keyset
(never OFFSET): a page costs the same at row 10 and at row 1,000,000.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import threading
import uuid
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression
from werkzeug.datastructures import MultiDict

from wave_web import columns
from wave_web import datatables
from wave_web.errors import WaveError
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import ExperimentType

PAGE_SIZES = (25, 50, 100, 500)
DEFAULT_PAGE_SIZE = 50
COUNT_CAP = 10_000
MAX_FILTERS = 50  # conditions of one view (SQLite parses at most 1,000 levels deep)


class BadQuery(WaveError):
    """A filter, sort or paging parameter that cannot be used; `field` names it."""


# ----------------------------------------------------------------------
# Columns of a grid
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class GridColumn:
    """A column as the grid sees it: standard or custom, with its registry type."""

    name: str
    type: str  # a registry type, or "UUID" for experiment_uuid
    nullable: bool = True
    standard: bool = False
    description: str = ""

    @property
    def is_numeric(self) -> bool:
        return self.type in ("INTEGER", "FLOAT")

    @property
    def sortable(self) -> bool:
        return self.type != "JSON"  # PostgreSQL's json has no ordering

    @property
    def filter_kind(self) -> str:
        """Columns with the same filter fields share it: "FLOAT", "STRING-required"."""
        return self.type if self.nullable else f"{self.type}-required"


def grid_columns(xtype: Any, with_experiment: bool = False) -> list[GridColumn]:
    """Standard then custom columns, in table order."""
    standard = [
        GridColumn("id", "INTEGER", False, True),
        *(
            [GridColumn("experiment_uuid", "UUID", False, True)]
            if with_experiment
            else []
        ),
        GridColumn("participant_id", "STRING", False, True),
        GridColumn("created_at", "DATETIME", False, True),
        GridColumn("updated_at", "DATETIME", False, True),
    ]
    custom = [
        GridColumn(c.name, c.type, c.nullable, False, c.description)
        for c in xtype.columns
    ]
    return standard + custom


def parse_cell(col: GridColumn, text: str) -> Any:
    """A value for `col` from text (cursors, filters); ValueError with the rule."""
    if col.type == "UUID":
        try:
            return uuid.UUID(text.strip())
        except ValueError:
            raise ValueError("expected an experiment id (a UUID)") from None
    return columns.COLUMN_TYPES[col.type].parse(text)


def format_cell(col: GridColumn, value: Any) -> str:
    """Canonical text of a value of `col` ('' for NULL)."""
    if value is None:
        return ""
    if col.type == "UUID":
        return str(value)
    return columns.format_value(col.type, value)


# ----------------------------------------------------------------------
# Filters
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class Operator:
    """A filter condition: its key in the address and its words in the dropdown."""

    key: str
    label: str
    needs_value: bool = True


OPERATORS: dict[str, Operator] = {
    op.key: op
    for op in (
        Operator("exact", "="),
        Operator("not", "≠"),
        Operator("lt", "<"),
        Operator("lte", "≤"),
        Operator("gt", ">"),
        Operator("gte", "≥"),
        Operator("contains", "contains"),
        Operator("startswith", "starts with"),
        Operator("iexact", "equals (any case)"),
        Operator("icontains", "contains (any case)"),
        Operator("istartswith", "starts with (any case)"),
        Operator("json", "JSON path = (path:value)"),
        Operator("isnull", "is empty", needs_value=False),
        Operator("notnull", "is not empty", needs_value=False),
    )
}

_COMPARED = ("exact", "not", "lt", "lte", "gt", "gte")
_MATCHED = ("exact", "not", "contains", "startswith")
_ANY_CASE = ("iexact", "icontains", "istartswith")
_EMPTY = ("isnull", "notnull")

# The conditions each column type offers, in dropdown order: the filter form shows
# these and parse_filter refuses any other.
TYPE_OPERATORS: dict[str, tuple[str, ...]] = {
    "INTEGER": (*_COMPARED, *_EMPTY),
    "FLOAT": (*_COMPARED, *_EMPTY),
    "DATETIME": (*_COMPARED, *_EMPTY),
    "STRING": (*_MATCHED, *_ANY_CASE, *_EMPTY),
    "TEXT": (*_MATCHED, *_ANY_CASE, *_EMPTY),
    "BOOLEAN": ("exact", "not", *_EMPTY),
    "JSON": ("json", *_EMPTY),
    "UUID": ("exact", "not", *_EMPTY),
}
_TEXT = frozenset({"STRING", "TEXT"})


def condition_keys(col: GridColumn) -> tuple[str, ...]:
    """The operator keys a column offers, in menu order: its type's, less "is
    empty" and "is not empty" where no row can be empty (id, participant_id…)."""
    keys = TYPE_OPERATORS[col.type]
    return keys if col.nullable else tuple(k for k in keys if k not in _EMPTY)


def operators_for(col: GridColumn) -> list[Operator]:
    """The operators a column offers, in menu order."""
    return [OPERATORS[key] for key in condition_keys(col)]


# What a column holds, in the words of a message: "rt holds decimal numbers".
TYPE_WORDS: dict[str, str] = {
    "INTEGER": "whole numbers",
    "FLOAT": "decimal numbers",
    "STRING": "short text",
    "TEXT": "long text",
    "BOOLEAN": "true or false",
    "DATETIME": "dates and times",
    "JSON": "JSON values",
    "UUID": "experiment ids",
}


@dataclass(frozen=True)
class Filter:
    """One condition `column op value`; `text` is what the user typed."""

    column: GridColumn
    op: str
    text: str = ""
    value: Any = None

    @property
    def param(self) -> str:
        return f"{self.column.name}__{self.op}"

    @property
    def label(self) -> str:
        operator = OPERATORS[self.op]
        if self.op == "json":
            return f"{self.column.name}{self.value.label}"
        if not operator.needs_value:
            return f"{self.column.name} {operator.label}"
        return f"{self.column.name} {operator.label} {self.text}"


def parse_filter(col: GridColumn, op: str, text: str) -> Filter:
    """A Filter from query-string parts, or BadQuery naming column, value and rule.

    Messages use the dropdown's words ("contains", "≤"), never the address's keys.
    """
    operator = OPERATORS.get(op)
    if operator is None or op not in condition_keys(col):
        raise BadQuery(unsupported_message(col, op), field=f"{col.name}__{op}")
    if not operator.needs_value:
        return Filter(col, op)
    if op == "json":
        return Filter(col, op, text.strip(), parse_json_match(col, text))
    if col.type in _TEXT:
        if "\x00" in text:
            raise BadQuery(
                "A filter value cannot contain NUL.", field=f"{col.name}__{op}"
            )
        return Filter(col, op, text, text)
    if not text.strip():
        raise BadQuery(
            f"Filter {col.name} {operator.label}: enter a value to compare with, "
            "or choose “is empty”.",
            field=f"{col.name}__{op}",
        )
    try:
        value = parse_cell(col, text)
    except ValueError as exc:
        raise BadQuery(
            f"Filter {col.name} {operator.label} “{columns.shorten(text)}”: {exc}.",
            field=f"{col.name}__{op}",
        ) from None
    return Filter(col, op, text.strip(), value)


def unsupported_message(col: GridColumn, op: str) -> str:
    """Why `op` cannot filter `col`, and the conditions that can."""
    operator = OPERATORS.get(op)
    offered = ", ".join(o.label for o in operators_for(col))
    if op in _EMPTY and op in TYPE_OPERATORS[col.type]:
        return f"{col.name} is never empty; choose one of: {offered}."
    what = (
        f"The condition “{operator.label}” does not apply to"
        if operator is not None
        else f"“{columns.shorten(op)}” is not a condition for"
    )
    return (
        f"{what} {col.name}, which holds {TYPE_WORDS[col.type]}; "
        f"choose one of: {offered}."
    )


# ----------------------------------------------------------------------
# JSON path filters: <column>__json=<path>:<value>
# ----------------------------------------------------------------------

JSON_PATH_STEPS = 8
_JSON_STEP = re.compile(r"\.?([A-Za-z0-9_-]{1,64})|\[([0-9]{1,6})\]")
JSON_PATH_HELP = (
    "write path:value, where the path names object keys (letters, digits, _ and -) "
    "joined by dots and list items as [n], counted from 0, and the value is a JSON "
    'number, a "string" in double quotes, true or false; e.g. block:3, '
    'keys[0]:"f" or trial.ok:true'
)


@dataclass(frozen=True)
class JsonMatch:
    """`column <path> = value`: the JSON value at `path` equals a JSON scalar."""

    path: tuple[str | int, ...]
    value: str | int | float | bool

    @property
    def label(self) -> str:
        """The path and value as a chip shows them: .keys[0] = "f"."""
        steps = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in self.path)
        return f"{steps} = {orjson.dumps(self.value).decode()}"


def parse_json_match(col: GridColumn, text: str) -> JsonMatch:
    """A JSON path filter's `path:value`, or BadQuery saying how to write it."""
    field = f"{col.name}__json"
    path_text, sep, value_text = text.partition(":")
    path_text, value_text = path_text.strip(), value_text.strip()
    path = _json_path(path_text) if sep else None
    if path is None:
        raise BadQuery(
            f"Filter {col.name} by JSON path: “{columns.shorten(text)}” is not "
            f"path:value; {JSON_PATH_HELP}.",
            field=field,
        )
    if len(path) > JSON_PATH_STEPS:
        raise BadQuery(
            f"Filter {col.name} by JSON path: the path “{columns.shorten(path_text)}” "
            f"has {len(path)} steps; at most {JSON_PATH_STEPS} are allowed.",
            field=field,
        )
    try:
        value = orjson.loads(value_text)
    except orjson.JSONDecodeError:
        value = None
    if (
        not isinstance(value, str | int | float)
        or (isinstance(value, float) and not math.isfinite(value))
        or (isinstance(value, int) and abs(value) >= 2**63)
        or (isinstance(value, str) and ("\x00" in value or len(value) > 1000))
    ):
        raise BadQuery(
            f"Filter {col.name} by JSON path: “{columns.shorten(value_text)}” "
            f"is not a value to compare with; {JSON_PATH_HELP}.",
            field=field,
        )
    return JsonMatch(path, value)


def _json_path(text: str) -> tuple[str | int, ...] | None:
    """("keys", 0) for "keys[0]"; None when `text` is not a path."""
    steps: list[str | int] = []
    position = 0
    while position < len(text):
        found = _JSON_STEP.match(text, position)
        # a dot separates keys: none before the first key, one before the others
        if found is None or found.group(0).startswith(".") != bool(
            steps and found.group(1)
        ):
            return None
        key, index = found.groups()
        steps.append(key if key is not None else int(index))
        position = found.end()
    return tuple(steps) or None


def _json_clause(col: sa.ColumnElement, match: JsonMatch) -> sa.ColumnElement[bool]:
    """The JSON value at the path has the type and value of match.value.

    A key step reads only an object and an index step only a list, on both databases:
    PostgreSQL's -> with a text or an integer, SQLite's $."key"[n] path (its keys are
    checked to need no quoting). The type is checked too, so that 1 never equals
    "1" or true; numbers compare as numbers (1 = 1.0).
    """
    value = match.value
    if db.session.get_bind().dialect.name == "postgresql":
        parent = col
        for step in match.path[:-1]:
            parent = parent[step]
        kind = sa.func.json_typeof(parent[match.path[-1]])
        text = parent[match.path[-1]].as_string()
        if isinstance(value, bool):
            return sa.and_(kind == "boolean", text == ("true" if value else "false"))
        if isinstance(value, str):
            return sa.and_(kind == "string", text == value)
        number = sa.case((kind == "number", sa.cast(text, sa.Numeric)), else_=None)
        return number == sa.literal(Decimal(repr(value)), sa.Numeric)
    path = sa.bindparam(None, match.path, type_=sa.JSON.JSONPathType())
    kind = sa.func.json_type(col, path)
    if isinstance(value, bool):
        return kind == ("true" if value else "false")
    found = sa.func.json_extract(col, path)
    if isinstance(value, str):
        return sa.and_(kind == "text", found == sa.literal(value, sa.String))
    return sa.and_(kind.in_(["integer", "real"]), found == sa.literal(value))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _lower(expr: sa.ColumnElement) -> sa.ColumnElement:
    """Lower case for every letter, not just A–Z, on both databases.

    PostgreSQL data columns use COLLATE "C", whose lower() folds only A–Z: fold under
    the database's default collation instead. SQLite's lower() is ASCII-only too: use
    Python's str.lower, registered as wave_lower in database.py.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        return sa.func.lower(sa.collate(expr, "default"))
    return sa.func.wave_lower(expr)


def without_index(col: sa.ColumnElement) -> sa.ColumnElement:
    """`+col` on SQLite: the same value, but the planner may not use an index on it.

    SQLite keeps no statistics unless ANALYZE ran, so it cannot tell a selective
    index from a useless one; callers use this where the data says which is worse.
    Other databases get the column unchanged.
    """
    if db.session.get_bind().dialect.name != "sqlite":
        return col
    return UnaryExpression(col, operator=operators.custom_op("+"), type_=col.type)


def filter_clause(
    table: sa.Table, f: Filter, indexed: bool = True
) -> sa.ColumnElement[bool]:
    """The WHERE clause of one filter; the column comes from the reflected Table.

    `indexed=False` keeps SQLite from reading it through an index (without_index).
    """
    col: sa.ColumnElement = table.c[f.column.name]
    if not indexed:
        col = without_index(col)
    op = f.op
    if op == "isnull":
        return col.is_(None)
    if op == "notnull":
        return col.is_not(None)
    if op == "json":
        return _json_clause(table.c[f.column.name], f.value)
    if op == "exact":
        return col == f.value
    if op == "not":  # "not 5" keeps empty cells, as a researcher expects
        return sa.or_(col != f.value, col.is_(None))
    if op in ("lt", "lte", "gt", "gte"):
        return {"lt": col < f.value, "lte": col <= f.value, "gt": col > f.value}.get(
            op, col >= f.value
        )
    pattern = _like_escape(f.value)
    if op in ("contains", "icontains"):
        pattern = f"%{pattern}%"
    elif op in ("startswith", "istartswith"):
        pattern = f"{pattern}%"
    if op.startswith("i"):
        return _lower(col).like(_lower(sa.literal(pattern)), escape="\\")
    return col.like(pattern, escape="\\")


# ----------------------------------------------------------------------
# Cursors
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """A position in a sorted grid: the sort value and id of a row."""

    value: Any
    id: int

    def encode(self, col: GridColumn) -> str:
        text = None if self.value is None else format_cell(col, self.value)
        raw = orjson.dumps([text, self.id])
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, token: str, col: GridColumn) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            text, row_id = orjson.loads(raw)
            # bool is an int to Python; ids beyond 64 bits overflow SQLite's driver
            if (
                type(row_id) is not int
                or abs(row_id) >= 2**63
                or not (text is None or isinstance(text, str))
            ):
                raise ValueError
            value = None if text is None else parse_cell(col, text)
        except (ValueError, binascii.Error, orjson.JSONDecodeError, TypeError):
            raise BadQuery(
                "The page position in the address is damaged; start again from the "
                "first page.",
                field="_after",
            ) from None
        return cls(value, row_id)


# ----------------------------------------------------------------------
# The view state
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class RowQuery:
    """Everything the URL says about a grid view: filters, sort, size, position."""

    columns: tuple[GridColumn, ...]
    filters: tuple[Filter, ...] = ()
    sort: str = "id"
    desc: bool = False
    size: int = DEFAULT_PAGE_SIZE
    after: str | None = None
    before: str | None = None
    last: bool = False
    start: int = 0
    hidden: tuple[str, ...] = ()

    @classmethod
    def from_args(
        cls, cols: Sequence[GridColumn], args: Mapping | MultiDict
    ) -> RowQuery:
        """Parse a query string; unknown columns and bad values raise BadQuery (400)."""
        by_name = {c.name: c for c in cols}
        items = args.items(multi=True) if isinstance(args, MultiDict) else args.items()
        filters, hidden = [], []
        state: dict[str, str] = {}
        for key, text in items:
            if key.startswith("_"):
                if key == "_hide":
                    hidden.append(_known(by_name, text, "_hide").name)
                else:
                    state[key] = text
                continue
            name, sep, op = key.partition("__")
            col = _known(by_name, name, key)
            filters.append(parse_filter(col, op if sep else "exact", text))
        if len(filters) > MAX_FILTERS:
            raise BadQuery(
                f"A view has at most {MAX_FILTERS} filters; this one has "
                f"{len(filters):,}. Remove some to see the rows.",
                field="_filters",
            )
        sort = state.get("_sort", "id")
        sort_col = _known(by_name, sort, "_sort")
        if not sort_col.sortable:
            raise BadQuery(
                f"{sort} is a JSON column and cannot be sorted.", field="_sort"
            )
        query = cls(
            columns=tuple(cols),
            filters=tuple(filters),
            sort=sort,
            desc=_choice(state, "_dir", ("asc", "desc"), "asc") == "desc",
            size=_page_size(state.get("_size")),
            after=state.get("_after") or None,
            before=state.get("_before") or None,
            last=state.get("_last") == "1",
            start=_number(state.get("_start", "0"), "_start"),
            hidden=tuple(dict.fromkeys(hidden)),
        )
        query.cursor()  # validate now: a damaged cursor is a 400, not a later 500
        return query

    @property
    def filter_room(self) -> int:
        """How many more filters this view takes (MAX_FILTERS in all)."""
        return max(MAX_FILTERS - len(self.filters), 0)

    @property
    def sort_column(self) -> GridColumn:
        return next(c for c in self.columns if c.name == self.sort)

    @property
    def visible_columns(self) -> list[GridColumn]:
        return [c for c in self.columns if c.name not in self.hidden]

    def cursor(self) -> Cursor | None:
        token = self.after or self.before
        return Cursor.decode(token, self.sort_column) if token else None

    def params(self, **changes: Any) -> list[tuple[str, str]]:
        """The query string of this view with `changes` applied (for links)."""
        q = replace(self, **changes) if changes else self
        out = [(f.param, f.text) for f in q.filters]
        if q.sort != "id":
            out.append(("_sort", q.sort))
        if q.desc:
            out.append(("_dir", "desc"))
        if q.size != DEFAULT_PAGE_SIZE:
            out.append(("_size", str(q.size)))
        out += [("_hide", name) for name in q.hidden]
        for key, value in (("_after", q.after), ("_before", q.before)):
            if value:
                out.append((key, value))
        if q.last:
            out.append(("_last", "1"))
        if q.start:
            out.append(("_start", str(q.start)))
        return out

    @property
    def is_view(self) -> bool:
        """Filtered, sorted or with hidden columns: not simply every row."""
        return bool(self.filters or self.sort != "id" or self.desc or self.hidden)

    def describe(self) -> str:
        """The view in words: "filtered by rt > 0.5, sorted by rt (descending)"."""
        parts = []
        if self.filters:
            parts.append("filtered by " + " and ".join(f.label for f in self.filters))
        if self.sort != "id" or self.desc:
            order = "descending" if self.desc else "ascending"
            parts.append(f"sorted by {self.sort} ({order})")
        if self.hidden:
            n = len(self.hidden)
            parts.append(f"{n} column{'s' if n != 1 else ''} hidden")
        return ", ".join(parts)

    def view_params(self, **changes: Any) -> list[tuple[str, str]]:
        """params() back at the first page (for sort, size and filter links)."""
        reset: dict[str, Any] = {
            "after": None,
            "before": None,
            "last": False,
            "start": 0,
        }
        return self.params(**{**reset, **changes})


def _known(by_name: Mapping[str, GridColumn], name: str, param: str) -> GridColumn:
    col = by_name.get(name)
    if col is None:
        close = columns.suggest(name, "column", []) or ""
        hint = f" Did you mean “{close}”?" if close in by_name else ""
        raise BadQuery(
            f"There is no column “{columns.shorten(name)}” in this grid "
            f"(parameter {columns.shorten(param)}).{hint}",
            field=param,
        )
    return col


def _choice(state: Mapping[str, str], key: str, allowed: Sequence[str], default: str):
    value = state.get(key, default)
    if value not in allowed:
        raise BadQuery(f"{key} must be one of {', '.join(allowed)}.", field=key)
    return value


def _page_size(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE_SIZE
    if not (text.isascii() and text.isdigit()) or int(text) not in PAGE_SIZES:
        sizes = ", ".join(map(str, PAGE_SIZES))
        raise BadQuery(f"The page size must be one of {sizes}.", field="_size")
    return int(text)


def _number(text: str, key: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 12:  # "²".isdigit()
        raise BadQuery(f"{key} must be a whole number ≥ 0.", field=key)
    return int(text)


# ----------------------------------------------------------------------
# Pages
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of rows with the cursors to its neighbours."""

    rows: list[dict[str, Any]]
    has_prev: bool
    has_next: bool
    start: int  # 0-based position of the first row in the filtered, sorted grid
    first_cursor: str | None
    last_cursor: str | None


def _where(
    table: sa.Table,
    q: RowQuery,
    experiment_uuid: uuid.UUID | None,
    in_order: bool = False,
):
    """The WHERE clauses of a view; `in_order`: see page_rows."""
    clauses = [
        filter_clause(table, f, indexed=not in_order or f.column.name == q.sort)
        for f in q.filters
    ]
    if experiment_uuid is not None:
        clauses.insert(0, table.c.experiment_uuid == experiment_uuid)
    return clauses


def _select(table: sa.Table, where: list, order: list, limit: int) -> list[dict]:
    stmt = sa.select(table).where(*where).order_by(*order).limit(limit)
    return [dict(r) for r in db.session.execute(stmt).mappings()]


def _rows_after(
    table: sa.Table,
    where: list,
    key: sa.Column,
    desc: bool,
    nulls_last: bool,
    cursor: Cursor | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to `limit` rows after `cursor` in (key, id) order, NULL keys last or first.

    The order is split into a segment of values and one of NULLs, each read with a plain
    (key, id) row comparison that an index on (…, key, id) serves directly: the cost of
    a page does not depend on its depth.
    """
    ident = table.c.id
    if key is ident:
        if cursor is not None:
            where = [*where, ident < cursor.id if desc else ident > cursor.id]
        return _select(table, where, [ident.desc() if desc else ident.asc()], limit)
    segments = ["value", "null"] if nulls_last else ["null", "value"]
    if cursor is not None:
        segments = segments[
            segments.index("null" if cursor.value is None else "value") :
        ]
    rows: list[dict[str, Any]] = []
    for i, segment in enumerate(segments):
        at_cursor = cursor is not None and i == 0
        if segment == "null":
            conditions = [key.is_(None)]
            if at_cursor:
                conditions.append(ident < cursor.id if desc else ident > cursor.id)
            order = [ident.desc() if desc else ident.asc()]
        else:
            conditions = [key.is_not(None)]
            if at_cursor:
                pair = sa.tuple_(key, ident)
                mark = sa.tuple_(
                    sa.literal(cursor.value, key.type), sa.literal(cursor.id)
                )
                conditions.append(pair < mark if desc else pair > mark)
            order = [key.desc(), ident.desc()] if desc else [key.asc(), ident.asc()]
        rows += _select(table, [*where, *conditions], order, limit - len(rows))
        if len(rows) >= limit:
            break
    return rows


def page_rows(
    xtype: Any,
    q: RowQuery,
    experiment_uuid: uuid.UUID | None = None,
    in_order: bool = False,
) -> Page:
    """One page of the grid: after/before the cursor, or the first or last page.

    `in_order`: the filters match so many rows that reading in sort order finds a
    page of them soon; SQLite is then kept from using an index on a filtered column
    instead (a range over a large part of the table, then a sort of all of it).
    """
    table = datatables.reflect(xtype)
    backwards = q.before is not None or q.last
    cursor = None if q.last else q.cursor()
    rows = _rows_after(
        table,
        _where(table, q, experiment_uuid, in_order),
        table.c[q.sort],
        q.desc != backwards,  # backwards = the reverse order, read forwards
        not backwards,  # empty values come last in both directions, as in a spreadsheet
        cursor,
        q.size + 1,
    )
    more = len(rows) > q.size
    rows = rows[: q.size]
    if backwards:
        rows.reverse()
        has_prev, has_next = more, not q.last
    else:
        has_prev, has_next = cursor is not None, more
    start = 0 if (not has_prev or cursor is None and not q.last) else q.start
    return Page(
        rows=rows,
        has_prev=has_prev,
        has_next=has_next,
        start=-1 if q.last and has_prev else start,
        first_cursor=_cursor_of(rows[0], q) if rows else None,
        last_cursor=_cursor_of(rows[-1], q) if rows else None,
    )


def _cursor_of(row: Mapping[str, Any], q: RowQuery) -> str:
    return Cursor(row[q.sort], row["id"]).encode(q.sort_column)


def count_matching(
    xtype: Any,
    q: RowQuery,
    experiment_uuid: uuid.UUID | None = None,
    cap: int = COUNT_CAP,
) -> tuple[int, bool]:
    """Rows matching the filters, counted exactly up to `cap`; (count, capped)."""
    table = datatables.reflect(xtype)
    inner = (
        sa.select(table.c.id).where(*_where(table, q, experiment_uuid)).limit(cap + 1)
    )
    n = db.session.execute(
        sa.select(sa.func.count()).select_from(inner.subquery())
    ).scalar_one()
    return min(n, cap), n > cap


def count_all_matching(
    xtype: Any, q: RowQuery, experiment_uuid: uuid.UUID | None = None
) -> int:
    """The exact filtered count, however large (on request: it reads every match)."""
    table = datatables.reflect(xtype)
    stmt = (
        sa.select(sa.func.count())
        .select_from(table)
        .where(*_where(table, q, experiment_uuid))
    )
    return db.session.execute(stmt).scalar_one()


# ----------------------------------------------------------------------
# Everything a grid page shows
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A grid page: the parsed view, its rows and counts (or the error of a bad URL)."""

    query: RowQuery
    page: Page | None
    total: int  # rows of the experiment (or type) without filters
    matching: int  # rows matching the filters, exact up to COUNT_CAP
    capped: bool  # more than COUNT_CAP rows match
    error: BadQuery | None = None
    rejected: RejectedFilter | None = None  # the filter that `error` is about

    @property
    def first_row(self) -> int:
        """1-based number of the first row shown."""
        if self.page is None or not self.page.rows:
            return 0
        if self.page.start < 0:  # the last page: counted back from the end
            return max(self.matching - len(self.page.rows), 0) + 1
        return self.page.start + 1

    @property
    def last_row(self) -> int:
        return self.first_row + len(self.page.rows) - 1 if self.page else 0


def build_grid(
    xtype: Any,
    args: Mapping | MultiDict,
    total: int,
    experiment_uuid: uuid.UUID | None = None,
) -> Grid:
    """Parse the view state and read one page; a bad URL gives an empty grid + error."""
    cols = grid_columns(xtype, with_experiment=experiment_uuid is None)
    try:
        query = RowQuery.from_args(cols, args)
    except BadQuery as exc:
        rejected = rejected_filter(cols, args, exc)
        if rejected is None:
            return Grid(RowQuery(tuple(cols)), None, total, 0, False, exc)
        return Grid(rejected.rest, None, total, 0, False, exc, rejected)
    matching, capped = total, False
    if query.filters:  # counted first: the count tells how to read the page
        matching, capped = count_matching(xtype, query, experiment_uuid)
        if capped and (query.last or args.get("_count") == "exact"):
            matching, capped = count_all_matching(xtype, query, experiment_uuid), False
    in_order = reads_in_order(total, matching, query.size)
    page = page_rows(xtype, query, experiment_uuid, in_order)
    return Grid(query, page, total, matching, capped)


@dataclass(frozen=True)
class RejectedFilter:
    """A filter of the address that was refused, as the filter form shows it again.

    `rest` is the view without it, so that fixing or removing it keeps the others.
    """

    column: str  # the column's name when the grid has it, else ""
    op: str  # an operator the column offers ("" when there is no such column)
    text: str
    rest: RowQuery


def rejected_filter(
    cols: Sequence[GridColumn], args: Mapping | MultiDict, error: BadQuery
) -> RejectedFilter | None:
    """The filter `error` refused and the view without it; None for other errors."""
    if not error.field or error.field.startswith("_"):
        return None
    field = _filter_key(error.field)
    name, _, op = field.partition("__")
    items = args.items(multi=True) if isinstance(args, MultiDict) else args.items()
    items = list(items)
    paging = ("_after", "_before", "_last", "_start")
    rest = [(k, v) for k, v in items if _filter_key(k) != field and k not in paging]
    try:
        query = RowQuery.from_args(cols, MultiDict(rest))
    except BadQuery:  # a second problem: start from a clean view
        return None
    texts = [v for k, v in items if _filter_key(k) == field]
    col = next((c for c in cols if c.name == name), None)
    offered = condition_keys(col) if col is not None else ()
    return RejectedFilter(
        column=col.name if col is not None else "",
        op=op if op in offered else (offered[0] if offered else ""),
        text=texts[0] if texts else "",
        rest=query,
    )


def _filter_key(key: str) -> str:
    """`column__op` of a query-string key (no operator means exact)."""
    return key if "__" in key or key.startswith("_") else f"{key}__exact"


# Rows a page may read in sort order, on average, to find its matches.
SCAN_BUDGET = 50_000


def reads_in_order(total: int, matching: int, size: int) -> bool:
    """True when a filtered page is best read in sort order, skipping non-matches.

    More than COUNT_CAP matches (a lower bound when the count is capped) spread over
    `total` rows: a page of `size` meets its rows after about size × total / matching
    rows. Fewer matches are better found through an index on the filtered column.
    """
    return matching >= COUNT_CAP and (size + 1) * total <= SCAN_BUDGET * matching


def added_filter(args: MultiDict) -> MultiDict | None:
    """The args with the "add a filter" form (_fcol, _fop, _fval) turned into a filter.

    None when the form was not used, or only to choose its column (_fpick: the
    form without JavaScript shows that column's conditions). The new filter is
    checked later like any other.
    """
    if "_fcol" not in args or "_fpick" in args:
        return None
    out = MultiDict(
        (k, v)
        for k, v in args.items(multi=True)
        if k not in ("_fcol", "_fop", "_fval", "_after", "_before", "_last", "_start")
    )
    out.add(
        f"{args.get('_fcol', '')}__{args.get('_fop', 'exact')}", args.get("_fval", "")
    )
    return out


@dataclass(frozen=True)
class ParticipantSection:
    """The rows of one participant in one experiment type."""

    xtype: Any
    columns: list[GridColumn]
    rows: list[dict[str, Any]]
    experiments: dict[uuid.UUID, Any]
    more: bool


PROBES_PER_STATEMENT = 400  # SQLite allows 500 terms in a compound SELECT
_probe_lock = threading.Lock()


def participant_rows(participant_id: str, limit: int = 500) -> list[ParticipantSection]:
    """Every row of `participant_id`, per type that has some (index lookups only).

    One UNION ALL of EXISTS probes per PROBES_PER_STATEMENT types (those with rows,
    by the maintained row counts) finds the types with rows of the participant; only
    their tables are read, up to `limit` rows each (`more` says whether there are
    others), and their experiments in one more query.
    """
    has_rows = sa.exists().where(
        Experiment.experiment_type_id == ExperimentType.id, Experiment.row_count > 0
    )
    types = db.session.execute(
        sa.select(ExperimentType.id, ExperimentType.table_name)
        .where(has_rows)
        .order_by(ExperimentType.id)
    ).all()
    found: set[int] = set()
    for stmt in _probes(tuple((t.id, t.table_name) for t in types)):
        found.update(db.session.scalars(stmt, {"participant_id": participant_id}))
    if not found:
        return []
    read = []
    for xtype in db.session.scalars(
        sa.select(ExperimentType)
        .where(ExperimentType.id.in_(found))
        .order_by(ExperimentType.name)
    ):
        table = datatables.reflect(xtype)
        stmt = (
            sa.select(table)
            .where(table.c.participant_id == participant_id)
            .order_by(table.c.experiment_uuid, table.c.id)
            .limit(limit + 1)
        )
        rows = [dict(r) for r in db.session.execute(stmt).mappings()]
        if rows:  # a row may have gone since the probe
            read.append((xtype, rows))
    uuids = {r["experiment_uuid"] for _, rows in read for r in rows[:limit]}
    experiments = _experiments(uuids)
    return [
        ParticipantSection(
            xtype,
            grid_columns(xtype, with_experiment=True),
            rows[:limit],
            {u: experiments[u] for u in {r["experiment_uuid"] for r in rows[:limit]}},
            len(rows) > limit,
        )
        for xtype, rows in read
    ]


def _probes(types: tuple[tuple[int, str], ...]) -> list[sa.CompoundSelect | sa.Select]:
    """Statements giving the ids of the types with a row of :participant_id.

    Built once per list of (type id, table name) and kept: a statement object caches
    its own cache key, which for a thousand branches costs more than running it.
    Table names come from the registry; participant_id is a standard column.
    """
    cache = current_app.extensions.setdefault("wave_participant_probes", {})
    with _probe_lock:
        found = cache.get(types)
    if found is not None:
        return found
    who = sa.bindparam("participant_id", type_=sa.String)
    probes = []
    for type_id, table_name in types:
        table = sa.table(table_name, sa.column("participant_id", sa.String))
        probes.append(
            sa.select(sa.literal(type_id, sa.Integer).label("type_id")).where(
                sa.exists().where(table.c.participant_id == who)
            )
        )
    found = [
        sa.union_all(*chunk) if len(chunk) > 1 else chunk[0]
        for chunk in (
            probes[start : start + PROBES_PER_STATEMENT]
            for start in range(0, len(probes), PROBES_PER_STATEMENT)
        )
    ]
    with _probe_lock:
        cache.clear()  # only the newest list of types is worth keeping
        cache[types] = found
    return found


def _experiments(uuids: set[uuid.UUID]) -> dict[uuid.UUID, Any]:
    if not uuids:
        return {}
    stmt = sa.select(Experiment).where(Experiment.uuid.in_(uuids))
    return {e.uuid: e for e in db.session.scalars(stmt)}

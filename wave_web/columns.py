"""Column-type registry and name rules: the one place that knows a column type.

Every type is described once (SQL type, form widget, how a text cell is parsed and how a
value is written back), and every table, column and tag name is checked here, in Python,
so that SQLite and PostgreSQL accept and refuse exactly the same input.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import unicodedata
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS as _PG_RESERVED
from sqlalchemy.dialects.sqlite import base as _sqlite_base
from sqlalchemy.ext.compiler import compiles

from wave_web.errors import InvalidName
from wave_web.errors import InvalidValue

# ----------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------

MAX_NAME_BYTES = 63
MAX_COLUMNS = 200  # custom columns per type (PostgreSQL allows 1,600, SQLite 2,000)
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
STANDARD_COLUMNS = (
    "id",
    "experiment_uuid",
    "participant_id",
    "created_at",
    "updated_at",
)
STATIC_TABLES = frozenset(
    {
        "tags",
        "experiment_types",
        "experiments",
        "users",
        "api_keys",
        "audit_log",
        "import_jobs",
        "alembic_version",
    }
)

# The full keyword list of SQLite (sqlite.org/lang_keywords.html): wider than what
# SQLAlchemy quotes, because a name that needs quoting in one tool breaks another.
_SQLITE_KEYWORDS = [
    "abort",
    "action",
    "add",
    "after",
    "all",
    "alter",
    "always",
    "analyze",
    "and",
    "as",
    "asc",
    "attach",
    "autoincrement",
    "before",
    "begin",
    "between",
    "by",
    "cascade",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "commit",
    "conflict",
    "constraint",
    "create",
    "cross",
    "current",
    "current_date",
    "current_time",
    "current_timestamp",
    "database",
    "default",
    "deferrable",
    "deferred",
    "delete",
    "desc",
    "detach",
    "distinct",
    "do",
    "drop",
    "each",
    "else",
    "end",
    "escape",
    "except",
    "exclude",
    "exclusive",
    "exists",
    "explain",
    "fail",
    "filter",
    "first",
    "following",
    "for",
    "foreign",
    "from",
    "full",
    "generated",
    "glob",
    "group",
    "groups",
    "having",
    "if",
    "ignore",
    "immediate",
    "in",
    "index",
    "indexed",
    "initially",
    "inner",
    "insert",
    "instead",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "key",
    "last",
    "left",
    "like",
    "limit",
    "match",
    "materialized",
    "natural",
    "no",
    "not",
    "nothing",
    "notnull",
    "null",
    "nulls",
    "of",
    "offset",
    "on",
    "or",
    "order",
    "others",
    "outer",
    "over",
    "partition",
    "plan",
    "pragma",
    "preceding",
    "primary",
    "query",
    "raise",
    "range",
    "recursive",
    "references",
    "regexp",
    "reindex",
    "release",
    "rename",
    "replace",
    "restrict",
    "returning",
    "right",
    "rollback",
    "row",
    "rows",
    "savepoint",
    "select",
    "set",
    "table",
    "temp",
    "temporary",
    "then",
    "ties",
    "to",
    "transaction",
    "trigger",
    "unbounded",
    "union",
    "unique",
    "update",
    "using",
    "vacuum",
    "values",
    "view",
    "virtual",
    "when",
    "where",
    "window",
    "with",
    "without",
]
# PostgreSQL system columns and SQLite's rowid aliases cannot be user columns either.
_SYSTEM_COLUMNS = {"oid", "tableoid", "xmin", "xmax", "cmin", "cmax", "ctid", "rowid"}
_SYSTEM_COLUMNS |= {"_rowid_"}
RESERVED_WORDS = frozenset(_PG_RESERVED) | frozenset(_SQLITE_KEYWORDS) | _SYSTEM_COLUMNS


# Product names written in camel case stay one word (`PsychoPy` → `psychopy`, not
# `psycho_py`); they still split from what follows (`psychopyVersion`). A list, not a
# rule of shapes: `OpenSesame` and `StartDate`, `jsPsych` and `expName` look alike.
_BRAND_WORDS = re.compile(
    r"(?:(?<![A-Za-z])|(?<=[a-z])(?=[A-Z]))"
    r"(?i:psychopy|psychojs|psychtoolbox|psytoolkit|psynet|jspsych|labjs|surveyjs"
    r"|opensesame|osweb|e-?prime|superlab|limesurvey|surveymonkey|redcap|mturk"
    r"|eyelink|labvanced|javascript|github|youtube|matlab|powerpoint"
    r"|iphone|ipad|ios|macos)"
    r"(?![a-z])"
)


def suggest_name(text: str, kind: str = "column") -> str | None:
    """A valid identifier near what was typed (`Reaction Time` → `reaction_time`).

    camelCase splits (`expName` → `exp_name`, `IPAddress` → `ip_address`) except in
    the product names of _BRAND_WORDS (`jsPsych` → `jspsych`). A type's name written
    as words keeps them whole whatever their capitals (`NeuroBS flanker` →
    `neurobs_flanker`): its writer put the spaces between them.
    """
    ascii_text = (
        unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    )
    ascii_text = _BRAND_WORDS.sub(lambda m: f"_{m[0].lower()}_", ascii_text)
    if not (kind == "table" and re.search(r"\S\s+\S", ascii_text)):
        ascii_text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", ascii_text)  # camelCase
        ascii_text = re.sub(
            r"(?<=[A-Z])(?=[A-Z][a-z]{2})", "_", ascii_text
        )  # IPAddress
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    for prefix in ("pg_", "sqlite_"):
        while name.startswith(prefix):
            name = name[len(prefix) :]
    if not name:
        return None
    if not name[0].isalpha():
        name = ("t_" if kind == "table" else "c_") + name
    name = name[:MAX_NAME_BYTES].rstrip("_")
    if name in RESERVED_WORDS or name in STANDARD_COLUMNS or name in STATIC_TABLES:
        name = name[: MAX_NAME_BYTES - 6] + ("_data" if kind == "table" else "_value")
    return name if _first_problem(name, kind) is None else None


def _first_problem(name: str, kind: str) -> str | None:
    """The reason `name` is not a valid identifier, or None. Order: most basic first."""
    if name == "":
        return "is empty"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return f"is {size} bytes long; the limit is {MAX_NAME_BYTES} bytes"
    if name != name.strip():
        return "starts or ends with a space"
    if name.lower() != name and NAME_PATTERN.fullmatch(name.lower()):
        return "contains upper-case letters; names are lower case"
    if not NAME_PATTERN.fullmatch(name):
        if not ("a" <= name[0].lower() <= "z"):
            return "must start with a letter a–z"
        issues = ["upper-case letters"] if any(c.isupper() for c in name) else []
        odd = [c for c in dict.fromkeys(name) if not re.fullmatch(r"[A-Za-z0-9_]", c)]
        issues += [describe_char(c) for c in odd[:3]]
        return (
            f"contains {' and '.join(issues)}; use only lower-case letters a–z, "
            "digits and underscores"
        )
    if name.startswith(("pg_", "sqlite_")):
        return "starts with pg_ or sqlite_, which the databases reserve for themselves"
    if name in RESERVED_WORDS:
        return "is a reserved word of PostgreSQL or SQLite"
    if kind == "column" and name in STANDARD_COLUMNS:
        return "is a standard column every data table already has"
    if kind == "table" and name in STATIC_TABLES:
        return "is the name of one of wave_web's own tables"
    return None


def describe_char(char: str) -> str:
    """A readable name for a character in an error message."""
    names = {" ": "a space", '"': "a double quote", "'": "a quote", ";": "a semicolon"}
    if char in names:
        return names[char]
    if not char.isprintable():
        return f"the control character U+{ord(char):04X}"
    return f"the character “{char}”"


def validate_name(name: str, kind: str = "column", taken: Iterable[str] = ()) -> str:
    """Return `name` if it is a valid table/column name, else raise InvalidName.

    `taken` holds names already in use; the comparison is case-insensitive.
    """
    problem = _first_problem(name, kind)
    if problem is None and name.lower() in {t.lower() for t in taken}:
        problem = (
            "is already taken by another table"
            if kind == "table"
            else "is already used by another column of this type"
        )
    if problem is not None:
        raise InvalidName(
            name,
            f"The {kind} name “{shorten(name, 100)}” {problem}.",
            suggest(name, kind, taken),
        )
    return name


def suggest(name: str, kind: str, taken: Iterable[str]) -> str | None:
    """A suggestion that is valid and not taken, or None."""
    base = suggest_name(name, kind)
    if base is None:
        return None
    taken_lower = {t.lower() for t in taken}
    candidate, n = base, 2
    while candidate in taken_lower:
        tail = f"_{n}"
        candidate, n = base[: MAX_NAME_BYTES - len(tail)] + tail, n + 1
    return candidate


def clean_text(text: str, what: str, field: str | None = None) -> str:
    """`text` unchanged, or InvalidValue when it holds a NUL character.

    PostgreSQL cannot store NUL in text (the driver fails), SQLite would store it: both
    refuse it here instead, with a message for the form field `field`.
    """
    if "\x00" in text:
        raise InvalidValue(
            f"The {what} contains a NUL character (\\0), which cannot be stored; "
            "remove it and try again.",
            field=field,
        )
    return text


MAX_TAG_LENGTH = 50
MAX_TAGS = 10  # tags of one experiment (api-v1.md: at most 10 items)


def clean_tag_name(raw: str) -> str:
    """Trim a tag name and check it fits an experiment's VARCHAR(50) tag array."""
    name = " ".join(raw.split())  # NUL: refused below with the control characters
    if not name:
        raise InvalidValue("A tag name cannot be empty.", field="tags")
    if len(name) > MAX_TAG_LENGTH:
        raise InvalidValue(
            f"The tag name “{shorten(name)}” is {len(name)} characters long; "
            f"tags are limited to {MAX_TAG_LENGTH} characters.",
            field="tags",
        )
    if "," in name:
        raise InvalidValue(
            f"The tag name “{shorten(name)}” contains a comma; commas separate tags.",
            field="tags",
        )
    if any(not c.isprintable() for c in name):
        raise InvalidValue(
            "A tag name cannot contain control characters.", field="tags"
        )
    return name


def shorten(text: str, limit: int = 60) -> str:
    """Shorten a value for an error message, keeping it recognisable."""
    text = (
        text.encode("unicode_escape").decode("ascii")
        if not text.isprintable()
        else text
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def parse_integer(text: str) -> int:
    s = text.strip()
    digits = s[1:] if s[:1] in "+-" else s
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(
            "expected a whole number like 42 (no decimals, exponents or commas)"
        )
    value = int(s)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"expected a whole number between {INT_MIN} and {INT_MAX}")
    return value


def parse_float(text: str) -> float:
    s = text.strip()
    if not s.isascii() or "_" in s:
        raise ValueError("expected a number like 0.25 or 1.5e-3")
    try:
        value = float(s)
    except ValueError:
        raise ValueError("expected a number like 0.25 or 1.5e-3") from None
    if not math.isfinite(value):
        raise ValueError("expected a finite number (NaN and infinity are not stored)")
    return value


def parse_string(text: str) -> str:
    if "\x00" in text:
        raise ValueError("text cannot contain the NUL character")
    if len(text) > 255:
        raise ValueError(f"expected at most 255 characters, got {len(text)} (use TEXT)")
    return text


def parse_text(text: str) -> str:
    if "\x00" in text:
        raise ValueError("text cannot contain the NUL character")
    return text


def parse_boolean(text: str) -> bool:
    s = text.strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError("expected true or false (also t/f, yes/no, y/n, 1/0)")


def parse_datetime(text: str) -> dt.datetime:
    s = text.strip()
    if not s[:4].isdigit() or not s.isascii():
        raise ValueError("expected an ISO 8601 date-time like 2024-03-04T14:30:00Z")
    try:
        value = dt.datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            "expected an ISO 8601 date-time like 2024-03-04T14:30:00Z "
            "or a date like 2024-03-04"
        ) from None
    if "." in s or "," in s:
        _check_fraction(s)
    if value.tzinfo is not None:
        try:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            raise ValueError(
                "expected a date-time between years 1 and 9999 in UTC"
            ) from None
    return value


_FRACTION = re.compile(r"[.,](\d+)")
_LONG_DIGITS = re.compile(r"\d{19}")


def _check_fraction(text: str) -> None:
    """Refuse more than microseconds: Python would cut the extra digits silently."""
    match = _FRACTION.search(text)
    if match and len(match.group(1)) > 6:
        raise ValueError("expected at most 6 decimal places of seconds (microseconds)")


MAX_JSON_DEPTH = 64


def check_json_depth(text: str, value: Any) -> None:
    """ValueError when `value` (parsed from `text`) nests deeper than MAX_JSON_DEPTH.

    Deeper values break serialisers later (recursion limits): the edit page, the
    database driver. Cheap for the usual value: depth cannot exceed the bracket count.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise ValueError(
                f"expected JSON nested at most {MAX_JSON_DEPTH} levels deep"
            )
        stack.extend((child, depth + 1) for child in children)


def parse_json(text: str) -> Any:
    try:
        value = orjson.loads(text)
        check_json_depth(text, value)
        if _LONG_DIGITS.search(text):
            # orjson makes integers beyond 64 bits floats; Python's parser keeps them.
            value = json.loads(text, parse_constant=_refuse_constant)
    except (orjson.JSONDecodeError, json.JSONDecodeError):
        raise ValueError(
            'expected valid JSON like {"key": 1} or [1, 2] '
            "(NaN and Infinity are not JSON)"
        ) from None
    # The literal null is "no value", like an empty cell: stored as NULL.
    return value


def _refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def format_datetime(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def format_json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def text_type(length: int | None = None) -> sa.types.TypeEngine:
    """VARCHAR/TEXT that sorts and compares by code point on both databases.

    SQLite compares strings bytewise; PostgreSQL would use the database's locale
    (e.g. en_US sorts "a" < "B"), so its columns get COLLATE "C".
    """
    plain = sa.String(length) if length else sa.Text()
    exact = sa.String(length, collation="C") if length else sa.Text(collation="C")
    return plain.with_variant(exact, "postgresql")


class ExactFloat(sa.types.TypeDecorator):
    """FLOAT: a double that both databases give back bit for bit, -0.0 included.

    SQLite writes a whole-number REAL of a REAL-affinity column as an integer (-0.0
    comes back as 0.0), so on SQLite the column is declared `FLOAT BLOB`: BLOB
    affinity stores the double as given. psycopg2 sends -0.0 as the numeric literal
    -0.0, which PostgreSQL reads as numeric 0: negative zero is sent as a float8.
    """

    impl = sa.Float
    cache_ok = True
    name = None  # Alembic's batch rename reads the constraint name of such types

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
        if dialect.driver != "psycopg2":
            # SQLite: Float's float(), which BLOB affinity needs (an int would stay
            # an int).
            return super().bind_processor(dialect)
        from psycopg2.extensions import AsIs

        negative_zero = AsIs("'-0'::float8")

        def process(value: Any) -> Any:
            if value == 0 and math.copysign(1.0, value) < 0:
                return negative_zero
            return value

        return process


@compiles(ExactFloat, "sqlite")
def _float_on_sqlite(type_: ExactFloat, compiler: Any, **kw: Any) -> str:
    # The name holds BLOB (sqlite.org/datatype3.html §3.1): no affinity conversion.
    return "FLOAT BLOB"


class _SQLiteJSON(sa.JSON):
    """JSON on SQLite in a column declared `JSON TEXT`, which has TEXT affinity.

    A column declared plain `JSON` has NUMERIC affinity: the document `1.0` would be
    stored as the integer 1 and a 22-digit integer as a rounded REAL.
    """


@compiles(_SQLiteJSON, "sqlite")
def _json_on_sqlite(type_: _SQLiteJSON, compiler: Any, **kw: Any) -> str:
    return "JSON TEXT"


# Reflection reads the declared names back as the types they stand for (by affinity
# alone they would be a BLOB and a TEXT column).
_sqlite_base.ischema_names.setdefault("FLOAT BLOB", sa.Float)
_sqlite_base.ischema_names.setdefault("JSON TEXT", sa.JSON)


def json_type() -> sa.types.TypeEngine:
    """The JSON column type: `json` on PostgreSQL, `JSON TEXT` on SQLite.

    Not jsonb: key order and number spelling survive. JSON null is never stored
    (None becomes SQL NULL).
    """
    return sa.JSON(none_as_null=True).with_variant(
        _SQLiteJSON(none_as_null=True), "sqlite"
    )


@dataclass(frozen=True)
class ColumnType:
    """Everything wave_web knows about one column type."""

    name: str
    label: str
    sql: Callable[[], sa.types.TypeEngine]
    parse: Callable[[str], Any]
    format: Callable[[Any], str]
    widget: str
    example: str
    strip: bool = True


COLUMN_TYPES: dict[str, ColumnType] = {
    t.name: t
    for t in (
        ColumnType(
            "INTEGER", "Whole number", sa.Integer, parse_integer, str, "number", "42"
        ),
        ColumnType(
            "FLOAT", "Decimal number", ExactFloat, parse_float, repr, "number", "0.25"
        ),
        ColumnType(
            "STRING",
            "Short text (≤ 255)",
            lambda: text_type(255),
            parse_string,
            str,
            "text",
            "congruent",
            strip=False,
        ),
        ColumnType(
            "TEXT",
            "Long text",
            text_type,
            parse_text,
            str,
            "textarea",
            "free text",
            strip=False,
        ),
        ColumnType(
            "BOOLEAN",
            "True / false",
            sa.Boolean,
            parse_boolean,
            lambda v: "true" if v else "false",
            "checkbox",
            "true",
        ),
        ColumnType(
            "DATETIME",
            "Date and time (UTC)",
            sa.DateTime,
            parse_datetime,
            format_datetime,
            "datetime",
            "2024-03-04T14:30:00Z",
        ),
        ColumnType(
            "JSON",
            "JSON",
            json_type,
            parse_json,
            format_json,
            "textarea",
            '{"block": 1}',
        ),
    )
}
TYPE_NAMES = tuple(COLUMN_TYPES)


def column_type(name: str) -> ColumnType:
    """The registry entry for a type name (case-insensitive), or InvalidValue."""
    found = COLUMN_TYPES.get(str(name).upper())
    if found is None:
        raise InvalidValue(
            f"Unknown column type “{shorten(str(name))}”; "
            f"use one of {', '.join(TYPE_NAMES)}."
        )
    return found


def parse_value(type_name: str, text: str | None) -> Any:
    """Parse a text cell into a Python value for `type_name`; empty means None."""
    ctype = COLUMN_TYPES[type_name]
    if text is None or (text.strip() == "" if ctype.strip else text == ""):
        return None
    return ctype.parse(text)


def format_value(type_name: str, value: Any) -> str:
    """The canonical text of a stored value ('' for NULL)."""
    if value is None:
        return ""
    return COLUMN_TYPES[type_name].format(value)


# ----------------------------------------------------------------------
# Schema definitions (experiment_types.schema_definition)
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnDef:
    """One custom column of a type, as stored in the registry."""

    name: str
    type: str
    nullable: bool = True
    description: str = ""
    label: str = ""  # the header the column came from (a file's), when not the name

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "nullable": self.nullable}
        if self.description:
            data["description"] = self.description
        if self.label and self.label != self.name:
            data["label"] = self.label
        return data


def normalise_schema(definition: Any) -> list[ColumnDef]:
    """Read either seed form: `"col": "TYPE"` or `"col": {"type": …, "nullable": …}`."""
    if definition is None:
        return []
    if not isinstance(definition, dict):
        raise InvalidValue("A schema definition must be a JSON object of column: type.")
    columns = []
    for name, spec in definition.items():
        if isinstance(spec, str):
            columns.append(ColumnDef(name, column_type(spec).name))
        elif isinstance(spec, dict) and "type" in spec:
            nullable = spec.get("nullable", True)
            if not isinstance(nullable, bool):
                raise InvalidValue(
                    f"Column “{shorten(name)}”: nullable must be true or false."
                )
            description = spec.get("description") or ""
            label = spec.get("label") or ""
            columns.append(
                ColumnDef(
                    name,
                    column_type(spec["type"]).name,
                    nullable,
                    str(description),
                    str(label),
                )
            )
        else:
            raise InvalidValue(
                f"Column “{shorten(str(name))}” needs a type: "
                '"TYPE" or {"type": "TYPE"}.'
            )
    return columns


def schema_to_json(columns: Iterable[ColumnDef]) -> dict[str, Any]:
    """The stored form of a column list, in order."""
    return {c.name: c.to_json() for c in columns}

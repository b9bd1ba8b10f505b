"""Request and response models of the API (pydantic v2): they validate the traffic
and describe it in the OpenAPI document.

Unknown keys of a body are ignored (api-v1.md §5: a GET-modify-PUT round trip works);
a `null` where the field is not nullable is a 422. The column and table name rules
are the registry's (columns.validate_name): the same names are refused as in the
web UI, with the same reason, in the 422 list form.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated
from typing import Any
from typing import ClassVar

from pydantic import AfterValidator
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator

from wave_web import columns
from wave_web.api.http import problem
from wave_web.errors import InvalidName

Skip = Annotated[int, Field(ge=0)]
INT64_MAX = 2**63 - 1
# An offset of a list: one past 64 bits (which no database can bind) reads as the
# largest one they take, the same empty page, never an overflow (searches echo
# their `skip` and stop before the database: Skip).
Offset = Annotated[int, Field(ge=0), AfterValidator(lambda n: min(n, INT64_MAX))]
Limit = Annotated[int, Field(ge=1, le=1000)]
Name100 = Annotated[str, Field(max_length=100)]
MAX_TAGS = columns.MAX_TAGS


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ----------------------------------------------------------------------
# Names and schema definitions (api-v1.md §11)
# ----------------------------------------------------------------------

SUPPORTED = ", ".join(columns.TYPE_NAMES)


def table_name_problem(name: str) -> str | None:
    """Why `name` cannot be a table name (syntax, 422), or None.

    The names of existing tables (ours included) are syntactically fine: they are a
    400 later ("already used by another table").
    """
    if name in columns.STATIC_TABLES:
        return None
    try:
        columns.validate_name(name, "table")
    except InvalidName as exc:
        return exc.message
    return None


def schema_problems(definition: Any) -> list[dict[str, Any]]:
    """Every problem of a schema_definition, each located at its column."""
    if not isinstance(definition, dict):
        return []  # pydantic reports the type
    found = []
    seen: list[str] = []
    for name, spec in definition.items():
        loc = ["body", "schema_definition", name]
        message = _column_problem(name, spec, seen)
        if message is not None:
            found.append(problem("value_error", loc, "Value error, " + message, spec))
        seen.append(name)
    if len(definition) > columns.MAX_COLUMNS:
        found.append(
            problem(
                "too_long",
                ["body", "schema_definition"],
                f"A type has at most {columns.MAX_COLUMNS} columns, "
                f"not {len(definition)}",
                None,
                {"max_length": columns.MAX_COLUMNS},
            )
        )
    return found


def _column_problem(name: str, spec: Any, seen: list[str]) -> str | None:
    if name.lower() in columns.STANDARD_COLUMNS:
        return f"Column name '{name}' is reserved and cannot be used"
    try:
        columns.validate_name(name, "column", seen)
    except InvalidName as exc:
        return exc.message
    if isinstance(spec, str):
        type_name = spec
    elif isinstance(spec, dict):
        if "type" not in spec:
            return f"Column definition for '{name}' must include 'type' field"
        type_name = spec["type"]
        if "nullable" in spec and not isinstance(spec["nullable"], bool):
            return f"Column definition for '{name}': 'nullable' must be true or false"
    else:
        return (
            f"Column definition for '{name}' must be a type name or an object with "
            "a 'type' field"
        )
    if not isinstance(type_name, str) or type_name.upper() not in columns.COLUMN_TYPES:
        return (
            f"Unsupported column type: {columns.shorten(str(type_name))}. "
            f"Supported types: {SUPPORTED}"
        )
    return None


def stored_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """The form kept: a string as sent, an object as {"type": UPPER, "nullable": b}."""
    out: dict[str, Any] = {}
    for name, spec in definition.items():
        if isinstance(spec, str):
            out[name] = spec
        else:
            out[name] = {
                "type": str(spec["type"]).upper(),
                "nullable": spec.get("nullable", True),
            }
    return out


class SchemaChecked(Body):
    @classmethod
    def extra_problems(cls, data: dict[str, Any]) -> list[dict[str, Any]]:
        found = schema_problems(data.get("schema_definition"))
        table = data.get("table_name")
        if "table_name" in cls.model_fields and isinstance(table, str):
            reason = table_name_problem(table)
            if reason is not None and cls.checks_table_syntax:
                found.append(
                    problem(
                        "value_error",
                        ["body", "table_name"],
                        "Value error, " + reason,
                        table,
                    )
                )
        return found

    checks_table_syntax: ClassVar[bool] = False


# ----------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------


class TypeCreate(SchemaChecked):
    name: Name100
    description: str | None = None
    table_name: str
    schema_definition: dict[str, Any] = Field(default_factory=dict)

    checks_table_syntax: ClassVar[bool] = True


class TypeUpdate(SchemaChecked):
    name: Name100 = ""
    description: str | None = None
    schema_definition: dict[str, Any] = Field(default_factory=dict)
    table_name: Any = None


class TagCreate(Body):
    name: Name100
    description: str | None = None


class TagUpdate(Body):
    name: Name100 = ""
    description: str | None = None


class ExperimentCreate(Body):
    experiment_type_id: Annotated[int, Field(gt=0)]
    description: str
    tags: Annotated[list[str], Field(max_length=MAX_TAGS)] = Field(default_factory=list)
    additional_data: dict[str, Any] = Field(default_factory=dict)


class ExperimentUpdate(Body):
    description: str = ""
    tags: Annotated[list[str], Field(max_length=MAX_TAGS)] = Field(default_factory=list)
    additional_data: dict[str, Any] = Field(default_factory=dict)
    experiment_type_id: Any = None


class RowCreate(Body):
    participant_id: Name100
    data: dict[str, Any]


class RowUpdate(Body):
    participant_id: Name100 = ""
    data: dict[str, Any] = Field(default_factory=dict)


ROW_ITEM_SCHEMA = {  # RowCreate's schema, written out (no model per batch item)
    "type": "object",
    "required": ["participant_id", "data"],
    "properties": {
        "participant_id": {"type": "string", "maxLength": 100},
        "data": {"type": "object", "additionalProperties": True},
    },
}


class RowBatch(Body):
    """Rows of a batch: each item's shape is checked by batch_problems(), not by a
    model per row (100,000 models cost more than the rows' COPY)."""

    rows: Annotated[
        list[Any],
        Field(
            min_length=1,
            json_schema_extra={"items": ROW_ITEM_SCHEMA},
        ),
    ]


MAX_SHAPE_PROBLEMS = 1000


def batch_problems(rows: list[Any]) -> list[dict[str, Any]]:
    """The 422 entries of batch items that are not {"participant_id": str ≤ 100,
    "data": object}, located as pydantic would locate them (at most 1,000)."""
    found: list[dict[str, Any]] = []
    for i, item in enumerate(rows):
        if len(found) >= MAX_SHAPE_PROBLEMS:
            break
        loc = ["body", "rows", i]
        if not isinstance(item, dict):
            found.append(
                problem(
                    "model_attributes_type",
                    loc,
                    "Input should be a valid dictionary or object to extract fields "
                    "from",
                    item if isinstance(item, str | int | float | bool) else None,
                )
            )
            continue
        pid = item.get("participant_id")
        if "participant_id" not in item:
            found.append(problem("missing", [*loc, "participant_id"], "Field required"))
        elif not isinstance(pid, str):
            found.append(
                problem(
                    "string_type",
                    [*loc, "participant_id"],
                    "Input should be a valid string",
                    pid if isinstance(pid, int | float | bool) else None,
                )
            )
        elif len(pid) > 100:
            found.append(
                problem(
                    "string_too_long",
                    [*loc, "participant_id"],
                    "String should have at most 100 characters",
                    pid,
                    {"max_length": 100},
                )
            )
        if "data" not in item:
            found.append(problem("missing", [*loc, "data"], "Field required"))
        elif not isinstance(item["data"], dict):
            found.append(
                problem(
                    "dict_type", [*loc, "data"], "Input should be a valid dictionary"
                )
            )
    return found


class DataQuery(Body):
    participant_id: Name100 | None = None
    filters: dict[str, Any] = Field(default_factory=dict)
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    limit: Limit = 100
    offset: Offset = 0


class SearchBody(Body):
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    skip: Skip = 0
    limit: Limit = 100


SearchText = Annotated[str, Field(min_length=1)]


class TagSearch(SearchBody):
    tags: Annotated[list[str], Field(min_length=1)]
    match_all: bool = True


class TextSearch(SearchBody):
    search_text: SearchText


class TypeTextSearch(SearchBody):
    experiment_type_id: int
    search_text: SearchText


class AdvancedSearch(SearchBody):
    search_text: str | None = None
    tags: list[str] | None = None
    match_all_tags: bool = True
    experiment_type_id: int | None = None


class DataTagSearch(TagSearch):
    """Rows of the experiments with the tags; `skip` and `limit` count rows."""


# ----------------------------------------------------------------------
# Query strings
# ----------------------------------------------------------------------


class Page(BaseModel):
    skip: Offset = 0
    limit: Limit = 100


class ExperimentList(Page):
    experiment_type_id: int = 0
    tags: list[str] = Field(default_factory=list)

    list_fields: ClassVar[tuple[str, ...]] = ("tags",)


_EPOCH = re.compile(r"[+-]?\d+(\.\d+)?")


def parse_when(value: Any) -> dt.datetime | None:
    """A date bound of a data query: ISO date-time (± offset), a date or an epoch."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str) and _EPOCH.fullmatch(value.strip()):
        try:
            moment = dt.datetime.fromtimestamp(float(value), dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("the epoch number is out of range") from None
    elif isinstance(value, str):
        text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                "expected an ISO 8601 date-time, a date or a Unix epoch number"
            ) from None
    else:
        raise ValueError("expected a date-time")
    return naive_utc(moment)


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """`moment` in UTC without offset (naive is UTC already); a bound that leaves
    the calendar once converted (9999-12-31T23:00-05:00) is its last instant."""
    if moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(dt.UTC).replace(tzinfo=None)
    except OverflowError:
        return dt.datetime.max if moment.year > 1 else dt.datetime.min


class DataList(BaseModel):
    participant_id: str = ""
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    limit: Limit = 100
    offset: Offset = 0

    @field_validator("created_after", "created_before", mode="before")
    @classmethod
    def _when(cls, value: Any) -> dt.datetime | None:
        return parse_when(value)


class CountQuery(BaseModel):
    participant_id: str | None = None


# ----------------------------------------------------------------------
# Responses (for the OpenAPI document)
# ----------------------------------------------------------------------


class TagOut(BaseModel):
    name: str
    description: str | None
    id: int
    created_at: str
    updated_at: str


class TypeOut(BaseModel):
    name: str
    description: str | None
    table_name: str
    schema_definition: dict[str, Any]
    id: int
    created_at: str
    updated_at: str


class ExperimentOut(BaseModel):
    description: str
    tags: list[str]
    additional_data: dict[str, Any]
    uuid: str
    experiment_type_id: int
    created_at: str
    updated_at: str
    experiment_type: TypeOut


class DataRowOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    experiment_uuid: str
    participant_id: str
    created_at: str
    updated_at: str


class ColumnInfo(BaseModel):
    column_name: str
    column_type: str
    is_nullable: bool
    default_value: None = None


class ExperimentColumns(BaseModel):
    experiment_uuid: str | None
    experiment_type: str
    columns: list[ColumnInfo]


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: str


class DataCount(BaseModel):
    count: int
    participant_id: str | None
    experiment_id: str


class BatchResult(BaseModel):
    experiment_id: str
    inserted: int
    ids: list[int]


class Pagination(BaseModel):
    skip: int
    limit: int
    total: int


class ExperimentSearchOut(BaseModel):
    experiments: list[ExperimentOut]
    total: int
    pagination: Pagination


class TypeSearchOut(BaseModel):
    experiment_types: list[TypeOut]
    total: int
    pagination: Pagination


class TagSearchOut(BaseModel):
    tags: list[TagOut]
    total: int
    pagination: Pagination


class ExperimentMetadata(BaseModel):
    experiment_uuid: str
    experiment_description: str
    experiment_type_name: str
    experiment_tags: list[str]


class DataSearchRow(DataRowOut):
    experiment_metadata: ExperimentMetadata


class ExperimentInfo(BaseModel):
    description: str
    type_name: str
    tags: list[str]
    data_count: int


class DataSearchOut(BaseModel):
    data: list[DataSearchRow]
    total_rows: int
    total_experiments: int
    experiment_info: dict[str, ExperimentInfo]
    pagination: Pagination

"""Experiment data (api-v1.md §9): rows of one experiment in its type's table.

Every route loads the experiment first (404 `Experiment not found`), then works on
the rows of that experiment only. Values are read by wave_web.jsonvalues, on the
registry's parsers; writes go through datatables (one row) and the import
pipeline's writer (a batch), each one transaction with its audit entry.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

from flask import current_app

import wave_web.datatables as datatables
from wave_web import catalog
from wave_web import jsonvalues
from wave_web.api import shapes
from wave_web.api.http import INT32_MAX
from wave_web.api.http import ApiError
from wave_web.api.http import endpoint
from wave_web.api.http import problem
from wave_web.api.schemas import BatchResult
from wave_web.api.schemas import ColumnInfo
from wave_web.api.schemas import CountQuery
from wave_web.api.schemas import DataCount
from wave_web.api.schemas import DataList
from wave_web.api.schemas import DataQuery
from wave_web.api.schemas import DataRowOut
from wave_web.api.schemas import Message
from wave_web.api.schemas import RowBatch
from wave_web.api.schemas import RowCreate
from wave_web.api.schemas import RowUpdate
from wave_web.api.schemas import batch_problems
from wave_web.api.schemas import naive_utc
from wave_web.csv_io import writing
from wave_web.extensions import db
from wave_web.jsonvalues import RowProblemsJSON
from wave_web.models import record

GROUP = "Experiment data"
BASE = "/experiment-data/<experiment_id>/data"
EXPERIMENT = {"experiment_id": "uuid"}
ROW = {"experiment_id": "uuid", "row_id": "int"}
ROW_NOT_FOUND = "Experiment data row not found"
SHOWN_BATCH_PROBLEMS = 100
BATCH_CHUNK = 5_000  # rows read while the database writes the chunk before


def find(experiment_id: uuid.UUID | None) -> catalog.ExperimentRef:
    """The experiment of the path with its type (one Core query), or 404."""
    experiment = catalog.experiment_ref(experiment_id) if experiment_id else None
    if experiment is None:
        raise ApiError(404, "Experiment not found")
    return experiment


def _naive(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else naive_utc(value)


def _matches_nothing(equals: dict[str, Any]) -> bool:
    """True when a filter holds a NUL: no stored text has one (and PostgreSQL
    refuses it even in a query), so the answer is empty on both databases."""
    return any(isinstance(v, str) and "\x00" in v for v in equals.values())


def _row(experiment: catalog.ExperimentRef, row_id: int | None) -> dict[str, Any]:
    if not row_id:
        raise ApiError(404, ROW_NOT_FOUND)
    try:
        return datatables.get_row(experiment.experiment_type, experiment.uuid, row_id)
    except datatables.RowNotFound:
        raise ApiError(404, ROW_NOT_FOUND) from None


@endpoint(
    BASE + "/",
    "POST",
    "experimentee",
    summary="Add one row (what experiment software calls per trial)",
    group=GROUP,
    path=EXPERIMENT,
    body=RowCreate,
    response=DataRowOut,
    status=201,
    errors=(400, 404, 422),
)
def create_row(experiment_id: uuid.UUID | None, body: RowCreate) -> dict[str, Any]:
    experiment = find(experiment_id)
    xtype = experiment.experiment_type
    values = jsonvalues.read_row(xtype, body.participant_id, body.data, new=True)
    row = datatables.insert_row(xtype, experiment.uuid, values)
    return jsonvalues.row_json(xtype, row)


@endpoint(
    BASE + "/batch",
    "POST",
    "experimentee",
    summary="Add many rows at once, all or nothing",
    group=GROUP,
    path=EXPERIMENT,
    body=RowBatch,
    response=BatchResult,
    status=201,
    errors=(400, 404, 422),
    bulk=True,
)
def create_rows(experiment_id: uuid.UUID | None, body: RowBatch) -> dict[str, Any]:
    limit = current_app.config["WAVE_API_BATCH_MAX_ROWS"]
    if len(body.rows) > limit:
        raise ApiError(
            422,
            [
                problem(
                    "too_long",
                    ["body", "rows"],
                    f"List should have at most {limit} items after validation, "
                    f"not {len(body.rows)}",
                    None,
                    {"field_type": "List", "max_length": limit},
                )
            ],
        )
    shape = batch_problems(body.rows)
    if shape:
        raise ApiError(422, shape)
    experiment = find(experiment_id)
    xtype = experiment.experiment_type
    read = jsonvalues.row_reader(xtype)
    problems: list[str] = []

    def chunks() -> Iterator[list[dict[str, Any]]]:
        """Rows read chunk by chunk while the database writes the previous chunk;
        after a bad row the rest is only checked, and the write is stopped."""
        items = body.rows
        for start in range(0, len(items), BATCH_CHUNK):
            chunk = []
            for number, item in enumerate(
                items[start : start + BATCH_CHUNK], start + 1
            ):
                try:
                    chunk.append(read(item["participant_id"], item["data"]))
                except RowProblemsJSON as exc:
                    problems.append(f"Row {number}: {exc.message}")
            if not problems:
                yield chunk
        if problems:
            shown = problems[:SHOWN_BATCH_PROBLEMS]
            rest = len(problems) - len(shown)
            detail = "; ".join(shown)
            if rest:
                detail += f"; and {rest} more rows with problems"
            raise ApiError(400, detail)

    ids = writing.write_rows(xtype, experiment.uuid, chunks(), len(body.rows))
    record(
        "rows.insert_batch",
        "experiment",
        experiment.uuid,
        f"Added {len(ids):,} rows through the API",
        table=xtype.table_name,
        count=len(ids),
        first_id=ids[0],
        last_id=ids[-1],
    )
    db.session.commit()
    return {"experiment_id": str(experiment.uuid), "inserted": len(ids), "ids": ids}


@endpoint(
    BASE + "/",
    "GET",
    "researcher",
    summary="List rows, newest first; by participant and creation time",
    group=GROUP,
    path=EXPERIMENT,
    query=DataList,
    response=[DataRowOut],
    errors=(404, 422),
)
def list_rows(experiment_id: uuid.UUID | None, query: DataList) -> list[dict]:
    experiment = find(experiment_id)
    xtype = experiment.experiment_type
    equals = {"participant_id": query.participant_id} if query.participant_id else {}
    if _matches_nothing(equals):
        return []
    rows = datatables.list_rows(
        xtype,
        experiment.uuid,
        equals,
        _naive(query.created_after),
        _naive(query.created_before),
        query.limit,
        query.offset,
    )
    return [jsonvalues.row_json(xtype, r) for r in rows]


@endpoint(
    BASE + "/count",
    "GET",
    "researcher",
    summary="Count rows, optionally of one participant",
    group=GROUP,
    path=EXPERIMENT,
    query=CountQuery,
    response=DataCount,
    errors=(404, 422),
)
def count_rows(experiment_id: uuid.UUID | None, query: CountQuery) -> dict[str, Any]:
    experiment = find(experiment_id)
    if query.participant_id and _matches_nothing(query.model_dump()):
        count = 0
    elif query.participant_id:
        count = datatables.count_matching(
            experiment.experiment_type,
            experiment.uuid,
            {"participant_id": query.participant_id},
        )
    else:
        count = experiment.row_count  # kept exact with every write
    return {
        "count": count,
        "participant_id": query.participant_id,
        "experiment_id": str(experiment.uuid),
    }


@endpoint(
    BASE + "/columns",
    "GET",
    "researcher",
    summary="The columns of the experiment's data table",
    group=GROUP,
    path=EXPERIMENT,
    response=[ColumnInfo],
    errors=(404, 422),
)
def data_columns(experiment_id: uuid.UUID | None) -> list[dict[str, Any]]:
    return shapes.data_columns(find(experiment_id).experiment_type)


@endpoint(
    BASE + "/row/<row_id>",
    "GET",
    "researcher",
    summary="Read one row",
    group=GROUP,
    path=ROW,
    response=DataRowOut,
    errors=(404, 422),
)
def get_row(experiment_id: uuid.UUID | None, row_id: int | None) -> dict[str, Any]:
    experiment = find(experiment_id)
    return jsonvalues.row_json(experiment.experiment_type, _row(experiment, row_id))


@endpoint(
    BASE + "/row/<row_id>",
    "PUT",
    "researcher",
    summary="Change values of one row",
    group=GROUP,
    path=ROW,
    body=RowUpdate,
    response=DataRowOut,
    errors=(400, 404, 422),
)
def update_row(
    experiment_id: uuid.UUID | None, row_id: int | None, body: RowUpdate
) -> dict[str, Any]:
    experiment = find(experiment_id)
    xtype = experiment.experiment_type
    current = _row(experiment, row_id)
    sent = body.model_fields_set
    participant = body.participant_id if "participant_id" in sent else None
    if participant is None and not body.data:
        raise ApiError(400, "Nothing to update: provide participant_id and/or data")
    values = jsonvalues.read_row(xtype, participant, body.data, new=False)
    row = datatables.update_row(
        xtype, experiment.uuid, current["id"], values, current["updated_at"], True
    )
    return jsonvalues.row_json(xtype, row)


@endpoint(
    BASE + "/row/<row_id>",
    "DELETE",
    "admin",
    summary="Delete one row",
    group=GROUP,
    path=ROW,
    response=Message,
    errors=(404, 422),
)
def delete_row(experiment_id: uuid.UUID | None, row_id: int | None) -> dict[str, Any]:
    experiment = find(experiment_id)
    current = _row(experiment, row_id)
    datatables.delete_rows(experiment.experiment_type, experiment.uuid, [current["id"]])
    return {
        "message": "Experiment data row deleted successfully",
        "deleted_id": current["id"],
        "experiment_id": str(experiment.uuid),
    }


def _filters(xtype: Any, filters: dict[str, Any]) -> dict[str, Any]:
    """Equality filters of /data/query, values checked like cells; 400 otherwise."""
    by_name = {c.name: c for c in xtype.columns}
    unknown = [
        k for k in filters if k not in by_name and k not in ("id", "participant_id")
    ]
    if unknown:
        raise ApiError(400, f"Unknown filter columns: {unknown!r}")
    equals: dict[str, Any] = {}
    problems = []
    for name, value in filters.items():
        if name == "id":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int)
            ):
                problems.append(f"Invalid value for filter 'id' (INTEGER): {value!r}")
                continue
            if value is not None and not 1 <= value <= INT32_MAX:
                return {"id": 0}  # no row has it
            equals[name] = value
        elif name == "participant_id":
            if value is not None and not isinstance(value, str):
                problems.append(
                    f"Invalid value for filter 'participant_id' (STRING): {value!r}"
                )
                continue
            equals[name] = value
        elif by_name[name].type == "JSON":
            raise ApiError(
                400, f"Column '{name}' is JSON and cannot be used as an equality filter"
            )
        else:
            try:
                equals[name] = jsonvalues.read_value(by_name[name], value)
            except ValueError as exc:
                problems.append(str(exc))
    if problems:
        raise ApiError(400, "; ".join(problems))
    return equals


@endpoint(
    BASE + "/query",
    "POST",
    "researcher",
    summary="Rows matching equality filters, newest first",
    group=GROUP,
    path=EXPERIMENT,
    body=DataQuery,
    response=[DataRowOut],
    errors=(400, 404, 422),
    writes=False,
)
def query_rows(experiment_id: uuid.UUID | None, body: DataQuery) -> list[dict]:
    experiment = find(experiment_id)
    xtype = experiment.experiment_type
    equals = _filters(xtype, body.filters)
    if body.participant_id:  # null and "" mean no filter, as in the GET list
        equals["participant_id"] = body.participant_id
    if _matches_nothing(equals):
        return []
    rows = datatables.list_rows(
        xtype,
        experiment.uuid,
        equals,
        _naive(body.created_after),
        _naive(body.created_before),
        body.limit,
        body.offset,
    )
    return [jsonvalues.row_json(xtype, r) for r in rows]

"""Experiment types (api-v1.md §5): the registry and the DDL of schema.py."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from wave_web import columns
from wave_web import schema
from wave_web.api import shapes
from wave_web.api.http import ApiError
from wave_web.api.http import endpoint
from wave_web.api.schemas import ExperimentColumns
from wave_web.api.schemas import Message
from wave_web.api.schemas import Page
from wave_web.api.schemas import TypeCreate
from wave_web.api.schemas import TypeOut
from wave_web.api.schemas import TypeUpdate
from wave_web.api.schemas import stored_definition
from wave_web.columns import normalise_schema
from wave_web.extensions import db
from wave_web.models import ExperimentType
from wave_web.models import name_key
from wave_web.models import utcnow

GROUP = "Experiment types"
NOT_FOUND = "Experiment type not found"
ID = {"experiment_type_id": "int"}


def find(type_id: int | None) -> ExperimentType:
    xtype = db.session.get(ExperimentType, type_id) if type_id else None
    if xtype is None:
        raise ApiError(404, NOT_FOUND)
    return xtype


def _name_taken(name: str, exclude: int | None = None) -> None:
    columns.clean_text(name, "name", "name")  # a NUL is a 400, not a lookup
    stmt = sa.select(ExperimentType.id).where(ExperimentType.name_key == name_key(name))
    if exclude is not None:
        stmt = stmt.where(ExperimentType.id != exclude)
    other = db.session.scalar(stmt)
    if other is not None:
        raise ApiError(
            400, f"Experiment type with this name already exists (ID: {other})"
        )


def _table_taken(table_name: str) -> None:
    other = db.session.scalar(
        sa.select(ExperimentType.id).where(
            sa.func.lower(ExperimentType.table_name) == table_name.lower()
        )
    )
    if other is not None:
        raise ApiError(
            400, f"Experiment type with this table_name already exists (ID: {other})"
        )
    if table_name.lower() in {t.lower() for t in schema.taken_table_names()}:
        raise ApiError(
            400,
            f"table_name '{table_name}' is already used by another table; "
            "choose a different name",
        )


@endpoint(
    "/experiment-types/",
    "POST",
    "researcher",
    summary="Create an experiment type and its data table",
    group=GROUP,
    body=TypeCreate,
    response=TypeOut,
    errors=(400, 422),
)
def create_type(body: TypeCreate) -> dict[str, Any]:
    _name_taken(body.name)
    _table_taken(body.table_name)
    stored = stored_definition(body.schema_definition)
    xtype = schema.create_type(
        body.name,
        body.description or "",
        body.table_name,
        normalise_schema(stored),
        stored=stored,
    )
    return shapes.experiment_type(xtype)


@endpoint(
    "/experiment-types/<experiment_type_id>",
    "GET",
    "researcher",
    summary="Read an experiment type",
    group=GROUP,
    path=ID,
    response=TypeOut,
    errors=(404, 422),
)
def get_type(experiment_type_id: int | None) -> dict[str, Any]:
    return shapes.experiment_type(find(experiment_type_id))


@endpoint(
    "/experiment-types/",
    "GET",
    "researcher",
    summary="List experiment types, newest first",
    group=GROUP,
    query=Page,
    response=[TypeOut],
    errors=(422,),
)
def list_types(query: Page) -> list[dict[str, Any]]:
    stmt = (
        sa.select(ExperimentType)
        .order_by(ExperimentType.id.desc())
        .offset(query.skip)
        .limit(query.limit)
    )
    return [shapes.experiment_type(x) for x in db.session.scalars(stmt)]


@endpoint(
    "/experiment-types/<experiment_type_id>",
    "PUT",
    "researcher",
    summary="Change an experiment type (a new schema is applied to its table)",
    group=GROUP,
    path=ID,
    body=TypeUpdate,
    response=TypeOut,
    errors=(400, 404, 422),
)
def update_type(experiment_type_id: int | None, body: TypeUpdate) -> dict[str, Any]:
    xtype = find(experiment_type_id)
    sent = body.model_fields_set
    if "table_name" in sent and body.table_name != xtype.table_name:
        raise ApiError(400, "table_name cannot be changed after creation")
    name = body.name if "name" in sent else xtype.name
    description = body.description if "description" in sent else xtype.description
    if "name" in sent:
        _name_taken(body.name, exclude=xtype.id)
    schema.update_type(xtype, name, description or "", commit=False)
    if "schema_definition" in sent:
        stored = stored_definition(body.schema_definition)
        schema.apply_definition(
            xtype, normalise_schema(stored), stored=stored, commit=False
        )
    xtype.updated_at = utcnow()  # every successful PUT, even one that changes nothing
    schema.commit_type(xtype)
    return shapes.experiment_type(xtype)


@endpoint(
    "/experiment-types/<experiment_type_id>",
    "DELETE",
    "admin",
    summary="Delete an unused experiment type and its data table",
    group=GROUP,
    path=ID,
    response=Message,
    errors=(400, 404, 422),
)
def delete_type(experiment_type_id: int | None) -> dict[str, Any]:
    xtype = find(experiment_type_id)
    count = schema.experiment_count(xtype)
    if count:
        raise ApiError(
            400,
            f"Experiment type {xtype.id} is still used by {count} experiment(s); "
            "delete those experiments first",
        )
    schema.delete_type(xtype, xtype.name)
    return {"message": "Experiment type deleted successfully"}


@endpoint(
    "/experiment-types/name/<path:experiment_type_name>/columns",
    "GET",
    "researcher",
    summary="The columns of an experiment of the named type",
    group=GROUP,
    path={"experiment_type_name": "str"},
    response=ExperimentColumns,
    errors=(404,),
)
def type_columns(experiment_type_name: str) -> dict[str, Any]:
    if "\x00" in experiment_type_name:  # no name has one (PostgreSQL refuses it)
        raise ApiError(404, NOT_FOUND)
    name = db.session.scalar(
        sa.select(ExperimentType.name).where(
            ExperimentType.name == experiment_type_name
        )
    )
    if name is None:
        raise ApiError(404, NOT_FOUND)
    return shapes.experiment_columns(None, name)

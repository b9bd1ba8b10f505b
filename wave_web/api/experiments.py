"""Experiments (api-v1.md §7): the catalog's functions; a delete takes the rows too."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from wave_web import catalog
from wave_web import columns
from wave_web.api import shapes
from wave_web.api.http import INT32_MAX
from wave_web.api.http import ApiError
from wave_web.api.http import endpoint
from wave_web.api.schemas import ExperimentColumns
from wave_web.api.schemas import ExperimentCreate
from wave_web.api.schemas import ExperimentList
from wave_web.api.schemas import ExperimentOut
from wave_web.api.schemas import ExperimentUpdate
from wave_web.api.schemas import Message
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import has_tag

GROUP = "Experiments"
NOT_FOUND = "Experiment not found"
UUID = {"experiment_uuid": "uuid"}


def find(experiment_uuid: uuid.UUID | None) -> Experiment:
    experiment = (
        db.session.get(Experiment, experiment_uuid) if experiment_uuid else None
    )
    if experiment is None:
        raise ApiError(404, NOT_FOUND)
    return experiment


def existing_tags(names: list[str]) -> list[str]:
    """The stored names of `names`, in order with repeats; 400 for the first unknown."""
    found = []
    for name in names:
        if len(name) > columns.MAX_TAG_LENGTH:
            raise ApiError(
                400,
                f"Tag '{name}' is longer than {columns.MAX_TAG_LENGTH} characters and "
                "cannot be attached to an experiment",
            )
        known = name.strip() and "\x00" not in name  # PostgreSQL refuses a NUL
        tag = catalog.find_tag(name.strip()) if known else None
        if tag is None:
            raise ApiError(
                400, f"Tag '{name}' does not exist. Please create the tag first."
            )
        found.append(tag.name)
    return found


def ordered(stmt: sa.Select) -> sa.Select:
    """Newest first, with the uuid as tie-breaker (a total order for paging)."""
    return stmt.options(selectinload(Experiment.experiment_type)).order_by(
        Experiment.created_at.desc(), Experiment.uuid
    )


@endpoint(
    "/experiments/",
    "POST",
    "researcher",
    summary="Create an experiment of a type",
    group=GROUP,
    body=ExperimentCreate,
    response=ExperimentOut,
    errors=(400, 422),
)
def create_experiment(body: ExperimentCreate) -> dict[str, Any]:
    type_id = body.experiment_type_id
    xtype = db.session.get(ExperimentType, type_id) if type_id <= INT32_MAX else None
    if xtype is None:
        raise ApiError(400, f"Experiment type with ID {type_id} does not exist")
    tags = existing_tags(body.tags)
    experiment = catalog.create_experiment(
        xtype, body.description, tags, body.additional_data, repeats=True
    )
    return shapes.experiment(experiment)


@endpoint(
    "/experiments/<experiment_uuid>",
    "GET",
    "researcher",
    summary="Read an experiment",
    group=GROUP,
    path=UUID,
    response=ExperimentOut,
    errors=(404, 422),
)
def get_experiment(experiment_uuid: uuid.UUID | None) -> dict[str, Any]:
    return shapes.experiment(find(experiment_uuid))


@endpoint(
    "/experiments/",
    "GET",
    "researcher",
    summary="List experiments, newest first; by type and tags (all of them)",
    group=GROUP,
    query=ExperimentList,
    response=[ExperimentOut],
    errors=(422,),
)
def list_experiments(query: ExperimentList) -> list[dict[str, Any]]:
    if any("\x00" in tag for tag in query.tags):
        return []  # no tag has a NUL (PostgreSQL refuses it in a query)
    stmt = sa.select(Experiment)
    if query.experiment_type_id:
        if not 1 <= query.experiment_type_id <= INT32_MAX:
            return []  # no type has that id (beyond 64 bits SQLite cannot even bind it)
        stmt = stmt.where(Experiment.experiment_type_id == query.experiment_type_id)
    for tag in query.tags:
        stmt = stmt.where(has_tag(tag))
    stmt = ordered(stmt).offset(query.skip).limit(query.limit)
    return [shapes.experiment(e) for e in db.session.scalars(stmt)]


@endpoint(
    "/experiments/<experiment_uuid>",
    "PUT",
    "researcher",
    summary="Change an experiment's description, tags or additional data",
    group=GROUP,
    path=UUID,
    body=ExperimentUpdate,
    response=ExperimentOut,
    errors=(400, 404, 422),
)
def update_experiment(
    experiment_uuid: uuid.UUID | None, body: ExperimentUpdate
) -> dict[str, Any]:
    experiment = find(experiment_uuid)
    sent = body.model_fields_set
    if (
        "experiment_type_id" in sent
        and body.experiment_type_id != experiment.experiment_type_id
    ):
        raise ApiError(400, "experiment_type_id cannot be changed")
    tags = existing_tags(body.tags) if "tags" in sent else list(experiment.tags)
    catalog.update_experiment(
        experiment,
        body.description if "description" in sent else experiment.description,
        tags,
        body.additional_data
        if "additional_data" in sent
        else experiment.additional_data or {},
        repeats=True,
        touch=True,  # every successful PUT, even one that changes nothing
    )
    return shapes.experiment(experiment)


@endpoint(
    "/experiments/<experiment_uuid>",
    "DELETE",
    "admin",
    summary="Delete an experiment and all its data rows",
    group=GROUP,
    path=UUID,
    response=Message,
    errors=(404, 422),
)
def delete_experiment(experiment_uuid: uuid.UUID | None) -> dict[str, Any]:
    rows = catalog.delete_experiment(find(experiment_uuid))
    return {"message": "Experiment deleted successfully", "deleted_data_rows": rows}


@endpoint(
    "/experiments/<experiment_uuid>/columns",
    "GET",
    "researcher",
    summary="The columns of the experiment resource",
    group=GROUP,
    path=UUID,
    response=ExperimentColumns,
    errors=(404, 422),
)
def experiment_columns(experiment_uuid: uuid.UUID | None) -> dict[str, Any]:
    experiment = find(experiment_uuid)
    return shapes.experiment_columns(
        str(experiment.uuid), experiment.experiment_type.name
    )

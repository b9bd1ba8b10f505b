"""Tags (api-v1.md §6): the catalog's tag functions (renames reach experiments)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from wave_web import catalog
from wave_web import columns
from wave_web.api import shapes
from wave_web.api.http import ApiError
from wave_web.api.http import endpoint
from wave_web.api.schemas import Message
from wave_web.api.schemas import Page
from wave_web.api.schemas import TagCreate
from wave_web.api.schemas import TagOut
from wave_web.api.schemas import TagUpdate
from wave_web.extensions import db
from wave_web.models import Tag
from wave_web.models import utcnow

GROUP = "Tags"
NOT_FOUND = "Tag not found"
ID = {"tag_id": "int"}
TAKEN = "Tag with this name already exists"


def find(tag_id: int | None) -> Tag:
    tag = db.session.get(Tag, tag_id) if tag_id else None
    if tag is None:
        raise ApiError(404, NOT_FOUND)
    return tag


def _taken(name: str, exclude: int | None = None) -> None:
    other = catalog.find_tag(columns.clean_tag_name(name))  # 400 before a lookup
    if other is not None and other.id != exclude:
        raise ApiError(400, TAKEN)


@endpoint(
    "/tags/",
    "POST",
    "researcher",
    summary="Create a tag",
    group=GROUP,
    body=TagCreate,
    response=TagOut,
    errors=(400, 422),
)
def create_tag(body: TagCreate) -> dict[str, Any]:
    _taken(body.name)
    return shapes.tag(catalog.create_tag(body.name, body.description or ""))


@endpoint(
    "/tags/<tag_id>",
    "GET",
    "researcher",
    summary="Read a tag",
    group=GROUP,
    path=ID,
    response=TagOut,
    errors=(404, 422),
)
def get_tag(tag_id: int | None) -> dict[str, Any]:
    return shapes.tag(find(tag_id))


@endpoint(
    "/tags/",
    "GET",
    "researcher",
    summary="List tags, newest first",
    group=GROUP,
    query=Page,
    response=[TagOut],
    errors=(422,),
)
def list_tags(query: Page) -> list[dict[str, Any]]:
    stmt = sa.select(Tag).order_by(Tag.id.desc()).offset(query.skip).limit(query.limit)
    return [shapes.tag(t) for t in db.session.scalars(stmt)]


@endpoint(
    "/tags/<tag_id>",
    "PUT",
    "researcher",
    summary="Rename or describe a tag (a rename reaches every experiment)",
    group=GROUP,
    path=ID,
    body=TagUpdate,
    response=TagOut,
    errors=(400, 404, 422),
)
def update_tag(tag_id: int | None, body: TagUpdate) -> dict[str, Any]:
    tag = find(tag_id)
    sent = body.model_fields_set
    name = body.name if "name" in sent else tag.name
    description = body.description if "description" in sent else tag.description
    if "name" in sent:
        _taken(name, exclude=tag.id)
    tag.updated_at = utcnow()  # every successful PUT, even one that changes nothing
    catalog.update_tag(tag, name, description or "")
    return shapes.tag(tag)


@endpoint(
    "/tags/<tag_id>",
    "DELETE",
    "admin",
    summary="Delete a tag and take it off every experiment",
    group=GROUP,
    path=ID,
    response=Message,
    errors=(404, 422),
)
def delete_tag(tag_id: int | None) -> dict[str, Any]:
    catalog.delete_tag(find(tag_id))
    return {"message": "Tag deleted successfully"}

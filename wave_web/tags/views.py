"""Tags: list with usage counts, create, edit/rename, delete."""

from __future__ import annotations

from flask import flash
from flask import render_template
from flask import request
from flask import url_for

from wave_web import catalog
from wave_web.access import requires
from wave_web.errors import InvalidValue
from wave_web.errors import NameTaken
from wave_web.extensions import db
from wave_web.htmx import redirect_to
from wave_web.params import MAX_TAG_FILTER
from wave_web.params import page_arg
from wave_web.params import text_arg
from wave_web.tags import bp


def _field_of(exc: InvalidValue | NameTaken) -> str:
    """The form field an error belongs to: the description, else the name."""
    return "description" if exc.field == "description" else "name"


@bp.get("/")
@requires("viewer")
def index():
    q = text_arg("q", MAX_TAG_FILTER, "The search text")
    pagination, usage = catalog.list_tags(page=page_arg(), q=q)
    return render_template(
        "tags/index.html", pagination=pagination, usage=usage, q=q, form={}, errors={}
    )


@bp.post("/")
@requires("researcher")
def create():
    form = request.form
    try:
        tag = catalog.create_tag(form.get("name", ""), form.get("description", ""))
    except (InvalidValue, NameTaken) as exc:
        db.session.rollback()
        pagination, usage = catalog.list_tags(page=1)
        return render_template(
            "tags/index.html",
            pagination=pagination,
            usage=usage,
            q="",
            form=form,
            errors={_field_of(exc): exc.message},
        ), 422
    flash(f"Created the tag “{tag.name}”.", "success")
    return redirect_to(url_for(".index"))


@bp.route("/<int(max=2147483647):tag_id>/edit", methods=["GET", "POST"])
@requires("researcher")
def edit(tag_id: int):
    tag = catalog.get_tag(tag_id)
    usage = catalog.tag_usage().get(tag.name, 0)
    if request.method == "GET":
        form = {"name": tag.name, "description": tag.description or ""}
        return render_template(
            "tags/edit.html", tag=tag, form=form, errors={}, usage=usage
        )
    form = request.form
    try:
        changed = catalog.update_tag(
            tag, form.get("name", ""), form.get("description", "")
        )
    except (InvalidValue, NameTaken) as exc:
        db.session.rollback()
        return render_template(
            "tags/edit.html",
            tag=tag,
            form=form,
            errors={_field_of(exc): exc.message},
            usage=usage,
        ), 422
    note = (
        f" and updated {changed} experiment{'s' if changed != 1 else ''}"
        if changed
        else ""
    )
    flash(f"Saved the tag “{tag.name}”{note}.", "success")
    return redirect_to(url_for(".index"))


@bp.route("/<int(max=2147483647):tag_id>/delete", methods=["GET", "POST"])
@requires("researcher")
def delete(tag_id: int):
    tag = catalog.get_tag(tag_id)
    if request.method == "POST":
        name = tag.name
        changed = catalog.delete_tag(tag)
        flash(
            f"Deleted the tag “{name}” and removed it from {changed} experiment"
            f"{'s' if changed != 1 else ''}.",
            "success",
        )
        return redirect_to(url_for(".index"))
    usage = catalog.tag_usage().get(tag.name, 0)
    return render_template("tags/delete.html", tag=tag, usage=usage)

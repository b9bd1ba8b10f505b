"""Experiments: list, create, edit, the experiment page, delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import flash
from flask import render_template
from flask import request
from flask import url_for
from werkzeug.datastructures import MultiDict

from wave_web import catalog
from wave_web import columns
from wave_web import datatables
from wave_web import queries
from wave_web import schema
from wave_web.access import requires
from wave_web.errors import InvalidValue
from wave_web.errors import WaveError
from wave_web.errors import bad_request
from wave_web.experiments import bp
from wave_web.extensions import db
from wave_web.gridview import canonical_redirect
from wave_web.gridview import render_grid
from wave_web.htmx import redirect_to
from wave_web.models import Experiment
from wave_web.params import MAX_SEARCH
from wave_web.params import MAX_TAG_FILTER
from wave_web.params import page_arg
from wave_web.params import parse_id
from wave_web.params import text_arg


def _filter_from_args() -> catalog.ExperimentFilter:
    raw_type = request.args.get("type_id", "")
    type_id = parse_id(raw_type) if raw_type else None
    if raw_type and type_id is None:
        raise bad_request(
            "The type filter must be a type id; pick a type from the list."
        )
    return catalog.ExperimentFilter(
        q=text_arg("q", MAX_SEARCH, "The search text"),
        type_id=type_id,
        tag=text_arg("tag", MAX_TAG_FILTER, "A tag name"),
        page=page_arg(),
    )


@bp.get("/")
@requires("viewer")
def index():
    f = _filter_from_args()
    pagination = catalog.list_experiments(f)
    args = {k: v for k, v in (("q", f.q), ("type_id", f.type_id), ("tag", f.tag)) if v}
    return render_template(
        "experiments/index.html",
        pagination=pagination,
        counts=catalog.row_counts(pagination.items),
        f=f,
        args=args,
        types=schema.all_types(),
        tags=catalog.all_tag_names(),
    )


def _form_values(form: MultiDict) -> tuple[str, list[str], str]:
    tags = form.getlist("tags") + catalog.split_tag_text(form.get("new_tags", ""))
    return form.get("description", ""), tags, form.get("additional_data", "")


def _render_form(
    experiment: Experiment | None, form: MultiDict, errors: dict, status: int = 200
):
    return render_template(
        "experiments/edit.html",
        experiment=experiment,
        form=form,
        errors=errors,
        types=schema.all_types(),
        tags=catalog.all_tag_names(),
        selected_tags=set(form.getlist("tags")),
        max_tags=columns.MAX_TAGS,
    ), status


def _field_of(exc: WaveError) -> str:
    """The form field an error belongs to (tag errors go to the new-tags box)."""
    return {"tags": "new_tags"}.get(exc.field or "", exc.field or "description")


def _check_field(check: Callable[[], Any], errors: dict[str, str]) -> Any:
    """Run one field's check; an InvalidValue is added to `errors`, not raised."""
    try:
        return check()
    except InvalidValue as exc:
        errors.setdefault(_field_of(exc), exc.message)
        return None


@bp.route("/new", methods=["GET", "POST"])
@requires("researcher")
def create():
    if request.method == "GET":
        form = MultiDict({"experiment_type_id": request.args.get("type_id", "")})
        return _render_form(None, form, {})
    form = request.form
    xtype = schema.find_type(form.get("experiment_type_id", ""))
    description, tags, data_text = _form_values(form)
    # every field is checked, so one submit reports all its problems
    errors = {} if xtype else {"experiment_type_id": "Choose the experiment type."}
    _check_field(lambda: catalog._clean_description(description), errors)
    _check_field(lambda: [columns.clean_tag_name(t) for t in tags], errors)
    data = _check_field(lambda: catalog.parse_additional_data(data_text), errors)
    if errors:
        return _render_form(None, form, errors, 422)
    try:
        experiment = catalog.create_experiment(xtype, description, tags, data)
    except WaveError as exc:
        db.session.rollback()
        return _render_form(None, form, {_field_of(exc): exc.message}, 422)
    flash("Created the experiment.", "success")
    return redirect_to(url_for(".show", experiment_uuid=experiment.uuid))


@bp.get("/<experiment_uuid>")
@requires("viewer")
def show(experiment_uuid: str):
    experiment = catalog.get_experiment(experiment_uuid)
    base_url = url_for(".show", experiment_uuid=experiment.uuid)
    redirect = canonical_redirect(base_url)
    if redirect is not None:
        return redirect
    xtype = experiment.experiment_type
    grid = queries.build_grid(
        xtype, request.args, experiment.row_count, experiment.uuid
    )
    return render_grid(
        "experiments/show.html", grid, base_url, experiment=experiment, xtype=xtype
    )


@bp.route("/<experiment_uuid>/edit", methods=["GET", "POST"])
@requires("researcher")
def edit(experiment_uuid: str):
    experiment = catalog.get_experiment(experiment_uuid)
    if request.method == "GET":
        form = MultiDict(
            [
                ("description", experiment.description),
                (
                    "additional_data",
                    catalog.format_additional_data(experiment.additional_data),
                ),
            ]
            + [("tags", t) for t in experiment.tags]
        )
        return _render_form(experiment, form, {})
    description, tags, data_text = _form_values(request.form)
    try:
        data = catalog.parse_additional_data(data_text)
        catalog.update_experiment(experiment, description, tags, data)
    except WaveError as exc:
        db.session.rollback()
        return _render_form(
            experiment, request.form, {_field_of(exc): exc.message}, 422
        )
    flash("Saved the experiment.", "success")
    return redirect_to(url_for(".show", experiment_uuid=experiment.uuid))


@bp.route("/<experiment_uuid>/delete", methods=["GET", "POST"])
@requires("researcher")
def delete(experiment_uuid: str):
    experiment = catalog.get_experiment(experiment_uuid)
    xtype = experiment.experiment_type
    if request.method == "POST":
        rows = catalog.delete_experiment(experiment)
        flash(
            f"Deleted the experiment and its {rows:,} row{'s' if rows != 1 else ''}.",
            "success",
        )
        return redirect_to(url_for(".index"))
    count = datatables.count_rows(xtype, [experiment.uuid]).get(experiment.uuid, 0)
    return render_template(
        "experiments/delete.html", experiment=experiment, count=count
    )

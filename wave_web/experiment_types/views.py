"""Experiment types: list, builder, type page and the schema changes."""

from __future__ import annotations

from flask import abort
from flask import flash
from flask import render_template
from flask import request
from flask import url_for

from wave_web import datatables
from wave_web import partitioning
from wave_web import schema
from wave_web.access import requires
from wave_web.columns import ColumnDef
from wave_web.database import read_only
from wave_web.database import read_only_when
from wave_web.errors import InvalidValue
from wave_web.errors import NameTaken
from wave_web.errors import NotFound
from wave_web.errors import WaveError
from wave_web.experiment_types import bp
from wave_web.experiment_types.forms import MAX_BUILDER_COLUMNS
from wave_web.experiment_types.forms import BuilderState
from wave_web.extensions import db
from wave_web.htmx import is_htmx
from wave_web.htmx import redirect_to
from wave_web.models import ExperimentType
from wave_web.models import history
from wave_web.params import page_arg


@bp.get("/")
@requires("viewer")
def index():
    stmt = db.select(ExperimentType).order_by(db.func.lower(ExperimentType.name))
    pagination = db.paginate(stmt, page=page_arg(), per_page=50, error_out=False)
    stats = schema.type_stats(pagination.items)
    return render_template(
        "experiment_types/index.html", pagination=pagination, stats=stats
    )


def _is_builder_button() -> bool:
    """The builder's add/move/remove buttons only re-render the form: no write."""
    return request.form.get("action", "create") != "create"


@bp.route("/new", methods=["GET", "POST"])
@read_only_when(_is_builder_button)
@requires("researcher")
def create():
    if request.method == "GET":
        return _builder("experiment_types/new.html", BuilderState(), check=False)
    state = BuilderState.from_form(request.form)
    if _is_builder_button():
        state.apply(request.form["action"])
        template = (
            "experiment_types/_builder.html"
            if is_htmx()
            else "experiment_types/new.html"
        )
        return _builder(template, state)
    try:
        xtype = schema.create_type(
            state.name,
            state.description,
            state.table_name,
            state.filled_columns,
            partitioned=state.partitioned,
        )
    except schema.SchemaProblems:
        return _builder_errors(state)
    except NameTaken as exc:
        flash(exc.message, "error")
        return _builder_errors(state)
    flash(f"Created the type “{xtype.name}” with table {xtype.table_name}.", "success")
    return redirect_to(url_for(".show", type_id=xtype.id))


def _builder_errors(state: BuilderState):
    return _builder("experiment_types/new.html", state, status=422)


def _builder(template: str, state: BuilderState, status: int = 200, check: bool = True):
    problems = _problems(state) if check else {}
    can_partition = partitioning.supported(db.engine.dialect)
    if state.partitioned and not can_partition:
        problems["size"] = schema.Problem(
            "size", partitioning.PartitioningUnsupported(db.engine.dialect.name).message
        )
    if not state.name.strip() and status != 422:
        problems.pop("name", None)
    table_name = state.table_name or state.proposed_table_name
    if not table_name and "table_name" in problems:
        # not "The table name “” is empty": nothing could be proposed, say what to type
        problems.pop("table_name")
        if state.name.strip() or status == 422:
            problems["table_name"] = _missing_table_name(state)
    ddl = None
    if table_name and not problems:
        ddl = datatables.create_statements(
            table_name,
            state.filled_columns,
            db.engine.dialect,
            partitioned=state.partitioned and can_partition,
        )
    context = {
        "state": state,
        "problems": problems,
        "table_name": table_name,
        "ddl": ddl,
        "max_columns": MAX_BUILDER_COLUMNS,
        "can_partition": can_partition,
        "oob": template.endswith("_checks.html"),  # live checks swap out of band
    }
    return render_template(template, **context), status


def _missing_table_name(state: BuilderState) -> schema.Problem:
    """The table name is empty and the type name gives none (e.g. “日本語”)."""
    message = (
        "No table name can be made from this type name: type one here, using "
        "lower-case letters a–z, digits and _, e.g. “my_task”."
        if state.name.strip()
        else "Type a table name here, or a type name above to propose one from."
    )
    return schema.Problem("table_name", message)


def _problems(state: BuilderState) -> dict[str, schema.Problem]:
    """Problems by field name; empty, untouched column rows are not reported."""
    _, _, problems = schema.check_new_type(
        state.name, state.table_name, state.columns, state.description
    )
    db.session.rollback()
    empty = {i for i, c in enumerate(state.columns) if not c.name and not c.description}
    found = {}
    for p in problems:
        index = p.field.split("-")[1] if p.field.startswith("columns-") else None
        if index is None or int(index) not in empty:
            found.setdefault(p.field, p)
    return found


@bp.post("/new/check")
@read_only
@requires("researcher")
def check():
    """Live checks while typing: feedback per field and a table preview (OOB swaps)."""
    return _builder(
        "experiment_types/_checks.html", BuilderState.from_form(request.form)
    )


@bp.get("/<int(max=2147483647):type_id>")
@requires("viewer")
def show(type_id: int):
    xtype = schema.get_type(type_id)
    return _type_page(xtype)


def _type_page(xtype: ExperimentType, status: int = 200, **extra):
    overview = schema.type_overview(xtype, limit=100)
    return render_template(
        "experiment_types/show.html",
        xtype=xtype,
        experiments=overview.experiments,
        experiment_total=overview.experiment_total,
        counts=overview.counts,
        total_rows=overview.total_rows,
        history=history("experiment_type", xtype.id),
        indexed=datatables.sort_indexed_columns(datatables.reflect(xtype)),
        refused=extra.get("refused"),
        errors=extra.get("errors", {}),
        form=extra.get("form", {}),
    ), status


@bp.route("/<int(max=2147483647):type_id>/edit", methods=["GET", "POST"])
@requires("researcher")
def edit(type_id: int):
    xtype = schema.get_type(type_id)
    form = (
        request.form
        if request.method == "POST"
        else {"name": xtype.name, "description": xtype.description or ""}
    )
    if request.method == "POST":
        try:
            schema.update_type(xtype, form.get("name", ""), form.get("description", ""))
        except (InvalidValue, NameTaken) as exc:
            db.session.rollback()
            return render_template(
                "experiment_types/edit.html",
                xtype=xtype,
                form=form,
                errors={
                    "description" if exc.field == "description" else "name": exc.message
                },
            ), 422
        flash("Saved the type.", "success")
        return redirect_to(url_for(".show", type_id=xtype.id))
    return render_template(
        "experiment_types/edit.html", xtype=xtype, form=form, errors={}
    )


@bp.route("/<int(max=2147483647):type_id>/delete", methods=["GET", "POST"])
@requires("admin")
def delete(type_id: int):
    xtype = schema.get_type(type_id)
    if request.method == "POST":
        name = xtype.name
        try:
            schema.delete_type(xtype, request.form.get("confirm", ""))
        except NotFound:
            raise  # deleted by someone else meanwhile: the 404 page
        except WaveError as exc:
            db.session.rollback()
            return _delete_page(xtype, exc.message, exc.status)
        flash(f"Deleted the type “{name}” and its table.", "success")
        return redirect_to(url_for(".index"))
    return _delete_page(xtype)


def _delete_page(xtype: ExperimentType, error: str | None = None, status: int = 200):
    return render_template(
        "experiment_types/delete.html",
        xtype=xtype,
        experiment_count=schema.experiment_count(xtype),
        error=error,
    ), (422 if status == 400 else status)


# -- schema changes: each posts one small form from the type page ----------------------


def _schema_change(xtype: ExperimentType, field: str, change, success: str):
    """Run one schema change; on a refusal re-render the type page with the reason."""
    try:
        change()
    except schema.ConversionRefused as exc:
        db.session.rollback()
        return _type_page(xtype, 409, refused=exc, form=request.form)
    except NotFound:
        raise  # an unknown column in the URL is a 404 page, not a form error
    except WaveError as exc:
        db.session.rollback()
        return _type_page(xtype, 422, errors={field: exc.message}, form=request.form)
    flash(success, "success")
    return redirect_to(url_for(".show", type_id=xtype.id) + "#columns")


@bp.post("/<int(max=2147483647):type_id>/columns")
@requires("researcher")
def add_column(type_id: int):
    xtype = schema.get_type(type_id)
    f = request.form
    col = ColumnDef(
        f.get("name", "").strip(),
        f.get("type", "").upper(),
        "nullable" in f,
        f.get("description", "").strip(),
    )
    return _schema_change(
        xtype,
        "add",
        lambda: schema.add_column(xtype, col, f.get("fill", "")),
        f"Added the column “{col.name}”.",
    )


@bp.post("/<int(max=2147483647):type_id>/columns/<name>/rename")
@requires("researcher")
def rename_column(type_id: int, name: str):
    xtype = schema.get_type(type_id)
    new = request.form.get("new_name", "").strip()
    return _schema_change(
        xtype,
        f"rename-{name}",
        lambda: schema.rename_column(xtype, name, new),
        f"Renamed “{name}” to “{new}”.",
    )


@bp.post("/<int(max=2147483647):type_id>/columns/<name>/nullable")
@requires("researcher")
def set_nullable(type_id: int, name: str):
    xtype = schema.get_type(type_id)
    value = request.form.get("nullable")
    if value not in ("true", "false"):
        abort(400)
    nullable = value == "true"
    state = "optional" if nullable else "required"
    return _schema_change(
        xtype,
        f"nullable-{name}",
        lambda: schema.set_nullable(xtype, name, nullable),
        f"“{name}” is now {state}.",
    )


@bp.post("/<int(max=2147483647):type_id>/columns/<name>/describe")
@requires("researcher")
def describe_column(type_id: int, name: str):
    xtype = schema.get_type(type_id)
    text = request.form.get("description", "")
    return _schema_change(
        xtype,
        f"describe-{name}",
        lambda: schema.describe_column(xtype, name, text),
        f"Saved the description of “{name}”.",
    )


@bp.post("/<int(max=2147483647):type_id>/columns/<name>/type")
@requires("researcher")
def change_type(type_id: int, name: str):
    xtype = schema.get_type(type_id)
    new_type = request.form.get("type", "")
    return _schema_change(
        xtype,
        f"type-{name}",
        lambda: schema.change_type(xtype, name, new_type),
        f"“{name}” is now {new_type.upper()}.",
    )


@bp.post("/<int(max=2147483647):type_id>/columns/<name>/index")
@requires("researcher")
def add_index(type_id: int, name: str):
    xtype = schema.get_type(type_id)
    return _schema_change(
        xtype,
        f"index-{name}",
        lambda: schema.add_index(xtype, name),
        f"Added an index on “{name}”: sorting and filtering on it stay fast.",
    )


@bp.post("/<int(max=2147483647):type_id>/columns/<name>/drop")
@requires("researcher")
def drop_column(type_id: int, name: str):
    xtype = schema.get_type(type_id)
    confirm = request.form.get("confirm", "")
    return _schema_change(
        xtype,
        f"drop-{name}",
        lambda: schema.drop_column(xtype, name, confirm),
        f"Dropped the column “{name}” and its values.",
    )

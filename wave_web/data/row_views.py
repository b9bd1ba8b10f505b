"""Rows of one experiment: view, add, edit in place, delete one, selected or matching.

Every route loads the experiment first and then the row *of that experiment*, so a row
id under another experiment's address is a 404. Edits in the grid are htmx swaps of
one <tr>; without JavaScript the same routes answer with full pages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from flask import flash
from flask import render_template
from flask import request
from flask import url_for
from werkzeug.datastructures import MultiDict

from wave_web import catalog
from wave_web import datatables
from wave_web import queries
from wave_web.access import requires
from wave_web.data import bp
from wave_web.errors import Conflict
from wave_web.errors import bad_request
from wave_web.htmx import is_htmx
from wave_web.htmx import redirect_to
from wave_web.models import Experiment
from wave_web.models import history
from wave_web.params import parse_id
from wave_web.templating import plural

ROWS = "/experiments/<experiment_uuid>/rows"
ROW = ROWS + "/<int(max=2147483647):row_id>"


# -- helpers -----------------------------------------------------------------------


def _load(experiment_uuid: str) -> tuple[Experiment, Any]:
    experiment = catalog.get_experiment(experiment_uuid)
    return experiment, experiment.experiment_type


def _is_row_swap() -> bool:
    """An htmx swap of one grid row (not a boosted page load or a history restore)."""
    return is_htmx() and request.headers.get("HX-Boosted") != "true"


def _fields(xtype: Any) -> list[queries.GridColumn]:
    """The columns a user can set: participant_id and the custom columns."""
    return [
        c
        for c in queries.grid_columns(xtype)
        if c.name == "participant_id" or not c.standard
    ]


def _grid_view(xtype: Any) -> tuple[list[queries.GridColumn], list[str]]:
    """Visible columns and hidden names from the _hide parameters the grid passes on."""
    hidden = MultiDict([("_hide", name) for name in request.args.getlist("_hide")])
    query = queries.RowQuery.from_args(queries.grid_columns(xtype), hidden)
    return query.visible_columns, list(query.hidden)


def _texts(xtype: Any, row: Mapping[str, Any]) -> dict[str, str]:
    return {c.name: queries.format_cell(c, row[c.name]) for c in _fields(xtype)}


# Row values are posted as `row.<column>`: a column may be named like a field of the
# form itself (csrf_token, expected_updated_at, action, back, ids), and no column
# name holds a dot, so the two can never meet.
FIELD_PREFIX = "row."


def _submitted(xtype: Any) -> dict[str, str]:
    """The posted values of editable columns (absent ones stay absent)."""
    out = {}
    for c in _fields(xtype):
        name = FIELD_PREFIX + c.name
        if name in request.form:
            text = request.form[name]
            if c.type in ("TEXT", "JSON"):
                # Browsers send a textarea's line breaks as CRLF: keep what was typed.
                text = text.replace("\r\n", "\n")
            out[c.name] = text
    return out


def _expected_time() -> dt.datetime:
    text = request.form.get("expected_updated_at", "")
    try:
        return dt.datetime.fromisoformat(text[:40])
    except ValueError:
        raise bad_request(
            "The form does not say which version of the row it edits; "
            "open the row again and repeat the change."
        ) from None


def _ids(values: MultiDict) -> list[int]:
    ids = [parse_id(text) for text in values.getlist("ids")]
    if None in ids:
        raise bad_request("Row ids are whole numbers; select rows with the checkboxes.")
    return ids


def _back() -> str:
    """The grid view to return to: a `back` field, or the view state sent along."""
    if "back" in request.values:
        return request.values["back"]
    return urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "ids"])


def _grid_url(experiment: Experiment, query_string: str = "") -> str:
    """The experiment's grid, at a view given as a query string (our own path only)."""
    base = url_for("experiments.show", experiment_uuid=experiment.uuid)
    if query_string and len(query_string) < 4000 and query_string.isprintable():
        return f"{base}?{query_string}"
    return base


def _render_row(experiment: Experiment, xtype: Any, row: dict, message: str = ""):
    """The display <tr> of a row, after a save (`message`) or a cancelled edit."""
    visible, hidden = _grid_view(xtype)
    extra = {"saved": True, "status_message": message} if message else {}
    return render_template(
        "data/_row.html",
        experiment=experiment,
        r=row,
        visible=visible,
        hidden_names=hidden,
        **extra,
    )


def _render_edit(
    experiment: Experiment,
    xtype: Any,
    row: dict,
    expected: dt.datetime,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    conflict: Mapping[str, str] | None = None,
    status: int = 200,
):
    """The edit form: a grid row for htmx, else a page; values win over the row's."""
    errors = errors or {}
    fields = _fields(xtype)
    context: dict[str, Any] = {
        "experiment": experiment,
        "xtype": xtype,
        "r": row,
        "values": {**_texts(xtype, row), **(values or {})},
        "errors": errors,
        "conflict": conflict,
        "expected": expected.isoformat(),
        "editable": {c.name for c in fields},
    }
    if _is_row_swap():
        visible, hidden = _grid_view(xtype)
        shown = [c.name for c in visible if c.name in context["editable"]]
        first = shown[0] if shown else ""
        context["focus"] = next((n for n in shown if n in errors), first)
        if errors or conflict is not None:
            context["status_message"] = f"Row {row['id']} was not saved."
        return render_template(
            "data/_row_edit.html", visible=visible, hidden_names=hidden, **context
        ), status
    context["focus"] = next(
        (c.name for c in fields if c.name in errors), fields[0].name
    )
    return render_template("data/row_edit.html", fields=fields, **context), status


def _conflicts(
    xtype: Any, current: Mapping[str, Any], submitted: Mapping[str, str]
) -> dict[str, str]:
    """Saved text of every submitted field whose saved value differs from the user's."""
    saved = _texts(xtype, current)
    return {k: saved[k] for k, text in submitted.items() if saved[k] != text}


# -- one row -----------------------------------------------------------------------


@bp.get(ROW)
@requires("viewer")
def show_row(experiment_uuid: str, row_id: int):
    experiment, xtype = _load(experiment_uuid)
    row = datatables.get_row(xtype, experiment.uuid, row_id)
    if _is_row_swap():  # Cancel of an inline edit
        return _render_row(experiment, xtype, row)
    return render_template(
        "data/row.html",
        experiment=experiment,
        xtype=xtype,
        r=row,
        columns=queries.grid_columns(xtype),
        history=history("row", datatables.row_ref(xtype, row_id)),
    )


@bp.get(ROW + "/edit")
@requires("researcher")
def edit_row(experiment_uuid: str, row_id: int):
    experiment, xtype = _load(experiment_uuid)
    row = datatables.get_row(xtype, experiment.uuid, row_id)
    return _render_edit(experiment, xtype, row, row["updated_at"])


@bp.post(ROW)
@requires("researcher")
def update_row(experiment_uuid: str, row_id: int):
    experiment, xtype = _load(experiment_uuid)
    row = datatables.get_row(xtype, experiment.uuid, row_id)
    submitted, expected = _submitted(xtype), _expected_time()
    try:
        values = datatables.parse_row(xtype, submitted, partial=True)
        row = datatables.update_row(xtype, experiment.uuid, row_id, values, expected)
    except datatables.RowProblems as exc:
        return _render_edit(
            experiment, xtype, row, expected, submitted, errors=exc.problems, status=422
        )
    except datatables.StaleRow as exc:
        current = exc.current  # the next save replaces it, deliberately
        conflict = _conflicts(xtype, current, submitted)
        return _render_edit(
            experiment,
            xtype,
            current,
            current["updated_at"],
            submitted,
            conflict=conflict,
            status=409,
        )
    if _is_row_swap():
        return _render_row(experiment, xtype, row, f"Saved row {row_id}.")
    flash(f"Saved row {row_id}.", "success")
    return redirect_to(
        url_for(".show_row", experiment_uuid=experiment.uuid, row_id=row_id)
    )


@bp.route(ROWS + "/new", methods=["GET", "POST"])
@requires("researcher")
def create_row(experiment_uuid: str):
    experiment, xtype = _load(experiment_uuid)
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = _submitted(xtype)
        try:
            row = datatables.insert_row(
                xtype, experiment.uuid, datatables.parse_row(xtype, values)
            )
        except datatables.RowProblems as exc:
            errors = exc.problems
        else:
            flash(f"Added row {row['id']}.", "success")
            if request.form.get("action") == "another":
                return redirect_to(
                    url_for(".create_row", experiment_uuid=experiment.uuid)
                )
            return redirect_to(_grid_url(experiment, "_last=1"))  # the newest rows
    fields = _fields(xtype)
    return render_template(
        "data/row_new.html",
        experiment=experiment,
        xtype=xtype,
        fields=fields,
        values=values,
        errors=errors,
        focus=next((c.name for c in fields if c.name in errors), fields[0].name),
    ), 422 if errors else 200


@bp.route(ROW + "/delete", methods=["GET", "POST"])
@requires("researcher")
def delete_row(experiment_uuid: str, row_id: int):
    experiment, xtype = _load(experiment_uuid)
    row = datatables.get_row(xtype, experiment.uuid, row_id)
    if request.method == "GET":
        return render_template(
            "data/row_delete.html",
            experiment=experiment,
            r=row,
            columns=queries.grid_columns(xtype),
        )
    datatables.delete_rows(xtype, experiment.uuid, [row_id])
    message = f"Deleted row {row_id}."
    if _is_row_swap():  # the row disappears; status and count update out of band
        return render_template(
            "data/_row_deleted.html", experiment=experiment, message=message
        )
    flash(message, "success")
    return redirect_to(_grid_url(experiment))


# -- many rows ---------------------------------------------------------------------


@bp.route(ROWS + "/delete", methods=["GET", "POST"])
@requires("researcher")
def delete_selected(experiment_uuid: str):
    """Selected rows: GET confirms with the exact count, POST deletes."""
    experiment, xtype = _load(experiment_uuid)
    back = _back()
    ids = datatables.existing_ids(xtype, experiment.uuid, _ids(request.values))
    if not ids:
        flash(
            "None of the selected rows exists any more."
            if request.method == "POST"
            else "Select rows with the checkboxes first, then Delete selected.",
            "warning",
        )
        return redirect_to(_grid_url(experiment, back))
    if request.method == "POST":
        count = datatables.delete_rows(xtype, experiment.uuid, ids)
        flash(f"Deleted {plural(count, 'row')}.", "success")
        return redirect_to(_grid_url(experiment, back))
    return render_template(
        "data/rows_delete.html",
        experiment=experiment,
        mode="selected",
        count=len(ids),
        ids=ids,
        back=back,
        action=url_for(".delete_selected", experiment_uuid=experiment.uuid),
        cancel_url=_grid_url(experiment, back),
        error=None,
    )


@bp.route(ROWS + "/delete-matching", methods=["GET", "POST"])
@requires("researcher")
def delete_matching(experiment_uuid: str):
    """Every row matching the grid's filters (given in the query string)."""
    experiment, xtype = _load(experiment_uuid)
    query = queries.RowQuery.from_args(queries.grid_columns(xtype), request.args)
    view = urlencode(query.view_params())
    error, status = None, 200
    if request.method == "POST":
        expected = request.form.get("expected", "")
        if not (expected.isascii() and expected.isdigit() and len(expected) <= 12):
            raise bad_request("Confirm the deletion on the confirmation page.")
        try:
            count = datatables.delete_matching(
                xtype, experiment.uuid, query, int(expected)
            )
        except Conflict as exc:
            error, status = exc.message, 409
        else:
            flash(f"Deleted {plural(count, 'row')}.", "success")
            return redirect_to(_grid_url(experiment, view))
    return render_template(
        "data/rows_delete.html",
        experiment=experiment,
        mode="matching",
        count=queries.count_all_matching(xtype, query, experiment.uuid),
        filters=[f.label for f in query.filters],
        action=url_for(".delete_matching", experiment_uuid=experiment.uuid)
        + (f"?{view}" if view else ""),
        cancel_url=_grid_url(experiment, view),
        error=error,
    ), status

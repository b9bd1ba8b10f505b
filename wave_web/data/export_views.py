"""Downloads: an experiment, a whole type or a grid view as CSV, .zip or Excel (.xlsx);
dictionaries, templates.

Every download is a GET that accepts the grid's query string (filters, sort, hidden
columns) plus the export options; a bad query string is the grid's 400. The domain
work is in csv_io.exporting, csv_io.excel and csv_io.handoff; these views only pick
the experiment or type.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

import wave_web.database as database
from wave_web import catalog
from wave_web import schema
from wave_web.access import requires
from wave_web.csv_io import excel
from wave_web.csv_io import exporting
from wave_web.csv_io import handoff
from wave_web.data import bp

EXPERIMENT = "/experiments/<experiment_uuid>"
TYPE = "/types/<int(max=2147483647):type_id>"
CSV_TYPE = "text/csv; charset=utf-8; header=present"


# -- what is exported ---------------------------------------------------------------


def _experiment_plan(experiment_uuid: str) -> exporting.ExportPlan:
    experiment = catalog.get_experiment(experiment_uuid)
    return exporting.plan_export(experiment.experiment_type, request.args, experiment)


def _type_plan(type_id: int) -> exporting.ExportPlan:
    return exporting.plan_export(schema.get_type(type_id), request.args)


def _urls(plan: exporting.ExportPlan) -> dict[str, str]:
    """Endpoint URLs of the plan's experiment or type (without query string)."""
    if plan.experiment:
        key = {"experiment_uuid": plan.experiment.uuid}
        prefix, grid = "experiment", url_for("experiments.show", **key)
    else:
        key = {"type_id": plan.type_id}
        prefix, grid = "type", url_for(".type_rows", **key)
    urls = {
        kind: url_for(f".{prefix}_{kind}", **key)
        for kind in ("export", "download", "csv", "zip", "xlsx", "json")
    }
    return urls | {"grid": grid}


# -- responses ----------------------------------------------------------------------


def _attachment(body: Any, mimetype: str, filename: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = exporting.content_disposition(filename)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Accel-Buffering"] = "no"  # proxies pass chunks on at once
    return response


def _csv(plan: exporting.ExportPlan) -> Response:
    if request.method != "HEAD":
        exporting.record_export(plan, "csv")
    body = exporting.CsvExport(plan).chunks()
    return _attachment(body, CSV_TYPE, plan.filename("csv"))


def _zip(plan: exporting.ExportPlan) -> Response:
    if request.method != "HEAD":
        exporting.record_export(plan, "zip")
    return _attachment(
        exporting.zip_chunks(plan), "application/zip", plan.filename("zip")
    )


def _xlsx(plan: exporting.ExportPlan) -> Response:
    body = excel.build_xlsx(plan)  # whole before the first byte: refusals are pages
    size = body.size
    try:
        if request.method == "HEAD":
            body.close()  # deletes the file: only the headers are sent
        else:
            exporting.record_export(plan, "xlsx")
    except BaseException:
        body.close()
        raise
    response = _attachment(body, excel.XLSX_MIME, plan.filename("xlsx"))
    response.content_length = size
    return response


def _sidecar(plan: exporting.ExportPlan) -> Response:
    body = exporting.json_bytes(exporting.compute_sidecar(plan))
    return _attachment(body, "application/json", plan.filename("json"))


def _options_page(plan: exporting.ExportPlan):
    count, capped = exporting.count_rows(plan)
    return render_template(
        "exports/options.html",
        plan=plan,
        urls=_urls(plan),
        count=count,
        capped=capped,
        total=exporting.total_rows(plan),
        view_params=plan.view_params(),
        formula_prefixes=exporting.FORMULA_PREFIXES,
        excel_fits=excel.fits_in_excel(count, capped),
        excel_limit=excel.MAX_XLSX_ROWS,
        handoff=handoff.snippets(plan),
    )


def _download(plan: exporting.ExportPlan):
    """The options form's target: on to the .csv, .zip or .xlsx address."""
    if request.args.get("_format") == "xlsx":
        kind, params = "xlsx", plan.view_params() + _xlsx_params(plan.options)
    else:
        kind = "zip" if plan.options.dictionary else "csv"
        params = plan.view_params() + plan.options.params()
    url = _urls(plan)[kind] + (f"?{urlencode(params)}" if params else "")
    return redirect(url, code=303)


def _xlsx_params(options: exporting.ExportOptions) -> list[tuple[str, str]]:
    """The options a workbook uses: no BOM, and its dictionary is always a sheet."""
    return [(k, v) for k, v in options.params() if k not in ("_bom", "_dictionary")]


# -- one experiment -----------------------------------------------------------------


@bp.get(EXPERIMENT + "/export")
@requires("viewer")
def experiment_export(experiment_uuid: str):
    return _options_page(_experiment_plan(experiment_uuid))


@bp.get(EXPERIMENT + "/export/download")
@requires("viewer")
@database.unhurried  # a whole export: no page time limit
def experiment_download(experiment_uuid: str):
    return _download(_experiment_plan(experiment_uuid))


@bp.get(EXPERIMENT + "/export.csv")
@requires("viewer")
@database.unhurried  # a whole export: no page time limit
def experiment_csv(experiment_uuid: str):
    return _csv(_experiment_plan(experiment_uuid))


@bp.get(EXPERIMENT + "/export.zip")
@requires("viewer")
@database.unhurried  # a whole export: no page time limit
def experiment_zip(experiment_uuid: str):
    return _zip(_experiment_plan(experiment_uuid))


@bp.get(EXPERIMENT + "/export.xlsx")
@requires("viewer")
@database.unhurried  # a whole export: no page time limit
def experiment_xlsx(experiment_uuid: str):
    return _xlsx(_experiment_plan(experiment_uuid))


@bp.get(EXPERIMENT + "/export.json")
@requires("viewer")
def experiment_json(experiment_uuid: str):
    return _sidecar(_experiment_plan(experiment_uuid))


# -- every experiment of a type -----------------------------------------------------


@bp.get(TYPE + "/export")
@requires("viewer")
def type_export(type_id: int):
    return _options_page(_type_plan(type_id))


@bp.get(TYPE + "/export/download")
@requires("viewer")
@database.unhurried  # a whole export: no page time limit
def type_download(type_id: int):
    return _download(_type_plan(type_id))


@bp.get(TYPE + "/export.csv")
@requires("viewer")
@database.unhurried  # a whole export: no page time limit
def type_csv(type_id: int):
    return _csv(_type_plan(type_id))


@bp.get(TYPE + "/export.zip")
@requires("viewer")
@database.unhurried  # a whole export: no page time limit
def type_zip(type_id: int):
    return _zip(_type_plan(type_id))


@bp.get(TYPE + "/export.xlsx")
@requires("viewer")
@database.unhurried  # a whole export: no page time limit
def type_xlsx(type_id: int):
    return _xlsx(_type_plan(type_id))


@bp.get(TYPE + "/export.json")
@requires("viewer")
def type_json(type_id: int):
    return _sidecar(_type_plan(type_id))


# -- dictionary and template --------------------------------------------------------


@bp.get(TYPE + "/dictionary.json")
@requires("viewer")
def type_dictionary_json(type_id: int):
    xtype = schema.get_type(type_id)
    body = exporting.json_bytes(exporting.data_dictionary(xtype))
    return _attachment(body, "application/json", f"{xtype.table_name}-dictionary.json")


@bp.get(TYPE + "/dictionary.csv")
@requires("viewer")
def type_dictionary_csv(type_id: int):
    xtype = schema.get_type(type_id)
    body = exporting.dictionary_csv(exporting.dictionary_columns(xtype))
    return _attachment(body, CSV_TYPE, f"{xtype.table_name}-dictionary.csv")


@bp.get(TYPE + "/template.csv")
@requires("viewer")
def type_template(type_id: int):
    xtype = schema.get_type(type_id)
    body = exporting.template_csv(xtype)
    return _attachment(body, CSV_TYPE, f"{xtype.table_name}-template.csv")

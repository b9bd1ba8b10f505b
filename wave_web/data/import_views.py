"""CSV import: upload form, job page (progress, preview, result), confirm, cancel.

The work happens in csv_io.jobs; these views only parse forms and pick the page. A
POST with `confirm=1` (form field or query string) checks and imports in one step:
the request waits up to WAVE_IMPORT_SYNC_SECONDS for the job, then answers 200 with
the result, 422 with the problems, or 202 with the job's address in `Location`.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask import current_app
from flask import flash
from flask import g
from flask import jsonify
from flask import render_template
from flask import request
from flask import stream_with_context
from flask import url_for
from werkzeug.datastructures import MultiDict
from werkzeug.utils import secure_filename

from wave_web import catalog
from wave_web.access import requires
from wave_web.columns import TYPE_NAMES
from wave_web.csv_io import formats
from wave_web.csv_io import jobs
from wave_web.csv_io.importing import MISSING_TOKENS
from wave_web.csv_io.reading import MAX_CELL_BYTES
from wave_web.data import bp
from wave_web.database import read_only_when
from wave_web.errors import Conflict
from wave_web.errors import InvalidValue
from wave_web.htmx import redirect_to
from wave_web.models import Experiment
from wave_web.models import ImportJob

EXPERIMENT = "/experiments/<experiment_uuid>"
# Targets a mapping row offers in a select of its own; above, the rows share a list
# (a select per row would make the page grow with columns × header cells).
SELECT_CHOICES = 12
JOB = EXPERIMENT + "/imports/<job_uuid>"


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _job_url(job: ImportJob) -> str:
    return url_for(
        ".import_job", experiment_uuid=job.experiment_uuid, job_uuid=job.uuid
    )


def _load(experiment_uuid: str, job_uuid: str) -> tuple[Experiment, ImportJob]:
    experiment = catalog.get_experiment(experiment_uuid)
    return experiment, jobs.get_job(experiment, job_uuid)


def _upload_page(experiment: Experiment, form: Any, errors: dict, status: int = 200):
    return render_template(
        "imports/upload.html",
        experiment=experiment,
        xtype=experiment.experiment_type,
        form=form,
        errors=errors,
        recent=jobs.recent_jobs(experiment),
        max_bytes=current_app.config["MAX_CONTENT_LENGTH"],
        max_cell_bytes=MAX_CELL_BYTES,
        missing_tokens=MISSING_TOKENS,
    ), status


def _job_page(experiment: Experiment, job: ImportJob, status: int = 200):
    st = jobs.status(job)
    if _wants_json():
        return jsonify(jobs.summary(job) | {"url": _job_url(job)}), status
    preview = {}
    if st.state == "checked" and st.report is not None:
        options = jobs.options_from_json(job.options)
        xtype = experiment.experiment_type
        choices = jobs.mapping_choices(xtype, options.mode)
        preview = {
            "options": options,
            "chosen": jobs.proposed_targets(st.report, xtype, options),
            "hidden": st.report.hidden_columns(len(st.report.header)),
            "choices": choices,
            # A wide type: one shared list instead of a select per file column.
            "datalist": len(choices) > SELECT_CHOICES,
            "by_name": jobs.BY_NAME,
            "type_names": TYPE_NAMES,
            "column_types": {c.name: c.type for c in xtype.columns},
            "formats_by_type": {
                t: [(f.key, f.label) for f in formats.formats_for(t)]
                for t in TYPE_NAMES
            },
        }
    return render_template(
        "imports/job.html",
        experiment=experiment,
        job=job,
        st=st,
        preview=preview,
        missing_tokens=MISSING_TOKENS,
    ), status


def _is_one_step() -> bool:
    return request.values.get("confirm") == "1"


def _writes_nothing_now() -> bool:
    return g.get("import_saved", False) or g.get("import_defer", False)


@bp.route(EXPERIMENT + "/import", methods=["GET", "POST"])
@requires("researcher")
@read_only_when(_writes_nothing_now)
def import_upload(experiment_uuid: str):
    if request.method == "GET":
        experiment = catalog.get_experiment(experiment_uuid)
        return _upload_page(experiment, MultiDict(), {})
    g.import_defer = jobs.must_wait_for_import()
    try:
        options = jobs.options_from_form(request.form)
        job = jobs.start(
            experiment_uuid,
            request.files.get("file"),
            options,
            confirm=_is_one_step(),
            defer_row=g.import_defer,
            by_header=jobs.header_mapping_from_form(request.form),
            sheet=(request.form.get("sheet") or "").strip()[:100] or None,
        )
    except InvalidValue as exc:
        experiment = catalog.get_experiment(experiment_uuid)
        return _upload_page(experiment, request.form, {exc.field: exc.message}, 422)
    # The job is stored: later reads of this request must not queue for SQLite's
    # write lock behind the import they wait for.
    g.import_saved = True
    if not job.auto_confirm:
        return redirect_to(_job_url(job))
    jobs.wait_quietly(job.uuid, current_app.config["WAVE_IMPORT_SYNC_SECONDS"])
    experiment, job = _load(experiment_uuid, str(job.uuid))
    st = jobs.status(job)
    if st.is_active:
        body, _ = _job_page(experiment, job)
        return body, 202, {"Location": _job_url(job)}
    code = {"succeeded": 200, "cancelled": 409}.get(st.state, 422)
    return _job_page(experiment, job, code)


@bp.get(JOB)
@requires("researcher")
def import_job(experiment_uuid: str, job_uuid: str):
    return _job_page(*_load(experiment_uuid, job_uuid))


@bp.get(JOB + "/progress")
@requires("researcher")
def import_progress(experiment_uuid: str, job_uuid: str):
    experiment, job = _load(experiment_uuid, job_uuid)
    st = jobs.status(job)
    html = render_template(
        "imports/_progress.html", experiment=experiment, job=job, st=st
    )
    headers = {} if st.is_active else {"HX-Refresh": "true"}
    return html, 200, headers


def _writes_nothing() -> bool:
    """True when this POST needs no database write (SQLite: no write lock).

    A running SQLite import holds the write lock until it commits. Meanwhile a
    decision about a job is handed to the runner (g.import_defer), and one about the
    running job itself only sets a flag (cancel) or is refused (confirm twice).
    """
    job_uuid = (request.view_args or {}).get("job_uuid", "")
    return g.get("import_defer", False) or jobs.is_running_here(job_uuid)


def _decision(experiment_uuid: str, job_uuid: str) -> ImportJob:
    """The job a POST decides about; decides first whether the runner writes."""
    g.import_defer = jobs.must_wait_for_import()
    return _load(experiment_uuid, job_uuid)[1]


@bp.post(JOB + "/check")
@requires("researcher")
@read_only_when(_writes_nothing)
def import_recheck(experiment_uuid: str, job_uuid: str):
    job = _decision(experiment_uuid, job_uuid)
    try:
        jobs.recheck(job, jobs.recheck_options(job, request.form), g.import_defer)
    except (Conflict, InvalidValue) as exc:
        flash(exc.message, "warning")
    return redirect_to(_job_url(job))


@bp.post(JOB + "/confirm")
@requires("researcher")
@read_only_when(_writes_nothing)
def import_confirm(experiment_uuid: str, job_uuid: str):
    job = _decision(experiment_uuid, job_uuid)
    try:
        jobs.confirm(job, g.import_defer)
    except Conflict as exc:
        flash(exc.message, "warning")
    return redirect_to(_job_url(job))


@bp.post(JOB + "/cancel")
@requires("researcher")
@read_only_when(_writes_nothing)
def import_cancel(experiment_uuid: str, job_uuid: str):
    job = _decision(experiment_uuid, job_uuid)
    flash(jobs.cancel(job, g.import_defer), "info")
    return redirect_to(_job_url(job))


@bp.get(JOB + "/offending.csv")
@requires("researcher")
def import_offending(experiment_uuid: str, job_uuid: str):
    experiment, job = _load(experiment_uuid, job_uuid)
    chunks = jobs.offending_csv_chunks(job)
    stem = secure_filename(job.file_name.rsplit(".", 1)[0]) or "upload"
    response = Response(stream_with_context(chunks), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{stem}-offending-rows.csv"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response

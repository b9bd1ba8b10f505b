"""CSV (or Excel) upload into an experiment by API: the web's one-step import.

POST .../data/upload takes the file as the multipart field `file` or as the raw
request body (Content-Type text/csv, or an .xlsx workbook) and runs it through
csv_io.jobs exactly as the web's script upload does (`confirm=1`): the file is
checked and imported in one job, all or nothing, audited with the key that sent
it. The request waits up to WAVE_IMPORT_SYNC_SECONDS for the job, then answers

- 201 with the job when the rows are in,
- 400 naming row, column, value and rule of the problems when the file was
  refused (nothing written),
- 202 with the job's status address (`Location`, `status_url`) while it runs;
  GET /api/v1/imports/<job_id> tells how it went.

The API's own body limit (WAVE_API_MAX_BODY_BYTES) does not apply to this route;
MAX_CONTENT_LENGTH, the web upload's limit, does (api/__init__.py).
"""

from __future__ import annotations

import uuid
from typing import Any
from typing import ClassVar
from typing import Literal

from flask import current_app
from flask import g
from flask import request
from flask import url_for
from pydantic import BaseModel
from pydantic import Field
from werkzeug.datastructures import FileStorage
from werkzeug.datastructures import MultiDict
from werkzeug.wsgi import LimitedStream

from wave_web.api.data import BASE
from wave_web.api.data import EXPERIMENT
from wave_web.api.data import GROUP
from wave_web.api.data import find
from wave_web.api.http import ApiError
from wave_web.api.http import endpoint
from wave_web.api.http import json_response
from wave_web.csv_io import jobs
from wave_web.database import read_only_when
from wave_web.extensions import db
from wave_web.models import ImportJob

JOB_NOT_FOUND = "Import job not found"
NO_FILE = (
    "No file: send the CSV (or .xlsx) file as the multipart field “file”, or as "
    "the request body with Content-Type: text/csv."
)
SHOWN_PROBLEMS = 20  # problems named in a refusal's detail; the job lists 100
XLSX_TYPES = (
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-excel",
)
# Raw bodies taken as the file; anything else (JSON, forms) is not a file.
RAW_TYPES = (
    "text/csv",
    "application/csv",
    "text/plain",
    "text/tab-separated-values",
    "application/octet-stream",
    *XLSX_TYPES,
)


class UploadQuery(BaseModel):
    """The web upload's script fields (csv_io.options.options_from_form)."""

    mode: Literal["insert", "update"] = "insert"
    missing: bool = False  # every offered missing-value spelling reads as empty
    missing_token: list[str] = Field(default_factory=list, max_length=20)
    mapping: str | None = Field(
        None,
        max_length=8_000,
        description='JSON object of file header → column, e.g. {"subject": '
        '"participant_id"}; "" ignores a file column',
    )
    header_line: int | None = Field(None, ge=1)
    ignore_unmatched: bool = False
    sheet: str | None = Field(None, max_length=100)
    filename: str | None = Field(
        None, max_length=255, description="Name shown for a raw body (display only)"
    )

    list_fields: ClassVar[tuple[str, ...]] = ("missing_token",)

    def form(self) -> MultiDict:
        """The fields as the web form sends them."""
        form: MultiDict = MultiDict({"mode": self.mode})
        if self.missing:
            form["missing"] = "1"
        for token in self.missing_token:
            form.add("missing_token", token)
        if self.mapping:
            form["mapping"] = self.mapping
        if self.header_line is not None:
            form["header_line"] = str(self.header_line)
        if self.ignore_unmatched:
            form["ignore_unmatched"] = "1"
        return form


class ImportProblem(BaseModel):
    row: int | None
    line: int | None
    column: str | None
    value: str | None
    rule: str
    position: int | None = None


class ImportJobOut(BaseModel):
    job_id: str
    experiment_id: str
    state: str
    file_name: str
    file_size: int
    sha256: str
    mode: str
    rows: int | None
    rows_done: int
    written: int
    message: str | None
    problem_count: int
    problems: list[ImportProblem]
    status_url: str


# ----------------------------------------------------------------------
# SQLite: no write lock while an import of this process holds it
# ----------------------------------------------------------------------


def _writes_nothing_now() -> bool:
    """True when this upload must not take SQLite's write lock (as the web's).

    Decided at the request's first transaction (the key check): while an SQLite
    import of this process writes, the job row is left to the runner; once the job
    is stored, waiting for it needs no lock either.
    """
    if "import_defer" not in g:
        g.import_defer = jobs.must_wait_for_import()
    return g.get("import_saved", False) or g.import_defer


def _the_file(query: UploadQuery) -> FileStorage:
    """The upload: multipart field `file`, else the raw body; 400 when neither."""
    mimetype = request.mimetype or ""
    if mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(400, NO_FILE)
        return upload
    if mimetype not in RAW_TYPES or not request.content_length:
        raise ApiError(400, NO_FILE)
    default = "upload.xlsx" if mimetype in XLSX_TYPES else "upload.csv"
    return FileStorage(
        # A body that ends before Content-Length (the client went away) raises
        # ClientDisconnected instead of looking like a shorter, complete file: behind
        # gunicorn (wsgi.input_terminated) request.stream itself does not check.
        stream=LimitedStream(request.stream, request.content_length),
        filename=query.filename or default,
        content_type=mimetype,
        content_length=request.content_length,
    )


def _load_job(job_uuid: uuid.UUID | None) -> ImportJob:
    """The job row, or its pending values while an SQLite import holds the lock."""
    job = db.session.get(ImportJob, job_uuid) if job_uuid else None
    if job is None and job_uuid:
        live = jobs.live_job(job_uuid)
        if live is not None and live.pending:
            return ImportJob(**live.pending)
    if job is None:
        raise ApiError(404, JOB_NOT_FOUND)
    return job


def _shape(job: ImportJob) -> dict[str, Any]:
    found = jobs.summary(job)
    return {
        "job_id": found["job"],
        "experiment_id": found["experiment_uuid"],
        "state": found["state"],
        "file_name": found["file_name"],
        "file_size": found["file_size"],
        "sha256": found["sha256"],
        "mode": found["mode"],
        "rows": found["rows"],
        "rows_done": found["rows_done"],
        "written": found["written"],
        "message": found["message"],
        "problem_count": found["problem_count"],
        "problems": found["problems"],
        "status_url": url_for("api.import_status", job_id=str(job.uuid)),
    }


def refusal(job: ImportJob) -> str:
    """The detail of a refused import: its summary, then each problem located."""
    st = jobs.status(job)
    report = st.report
    message = st.message or "The import failed. Nothing was written."
    if report is None or not report.problems:
        return message
    head = message.split(" First: ", 1)[0]  # the summary names the first one
    listed = [p.describe() for p in report.problems[:SHOWN_PROBLEMS]]
    rest = report.problem_count - len(listed)
    detail = f"{head} " + "; ".join(listed)
    if rest > 0:
        detail += f"; and {rest:,} more (the import's status lists the first 100)"
    return detail


@endpoint(
    BASE + "/upload",
    "POST",
    "researcher",
    summary="Import a CSV or .xlsx file into the experiment (one step, all or nothing)",
    group=GROUP,
    path=EXPERIMENT,
    query=UploadQuery,
    response=ImportJobOut,
    status=201,
    errors=(400, 404, 422),
)
@read_only_when(_writes_nothing_now)
def upload_rows(experiment_id: uuid.UUID | None, query: UploadQuery):
    experiment = find(experiment_id)
    experiment_uuid = str(experiment.uuid)
    # The key's last use is stored now: no lock is held while the file arrives.
    if _writes_nothing_now():
        db.session.rollback()
    else:
        db.session.commit()
    upload = _the_file(query)
    options = jobs.options_from_form(query.form())
    job = jobs.start(
        experiment_uuid,
        upload,
        options,
        confirm=True,
        defer_row=g.import_defer,
        by_header=jobs.header_mapping_from_form(query.form()),
        sheet=(query.sheet or "").strip() or None,
    )
    g.import_saved = True  # reads from here on must not queue for SQLite's lock
    jobs.wait_quietly(job.uuid, current_app.config["WAVE_IMPORT_SYNC_SECONDS"])
    job = _load_job(job.uuid)
    st = jobs.status(job)
    shaped = _shape(job)
    if st.is_active:
        return json_response(shaped, 202, {"Location": shaped["status_url"]})
    if st.state != "succeeded":
        raise ApiError(400, refusal(job))
    return shaped


@endpoint(
    "/imports/<job_id>",
    "GET",
    "researcher",
    summary="The state of an import started by an upload",
    group=GROUP,
    path={"job_id": "uuid"},
    response=ImportJobOut,
    errors=(404, 422),
)
def import_status(job_id: uuid.UUID | None) -> dict[str, Any]:
    return _shape(_load_job(job_id))


upload_rows.openapi_request_body = {  # type: ignore[attr-defined]
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        "text/csv": {"schema": {"type": "string"}},
        XLSX_TYPES[0]: {"schema": {"type": "string", "format": "binary"}},
    },
}
upload_rows.openapi_responses = {  # type: ignore[attr-defined]
    "202": {
        "description": "Still importing: poll the job at `status_url` (also Location)",
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/ImportJobOut"}
            }
        },
    }
}

"""A new experiment type from a file: upload, the one proposal screen, create.

The work is in csv_io.drafts; these views only parse forms and pick the template. No
view writes the database itself (the background step does), so none takes SQLite's
write lock.
"""

from __future__ import annotations

from flask import current_app
from flask import flash
from flask import render_template
from flask import request
from flask import url_for
from flask_login import current_user

from wave_web.access import requires
from wave_web.csv_io import drafts
from wave_web.csv_io import formats
from wave_web.csv_io.importing import MISSING_TOKENS
from wave_web.database import read_only
from wave_web.errors import WaveError
from wave_web.experiment_types import bp
from wave_web.htmx import is_htmx
from wave_web.htmx import redirect_to
from wave_web.schema import SchemaProblems

DRAFT = "/from-file/<draft_uuid>"


def _wait_seconds() -> float:
    return current_app.config["WAVE_IMPORT_SYNC_SECONDS"]


def _upload_page(errors: dict, status: int = 200):
    return render_template(
        "experiment_types/from_file.html",
        errors=errors,
        max_bytes=current_app.config["MAX_CONTENT_LENGTH"],
    ), status


def _draft_page(draft: drafts.Draft, errors: dict | None = None, status: int = 200):
    template = (
        "experiment_types/_draft.html" if is_htmx() else "experiment_types/draft.html"
    )
    return render_template(
        template,
        draft=draft,
        view=drafts.screen(draft, _first_column()),
        column_pages=drafts.column_pages,
        errors=errors or {},
        missing_tokens=MISSING_TOKENS,
        formats=formats.FORMATS,
        lookup_format=formats.lookup,
        type_names=drafts.TYPE_CHOICES,
    ), status


def _first_column() -> int:
    """The page of columns shown (`cols`: index of its first column)."""
    raw = request.values.get("cols", "0")
    return int(raw) if raw.isdigit() and len(raw) < 7 else 0


def _draft_url(draft: drafts.Draft) -> str:
    cols = _first_column()
    return url_for(".draft", draft_uuid=draft.uuid, cols=cols or None)


@bp.route("/from-file", methods=["GET", "POST"])
@read_only
@requires("researcher")
def from_file():
    if request.method == "GET":
        return _upload_page({})
    try:
        draft = drafts.start_draft(
            request.files.get("file"), current_user, request.form.get("sheet") or None
        )
    except WaveError as exc:
        return _upload_page({exc.field or "file": exc.message}, 422)
    drafts.wait(draft, _wait_seconds())
    return redirect_to(_draft_url(draft))


@bp.get(DRAFT)
@requires("researcher")
def draft(draft_uuid: str):
    found = drafts.get_draft(draft_uuid, current_user)
    if found.state == "created":
        return redirect_to(_created_url(found))
    return _draft_page(found)


@bp.post(DRAFT)
@read_only
@requires("researcher")
def update_draft(draft_uuid: str):
    found = drafts.get_draft(draft_uuid, current_user)
    try:
        if request.form.get("sheet") and request.form.get("sheet") != found.sheet:
            found = drafts.change_sheet(found, request.form["sheet"])
        else:
            found = drafts.update_choices(found, request.form)
    except WaveError as exc:
        return _draft_page(found, {exc.field or "form": exc.message}, 422)
    found = drafts.wait(found, _wait_seconds())
    if is_htmx():
        return _draft_page(found)
    return redirect_to(_draft_url(found))


def _created_url(found: drafts.Draft) -> str:
    return url_for("experiments.show", experiment_uuid=found.result["experiment_uuid"])


@bp.post(DRAFT + "/create")
@read_only
@requires("researcher")
def create_from_draft(draft_uuid: str):
    found = drafts.get_draft(draft_uuid, current_user)
    try:
        found = drafts.update_choices(found, request.form, check=False)
        found = drafts.create(found, current_user)
    except SchemaProblems as exc:
        errors = {p.field: p.message for p in exc.problems}
        return _draft_page(drafts.wait(found, 0), errors, 422)
    except WaveError as exc:
        return _draft_page(found, {exc.field or "form": exc.message}, 422)
    found = drafts.wait(found, _wait_seconds())
    if found.state == "created":
        flash(found.message, "success")
        return redirect_to(_created_url(found))
    return redirect_to(_draft_url(found))


@bp.post(DRAFT + "/discard")
@read_only
@requires("researcher")
def discard_draft(draft_uuid: str):
    found = drafts.get_draft(draft_uuid, current_user)
    try:
        drafts.discard(found)
    except WaveError as exc:
        flash(exc.message, "danger")
        return redirect_to(_draft_url(found))
    flash(f"Discarded the upload of “{found.file_name}”.", "info")
    return redirect_to(url_for(".index"))

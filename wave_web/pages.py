"""The start page and the API page."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint
from flask import current_app
from flask import render_template
from flask import request
from sqlalchemy.orm import selectinload

from wave_web.access import public
from wave_web.access import requires
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import Tag

bp = Blueprint("pages", __name__)


@bp.get("/")
@requires("viewer")
def home():
    counts = {
        "types": db.session.scalar(
            sa.select(sa.func.count()).select_from(ExperimentType)
        ),
        "experiments": db.session.scalar(
            sa.select(sa.func.count()).select_from(Experiment)
        ),
        "tags": db.session.scalar(sa.select(sa.func.count()).select_from(Tag)),
    }
    recent = db.session.scalars(
        sa.select(Experiment)
        .options(selectinload(Experiment.experiment_type))  # the list shows type names
        .order_by(Experiment.created_at.desc())
        .limit(8)
    ).all()
    return render_template("home.html", counts=counts, recent=recent)


@bp.get("/api-docs")
@public
def api_docs():
    """How programs use the JSON API: public, it holds no secrets (no key, no data).

    The endpoint table is written by hand: the web never imports wave_web.api.
    """
    cfg = current_app.config
    return render_template(
        "api_docs.html",
        base_url=request.url_root.rstrip("/"),
        batch_max=cfg["WAVE_API_BATCH_MAX_ROWS"],
        body_mb=cfg["WAVE_API_MAX_BODY_BYTES"] // (1024 * 1024),
        upload_mb=(cfg.get("MAX_CONTENT_LENGTH") or 0) // (1024 * 1024),
        sync_seconds=cfg["WAVE_IMPORT_SYNC_SECONDS"],
    )

"""The start page and small helpers shared by the area blueprints."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint
from flask import render_template
from flask import request

from wave_web.errors import bad_request
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import Tag

bp = Blueprint("pages", __name__)


def page_arg(name: str = "page") -> int:
    """A 1-based page number from the query string; anything else is a 400."""
    raw = request.args.get(name, "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        raise bad_request(f"The page number “{raw[:20]}” is not valid; use 1, 2, 3 …")
    return int(raw)


@bp.get("/")
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
        sa.select(Experiment).order_by(Experiment.created_at.desc()).limit(8)
    ).all()
    return render_template("home.html", counts=counts, recent=recent)

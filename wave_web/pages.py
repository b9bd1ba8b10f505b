"""The start page."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint
from flask import render_template
from sqlalchemy.orm import selectinload

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

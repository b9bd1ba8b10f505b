"""Column summaries of a grid view: the same query string as the grid, summarised."""

from __future__ import annotations

import uuid
from typing import Any

from flask import render_template
from flask import request
from flask import url_for

from wave_web import catalog
from wave_web import queries
from wave_web import schema
from wave_web import summaries
from wave_web.access import requires
from wave_web.data import bp
from wave_web.htmx import is_htmx


@bp.get("/experiments/<experiment_uuid>/summary")
@requires("viewer")
def experiment_summary(experiment_uuid: str):
    experiment = catalog.get_experiment(experiment_uuid)
    grid_url = url_for("experiments.show", experiment_uuid=experiment.uuid)
    return _render(
        experiment.experiment_type, experiment.uuid, grid_url, experiment=experiment
    )


@bp.get("/types/<int(max=2147483647):type_id>/summary")
@requires("viewer")
def type_summary(type_id: int):
    xtype = schema.get_type(type_id)
    grid_url = url_for(".type_rows", type_id=type_id)
    return _render(xtype, None, grid_url, experiment=None)


def _render(
    xtype: Any, experiment_uuid: uuid.UUID | None, grid_url: str, **context: Any
):
    """The summary page, or its fragment for htmx; a bad query string is a 400."""
    cols = queries.grid_columns(xtype, with_experiment=experiment_uuid is None)
    query = queries.RowQuery.from_args(cols, request.args)
    template = "data/_summary.html" if is_htmx() else "data/summary.html"
    return render_template(
        template,
        xtype=xtype,
        query=query,
        summaries=summaries.summarise(xtype, query, experiment_uuid),
        grid_url=grid_url,
        sample_rows=summaries.SAMPLE_ROWS,
        **context,
    )

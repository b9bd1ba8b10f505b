"""Rows: the grid of a whole type, and every row of one participant."""

from __future__ import annotations

from flask import render_template
from flask import request
from flask import url_for

from wave_web import participants as people
from wave_web import queries
from wave_web import schema
from wave_web.access import requires
from wave_web.data import bp
from wave_web.errors import bad_request
from wave_web.gridview import canonical_redirect
from wave_web.gridview import render_grid


@bp.get("/types/<int(max=2147483647):type_id>/rows")
@requires("viewer")
def type_rows(type_id: int):
    xtype = schema.get_type(type_id)
    base_url = url_for(".type_rows", type_id=type_id)
    redirect = canonical_redirect(base_url)
    if redirect is not None:
        return redirect
    total = sum(schema.type_stats([xtype])[xtype.id][1:])
    grid = queries.build_grid(xtype, request.args, total)
    return render_grid("data/type_rows.html", grid, base_url, xtype=xtype)


@bp.get("/participants/")
@requires("viewer")
def participants():
    query = people.ParticipantQuery.from_args(request.args)
    page = people.page_participants(query)
    return render_template("data/participants.html", page=page, query=query)


@bp.get("/participants/<path:participant_id>")
@requires("viewer")
def participant(participant_id: str):
    if len(participant_id) > 100:
        raise bad_request("A participant id has at most 100 characters.")
    sections = queries.participant_rows(participant_id)
    return render_template(
        "data/participant.html", participant_id=participant_id, sections=sections
    )

"""Short experiment ids in addresses: /experiments/6c4e0065 → the full address.

Lists show the first 8 hex digits of an experiment's uuid; a reader who types or
pastes one gets there. The experiment pages' blueprints run `expand_experiment_id`
before their views (after the role check, which is app-wide and runs first), so a
signed-out visitor learns nothing from it. Only GET: a form never posts to a short
address, and a redirect would lose its body.
"""

from __future__ import annotations

import uuid

from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from wave_web import catalog
from wave_web.errors import NotFound

SHOWN_MATCHES = 20


def expand_experiment_id():
    """302 for a unique short or non-canonical id, a list of matches for several."""
    text = (request.view_args or {}).get("experiment_uuid")
    if not isinstance(text, str) or request.method not in ("GET", "HEAD"):
        return None
    prefix = catalog.short_id_prefix(text)
    if prefix is None:
        return _canonical(text)
    matches = catalog.experiments_with_prefix(prefix, SHOWN_MATCHES + 1)
    if not matches:
        raise NotFound(f"No experiment id starts with {text}.")
    if len(matches) == 1:
        return redirect(_address(matches[0].uuid), code=302)
    return render_template(
        "experiments/matches.html",
        short_id=text,
        matches=[(e, _address(e.uuid)) for e in matches[:SHOWN_MATCHES]],
        more=len(matches) > SHOWN_MATCHES,
    ), 300


def _canonical(text: str):
    """Redirect an upper-case or dash-less full uuid to its one spelling."""
    try:
        key = uuid.UUID(text)
    except ValueError:
        return None  # the view answers 404
    return None if str(key) == text else redirect(_address(key), code=302)


def _address(experiment_uuid: uuid.UUID) -> str:
    """This request's address with the full uuid (same view, same query string)."""
    values = {**(request.view_args or {}), "experiment_uuid": str(experiment_uuid)}
    url = url_for(request.endpoint or "", **values)
    query = request.query_string.decode("latin-1")
    return f"{url}?{query}" if query else url

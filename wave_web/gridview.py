"""The rows grid as a page or an htmx fragment (experiment and type views)."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import redirect
from flask import render_template
from flask import request

from wave_web import queries
from wave_web.htmx import is_htmx


def render_grid(template: str, grid: queries.Grid, base_url: str, **context):
    """The grid page, or just the grid for htmx; 400 when the URL was bad."""
    status = 400 if grid.error else 200
    if is_htmx():
        template = "data/_grid.html"
    add = {"col": request.args.get("_fcol", ""), "op": request.args.get("_fop", "")}
    add["value"] = request.args.get("_fval", "") if grid.error else ""
    return render_template(
        template,
        grid=grid,
        base_url=base_url,
        operators=queries.OPERATORS.values(),
        page_sizes=queries.PAGE_SIZES,
        add_filter=add,
        **context,
    ), status


def canonical_redirect(base_url: str):
    """Turn the add-a-filter form into a bookmarkable address, or None.

    A plain redirect for htmx too: it follows it and pushes the final address.
    """
    args = queries.added_filter(request.args)
    if args is None:
        return None
    return redirect(f"{base_url}?{urlencode(list(args.items(multi=True)))}", code=303)

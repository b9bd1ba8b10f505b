"""The rows grid as a page or an htmx fragment (experiment and type views)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from flask import redirect
from flask import render_template
from flask import request

from wave_web import queries
from wave_web.htmx import is_htmx


@dataclass(frozen=True)
class FilterInput:
    """The value field of the filter form for one column type."""

    kind: str  # an <input> type, or "boolean" for a true/false <select>
    step: str = ""
    placeholder: str = "value"
    note: str = ""  # said after the field's label


FILTER_INPUTS: dict[str, FilterInput] = {
    "INTEGER": FilterInput("number", step="1"),
    "FLOAT": FilterInput("number", step="any"),
    "DATETIME": FilterInput("datetime-local", step="1", note="UTC"),
    "BOOLEAN": FilterInput("boolean"),
    "JSON": FilterInput("text", placeholder="path:value, e.g. block:3"),
    "UUID": FilterInput("text", placeholder="experiment id"),
}
TEXT_INPUT = FilterInput("text")


@dataclass(frozen=True)
class FilterForm:
    """What the "add a filter" form shows: a column, a condition and a value."""

    column: queries.GridColumn
    op: str
    value: str
    menus: dict[str, list[queries.Operator]]  # per filter kind of the grid's columns
    inputs: dict[str, FilterInput]  # per filter kind


def filter_form(grid: queries.Grid, picked: str = "") -> FilterForm:
    """The form holding the filter the grid refused, else empty on the `picked`
    column (or the first)."""
    cols = grid.query.columns
    kinds = {c.filter_kind: c for c in cols}
    rejected = grid.rejected
    wanted = rejected.column if rejected else picked
    column = next((c for c in cols if c.name == wanted), cols[0])
    return FilterForm(
        column=column,
        op=rejected.op if rejected and rejected.column else "",
        value=rejected.text if rejected else "",
        menus={k: queries.operators_for(c) for k, c in kinds.items()},
        inputs={k: FILTER_INPUTS.get(c.type, TEXT_INPUT) for k, c in kinds.items()},
    )


def render_grid(template: str, grid: queries.Grid, base_url: str, **context):
    """The grid page, or just the grid for htmx; 400 when the URL was bad."""
    status = 400 if grid.error else 200
    if is_htmx():
        template = "data/_grid.html"
    return render_template(
        template,
        grid=grid,
        base_url=base_url,
        page_sizes=queries.PAGE_SIZES,
        filter_form=filter_form(grid, request.args.get("_fcol", "")),
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

"""Grid cells as HTML, written in Python: a page has up to 500 rows × 200 columns.

A Jinja macro per cell took most of a grid page's time (a macro call costs about as
much as the rest of the cell); these functions give the same markup. Every value is
escaped with markupsafe; the templates call `grid_cell` and `row_cells`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from flask import g
from flask import url_for
from markupsafe import Markup
from markupsafe import escape

from wave_web import columns

EMPTY = Markup(
    '<td class="null"><span aria-hidden="true">—</span>'
    '<span class="visually-hidden">empty</span></td>'
)
TRUE = Markup(
    '<td class="bool"><span aria-hidden="true">✓</span>'
    '<span class="visually-hidden">true</span></td>'
)
FALSE = Markup(
    '<td class="bool"><span aria-hidden="true">✗</span>'
    '<span class="visually-hidden">false</span></td>'
)
# werkzeug's converters quote a URL part with these characters kept
URL_SAFE = "!$&'()*+,/:;=@"
JSON_SHOWN = 40  # characters of JSON shown before the cell folds
TEXT_SHOWN = 60
PLACEHOLDER = "~"  # never quoted: its place in a URL built once per request


def truncate(text: str, length: int) -> str:
    """Jinja's `truncate` filter with its defaults (whole words, "...", leeway 5)."""
    if len(text) <= length + 5:
        return text
    return text[: length - 3].rsplit(" ", 1)[0] + "..."


def _url(endpoint: str, arg: str, value: Any) -> str:
    """url_for(endpoint, arg=value), built once per request and then filled in."""
    cache = g.setdefault("wave_cell_urls", {})
    template = cache.get(endpoint)
    if template is None:
        built = url_for(endpoint, **{arg: PLACEHOLDER})
        template = cache[endpoint] = built.rpartition(PLACEHOLDER)[0]
    return template + quote(str(value), safe=URL_SAFE)


def row_url(experiment_uuid: Any, row_id: int) -> str:
    """url_for("data.show_row", …) of a grid row, built once per experiment and
    request (a page has up to 500 rows)."""
    cache = g.setdefault("wave_row_urls", {})
    base = cache.get(experiment_uuid)
    if base is None:
        built = url_for("data.show_row", experiment_uuid=experiment_uuid, row_id=0)
        base = cache[experiment_uuid] = built[: -len("0")]
    return base + str(int(row_id))


def grid_cell(col: Any, value: Any) -> Markup:
    """One <td> of the grid; `col` is a queries.GridColumn, `value` as stored.

    Free text (participant ids, STRING, TEXT, JSON) carries hx-disable: htmx leaves
    it alone even if escaping ever failed (those cells hold no controls of their own).
    """
    if value is None:
        return EMPTY
    kind = col.type
    if kind == "BOOLEAN":
        return TRUE if value else FALSE
    name = col.name
    if name == "participant_id":
        href = escape(_url("data.participant", "participant_id", value))
        return Markup(f'<td hx-disable><a href="{href}">{escape(value)}</a></td>')
    if name == "experiment_uuid":
        href = escape(_url("experiments.show", "experiment_uuid", value))
        text = escape(value)
        return Markup(
            f'<td><a href="{href}" hx-boost="false"><code class="uuid" '
            f'title="{text}">{escape(str(value)[:8])}</code></a></td>'
        )
    if name == "id":
        return Markup(f'<td class="num">{escape(value)}</td>')
    if kind == "JSON":
        return _json_cell(value)
    if kind in ("TEXT", "STRING") and len(value) > TEXT_SHOWN:
        return Markup(
            f'<td class="cell text" hx-disable><details><summary>'
            f"{escape(truncate(value, TEXT_SHOWN))}</summary>"
            f'<div class="full-text">{escape(value)}</div></details></td>'
        )
    text = columns.format_value(kind, value)
    if kind == "DATETIME":
        if len(text) > 20:
            shown = escape(text)
            return Markup(
                f'<td class="cell"><time datetime="{shown}" title="{shown}">'
                f"{escape(text[:19])}Z</time></td>"
            )
        shown = escape(text)
        return Markup(f'<td class="cell"><time datetime="{shown}">{shown}</time></td>')
    numeric = " num" if kind in ("INTEGER", "FLOAT") else ""
    free = " hx-disable" if kind in ("STRING", "TEXT") else ""
    return Markup(f'<td class="cell{numeric}"{free}>{escape(text)}</td>')


def _json_cell(value: Any) -> Markup:
    text = columns.format_value("JSON", value)
    if len(text) <= JSON_SHOWN:
        inner = f'<span class="mono">{escape(text)}</span>'
    else:
        pretty = json.dumps(value, indent=2, ensure_ascii=False)
        inner = (
            f'<details><summary class="mono">{escape(truncate(text, JSON_SHOWN))}'
            f'</summary><pre class="mono small mb-0">{escape(pretty)}</pre></details>'
        )
    return Markup(f'<td class="cell json" hx-disable>{inner}</td>')


def row_cells(cols: Sequence[Any], row: Mapping[str, Any]) -> Markup:
    """The <td>s of one row, in the order of `cols`."""
    return Markup("".join([grid_cell(c, row[c.name]) for c in cols]))

"""Grid cells written in Python (gridcells.py): escaped values, the links url_for
would build, and long text and JSON folded as the templates did."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from flask import url_for
from tests.conftest import make_app
from wave_web.gridcells import grid_cell
from wave_web.gridcells import row_cells
from wave_web.gridcells import row_url
from wave_web.queries import GridColumn

HOSTILE = '<script>alert("x")</script> & \' "'


@pytest.fixture(scope="module")
def cells_app(tmp_path_factory):
    """One app for the module: cells need its routes, not a database of their own."""
    tmp = tmp_path_factory.mktemp("cells")
    return make_app(f"sqlite:///{tmp}/cells.db", tmp, with_admin=False)


@pytest.fixture
def request_context(cells_app):
    with cells_app.test_request_context(
        "/", base_url="http://example.org/under/a/prefix"
    ):
        yield


@pytest.mark.parametrize("kind", ["STRING", "TEXT"])
def test_text_is_escaped_and_kept_from_htmx(request_context, kind):
    cell = str(grid_cell(GridColumn("s", kind), HOSTILE))
    assert "<script>" not in cell and "&lt;script&gt;" in cell
    assert cell.startswith('<td class="cell" hx-disable>')


def test_long_text_folds_after_60_characters(request_context):
    text = "word " * 20
    cell = str(grid_cell(GridColumn("t", "TEXT"), text))
    assert "<details><summary>" in cell and f'"full-text">{text}</div>' in cell


def test_json_is_escaped_and_folds_when_long(request_context):
    short = str(grid_cell(GridColumn("j", "JSON"), {"k": HOSTILE}))
    assert "<script>" not in short and "&lt;script&gt;" in short
    long = str(grid_cell(GridColumn("j", "JSON"), {"k": "v" * 60}))
    assert '<details><summary class="mono">' in long


@pytest.mark.parametrize("value", ["P 1/?#&é", "<b>", "a/b;c=d"])
def test_participant_links_are_the_ones_url_for_builds(request_context, value):
    cell = str(grid_cell(GridColumn("participant_id", "STRING", False, True), value))
    href = url_for("data.participant", participant_id=value).replace("&", "&amp;")
    assert f'href="{href}"' in cell
    assert "<b>" not in cell


def test_row_addresses_are_the_ones_url_for_builds(request_context):
    experiment = uuid.uuid4()
    for row_id in (1, 42, 2147483647):
        assert row_url(experiment, row_id) == url_for(
            "data.show_row", experiment_uuid=experiment, row_id=row_id
        )
    other = uuid.uuid4()  # a type grid: rows of several experiments on one page
    assert row_url(other, 3) == url_for(
        "data.show_row", experiment_uuid=other, row_id=3
    )


def test_empty_booleans_and_datetimes(request_context):
    assert "empty" in grid_cell(GridColumn("n", "INTEGER"), None)
    assert "✓" in grid_cell(GridColumn("b", "BOOLEAN"), True)
    assert "✗" in grid_cell(GridColumn("b", "BOOLEAN"), False)
    stamp = dt.datetime(2025, 3, 1, 1, 2, 3, 456789)
    cell = str(grid_cell(GridColumn("d", "DATETIME"), stamp))
    assert ">2025-03-01T01:02:03Z</time>" in cell and 'title="' in cell


def test_a_row_is_its_cells_in_column_order(request_context):
    cols = [GridColumn("id", "INTEGER", False, True), GridColumn("n", "INTEGER")]
    assert str(row_cells(cols, {"n": 5, "id": 9})) == (
        '<td class="num">9</td><td class="cell num">5</td>'
    )

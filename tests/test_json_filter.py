"""JSON path filters: `<column>__json=<path>:<value>` on both databases.

Every case is checked against the rows it must select, through the domain functions
and through the grid's address; bad paths and values are a 400 with a message.
"""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import queries
from wave_web import summaries
from wave_web.columns import ColumnDef
from wave_web.queries import BadQuery
from wave_web.queries import JsonMatch
from wave_web.queries import RowQuery
from wave_web.queries import count_matching
from wave_web.queries import grid_columns
from wave_web.queries import page_rows
from werkzeug.datastructures import MultiDict

COLUMNS = (ColumnDef("extra", "JSON"), ColumnDef("score", "INTEGER"))

# participant_id names the row in the expectations below
ROWS = [
    {
        "participant_id": "r1",
        "score": 1,
        "extra": {"block": 3, "keys": ["f", "j"], "ok": True, "name": "a"},
    },
    {
        "participant_id": "r2",
        "score": 2,
        "extra": {"block": 3.0, "keys": ["j"], "ok": False, "name": "3"},
    },
    {
        "participant_id": "r3",
        "score": 3,
        "extra": {"block": "3", "nested": {"a": {"b": [10, {"c": "deep"}]}}},
    },
    {"participant_id": "r4", "score": 4, "extra": [{"block": 3}, "x"]},
    {"participant_id": "r5", "score": 5, "extra": {"0": "zero", "keys": {"0": "obj"}}},
    {"participant_id": "r6", "score": 6, "extra": None},
    {
        "participant_id": "r7",
        "score": 7,
        "extra": {"block": 1e20, "big": 9007199254740993, "neg": -2.5},
    },
    {"participant_id": "r8", "score": 8, "extra": "block"},
    {"participant_id": "r9", "score": 9, "extra": {"block": True, "name": "Ä ü"}},
    {"participant_id": "r10", "score": 10, "extra": {"block": 1, "name": ""}},
]

CASES = [
    ("block:3", {"r1", "r2"}),  # 3 and 3.0 are the same number
    ("block: 3 ", {"r1", "r2"}),
    ('block:"3"', {"r3"}),  # a string is not a number
    ("block:1", {"r10"}),  # true is not 1
    ("block:true", {"r9"}),
    ("block:1e20", {"r7"}),
    ("big:9007199254740993", {"r7"}),  # beyond a double's integers
    ("neg:-2.5", {"r7"}),
    ("ok:true", {"r1"}),
    ("ok:false", {"r2"}),
    ('name:"3"', {"r2"}),
    ("name:3", set()),
    ('name:""', {"r10"}),
    ('name:"Ä ü"', {"r9"}),
    ('name:"ä ü"', set()),  # exact, case and all
    ('keys[0]:"f"', {"r1"}),
    ('keys[0]:"j"', {"r2"}),
    ('keys[1]:"j"', {"r1"}),
    ('keys[0]:"obj"', set()),  # an index reads lists only, not the key "0"
    ('keys.0:"obj"', {"r5"}),  # a key reads objects only
    ('keys.0:"f"', set()),
    ('0:"zero"', {"r5"}),
    ("[0].block:3", {"r4"}),
    ('[1]:"x"', {"r4"}),
    ('nested.a.b[1].c:"deep"', {"r3"}),
    ("nested.a.b[0]:10", {"r3"}),
    ("nested.a.b:10", set()),  # a list is not a number
    ("missing:1", set()),
]


@pytest.fixture
def json_data(db):
    xtype = make_type("Json", "json_data", COLUMNS)
    experiment = make_experiment(xtype, "Known rows")
    make_rows(xtype, experiment, ROWS)
    make_rows(xtype, make_experiment(xtype, "Other"), ROWS)  # never matches
    return SimpleNamespace(
        xtype=xtype, experiment=experiment, url=f"/experiments/{experiment.uuid}"
    )


def selected(data, args) -> set[str]:
    query = RowQuery.from_args(grid_columns(data.xtype), MultiDict(args))
    page = page_rows(data.xtype, query, data.experiment.uuid)
    got = {r["participant_id"] for r in page.rows}
    assert count_matching(data.xtype, query, data.experiment.uuid) == (len(got), False)
    return got


def test_json_path_filter_selects_the_known_rows(json_data):
    wrong = {}
    for text, expected in CASES:
        got = selected(json_data, [("extra__json", text), ("_size", "500")])
        if got != expected:
            wrong[text] = {"rows": sorted(got), "expected": sorted(expected)}
    assert wrong == {}


def test_json_path_filters_combine_with_each_other_and_with_other_filters(json_data):
    assert selected(json_data, [("extra__json", "block:3"), ("score__gt", "1")]) == {
        "r2"
    }
    both = [("extra__json", "block:3"), ("extra__json", 'keys[0]:"f"')]
    assert selected(json_data, both) == {"r1"}
    assert selected(json_data, [("extra__json", "block:3"), ("extra__isnull", "")]) == (
        set()
    )


@pytest.mark.parametrize(
    ("text", "path", "value", "label"),
    [
        ("block:3", ("block",), 3, "extra.block = 3"),
        ('keys[0]:"f"', ("keys", 0), "f", 'extra.keys[0] = "f"'),
        ("[2].a-b_c:true", (2, "a-b_c"), True, "extra[2].a-b_c = true"),
        ("a[0][1].b:-0.5", ("a", 0, 1, "b"), -0.5, "extra.a[0][1].b = -0.5"),
        ('  name : "x y" ', ("name",), "x y", 'extra.name = "x y"'),
    ],
)
def test_json_path_is_parsed_and_labelled(json_data, text, path, value, label):
    query = RowQuery.from_args(grid_columns(json_data.xtype), {"extra__json": text})
    (f,) = query.filters
    assert f.value == JsonMatch(path, value)
    assert f.label == label
    assert query.params() == [("extra__json", text.strip())]


REFUSED = [
    "block",
    "block:",
    ":3",
    "block:abc",
    "block:null",
    "block:[1]",
    'block:{"a": 1}',
    "block:NaN",
    "block:1e400",
    "block:18446744073709551615",
    'name:"a\\u0000b"',
    "name:" + '"' + "x" * 1001 + '"',
    "a..b:1",
    ".a:1",
    "a.:1",
    "a.[0]:1",
    "a[x]:1",
    "a[-1]:1",
    "a[1234567]:1",
    "a b:1",
    'a"b:1',
    "a'b:1",
    "ä:1",
    "x" * 65 + ":1",
    "a.b.c.d.e.f.g.h.i:1",  # nine steps
    "a[0][0][0][0][0][0][0][0]:1",
]


@pytest.mark.parametrize("text", REFUSED)
def test_bad_json_path_or_value_is_refused_with_a_message(json_data, text):
    with pytest.raises(BadQuery) as caught:
        RowQuery.from_args(grid_columns(json_data.xtype), {"extra__json": text})
    assert caught.value.field == "extra__json"
    assert "extra" in caught.value.message and "JSON path" in caught.value.message


def test_json_path_filter_applies_to_json_columns_only(json_data):
    for args in ({"score__json": "a:1"}, {"participant_id__json": "a:1"}):
        with pytest.raises(BadQuery) as caught:
            RowQuery.from_args(grid_columns(json_data.xtype), args)
        assert "does not apply" in caught.value.message
    with pytest.raises(BadQuery) as caught:
        RowQuery.from_args(grid_columns(json_data.xtype), {"extra": "3"})
    assert "JSON path = (path:value)" in caught.value.message  # offered instead


# ----------------------------------------------------------------------
# Through the grid's address
# ----------------------------------------------------------------------


def rows_shown(response) -> set[str]:
    grid = parse(response.data).find(id="grid")
    return {
        td.text.strip()
        for tr in grid.find_all("tr")
        if tr.attrs.get("id", "").startswith("row-")
        for td in tr.find_all("td")
        if td.text.strip() in {r["participant_id"] for r in ROWS}
    }


def test_grid_filters_by_json_path_and_shows_the_chip(client, json_data):
    query = urlencode({"extra__json": 'keys[0]:"f"'})
    response = client.get(f"{json_data.url}?{query}")
    assert response.status_code == 200
    assert rows_shown(response) == {"r1"}
    chips = [c.text for c in parse(response.data).find_all(class_="filter-chip")]
    assert len(chips) == 1 and 'extra.keys[0] = "f"' in chips[0]


def test_add_filter_form_makes_a_json_path_address(client, json_data):
    form = {"_fcol": "extra", "_fop": "json", "_fval": "block:3"}
    response = client.get(f"{json_data.url}?{urlencode(form)}")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("?extra__json=block%3A3")
    page = client.get(response.headers["Location"])
    assert page.status_code == 200 and rows_shown(page) == {"r1", "r2"}
    json_fields = parse(page.data).find("template", **{"data-filter-type": "JSON"})
    operators = json_fields.find(id="f-op")
    assert "json" in [o.attrs["value"] for o in operators.find_all("option")]


@pytest.mark.parametrize("text", ["block", "block:abc", "a..b:1", 'name:"a\\u0000"'])
def test_bad_json_filter_in_the_address_is_a_400_next_to_the_filter(
    client, json_data, text
):
    for headers in ({}, {"HX-Request": "true"}):
        response = client.get(
            f"{json_data.url}?{urlencode({'extra__json': text})}", headers=headers
        )
        assert response.status_code == 400
        error = parse(response.data).find(id="grid-error")
        assert error is not None and "JSON path" in error.text
        assert not rows_shown(response)


def test_type_grid_and_summary_follow_a_json_path_filter(client, json_data):
    query = urlencode({"extra__json": "block:3"})
    response = client.get(f"/types/{json_data.xtype.id}/rows?{query}")
    assert response.status_code == 200
    assert rows_shown(response) == {"r1", "r2"}  # in both experiments
    summary = client.get(f"{json_data.url}/summary?{query}")
    assert summary.status_code == 200
    scope = parse(summary.data).find(id="summary-scope").text
    assert "extra.block = 3" in scope and "2 rows" in scope
    q = RowQuery.from_args(grid_columns(json_data.xtype), {"extra__json": "block:3"})
    found = summaries.summarise(json_data.xtype, q, json_data.experiment.uuid)
    assert next(s for s in found if s.column.name == "score").maximum == 2


def test_json_operator_is_in_the_menu_for_json_columns_only(json_data):
    cols = {c.name: c for c in grid_columns(json_data.xtype)}
    assert [o.key for o in queries.operators_for(cols["extra"])] == [
        "json",
        "isnull",
        "notnull",
    ]
    assert "json" not in [o.key for o in queries.operators_for(cols["score"])]

"""Filters that fit the column, and the export entry that means the grid's view.

The operator table per column type is the one both the filter form and the address's
parser use; a refused filter is named in the dropdown's words next to the filter
form, and the export entry says how many rows of which view it downloads.
"""

from __future__ import annotations

import csv
import io
import re
from types import SimpleNamespace
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from tests.factories import EVERY_TYPE
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import columns
from wave_web import queries
from wave_web.queries import BadQuery
from wave_web.queries import RowQuery
from wave_web.queries import grid_columns
from werkzeug.datastructures import MultiDict

# Keys of the address that a message must never show (the dropdown has words).
INTERNAL_KEYS = re.compile(
    r"\b(exact|lt|lte|gt|gte|startswith|iexact|icontains|istartswith|isnull|"
    r"notnull)\b"
)


@pytest.fixture
def every_type(db):
    """A type with one column of each type, and one experiment of 5 rows."""
    xtype = make_type("Every type", "every_type", EVERY_TYPE)
    experiment = make_experiment(xtype, "All kinds")
    make_rows(
        xtype,
        experiment,
        [
            {"participant_id": f"P{i}", "n": i, "x": i / 4, "s": f"s{i}", "b": i % 2}
            for i in range(5)
        ],
    )
    return SimpleNamespace(
        xtype=xtype,
        cols={c.name: c for c in grid_columns(xtype)},
        url=f"/experiments/{experiment.uuid}",
    )


# ----------------------------------------------------------------------
# The operator table
# ----------------------------------------------------------------------


def test_every_column_type_has_its_operators():
    assert set(queries.TYPE_OPERATORS) == {*columns.COLUMN_TYPES, "UUID"}
    for keys in queries.TYPE_OPERATORS.values():
        assert set(keys) <= set(queries.OPERATORS)
        assert keys[-2:] == ("isnull", "notnull")


@pytest.mark.parametrize(
    ("column", "offered", "refused"),
    [
        ("x", ["=", "≠", "<", "≤", ">", "≥"], ["contains", "JSON path = (path:value)"]),
        ("n", ["<", "≥"], ["contains", "starts with"]),
        ("d", ["<", ">"], ["contains"]),
        ("s", ["contains", "starts with", "contains (any case)"], ["<", "JSON path"]),
        ("b", ["=", "≠"], ["<", "contains"]),
        ("j", ["JSON path = (path:value)"], ["=", "contains", "<"]),
    ],
)
def test_column_offers_only_the_operators_of_its_type(
    every_type, column, offered, refused
):
    labels = [o.label for o in queries.operators_for(every_type.cols[column])]
    assert set(offered) <= set(labels)
    assert not [r for r in refused if any(label.startswith(r) for label in labels)]
    assert labels[-2:] == ["is empty", "is not empty"]


@pytest.mark.parametrize("type_name", sorted(queries.TYPE_OPERATORS))
def test_parser_accepts_exactly_the_operators_the_form_offers(every_type, type_name):
    col = queries.GridColumn("c", type_name)
    offered = {o.key for o in queries.operators_for(col)}
    sample = {
        "INTEGER": "3",
        "FLOAT": "0.5",
        "DATETIME": "2024-03-04T14:30",
        "BOOLEAN": "true",
        "JSON": "block:3",
        "UUID": "00000000-0000-4000-8000-000000000000",
    }.get(type_name, "abc")
    for key in queries.OPERATORS:
        if key in offered:
            queries.parse_filter(col, key, sample)
        else:
            with pytest.raises(BadQuery):
                queries.parse_filter(col, key, sample)


@pytest.mark.parametrize("name", ["id", "participant_id", "created_at", "updated_at"])
def test_never_empty_column_offers_no_empty_condition(every_type, name):
    col = every_type.cols[name]
    assert not {"isnull", "notnull"} & {o.key for o in queries.operators_for(col)}
    with pytest.raises(BadQuery) as caught:
        RowQuery.from_args(list(every_type.cols.values()), {f"{name}__isnull": ""})
    assert f"{name} is never empty" in caught.value.message
    assert not INTERNAL_KEYS.search(caught.value.message)


def test_filter_form_menus_leave_empty_conditions_to_nullable_columns(
    client, every_type
):
    page = parse(client.get(every_type.url).data)
    kinds = {
        o.attrs["value"]: o.attrs["data-type"]
        for o in page.find(id="f-col").find_all("option")
    }
    assert kinds["participant_id"] == "STRING-required"
    assert kinds["s"] == "STRING"

    def menu(kind):
        template = page.find("template", **{"data-filter-type": kind})
        return [o.attrs["value"] for o in template.find(id="f-op").find_all("option")]

    assert "isnull" not in menu("STRING-required")
    assert menu("STRING")[-2:] == ["isnull", "notnull"]
    assert "contains" in menu("STRING-required")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"x__contains": "1"}, ["“contains”", "x", "decimal numbers", "≥"]),
        ({"s__json": "a:1"}, ["“JSON path = (path:value)”", "short text", "contains"]),
        ({"b__gt": "1"}, ["“>”", "true or false", "=, ≠, is empty, is not empty"]),
        ({"x__regex": "1"}, ["“regex” is not a condition", "x"]),
        ({"x__gt": "abc"}, ["x > “abc”", "number"]),
        ({"n__lte": ""}, ["n ≤", "enter a value"]),
        ({"d__lt": "yesterday"}, ["d < “yesterday”", "date-time"]),
    ],
)
def test_refused_filter_message_uses_the_dropdown_words(every_type, args, words):
    with pytest.raises(BadQuery) as caught:
        RowQuery.from_args(list(every_type.cols.values()), args)
    message = caught.value.message
    assert [w for w in words if w not in message] == []
    assert not INTERNAL_KEYS.search(message), message


def test_datetime_local_value_is_a_filter_value(every_type):
    q = RowQuery.from_args(
        list(every_type.cols.values()), {"d__gte": "2024-03-04T14:30"}
    )
    assert q.filters[0].label == "d ≥ 2024-03-04T14:30"


def test_view_describes_itself_in_words(every_type):
    cols = list(every_type.cols.values())
    q = RowQuery.from_args(
        cols,
        MultiDict(
            [("x__gt", "0.5"), ("s__contains", "s"), ("_sort", "x"), ("_dir", "desc")]
            + [("_hide", "t"), ("_hide", "j")]
        ),
    )
    assert q.describe() == (
        "filtered by x > 0.5 and s contains s, sorted by x (descending), "
        "2 columns hidden"
    )
    assert RowQuery.from_args(cols, {}).describe() == ""
    assert not RowQuery.from_args(cols, {}).is_view


# ----------------------------------------------------------------------
# The filter form
# ----------------------------------------------------------------------


def filter_form(response):
    return parse(response.data).find("form", **{"aria-label": "Add a filter"})


def test_filter_form_fields_match_the_column_type(client, every_type):
    page = parse(client.get(every_type.url).data)
    menus = {
        t.attrs["data-filter-type"]: t for t in page.find_all("template")
    }  # one per column type of the grid
    assert {"INTEGER", "FLOAT", "DATETIME", "BOOLEAN", "JSON", "STRING"} <= set(menus)

    def value_field(type_name):
        return menus[type_name].find(id="f-val")

    def options(type_name):
        return [o.text for o in menus[type_name].find(id="f-op").find_all("option")]

    assert value_field("FLOAT").attrs["type"] == "number"
    assert value_field("FLOAT").attrs["step"] == "any"
    assert value_field("INTEGER").attrs["step"] == "1"
    assert value_field("DATETIME").attrs["type"] == "datetime-local"
    assert value_field("BOOLEAN").tag == "select"
    assert [o.text for o in value_field("BOOLEAN").find_all("option")] == [
        "true",
        "false",
    ]
    assert value_field("STRING").attrs["type"] == "text"
    assert "contains" not in options("FLOAT")
    assert not [o for o in options("STRING") if o.startswith("JSON")]
    column = filter_form(client.get(every_type.url)).find(id="f-col")
    types = {o.attrs["value"]: o.attrs["data-type"] for o in column.find_all("option")}
    assert types["x"] == "FLOAT" and types["b"] == "BOOLEAN"


def test_without_javascript_choosing_a_column_shows_its_conditions(client, every_type):
    pick = {"x__gt": "0.5", "_fcol": "s", "_fop": "gt", "_fval": "", "_fpick": "1"}
    response = client.get(every_type.url, query_string=pick)
    assert response.status_code == 200
    form = filter_form(response)
    assert form.find(id="f-col").find("option", selected="").attrs["value"] == "s"
    conditions = [o.text for o in form.find(id="f-op").find_all("option")]
    assert "contains" in conditions and "<" not in conditions
    assert form.find(id="f-val").attrs["type"] == "text"
    hidden = [(i.attrs["name"], i.attrs["value"]) for i in form.find_all("input")]
    assert ("x__gt", "0.5") in hidden  # the view is kept
    assert form.find("button", name="_fpick") is not None


@pytest.mark.parametrize("headers", [{}, {"HX-Request": "true"}])
def test_refused_filter_is_shown_in_the_form_with_its_reason(
    client, every_type, headers
):
    add = {"s__contains": "s", "_fcol": "x", "_fop": "contains", "_fval": "1"}
    redirect = client.get(every_type.url, query_string=add, headers=headers)
    assert redirect.status_code == 303
    response = client.get(redirect.headers["Location"], headers=headers)
    assert response.status_code == 400
    form = filter_form(response)
    toolbar = parse(response.data).find(class_="grid-toolbar")
    error = toolbar.find(id="grid-error")  # right after the filter form
    assert error.attrs["role"] == "alert"
    assert "“contains” does not apply to x" in error.text
    assert not INTERNAL_KEYS.search(error.text)
    # the form holds the refused filter again, on its column's own conditions
    assert form.find(id="f-col").find("option", selected="").attrs["value"] == "x"
    assert "contains" not in [o.text for o in form.find(id="f-op").find_all("option")]
    assert form.find(id="f-val").attrs["value"] == "1"
    assert form.find(id="f-val").attrs["aria-describedby"] == "grid-error"
    # the other filter is kept: fixing or removing the refused one keeps it
    hidden = [(i.attrs["name"], i.attrs["value"]) for i in form.find_all("input")]
    assert ("s__contains", "s") in hidden
    remove = error.find("a").attrs["href"]
    assert parse_qsl(urlsplit(remove).query) == [("s__contains", "s")]


def test_fixing_the_refused_filter_replaces_it(client, every_type):
    bad = client.get(f"{every_type.url}?{urlencode({'x__gt': 'abc'})}")
    form = filter_form(bad)
    args = [(i.attrs["name"], i.attrs["value"]) for i in form.find_all("input")]
    assert ("x__gt", "abc") not in args
    fixed = dict(args) | {"_fcol": "x", "_fop": "gt", "_fval": "0.5"}
    response = client.get(every_type.url, query_string=fixed)
    assert parse_qsl(urlsplit(response.headers["Location"]).query) == [("x__gt", "0.5")]
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert parse(page.data).find(id="grid-error") is None


# ----------------------------------------------------------------------
# The export entry: the current view, with every row one click away
# ----------------------------------------------------------------------


def records(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.data.decode("utf-8"))))


def test_export_entry_says_what_the_view_exports(client, every_type):
    page = parse(client.get(f"{every_type.url}?x__gt=0.5&_sort=x&_dir=desc").data)
    summary = page.find(id="export-view-summary").text
    assert summary == "2 rows, filtered by x > 0.5, sorted by x (descending)"
    everything = page.find("a", id="export-all-csv")
    assert "all 5 rows" in everything.text
    assert everything.attrs["href"] == f"{every_type.url}/export.csv"
    unfiltered = parse(client.get(every_type.url).data)
    assert unfiltered.find(id="export-view-summary").text == "all 5 rows"
    assert unfiltered.find("a", id="export-all-csv") is None


def test_export_entry_downloads_exactly_the_filtered_rows(client, every_type):
    page = parse(client.get(f"{every_type.url}?x__gte=0.5&b=true").data)
    link = page.find("a", id="export-view-csv").attrs["href"]
    assert parse_qsl(urlsplit(link).query) == [("x__gte", "0.5"), ("b__exact", "true")]
    rows = records(client.get(link))
    assert [r["participant_id"] for r in rows] == ["P3"]
    assert page.find(id="export-view-summary").text.startswith("1 row, filtered by")


def test_experiment_page_has_one_export_entry(client, every_type):
    page = parse(client.get(f"{every_type.url}?x__gt=0.5").data)
    menu = page.find(id="grid").find(class_="export-menu")
    inside = [id(a) for a in menu.find_all("a")]
    elsewhere = [
        a.attrs["href"]
        for a in page.find_all("a")
        if "/export" in a.attrs.get("href", "") and id(a) not in inside
    ]
    assert elsewhere == []
    assert len(inside) == 3


def test_export_entry_is_not_offered_for_a_refused_view(client, every_type):
    page = parse(client.get(f"{every_type.url}?x__gt=abc").data)
    assert page.find("a", id="export-view-csv") is None


def test_export_page_says_the_view_and_offers_every_row(client, every_type):
    page = parse(client.get(f"{every_type.url}/export?x__gt=0.5").data)
    assert "2 rows matching the view: filtered by x > 0.5" in (
        page.find(id="export-count").text
    )
    everything = page.find("a", id="export-all")
    assert everything.text.strip() == "Export all 5 rows instead"
    assert everything.attrs["href"] == f"{every_type.url}/export"

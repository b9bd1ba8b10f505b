"""The rows grid: keyset paging, filters, counts, URL state, type and participant views.

Paging and filters are checked against an order and a selection computed in Python from
the stored rows (empty values come last in both directions; ties are broken by id in the
same direction; strings compare by code point on both databases). Everything a user
can type into the address goes through the experiment page and must give a 400 with a
message, never a 500 and never rows.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import re
import sys
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from tests.factories import DEFAULT_COLUMNS
from tests.factories import EVERY_TYPE
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import Element
from tests.htmlparse import parse
from wave_web import datatables
from wave_web import queries
from wave_web.columns import ColumnDef
from wave_web.queries import BadQuery
from wave_web.queries import RowQuery
from wave_web.queries import count_matching
from wave_web.queries import grid_columns
from wave_web.queries import page_rows
from werkzeug.datastructures import MultiDict

Row = dict[str, Any]

# ----------------------------------------------------------------------
# Keyset paging
# ----------------------------------------------------------------------

KEYSET_COLUMNS = (
    ColumnDef("score", "INTEGER"),
    ColumnDef("ratio", "FLOAT"),
    ColumnDef("label", "STRING"),
    ColumnDef("note", "TEXT"),
    ColumnDef("flag", "BOOLEAN"),
    ColumnDef("seen_at", "DATETIME"),
    ColumnDef("extra", "JSON"),
)

# Small domains: many ties and NULLs; strings whose code-point order differs from any
# locale's (case, umlauts, a fullwidth letter, an emoji, a leading space).
DOMAINS: dict[str, list[Any]] = {
    "participant_id": ["P01", "P02", "p01", "Ä1", "ä1", "P10", "P1"],
    "score": [None, None, -3, 0, 1, 1, 2, 7, 2147483647, -2147483648],
    "ratio": [None, -0.5, 0.0, 0.25, 1e-3, 3.0, 1e300],
    "label": [None, "", "a", "B", "b", "Äpfel", "äpfel", "50%", "5_0", " a", "\uff21"],
    "note": [None, "x" * 70, "Hello World", "hello", "ÄÖÜ", "100% sure", "😀"],
    "flag": [None, True, False],
    "seen_at": [
        None,
        dt.datetime(2024, 1, 1),
        dt.datetime(2024, 1, 1, 0, 0, 0, 1),
        dt.datetime(2025, 6, 30, 23, 59, 59, 999999),
        dt.datetime(1999, 12, 31),
    ],
    "extra": [None, {"a": 1}, [1, 2]],
}

# name -> (query-string filters, the same selection in Python)
KEYSET_FILTERS: dict[str, tuple[list[tuple[str, str]], Callable[[Row], bool]]] = {
    "none": ([], lambda r: True),
    "score>=1": (
        [("score__gte", "1")],
        lambda r: r["score"] is not None and r["score"] >= 1,
    ),
    "label set": ([("label__notnull", "")], lambda r: r["label"] is not None),
    "flag and label not a": (
        [("flag__exact", "true"), ("label__not", "a")],
        lambda r: r["flag"] is True and r["label"] != "a",
    ),
}


def random_row(rng: random.Random) -> Row:
    return {name: rng.choice(values) for name, values in DOMAINS.items()}


def stored_rows(xtype, experiment) -> list[Row]:
    """The rows of one experiment as the database returns them."""
    from wave_web.extensions import db

    table = datatables.reflect(xtype)
    stmt = sa.select(table).where(table.c.experiment_uuid == experiment.uuid)
    return [dict(r) for r in db.session.execute(stmt).mappings()]


def python_order(
    rows: list[Row], sort: str, desc: bool, keep: Callable[[Row], bool]
) -> list[int]:
    """Ids in grid order: values (ties by id) in the sort direction, then NULLs.

    Empty values come last in both directions, ordered by id in the sort direction.
    """
    chosen = [r for r in rows if keep(r)]
    values = sorted(
        (r for r in chosen if r[sort] is not None),
        key=lambda r: (r[sort], r["id"]),
        reverse=desc,
    )
    nulls = sorted((r for r in chosen if r[sort] is None), key=lambda r: r["id"])
    return [r["id"] for r in values] + [
        r["id"] for r in (nulls[::-1] if desc else nulls)
    ]


def sortable(xtype) -> list[str]:
    return [c.name for c in grid_columns(xtype) if c.sortable]


def view_args(sort: str, desc: bool, size: int, filters=()) -> list[tuple[str, str]]:
    return [
        *filters,
        ("_sort", sort),
        ("_dir", "desc" if desc else "asc"),
        ("_size", str(size)),
    ]


def read_page(xtype, experiment, args: list[tuple[str, str]]) -> queries.Page:
    query = RowQuery.from_args(grid_columns(xtype), MultiDict(args))
    return page_rows(xtype, query, experiment.uuid)


def ids_of(page: queries.Page) -> list[int]:
    return [r["id"] for r in page.rows]


MAX_PAGES = 100


def walk_forwards(xtype, experiment, args) -> list[queries.Page]:
    """First page, then `_after` the last cursor of each page until has_next is off."""
    pages = [read_page(xtype, experiment, args)]
    assert not pages[0].has_prev
    while pages[-1].has_next:
        assert len(pages) < MAX_PAGES, "paging forwards does not end"
        page = read_page(xtype, experiment, [*args, ("_after", pages[-1].last_cursor)])
        assert page.has_prev
        pages.append(page)
    return pages


def walk_backwards(xtype, experiment, args) -> list[queries.Page]:
    """The last page, then `_before` the first cursor of each page; in grid order."""
    pages = [read_page(xtype, experiment, [*args, ("_last", "1")])]
    assert not pages[0].has_next
    while pages[0].has_prev:
        assert len(pages) < MAX_PAGES, "paging backwards does not end"
        page = read_page(xtype, experiment, [*args, ("_before", pages[0].first_cursor)])
        assert page.has_next
        pages.insert(0, page)
    return pages


def check_paging(xtype, experiment, rows, sort, desc, size, filter_name) -> None:
    """Every matching row exactly once, in the right order, both ways; full pages."""
    filters, keep = KEYSET_FILTERS[filter_name]
    args = view_args(sort, desc, size, filters)
    expected = python_order(rows, sort, desc, keep)
    where = f"sort={sort} desc={desc} size={size} filter={filter_name}"

    forwards = walk_forwards(xtype, experiment, args)
    assert [i for p in forwards for i in ids_of(p)] == expected, f"forwards, {where}"
    assert all(len(p.rows) == size for p in forwards[:-1]), where
    assert forwards[-1].rows or not expected, f"empty last page, {where}"

    backwards = walk_backwards(xtype, experiment, args)
    assert [i for p in backwards for i in ids_of(p)] == expected, f"backwards, {where}"
    assert all(len(p.rows) == size for p in backwards[1:]), where

    # "Previous" from any forward page is exactly the page before it.
    for before, page in zip(forwards, forwards[1:], strict=False):
        previous = read_page(xtype, experiment, [*args, ("_before", page.first_cursor)])
        assert ids_of(previous) == ids_of(before), f"previous page, {where}"
        assert previous.has_prev == (before is not forwards[0]), where


@pytest.fixture
def keyset_data(db):
    """75 rows in three batches (three created_at values: ties), and a neighbour."""
    xtype = make_type("Keyset", "keyset_data", KEYSET_COLUMNS)
    experiment = make_experiment(xtype, "Paged")
    neighbour = make_experiment(xtype, "Neighbour")
    rng = random.Random(4)
    for _ in range(3):
        make_rows(xtype, experiment, [random_row(rng) for _ in range(25)])
        make_rows(xtype, neighbour, [random_row(rng) for _ in range(7)])
    return xtype, experiment, stored_rows(xtype, experiment)


def test_keyset_data_has_nulls_and_ties(keyset_data):
    _, _, rows = keyset_data
    assert len(rows) == 75
    for name in ("score", "ratio", "label", "note", "flag", "seen_at"):
        values = [r[name] for r in rows]
        assert None in values, name
        assert len(set(map(repr, values))) < len(values), name
    assert len({r["created_at"] for r in rows}) <= 3


@pytest.mark.parametrize("filter_name", list(KEYSET_FILTERS))
def test_keyset_pages_return_every_row_once_for_every_sort(keyset_data, filter_name):
    xtype, experiment, rows = keyset_data
    for sort in sortable(xtype):
        for desc in (False, True):
            for size in (25, 50):
                check_paging(xtype, experiment, rows, sort, desc, size, filter_name)


def test_keyset_pages_with_an_exact_multiple_of_the_page_size(db):
    xtype = make_type("Keyset", "keyset_data", KEYSET_COLUMNS)
    experiment = make_experiment(xtype, "Fifty")
    rng = random.Random(9)
    make_rows(xtype, experiment, [random_row(rng) for _ in range(50)])
    rows = stored_rows(xtype, experiment)
    for sort in ("id", "score", "label"):
        for desc in (False, True):
            args = view_args(sort, desc, 25)
            forwards = walk_forwards(xtype, experiment, args)
            assert [len(p.rows) for p in forwards] == [25, 25]
            assert len(walk_backwards(xtype, experiment, args)) == 2
            check_paging(xtype, experiment, rows, sort, desc, 25, "none")


def test_keyset_pages_of_an_empty_experiment(db):
    xtype = make_type("Keyset", "keyset_data", KEYSET_COLUMNS)
    experiment = make_experiment(xtype, "Empty")
    make_rows(xtype, make_experiment(xtype, "Full"), [{"participant_id": "P1"}])
    for args in ([], [("_last", "1")], [("_sort", "score"), ("_dir", "desc")]):
        page = read_page(xtype, experiment, args)
        assert page.rows == []
        assert not page.has_next and not page.has_prev


def test_keyset_paging_matches_python_order_on_generated_data(db):
    """Data, sort, direction, page size and filter drawn by hypothesis."""
    xtype = make_type("Generated", "generated_data", KEYSET_COLUMNS)
    make_rows(
        xtype,
        make_experiment(xtype, "Neighbour"),
        [random_row(random.Random(1)) for _ in range(10)],
    )
    columns = sortable(xtype)
    row = st.fixed_dictionaries(
        {name: st.sampled_from(values) for name, values in DOMAINS.items()}
    )

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        data=st.lists(row, max_size=60),
        sort=st.sampled_from(columns),
        desc=st.booleans(),
        size=st.sampled_from((25, 50)),
        filter_name=st.sampled_from(list(KEYSET_FILTERS)),
    )
    def check(data, sort, desc, size, filter_name):
        experiment = make_experiment(xtype, "Generated")
        make_rows(xtype, experiment, data)
        rows = stored_rows(xtype, experiment)
        check_paging(xtype, experiment, rows, sort, desc, size, filter_name)

    check()


@pytest.mark.parametrize("filter_name", ["score>=1", "flag and label not a"])
def test_keyset_pages_read_in_sort_order_return_every_row_once(
    keyset_data, filter_name, monkeypatch
):
    """The page reads of a filter matching many rows (SQLite: no filter index)."""
    xtype, experiment, rows = keyset_data
    reads: list[bool] = []

    def in_order(*args, **kwargs):
        reads.append(True)
        return queries.page_rows(*args, **kwargs, in_order=True)

    monkeypatch.setattr(sys.modules[__name__], "page_rows", in_order)
    for sort in ("id", "score", "label", "seen_at"):
        for desc in (False, True):
            check_paging(xtype, experiment, rows, sort, desc, 25, filter_name)
    assert reads


@pytest.mark.parametrize(
    ("total", "matching", "size", "expected"),
    [
        (1_000_000, 10_000, 50, True),  # capped: at least 1 % of the rows match
        (1_000_000, 10_000, 500, False),  # a page would read ~50,000 rows
        (1_000_000, 9_999, 50, False),  # few: through the filter's index
        (100_000_000, 10_000, 50, False),
        (100_000_000, 5_000_000, 500, True),  # an exact count
        (20_000, 10_000, 25, True),
    ],
)
def test_reads_in_order_when_matches_are_dense(total, matching, size, expected):
    assert queries.reads_in_order(total, matching, size) is expected


def test_dense_filters_keep_sqlite_off_the_filtered_columns_index(
    keyset_data, monkeypatch, dialect
):
    from wave_web.extensions import db

    xtype, experiment, rows = keyset_data
    seen: list[str] = []

    def listen(conn, cursor, statement, *args):
        if "ORDER BY" in statement and "LIMIT" in statement:
            seen.append(statement)

    monkeypatch.setattr(queries, "COUNT_CAP", 5)  # every filter below is "dense"
    args = MultiDict([("score__gte", "0"), ("label__notnull", ""), ("_sort", "score")])
    sa.event.listen(db.engine, "before_cursor_execute", listen)
    try:
        grid = queries.build_grid(xtype, args, 75, experiment.uuid)
        dense_sql, seen[:] = list(seen), []
        monkeypatch.setattr(queries, "COUNT_CAP", 100)  # now too few match
        sparse = queries.build_grid(xtype, args, 75, experiment.uuid)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listen)
    assert dense_sql and seen
    plus = dialect == "sqlite"
    assert all("(+ keyset_data.label)" in s for s in dense_sql) == plus
    assert not any("(+ keyset_data.score)" in s for s in dense_sql)  # the sort column
    assert not any("(+ " in s for s in seen)
    expected = python_order(
        rows,
        "score",
        False,
        lambda r: r["score"] is not None and r["score"] >= 0 and r["label"] is not None,
    )
    assert [r["id"] for r in grid.page.rows] == expected[:50]
    assert [r["id"] for r in sparse.page.rows] == expected[:50]


# ----------------------------------------------------------------------
# Filters, against known data
# ----------------------------------------------------------------------

FILTER_COLUMNS = EVERY_TYPE
D = dt.datetime
FILTER_ROWS = [
    # participant_id names the row in the expectations below
    dict(participant_id="r1", n=1, x=0.5, s="Apple", t="50% off", b=True,
         d=D(2024, 1, 1), j={"k": 1}),
    dict(participant_id="r2", n=2, x=1.5, s="apple pie", t="5_0 under", b=False,
         d=D(2024, 6, 1, 12), j=None),
    dict(participant_id="r3", n=None, x=None, s=None, t=None, b=None, d=None, j=None),
    dict(participant_id="r4", n=-5, x=-2.25, s="Äpfel", t="ÄRGER groß", b=True,
         d=D(2023, 12, 31, 23, 59, 59, 500000), j=[1]),
    dict(participant_id="r5", n=2, x=1e10, s="äpfel", t="500 off", b=False,
         d=D(2025, 1, 1), j="text"),
    dict(participant_id="r6", n=100, x=0.0, s="a%b", t="a_b", b=True,
         d=D(2024, 6, 1, 12, 0, 0, 1), j={}),
    dict(participant_id="r7", n=0, x=2.5, s="", t="C:\\temp", b=None,
         d=None, j=0),
]  # fmt: skip
ALL = {f"r{i}" for i in range(1, 8)}

FILTER_CASES: dict[str, list[tuple[str, set[str]]]] = {
    "integer": [
        ("n__exact=2", {"r2", "r5"}),
        ("n=2", {"r2", "r5"}),  # no operator means exact
        ("n__not=2", {"r1", "r3", "r4", "r6", "r7"}),  # keeps the empty cell
        ("n__lt=1", {"r4", "r7"}),
        ("n__lte=1", {"r1", "r4", "r7"}),
        ("n__gt=2", {"r6"}),
        ("n__gte=2", {"r2", "r5", "r6"}),
        ("n__gte=+2", {"r2", "r5", "r6"}),
        ("n__lt=-4", {"r4"}),
    ],
    "float": [
        ("x__exact=1e10", {"r5"}),
        ("x__not=0", {"r1", "r2", "r3", "r4", "r5", "r7"}),
        ("x__lt=0.5", {"r4", "r6"}),
        ("x__lte=0.5", {"r1", "r4", "r6"}),
        ("x__gt=1.5", {"r5", "r7"}),
        ("x__gte=1.5", {"r2", "r5", "r7"}),
        ("x__gt=-2.25", {"r1", "r2", "r5", "r6", "r7"}),
    ],
    "datetime": [  # an offset is converted to UTC; microseconds count
        ("d__exact=2024-06-01T12:00:00Z", {"r2"}),
        ("d__exact=2024-06-01 14:00:00%2B02:00", {"r2"}),
        ("d__not=2024-06-01T12:00:00", {"r1", "r3", "r4", "r5", "r6", "r7"}),
        ("d__lt=2024-01-01", {"r4"}),
        ("d__lte=2024-01-01T00:00:00", {"r1", "r4"}),
        ("d__lt=2024-01-01T01:00:00%2B01:00", {"r4"}),
        ("d__gt=2024-06-01T12:00:00", {"r5", "r6"}),
        ("d__gte=2024-06-01T12:00:00", {"r2", "r5", "r6"}),
        ("d__gt=2023-12-31T23:59:59.5", {"r1", "r2", "r5", "r6"}),
    ],
    "text": [  # case-sensitive
        ("s__exact=apple pie", {"r2"}),
        ("s__exact=apple", set()),
        ("s__not=Apple", ALL - {"r1"}),
        ("s__contains=pple", {"r1", "r2"}),
        ("s__contains=PPLE", set()),
        ("s__startswith=a", {"r2", "r6"}),
        ("s__startswith=A", {"r1"}),
        ("s__startswith=Ä", {"r4"}),
        ("t__contains=off", {"r1", "r5"}),
        ("t__contains=ÄRGER", {"r4"}),
        ("t__contains=ärger", set()),
    ],
    "text in any case": [  # beyond A–Z
        ("s__iexact=APPLE", {"r1"}),
        ("s__iexact=äpfel", {"r4", "r5"}),
        ("s__iexact=ÄPFEL", {"r4", "r5"}),
        ("s__icontains=PFEL", {"r4", "r5"}),
        ("s__icontains=APPLE", {"r1", "r2"}),
        ("s__istartswith=ä", {"r4", "r5"}),
        ("s__istartswith=A", {"r1", "r2", "r6"}),
        ("t__icontains=ärger", {"r4"}),
        ("t__istartswith=c:", {"r7"}),
    ],
    "wildcards literally": [  # %, _ and \ too
        ("s__contains=%25", {"r6"}),
        ("s__startswith=a%25", {"r6"}),
        ("s__contains=_", set()),
        ("t__contains=_", {"r2", "r6"}),
        ("t__startswith=50%25", {"r1"}),
        ("t__startswith=5_", {"r2"}),
        ("t__icontains=%25 OFF", {"r1"}),
        ("t__iexact=A_B", {"r6"}),
        ("t__iexact=AxB", set()),
        ("t__contains=\\", {"r7"}),
        ("t__contains=:\\t", {"r7"}),
    ],
    "empty": [  # empty / not empty ("" is a value, not empty)
        ("s__isnull=", {"r3"}),
        ("s__notnull=", ALL - {"r3"}),
        ("j__isnull=", {"r2", "r3"}),
        ("j__notnull=", ALL - {"r2", "r3"}),
        ("b__isnull=", {"r3", "r7"}),
        ("n__notnull=", ALL - {"r3"}),
        ("d__isnull=", {"r3", "r7"}),
    ],
    "boolean": [
        ("b__exact=true", {"r1", "r4", "r6"}),
        ("b=false", {"r2", "r5"}),
        ("b__exact=yes", {"r1", "r4", "r6"}),
        ("b__exact=0", {"r2", "r5"}),
        ("b__not=true", {"r2", "r3", "r5", "r7"}),
    ],
    "standard columns": [
        ("participant_id__exact=r3", {"r3"}),
        ("participant_id__startswith=r", ALL),
        ("participant_id__iexact=R7", {"r7"}),
    ],
    "combined": [  # ANDed, also twice on one column
        ("n__gte=1&b=true", {"r1", "r6"}),
        ("s__icontains=pfel&n__lt=0", {"r4"}),
        ("n__gt=0&n__lt=100", {"r1", "r2", "r5"}),
        ("s__notnull=&t__contains=off&b=false", {"r5"}),
        ("x__lt=0&x__gt=0", set()),
    ],
}


@pytest.fixture
def filter_data(db):
    xtype = make_type("Filters", "filter_data", FILTER_COLUMNS)
    experiment = make_experiment(xtype, "Known rows")
    make_rows(xtype, experiment, FILTER_ROWS)
    # the same rows in another experiment must never match
    make_rows(xtype, make_experiment(xtype, "Other"), FILTER_ROWS)
    return xtype, experiment


@pytest.mark.parametrize("group", list(FILTER_CASES))
def test_filter_selects_the_known_rows(filter_data, group):
    xtype, experiment = filter_data
    wrong = {}
    for query, expected in FILTER_CASES[group]:
        args = parse_qsl(query, keep_blank_values=True)
        page = read_page(xtype, experiment, [*args, ("_size", "500")])
        got = {r["participant_id"] for r in page.rows}
        q = RowQuery.from_args(grid_columns(xtype), MultiDict(args))
        counted = count_matching(xtype, q, experiment.uuid)
        if got != expected or counted != (len(expected), False):
            wrong[query] = {"rows": sorted(got), "expected": sorted(expected)}
    assert wrong == {}


REFUSED_FILTERS = [
    "n__contains=1",
    "n__exact=1.5",
    "n__gt=2147483648",
    "x__gt=abc",
    "x__gt=nan",
    "x__lt=1e400",
    "s__gt=a",
    "b__gt=1",
    "b__exact=maybe",
    "j__exact=1",
    "j__contains=a",
    "d__lt=03/04/2024",
    "d__gt=2024-01-01T00:00:00.1234567",
    "s__contains=a%00b",
    "n__regex=1",
    "n__=1",
    "n__gt__lt=1",
    "nosuch=1",
]


def test_filter_that_does_not_apply_is_refused_with_a_message(filter_data):
    xtype, _ = filter_data
    accepted = []
    for query in REFUSED_FILTERS:
        try:
            RowQuery.from_args(grid_columns(xtype), MultiDict(parse_qsl(query)))
        except BadQuery as exc:
            assert exc.message and exc.field, query
        else:
            accepted.append(query)
    assert accepted == []


# ----------------------------------------------------------------------
# Through HTTP
# ----------------------------------------------------------------------

HTTP_COLUMNS = (
    *DEFAULT_COLUMNS,
    ColumnDef("correct", "BOOLEAN"),
    ColumnDef("response_at", "DATETIME"),
    ColumnDef("extra", "JSON"),
)


def http_row(i: int, participant: str | None = None) -> Row:
    return {
        "participant_id": participant or f"P{i % 7:02d}",
        "reaction_time": round(0.2 + i / 100, 4),
        "accuracy": None if i % 4 == 0 else i / 100,
        "difficulty_level": i % 5 + 1,  # 12 rows of each level 1..5
        "stimulus_type": "visual" if i % 2 else "audio",
        "correct": i % 3 == 0,
        "response_at": dt.datetime(2025, 3, 1) + dt.timedelta(seconds=3 * i),
        "extra": {"trial": i},
    }


@pytest.fixture
def grid_data(db):
    """60 rows in the experiment under test, 5 rows of a neighbour of the same type."""
    xtype = make_type("Reaction", "reaction_data", HTTP_COLUMNS)
    experiment = make_experiment(xtype, "Main study")
    make_rows(xtype, experiment, [http_row(i) for i in range(60)])
    other = make_experiment(xtype, "Other study")
    make_rows(xtype, other, [http_row(i, "X99") for i in range(5)])
    return SimpleNamespace(
        xtype=xtype,
        experiment=experiment,
        other=other,
        url=f"/experiments/{experiment.uuid}",
        ids=sorted(r["id"] for r in stored_rows(xtype, experiment)),
    )


def grid_of(response) -> Element:
    grid = parse(response.data).find(id="grid")
    assert grid is not None, "no grid on the page"
    return grid


def row_ids(response) -> list[int]:
    """Ids of the rows rendered anywhere on the page, in page order."""
    return [
        int(e.attrs["id"].removeprefix("row-"))
        for e in parse(response.data).iter()
        if e.tag == "tr" and e.attrs.get("id", "").startswith("row-")
    ]


def range_text(response) -> str:
    """The "Rows a–b of n" line (one space before "(in total)", which the template
    currently loses to trim_blocks)."""
    text = grid_of(response).find(id="grid-range").text
    return re.sub(r"\s*\(", " (", text)


def link(response, rel: str) -> str:
    return grid_of(response).find("a", rel=rel).attrs["href"]


def nav_link(response, label: str) -> Element:
    nav = grid_of(response).find("nav")
    return next(a for a in nav.find_all("a") if label in a.text)


def query_of(href: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(href).query, keep_blank_values=True)


def cursor_token(value: Any) -> str:
    raw = orjson.dumps(value)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


BAD_QUERIES: dict[str, list[str]] = {
    "injection": [
        "_sort=x%22)%20OR%201%3D1%20--",  # _sort=x") OR 1=1 --
        "_sort=id%3B%20DROP%20TABLE%20reaction_data",
        "x%22)%20OR%201%3D1__exact=1",  # a filter on the column x") OR 1=1
        "stimulus_type__exact=a%27%20OR%20%271%27%3D%271&nosuch=1",
        "reaction_time__gt=1%3B%20DELETE",
        "_sort=stimulus_type%20COLLATE%20%22C%22",
    ],
    "unknown columns and operators": [
        "nosuch=1",
        "nosuch__gt=1",
        "experiment_uuid__exact=1",  # not a column of the experiment grid
        "reaction_time__regex=1",
        "stimulus_type__gt=a",
        "correct__gt=1",
        "extra__exact=%7B%7D",
        "_sort=extra",  # JSON cannot be sorted
        "_sort=nosuch",
        "_sort=",
        "_hide=nosuch",
    ],
    "malformed values": [
        "reaction_time__gt=abc",
        "difficulty_level__exact=1.5",
        "difficulty_level__gt=99999999999",
        "correct=maybe",
        "response_at__lt=03/04/2024",
        "stimulus_type__contains=a%00b",
    ],
    "size, position and direction": [
        "_size=7",
        "_size=",
        "_size=50.0",
        "_size=%C2%B2",  # a superscript two is a "digit" to str.isdigit
        "_start=-1",
        "_start=x",
        "_start=%C2%B2",
        "_start=1234567890123",
        "_dir=sideways",
        "_dir=",
    ],
    "cursors": [
        "_after=garbage",
        "_before=garbage",
        "_after=" + cursor_token(["abc", 1]),  # not an id
        "_after=" + cursor_token([None, "1"]),
        "_after=" + cursor_token([1, 2]),
        "_after=" + cursor_token({"a": 1}),
        "_after=" + cursor_token([None, 1, 2]),
        "_after=" + cursor_token([None, True]),
        "_after=" + cursor_token([None, 2**64 - 1]),
        "_sort=difficulty_level&_after=" + cursor_token(["1.5", 1]),
        "_sort=stimulus_type&_after=" + cursor_token(["x" * 300, 1]),
        "_sort=response_at&_before=" + cursor_token(["yesterday", 1]),
    ],
}


@pytest.mark.parametrize("group", list(BAD_QUERIES))
def test_bad_grid_address_is_a_400_with_a_message_and_no_rows(client, grid_data, group):
    wrong = {}
    for query in BAD_QUERIES[group]:
        response = client.get(f"{grid_data.url}?{query}")
        grid = parse(response.data).find(id="grid")
        error = grid.find(id="grid-error") if grid is not None else None
        if response.status_code != 400 or error is None or not error.text:
            wrong[query] = f"status {response.status_code}, message {error}"
        elif row_ids(response) or grid.find("table") is not None:
            wrong[query] = "rows shown"
    assert wrong == {}


def test_bad_grid_address_names_the_column_and_offers_a_reset(client, grid_data):
    response = client.get(f"{grid_data.url}?reaction_time__gt=abc")
    error = grid_of(response).find(id="grid-error")
    assert "reaction_time" in error.text and "abc" in error.text
    assert error.find("a").attrs["href"] == grid_data.url


def test_bad_grid_address_in_an_htmx_request_is_a_400_fragment(client, grid_data):
    response = client.get(
        f"{grid_data.url}?_sort=extra", headers={"HX-Request": "true"}
    )
    assert response.status_code == 400
    assert b"<html" not in response.data
    assert "JSON" in grid_of(response).find(id="grid-error").text


def test_grid_shows_the_rows_of_its_experiment_only(client, grid_data):
    response = client.get(grid_data.url)
    assert response.status_code == 200
    assert row_ids(response) == grid_data.ids[:50]
    assert b"X99" not in response.data
    assert range_text(response) == "Rows 1–50 of 60"


def test_grid_is_a_fragment_for_htmx(client, grid_data):
    response = client.get(
        f"{grid_data.url}?_sort=reaction_time", headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert b"<html" not in response.data
    assert parse(response.data).find(id="grid") is not None
    assert len(row_ids(response)) == 50
    assert "HX-Request" in response.headers.get("Vary", "")


def test_grid_history_restore_gets_the_full_page(client, grid_data):
    response = client.get(
        grid_data.url,
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    )
    assert b"<html" in response.data


def test_grid_pages_through_next_and_previous_links(client, grid_data):
    first = client.get(f"{grid_data.url}?_size=25")
    assert range_text(first) == "Rows 1–25 of 60"
    second = client.get(link(first, "next"))
    assert range_text(second) == "Rows 26–50 of 60"
    assert row_ids(second) == grid_data.ids[25:50]
    third = client.get(link(second, "next"))
    assert range_text(third) == "Rows 51–60 of 60"
    assert row_ids(third) == grid_data.ids[50:]
    assert "disabled" in grid_of(third).find("a", rel="next").classes()
    back = client.get(link(third, "prev"))
    assert range_text(back) == "Rows 26–50 of 60"
    assert row_ids(back) == grid_data.ids[25:50]
    back = client.get(link(back, "prev"))
    assert range_text(back) == "Rows 1–25 of 60"
    assert "disabled" in grid_of(back).find("a", rel="prev").classes()


def test_last_page_shows_its_range_and_pages_back(client, grid_data):
    last = client.get(nav_link(client.get(grid_data.url), "Last").attrs["href"])
    assert last.status_code == 200
    assert range_text(last) == "Rows 11–60 of 60"
    assert row_ids(last) == grid_data.ids[10:]
    previous = client.get(link(last, "prev"))
    assert range_text(previous) == "Rows 1–10 of 60"
    assert row_ids(previous) == grid_data.ids[:10]


def test_filtered_grid_counts_the_matching_rows(client, grid_data):
    response = client.get(f"{grid_data.url}?difficulty_level__gte=4")
    assert range_text(response) == "Rows 1–24 of 24 matching (60 in total)"
    rows = stored_rows(grid_data.xtype, grid_data.experiment)
    expected = sorted(r["id"] for r in rows if r["difficulty_level"] >= 4)
    assert row_ids(response) == expected


def test_filter_matching_nothing_shows_the_empty_state(client, grid_data):
    response = client.get(f"{grid_data.url}?stimulus_type__exact=smell")
    assert response.status_code == 200
    assert row_ids(response) == []
    assert "No rows match these filters (60 in total)." in range_text(response)


@pytest.fixture
def small_cap(monkeypatch):
    """COUNT_CAP = 5 (count_matching's default is bound when it is defined)."""
    monkeypatch.setattr(queries, "COUNT_CAP", 5)
    monkeypatch.setattr(
        queries, "count_matching", partial(queries.count_matching, cap=5)
    )


def test_filtered_count_above_the_cap_says_more_than(client, grid_data, small_cap):
    response = client.get(f"{grid_data.url}?stimulus_type=visual&_size=25")
    assert range_text(response).startswith("Rows 1–25 of more than 5 matching")
    exact = next(a for a in grid_of(response).find_all("a") if "exactly" in a.text)
    assert ("_count", "exact") in query_of(exact.attrs["href"])
    counted = client.get(exact.attrs["href"])
    assert range_text(counted) == "Rows 1–25 of 30 matching (60 in total)"


def test_filtered_count_at_the_cap_is_exact(client, grid_data, small_cap):
    response = client.get(f"{grid_data.url}?difficulty_level=1&participant_id=P00")
    rows = stored_rows(grid_data.xtype, grid_data.experiment)
    n = sum(r["difficulty_level"] == 1 and r["participant_id"] == "P00" for r in rows)
    assert n <= 5
    assert range_text(response) == f"Rows 1–{n} of {n} matching (60 in total)"


def test_last_page_of_a_capped_filter_counts_exactly(client, grid_data, small_cap):
    response = client.get(f"{grid_data.url}?stimulus_type=visual&_size=25&_last=1")
    assert range_text(response) == "Rows 6–30 of 30 matching (60 in total)"
    visual = [
        r["id"]
        for r in stored_rows(grid_data.xtype, grid_data.experiment)
        if r["stimulus_type"] == "visual"
    ]
    assert row_ids(response) == sorted(visual)[5:]


def test_count_matching_is_exact_up_to_the_cap(filter_data):
    xtype, experiment = filter_data
    q = RowQuery.from_args(grid_columns(xtype), MultiDict([("n__notnull", "")]))
    assert count_matching(xtype, q, experiment.uuid, cap=6) == (6, False)
    assert count_matching(xtype, q, experiment.uuid, cap=5) == (5, True)
    assert queries.count_all_matching(xtype, q, experiment.uuid) == 6


def test_links_carry_the_view_state(client, grid_data):
    state = [
        ("stimulus_type__contains", "vis"),
        ("accuracy__notnull", ""),
        ("_sort", "reaction_time"),
        ("_dir", "desc"),
        ("_size", "25"),
        ("_hide", "accuracy"),
        ("_hide", "extra"),
    ]
    response = client.get(grid_data.url, query_string=state)
    assert response.status_code == 200
    kept = set(state)
    nxt = query_of(link(response, "next"))
    assert kept <= set(nxt)
    assert "_after" in dict(nxt)
    assert kept <= set(query_of(nav_link(response, "Last").attrs["href"]))
    # sort links keep filters, size and hidden columns, and start again at the top
    sort_link = next(
        a
        for a in grid_of(response).find_all("a", class_="sort-link")
        if a.text.startswith("difficulty_level")
    )
    sorted_by = query_of(sort_link.attrs["href"])
    assert ("_sort", "difficulty_level") in sorted_by
    assert set(state[:2] + state[4:]) <= set(sorted_by)
    assert "_after" not in dict(sorted_by)
    # the page-size, add-filter and column forms keep the state in hidden inputs
    view_forms = grid_of(response).find_all("form", action=grid_data.url)
    assert len(view_forms) >= 3
    for form in view_forms:
        hidden = {
            (e.attrs["name"], e.attrs["value"])
            for e in form.iter()
            if e.tag == "input" and e.attrs.get("type") == "hidden"
        }
        assert set(state[:2]) <= hidden
    # following the link gives page 2 of the same view
    second = client.get(link(response, "next"))
    assert range_text(second).startswith("Rows 26–")
    rows = stored_rows(grid_data.xtype, grid_data.experiment)
    chosen = [r for r in rows if "vis" in r["stimulus_type"] and r["accuracy"]]
    chosen.sort(key=lambda r: (r["reaction_time"], r["id"]), reverse=True)
    assert row_ids(second) == [r["id"] for r in chosen][25:50]


def test_filter_chip_removes_only_its_filter(client, grid_data):
    response = client.get(
        grid_data.url,
        query_string=[("stimulus_type", "visual"), ("correct", "true")],
    )
    chips = grid_of(response).find("ul", **{"aria-label": "Active filters"})
    remove = next(
        a for a in chips.find_all("a") if "correct" in a.attrs.get("aria-label", "")
    )
    assert query_of(remove.attrs["href"]) == [("stimulus_type__exact", "visual")]


def test_add_filter_form_redirects_to_the_canonical_address(client, grid_data):
    response = client.get(
        grid_data.url,
        query_string=[
            ("_sort", "reaction_time"),
            ("_after", "abc"),
            ("_fcol", "difficulty_level"),
            ("_fop", "gte"),
            ("_fval", "3"),
        ],
    )
    assert response.status_code == 303
    location = response.headers["Location"]
    assert urlsplit(location).path == grid_data.url
    assert query_of(location) == [
        ("_sort", "reaction_time"),
        ("difficulty_level__gte", "3"),
    ]
    page = client.get(location)
    assert page.status_code == 200
    assert range_text(page).startswith("Rows 1–36 of 36 matching")


def test_add_filter_form_with_a_bad_value_shows_the_message(client, grid_data):
    response = client.get(
        grid_data.url,
        query_string={"_fcol": "reaction_time", "_fop": "gt", "_fval": "abc"},
    )
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    assert page.status_code == 400
    assert "abc" in grid_of(page).find(id="grid-error").text


def test_add_filter_form_with_a_hostile_column_is_refused(client, grid_data):
    response = client.get(
        grid_data.url,
        query_string={"_fcol": 'x") OR 1=1 --', "_fop": "exact", "_fval": "1"},
    )
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    assert page.status_code == 400
    assert row_ids(page) == []


def test_hidden_columns_are_not_rendered(client, grid_data):
    response = client.get(
        grid_data.url, query_string=[("_hide", "accuracy"), ("_hide", "extra")]
    )
    grid = grid_of(response)
    headers = [th.text for th in grid.find("thead").find_all("th")]
    assert "accuracy" not in headers and "extra" not in headers
    assert "reaction_time" in headers
    first = grid.find("tbody").find("tr")
    assert len(first.find_all("td")) == len(headers)
    assert "Columns (2 hidden)" in grid.text


def test_sorting_by_a_column_orders_the_rows(client, grid_data):
    response = client.get(
        grid_data.url, query_string={"_sort": "accuracy", "_dir": "desc"}
    )
    rows = stored_rows(grid_data.xtype, grid_data.experiment)
    expected = python_order(rows, "accuracy", True, lambda r: True)
    assert row_ids(response) == expected[:50]
    th = grid_of(response).find("th", **{"aria-sort": "descending"})
    assert th.text.startswith("accuracy")


def test_json_column_header_is_not_a_sort_link(client, grid_data):
    grid = grid_of(client.get(grid_data.url))
    names = [a.text for a in grid.find_all("a", class_="sort-link")]
    assert "extra" not in names and "reaction_time" in names


# ----------------------------------------------------------------------
# Type grid and participant view
# ----------------------------------------------------------------------


def test_type_grid_shows_every_experiment_with_its_uuid(client, grid_data):
    xtype = grid_data.xtype
    response = client.get(f"/types/{xtype.id}/rows")
    assert response.status_code == 200
    grid = grid_of(response)
    headers = [th.text for th in grid.find("thead").find_all("th")]
    assert "experiment_uuid" in headers
    assert range_text(response) == "Rows 1–50 of 65"
    last = client.get(f"/types/{xtype.id}/rows", query_string={"_last": "1"})
    links = {a.attrs["href"] for a in grid_of(last).find_all("a")}
    assert f"/experiments/{grid_data.other.uuid}" in links
    assert f"/experiments/{grid_data.experiment.uuid}" in links
    assert len(row_ids(last)) == 50


def test_type_grid_filters_by_experiment(client, grid_data):
    response = client.get(
        f"/types/{grid_data.xtype.id}/rows",
        query_string={"experiment_uuid": str(grid_data.other.uuid)},
    )
    assert response.status_code == 200
    assert len(row_ids(response)) == 5
    assert range_text(response) == "Rows 1–5 of 5 matching (65 in total)"
    bad = client.get(
        f"/types/{grid_data.xtype.id}/rows", query_string={"experiment_uuid": "nope"}
    )
    assert bad.status_code == 400


def test_type_grid_sorts_by_experiment_and_pages(client, grid_data):
    url = f"/types/{grid_data.xtype.id}/rows?_sort=experiment_uuid&_size=25"
    seen: list[int] = []
    response = client.get(url)
    for _ in range(5):
        seen += row_ids(response)
        if "disabled" in grid_of(response).find("a", rel="next").classes():
            break
        response = client.get(link(response, "next"))
    assert len(seen) == 65 and len(set(seen)) == 65


def test_unknown_type_grid_is_404(client, db):
    assert client.get("/types/999999/rows").status_code == 404


def test_participant_page_lists_rows_across_types(client, grid_data):
    survey = make_type("Survey", "survey_data", [ColumnDef("answer", "STRING")])
    first = make_experiment(survey, "Survey one")
    make_rows(survey, first, [{"participant_id": "P03", "answer": "yes"}] * 2)
    make_rows(survey, first, [{"participant_id": "P04", "answer": "no"}])
    make_experiment(
        make_type("Unused", "unused_data", [ColumnDef("v", "INTEGER")]), "No rows"
    )
    response = client.get("/participants/P03")
    assert response.status_code == 200
    page = parse(response.data)
    sections = page.find_all("section")
    titles = [s.find("h2").text for s in sections]
    assert len(sections) == 2
    assert titles[0].startswith("Reaction") and titles[1].startswith("Survey")
    reaction = sum(1 for i in range(60) if i % 7 == 3)
    assert [len(s.find("tbody").find_all("tr")) for s in sections] == [reaction, 2]
    for section in sections:
        for tr in section.find("tbody").find_all("tr"):
            assert "P03" in tr.text
    assert "no" not in [td.text for td in sections[1].find_all("td")]


def test_participant_ids_in_the_grid_link_to_the_participant(client, db):
    xtype = make_type("Reaction", "reaction_data", HTTP_COLUMNS)
    experiment = make_experiment(xtype, "Odd ids")
    make_rows(xtype, experiment, [http_row(1, "lab/P 1%")])
    grid = grid_of(client.get(f"/experiments/{experiment.uuid}"))
    href = next(
        a.attrs["href"]
        for a in grid.find_all("a")
        if a.attrs["href"].startswith("/participants/")
    )
    response = client.get(href)
    assert response.status_code == 200
    assert "lab/P 1%" in parse(response.data).find("h1").text
    assert len(parse(response.data).find_all("section")) == 1


def test_unknown_participant_shows_the_empty_state(client, grid_data):
    response = client.get("/participants/nobody")
    assert response.status_code == 200
    assert "No rows for this participant" in parse(response.data).text
    assert parse(response.data).find("table") is None


def test_participant_id_longer_than_the_column_is_a_400(client, db):
    assert client.get("/participants/" + "p" * 101).status_code == 400


# ----------------------------------------------------------------------
# Identifiers never come from the address
# ----------------------------------------------------------------------


def test_injection_in_sort_and_filter_leaves_the_table_intact(client, grid_data):
    for query in BAD_QUERIES["injection"]:
        assert client.get(f"{grid_data.url}?{query}").status_code == 400
    assert len(stored_rows(grid_data.xtype, grid_data.experiment)) == 60
    assert re.fullmatch(r"Rows 1–50 of 60", range_text(client.get(grid_data.url)))

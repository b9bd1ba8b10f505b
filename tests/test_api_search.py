"""The search endpoints (api-v1.md §10), on both databases.

Totals count every match, pages are cut in the database in a total order (created_at
descending, then id or uuid), text matches ignore case (beyond A–Z too) with `%`, `_`
and `\\` literal, tags match exactly, and the data search pages rows across
experiments of different types. Creation times are set in the database, so the
expected order never depends on the clock.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from tests.api_helpers import Api
from tests.api_helpers import call
from tests.api_helpers import detail
from tests.api_helpers import problems
from wave_web import search
from wave_web.extensions import db as _db
from wave_web.models import ApiKey
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import Tag

BY_TAGS = "search/experiments/by-tags"
TYPES = "search/experiment-types/by-description"
TAGS = "search/tags/by-name"
BY_TYPE = "search/experiments/by-description-and-type"
ADVANCED = "search/experiments/advanced"
DATA = "search/experiment-data/by-tags"
ROUTES = (BY_TAGS, TYPES, TAGS, BY_TYPE, ADVANCED, DATA)
VALID_BODY = {
    BY_TAGS: {"tags": ["cog"]},
    TYPES: {"search_text": "x"},
    TAGS: {"search_text": "x"},
    BY_TYPE: {"search_text": "x", "experiment_type_id": 1},
    ADVANCED: {},
    DATA: {"tags": ["cog"]},
}
RESULT_KEY = {
    BY_TAGS: "experiments",
    TYPES: "experiment_types",
    TAGS: "tags",
    BY_TYPE: "experiments",
    ADVANCED: "experiments",
}
DAY = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def api(app, client):
    return Api(app, client)


def at(hours: float) -> dt.datetime:
    return DAY + dt.timedelta(hours=hours)


def set_created(app, model, key, when: dt.datetime) -> None:
    """Give a tag, type or experiment a creation time of our choosing."""
    column = model.uuid if model is Experiment else model.id
    key = uuid.UUID(key) if model is Experiment else key
    with app.app_context():
        _db.session.execute(
            sa.update(model).where(column == key).values(created_at=when)
        )
        _db.session.commit()


def set_row_created(app, table_name: str, row_id: int, when: dt.datetime) -> None:
    """A data row's creation time (naive UTC, as data tables keep it)."""
    with app.app_context():
        table = sa.Table(table_name, sa.MetaData(), autoload_with=_db.engine)
        naive = when.astimezone(dt.UTC).replace(tzinfo=None)
        with _db.engine.begin() as conn:
            conn.execute(
                sa.update(table).where(table.c.id == row_id).values(created_at=naive)
            )


def uuids(answer: dict) -> list[str]:
    return [e["uuid"] for e in answer["experiments"]]


def tagged(api, app, tags_of: list[list[str]]) -> list[str]:
    """Experiments with these tags, the first one the newest; their uuids in order."""
    xtype = api.make_type("Stroop", "stroop", {"rt": "FLOAT"})
    for name in sorted({t for tags in tags_of for t in tags}):
        api.make_tag(name)
    made = []
    for n, tags in enumerate(tags_of):
        e = api.make_experiment(xtype["id"], f"experiment {n}", tags)
        set_created(app, Experiment, e["uuid"], at(-n))
        made.append(e["uuid"])
    return made


# ----------------------------------------------------------------------
# Experiments by tags
# ----------------------------------------------------------------------


def test_by_tags_match_all_needs_every_tag(api, app):
    e = tagged(api, app, [["a"], ["a", "b"], ["b"], []])
    answer = api.ok("POST", BY_TAGS, {"tags": ["a", "b"]})
    assert uuids(answer) == [e[1]]
    assert answer["total"] == 1
    assert answer["pagination"] == {"skip": 0, "limit": 100, "total": 1}
    shown = answer["experiments"][0]
    assert shown["tags"] == ["a", "b"]
    assert shown["experiment_type"]["table_name"] == "stroop"


def test_by_tags_match_any_needs_one_tag_newest_first(api, app):
    e = tagged(api, app, [["a"], ["a", "b"], ["b"], []])
    answer = api.ok("POST", BY_TAGS, {"tags": ["b", "a"], "match_all": False})
    assert uuids(answer) == [e[0], e[1], e[2]]
    assert answer["total"] == 3


def test_by_tags_compares_names_exactly(api, app):
    e = tagged(api, app, [["cog"], ["cognition"]])
    assert uuids(api.ok("POST", BY_TAGS, {"tags": ["cog"]})) == [e[0]]
    for other in ("Cog", "co", "cog "):
        answer = api.ok("POST", BY_TAGS, {"tags": [other]})
        assert answer["total"] == 0 and answer["experiments"] == []


def test_by_tags_unknown_or_too_long_tag_gives_empty_result(api, app):
    e = tagged(api, app, [["a"]])
    too_long = "x" * 51
    assert api.ok("POST", BY_TAGS, {"tags": ["nope"]})["total"] == 0
    assert api.ok("POST", BY_TAGS, {"tags": ["a", too_long]})["total"] == 0
    any_of = {"tags": [too_long, "a"], "match_all": False}
    assert uuids(api.ok("POST", BY_TAGS, any_of)) == [e[0]]


def test_by_tags_many_tags_in_one_body_answer_normally(api, app):
    e = tagged(api, app, [["a", "b"]])
    many = [f"t{n}" for n in range(3000)]
    assert api.ok("POST", BY_TAGS, {"tags": many})["total"] == 0
    answer = api.ok("POST", BY_TAGS, {"tags": [*many, "b"], "match_all": False})
    assert uuids(answer) == e
    repeated = {"tags": ["a", "b"] * 1500, "match_all": True}
    assert uuids(api.ok("POST", BY_TAGS, repeated)) == e


def test_search_total_counts_every_match_beyond_the_page(api, app):
    e = tagged(api, app, [["a"]] * 5)
    first = api.ok("POST", BY_TAGS, {"tags": ["a"], "limit": 2})
    assert uuids(first) == e[:2]
    assert first["total"] == 5
    assert first["pagination"] == {"skip": 0, "limit": 2, "total": 5}
    last = api.ok("POST", BY_TAGS, {"tags": ["a"], "skip": 4, "limit": 2})
    assert uuids(last) == e[4:] and last["total"] == 5
    beyond = api.ok("POST", BY_TAGS, {"tags": ["a"], "skip": 2**63})
    assert beyond["experiments"] == [] and beyond["total"] == 5
    assert beyond["pagination"]["skip"] == 2**63


def test_search_pages_have_a_total_order_when_times_are_equal(api, app):
    e = tagged(api, app, [["a"]] * 6)
    for made in e:
        set_created(app, Experiment, made, DAY)
    pages = [
        uuids(api.ok("POST", BY_TAGS, {"tags": ["a"], "skip": skip, "limit": 2}))
        for skip in (0, 2, 4)
    ]
    assert [u for page in pages for u in page] == sorted(e)


# ----------------------------------------------------------------------
# Text searches
# ----------------------------------------------------------------------


def make_named(api, app, route: str, texts: list[str]) -> list[str]:
    """Objects found by `route` whose searched text is each of `texts`, newest
    first; their names (tags, types) or uuids (experiments)."""
    made = []
    if route == TAGS:
        for n, text in enumerate(texts):
            tag = api.make_tag(text)
            set_created(app, Tag, tag["id"], at(-n))
            made.append(tag["name"])
    elif route == TYPES:
        for n, text in enumerate(texts):
            xtype = api.make_type(text, f"type_{n}", {})
            set_created(app, ExperimentType, xtype["id"], at(-n))
            made.append(xtype["name"])
    else:
        xtype = api.make_type("Stroop", "stroop", {})
        for n, text in enumerate(texts):
            e = api.make_experiment(xtype["id"], text)
            set_created(app, Experiment, e["uuid"], at(-n))
            made.append(e["uuid"])
        return made
    return made


def found(api, route: str, text: str, **body) -> list[str]:
    sent = {"search_text": text, **body}
    if route == BY_TYPE:
        xtype = api.ok("GET", "experiment-types/?limit=1000")
        sent["experiment_type_id"] = next(
            t["id"] for t in xtype if t["name"] == "Stroop"
        )
    answer = api.ok("POST", route, sent)
    items = answer[RESULT_KEY[route]]
    assert answer["total"] >= len(items)
    return [i["uuid"] if "uuid" in i else i["name"] for i in items]


TEXT_ROUTES = (TAGS, TYPES, BY_TYPE, ADVANCED)


@pytest.mark.parametrize("route", TEXT_ROUTES)
def test_text_search_treats_percent_underscore_and_backslash_literally(api, app, route):
    m = make_named(
        api, app, route, ["100% sure", "100 sure", "a_b", "axb", "back\\slash", "bs"]
    )
    assert found(api, route, "%") == [m[0]]
    assert found(api, route, "0% s") == [m[0]]
    assert found(api, route, "_") == [m[2]]
    assert found(api, route, "a_b") == [m[2]]
    assert found(api, route, "\\") == [m[4]]
    assert found(api, route, "zzz") == []


@pytest.mark.parametrize("route", TEXT_ROUTES)
def test_text_search_ignores_case_beyond_ascii_on_both_databases(api, app, route):
    m = make_named(api, app, route, ["École d'été", "ECOLE", "Straße", "other"])
    assert found(api, route, "école") == [m[0]]
    assert found(api, route, "ÉCOLE") == [m[0]]
    assert found(api, route, "ÉTÉ") == [m[0]]
    assert found(api, route, "ecole") == [m[1]]
    assert found(api, route, "STRAẞE") == [m[2]]  # capital sharp s
    assert found(api, route, "O") == [m[0], m[1], m[3]]


def test_tag_search_matches_name_or_description(api, app):
    api.make_tag("alpha", "first Letter")
    api.make_tag("beta", None)
    api.make_tag("letters", "more")
    answer = api.ok("POST", TAGS, {"search_text": "LETTER"})
    assert sorted(t["name"] for t in answer["tags"]) == ["alpha", "letters"]
    assert answer["total"] == 2
    assert set(answer["tags"][0]) == {
        "name",
        "description",
        "id",
        "created_at",
        "updated_at",
    }


def test_type_search_matches_name_or_description_with_real_total(api, app):
    for n in range(4):
        xtype = api.make_type(f"Task {n}", f"task_{n}", {"rt": "FLOAT"})
        set_created(app, ExperimentType, xtype["id"], at(-n))
    api.make_type("Other", "other", {}, description="a TASK described")
    page = api.ok("POST", TYPES, {"search_text": "task", "skip": 1, "limit": 2})
    assert page["total"] == 5
    assert [t["name"] for t in page["experiment_types"]] == ["Task 0", "Task 1"]
    assert page["experiment_types"][0]["schema_definition"] == {"rt": "FLOAT"}


@pytest.mark.parametrize(
    ("route", "body"),
    [
        (TAGS, {"search_text": "a\x00b"}),
        (ADVANCED, {"search_text": "\x00"}),
        (BY_TAGS, {"tags": ["cog\x00"]}),
        (DATA, {"tags": ["a", "\x00"], "match_all": False}),
    ],
)
def test_search_text_or_tag_with_nul_character_is_refused(api, route, body):
    assert "NUL character" in detail(api.post(route, body), 400)


# ----------------------------------------------------------------------
# Description within a type, advanced
# ----------------------------------------------------------------------


def two_types(api, app) -> tuple[dict, dict, list[str]]:
    """Types A and B; experiments (newest first): A "pilot one", B "pilot two",
    A "main"; tags on them: [x], [x, y], [y]."""
    for tag in ("x", "y"):
        api.make_tag(tag)
    a = api.make_type("A", "type_a", {"rt": "FLOAT"})
    b = api.make_type("B", "type_b", {"ok": "BOOLEAN"})
    made = []
    for n, (xtype, text, tags) in enumerate(
        [(a, "pilot one", ["x"]), (b, "pilot two", ["x", "y"]), (a, "main", ["y"])]
    ):
        e = api.make_experiment(xtype["id"], text, tags)
        set_created(app, Experiment, e["uuid"], at(-n))
        made.append(e["uuid"])
    return a, b, made


def test_description_and_type_search_keeps_to_the_type(api, app):
    a, b, e = two_types(api, app)
    body = {"search_text": "PILOT", "experiment_type_id": a["id"]}
    answer = api.ok("POST", BY_TYPE, body)
    assert uuids(answer) == [e[0]] and answer["total"] == 1
    body["experiment_type_id"] = b["id"]
    assert uuids(api.ok("POST", BY_TYPE, body)) == [e[1]]


@pytest.mark.parametrize("type_id", [0, -1, 9999, 2**31, 2**40, 2**63 - 1, 2**64 - 1])
def test_description_and_type_search_unknown_type_gives_empty_result(api, app, type_id):
    two_types(api, app)
    body = {"search_text": "pilot", "experiment_type_id": type_id}
    answer = api.ok("POST", BY_TYPE, body)
    assert answer == {
        "experiments": [],
        "total": 0,
        "pagination": {"skip": 0, "limit": 100, "total": 0},
    }


def test_advanced_search_with_empty_body_matches_every_experiment(api, app):
    _a, _b, e = two_types(api, app)
    answer = api.ok("POST", ADVANCED, {})
    assert uuids(answer) == e and answer["total"] == 3
    for no_filter in ({"experiment_type_id": 0}, {"experiment_type_id": None}):
        assert uuids(api.ok("POST", ADVANCED, no_filter)) == e
    empty = {"tags": [], "search_text": ""}
    assert uuids(api.ok("POST", ADVANCED, empty)) == e


def test_advanced_search_combines_every_criterion(api, app):
    a, b, e = two_types(api, app)
    assert uuids(api.ok("POST", ADVANCED, {"search_text": "pilot"})) == e[:2]
    assert uuids(api.ok("POST", ADVANCED, {"tags": ["x", "y"]})) == [e[1]]
    any_tag = {"tags": ["x", "y"], "match_all_tags": False}
    assert uuids(api.ok("POST", ADVANCED, any_tag)) == e
    combined = {"tags": ["y"], "experiment_type_id": a["id"]}
    assert uuids(api.ok("POST", ADVANCED, combined)) == [e[2]]
    text_and_type = {"search_text": "pilot", "experiment_type_id": b["id"]}
    assert uuids(api.ok("POST", ADVANCED, text_and_type)) == [e[1]]
    for unknown in (9999, 2**40, 2**64 - 1):
        answer = api.ok("POST", ADVANCED, {"experiment_type_id": unknown})
        assert answer["total"] == 0


# ----------------------------------------------------------------------
# Date bounds
# ----------------------------------------------------------------------


def test_date_bounds_are_inclusive_naive_as_utc_offsets_converted(api, app):
    e = tagged(api, app, [["a"], ["a"], ["a"]])  # at 12:00, 11:00, 10:00 UTC
    body = {"tags": ["a"], "created_before": "2024-03-01T11:00:00"}
    assert uuids(api.ok("POST", BY_TAGS, body)) == e[1:]
    body = {"tags": ["a"], "created_after": "2024-03-01T13:00:00+02:00"}
    assert uuids(api.ok("POST", BY_TAGS, body)) == e[:2]
    body = {
        "tags": ["a"],
        "created_after": "2024-03-01T11:00:00Z",
        "created_before": "2024-03-01T06:00:00-05:00",
    }
    assert uuids(api.ok("POST", BY_TAGS, body)) == [e[1]]
    body = {"tags": ["a"], "created_after": int(at(-1).timestamp())}
    assert uuids(api.ok("POST", BY_TAGS, body)) == e[:2]


def test_date_bounds_at_the_end_of_the_calendar_answer_normally(api, app):
    e = tagged(api, app, [["a"]])
    late = {"tags": ["a"], "created_before": "9999-12-31T23:00:00-05:00"}
    assert uuids(api.ok("POST", BY_TAGS, late)) == e
    early = {"tags": ["a"], "created_after": "0001-01-01T00:30:00+01:00"}
    assert uuids(api.ok("POST", BY_TAGS, early)) == e
    assert api.ok("POST", DATA, late)["total_experiments"] == 1


def test_date_bounds_apply_to_tags_and_types(api, app):
    tag = api.make_tag("old tag")
    set_created(app, Tag, tag["id"], at(-48))
    api.make_tag("new tag")
    bound = {"search_text": "tag", "created_after": at(-1).isoformat()}
    assert [t["name"] for t in api.ok("POST", TAGS, bound)["tags"]] == ["new tag"]
    xtype = api.make_type("Old type", "old_type", {})
    set_created(app, ExperimentType, xtype["id"], at(-48))
    bound = {"search_text": "type", "created_before": at(-1).isoformat()}
    answer = api.ok("POST", TYPES, bound)
    assert [t["name"] for t in answer["experiment_types"]] == ["Old type"]


# ----------------------------------------------------------------------
# Experiment data by tags
# ----------------------------------------------------------------------


@pytest.fixture
def data_setup(api, app):
    """Two experiments of two types tagged "cog": E1 (newer, type A, 3 rows) and
    E2 (older, type B, 2 rows), plus E3 (type A, tag "other", 1 row)."""
    for tag in ("cog", "other"):
        api.make_tag(tag)
    a = api.make_type("Type A", "type_a", {"rt": "FLOAT", "word": "STRING"})
    b = api.make_type("Type B", "type_b", {"ok": "BOOLEAN"})
    e1 = api.make_experiment(a["id"], "first", ["cog"])["uuid"]
    e2 = api.make_experiment(b["id"], "second", ["cog", "other"])["uuid"]
    e3 = api.make_experiment(a["id"], "third", ["other"])["uuid"]
    for e, hours in ((e1, 0), (e2, -1), (e3, -2)):
        set_created(app, Experiment, e, at(hours))
    rows = {
        e1: [api.post_row(e1, f"A{n}", {"rt": n, "word": "w"})["id"] for n in range(3)],
        e2: [api.post_row(e2, f"B{n}", {"ok": n == 0})["id"] for n in range(2)],
        e3: [api.post_row(e3, "C0", {"rt": 9})["id"]],
    }
    for n, row in enumerate(rows[e1]):
        set_row_created(app, "type_a", row, at(n))
    for n, row in enumerate(rows[e2]):
        set_row_created(app, "type_b", row, at(n))
    return {"types": (a, b), "experiments": (e1, e2, e3), "rows": rows}


def row_keys(answer: dict) -> list[tuple[str, int]]:
    return [
        (r["experiment_metadata"]["experiment_description"], r["id"])
        for r in answer["data"]
    ]


def test_data_by_tags_lists_rows_experiment_by_experiment(api, data_setup):
    e1, e2, _e3 = data_setup["experiments"]
    r = data_setup["rows"]
    answer = api.ok("POST", DATA, {"tags": ["cog"]})
    # newest experiment first, then newest row first
    assert row_keys(answer) == [
        ("first", r[e1][2]),
        ("first", r[e1][1]),
        ("first", r[e1][0]),
        ("second", r[e2][1]),
        ("second", r[e2][0]),
    ]
    assert answer["total_rows"] == 5
    assert answer["total_experiments"] == 2
    assert answer["pagination"] == {"skip": 0, "limit": 100, "total": 5}
    assert list(answer["experiment_info"]) == [e1, e2]
    assert answer["experiment_info"][e2] == {
        "description": "second",
        "type_name": "Type B",
        "tags": ["cog", "other"],
        "data_count": 2,
    }
    first = answer["data"][0]
    assert list(first)[:5] == [
        "id",
        "experiment_uuid",
        "participant_id",
        "created_at",
        "updated_at",
    ]
    assert (
        first["rt"] == 2.0 and first["word"] == "w" and first["experiment_uuid"] == e1
    )
    assert first["experiment_metadata"] == {
        "experiment_uuid": e1,
        "experiment_description": "first",
        "experiment_type_name": "Type A",
        "experiment_tags": ["cog"],
    }
    assert answer["data"][3]["ok"] is False and "rt" not in answer["data"][3]


def test_data_by_tags_pages_across_experiments_of_two_types(api, data_setup):
    e1, e2, _e3 = data_setup["experiments"]
    r = data_setup["rows"]
    everything = row_keys(api.ok("POST", DATA, {"tags": ["cog"]}))
    pages = []
    for skip in range(0, 6, 2):
        page = api.ok("POST", DATA, {"tags": ["cog"], "skip": skip, "limit": 2})
        assert page["total_rows"] == 5 and page["total_experiments"] == 2
        assert page["pagination"] == {"skip": skip, "limit": 2, "total": 5}
        pages.append(row_keys(page))
    assert pages[1] == [("first", r[e1][0]), ("second", r[e2][1])]  # spans both
    assert [k for page in pages for k in page] == everything
    beyond = api.ok("POST", DATA, {"tags": ["cog"], "skip": 2**63})
    assert beyond["data"] == [] and beyond["total_rows"] == 5
    assert list(beyond["experiment_info"]) == [e1, e2]


def test_data_by_tags_match_any_and_all(api, data_setup):
    e1, e2, e3 = data_setup["experiments"]
    any_of = api.ok("POST", DATA, {"tags": ["cog", "other"], "match_all": False})
    assert list(any_of["experiment_info"]) == [e1, e2, e3]
    assert any_of["total_rows"] == 6
    all_of = api.ok("POST", DATA, {"tags": ["cog", "other"]})
    assert list(all_of["experiment_info"]) == [e2]
    assert [d["participant_id"] for d in all_of["data"]] == ["B1", "B0"]
    none = api.ok("POST", DATA, {"tags": ["nope"]})
    assert none["data"] == [] and none["experiment_info"] == {}
    assert none["total_rows"] == 0 and none["total_experiments"] == 0


def test_data_by_tags_date_bounds_apply_to_experiments_and_rows(api, data_setup):
    e1, e2, _e3 = data_setup["experiments"]
    r = data_setup["rows"]
    # rows of E1 at +0, +1, +2 h; rows of E2 at +0, +1 h; E1 at 0 h, E2 at -1 h
    body = {"tags": ["cog"], "created_before": at(1).isoformat()}
    answer = api.ok("POST", DATA, body)
    assert row_keys(answer) == [
        ("first", r[e1][1]),
        ("first", r[e1][0]),
        ("second", r[e2][1]),
        ("second", r[e2][0]),
    ]
    assert answer["experiment_info"][e1]["data_count"] == 2
    assert answer["experiment_info"][e2]["data_count"] == 2
    assert answer["total_rows"] == 4
    page = api.ok("POST", DATA, {**body, "skip": 1, "limit": 2})
    assert row_keys(page) == [("first", r[e1][0]), ("second", r[e2][1])]
    # E2 was created before the lower bound: neither it nor its rows count
    after = {"tags": ["cog"], "created_after": at(0).isoformat()}
    answer = api.ok("POST", DATA, after)
    assert list(answer["experiment_info"]) == [e1]
    assert answer["total_rows"] == 3 and answer["total_experiments"] == 1


def test_data_by_tags_default_limit_is_one_hundred(api, data_setup):
    answer = api.ok("POST", DATA, {"tags": ["cog"]})
    assert answer["pagination"]["limit"] == 100


# ----------------------------------------------------------------------
# Request shapes, keys, failures
# ----------------------------------------------------------------------


@pytest.mark.parametrize("route", [BY_TAGS, DATA])
def test_empty_tag_list_is_a_422(api, route):
    assert problems(api.post(route, {"tags": []})) == [("too_short", ("body", "tags"))]
    assert problems(api.post(route, {})) == [("missing", ("body", "tags"))]


@pytest.mark.parametrize("route", [TYPES, TAGS, BY_TYPE])
def test_missing_or_empty_search_text_is_a_422(api, route):
    body = dict(VALID_BODY[route])
    del body["search_text"]
    assert ("missing", ("body", "search_text")) in problems(api.post(route, body))
    body["search_text"] = ""
    assert ("string_too_short", ("body", "search_text")) in problems(
        api.post(route, body)
    )


def test_missing_experiment_type_id_is_a_422(api):
    answer = api.post(BY_TYPE, {"search_text": "x"})
    assert problems(answer) == [("missing", ("body", "experiment_type_id"))]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("limit", 0, "greater_than_equal"),
        ("limit", 1001, "less_than_equal"),
        ("skip", -1, "greater_than_equal"),
        ("created_after", "soon", "datetime"),
    ],
)
def test_out_of_range_paging_and_bad_dates_are_422(api, route, field, value, kind):
    body = {**VALID_BODY[route], field: value}
    found_problems = problems(api.post(route, body))
    assert [loc for _t, loc in found_problems] == [("body", field)]
    assert found_problems[0][0].startswith(kind)


@pytest.mark.parametrize("route", ROUTES)
def test_search_body_must_be_a_json_object(api, route):
    assert problems(api.post(route, b"[1, 2]")) == [
        ("model_attributes_type", ("body",))
    ]
    assert problems(api.post(route)) == [("missing", ("body",))]


@pytest.mark.parametrize("route", ROUTES)
def test_search_needs_a_researcher_key(api, client, route):
    body = VALID_BODY[route]
    assert detail(call(client, "POST", route, None, body), 401) == "Not authenticated"
    low = detail(api.post(route, body, role="experimentee"), 403)
    assert low.endswith("Required: researcher, Found: experimentee")
    # the key is checked before the body
    assert detail(api.post(route, {"limit": "x"}, role="experimentee"), 403) == low
    for role in ("researcher", "admin", "test"):
        assert api.post(route, body, role=role).status_code == 200


@pytest.mark.parametrize("route", ROUTES)
def test_search_served_with_a_trailing_slash(api, route):
    answer = api.post(route + "/", VALID_BODY[route])
    assert answer.status_code == 200, answer.get_data(as_text=True)


def test_search_notes_the_keys_last_use(api, app):
    key = api.key("researcher")
    api.ok("POST", TAGS, {"search_text": "x"}, key=key)
    with app.app_context():
        used = _db.session.scalars(
            sa.select(ApiKey.last_used_at).where(ApiKey.role == "researcher")
        ).one()
    assert used is not None


@pytest.mark.parametrize(
    ("route", "function"),
    [
        (BY_TAGS, "search_experiments"),
        (TYPES, "search_types"),
        (TAGS, "search_tags"),
        (BY_TYPE, "search_experiments"),
        (ADVANCED, "search_experiments"),
        (DATA, "data_by_tags"),
    ],
)
def test_unexpected_search_failure_is_a_500_without_internal_text(
    api, monkeypatch, route, function
):
    def broken(*_args, **_kwargs):
        raise sa.exc.ProgrammingError("SELECT secret FROM tags", {}, Exception("boom"))

    monkeypatch.setattr(search, function, broken)
    answer = api.post(route, VALID_BODY[route])
    assert detail(answer, 500) == "Search failed: internal error"
    assert answer.headers["X-WAVE-API-Version"] == "1.0.0"
    assert "secret" not in answer.get_data(as_text=True)


def test_unexpected_python_error_in_search_is_a_500_too(api, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("internal detail")

    monkeypatch.setattr(search, "search_tags", broken)
    answer = api.post(TAGS, {"search_text": "x"})
    assert detail(answer, 500) == "Search failed: internal error"


# ----------------------------------------------------------------------
# The data routes' date bounds share the calendar-end rule (a core fix)
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bound", "kept"),
    [("9999-12-31T23:00:00-05:00", 1), ("0001-01-01T00:30:00+01:00", 0)],
)
def test_data_routes_date_bound_beyond_the_calendar_is_not_a_500(api, bound, kept):
    xtype = api.make_type("Stroop", "stroop", {"rt": "FLOAT"})
    experiment = api.make_experiment(xtype["id"])["uuid"]
    api.post_row(experiment, "P1", {"rt": 1})
    base = f"experiment-data/{experiment}/data"
    listed = api.ok("GET", f"{base}/?created_before={bound.replace('+', '%2B')}")
    queried = api.ok("POST", f"{base}/query", {"created_before": bound})
    assert len(listed) == len(queried) == kept

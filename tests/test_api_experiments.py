"""Experiments over the API (api-v1.md §7, §8): create, read, list, change, delete."""

from __future__ import annotations

import uuid

import pytest
from tests.api_helpers import Api
from tests.api_helpers import detail
from tests.api_helpers import problems
from tests.api_helpers import table_count

EXPERIMENT_KEYS = [
    "description",
    "tags",
    "additional_data",
    "uuid",
    "experiment_type_id",
    "created_at",
    "updated_at",
    "experiment_type",
]
NOT_FOUND = "Experiment not found"
DESCRIBE = "Describe the experiment, e.g. “Pilot, spring 2026, lab B”."


@pytest.fixture
def api(app, client):
    return Api(app, client)


@pytest.fixture
def xtype(api):
    return api.make_type(schema={"a": "FLOAT"})


# ----------------------------------------------------------------------
# POST /experiments/
# ----------------------------------------------------------------------


def test_create_experiment_returns_it_with_its_type(api, xtype):
    api.make_tag("cog")
    api.make_tag("mem")
    body = {
        "experiment_type_id": xtype["id"],
        "description": "pilot",
        "tags": ["mem", "cog", "mem"],
        "additional_data": {"lab": "B", "nested": {"n": [1, 2.5, None]}},
        "uuid": "00000000-0000-0000-0000-000000000001",
        "created_at": "2000-01-01T00:00:00Z",
        "unknown": True,
    }
    response = api.post("experiments/", body, role="researcher")
    assert response.status_code == 200
    experiment = response.get_json()
    assert list(experiment) == EXPERIMENT_KEYS
    assert experiment["description"] == "pilot"
    assert experiment["tags"] == ["mem", "cog", "mem"]  # order and repeats as sent
    assert experiment["additional_data"] == body["additional_data"]
    assert experiment["uuid"] != body["uuid"]
    assert str(uuid.UUID(experiment["uuid"])) == experiment["uuid"]
    assert experiment["experiment_type_id"] == xtype["id"]
    assert experiment["experiment_type"] == xtype
    assert experiment["created_at"].endswith("Z")
    assert not experiment["created_at"].startswith("2000")
    assert experiment["created_at"] == experiment["updated_at"]
    assert api.ok("GET", f"experiments/{experiment['uuid']}") == experiment


def test_create_experiment_defaults_to_no_tags_and_no_data(api, xtype):
    experiment = api.make_experiment(xtype["id"])
    assert (experiment["tags"], experiment["additional_data"]) == ([], {})


def test_tags_are_matched_ignoring_case_and_stored_as_the_tag_is_named(api, xtype):
    api.make_tag("Cog")
    assert api.make_experiment(xtype["id"], tags=["cog", "COG"])["tags"] == [
        "Cog",
        "Cog",
    ]


@pytest.mark.parametrize("description", ["", "   "])
def test_empty_description_is_400_like_the_web_form(api, xtype, description):
    body = {"experiment_type_id": xtype["id"], "description": description}
    assert detail(api.post("experiments/", body), 400) == DESCRIBE


@pytest.mark.parametrize("type_id", [999, 2**31, 2**40])
def test_unknown_experiment_type_is_400(api, type_id):
    body = {"experiment_type_id": type_id, "description": "d"}
    assert detail(api.post("experiments/", body), 400) == (
        f"Experiment type with ID {type_id} does not exist"
    )


def test_first_unknown_tag_is_400_and_nothing_is_created(api, xtype):
    api.make_tag("cog")
    body = {
        "experiment_type_id": xtype["id"],
        "description": "d",
        "tags": ["cog", "nope", "nope2"],
    }
    assert detail(api.post("experiments/", body), 400) == (
        "Tag 'nope' does not exist. Please create the tag first."
    )
    assert api.ok("GET", "experiments/") == []


def test_tag_over_50_characters_is_400_not_truncated(api, xtype):
    name = "y" * 51
    body = {"experiment_type_id": xtype["id"], "description": "d", "tags": [name]}
    assert detail(api.post("experiments/", body), 400) == (
        f"Tag '{name}' is longer than 50 characters and cannot be attached to an "
        "experiment"
    )


def test_more_than_ten_tags_is_422_too_long(api, xtype):
    api.make_tag("cog")
    body = {"experiment_type_id": xtype["id"], "description": "d", "tags": ["cog"] * 11}
    response = api.post("experiments/", body)
    [entry] = response.get_json()["detail"]
    assert (entry["type"], entry["loc"]) == ("too_long", ["body", "tags"])
    assert entry["ctx"]["max_length"] == 10
    body["tags"] = ["cog"] * 10
    assert api.ok("POST", "experiments/", body)["tags"] == ["cog"] * 10


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {},
            [
                ("missing", ("body", "experiment_type_id")),
                ("missing", ("body", "description")),
            ],
        ),
        (
            {"experiment_type_id": 0, "description": "d"},
            [("greater_than", ("body", "experiment_type_id"))],
        ),
        (
            {"experiment_type_id": -3, "description": "d"},
            [("greater_than", ("body", "experiment_type_id"))],
        ),
        (
            {"experiment_type_id": "one", "description": "d"},
            [("int_parsing", ("body", "experiment_type_id"))],
        ),
        (
            {"experiment_type_id": 1, "description": None, "tags": None},
            [("string_type", ("body", "description")), ("list_type", ("body", "tags"))],
        ),
        (
            {"experiment_type_id": 1, "description": "d", "additional_data": None},
            [("dict_type", ("body", "additional_data"))],
        ),
        (
            {"experiment_type_id": 1, "description": "d", "additional_data": [1]},
            [("dict_type", ("body", "additional_data"))],
        ),
        (
            {"experiment_type_id": 1, "description": "d", "tags": "cog"},
            [("list_type", ("body", "tags"))],
        ),
        (
            {"experiment_type_id": 1, "description": "d", "tags": ["a", 2]},
            [("string_type", ("body", "tags", 1))],
        ),
    ],
    ids=[
        "empty",
        "zero-type",
        "negative-type",
        "text-type",
        "nulls",
        "null-data",
        "list-data",
        "tags-string",
        "tag-number",
    ],
)
def test_create_experiment_shape_problems_are_422(api, xtype, body, expected):
    assert problems(api.post("experiments/", body)) == expected


def test_create_experiment_with_body_not_an_object_is_422(api):
    assert problems(api.post("experiments/", b"null")) == [
        ("model_attributes_type", ("body",))
    ]
    assert problems(api.post("experiments/", b"{")) == [("json_invalid", ("body", 1))]


# ----------------------------------------------------------------------
# GET one; UUID forms
# ----------------------------------------------------------------------


def test_uuid_is_accepted_upper_case_and_without_hyphens(api, xtype):
    experiment = api.make_experiment(xtype["id"])
    for form in (experiment["uuid"].upper(), experiment["uuid"].replace("-", "")):
        got = api.ok("GET", f"experiments/{form}")
        assert got["uuid"] == experiment["uuid"]


@pytest.mark.parametrize(
    "bad", ["not-a-uuid", "1234", "{" + "0" * 32 + "}", "g" * 32, "0" * 33]
)
def test_malformed_uuid_is_422_before_404(api, bad):
    for method, path in (
        ("GET", f"experiments/{bad}"),
        ("PUT", f"experiments/{bad}"),
        ("DELETE", f"experiments/{bad}"),
        ("GET", f"experiments/{bad}/columns"),
    ):
        kwargs = {"body": {}} if method == "PUT" else {}
        response = api.call(method, path, **kwargs)
        assert problems(response) == [("uuid_parsing", ("path", "experiment_uuid"))]


def test_unknown_experiment_is_404_everywhere(api):
    missing = str(uuid.uuid4())
    assert detail(api.get(f"experiments/{missing}"), 404) == NOT_FOUND
    assert detail(api.put(f"experiments/{missing}", {}), 404) == NOT_FOUND
    assert detail(api.delete(f"experiments/{missing}"), 404) == NOT_FOUND
    assert detail(api.get(f"experiments/{missing}/columns"), 404) == NOT_FOUND


def test_bad_body_to_an_unknown_experiment_is_422_not_404(api):
    response = api.put(f"experiments/{uuid.uuid4()}", {"description": None})
    assert problems(response) == [("string_type", ("body", "description"))]


# ----------------------------------------------------------------------
# GET list
# ----------------------------------------------------------------------


def test_list_is_newest_first_and_pages(api, xtype):
    made = [api.make_experiment(xtype["id"], f"e{i}")["uuid"] for i in range(3)]
    listed = api.ok("GET", "experiments/", role="researcher")
    assert [e["uuid"] for e in listed] == made[::-1]
    assert list(listed[0]) == EXPERIMENT_KEYS
    assert [e["uuid"] for e in api.ok("GET", "experiments/?skip=1&limit=1")] == [
        made[1]
    ]
    assert api.ok("GET", "experiments/?skip=3") == []


def test_list_has_a_total_order_for_paging(api, xtype):
    made = {api.make_experiment(xtype["id"], f"e{i}")["uuid"] for i in range(5)}
    pages = [api.ok("GET", f"experiments/?skip={s}&limit=2") for s in (0, 2, 4)]
    seen = [e["uuid"] for page in pages for e in page]
    assert sorted(seen) == sorted(made)
    created = [e["created_at"] for page in pages for e in page]
    assert created == sorted(created, reverse=True)


def test_list_filters_by_type_and_by_all_tags(api, xtype):
    other = api.make_type("Other", "other_data", {})
    for name in ("cog", "mem", "Cog2"):
        api.make_tag(name)
    both = api.make_experiment(xtype["id"], tags=["cog", "mem"])["uuid"]
    cog = api.make_experiment(xtype["id"], tags=["cog"])["uuid"]
    elsewhere = api.make_experiment(other["id"], tags=["mem"])["uuid"]

    def listed(query: str) -> list[str]:
        return [e["uuid"] for e in api.ok("GET", f"experiments/?{query}")]

    assert listed(f"experiment_type_id={xtype['id']}") == [cog, both]
    assert listed("experiment_type_id=0") == [elsewhere, cog, both]
    assert listed("tags=cog") == [cog, both]
    assert listed("tags=cog&tags=mem") == [both]
    assert listed(f"tags=mem&experiment_type_id={other['id']}") == [elsewhere]
    assert listed("tags=unknown") == []
    assert listed("tags=COG") == []  # exact and case-sensitive
    assert listed("experiment_type_id=999999") == []
    assert listed(f"experiment_type_id={2**40}") == []
    assert listed("whatever=1") == [elsewhere, cog, both]


@pytest.mark.parametrize(
    ("query", "kind", "field"),
    [
        ("skip=-1", "greater_than_equal", "skip"),
        ("limit=0", "greater_than_equal", "limit"),
        ("limit=1001", "less_than_equal", "limit"),
        ("experiment_type_id=abc", "int_parsing", "experiment_type_id"),
    ],
)
def test_list_bad_query_is_422(api, query, kind, field):
    assert problems(api.get(f"experiments/?{query}")) == [(kind, ("query", field))]


# ----------------------------------------------------------------------
# PUT
# ----------------------------------------------------------------------


def test_put_changes_only_what_is_sent(api, xtype):
    api.make_tag("cog")
    api.make_tag("mem")
    experiment = api.make_experiment(
        xtype["id"], tags=["cog"], additional_data={"a": 1, "b": 2}
    )
    path = f"experiments/{experiment['uuid']}"
    described = api.ok("PUT", path, {"description": "main study"}, role="researcher")
    assert described["description"] == "main study"
    assert (described["tags"], described["additional_data"]) == (
        ["cog"],
        {"a": 1, "b": 2},
    )
    retagged = api.ok("PUT", path, {"tags": ["mem", "cog", "mem"]})
    assert retagged["tags"] == ["mem", "cog", "mem"]
    assert retagged["description"] == "main study"
    replaced = api.ok("PUT", path, {"additional_data": {"c": [3]}})
    assert replaced["additional_data"] == {"c": [3]}  # replaced, not merged
    untagged = api.ok("PUT", path, {"tags": []})
    assert untagged["tags"] == []
    assert api.ok("GET", path) == untagged
    assert untagged["created_at"] == experiment["created_at"]


def test_every_put_moves_updated_at(api, xtype):
    experiment = api.make_experiment(xtype["id"])
    path = f"experiments/{experiment['uuid']}"
    seen = [experiment["updated_at"]]
    for body in ({}, {"description": experiment["description"]}, {"tags": []}):
        seen.append(api.ok("PUT", path, body)["updated_at"])
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_get_modify_put_round_trip_works(api, xtype):
    api.make_tag("cog")
    experiment = api.make_experiment(xtype["id"], tags=["cog"])
    path = f"experiments/{experiment['uuid']}"
    current = api.ok("GET", path)
    current["description"] = "edited"
    current["additional_data"] = {"k": "v"}
    changed = api.ok("PUT", path, current)
    assert (changed["description"], changed["tags"]) == ("edited", ["cog"])
    assert changed["additional_data"] == {"k": "v"}


def test_put_experiment_type_id_is_ignored_when_equal_and_refused_otherwise(api, xtype):
    other = api.make_type("Other", "other_data", {})
    experiment = api.make_experiment(xtype["id"])
    path = f"experiments/{experiment['uuid']}"
    same = api.ok("PUT", path, {"experiment_type_id": xtype["id"], "description": "x"})
    assert same["experiment_type_id"] == xtype["id"]
    response = api.put(path, {"experiment_type_id": other["id"], "description": "y"})
    assert detail(response, 400) == "experiment_type_id cannot be changed"
    assert api.ok("GET", path)["description"] == "x"


def test_put_with_unknown_tag_is_400_and_changes_nothing(api, xtype):
    experiment = api.make_experiment(xtype["id"])
    path = f"experiments/{experiment['uuid']}"
    response = api.put(path, {"description": "changed", "tags": ["ghost"]})
    assert detail(response, 400) == (
        "Tag 'ghost' does not exist. Please create the tag first."
    )
    assert api.ok("GET", path) == experiment


def test_put_with_nulls_is_422_and_empty_description_is_400(api, xtype):
    experiment = api.make_experiment(xtype["id"])
    path = f"experiments/{experiment['uuid']}"
    body = {"description": None, "tags": None, "additional_data": None}
    assert problems(api.put(path, body)) == [
        ("string_type", ("body", "description")),
        ("list_type", ("body", "tags")),
        ("dict_type", ("body", "additional_data")),
    ]
    assert detail(api.put(path, {"description": ""}), 400) == DESCRIBE
    too_many = api.put(path, {"tags": ["x"] * 11})
    assert problems(too_many) == [("too_long", ("body", "tags"))]


# ----------------------------------------------------------------------
# DELETE
# ----------------------------------------------------------------------


def test_delete_experiment_deletes_its_rows_only(app, api, xtype):
    doomed = api.make_experiment(xtype["id"])["uuid"]
    kept = api.make_experiment(xtype["id"])["uuid"]
    for participant in ("P1", "P2", "P3"):
        api.post_row(doomed, participant, {"a": 1})
    api.post_row(kept, "P9", {"a": 2})
    assert table_count(app, "stroop") == 4
    response = api.delete(f"experiments/{doomed}", role="admin")
    assert response.status_code == 200
    assert response.get_json() == {
        "message": "Experiment deleted successfully",
        "deleted_data_rows": 3,
    }
    assert table_count(app, "stroop") == 1
    assert detail(api.get(f"experiments/{doomed}"), 404) == NOT_FOUND
    assert detail(api.get(f"experiment-data/{doomed}/data/"), 404) == NOT_FOUND
    assert api.ok("GET", f"experiment-data/{kept}/data/count")["count"] == 1


def test_delete_experiment_without_rows_reports_zero(api, xtype):
    experiment = api.make_experiment(xtype["id"])["uuid"]
    assert api.ok("DELETE", f"experiments/{experiment}")["deleted_data_rows"] == 0


# ----------------------------------------------------------------------
# GET /experiments/{uuid}/columns
# ----------------------------------------------------------------------


def test_columns_of_an_experiment_name_its_type(api, xtype):
    experiment = api.make_experiment(xtype["id"])["uuid"]
    by_uuid = api.ok("GET", f"experiments/{experiment.upper()}/columns")
    by_name = api.ok("GET", "experiment-types/name/Stroop/columns")
    assert by_uuid["experiment_uuid"] == experiment
    assert by_uuid["experiment_type"] == "Stroop"
    assert by_uuid["columns"] == by_name["columns"]


def test_nul_in_a_tag_is_an_unknown_tag_on_both_databases(api, xtype):
    api.make_experiment(xtype["id"])
    body = {"experiment_type_id": xtype["id"], "description": "d", "tags": ["a\x00b"]}
    assert detail(api.post("experiments/", body), 400) == (
        "Tag 'a\x00b' does not exist. Please create the tag first."
    )
    assert api.ok("GET", "experiments/?tags=a%00b") == []

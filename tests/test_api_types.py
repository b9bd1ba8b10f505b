"""Experiment types over the API (api-v1.md §5, §11.1–§11.3), on both databases."""

from __future__ import annotations

import pytest
from tests.api_helpers import Api
from tests.api_helpers import detail
from tests.api_helpers import problems
from tests.api_helpers import table_count
from tests.api_helpers import table_exists

TYPE_KEYS = [
    "name",
    "description",
    "table_name",
    "schema_definition",
    "id",
    "created_at",
    "updated_at",
]
NOT_FOUND = "Experiment type not found"


@pytest.fixture
def api(app, client):
    return Api(app, client)


def columns_of(api, type_id: int) -> list[tuple[str, str, bool]]:
    """(name, column_type, is_nullable) of the custom columns of the type's table."""
    experiment = api.make_experiment(type_id)["uuid"]
    found = api.ok("GET", f"experiment-data/{experiment}/data/columns")
    api.ok("DELETE", f"experiments/{experiment}")
    return [(c["column_name"], c["column_type"], c["is_nullable"]) for c in found[5:]]


# ----------------------------------------------------------------------
# POST /experiment-types/
# ----------------------------------------------------------------------


def test_create_type_returns_it_and_makes_its_table(app, api):
    schema = {
        "rt": "float",
        "ok": {"type": "boolean", "nullable": False, "default": True, "x": 1},
        "n": "INTEGER",
        "label": {"type": "String"},
    }
    body = {
        "name": "Stroop",
        "description": "colour words",
        "table_name": "stroop",
        "schema_definition": schema,
        "unknown_key": "ignored",
        "id": 999,
    }
    response = api.post("experiment-types/", body, role="researcher")
    assert response.status_code == 200
    xtype = response.get_json()
    assert list(xtype) == TYPE_KEYS
    assert xtype["name"] == "Stroop"
    assert xtype["description"] == "colour words"
    assert xtype["table_name"] == "stroop"
    assert xtype["id"] != 999
    # strings as sent, objects as type (upper case) and nullable; order kept
    assert list(xtype["schema_definition"].items()) == [
        ("rt", "float"),
        ("ok", {"type": "BOOLEAN", "nullable": False}),
        ("n", "INTEGER"),
        ("label", {"type": "STRING", "nullable": True}),
    ]
    assert xtype["created_at"].endswith("Z")
    assert xtype["created_at"] == xtype["updated_at"]
    assert table_exists(app, "stroop")
    assert api.ok("GET", f"experiment-types/{xtype['id']}") == xtype


def test_create_type_without_schema_definition_gets_an_empty_one(api):
    xtype = api.ok("POST", "experiment-types/", {"name": "T", "table_name": "t_data"})
    assert xtype["schema_definition"] == {}
    assert xtype["description"] is None


@pytest.mark.parametrize("name", ["", "   "])
def test_create_type_with_an_empty_name_is_refused_like_the_web_form(app, api, name):
    response = api.post("experiment-types/", {"name": name, "table_name": "t_data"})
    assert detail(response, 400) == "Give the type a name, e.g. “Stroop task”."
    assert not table_exists(app, "t_data")


@pytest.mark.parametrize("clash", ["Stroop", "stroop", "STROOP"])
def test_duplicate_type_name_is_400_naming_the_other_type(app, api, clash):
    first = api.make_type("Stroop", "stroop")
    response = api.post("experiment-types/", {"name": clash, "table_name": "other"})
    assert detail(response, 400) == (
        f"Experiment type with this name already exists (ID: {first['id']})"
    )
    assert not table_exists(app, "other")


def test_duplicate_table_name_is_400_naming_the_other_type(api):
    first = api.make_type("Stroop", "stroop")
    response = api.post("experiment-types/", {"name": "Other", "table_name": "stroop"})
    assert detail(response, 400) == (
        f"Experiment type with this table_name already exists (ID: {first['id']})"
    )


@pytest.mark.parametrize(
    "table", ["tags", "experiments", "experiment_types", "users", "api_keys"]
)
def test_table_name_of_a_server_table_is_400(app, api, table):
    api.key()
    before = table_count(app, table)
    response = api.post("experiment-types/", {"name": "Evil", "table_name": table})
    assert detail(response, 400) == (
        f"table_name '{table}' is already used by another table; "
        "choose a different name"
    )
    assert table_count(app, table) == before


@pytest.mark.parametrize(
    ("table", "suggestion"),
    [
        ("My Table", "my_table"),
        ("select", "select_data"),
        ("pg_stats", "stats"),
        ("sqlite_master", "master"),
        ("a" * 64, "a" * 63),
        ("1abc", "t_1abc"),
        ("", None),
        ('x"; DROP TABLE tags; --', None),
    ],
    ids=["space", "reserved", "pg", "sqlite", "64-bytes", "digit", "empty", "quote"],
)
def test_table_name_syntax_is_422_with_reason_and_suggestion(api, table, suggestion):
    response = api.post("experiment-types/", {"name": "T", "table_name": table})
    [entry] = response.get_json()["detail"]
    assert problems(response) == [("value_error", ("body", "table_name"))]
    assert entry["msg"].startswith("Value error, The table name")
    assert entry["input"] == table
    if suggestion:
        assert f"Try “{suggestion}”" in entry["msg"]


def test_missing_fields_are_all_reported_at_once(api):
    response = api.post("experiment-types/", {})
    assert problems(response) == [
        ("missing", ("body", "name")),
        ("missing", ("body", "table_name")),
    ]


def test_null_for_required_fields_is_422(api):
    body = {"name": None, "table_name": None, "schema_definition": None}
    assert problems(api.post("experiment-types/", body)) == [
        ("string_type", ("body", "name")),
        ("string_type", ("body", "table_name")),
        ("dict_type", ("body", "schema_definition")),
    ]


def test_name_over_100_characters_is_422_string_too_long(api):
    response = api.post("experiment-types/", {"name": "x" * 101, "table_name": "t"})
    [entry] = response.get_json()["detail"]
    assert (entry["type"], entry["loc"]) == ("string_too_long", ["body", "name"])
    assert entry["ctx"] == {"max_length": 100}
    assert api.post(
        "experiment-types/", {"name": "x" * 100, "table_name": "t"}
    ).status_code == (200)


def test_schema_problems_are_422_located_at_each_column(app, api):
    schema = {
        "ID": "float",
        "Bad Name": "float",
        "x": "weird",
        "y": {"nullable": False},
        "z": 5,
        "w": {"type": "FLOAT", "nullable": "no"},
        "fine": "integer",
    }
    body = {"name": "T", "table_name": "t_data", "schema_definition": schema}
    response = api.post("experiment-types/", body)
    found = {p["loc"][2]: p["msg"] for p in response.get_json()["detail"]}
    assert problems(response) == [
        ("value_error", ("body", "schema_definition", name))
        for name in ("ID", "Bad Name", "x", "y", "z", "w")
    ]
    assert found["ID"] == "Value error, Column name 'ID' is reserved and cannot be used"
    assert found["x"] == (
        "Value error, Unsupported column type: weird. Supported types: "
        "INTEGER, FLOAT, STRING, TEXT, BOOLEAN, DATETIME, JSON"
    )
    assert found["y"] == (
        "Value error, Column definition for 'y' must include 'type' field"
    )
    assert "Try “bad_name”" in found["Bad Name"]
    assert not table_exists(app, "t_data")


@pytest.mark.parametrize(
    "reserved", ["id", "experiment_uuid", "participant_id", "created_at", "updated_at"]
)
def test_standard_column_names_are_reserved(api, reserved):
    body = {"name": "T", "table_name": "t", "schema_definition": {reserved: "TEXT"}}
    [entry] = api.post("experiment-types/", body).get_json()["detail"]
    assert entry["msg"] == (
        f"Value error, Column name '{reserved}' is reserved and cannot be used"
    )


def test_schema_definition_that_is_not_an_object_is_422_dict_type(api):
    body = {"name": "T", "table_name": "t", "schema_definition": ["a"]}
    assert problems(api.post("experiment-types/", body)) == [
        ("dict_type", ("body", "schema_definition"))
    ]


def test_shape_and_table_problems_come_together_before_business_rules(api):
    api.make_type("Stroop", "stroop")
    body = {"name": "Stroop", "table_name": "Bad", "schema_definition": {"id": "x"}}
    assert problems(api.post("experiment-types/", body)) == [
        ("value_error", ("body", "schema_definition", "id")),
        ("value_error", ("body", "table_name")),
    ]


@pytest.mark.parametrize(
    ("raw", "content_type", "kind"),
    [
        (b"{not json", "application/json", "json_invalid"),
        (b"[1, 2]", "application/json", "model_attributes_type"),
        (b'"text"', "application/json", "model_attributes_type"),
        (b"", "application/json", "missing"),
        (b'{"name": "T", "table_name": "t"}', "text/plain", "model_attributes_type"),
    ],
    ids=["invalid", "array", "string", "missing", "not-json-type"],
)
def test_body_that_is_not_a_json_object_is_422(api, raw, content_type, kind):
    response = api.post(
        "experiment-types/", raw, headers={"Content-Type": content_type}
    )
    [entry] = response.get_json()["detail"]
    assert entry["type"] == kind
    assert entry["loc"][0] == "body"


# ----------------------------------------------------------------------
# GET one, GET list
# ----------------------------------------------------------------------


@pytest.mark.parametrize("type_id", ["0", "-1", "424242", str(2**31), str(2**40)])
def test_unknown_or_impossible_type_id_is_404(api, type_id):
    assert detail(api.get(f"experiment-types/{type_id}"), 404) == NOT_FOUND
    assert detail(api.put(f"experiment-types/{type_id}", {}), 404) == NOT_FOUND
    assert detail(api.delete(f"experiment-types/{type_id}"), 404) == NOT_FOUND


@pytest.mark.parametrize("type_id", ["abc", "1.5", "1e3", "%20"])
def test_malformed_type_id_is_422_int_parsing_before_404(api, type_id):
    for method in ("GET", "PUT", "DELETE"):
        kwargs = {"body": {}} if method == "PUT" else {}
        response = api.call(method, f"experiment-types/{type_id}", **kwargs)
        assert problems(response) == [("int_parsing", ("path", "experiment_type_id"))]


def test_list_is_newest_first_and_pages_with_skip_and_limit(api):
    made = [api.make_type(f"T{i}", f"t{i}", {})["id"] for i in range(3)]
    listed = api.ok("GET", "experiment-types/", role="researcher")
    assert [x["id"] for x in listed] == made[::-1]
    assert list(listed[0]) == TYPE_KEYS
    page = api.ok("GET", "experiment-types/?skip=1&limit=1")
    assert [x["id"] for x in page] == [made[1]]
    assert api.ok("GET", "experiment-types/?skip=3") == []
    assert len(api.ok("GET", "experiment-types/?limit=1000")) == 3


@pytest.mark.parametrize(
    ("query", "kind", "field"),
    [
        ("skip=-1", "greater_than_equal", "skip"),
        ("limit=0", "greater_than_equal", "limit"),
        ("limit=1001", "less_than_equal", "limit"),
        ("limit=abc", "int_parsing", "limit"),
        ("skip=1.5", "int_parsing", "skip"),
    ],
)
def test_list_bounds_are_422_never_clamped(api, query, kind, field):
    response = api.get(f"experiment-types/?{query}")
    assert problems(response) == [(kind, ("query", field))]


def test_list_bounds_problems_are_reported_together(api):
    response = api.get("experiment-types/?skip=-1&limit=5000")
    assert problems(response) == [
        ("greater_than_equal", ("query", "skip")),
        ("less_than_equal", ("query", "limit")),
    ]


# ----------------------------------------------------------------------
# PUT
# ----------------------------------------------------------------------


def test_put_changes_only_the_fields_sent(api):
    xtype = api.make_type("Stroop", "stroop", {"a": "FLOAT"}, description="old")
    path = f"experiment-types/{xtype['id']}"
    changed = api.ok("PUT", path, {"name": "Stroop 2"}, role="researcher")
    assert changed["name"] == "Stroop 2"
    assert changed["description"] == "old"
    assert changed["schema_definition"] == {"a": "FLOAT"}
    cleared = api.ok("PUT", path, {"description": None})
    assert cleared["description"] is None
    assert cleared["name"] == "Stroop 2"
    assert cleared["created_at"] == xtype["created_at"]
    assert api.ok("GET", path) == cleared


def test_get_modify_put_round_trip_works(api):
    xtype = api.make_type(schema={"a": "FLOAT", "b": {"type": "TEXT"}})
    path = f"experiment-types/{xtype['id']}"
    current = api.ok("GET", path)
    current["description"] = "now described"
    changed = api.ok("PUT", path, current)
    assert changed["description"] == "now described"
    assert changed["schema_definition"] == xtype["schema_definition"]
    assert changed["table_name"] == xtype["table_name"]


def test_every_put_moves_updated_at_even_when_nothing_changes(api):
    xtype = api.make_type()
    path = f"experiment-types/{xtype['id']}"
    seen = [xtype["updated_at"]]
    for body in ({}, {"name": xtype["name"]}, {"description": "d"}):
        seen.append(api.ok("PUT", path, body)["updated_at"])
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)


def test_put_with_null_name_or_schema_is_422(api):
    xtype = api.make_type()
    path = f"experiment-types/{xtype['id']}"
    assert problems(api.put(path, {"name": None, "schema_definition": None})) == [
        ("string_type", ("body", "name")),
        ("dict_type", ("body", "schema_definition")),
    ]


def test_put_with_empty_name_is_400(api):
    xtype = api.make_type()
    response = api.put(f"experiment-types/{xtype['id']}", {"name": ""})
    assert detail(response, 400) == "Give the type a name, e.g. “Stroop task”."


def test_put_to_another_types_name_is_400_naming_it(api):
    first = api.make_type("Stroop", "stroop")
    second = api.make_type("Flanker", "flanker")
    response = api.put(f"experiment-types/{second['id']}", {"name": "STROOP"})
    assert detail(response, 400) == (
        f"Experiment type with this name already exists (ID: {first['id']})"
    )
    # its own name in another case is a rename, not a clash
    renamed = api.ok("PUT", f"experiment-types/{first['id']}", {"name": "STROOP"})
    assert renamed["name"] == "STROOP"


def test_put_table_name_is_ignored_when_unchanged_and_refused_otherwise(app, api):
    xtype = api.make_type("Stroop", "stroop")
    path = f"experiment-types/{xtype['id']}"
    assert api.ok("PUT", path, {"table_name": "stroop"})["table_name"] == "stroop"
    response = api.put(path, {"table_name": "other", "name": "Renamed"})
    assert detail(response, 400) == "table_name cannot be changed after creation"
    assert api.ok("GET", path)["name"] == "Stroop"
    assert not table_exists(app, "other")


def test_put_schema_problems_are_422_and_nothing_is_stored(api):
    xtype = api.make_type(schema={"a": "FLOAT"})
    path = f"experiment-types/{xtype['id']}"
    body = {"name": "Changed", "schema_definition": {"a": "FLOAT", "id": "x"}}
    assert problems(api.put(path, body)) == [
        ("value_error", ("body", "schema_definition", "id"))
    ]
    assert api.ok("GET", path) == xtype


# §11.3 schema changes


def test_schema_put_without_rows_adds_removes_and_changes_columns(api):
    xtype = api.make_type(schema={"a": "FLOAT", "b": "TEXT", "c": "INTEGER"})
    path = f"experiment-types/{xtype['id']}"
    schema = {"a": "INTEGER", "c": {"type": "INTEGER", "nullable": False}, "d": "JSON"}
    changed = api.ok("PUT", path, {"schema_definition": schema})
    assert list(changed["schema_definition"]) == ["a", "c", "d"]
    assert changed["schema_definition"]["c"] == {"type": "INTEGER", "nullable": False}
    assert columns_of(api, xtype["id"]) == [
        ("a", "INTEGER", True),
        ("c", "INTEGER", False),
        ("d", "JSON", True),
    ]


def test_schema_put_with_rows_adds_a_nullable_column_at_the_end(app, api):
    xtype = api.make_type(schema={"a": "FLOAT"})
    experiment = api.make_experiment(xtype["id"])["uuid"]
    row = api.post_row(experiment, "P1", {"a": 1.5})
    path = f"experiment-types/{xtype['id']}"
    schema = {"a": "FLOAT", "note": "STRING"}
    assert api.ok("PUT", path, {"schema_definition": schema})["schema_definition"] == (
        schema
    )
    stored = api.ok("GET", f"experiment-data/{experiment}/data/row/{row['id']}")
    assert list(stored)[-2:] == ["a", "note"]
    assert stored["note"] is None
    written = api.post_row(experiment, "P2", {"a": 2, "note": "new column"})
    assert written["note"] == "new column"
    assert table_count(app, "stroop") == 2


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"a": "FLOAT", "b": {"type": "TEXT", "nullable": False}},
            "Cannot add NOT NULL column 'b' because the data table already holds "
            "rows; add it as nullable",
        ),
        (
            {},
            "Cannot remove or change column(s) ['a'] because the data table already "
            "holds rows",
        ),
        (
            {"a": "INTEGER"},
            "Cannot remove or change column(s) ['a'] because the data table already "
            "holds rows",
        ),
        (
            {"a": {"type": "FLOAT", "nullable": False}},
            "Cannot remove or change column(s) ['a'] because the data table already "
            "holds rows",
        ),
    ],
    ids=["add-not-null", "remove", "change-type", "change-nullability"],
)
def test_schema_put_with_rows_refuses_changes_that_touch_them(
    app, api, schema, message
):
    xtype = api.make_type(schema={"a": "FLOAT"})
    experiment = api.make_experiment(xtype["id"])["uuid"]
    api.post_row(experiment, "P1", {"a": 1.5})
    path = f"experiment-types/{xtype['id']}"
    response = api.put(path, {"name": "Renamed", "schema_definition": schema})
    assert detail(response, 400) == message
    assert api.ok("GET", path) == xtype  # the name was not changed either
    assert columns_of(api, xtype["id"]) == [("a", "DOUBLE PRECISION", True)]
    assert table_count(app, "stroop") == 1


def test_unchanged_schema_is_a_no_op_even_with_rows(app, api):
    xtype = api.make_type(schema={"a": "FLOAT", "b": {"type": "TEXT"}})
    experiment = api.make_experiment(xtype["id"])["uuid"]
    api.post_row(experiment, "P1", {"a": 1})
    path = f"experiment-types/{xtype['id']}"
    same = {"a": "FLOAT", "b": {"type": "TEXT", "nullable": True}}
    changed = api.ok("PUT", path, {"schema_definition": same})
    assert list(changed["schema_definition"]) == ["a", "b"]
    assert table_count(app, "stroop") == 1


# ----------------------------------------------------------------------
# DELETE
# ----------------------------------------------------------------------


def test_delete_unused_type_drops_its_table(app, api):
    xtype = api.make_type()
    path = f"experiment-types/{xtype['id']}"
    response = api.delete(path, role="admin")
    assert response.status_code == 200
    assert response.get_json() == {"message": "Experiment type deleted successfully"}
    assert not table_exists(app, "stroop")
    assert detail(api.get(path), 404) == NOT_FOUND
    assert detail(api.delete(path), 404) == NOT_FOUND


def test_delete_type_in_use_is_400_and_changes_nothing(app, api):
    xtype = api.make_type(schema={"a": "FLOAT"})
    experiments = [api.make_experiment(xtype["id"])["uuid"] for _ in range(2)]
    api.post_row(experiments[0], "P1", {"a": 1})
    response = api.delete(f"experiment-types/{xtype['id']}")
    assert detail(response, 400) == (
        f"Experiment type {xtype['id']} is still used by 2 experiment(s); "
        "delete those experiments first"
    )
    assert api.ok("GET", f"experiment-types/{xtype['id']}") == xtype
    assert table_count(app, "stroop") == 1
    for experiment in experiments:
        assert api.get(f"experiments/{experiment}").status_code == 200


def test_type_ids_are_never_reused(api, dialect, request):
    if dialect == "sqlite":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="experiment_types.id has no AUTOINCREMENT on SQLite: the "
                "highest id is handed out again after a delete (needs a migration)",
            )
        )
    first = api.make_type("A", "a_data", {})
    api.ok("DELETE", f"experiment-types/{first['id']}")
    second = api.make_type("A", "a_data", {})
    assert second["id"] > first["id"]


# ----------------------------------------------------------------------
# GET /experiment-types/name/{name}/columns
# ----------------------------------------------------------------------


def test_columns_by_name_describe_the_experiment_resource(api):
    api.make_type("Go/No-go task", "gng")
    response = api.get("experiment-types/name/Go%2FNo-go%20task/columns")
    assert response.status_code == 200
    assert response.get_json() == {
        "experiment_uuid": None,
        "experiment_type": "Go/No-go task",
        "columns": [
            {
                "column_name": name,
                "column_type": sql_type,
                "is_nullable": nullable,
                "default_value": None,
            }
            for name, sql_type, nullable in [
                ("uuid", "UUID", False),
                ("experiment_type_id", "INTEGER", False),
                ("description", "TEXT", False),
                ("tags", "VARCHAR[]", True),
                ("additional_data", "JSON", True),
                ("created_at", "TIMESTAMP WITH TIME ZONE", True),
                ("updated_at", "TIMESTAMP WITH TIME ZONE", True),
            ]
        ],
    }


@pytest.mark.parametrize("name", ["stroop", "Stroo", "Nothing", "Stroop%20"])
def test_columns_by_unknown_or_differently_cased_name_is_404(api, name):
    api.make_type("Stroop", "stroop")
    response = api.get(f"experiment-types/name/{name}/columns")
    assert detail(response, 404) == NOT_FOUND


def test_nul_in_a_type_name_is_400_and_never_found(api):
    xtype = api.make_type()
    message = (
        "The name contains a NUL character (\\0), which cannot be stored; "
        "remove it and try again."
    )
    body = {"name": "a\x00b", "table_name": "t"}
    assert detail(api.post("experiment-types/", body), 400) == message
    response = api.put(f"experiment-types/{xtype['id']}", {"name": "a\x00b"})
    assert detail(response, 400) == message
    response = api.get("experiment-types/name/a%00b/columns")
    assert detail(response, 404) == NOT_FOUND

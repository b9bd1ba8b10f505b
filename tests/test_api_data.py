"""Experiment data over the API (api-v1.md §9, §11.4): rows, batch, lists, queries."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from tests.api_helpers import EVERY_TYPE_SCHEMA
from tests.api_helpers import Api
from tests.api_helpers import detail
from tests.api_helpers import problems
from tests.api_helpers import table_count
from wave_web.extensions import db as _db

STANDARD = ["id", "experiment_uuid", "participant_id", "created_at", "updated_at"]
NO_EXPERIMENT = "Experiment not found"
NO_ROW = "Experiment data row not found"
NOTHING = "Nothing to update: provide participant_id and/or data"


@pytest.fixture
def api(app, client):
    return Api(app, client)


@pytest.fixture
def experiment(api):
    """An experiment of a type with one column of each type (table `stroop`)."""
    xtype = api.make_type(schema=EVERY_TYPE_SCHEMA)
    return api.make_experiment(xtype["id"])["uuid"]


def data(experiment: str, rest: str = "/") -> str:
    return f"experiment-data/{experiment}/data{rest}"


def unknown_message(names: list[str]) -> str:
    return (
        f"Unknown columns: {names!r}. Please update the experiment type schema to "
        "include these columns."
    )


def set_created_at(app, table_name: str, when: dict[int, dt.datetime]) -> None:
    """Give rows known creation times (naive UTC), as if made back then."""
    with app.app_context():
        table = sa.Table(table_name, sa.MetaData(), autoload_with=_db.engine)
        with _db.engine.begin() as conn:
            for row_id, moment in when.items():
                conn.execute(
                    sa.update(table)
                    .where(table.c.id == row_id)
                    .values(created_at=moment)
                )


# ----------------------------------------------------------------------
# POST .../data/ (one row)
# ----------------------------------------------------------------------


def test_post_row_answers_201_with_the_stored_row(api, experiment):
    body = {
        "participant_id": "P1",
        "data": {"j": {"k": [1]}, "n": 2, "x": 2, "d": "2024-01-01T10:00:00+01:00"},
    }
    response = api.post(data(experiment), body, role="experimentee")
    assert response.status_code == 201
    row = response.get_json()
    assert list(row) == STANDARD + list(EVERY_TYPE_SCHEMA)  # table order
    assert row["experiment_uuid"] == experiment
    assert row["participant_id"] == "P1"
    assert row["created_at"] == row["updated_at"]
    assert not row["created_at"].endswith("Z")  # naive UTC, as wave-backend sends
    dt.datetime.fromisoformat(row["created_at"])
    assert (row["n"], row["x"], row["d"], row["j"]) == (
        2,
        2.0,
        "2024-01-01T09:00:00",
        {"k": [1]},
    )
    assert b'"x":2.0' in response.data  # FLOAT keeps its fractional part
    assert (row["s"], row["t"], row["b"]) == (None, None, None)
    assert api.ok("GET", data(experiment, f"/row/{row['id']}")) == row


def test_post_row_ignores_experiment_uuid_and_participant_id_inside_data(
    api, experiment
):
    other = str(uuid.uuid4())
    body = {
        "participant_id": "P1",
        "data": {"experiment_uuid": other, "participant_id": "P2", "n": 1},
    }
    row = api.ok("POST", data(experiment), body, status=201)
    assert (row["experiment_uuid"], row["participant_id"]) == (experiment, "P1")


def test_post_row_reports_every_problem_of_the_row_at_once(api, experiment):
    body = {
        "participant_id": "P1",
        "data": {"zeta": 1, "n": 1.7, "id": 9, "alpha": 2, "created_at": "x"},
    }
    assert detail(api.post(data(experiment), body), 400) == (
        "Column(s) ['id', 'created_at'] are managed by the server and cannot be set; "
        + unknown_message(["zeta", "alpha"])
        + "; Invalid value for column 'n' (INTEGER): 1.7 is not a whole number"
    )
    assert api.ok("GET", data(experiment, "/count"))["count"] == 0


def test_unknown_columns_are_listed_in_the_order_sent(api, experiment):
    body = {"participant_id": "P1", "data": {"foo": 1, "bar": 2}}
    assert detail(api.post(data(experiment), body), 400) == unknown_message(
        ["foo", "bar"]
    )


def test_not_null_column_refuses_absence_and_null(api):
    xtype = api.make_type(schema={"score": {"type": "INTEGER", "nullable": False}})
    experiment = api.make_experiment(xtype["id"])["uuid"]
    missing = api.post(data(experiment), {"participant_id": "P", "data": {}})
    assert detail(missing, 400) == (
        "Column 'score' is required (NOT NULL) and was not provided"
    )
    null = api.post(data(experiment), {"participant_id": "P", "data": {"score": None}})
    assert (
        detail(null, 400) == "Column 'score' is required (NOT NULL) and cannot be null"
    )
    ok = api.post_row(experiment, "P", {"score": 0})
    assert ok["score"] == 0


def test_row_with_empty_data_is_stored_with_nulls(api, experiment):
    row = api.post_row(experiment, "P1", {})
    assert all(row[c] is None for c in EVERY_TYPE_SCHEMA)


@pytest.mark.parametrize("participant", ["", "   "])
def test_empty_participant_id_is_400_like_the_web_form(api, experiment, participant):
    body = {"participant_id": participant, "data": {}}
    assert detail(api.post(data(experiment), body), 400) == (
        "participant_id is required: give the participant's id."
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {},
            [("missing", ("body", "participant_id")), ("missing", ("body", "data"))],
        ),
        (
            {"participant_id": 5, "data": []},
            [
                ("string_type", ("body", "participant_id")),
                ("dict_type", ("body", "data")),
            ],
        ),
        (
            {"participant_id": None, "data": None},
            [
                ("string_type", ("body", "participant_id")),
                ("dict_type", ("body", "data")),
            ],
        ),
        (
            {"participant_id": "x" * 101, "data": {}},
            [("string_too_long", ("body", "participant_id"))],
        ),
    ],
    ids=["empty", "wrong-types", "nulls", "long-participant"],
)
def test_post_row_shape_problems_are_422(api, experiment, body, expected):
    assert problems(api.post(data(experiment), body)) == expected


def test_participant_id_of_100_characters_is_accepted(api, experiment):
    assert api.post_row(experiment, "p" * 100)["participant_id"] == "p" * 100


def test_body_shape_is_checked_before_the_experiment_exists(api):
    missing = str(uuid.uuid4())
    assert problems(api.post(data(missing), {"data": {}})) == [
        ("missing", ("body", "participant_id"))
    ]
    response = api.post(data(missing), {"participant_id": "P", "data": {}})
    assert detail(response, 404) == NO_EXPERIMENT


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"{oops", "json_invalid"), (b"[]", "model_attributes_type"), (b"", "missing")],
)
def test_post_row_body_not_a_json_object_is_422(api, experiment, raw, kind):
    [entry] = api.post(data(experiment), raw).get_json()["detail"]
    assert entry["type"] == kind
    assert entry["loc"][0] == "body"


def test_malformed_experiment_uuid_is_422_on_every_data_route(api):
    for method, rest in (
        ("POST", "/"),
        ("GET", "/"),
        ("GET", "/count"),
        ("GET", "/columns"),
        ("POST", "/query"),
        ("POST", "/batch"),
        ("GET", "/row/1"),
        ("PUT", "/row/1"),
        ("DELETE", "/row/1"),
    ):
        kwargs = {"body": {}} if method in ("POST", "PUT") else {}
        response = api.call(method, data("nope", rest), **kwargs)
        found = problems(response)
        assert ("uuid_parsing", ("path", "experiment_id")) in found, (method, rest)


def test_unknown_experiment_is_404_on_every_data_route(api):
    missing = str(uuid.uuid4())
    for method, rest, body in (
        ("GET", "/", None),
        ("GET", "/count", None),
        ("GET", "/columns", None),
        ("POST", "/query", {}),
        ("POST", "/batch", {"rows": [{"participant_id": "P", "data": {}}]}),
        ("GET", "/row/1", None),
        ("PUT", "/row/1", {"data": {"n": 1}}),
        ("DELETE", "/row/1", None),
    ):
        kwargs = {} if body is None else {"body": body}
        response = api.call(method, data(missing, rest), **kwargs)
        assert detail(response, 404) == NO_EXPERIMENT, (method, rest)


# ----------------------------------------------------------------------
# §11.4 cell values: every accepted and refused value per type
# ----------------------------------------------------------------------

INT_RULE = "expected a whole number like 42 (no decimals, exponents or commas)"
FLOAT_RULE = "expected a number like 0.25 or 1.5e-3"
FINITE = "expected a finite number (NaN and infinity are not stored)"
BOOL_RULE = "expected true or false (also t/f, yes/no, y/n, 1/0)"
ISO = "expected an ISO 8601 date-time like 2024-03-04T14:30:00Z"
ISO_OR_DATE = ISO + " or a date like 2024-03-04"

ACCEPTED = {
    "n": [
        (2, 2),
        (-5, -5),
        (2.0, 2),
        ("42", 42),
        (" 7 ", 7),
        ("+3", 3),
        ("-0", 0),
        (2147483647, 2147483647),
        (-2147483648, -2147483648),
        (None, None),
    ],
    "x": [
        (1.5, 1.5),
        (2, 2.0),
        ("3.25", 3.25),
        ("-1e-3", -0.001),
        (" 4 ", 4.0),
        (2**53, float(2**53)),
        (1e300, 1e300),
        (None, None),
    ],
    "b": [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        (1.0, True),
        ("true", True),
        ("FALSE", False),
        ("t", True),
        ("F", False),
        ("yes", True),
        ("No", False),
        ("y", True),
        ("N", False),
        ("1", True),
        ("0", False),
        (None, None),
    ],
    "s": [
        ("hello", "hello"),
        ("", ""),
        (" pad ", " pad "),
        ("é" * 255, "é" * 255),
        (None, None),
    ],
    "t": [("long " * 2000, "long " * 2000), ("", ""), ("a\nb\tc", "a\nb\tc")],
    "d": [
        ("2024-01-01T10:00:00", "2024-01-01T10:00:00"),
        ("2024-01-01 10:00:00", "2024-01-01T10:00:00"),
        ("2024-01-01T10:00:00.123456", "2024-01-01T10:00:00.123456"),
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00"),
        ("2024-01-01T10:00:00+01:00", "2024-01-01T09:00:00"),
        ("2024-01-01T10:00:00-05:30", "2024-01-01T15:30:00"),
        ("2024-01-01", "2024-01-01T00:00:00"),
        ("2024-01-01T10:00", "2024-01-01T10:00:00"),
        (None, None),
    ],
    "j": [
        ({"a": [1, 2]}, {"a": [1, 2]}),
        ([1, "x"], [1, "x"]),
        ("text", "text"),
        (1, 1),
        (1.5, 1.5),
        (True, True),
        ({}, {}),
        ([], []),
        ({"deep": {"er": [None]}}, {"deep": {"er": [None]}}),
        (None, None),
    ],
}

REFUSED = {
    "n": [
        (1.7, "1.7 is not a whole number"),
        (True, "true is a boolean, not a whole number"),
        (False, "false is a boolean, not a whole number"),
        (
            2147483648,
            "2147483648 is outside the 32-bit range (-2147483648 to 2147483647)",
        ),
        (
            -2147483649,
            "-2147483649 is outside the 32-bit range (-2147483648 to 2147483647)",
        ),
        ("1.0", f"'1.0': {INT_RULE}"),
        ("1e3", f"'1e3': {INT_RULE}"),
        ("abc", f"'abc': {INT_RULE}"),
        ("", f"'': {INT_RULE}"),
        ("1,000", f"'1,000': {INT_RULE}"),
        ("0x1", f"'0x1': {INT_RULE}"),
        (
            "2147483648",
            "'2147483648': expected a whole number between -2147483648 and 2147483647",
        ),
        ([1], "[1] is not a whole number"),
        ({"a": 1}, '{"a":1} is not a whole number'),
    ],
    "x": [
        (True, "true is a boolean, not a number"),
        ("abc", f"'abc': {FLOAT_RULE}"),
        ("", f"'': {FLOAT_RULE}"),
        ("1,5", f"'1,5': {FLOAT_RULE}"),
        ("nan", f"'nan': {FINITE}"),
        ("inf", f"'inf': {FINITE}"),
        ("1e999", f"'1e999': {FINITE}"),
        (2**53 + 1, f"{2**53 + 1} cannot be stored exactly as a FLOAT"),
        ([1], "[1] is not a number"),
    ],
    "b": [
        (2, "2 is not true or false"),
        (-1, "-1 is not true or false"),
        (0.5, "0.5 is not true or false"),
        ("maybe", f"'maybe': {BOOL_RULE}"),
        ("", f"'': {BOOL_RULE}"),
        ([True], "[true] is not true or false"),
    ],
    "s": [
        ("x" * 256, "expected at most 255 characters, got 256 (use TEXT)"),
        (5, "5 is not a string"),
        (True, "true is not a string"),
        (["a"], '["a"] is not a string'),
        ("a\x00b", "text cannot contain the NUL character"),
    ],
    "t": [
        (5, "5 is not a string"),
        (False, "false is not a string"),
        ({"a": 1}, '{"a":1} is not a string'),
        ("a\x00b", "text cannot contain the NUL character"),
    ],
    "d": [
        ("03/04/2024", f"'03/04/2024': {ISO}"),
        ("yesterday", f"'yesterday': {ISO}"),
        ("", f"'': {ISO}"),
        ("2024-13-01", f"'2024-13-01': {ISO_OR_DATE}"),
        ("2024-01-01T25:00:00", f"'2024-01-01T25:00:00': {ISO_OR_DATE}"),
        (1700000000, "1700000000 is not an ISO 8601 date-time string"),
        (True, "true is not an ISO 8601 date-time string"),
    ],
}
TYPE_OF = {
    "n": "INTEGER",
    "x": "FLOAT",
    "s": "STRING",
    "t": "TEXT",
    "b": "BOOLEAN",
    "d": "DATETIME",
    "j": "JSON",
}


@pytest.mark.parametrize("column", list(ACCEPTED))
def test_cell_values_accepted_per_type_are_stored_exactly(api, experiment, column):
    wrong = []
    for sent, stored in ACCEPTED[column]:
        response = api.post(
            data(experiment), {"participant_id": "P", "data": {column: sent}}
        )
        if response.status_code != 201:
            wrong.append((sent, response.status_code, response.get_json()))
            continue
        row_id = response.get_json()["id"]
        got = api.ok("GET", data(experiment, f"/row/{row_id}"))[column]
        if got != stored or type(got) is not type(stored):
            wrong.append((sent, got, stored))
    assert wrong == []


@pytest.mark.parametrize("column", list(REFUSED))
def test_cell_values_refused_per_type_name_column_type_and_value(
    api, experiment, column
):
    wrong = []
    for sent, reason in REFUSED[column]:
        response = api.post(
            data(experiment), {"participant_id": "P", "data": {column: sent}}
        )
        expected = f"Invalid value for column '{column}' ({TYPE_OF[column]}): {reason}"
        if response.status_code != 400 or response.get_json()["detail"] != expected:
            wrong.append((sent, response.status_code, response.get_json()))
    assert wrong == []
    assert api.ok("GET", data(experiment, "/count"))["count"] == 0


def test_several_bad_cells_are_joined_in_one_message(api, experiment):
    body = {"participant_id": "P", "data": {"n": "x", "b": 3}}
    assert detail(api.post(data(experiment), body), 400) == (
        f"Invalid value for column 'n' (INTEGER): 'x': {INT_RULE}; "
        "Invalid value for column 'b' (BOOLEAN): 3 is not true or false"
    )


# ----------------------------------------------------------------------
# POST .../data/batch
# ----------------------------------------------------------------------


def test_batch_inserts_all_rows_with_ids_in_input_order(app, api, experiment):
    rows = [{"participant_id": f"P{i}", "data": {"n": i, "b": "yes"}} for i in range(5)]
    response = api.post(data(experiment, "/batch"), {"rows": rows}, role="experimentee")
    assert response.status_code == 201
    result = response.get_json()
    assert list(result) == ["experiment_id", "inserted", "ids"]
    assert (result["experiment_id"], result["inserted"]) == (experiment, 5)
    assert result["ids"] == sorted(result["ids"]) and len(set(result["ids"])) == 5
    for i, row_id in enumerate(result["ids"]):
        row = api.ok("GET", data(experiment, f"/row/{row_id}"))
        assert (row["participant_id"], row["n"], row["b"]) == (f"P{i}", i, True)
    assert table_count(app, "stroop") == 5


def test_batch_is_all_or_nothing_with_located_messages(app, api, experiment):
    rows = [
        {"participant_id": "A", "data": {"n": 1}},
        {"participant_id": "B", "data": {"n": 1.5}},
        {"participant_id": "C", "data": {"n": 2}},
        {"participant_id": "D", "data": {"zz": 1}},
    ]
    response = api.post(data(experiment, "/batch"), {"rows": rows})
    assert detail(response, 400) == (
        "Row 2: Invalid value for column 'n' (INTEGER): 1.5 is not a whole number; "
        "Row 4: " + unknown_message(["zz"])
    )
    assert table_count(app, "stroop") == 0


def test_batch_with_a_bad_row_after_written_chunks_keeps_nothing(
    app, api, experiment, monkeypatch
):
    from wave_web.api import data as data_routes

    monkeypatch.setattr(data_routes, "BATCH_CHUNK", 2)  # chunks 1-2 are written first
    rows = [{"participant_id": f"P{i}", "data": {"n": i}} for i in range(7)]
    rows[5]["data"]["n"] = "five"
    response = api.post(data(experiment, "/batch"), {"rows": rows})
    assert detail(response, 400).startswith("Row 6: Invalid value for column 'n'")
    assert table_count(app, "stroop") == 0
    good = api.post(data(experiment, "/batch"), {"rows": rows[:5]})
    assert good.status_code == 201
    assert good.get_json()["inserted"] == 5
    assert table_count(app, "stroop") == 5
    assert api.ok("GET", data(experiment, "/count"))["count"] == 5


def test_batch_pauses_the_garbage_collector_only_while_it_runs(
    api, experiment, monkeypatch
):
    import gc

    from wave_web.api import data as data_routes

    seen = []
    real = data_routes.writing.write_rows

    def spy(*args):
        seen.append(gc.isenabled())
        return real(*args)

    monkeypatch.setattr(data_routes.writing, "write_rows", spy)
    rows = [{"participant_id": "P", "data": {"n": 1}}]
    assert api.post(data(experiment, "/batch"), {"rows": rows}).status_code == 201
    assert seen == [False] and gc.isenabled()
    bad = [{"participant_id": "P", "data": {"n": "x"}}]
    assert api.post(data(experiment, "/batch"), {"rows": bad}).status_code == 400
    assert gc.isenabled()
    assert api.post(data(experiment, "/"), rows[0]).status_code == 201
    assert seen == [False, False] and gc.isenabled()


def test_gc_paused_turns_the_collector_on_when_the_last_pause_ends():
    import gc

    from wave_web.api.http import gc_paused

    with gc_paused():
        with gc_paused():  # two requests of a threaded worker at once
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError
    assert gc.isenabled()


def test_batch_lists_the_first_100_problems_then_a_count(app, api, experiment):
    rows = [{"participant_id": "P", "data": {"n": "bad"}} for _ in range(103)]
    message = detail(api.post(data(experiment, "/batch"), {"rows": rows}), 400)
    parts = message.split("; ")
    assert (
        parts[0] == f"Row 1: Invalid value for column 'n' (INTEGER): 'bad': {INT_RULE}"
    )
    assert parts[99].startswith("Row 100: ")
    assert parts[100] == "and 3 more rows with problems"
    assert len(parts) == 101
    assert table_count(app, "stroop") == 0


def test_batch_over_the_configured_limit_is_422_too_long(app, api, experiment):
    app.config["WAVE_API_BATCH_MAX_ROWS"] = 3
    rows = [{"participant_id": "P", "data": {}}] * 4
    response = api.post(data(experiment, "/batch"), {"rows": rows})
    [entry] = response.get_json()["detail"]
    assert (entry["type"], entry["loc"]) == ("too_long", ["body", "rows"])
    assert entry["ctx"]["max_length"] == 3
    assert table_count(app, "stroop") == 0
    assert api.ok("POST", data(experiment, "/batch"), {"rows": rows[:3]}, status=201)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"rows": []}, [("too_short", ("body", "rows"))]),
        ({}, [("missing", ("body", "rows"))]),
        ({"rows": "x"}, [("list_type", ("body", "rows"))]),
        (
            {"rows": [{"participant_id": "A"}]},
            [("missing", ("body", "rows", 0, "data"))],
        ),
        (
            {
                "rows": [
                    {"participant_id": "A", "data": {}},
                    {"participant_id": 1, "data": 2},
                ]
            },
            [
                ("string_type", ("body", "rows", 1, "participant_id")),
                ("dict_type", ("body", "rows", 1, "data")),
            ],
        ),
        (
            {"rows": [7, {"participant_id": "x" * 101, "data": {}}]},
            [
                ("model_attributes_type", ("body", "rows", 0)),
                ("string_too_long", ("body", "rows", 1, "participant_id")),
            ],
        ),
    ],
    ids=[
        "empty",
        "missing",
        "not-a-list",
        "row-missing-data",
        "row-wrong-types",
        "row-not-an-object-and-too-long-id",
    ],
)
def test_batch_shape_problems_are_422(api, experiment, body, expected):
    assert problems(api.post(data(experiment, "/batch"), body)) == expected


# ----------------------------------------------------------------------
# GET .../data/ (list), count, columns
# ----------------------------------------------------------------------


def test_list_is_newest_first_and_pages_with_offset_and_limit(api, experiment):
    ids = [api.post_row(experiment, f"P{i}")["id"] for i in range(3)]
    listed = api.ok("GET", data(experiment), role="researcher")
    assert [r["id"] for r in listed] == ids[::-1]
    assert list(listed[0]) == STANDARD + list(EVERY_TYPE_SCHEMA)
    assert [r["id"] for r in api.ok("GET", data(experiment, "/?offset=1&limit=1"))] == [
        ids[1]
    ]
    assert api.ok("GET", data(experiment, "/?offset=3")) == []
    assert len(api.ok("GET", data(experiment, "/?limit=1000"))) == 3


def test_list_shows_only_rows_of_this_experiment(api, experiment):
    xtype_id = api.ok("GET", f"experiments/{experiment}")["experiment_type_id"]
    other = api.make_experiment(xtype_id)["uuid"]
    mine = api.post_row(experiment, "P1")["id"]
    api.post_row(other, "P1")
    assert [r["id"] for r in api.ok("GET", data(experiment))] == [mine]
    assert api.ok("GET", data(experiment, "/count"))["count"] == 1


def test_list_filters_by_participant_exactly(api, experiment):
    api.post_row(experiment, "P1")
    api.post_row(experiment, "p1")
    p1 = api.post_row(experiment, "P1")["id"]
    found = api.ok("GET", data(experiment, "/?participant_id=P1"))
    assert [r["participant_id"] for r in found] == ["P1", "P1"]
    assert found[0]["id"] == p1
    assert len(api.ok("GET", data(experiment, "/?participant_id="))) == 3
    assert api.ok("GET", data(experiment, "/?participant_id=P")) == []
    assert api.ok("GET", data(experiment, "/?participant_id=a%00b")) == []


@pytest.fixture
def dated(app, api, experiment):
    """Three rows made on 1, 2 and 3 January 2024 at 10:00 UTC: their ids."""
    ids = [api.post_row(experiment, f"P{i}")["id"] for i in range(3)]
    set_created_at(
        app,
        "stroop",
        {row_id: dt.datetime(2024, 1, day, 10) for day, row_id in enumerate(ids, 1)},
    )
    return ids


EPOCH_JAN_2_10H = int(dt.datetime(2024, 1, 2, 10, tzinfo=dt.UTC).timestamp())


@pytest.mark.parametrize(
    ("query", "days"),
    [
        ("created_after=2024-01-02T10:00:00Z", [3, 2]),
        ("created_after=2024-01-02T10:00:00", [3, 2]),
        ("created_after=2024-01-02T11:00:00%2B01:00", [3, 2]),
        ("created_after=2024-01-02T05:00:00-05:00", [3, 2]),
        ("created_after=2024-01-02T10:00:00.000001Z", [3]),
        (f"created_after={EPOCH_JAN_2_10H}", [3, 2]),
        (f"created_after={EPOCH_JAN_2_10H}.5", [3]),
        ("created_before=2024-01-02", [1]),
        ("created_before=2024-01-02T10:00:00Z", [2, 1]),
        ("created_after=2024-01-02&created_before=2024-01-02T23:59:59", [2]),
        ("created_after=2024-01-04", []),
    ],
    ids=[
        "z",
        "naive",
        "plus-offset",
        "minus-offset",
        "after-by-a-microsecond",
        "epoch",
        "epoch-fraction",
        "date-only",
        "before-inclusive",
        "both",
        "none-after",
    ],
)
def test_list_date_bounds_are_inclusive_and_converted_to_utc(
    api, experiment, dated, query, days
):
    found = api.ok("GET", data(experiment, f"/?{query}"))
    assert [r["id"] for r in found] == [dated[d - 1] for d in days]


@pytest.mark.parametrize(
    ("query", "kind", "field"),
    [
        ("created_after=garbage", "value_error", "created_after"),
        ("created_before=2024-02-30", "value_error", "created_before"),
        ("created_after=99999999999999999999", "value_error", "created_after"),
        ("offset=-1", "greater_than_equal", "offset"),
        ("limit=0", "greater_than_equal", "limit"),
        ("limit=1001", "less_than_equal", "limit"),
        ("limit=ten", "int_parsing", "limit"),
    ],
)
def test_list_bad_dates_and_bounds_are_422(api, experiment, query, kind, field):
    assert problems(api.get(data(experiment, f"/?{query}"))) == [
        (kind, ("query", field))
    ]


def test_count_counts_all_rows_or_one_participants(api, experiment):
    for participant in ("P1", "P1", "P2"):
        api.post_row(experiment, participant)
    assert api.ok("GET", data(experiment, "/count"), role="researcher") == {
        "count": 3,
        "participant_id": None,
        "experiment_id": experiment,
    }
    assert api.ok("GET", data(experiment, "/count?participant_id=P1")) == {
        "count": 2,
        "participant_id": "P1",
        "experiment_id": experiment,
    }
    assert api.ok("GET", data(experiment, "/count?participant_id=nobody"))["count"] == 0
    assert api.ok("GET", data(experiment, "/count?participant_id=a%00b"))["count"] == 0


def test_columns_are_standard_then_custom_in_table_order(api):
    schema = {
        "n": "INTEGER",
        "x": {"type": "FLOAT", "nullable": False},
        "s": "STRING",
        "t": "TEXT",
        "b": "BOOLEAN",
        "d": "DATETIME",
        "j": "JSON",
    }
    xtype = api.make_type(schema=schema)
    experiment = api.make_experiment(xtype["id"])["uuid"]
    columns = api.ok("GET", data(experiment, "/columns"), role="researcher")
    assert [
        (c["column_name"], c["column_type"], c["is_nullable"]) for c in columns
    ] == [
        ("id", "INTEGER", False),
        ("experiment_uuid", "UUID", False),
        ("participant_id", "VARCHAR(100)", False),
        ("created_at", "TIMESTAMP", False),
        ("updated_at", "TIMESTAMP", False),
        ("n", "INTEGER", True),
        ("x", "DOUBLE PRECISION", False),
        ("s", "VARCHAR(255)", True),
        ("t", "TEXT", True),
        ("b", "BOOLEAN", True),
        ("d", "TIMESTAMP", True),
        ("j", "JSON", True),
    ]
    assert {c["default_value"] for c in columns} == {None}
    assert all(
        list(c) == ["column_name", "column_type", "is_nullable", "default_value"]
        for c in columns
    )


# ----------------------------------------------------------------------
# Rows: GET, PUT, DELETE
# ----------------------------------------------------------------------


@pytest.mark.parametrize("row_id", ["0", "424242", str(2**31), str(2**40)])
def test_unknown_or_impossible_row_id_is_404(api, experiment, row_id):
    path = data(experiment, f"/row/{row_id}")
    assert detail(api.get(path), 404) == NO_ROW
    assert detail(api.put(path, {"data": {"n": 1}}), 404) == NO_ROW
    assert detail(api.delete(path), 404) == NO_ROW


@pytest.mark.parametrize("row_id", ["abc", "1.0", "1e2"])
def test_malformed_row_id_is_422_before_404(api, row_id):
    path = data(str(uuid.uuid4()), f"/row/{row_id}")
    for method in ("GET", "PUT", "DELETE"):
        kwargs = {"body": {"data": {}}} if method == "PUT" else {}
        response = api.call(method, path, **kwargs)
        assert problems(response) == [("int_parsing", ("path", "row_id"))]


def test_row_of_another_experiment_is_not_found(app, api, experiment):
    xtype_id = api.ok("GET", f"experiments/{experiment}")["experiment_type_id"]
    other = api.make_experiment(xtype_id)["uuid"]
    theirs = api.post_row(other, "P1", {"n": 1})
    path = data(experiment, f"/row/{theirs['id']}")
    assert detail(api.get(path), 404) == NO_ROW
    assert detail(api.put(path, {"data": {"n": 2}}), 404) == NO_ROW
    assert detail(api.delete(path), 404) == NO_ROW
    assert api.ok("GET", data(other, f"/row/{theirs['id']}")) == theirs


def test_put_row_changes_the_values_sent_and_moves_updated_at(api, experiment):
    row = api.post_row(experiment, "P1", {"n": 1, "s": "a", "b": True})
    path = data(experiment, f"/row/{row['id']}")
    changed = api.ok(
        "PUT",
        path,
        {"data": {"n": "2", "d": "2024-05-01T12:00:00+02:00"}},
        role="researcher",
    )
    assert (changed["n"], changed["s"], changed["b"]) == (2, "a", True)
    assert changed["d"] == "2024-05-01T10:00:00"
    assert changed["created_at"] == row["created_at"]
    assert changed["updated_at"] > row["updated_at"]
    renamed = api.ok("PUT", path, {"participant_id": "P2", "data": {"s": None}})
    assert (renamed["participant_id"], renamed["s"]) == ("P2", None)
    assert renamed["updated_at"] > changed["updated_at"]
    same = api.ok("PUT", path, {"data": {"n": 2}})  # changes no value
    assert same["updated_at"] > renamed["updated_at"]
    assert api.ok("GET", path) == same


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, NOTHING),
        ({"data": {}}, NOTHING),
        ({"data": {"foo": 1, "n": 2}}, unknown_message(["foo"])),
        (
            {
                "data": {
                    "id": 1,
                    "experiment_uuid": "x",
                    "created_at": 1,
                    "updated_at": 2,
                }
            },
            "Column(s) ['id', 'experiment_uuid', 'created_at', 'updated_at'] are "
            "managed by the server and cannot be set",
        ),
        (
            {"data": {"n": 1.5}},
            "Invalid value for column 'n' (INTEGER): 1.5 is not a whole number",
        ),
        (
            {"participant_id": ""},
            "participant_id is required: give the participant's id.",
        ),
    ],
    ids=["empty", "empty-data", "unknown", "managed", "bad-value", "empty-participant"],
)
def test_put_row_refusals_are_400_and_change_nothing(api, experiment, body, message):
    row = api.post_row(experiment, "P1", {"n": 1})
    path = data(experiment, f"/row/{row['id']}")
    assert detail(api.put(path, body), 400) == message
    assert api.ok("GET", path) == row


def test_put_row_not_null_column_refuses_null(api):
    xtype = api.make_type(schema={"score": {"type": "INTEGER", "nullable": False}})
    experiment = api.make_experiment(xtype["id"])["uuid"]
    row = api.post_row(experiment, "P", {"score": 1})
    response = api.put(data(experiment, f"/row/{row['id']}"), {"data": {"score": None}})
    assert (
        detail(response, 400)
        == "Column 'score' is required (NOT NULL) and cannot be null"
    )


def test_put_row_with_nulls_for_its_fields_is_422(api, experiment):
    row = api.post_row(experiment, "P1")
    path = data(experiment, f"/row/{row['id']}")
    assert problems(api.put(path, {"participant_id": None, "data": None})) == [
        ("string_type", ("body", "participant_id")),
        ("dict_type", ("body", "data")),
    ]


def test_get_modify_put_round_trip_of_a_row_works(api, experiment):
    row = api.post_row(experiment, "P1", {"n": 1})
    path = data(experiment, f"/row/{row['id']}")
    current = api.ok("GET", path)
    body = {
        "participant_id": current["participant_id"],
        "data": {"n": current["n"] + 1},
    }
    assert api.ok("PUT", path, body)["n"] == 2


def test_delete_row_removes_only_that_row(app, api, experiment):
    doomed = api.post_row(experiment, "P1")
    kept = api.post_row(experiment, "P2")
    path = data(experiment, f"/row/{doomed['id']}")
    response = api.delete(path, role="admin")
    assert response.status_code == 200
    assert response.get_json() == {
        "message": "Experiment data row deleted successfully",
        "deleted_id": doomed["id"],
        "experiment_id": experiment,
    }
    assert detail(api.get(path), 404) == NO_ROW
    assert detail(api.delete(path), 404) == NO_ROW
    assert [r["id"] for r in api.ok("GET", data(experiment))] == [kept["id"]]
    assert table_count(app, "stroop") == 1


# ----------------------------------------------------------------------
# POST .../data/query
# ----------------------------------------------------------------------


def test_query_filters_by_equality_with_values_read_like_cells(api, experiment):
    a = api.post_row(
        experiment, "P1", {"n": 1, "b": True, "s": "x", "d": "2024-01-01T10:00:00Z"}
    )
    b = api.post_row(experiment, "P2", {"n": 2, "b": False, "s": "x"})
    c = api.post_row(experiment, "P1", {"n": None, "b": True})

    def ids(body) -> list[int]:
        return [
            r["id"]
            for r in api.ok("POST", data(experiment, "/query"), body, role="researcher")
        ]

    assert ids({}) == [c["id"], b["id"], a["id"]]
    assert ids({"filters": {"n": "1"}}) == [a["id"]]
    assert ids({"filters": {"b": "yes"}}) == [c["id"], a["id"]]
    assert ids({"filters": {"b": True, "participant_id": "P1"}}) == [c["id"], a["id"]]
    assert ids({"filters": {"n": None}}) == [c["id"]]
    assert ids({"filters": {"id": b["id"]}}) == [b["id"]]
    assert ids({"filters": {"id": 2**40}}) == []
    assert ids({"filters": {"d": "2024-01-01T11:00:00+01:00"}}) == [a["id"]]
    assert ids({"filters": {"s": "x"}, "participant_id": "P2"}) == [b["id"]]
    assert ids({"participant_id": ""}) == [c["id"], b["id"], a["id"]]
    assert ids({"participant_id": None, "limit": 1, "offset": 1}) == [b["id"]]
    assert ids({"filters": {"participant_id": "a\x00b"}}) == []


def test_query_applies_date_bounds(api, experiment, dated):
    body = {
        "created_after": "2024-01-02T11:00:00+01:00",
        "created_before": "2024-01-02T10:00:00Z",
    }
    found = api.ok("POST", data(experiment, "/query"), body)
    assert [r["id"] for r in found] == [dated[1]]
    naive = api.ok(
        "POST", data(experiment, "/query"), {"created_before": "2024-01-01T10:00:00"}
    )
    assert [r["id"] for r in naive] == [dated[0]]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"foo": 1, "bar": 2}, "Unknown filter columns: ['foo', 'bar']"),
        (
            {"j": {"a": 1}},
            "Column 'j' is JSON and cannot be used as an equality filter",
        ),
        (
            {"n": 1.5},
            "Invalid value for column 'n' (INTEGER): 1.5 is not a whole number",
        ),
        ({"id": "x"}, "Invalid value for filter 'id' (INTEGER): 'x'"),
        (
            {"participant_id": 5},
            "Invalid value for filter 'participant_id' (STRING): 5",
        ),
        (
            {"b": "maybe", "x": "abc"},
            f"Invalid value for column 'b' (BOOLEAN): 'maybe': {BOOL_RULE}; "
            f"Invalid value for column 'x' (FLOAT): 'abc': {FLOAT_RULE}",
        ),
    ],
    ids=["unknown", "json", "bad-int", "bad-id", "bad-participant", "several"],
)
def test_query_filter_refusals_are_400(api, experiment, filters, message):
    response = api.post(data(experiment, "/query"), {"filters": filters})
    assert detail(response, 400) == message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"limit": 5000}, [("less_than_equal", ("body", "limit"))]),
        (
            {"limit": 0, "offset": -1},
            [
                ("greater_than_equal", ("body", "limit")),
                ("greater_than_equal", ("body", "offset")),
            ],
        ),
        ({"filters": None}, [("dict_type", ("body", "filters"))]),
        ({"filters": [1]}, [("dict_type", ("body", "filters"))]),
        (
            {"participant_id": "x" * 101},
            [("string_too_long", ("body", "participant_id"))],
        ),
    ],
    ids=[
        "limit-high",
        "low-bounds",
        "null-filters",
        "list-filters",
        "long-participant",
    ],
)
def test_query_shape_problems_are_422(api, experiment, body, expected):
    assert problems(api.post(data(experiment, "/query"), body)) == expected


def test_query_with_an_unparsable_date_is_422(api, experiment):
    response = api.post(data(experiment, "/query"), {"created_after": "garbage"})
    [(kind, loc)] = problems(response)
    assert kind.startswith("datetime") and loc == ("body", "created_after")


def test_query_without_body_is_422_missing(api, experiment):
    assert problems(api.post(data(experiment, "/query"))) == [("missing", ("body",))]


@pytest.mark.parametrize(
    ("error", "status", "text"),
    [
        (sa.exc.OperationalError, 503, "Database unavailable, please retry shortly"),
        (sa.exc.ProgrammingError, 500, "Internal server error"),
    ],
    ids=["outage", "bug"],
)
def test_database_failure_on_a_list_is_an_error_never_an_empty_list(
    api, experiment, monkeypatch, error, status, text
):
    def fail(*_args, **_kwargs):
        raise error("SELECT secret FROM stroop", {}, Exception("server closed"))

    monkeypatch.setattr("wave_web.api.data.datatables.list_rows", fail)
    for response in (
        api.get(data(experiment)),
        api.post(data(experiment, "/query"), {}),
    ):
        assert detail(response, status) == text
        assert b"secret" not in response.data

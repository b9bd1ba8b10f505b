"""Creating experiment types: table, registry row, refusals, races and the builder."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from tests.factories import make_type
from tests.htmlparse import Element
from tests.htmlparse import parse
from wave_web import columns
from wave_web import datatables
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.errors import NameTaken
from wave_web.extensions import db as _db
from wave_web.models import AuditEntry
from wave_web.models import ExperimentType

# ------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------


def by_id(page: Element, element_id: str) -> Element:
    found = page.find_all(id=element_id)
    assert len(found) == 1, f"expected one #{element_id}, found {len(found)}"
    return found[0]


def text_of(page: Element, element_id: str) -> str:
    return by_id(page, element_id).text


def _end_request_transaction() -> None:
    """Roll back what the last request left open in the shared session.

    pytest-flask pushes one request context for the whole test, so every client request
    reuses its app context and session and nothing tears the session down between
    requests; a read after a POST's commit keeps a BEGIN IMMEDIATE transaction (SQLite's
    write lock, see database.py) open that would block our own connections.
    """
    _db.session.rollback()


def inspector() -> sa.Inspector:
    _end_request_transaction()
    return sa.inspect(_db.engine)


def table_names() -> set[str]:
    return set(inspector().get_table_names())


def registry() -> list[sa.Row]:
    """The experiment_types rows, as committed."""
    _end_request_transaction()
    with _db.engine.connect() as conn:
        table = ExperimentType.__table__
        return conn.execute(sa.select(table).order_by(table.c.id)).all()


def audit_entries() -> list[sa.Row]:
    _end_request_transaction()
    with _db.engine.connect() as conn:
        return conn.execute(sa.select(AuditEntry.__table__)).all()


def builder_form(name="Reaction Task", table_name="", cols=(("rt", "FLOAT"),), **extra):
    """The fields the builder posts: name, table_name, columns-N-name/type/nullable."""
    form = {"name": name, "description": "", "table_name": table_name, **extra}
    for i, (col_name, col_type) in enumerate(cols):
        form[f"columns-{i}-name"] = col_name
        form[f"columns-{i}-type"] = col_type
        form[f"columns-{i}-nullable"] = "y"
    return form


ALL_TYPES = [ColumnDef(f"c_{t.lower()}", t) for t in columns.TYPE_NAMES]
EXPECTED_INDEXES = {
    ("experiment_uuid",),
    ("participant_id",),
    ("experiment_uuid", "id"),
    ("experiment_uuid", "participant_id", "id"),  # the grid's participant filter
}

# ------------------------------------------------------------------------------------
# The table and the registry row
# ------------------------------------------------------------------------------------


def test_created_type_has_standard_columns_then_custom_columns_in_order(db):
    before = table_names()
    defs = [
        ColumnDef("zeta", "INTEGER"),
        ColumnDef("alpha", "FLOAT", False),
        *ALL_TYPES,
    ]
    make_type("Stroop", "stroop_data", defs)

    assert table_names() - before == {"stroop_data"}
    reflected = inspector().get_columns("stroop_data")
    names = [c["name"] for c in reflected]
    assert names == [*columns.STANDARD_COLUMNS, *(d.name for d in defs)]
    nullable = {c["name"]: c["nullable"] for c in reflected}
    assert nullable["alpha"] is False
    assert nullable["zeta"] is True
    assert not any(nullable[n] for n in columns.STANDARD_COLUMNS)


def test_created_table_has_the_four_indexes(db):
    make_type("Stroop", "stroop_data")
    indexes = inspector().get_indexes("stroop_data")
    assert {tuple(i["column_names"]) for i in indexes} == EXPECTED_INDEXES
    assert len(indexes) == 4


@pytest.mark.parametrize(
    ("type_name", "sql_type"),
    [
        ("INTEGER", sa.Integer),
        ("FLOAT", sa.Float),
        ("STRING", sa.String),
        ("TEXT", sa.Text),
        ("BOOLEAN", sa.Boolean),
        ("DATETIME", sa.DateTime),
    ],
)
def test_column_gets_the_sql_type_of_its_column_type(db, type_name, sql_type):
    make_type("Typed", "typed_data", [ColumnDef("value", type_name)])
    found = {c["name"]: c["type"] for c in inspector().get_columns("typed_data")}
    assert isinstance(found["value"], sql_type)
    if type_name == "STRING":
        assert found["value"].length == 255
    if type_name == "INTEGER":
        assert not isinstance(found["value"], sa.BigInteger)


def test_registry_row_and_audit_entry_are_written_with_the_table(db):
    defs = [ColumnDef("rt", "FLOAT"), ColumnDef("ok", "BOOLEAN", False, "correct?")]
    xtype = make_type("  Stroop   task ", "stroop_data", defs, description=" first ")

    [row] = registry()
    assert row.id == xtype.id
    assert row.name == "Stroop task"
    assert row.description == "first"
    assert row.table_name == "stroop_data"
    assert row.schema_version == 1
    assert list(row.schema_definition) == ["rt", "ok"]
    assert columns.normalise_schema(row.schema_definition) == defs
    audit = audit_entries()
    assert [(a.action, a.object_id) for a in audit] == [("type.create", str(xtype.id))]


def test_type_without_custom_columns_gets_only_the_standard_columns(db):
    make_type("Bare", "bare_data", [])
    names = [c["name"] for c in inspector().get_columns("bare_data")]
    assert names == list(columns.STANDARD_COLUMNS)


def test_longest_table_name_gets_distinct_index_names(db):
    make_type("Long", "a" * 63, [ColumnDef("rt", "FLOAT")])
    indexes = inspector().get_indexes("a" * 63)
    assert {tuple(i["column_names"]) for i in indexes} == EXPECTED_INDEXES
    assert all(len(i["name"].encode()) <= 63 for i in indexes)


# ------------------------------------------------------------------------------------
# Refusals: nothing is created
# ------------------------------------------------------------------------------------

HOSTILE_TABLE_NAMES = [
    ("select", "reserved"),
    ("user", "reserved"),
    ("tags", "own tables"),
    ("alembic_version", "own tables"),
    ("pg_class", "pg_"),
    ("sqlite_sequence", "sqlite_"),
    ("x; drop table tags", "semicolon"),
    ('a"b', "double quote"),
    ("Stroop", "upper-case"),
    ("1_stroop", "start with a letter"),
    ("é" * 32, "64 bytes"),
]

HOSTILE_COLUMN_NAMES = [
    ("id", "standard column"),
    ("created_at", "standard column"),
    ("select", "reserved"),
    ("key", "reserved"),
    ("xmin", "reserved"),
    ("pg_x", "pg_"),
    ('rt"); drop table tags; --', "double quote"),
    ("a'b", "quote"),
    ("reaction time", "space"),
    ("ReactionTime", "upper-case"),
    ("", "empty"),
    ("größe", "ö"),
    ("é" * 32, "64 bytes"),
]


def _assert_nothing_created(before: set[str]) -> None:
    assert table_names() == before
    assert registry() == []
    assert audit_entries() == []


@pytest.mark.parametrize(("table_name", "reason"), HOSTILE_TABLE_NAMES)
def test_hostile_table_name_is_refused_and_nothing_is_created(db, table_name, reason):
    before = table_names()
    with pytest.raises(schema.SchemaProblems) as info:
        make_type("Hostile", table_name, [ColumnDef("rt", "FLOAT")])
    [problem] = info.value.problems
    assert problem.field == "table_name"
    assert reason in problem.message
    _assert_nothing_created(before)


@pytest.mark.parametrize(("column_name", "reason"), HOSTILE_COLUMN_NAMES)
def test_hostile_column_name_is_refused_and_nothing_is_created(db, column_name, reason):
    before = table_names()
    defs = [ColumnDef("rt", "FLOAT"), ColumnDef(column_name, "INTEGER")]
    with pytest.raises(schema.SchemaProblems) as info:
        make_type("Hostile", "hostile_data", defs)
    [problem] = info.value.problems
    assert problem.field == "columns-1-name"
    assert reason in problem.message
    _assert_nothing_created(before)


@pytest.mark.parametrize("second", ["rt", "RT"])
def test_duplicate_column_name_is_refused_ignoring_case(db, second):
    before = table_names()
    with pytest.raises(schema.SchemaProblems) as info:
        make_type(
            "Dup", "dup_data", [ColumnDef("rt", "FLOAT"), ColumnDef(second, "INTEGER")]
        )
    assert [p.field for p in info.value.problems] == ["columns-1-name"]
    _assert_nothing_created(before)


def test_unknown_column_type_is_refused(db):
    before = table_names()
    with pytest.raises(schema.SchemaProblems) as info:
        make_type("Odd", "odd_data", [ColumnDef("rt", "DECIMAL")])
    assert [p.field for p in info.value.problems] == ["columns-0-type"]
    _assert_nothing_created(before)


def test_every_problem_is_reported_at_once(db):
    with pytest.raises(schema.SchemaProblems) as info:
        make_type("", "select", [ColumnDef("id", "FLOAT"), ColumnDef("a b", "FLOAT")])
    fields = [p.field for p in info.value.problems]
    assert fields == ["name", "table_name", "columns-0-name", "columns-1-name"]


@pytest.mark.parametrize("second_name", ["Stroop", "STROOP", "  stroop  "])
def test_same_display_name_twice_is_refused(db, second_name):
    make_type("Stroop", "stroop_data")
    before = table_names()
    with pytest.raises(schema.SchemaProblems) as info:
        make_type(second_name, "stroop_two")
    [problem] = info.value.problems
    assert problem.field == "name"
    assert "already exists" in problem.message
    assert table_names() == before
    assert len(registry()) == 1


def test_table_name_of_another_type_is_refused(db):
    make_type("Stroop", "stroop_data")
    with pytest.raises(schema.SchemaProblems) as info:
        make_type("Stroop 2", "stroop_data")
    [problem] = info.value.problems
    assert problem.field == "table_name"
    assert "taken" in problem.message
    assert problem.suggestion == "stroop_data_2"


def test_table_name_of_an_unregistered_table_is_refused(db):
    legacy = sa.Table("legacy_data", sa.MetaData(), sa.Column("x", sa.Integer))
    legacy.create(db.engine)
    with pytest.raises(schema.SchemaProblems) as info:
        make_type("Legacy", "legacy_data")
    [problem] = info.value.problems
    assert problem.field == "table_name"
    assert "taken" in problem.message
    assert registry() == []
    assert [c["name"] for c in inspector().get_columns("legacy_data")] == ["x"]


def test_table_appearing_after_the_check_gives_name_taken(db, monkeypatch):
    """Someone creates the table between our check and our CREATE TABLE."""
    legacy = sa.Table("late_data", sa.MetaData(), sa.Column("x", sa.Integer))
    legacy.create(db.engine)
    monkeypatch.setattr(schema, "taken_table_names", set)
    with pytest.raises(NameTaken):
        make_type("Late", "late_data")
    assert registry() == []
    assert [c["name"] for c in inspector().get_columns("late_data")] == ["x"]


# ------------------------------------------------------------------------------------
# Transactions
# ------------------------------------------------------------------------------------


def _fail(*args, **kwargs):
    raise RuntimeError("boom after CREATE TABLE")


def test_failure_after_create_table_leaves_no_table_and_no_registry_row(
    db, monkeypatch
):
    """The DDL is part of create_type's transaction, on SQLite too."""
    created = []
    real_create = schema.datatables.create_table

    def create_then_note(conn, table_name, defs, **options):
        table = real_create(conn, table_name, defs, **options)
        created.append(sa.inspect(conn).has_table(table_name))
        return table

    monkeypatch.setattr(schema.datatables, "create_table", create_then_note)
    monkeypatch.setattr(schema, "record", _fail)
    before = table_names()
    with pytest.raises(RuntimeError):
        make_type("Doomed", "doomed_data")
    assert created == [True]  # the table did exist inside the transaction
    # The same session sees no table: create_type rolled its transaction back.
    assert not sa.inspect(db.session.connection()).has_table("doomed_data")
    db.session.commit()
    _assert_nothing_created(before)


def test_create_table_as_first_statement_rolls_back(db):
    """pysqlite runs DDL outside a transaction unless database.py emits BEGIN itself."""
    before = table_names()
    with pytest.raises(RuntimeError), db.engine.connect() as conn, conn.begin():
        datatables.create_table(conn, "first_data", [ColumnDef("rt", "FLOAT")])
        assert sa.inspect(conn).has_table("first_data")
        raise RuntimeError("roll back")
    assert table_names() == before


def test_failure_after_create_table_over_http_is_a_500_and_leaves_nothing(
    client, db, monkeypatch
):
    monkeypatch.setattr(schema, "record", _fail)
    before = table_names()
    response = client.post("/types/new", data=builder_form(action="create"))
    assert response.status_code == 500
    _assert_nothing_created(before)


def test_failed_create_can_be_retried_with_the_same_names(db, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(schema, "record", _fail)
        with pytest.raises(RuntimeError):
            make_type("Retry", "retry_data")
    xtype = make_type("Retry", "retry_data")
    assert xtype.table_name in table_names()
    assert [t.name for t in registry()] == ["Retry"]


def _race(app, monkeypatch, n, args_for):
    """create_type in n threads that all pass the checks before any of them writes."""
    barrier = threading.Barrier(n, timeout=20)
    real_check = schema.check_new_type

    def check_then_wait(*args, **kwargs):
        result = real_check(*args, **kwargs)
        barrier.wait()
        return result

    monkeypatch.setattr(schema, "check_new_type", check_then_wait)
    outcomes: list = [None] * n

    def worker(i):
        with app.app_context():
            try:
                outcomes[i] = schema.create_type(*args_for(i)).table_name
            except Exception as exc:  # the test inspects every outcome
                outcomes[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return outcomes


@pytest.mark.parametrize(
    "args_for",
    [
        pytest.param(lambda i: ("Race", "", "race_data", []), id="same-name-and-table"),
        pytest.param(lambda i: (f"Race {i}", "", "race_data", []), id="same-table"),
        pytest.param(lambda i: ("Race", "", f"race_{i}", []), id="same-name"),
    ],
)
def test_racing_creators_of_one_name_one_wins_the_others_get_name_taken(
    app, db, dialect, monkeypatch, args_for
):
    if dialect != "postgresql":
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL")
    before = table_names()
    outcomes = _race(app, monkeypatch, 4, args_for)

    winners = [o for o in outcomes if isinstance(o, str)]
    losers = [o for o in outcomes if not isinstance(o, str)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, NameTaken) for o in losers), outcomes
    assert table_names() - before == {winners[0]}
    assert [t.table_name for t in registry()] == winners


# ------------------------------------------------------------------------------------
# The builder over HTTP
# ------------------------------------------------------------------------------------


def test_builder_page_shows_one_empty_column_row(client):
    response = client.get("/types/new")
    assert response.status_code == 200
    page = parse(response.data)
    assert len(page.find_all("li", "builder-row")) == 1
    assert by_id(page, "columns-0-name").attrs["value"] == ""


@pytest.mark.parametrize("htmx", [True, False])
def test_add_button_returns_the_builder_with_one_more_row(client, db, htmx):
    before = table_names()
    headers = {"HX-Request": "true"} if htmx else {}
    form = builder_form(cols=[("rt", "FLOAT"), ("ok", "BOOLEAN")], action="add")
    response = client.post("/types/new", data=form, headers=headers)
    assert response.status_code == 200
    page = parse(response.data)
    assert (b"<html" in response.data) is not htmx
    assert page.find(id="builder") is not None
    assert len(page.find_all("li", "builder-row")) == 3
    assert by_id(page, "columns-1-name").attrs["value"] == "ok"
    assert by_id(page, "columns-2-name").attrs["value"] == ""
    assert table_names() == before


def test_remove_button_drops_that_row_and_keeps_the_others(client):
    form = builder_form(
        cols=[("first", "FLOAT"), ("second", "JSON")], action="remove-0"
    )
    response = client.post("/types/new", data=form, headers={"HX-Request": "true"})
    assert response.status_code == 200
    page = parse(response.data)
    assert len(page.find_all("li", "builder-row")) == 1
    assert by_id(page, "columns-0-name").attrs["value"] == "second"
    selected = [o for o in page.find_all("option") if "selected" in o.attrs]
    assert [o.attrs["value"] for o in selected] == ["JSON"]


def test_move_down_swaps_two_rows(client):
    form = builder_form(cols=[("first", "FLOAT"), ("second", "JSON")], action="down-0")
    page = parse(
        client.post("/types/new", data=form, headers={"HX-Request": "true"}).data
    )
    assert by_id(page, "columns-0-name").attrs["value"] == "second"
    assert by_id(page, "columns-1-name").attrs["value"] == "first"


@pytest.mark.parametrize("action", ["remove-9", "up-0", "bogus"])
def test_out_of_range_or_unknown_action_changes_nothing(client, action):
    form = builder_form(cols=[("first", "FLOAT"), ("second", "JSON")], action=action)
    response = client.post("/types/new", data=form, headers={"HX-Request": "true"})
    assert response.status_code == 200
    page = parse(response.data)
    values = [by_id(page, f"columns-{i}-name").attrs["value"] for i in range(2)]
    assert values == ["first", "second"]


def test_create_redirects_to_the_new_type_and_makes_the_table(client, db):
    form = builder_form(
        "Stroop", "stroop_data", [("rt", "FLOAT"), ("ok", "BOOLEAN")], action="create"
    )
    response = client.post("/types/new", data=form)
    assert response.status_code == 303
    [xtype] = registry()
    assert response.headers["Location"] == f"/types/{xtype.id}"
    assert "stroop_data" in table_names()
    names = [c["name"] for c in inspector().get_columns("stroop_data")]
    assert names == [*columns.STANDARD_COLUMNS, "rt", "ok"]
    page = parse(client.get(response.headers["Location"]).data)
    assert "Created the type" in text_of(page, "flashes")


def test_create_from_htmx_redirects_with_a_header(client, db):
    form = builder_form("Stroop", "stroop_data", action="create")
    response = client.post("/types/new", data=form, headers={"HX-Request": "true"})
    assert response.status_code == 204
    [xtype] = registry()
    assert response.headers["HX-Redirect"] == f"/types/{xtype.id}"


def test_create_leaves_out_untouched_empty_rows(client, db):
    form = builder_form("Stroop", "stroop_data", [("rt", "FLOAT"), ("", "FLOAT")])
    response = client.post("/types/new", data={**form, "action": "create"})
    assert response.status_code == 303
    [xtype] = registry()
    assert list(xtype.schema_definition) == ["rt"]


def test_not_nullable_column_is_created_required(client, db):
    form = builder_form("Stroop", "stroop_data", [("rt", "FLOAT")], action="create")
    del form["columns-0-nullable"]
    assert client.post("/types/new", data=form).status_code == 303
    [rt] = [c for c in inspector().get_columns("stroop_data") if c["name"] == "rt"]
    assert rt["nullable"] is False


# A sample over HTTP; the full lists run against schema.create_type above.
HTTP_COLUMN_NAMES = [
    ("id", "standard column"),
    ("select", "reserved"),
    ('rt"); drop table tags; --', "double quote"),
    ("", "empty"),
]
HTTP_TABLE_NAMES = [
    ("tags", "own tables"),
    ("pg_class", "pg_"),
    ("x; drop table tags", "semicolon"),
]


@pytest.mark.parametrize(("column_name", "reason"), HTTP_COLUMN_NAMES)
def test_create_with_invalid_column_name_is_422_with_the_reason(
    client, db, column_name, reason
):
    before = table_names()
    form = builder_form(
        cols=[("rt", "FLOAT"), (column_name, "INTEGER")], action="create"
    )
    if column_name == "":
        form["columns-1-description"] = "described but unnamed"
    response = client.post("/types/new", data=form)
    assert response.status_code == 422
    page = parse(response.data)
    assert reason in text_of(page, "columns-1-feedback")
    assert text_of(page, "columns-0-feedback") == ""
    assert "is-invalid" in by_id(page, "columns-1-name").attrs["class"]
    assert by_id(page, "columns-1-name").attrs["value"] == column_name
    _assert_nothing_created(before)


@pytest.mark.parametrize(("table_name", "reason"), HTTP_TABLE_NAMES)
def test_create_with_invalid_table_name_is_422_with_the_reason(
    client, db, table_name, reason
):
    before = table_names()
    response = client.post(
        "/types/new", data=builder_form(table_name=table_name, action="create")
    )
    assert response.status_code == 422
    assert reason in text_of(parse(response.data), "table_name-feedback")
    _assert_nothing_created(before)


@pytest.mark.parametrize("second", ["rt", "RT"])
def test_create_with_duplicate_column_names_is_422(client, db, second):
    before = table_names()
    form = builder_form(cols=[("rt", "FLOAT"), (second, "INTEGER")], action="create")
    response = client.post("/types/new", data=form)
    assert response.status_code == 422
    feedback = text_of(parse(response.data), "columns-1-feedback")
    assert ("already used" if second == "rt" else "upper-case") in feedback
    _assert_nothing_created(before)


def test_create_with_the_display_name_of_another_type_is_422(client, db):
    make_type("Stroop", "stroop_data")
    before = table_names()
    form = builder_form("stroop", "stroop_two", action="create")
    response = client.post("/types/new", data=form)
    assert response.status_code == 422
    assert "already exists" in text_of(parse(response.data), "name-feedback")
    assert table_names() == before
    assert len(registry()) == 1


def test_create_without_table_name_uses_the_proposed_name(client, db):
    response = client.post(
        "/types/new", data=builder_form("Reaction Task", "", action="create")
    )
    assert response.status_code == 303
    [xtype] = registry()
    assert xtype.table_name == "reaction_task"
    assert "reaction_task" in table_names()


def test_proposed_table_name_avoids_a_reserved_word(client, db):
    response = client.post(
        "/types/new", data=builder_form("Select", "", action="create")
    )
    assert response.status_code == 303
    [xtype] = registry()
    assert xtype.table_name == "select_data"


def test_live_check_reports_a_bad_column_name_out_of_band(client, db):
    before = table_names()
    form = builder_form(cols=[("rt", "FLOAT"), ("select", "INTEGER")])
    response = client.post("/types/new/check", data=form)
    assert response.status_code == 200
    page = parse(response.data)
    feedback = by_id(page, "columns-1-feedback")
    assert feedback.attrs.get("hx-swap-oob") == "true"
    assert "reserved" in text_of(page, "columns-1-feedback")
    assert "select_value" in text_of(page, "columns-1-feedback")
    assert text_of(page, "columns-0-feedback") == ""
    assert by_id(page, "preview").attrs.get("hx-swap-oob") == "true"
    assert not page.find_all("pre", "ddl")
    assert page.find(id="builder") is None
    assert table_names() == before


def test_live_check_of_a_good_builder_previews_the_sql(client, db):
    form = builder_form("Reaction Task", "", [("rt", "FLOAT"), ("ok", "BOOLEAN")])
    page = parse(client.post("/types/new/check", data=form).data)
    assert text_of(page, "name-feedback") == ""
    assert text_of(page, "table_name-feedback") == ""
    assert "reaction_task" in text_of(page, "table_name-hint")
    [ddl] = page.find_all("pre", "ddl")
    sql = ddl.text
    assert sql.count("CREATE TABLE") == 1
    assert sql.count("CREATE INDEX") == 4
    assert "reaction_task" in sql
    shown = [td.text for td in page.find_all("td", "mono")]
    assert shown == [*columns.STANDARD_COLUMNS, "rt", "ok"]
    assert registry() == []


def test_live_check_says_when_the_display_name_already_exists(client, db):
    make_type("Stroop", "stroop_data")
    page = parse(client.post("/types/new/check", data=builder_form("STROOP")).data)
    assert "already exists" in text_of(page, "name-feedback")


def test_live_check_says_when_the_table_name_is_taken(client, db):
    make_type("Stroop", "stroop_data")
    form = builder_form("Other", "stroop_data")
    page = parse(client.post("/types/new/check", data=form).data)
    assert "taken" in text_of(page, "table_name-feedback")
    assert "stroop_data_2" in text_of(page, "table_name-feedback")


def test_live_check_does_not_complain_about_an_untouched_form(client):
    form = builder_form("", "", [("", "FLOAT")])
    page = parse(client.post("/types/new/check", data=form).data)
    assert text_of(page, "name-feedback") == ""
    assert text_of(page, "columns-0-feedback") == ""


# ------------------------------------------------------------------------------------
# Escaping
# ------------------------------------------------------------------------------------

XSS = '"><script>alert(1)</script>'


def _assert_no_injected_script(response) -> Element:
    page = parse(response.data)
    assert not any("alert(1)" in s.text for s in page.find_all("script"))
    assert b"<script>alert(1)" not in response.data
    return page


def test_display_name_with_html_is_escaped_on_the_type_pages(client, db):
    xtype = make_type(XSS, "xss_data", description=XSS)
    page = _assert_no_injected_script(client.get(f"/types/{xtype.id}"))
    assert [h.text for h in page.find_all("h1")] == [XSS]
    index = _assert_no_injected_script(client.get("/types/"))
    assert any(XSS in a.text for a in index.find_all("a"))
    for path in (f"/types/{xtype.id}/edit", f"/types/{xtype.id}/delete"):
        _assert_no_injected_script(client.get(path))


def test_display_name_with_html_is_escaped_in_the_builder_and_its_errors(client, db):
    make_type(XSS, "xss_data")
    form = builder_form(XSS, "xss_two", cols=[(XSS, "FLOAT")], action="create")
    response = client.post("/types/new", data=form)
    assert response.status_code == 422
    page = _assert_no_injected_script(response)
    assert by_id(page, "name").attrs["value"] == XSS
    assert "already exists" in text_of(page, "name-feedback")
    assert XSS in text_of(page, "columns-0-feedback")
    checked = client.post("/types/new/check", data=form)
    _assert_no_injected_script(checked)


def test_flash_after_creating_a_type_escapes_its_name(client, db):
    response = client.post(
        "/types/new",
        data=builder_form(XSS, "xss_data", action="create"),
        follow_redirects=True,
    )
    assert response.status_code == 200
    page = _assert_no_injected_script(response)
    assert XSS in text_of(page, "flashes")

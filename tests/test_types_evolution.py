"""Types over time: every schema change alters the real table and the registry together.

Each change is checked on the database itself (a fresh connection and SQLAlchemy's
inspector), never only on what the domain function returned.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import catalog
from wave_web import datatables
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.errors import Conflict
from wave_web.errors import InvalidName
from wave_web.errors import InvalidValue
from wave_web.errors import NotFound
from wave_web.models import AuditEntry
from wave_web.models import Experiment
from wave_web.models import ExperimentType

REGISTRY = ExperimentType.__table__
TABLE = "stroop_data"
COLUMNS = (
    ColumnDef("reaction_time", "FLOAT"),
    ColumnDef("accuracy", "FLOAT"),
    ColumnDef("difficulty_level", "INTEGER", nullable=False),
    ColumnDef("stimulus_type", "STRING"),
    ColumnDef("started_at", "DATETIME"),
)
ROWS = (
    {
        "participant_id": "P1",
        "reaction_time": 2.0,
        "accuracy": 0.5,
        "difficulty_level": 1,
        "stimulus_type": "12",
        "started_at": dt.datetime(2024, 3, 4, 14, 30),
    },
    {
        "participant_id": "P2",
        "reaction_time": 1.5,
        "accuracy": None,
        "difficulty_level": 2,
        "stimulus_type": "red",
        "started_at": None,
    },
    {
        "participant_id": "P3",
        "reaction_time": None,
        "accuracy": 0.75,
        "difficulty_level": 3,
        "stimulus_type": "-7",
        "started_at": dt.datetime(2024, 3, 5, 9, 0),
    },
)
CATALOG_QUERY = re.compile(
    r"pg_catalog|information_schema|sqlite_master|sqlite_schema|pragma", re.IGNORECASE
)


@dataclass
class Filled:
    """A type with one experiment and three rows; `ids` maps participant_id to row id.

    The ids are kept as plain values: reading them from the (expired) ORM objects would
    open a transaction in the test's session, whose SQLite snapshot would then hide rows
    written on other connections.
    """

    xtype: ExperimentType
    experiment: Experiment
    ids: dict[str, int]
    type_id: int
    experiment_uuid: uuid.UUID


@pytest.fixture
def filled(db) -> Filled:
    xtype = make_type("Stroop task", TABLE, COLUMNS)
    experiment = make_experiment(xtype, "Spring pilot")
    type_id, experiment_uuid = xtype.id, experiment.uuid
    make_rows(xtype, experiment, [dict(r) for r in ROWS])
    ids = {pid: row_id for row_id, pid in column_values(db, "participant_id").items()}
    return Filled(xtype, experiment, ids, type_id, experiment_uuid)


# -- reading the database on a connection of its own -----------------------------------


def real_columns(db, table_name: str = TABLE) -> dict[str, dict[str, Any]]:
    """The physical columns by name, in table order (inspector)."""
    with db.engine.connect() as conn:
        return {c["name"]: c for c in sa.inspect(conn).get_columns(table_name)}


def has_table(db, table_name: str = TABLE) -> bool:
    with db.engine.connect() as conn:
        return sa.inspect(conn).has_table(table_name)


def registry(db, type_id: int) -> tuple[dict[str, Any], int]:
    """(schema_definition, schema_version) as committed."""
    with db.engine.connect() as conn:
        row = conn.execute(
            sa.select(REGISTRY.c.schema_definition, REGISTRY.c.schema_version).where(
                REGISTRY.c.id == type_id
            )
        ).one()
    return row[0], row[1]


def column_values(db, name: str, table_name: str = TABLE) -> dict[int, Any]:
    """Row id → raw stored value of one column."""
    table = sa.table(table_name, sa.column("id"), sa.column(name))
    with db.engine.connect() as conn:
        return dict(
            conn.execute(
                sa.select(table.c.id, table.c[name]).order_by(table.c.id)
            ).all()
        )


def audit_actions(db, type_id: int) -> list[str]:
    audit = AuditEntry.__table__
    with db.engine.connect() as conn:
        return list(
            conn.scalars(
                sa.select(audit.c.action)
                .where(
                    audit.c.object_type == "experiment_type",
                    audit.c.object_id == str(type_id),
                )
                .order_by(audit.c.id)
            )
        )


def snapshot(db, type_id: int, table_name: str = TABLE) -> dict[str, Any]:
    """What a schema change touches: columns, indexes, data, registry, audit log."""
    with db.engine.connect() as conn:
        inspector = sa.inspect(conn)
        table = sa.Table(table_name, sa.MetaData(), autoload_with=conn)
        return {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"])
                for c in inspector.get_columns(table_name)
            ],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]))
                for i in inspector.get_indexes(table_name)
            ),
            "rows": [
                dict(r)
                for r in conn.execute(sa.select(table).order_by(table.c.id)).mappings()
            ],
            "registry": tuple(
                conn.execute(
                    sa.select(
                        REGISTRY.c.schema_definition, REGISTRY.c.schema_version
                    ).where(REGISTRY.c.id == type_id)
                ).one()
            ),
            "audit": conn.execute(
                sa.select(sa.func.count()).select_from(AuditEntry.__table__)
            ).scalar_one(),
        }


def insert_row(db, filled: Filled, participant_id: str = "P9", **values: Any) -> None:
    """Insert one row on a connection of its own, bypassing the app and its session."""
    table = sa.table(
        TABLE,
        sa.column("experiment_uuid", sa.Uuid),
        sa.column("participant_id"),
        sa.column("created_at", sa.DateTime),
        sa.column("updated_at", sa.DateTime),
        *(sa.column(name) for name in values),
    )
    now = dt.datetime(2026, 1, 1)
    with db.engine.begin() as conn:
        conn.execute(
            table.insert().values(
                experiment_uuid=filled.experiment_uuid,
                participant_id=participant_id,
                created_at=now,
                updated_at=now,
                **values,
            )
        )


class _Cells(HTMLParser):
    """The text of every <td> per <tr>."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(self._cell.strip())
            self._cell = None


def refused_rows(page: str) -> list[list[str]]:
    """The type page's "Not changed" rows: [row id, participant, value, problem]."""
    start = page.index('id="refused"')
    parser = _Cells()
    parser.feed(page[start : page.index("</div>", start)])
    return [row for row in parser.rows if row]


# -- add_column ------------------------------------------------------------------------


def test_added_optional_column_is_appended_to_table_and_registry(db, filled):
    xtype = filled.xtype
    definition, version = registry(db, filled.type_id)

    schema.add_column(
        xtype, ColumnDef("notes", "TEXT", True, "What the experimenter saw")
    )

    new_definition, new_version = registry(db, filled.type_id)
    assert list(new_definition) == [*definition, "notes"]
    assert new_definition["notes"] == {
        "type": "TEXT",
        "nullable": True,
        "description": "What the experimenter saw",
    }
    assert new_version >= version + 1
    real = real_columns(db)
    assert list(real)[-1] == "notes"
    assert isinstance(real["notes"]["type"], sa.Text)
    assert real["notes"]["nullable"] is True
    assert set(column_values(db, "notes").values()) == {None}
    assert audit_actions(db, filled.type_id)[-1] == "type.add_column"


def test_required_column_without_fill_value_is_refused_when_rows_exist(db, filled):
    before = snapshot(db, filled.type_id)

    with pytest.raises(InvalidValue, match="already has rows"):
        schema.add_column(filled.xtype, ColumnDef("block", "INTEGER", nullable=False))
    db.session.rollback()

    assert snapshot(db, filled.type_id) == before


def test_required_column_without_fill_value_is_added_to_an_empty_table(db):
    xtype = make_type("Empty task", "empty_data", COLUMNS)

    schema.add_column(xtype, ColumnDef("block", "INTEGER", nullable=False))

    assert real_columns(db, "empty_data")["block"]["nullable"] is False
    assert registry(db, xtype.id)[0]["block"] == {"type": "INTEGER", "nullable": False}


def test_required_column_with_fill_value_fills_existing_rows_and_is_not_null(
    db, filled
):
    xtype = filled.xtype

    schema.add_column(xtype, ColumnDef("block", "INTEGER", nullable=False), " 3 ")

    assert column_values(db, "block") == {row_id: 3 for row_id in filled.ids.values()}
    assert real_columns(db)["block"]["nullable"] is False
    assert registry(db, filled.type_id)[0]["block"]["nullable"] is False
    with pytest.raises(sa.exc.IntegrityError):
        insert_row(db, filled, difficulty_level=1, block=None)


def test_invalid_fill_value_is_refused_with_the_value_and_the_rule(db, filled):
    before = snapshot(db, filled.type_id)

    with pytest.raises(InvalidValue) as refused:
        schema.add_column(
            filled.xtype, ColumnDef("block", "INTEGER", nullable=False), "three"
        )
    db.session.rollback()

    assert "“three”" in refused.value.message
    assert "whole number" in refused.value.message
    assert snapshot(db, filled.type_id) == before


@pytest.mark.parametrize(
    "name",
    [
        'x"; DROP TABLE experiments; --',
        "notes'); DROP TABLE tags; --",
        "reaction time",
        "Notes",
        "select",
        "participant_id",
        "pg_notes",
        "n" * 64,
        "",
        "accuracy",
    ],
)
def test_add_column_refuses_invalid_hostile_and_duplicate_names(db, filled, name):
    before = snapshot(db, filled.type_id)

    with pytest.raises(InvalidValue) as refused:
        schema.add_column(filled.xtype, ColumnDef(name, "TEXT"))
    db.session.rollback()

    assert f"column name “{name}”" in refused.value.message
    assert snapshot(db, filled.type_id) == before
    assert has_table(db, "experiments") and has_table(db, "tags")


def test_add_column_refuses_a_name_the_type_already_uses(db, filled):
    with pytest.raises(InvalidValue, match="already used by another column"):
        schema.add_column(filled.xtype, ColumnDef("accuracy", "INTEGER"))


def test_add_column_form_adds_the_column_and_redirects_to_the_type_page(
    client, db, filled
):
    type_id = filled.type_id

    response = client.post(
        f"/types/{type_id}/columns",
        data={"name": "notes", "type": "text", "nullable": "y", "description": ""},
    )

    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/types/{type_id}#columns")
    assert "notes" in real_columns(db)
    assert registry(db, type_id)[0]["notes"] == {"type": "TEXT", "nullable": True}


def test_add_column_form_shows_why_a_required_column_is_refused(client, db, filled):
    response = client.post(
        f"/types/{filled.type_id}/columns", data={"name": "block", "type": "INTEGER"}
    )

    assert response.status_code == 422
    assert "already has rows" in response.get_data(as_text=True)
    assert "block" not in real_columns(db)


# -- rename_column ---------------------------------------------------------------------


def test_renamed_column_keeps_its_data_position_and_the_indexes(db, filled):
    xtype = filled.xtype
    before = snapshot(db, filled.type_id)
    definition, version = registry(db, filled.type_id)

    schema.rename_column(xtype, "accuracy", "hit_rate")

    after = snapshot(db, filled.type_id)
    new_definition, new_version = registry(db, filled.type_id)
    assert list(new_definition) == [
        "hit_rate" if name == "accuracy" else name for name in definition
    ]
    assert new_definition["hit_rate"] == definition["accuracy"]
    assert new_version >= version + 1
    assert "accuracy" not in real_columns(db)
    renamed = [
        {("hit_rate" if k == "accuracy" else k): v for k, v in row.items()}
        for row in before["rows"]
    ]
    assert after["rows"] == renamed
    assert after["indexes"] == before["indexes"]
    assert audit_actions(db, filled.type_id)[-1] == "type.rename_column"


@pytest.mark.parametrize(
    "new_name", ["hit rate", "Hit_rate", "reaction_time", "id", "drop", 'a"b', "9lives"]
)
def test_rename_to_an_invalid_or_taken_name_is_refused(db, filled, new_name):
    before = snapshot(db, filled.type_id)

    with pytest.raises(InvalidName):
        schema.rename_column(filled.xtype, "accuracy", new_name)
    db.session.rollback()

    assert snapshot(db, filled.type_id) == before


def test_renaming_an_unknown_column_is_not_found(db, filled):
    with pytest.raises(NotFound):
        schema.rename_column(filled.xtype, "no_such_column", "other")


def test_renaming_an_unknown_column_over_http_is_a_404(client, db, filled):
    response = client.post(
        f"/types/{filled.type_id}/columns/no_such_column/rename",
        data={"new_name": "other"},
    )

    assert response.status_code == 404
    assert "other" not in real_columns(db)


# -- set_nullable ----------------------------------------------------------------------


def test_making_a_column_required_is_refused_while_rows_lack_a_value(db, filled):
    before = snapshot(db, filled.type_id)

    with pytest.raises(schema.ConversionRefused) as refused:
        schema.set_nullable(filled.xtype, "accuracy", False)
    db.session.rollback()

    assert refused.value.count == 1
    assert [o.id for o in refused.value.offenders] == [filled.ids["P2"]]
    assert snapshot(db, filled.type_id) == before


def test_make_required_form_answers_409_with_the_rows_that_lack_a_value(
    client, db, filled
):
    insert_row(db, filled, difficulty_level=4, accuracy=None)
    null_ids = [i for i, v in column_values(db, "accuracy").items() if v is None]

    response = client.post(
        f"/types/{filled.type_id}/columns/accuracy/nullable", data={"nullable": "false"}
    )

    assert response.status_code == 409
    shown = refused_rows(response.get_data(as_text=True))
    assert [int(row[0]) for row in shown] == null_ids
    assert real_columns(db)["accuracy"]["nullable"] is True


def test_column_without_empty_values_becomes_required_and_back_optional(db, filled):
    xtype = filled.xtype
    version = registry(db, filled.type_id)[1]

    schema.set_nullable(xtype, "reaction_time", True)  # already optional: no change
    assert registry(db, filled.type_id)[1] == version
    schema.set_nullable(xtype, "stimulus_type", False)

    assert real_columns(db)["stimulus_type"]["nullable"] is False
    assert registry(db, filled.type_id)[0]["stimulus_type"]["nullable"] is False
    with pytest.raises(sa.exc.IntegrityError):
        insert_row(db, filled, difficulty_level=1, stimulus_type=None)

    schema.set_nullable(xtype, "stimulus_type", True)

    assert real_columns(db)["stimulus_type"]["nullable"] is True
    assert registry(db, filled.type_id)[0]["stimulus_type"]["nullable"] is True
    insert_row(db, filled, difficulty_level=1, stimulus_type=None)
    assert audit_actions(db, filled.type_id)[-2:] == [
        "type.set_nullable",
        "type.set_nullable",
    ]


# -- drop_column -----------------------------------------------------------------------


@pytest.mark.parametrize("confirm", ["", "stimulus", "Stimulus_type", "accuracy"])
def test_drop_with_a_wrong_confirmation_drops_nothing(db, filled, confirm):
    before = snapshot(db, filled.type_id)

    with pytest.raises(InvalidValue, match="exactly to confirm"):
        schema.drop_column(filled.xtype, "stimulus_type", confirm)
    db.session.rollback()

    assert snapshot(db, filled.type_id) == before


def test_drop_with_the_column_name_drops_column_and_registry_entry(db, filled):
    xtype = filled.xtype
    before = snapshot(db, filled.type_id)
    definition = registry(db, filled.type_id)[0]

    schema.drop_column(xtype, "stimulus_type", " stimulus_type ")

    assert "stimulus_type" not in real_columns(db)
    assert list(registry(db, filled.type_id)[0]) == [
        n for n in definition if n != "stimulus_type"
    ]
    kept = [
        {k: v for k, v in row.items() if k != "stimulus_type"} for row in before["rows"]
    ]
    assert snapshot(db, filled.type_id)["rows"] == kept
    assert audit_actions(db, filled.type_id)[-1] == "type.drop_column"


def test_drop_column_form_refuses_a_wrong_confirmation_then_drops(client, db, filled):
    url = f"/types/{filled.type_id}/columns/stimulus_type/drop"

    refused = client.post(url, data={"confirm": "accuracy"})
    assert refused.status_code == 422
    assert "exactly to confirm" in refused.get_data(as_text=True)
    assert "stimulus_type" in real_columns(db)

    dropped = client.post(url, data={"confirm": "stimulus_type"})
    assert dropped.status_code == 303
    assert "stimulus_type" not in real_columns(db)


# -- change_type -----------------------------------------------------------------------


def test_string_column_whose_values_are_all_numbers_becomes_integer(db):
    xtype = make_type(
        "Codes", "codes_data", [ColumnDef("code", "STRING"), ColumnDef("note", "TEXT")]
    )
    experiment = make_experiment(xtype)
    make_rows(
        xtype,
        experiment,
        [
            {"participant_id": "P1", "code": "12", "note": "a"},
            {"participant_id": "P2", "code": " -7 ", "note": "b"},
            {"participant_id": "P3", "code": None, "note": "c"},
        ],
    )
    definition, version = registry(db, xtype.id)

    schema.change_type(xtype, "code", "integer")

    assert sorted(column_values(db, "code", "codes_data").values(), key=str) == [
        -7,
        12,
        None,
    ]
    assert isinstance(real_columns(db, "codes_data")["code"]["type"], sa.Integer)
    new_definition, new_version = registry(db, xtype.id)
    assert list(new_definition) == list(definition)
    assert new_definition["code"] == {"type": "INTEGER", "nullable": True}
    assert new_version >= version + 1
    assert audit_actions(db, xtype.id)[-1] == "type.change_type"


def test_string_to_integer_is_refused_listing_exactly_the_rows_that_do_not_convert(
    db, filled
):
    bad = {"P4": "1.5", "P5": "   ", "P6": "1e3"}
    for pid, value in bad.items():
        insert_row(db, filled, pid, difficulty_level=1, stimulus_type=value)
    values = column_values(db, "stimulus_type")
    before = snapshot(db, filled.type_id)

    with pytest.raises(schema.ConversionRefused) as refused:
        schema.change_type(filled.xtype, "stimulus_type", "INTEGER")
    db.session.rollback()

    expected = {filled.ids["P2"]: "red"} | {
        row_id: value for row_id, value in values.items() if value in bad.values()
    }
    offenders = refused.value.offenders
    assert {o.id: o.value for o in offenders} == expected
    assert refused.value.count == len(expected) == 4
    assert all("whole number" in o.reason for o in offenders)
    assert snapshot(db, filled.type_id) == before


def test_float_to_integer_refuses_fractions_and_converts_whole_numbers(db, filled):
    xtype = filled.xtype
    before = snapshot(db, filled.type_id)

    with pytest.raises(schema.ConversionRefused) as refused:
        schema.change_type(xtype, "reaction_time", "INTEGER")
    db.session.rollback()

    [offender] = refused.value.offenders
    assert (offender.id, offender.value, offender.reason) == (
        filled.ids["P2"],
        "1.5",
        "has a fractional part",
    )
    assert snapshot(db, filled.type_id) == before

    with db.engine.begin() as conn:
        table = sa.table(TABLE, sa.column("id"), sa.column("reaction_time"))
        conn.execute(
            sa.update(table)
            .where(table.c.id == filled.ids["P2"])
            .values(reaction_time=3.0)
        )
    schema.change_type(xtype, "reaction_time", "INTEGER")

    assert column_values(db, "reaction_time") == {
        filled.ids["P1"]: 2,
        filled.ids["P2"]: 3,
        filled.ids["P3"]: None,
    }
    assert isinstance(real_columns(db)["reaction_time"]["type"], sa.Integer)


def test_required_integer_column_becomes_string_and_stays_required(db, filled):
    xtype = filled.xtype
    definition = registry(db, filled.type_id)[0]

    schema.change_type(xtype, "difficulty_level", "STRING")

    assert column_values(db, "difficulty_level") == {
        filled.ids["P1"]: "1",
        filled.ids["P2"]: "2",
        filled.ids["P3"]: "3",
    }
    real = real_columns(db)["difficulty_level"]
    assert isinstance(real["type"], sa.String) and real["type"].length == 255
    assert real["nullable"] is False
    new_definition = registry(db, filled.type_id)[0]
    assert list(new_definition) == list(definition)
    assert new_definition["difficulty_level"] == {"type": "STRING", "nullable": False}


def test_string_to_text_keeps_empty_and_blank_values(db, filled):
    insert_row(db, filled, "P4", difficulty_level=1, stimulus_type="")
    insert_row(db, filled, "P5", difficulty_level=1, stimulus_type="  ")
    values = column_values(db, "stimulus_type")

    schema.change_type(filled.xtype, "stimulus_type", "TEXT")

    assert column_values(db, "stimulus_type") == values
    assert isinstance(real_columns(db)["stimulus_type"]["type"], sa.Text)


def test_datetime_column_becomes_text_in_iso_format(db, filled):
    schema.change_type(filled.xtype, "started_at", "TEXT")

    assert column_values(db, "started_at") == {
        filled.ids["P1"]: "2024-03-04T14:30:00Z",
        filled.ids["P2"]: None,
        filled.ids["P3"]: "2024-03-05T09:00:00Z",
    }
    assert isinstance(real_columns(db)["started_at"]["type"], sa.Text)
    assert registry(db, filled.type_id)[0]["started_at"] == {
        "type": "TEXT",
        "nullable": True,
    }


def test_change_type_form_answers_409_with_the_values_that_do_not_convert(
    client, db, filled
):
    response = client.post(
        f"/types/{filled.type_id}/columns/stimulus_type/type", data={"type": "INTEGER"}
    )

    assert response.status_code == 409
    [row] = refused_rows(response.get_data(as_text=True))
    assert row[:3] == [str(filled.ids["P2"]), "P2", "red"]
    assert isinstance(real_columns(db)["stimulus_type"]["type"], sa.String)


# -- all or nothing --------------------------------------------------------------------

CHANGES = {
    "add optional column": lambda x: schema.add_column(x, ColumnDef("notes", "TEXT")),
    "add required column with fill": lambda x: schema.add_column(
        x, ColumnDef("block", "INTEGER", nullable=False), "1"
    ),
    "rename column": lambda x: schema.rename_column(x, "accuracy", "hit_rate"),
    "make column required": lambda x: schema.set_nullable(x, "stimulus_type", False),
    "make column optional": lambda x: schema.set_nullable(x, "difficulty_level", True),
    "drop column": lambda x: schema.drop_column(x, "stimulus_type", "stimulus_type"),
    "change column type": lambda x: schema.change_type(x, "difficulty_level", "STRING"),
    "describe column": lambda x: schema.describe_column(x, "accuracy", "Share correct"),
}


class AuditDown(Exception):
    pass


def _failing_record(*args, **kwargs):
    raise AuditDown("the audit entry could not be written")


@pytest.mark.parametrize("change", list(CHANGES.values()), ids=list(CHANGES))
def test_change_failing_after_its_ddl_leaves_table_and_registry_unchanged(
    db, filled, monkeypatch, change
):
    before = snapshot(db, filled.type_id)
    monkeypatch.setattr(schema, "record", _failing_record)

    with pytest.raises(AuditDown):
        change(filled.xtype)
    db.session.rollback()

    assert snapshot(db, filled.type_id) == before
    monkeypatch.undo()
    change(filled.xtype)  # nothing half-done is left behind: the same change now works
    assert snapshot(db, filled.type_id)["registry"][1] > before["registry"][1]


# -- concurrent changes ----------------------------------------------------------------


def _load_then_bump_elsewhere(db, xtype: ExperimentType) -> None:
    """This session has loaded the type; another one then commits a change of it."""
    session = db.session()
    loaded = xtype.schema_version
    session.expire_on_commit = False  # end our read transaction, keep what we loaded
    try:
        session.commit()
    finally:
        session.expire_on_commit = True
    with db.engine.begin() as conn:
        conn.execute(
            sa.update(REGISTRY)
            .where(REGISTRY.c.id == xtype.id)
            .values(schema_version=REGISTRY.c.schema_version + 1)
        )
    assert xtype.schema_version == loaded


@pytest.mark.parametrize(
    "change",
    [
        CHANGES["add optional column"],
        CHANGES["change column type"],
        CHANGES["rename column"],
    ],
    ids=["add", "change type", "rename"],
)
def test_change_of_a_type_changed_meanwhile_is_a_conflict(db, filled, change):
    _load_then_bump_elsewhere(db, filled.xtype)
    before = snapshot(db, filled.type_id)

    with pytest.raises(Conflict, match="Someone else changed this type"):
        change(filled.xtype)

    assert snapshot(db, filled.type_id) == before


# -- reflection cache ------------------------------------------------------------------


def _statements_during(db, action) -> list[str]:
    statements: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", listener)
    try:
        action()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listener)
    return statements


def test_warm_experiment_page_issues_no_catalog_query(client, db, filled):
    url = f"/experiments/{filled.experiment_uuid}"
    assert client.get(url).status_code == 200
    db.session.expire_all()
    pages = []

    statements = _statements_during(db, lambda: pages.append(client.get(url)))

    assert pages[0].status_code == 200
    assert any(TABLE in s for s in statements)  # the listener saw the rows query
    assert [s for s in statements if CATALOG_QUERY.search(s)] == []


def test_page_reflects_again_when_the_schema_version_grew(
    client, db, filled, monkeypatch
):
    url = f"/experiments/{filled.experiment_uuid}"
    assert client.get(url).status_code == 200
    # The change happens in another worker: this worker's cache is not told about it.
    monkeypatch.setattr(datatables, "forget", lambda table_name: None)
    schema.add_column(filled.xtype, ColumnDef("notes", "TEXT"))
    insert_row(db, filled, difficulty_level=1, notes="late arrival")
    db.session.expire_all()

    page = client.get(url)

    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert ">notes<" in text  # the new column's header
    assert "late arrival" in text


# -- deleting types and experiments ----------------------------------------------------


def test_delete_type_is_refused_while_it_has_experiments(db, filled):
    with pytest.raises(Conflict, match="still has 1 experiment"):
        schema.delete_type(filled.xtype, "Stroop task")
    db.session.rollback()

    assert has_table(db)
    assert registry(db, filled.type_id)


def test_delete_type_form_answers_409_while_it_has_experiments(client, db, filled):
    response = client.post(
        f"/types/{filled.type_id}/delete", data={"confirm": "Stroop task"}
    )

    assert response.status_code == 409
    assert "still has 1 experiment" in response.get_data(as_text=True)
    assert has_table(db)


@pytest.mark.parametrize("confirm", ["", "stroop task", "stroop_data", "Stroop"])
def test_delete_type_with_a_wrong_confirmation_is_refused(db, confirm):
    xtype = make_type("Stroop task", TABLE, COLUMNS)

    with pytest.raises(InvalidValue, match="exactly to confirm"):
        schema.delete_type(xtype, confirm)
    db.session.rollback()

    assert has_table(db)
    assert registry(db, xtype.id)


def test_delete_type_with_its_name_drops_table_and_registry_row(db):
    xtype = make_type("Stroop task", TABLE, COLUMNS)
    type_id = xtype.id

    schema.delete_type(xtype, " Stroop task ")

    assert not has_table(db)
    with db.engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(REGISTRY.c.id).where(REGISTRY.c.id == type_id)
            ).first()
            is None
        )
    assert audit_actions(db, type_id)[-1] == "type.delete"


def test_delete_type_form_drops_the_table_and_redirects_to_the_list(client, db):
    type_id = make_type("Stroop task", TABLE, COLUMNS).id

    refused = client.post(f"/types/{type_id}/delete", data={"confirm": "Stroop"})
    assert refused.status_code == 422
    assert has_table(db)

    response = client.post(f"/types/{type_id}/delete", data={"confirm": "Stroop task"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/types/")
    assert not has_table(db)
    assert client.get(f"/types/{type_id}").status_code == 404


def _second_experiment(filled: Filled) -> Experiment:
    other = make_experiment(filled.xtype, "Autumn main study")
    make_rows(
        filled.xtype,
        other,
        [
            {"participant_id": "Q1", "difficulty_level": 5},
            {"participant_id": "Q2", "difficulty_level": 6},
        ],
    )
    return other


def _experiment_uuids(db) -> dict[int, Any]:
    table = sa.table(TABLE, sa.column("id"), sa.column("experiment_uuid", sa.Uuid))
    with db.engine.connect() as conn:
        return dict(conn.execute(sa.select(table.c.id, table.c.experiment_uuid)).all())


def test_deleting_an_experiment_removes_only_its_rows(db, filled):
    other = _second_experiment(filled)
    others_rows = {i: u for i, u in _experiment_uuids(db).items() if u == other.uuid}
    gone = filled.experiment_uuid

    assert catalog.delete_experiment(filled.experiment) == 3

    assert _experiment_uuids(db) == others_rows
    assert db.session.get(Experiment, gone) is None
    assert db.session.get(Experiment, other.uuid) is not None


def test_delete_experiment_form_removes_only_its_rows(client, db, filled):
    other = _second_experiment(filled)
    others_rows = {i: u for i, u in _experiment_uuids(db).items() if u == other.uuid}

    response = client.post(f"/experiments/{filled.experiment_uuid}/delete")

    assert response.status_code == 303
    assert _experiment_uuids(db) == others_rows
    assert client.get(f"/experiments/{filled.experiment_uuid}").status_code == 404
    assert client.get(f"/experiments/{other.uuid}").status_code == 200


def test_deleting_an_experiment_that_fails_half_way_keeps_its_rows(
    db, filled, monkeypatch
):
    monkeypatch.setattr(catalog, "record", _failing_record)

    with pytest.raises(AuditDown):
        catalog.delete_experiment(filled.experiment)
    db.session.rollback()

    assert sorted(_experiment_uuids(db)) == sorted(filled.ids.values())
    assert db.session.get(Experiment, filled.experiment_uuid) is not None

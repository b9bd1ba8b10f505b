"""Build test data through the domain functions (the same code the UI uses)."""

from __future__ import annotations

from collections.abc import Sequence

from wave_web import catalog
from wave_web import datatables
from wave_web import schema
from wave_web.columns import ColumnDef

DEFAULT_COLUMNS = (
    ColumnDef("reaction_time", "FLOAT"),
    ColumnDef("accuracy", "FLOAT"),
    ColumnDef("difficulty_level", "INTEGER"),
    ColumnDef("stimulus_type", "STRING"),
)

# One column of each type, short names: for tests that go over every type.
EVERY_TYPE = (
    ColumnDef("n", "INTEGER"),
    ColumnDef("x", "FLOAT"),
    ColumnDef("s", "STRING"),
    ColumnDef("t", "TEXT"),
    ColumnDef("b", "BOOLEAN"),
    ColumnDef("d", "DATETIME"),
    ColumnDef("j", "JSON"),
)


def make_type(
    name: str = "Cognitive test",
    table_name: str = "cognitive_test_data",
    columns: Sequence[ColumnDef] = DEFAULT_COLUMNS,
    description: str = "",
):
    return schema.create_type(name, description, table_name, list(columns))


def make_experiment(
    xtype, description: str = "Pilot", tags: Sequence[str] = (), data=None
):
    return catalog.create_experiment(xtype, description, list(tags), data or {})


def make_rows(xtype, experiment, rows: Sequence[dict]):
    from wave_web.extensions import db

    count = datatables.insert_rows(xtype, experiment.uuid, list(rows))
    db.session.commit()
    return count

"""Names unique ignoring case beyond A–Z (name_key), and table names free of clashes.

SQLite's lower() folds only A–Z, so "Ärger" and "ärger" used to be two tags there; the
name_key columns (str.casefold) hold on both databases, and their unique indexes also
refuse two creators racing with "Stroop" and "stroop".
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from flask_migrate import downgrade
from flask_migrate import upgrade
from tests.conftest import make_app
from tests.factories import make_experiment
from tests.factories import make_type
from wave_web import catalog
from wave_web import schema
from wave_web.database import MIGRATIONS_DIR
from wave_web.errors import InvalidName
from wave_web.errors import NameTaken
from wave_web.extensions import db as _db
from wave_web.models import ExperimentType
from wave_web.models import Tag

CASE_PAIRS = [("Ärger", "ärger"), ("ÉTUDE", "étude"), ("Straße", "STRASSE")]


@pytest.mark.parametrize(("first", "second"), CASE_PAIRS)
def test_tag_names_differing_only_in_case_clash(db, first, second):
    catalog.create_tag(first)
    with pytest.raises(NameTaken):
        catalog.create_tag(second)
    db.session.rollback()
    assert [t.name for t in db.session.scalars(sa.select(Tag))] == [first]


@pytest.mark.parametrize(("first", "second"), CASE_PAIRS)
def test_type_names_differing_only_in_case_clash(db, first, second):
    make_type(first, "first_data")
    with pytest.raises(NameTaken):
        schema.check_type_name(second)
    with pytest.raises(schema.SchemaProblems):
        make_type(second, "second_data")


@pytest.mark.parametrize(("first", "second"), CASE_PAIRS)
def test_tag_filter_and_new_tags_find_a_tag_in_any_case(db, first, second):
    experiment = make_experiment(make_type(), "Pilot", [first])
    assert catalog.find_tag(second).name == first
    assert catalog.resolve_tags([second, first]) == [first]
    page = catalog.list_experiments(catalog.ExperimentFilter(tag=second))
    assert [e.uuid for e in page.items] == [experiment.uuid]


def test_renaming_a_tag_to_another_tags_name_in_other_case_is_refused(db):
    catalog.create_tag("Ärger")
    other = catalog.create_tag("pilot")
    with pytest.raises(NameTaken):
        catalog.update_tag(other, "ÄRGER", "")


def test_renaming_a_tag_keeps_its_key_in_step(db):
    tag = catalog.create_tag("pilot")
    catalog.update_tag(tag, "Ärger", "")
    db.session.expire_all()
    assert db.session.get(Tag, tag.id).name_key == "ärger"


def test_the_unique_index_refuses_a_tag_that_slipped_past_the_check(db, monkeypatch):
    """Two requests that both passed the check: the database keeps one."""
    catalog.create_tag("Ärger")
    monkeypatch.setattr(catalog, "_check_unique", lambda *args, **kwargs: None)
    with pytest.raises(NameTaken):
        catalog.create_tag("ärger")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Tag)) == 1


def test_the_unique_index_refuses_a_type_that_slipped_past_the_check(db, monkeypatch):
    make_type("Stroop", "stroop")
    monkeypatch.setattr(schema, "check_type_name", lambda name, exclude_id=None: name)
    with pytest.raises(NameTaken):
        make_type("stroop", "stroop_b")
    names = db.session.scalars(sa.select(ExperimentType.name))
    assert list(names) == ["Stroop"]
    assert not sa.inspect(db.session.connection()).has_table("stroop_b")


def test_renaming_a_type_onto_another_in_other_case_is_refused(db, client):
    make_type("Ärger", "a_data")
    other = make_type("Stroop", "stroop")
    response = client.post(f"/types/{other.id}/edit", data={"name": "ÄRGER"})
    assert response.status_code == 422
    assert "already exists" in response.text


# ----------------------------------------------------------------------
# Table names: every relation of the schema is taken (indexes, sequences …)
# ----------------------------------------------------------------------


def relation_names_of(db, table_name: str) -> list[str]:
    """Names the database created along with `table_name` (indexes, sequence, key)."""
    inspector = sa.inspect(db.session.connection())
    names = [i["name"] for i in inspector.get_indexes(table_name)]
    if db.engine.dialect.name == "postgresql":
        names += [f"{table_name}_id_seq", f"{table_name}_pkey"]
    return names


def test_names_of_indexes_and_sequences_are_taken_table_names(db):
    make_type("Stroop", "stroop", [])
    names = relation_names_of(db, "stroop")
    assert len(names) >= 3
    for name in names:
        with pytest.raises(InvalidName, match="already taken"):
            schema.check_table_name(name)


def test_builder_refuses_an_index_name_as_table_name(db, client):
    make_type("Stroop", "stroop", [])
    name = relation_names_of(db, "stroop")[-1]
    form = {"name": "Other", "table_name": name}
    check = client.post("/types/new/check", data=form)
    assert "already taken" in check.text
    response = client.post("/types/new", data=form)
    assert response.status_code == 422
    assert "already taken" in response.text
    assert [t.name for t in schema.all_types()] == ["Stroop"]


# ----------------------------------------------------------------------
# Migration 0003 on a database that has data
# ----------------------------------------------------------------------


def _insert_rows_at_0002(conn) -> None:
    tags = sa.table("tags", sa.column("id"), sa.column("name"))
    types = sa.table(
        "experiment_types",
        sa.column("id"),
        sa.column("name"),
        sa.column("table_name"),
    )
    experiments = sa.table(
        "experiments",
        sa.column("uuid", sa.Uuid),
        sa.column("experiment_type_id"),
        sa.column("description"),
    )
    conn.execute(
        sa.insert(tags),
        [
            {"id": 1, "name": "Straße"},
            {"id": 2, "name": "STRASSE"},  # allowed by lower(): clashes by casefold
            {"id": 3, "name": "Pilot"},
        ],
    )
    conn.execute(
        sa.insert(types),
        [
            {"id": 1, "name": "Ärger", "table_name": "a_data"},
            {"id": 2, "name": "Stroop", "table_name": "stroop"},
        ],
    )
    conn.execute(
        sa.insert(experiments),
        [{"uuid": uuid.uuid4(), "experiment_type_id": 1, "description": "kept"}],
    )


def test_migration_0003_fills_name_keys_and_keeps_every_row(database_url, tmp_path):
    app = make_app(database_url, tmp_path, WAVE_AUTO_MIGRATE=False)
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR, revision="0002")
        with _db.engine.begin() as conn:
            _insert_rows_at_0002(conn)
        upgrade(directory=MIGRATIONS_DIR)
        with _db.engine.connect() as conn:
            tags = conn.execute(sa.text("SELECT id, name, name_key FROM tags"))
            types = conn.execute(
                sa.text("SELECT id, name_key FROM experiment_types ORDER BY id")
            )
            experiments = conn.execute(
                sa.text("SELECT description, experiment_type_id FROM experiments")
            )
            assert sorted(tags.all()) == [
                (1, "Straße", "strasse"),
                (2, "STRASSE", "strasse (#2)"),
                (3, "Pilot", "pilot"),
            ]
            assert types.all() == [(1, "ärger"), (2, "stroop")]
            assert experiments.all() == [("kept", 1)]
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("tags")}
            assert "ix_tags_name_key" in indexes
            assert "ix_tags_name_lower" not in indexes
        with pytest.raises(sa_exc.IntegrityError), _db.engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO tags (name, name_key) VALUES ('pilot', 'pilot')")
            )
        downgrade(directory=MIGRATIONS_DIR, revision="0002")
        upgrade(directory=MIGRATIONS_DIR)
        with _db.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM experiments")) == 1
        _db.engine.dispose()

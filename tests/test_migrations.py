import warnings

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import datatables
from wave_web.models import Experiment


def _static_only(obj, name, type_, reflected, compare_to):
    return not (type_ == "table" and reflected and compare_to is None)


def test_migrations_create_exactly_what_the_models_describe(db):
    make_type()  # a dynamic table must not count as drift
    with db.engine.connect() as conn, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLite cannot reflect expression indexes
        context = MigrationContext.configure(
            conn, opts={"include_object": _static_only}
        )
        assert compare_metadata(context, db.metadata) == []


def test_row_count_follows_inserts_and_is_per_experiment(db):
    xtype = make_type()
    first, second = make_experiment(xtype, "A"), make_experiment(xtype, "B")
    make_rows(xtype, first, [{"participant_id": "P1"}, {"participant_id": "P2"}])
    make_rows(xtype, second, [{"participant_id": "P3"}])
    make_rows(xtype, first, [{"participant_id": "P4"}])
    db.session.expire_all()
    assert db.session.get(Experiment, first.uuid).row_count == 3
    assert datatables.count_rows(xtype) == {first.uuid: 3, second.uuid: 1}

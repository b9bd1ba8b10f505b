"""Requests racing each other: locks make the second one wait, nothing is lost.

Each race pauses the first request inside its critical section (after its check or
scan), starts the second, checks that the second waits, then lets the first finish.
On PostgreSQL row and table locks do the waiting; on SQLite write requests begin with
BEGIN IMMEDIATE, which serialises them (the tests run both, as requests do).
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import make_app
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import catalog
from wave_web import database
from wave_web import datatables
from wave_web import schema
from wave_web.extensions import db as _db
from wave_web.models import Experiment
from wave_web.models import ExperimentType

WAIT = 20  # seconds before a stuck race fails the test instead of hanging it


class Pause:
    """Wraps a function so that the first thread to call it stops after it, until go."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def wrap(self, fn: Callable) -> Callable:
        def paused(*args, **kwargs):
            result = fn(*args, **kwargs)
            if not self.reached.is_set():
                self.reached.set()
                assert self.go.wait(WAIT), "the test never released the pause"
            return result

        return paused


class Racer(threading.Thread):
    """Runs `fn` in a thread and keeps its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except Exception as exc:  # the test inspects it
            self.error = exc

    def finish(self) -> Racer:
        self.join(WAIT)
        assert not self.is_alive(), "a racer is stuck"
        return self


def in_write_request(app, fn: Callable[[], Any]) -> Callable[[], Any]:
    """`fn` inside a POST request context of its own (own session, as a request)."""

    def run():
        with app.test_request_context("/", method="POST"):
            return fn()

    return run


def waits(racer: Racer) -> bool:
    """True when `racer` is still blocked a second after it started."""
    racer.join(1.0)
    return racer.is_alive()


# ----------------------------------------------------------------------
# Deleting a type while an experiment of it is created
# ----------------------------------------------------------------------


def test_experiment_created_while_its_type_is_deleted_waits_and_is_refused(
    app, db, monkeypatch
):
    xtype = make_type()
    type_id, name = xtype.id, xtype.name
    db.session.rollback()
    pause = Pause()  # the deleter stops after counting the type's experiments
    monkeypatch.setattr(datatables, "reflect", pause.wrap(datatables.reflect))

    deleter = Racer(
        lambda: app.test_client().post(
            f"/types/{type_id}/delete", data={"confirm": name}
        )
    )
    assert pause.reached.wait(WAIT)
    creator = Racer(
        lambda: app.test_client().post(
            "/experiments/new",
            data={"experiment_type_id": str(type_id), "description": "late"},
        )
    )
    assert waits(creator)
    pause.go.set()

    assert deleter.finish().result.status_code == 303
    assert creator.finish().result.status_code in (409, 422)
    db.session.expire_all()
    assert db.session.get(ExperimentType, type_id) is None
    assert db.session.scalar(sa.select(sa.func.count(Experiment.uuid))) == 0


def test_deleting_a_type_refuses_when_the_database_finds_an_experiment(db, monkeypatch):
    """An experiment that got past the count is reported as a conflict, not a 500."""
    xtype = make_type()
    make_experiment(xtype, "kept")
    monkeypatch.setattr(schema, "experiment_count", lambda xtype: 0)
    with pytest.raises(schema.Conflict):
        schema.delete_type(xtype, xtype.name)
    db.session.expire_all()
    assert db.session.get(ExperimentType, xtype.id) is not None
    assert sa.inspect(db.session.connection()).has_table(xtype.table_name)


# ----------------------------------------------------------------------
# Rows written while a column change scans the table
# ----------------------------------------------------------------------


@pytest.fixture
def one_row(db):
    xtype = make_type()
    experiment = make_experiment(xtype, "Pilot")
    make_rows(
        xtype,
        experiment,
        [{"participant_id": "P1", "accuracy": 0.9, "difficulty_level": 2}],
    )
    ids = SimpleNamespace(type_id=xtype.id, experiment=experiment.uuid)
    db.session.rollback()
    return ids


def insert_late_row(ids, **values) -> None:
    xtype = schema.get_type(ids.type_id)
    datatables.insert_rows(xtype, ids.experiment, [{"participant_id": "P2", **values}])
    _db.session.commit()


def column_values(db, name: str) -> dict[str, Any]:
    db.session.rollback()
    xtype = schema.get_type(db.session.scalar(sa.select(ExperimentType.id)))
    table = datatables.reflect(xtype)
    rows = db.session.execute(sa.select(table.c.participant_id, table.c[name]))
    return dict(rows.all())


def test_row_without_value_written_during_set_required_cannot_slip_in(
    app, db, one_row, monkeypatch
):
    pause = Pause()  # stops after counting the rows without a value
    monkeypatch.setattr(datatables, "null_rows", pause.wrap(datatables.null_rows))

    changer = Racer(
        in_write_request(
            app,
            lambda: schema.set_nullable(
                schema.get_type(one_row.type_id), "accuracy", False
            ),
        )
    )
    assert pause.reached.wait(WAIT)
    writer = Racer(
        in_write_request(app, lambda: insert_late_row(one_row, accuracy=None))
    )
    assert waits(writer)
    pause.go.set()

    assert changer.finish().error is None
    writer.finish()  # refused: the column is required by the time it writes
    assert None not in column_values(db, "accuracy").values()
    assert schema.get_type(one_row.type_id).column("accuracy").nullable is False


def test_row_written_during_a_type_change_keeps_its_value(
    app, db, one_row, monkeypatch
):
    pause = Pause()  # stops after converting every existing value
    monkeypatch.setattr(
        datatables, "conversion_problems", pause.wrap(datatables.conversion_problems)
    )

    changer = Racer(
        in_write_request(
            app,
            lambda: schema.change_type(
                schema.get_type(one_row.type_id), "difficulty_level", "FLOAT"
            ),
        )
    )
    assert pause.reached.wait(WAIT)
    writer = Racer(
        in_write_request(app, lambda: insert_late_row(one_row, difficulty_level=3))
    )
    assert waits(writer)
    pause.go.set()

    assert changer.finish().error is None
    assert writer.finish().error is None
    assert column_values(db, "difficulty_level") == {"P1": 2.0, "P2": 3.0}


def test_lock_against_writes_is_a_no_op_outside_postgresql(db, one_row):
    conn = db.session.connection()
    table = datatables.reflect(schema.get_type(one_row.type_id))
    datatables.lock_against_writes(conn, table)  # PostgreSQL: LOCK TABLE … quoted
    conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    db.session.rollback()


# ----------------------------------------------------------------------
# Tag rename / delete while an experiment's tags are being edited
# ----------------------------------------------------------------------


def edit_tags_and_wait(experiment_uuid: uuid.UUID, pause: Pause) -> None:
    """Another writer: has changed the experiment's tags, not yet committed."""
    experiment = _db.session.get(Experiment, experiment_uuid)
    experiment.tags = ["pilot", "extra"]
    _db.session.flush()
    pause.reached.set()
    assert pause.go.wait(WAIT)
    _db.session.commit()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda tag: catalog.update_tag(tag, "trial", ""),
            ["trial", "extra"],
            id="rename",
        ),
        pytest.param(lambda tag: catalog.delete_tag(tag), ["extra"], id="delete"),
    ],
)
def test_tag_change_does_not_overwrite_a_concurrent_tag_edit(app, db, change, expected):
    experiment = make_experiment(make_type(), "Pilot", ["pilot"])
    catalog.create_tag("extra")
    tag_id, experiment_uuid = catalog.find_tag("pilot").id, experiment.uuid
    db.session.rollback()
    pause = Pause()

    editor = Racer(
        in_write_request(app, lambda: edit_tags_and_wait(experiment_uuid, pause))
    )
    assert pause.reached.wait(WAIT)
    tagger = Racer(in_write_request(app, lambda: change(catalog.get_tag(tag_id))))
    assert waits(tagger)
    pause.go.set()

    assert editor.finish().error is None
    assert tagger.finish().error is None
    db.session.expire_all()
    assert db.session.get(Experiment, experiment_uuid).tags == expected


# ----------------------------------------------------------------------
# The reflection cache shared by a worker's threads
# ----------------------------------------------------------------------


def test_reflection_cache_survives_threads_reflecting_and_forgetting(app, monkeypatch):
    monkeypatch.setattr(
        datatables, "_reflect", lambda conn, name, defs: sa.Table(name, sa.MetaData())
    )
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible

    def churn(worker: int) -> None:
        with app.app_context():
            for n in range(400):
                version = (n + worker) % 5
                xtype = SimpleNamespace(
                    table_name="t", schema_version=version, created_at=None, columns=[]
                )
                table = datatables.reflect(xtype)
                assert table.name == "t"
                if n % 3 == worker % 3:
                    datatables.forget("t")

    try:
        racers = [Racer(lambda i=i: churn(i)) for i in range(8)]
        errors = [r.finish().error for r in racers]
    finally:
        sys.setswitchinterval(interval)
    assert errors == [None] * 8


# ----------------------------------------------------------------------
# Read-only POSTs do not take SQLite's write lock
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "form", "writes"),
    [
        ("/types/new/check", {"name": "Stroop"}, False),
        ("/types/new", {"action": "add"}, False),
        ("/types/new", {"action": "remove-0"}, False),
        ("/types/new", {"action": "down-0"}, False),
        ("/types/new", {"action": "create"}, True),
        ("/types/new", {"name": "Stroop"}, True),
        ("/tags/", {"name": "pilot"}, True),
        ("/no/such/page", {}, True),
    ],
)
def test_only_read_only_posts_skip_the_write_lock(app, url, form, writes):
    with app.test_request_context(url, method="POST", data=form):
        assert database._is_write_request() is writes


def test_gets_never_take_the_write_lock(app):
    with app.test_request_context("/types/new"):
        assert database._is_write_request() is False


def test_live_check_and_builder_buttons_answer_while_a_writer_holds_the_lock(
    database_url, tmp_path
):
    app = make_app(database_url, tmp_path, WAVE_SQLITE_BUSY_MS=300)
    holder = None
    try:
        with app.app_context():
            make_type("Stroop", "stroop")
            if _db.engine.dialect.name == "sqlite":  # another process, writing
                holder = sqlite3.connect(_db.engine.url.database, isolation_level=None)
                holder.execute("BEGIN IMMEDIATE")
            client = app.test_client()
            form = {"name": "Stroop", "table_name": "stroop"}
            check = client.post("/types/new/check", data=form)
            assert check.status_code == 200
            assert "already" in check.text
            added = client.post("/types/new", data={**form, "action": "add"})
            assert added.status_code == 200
    finally:
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
        with app.app_context():
            _db.session.remove()
            _db.engine.dispose()

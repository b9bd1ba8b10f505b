"""Backups as docs/production.md gives them: `pg_dump -Fc` / `pg_restore` on
PostgreSQL, `sqlite3 … ".backup …"` on SQLite; the app on the restored copy has
every table (static and data), every value, and the keys still work."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import uuid
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from tests.conftest import PG_URL
from tests.conftest import make_app
from tests.factories import EVERY_TYPE
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import accounts
from wave_web import datatables
from wave_web.config import normalise_database_url
from wave_web.extensions import db
from wave_web.models import AuditEntry
from wave_web.models import ExperimentType

ROWS = [
    {
        "participant_id": "007",
        "n": 1,
        "x": 505.89999999999856,
        "s": "é ☃ <b>",
        "t": "line\nbreak",
        "b": True,
        "d": dt.datetime(2024, 10, 23, 13, 56, 15, 156000),
        "j": {"k": [1, None, "x"]},
    },
    {
        "participant_id": "P2",
        "n": None,
        "x": -0.0,
        "s": None,
        "t": "",
        "b": False,
        "d": None,
        "j": None,
    },
]


def _snapshot(app, secret: str) -> dict:
    with app.app_context():
        xtype = db.session.scalars(sa.select(ExperimentType)).one()
        experiments = list(xtype.experiments)
        rows = datatables.list_rows(xtype, experiments[0].uuid)
        return {
            "type": (
                xtype.name,
                xtype.table_name,
                xtype.schema_version,
                [(c.name, c.type) for c in xtype.columns],
            ),
            "experiments": [(e.uuid, e.description, list(e.tags)) for e in experiments],
            "rows": rows,
            "audit": db.session.scalar(sa.select(sa.func.count(AuditEntry.id))),
            "key": accounts.live_key(secret) is not None,
        }


def _fill(app) -> str:
    with app.app_context():
        xtype = make_type("Stroop", "stroop", EVERY_TYPE)
        experiment = make_experiment(xtype, "Pilot", ["pilot"])
        db.session.commit()
        make_rows(xtype, experiment, ROWS)
        _key, secret = accounts.create_key("lab PC", "experimentee")
        db.session.commit()
        return secret


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def _admin_sql(engine: sa.Engine, statement: str, name: str) -> None:
    """CREATE/DROP DATABASE with the name quoted by psycopg2 (no bind for names)."""
    from psycopg2 import sql

    raw = engine.raw_connection()
    try:
        with raw.dbapi_connection.cursor() as cur:
            cur.execute(sql.SQL(statement).format(sql.Identifier(name)))
    finally:
        raw.close()


def _restored_copy(url: str, tmp_path) -> tuple[str, callable]:
    """(URL of the restored copy, clean-up) made with the guide's commands."""
    if url.startswith("sqlite"):
        if shutil.which("sqlite3") is None:
            pytest.skip("the sqlite3 command is not installed")
        source = url.removeprefix("sqlite:///")
        copy = tmp_path / "restored.db"
        _run("sqlite3", source, f".backup '{copy}'")
        return f"sqlite:///{copy}", lambda: None
    # The test's data lives in a schema of its own: dump that schema (the guide
    # dumps the whole database), restore it into a new database.
    schema = parse_qs(urlsplit(url).query)["options"][0].split("=", 1)[1]
    dump = tmp_path / "wave.dump"
    _run("pg_dump", "-Fc", "--no-owner", "-n", schema, "-f", str(dump), PG_URL)
    name = f"wave_restore_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        normalise_database_url(PG_URL), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))  # name made above
    restored = sa.make_url(normalise_database_url(PG_URL)).set(database=name)
    plain = restored.set(drivername="postgresql").render_as_string(hide_password=False)
    _run("pg_restore", "--no-owner", "-d", plain, str(dump))

    def drop() -> None:
        _admin_sql(admin, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name)
        admin.dispose()

    copy = restored.render_as_string(hide_password=False)
    return f"{copy}?options=-csearch_path%3D{schema}", drop


def test_a_backup_restores_every_table_and_value(database_url, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    original = make_app(database_url, tmp_path / "a")
    secret = _fill(original)
    before = _snapshot(original, secret)
    with original.app_context():
        db.engine.dispose()
    url, drop = _restored_copy(database_url, tmp_path)
    try:
        restored = make_app(url, tmp_path / "b", with_admin=False)
        after = _snapshot(restored, secret)
        with restored.app_context():
            db.engine.dispose()
    finally:
        drop()
    assert after == before
    assert [r["participant_id"] for r in after["rows"]] == ["P2", "007"]
    assert after["rows"][1]["x"] == 505.89999999999856 and after["key"]

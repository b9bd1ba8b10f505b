"""CSV export at size: streamed in chunks, complete, and no leftovers when cut short.

Speed and memory at a million rows are measured by bench/import_export.py, not here.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import struct
import threading
import time
import zipfile

import pytest
import sqlalchemy as sa
from tests.factories import EVERY_TYPE
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import columns
from wave_web import datatables
from wave_web.csv_io import exporting
from wave_web.extensions import db as _db
from werkzeug.datastructures import MultiDict

COLUMNS = EVERY_TYPE
ROWS = 4000


def generated_row(rng: random.Random, i: int) -> dict:
    return {
        "participant_id": f"P{rng.randrange(300):03d}",
        "n": rng.choice([None, rng.randrange(-(2**31), 2**31)]),
        "x": rng.choice([None, rng.uniform(-1e6, 1e6), rng.random() / 1e6, 0.1]),
        "s": rng.choice([None, "visual, masked", 'quoted "word"', "=1+2", "plain"]),
        "t": rng.choice([None, f"trial {i}\nthen resumed " + "x" * rng.randrange(400)]),
        "b": rng.choice([None, True, False]),
        "d": dt.datetime(2025, 3, 1) + dt.timedelta(seconds=i * 3, microseconds=i),
        "j": {"block": i // 100, "trial": i % 100, "keys": ["f", "j"][: i % 3]},
    }


@pytest.fixture
def big(db):
    xtype = make_type("Big", "big_data", COLUMNS)
    experiment = make_experiment(xtype, "Many rows")
    rng = random.Random(5)
    make_rows(xtype, experiment, [generated_row(rng, i) for i in range(ROWS)])
    return xtype, experiment


def expected_csv(xtype, experiment) -> bytes:
    """The export rendered independently: rows read back, registry formatting."""
    table = datatables.reflect(xtype)
    names = ["id", "participant_id", *(c.name for c in COLUMNS)]
    types = {"id": "INTEGER", "participant_id": "STRING"}
    types |= {c.name: c.type for c in COLUMNS}
    stmt = (
        sa.select(*(table.c[n] for n in names))
        .where(table.c.experiment_uuid == experiment.uuid)
        .order_by(table.c.id)
    )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(names)
    for row in _db.session.execute(stmt):
        writer.writerow(
            [columns.format_value(types[n], v) for n, v in zip(names, row, strict=True)]
        )
    return out.getvalue().encode("utf-8")


def test_thousands_of_rows_arrive_complete_and_in_chunks(client, big):
    xtype, experiment = big
    response = client.get(
        f"/experiments/{experiment.uuid}/export.csv?_neutralise=0", buffered=False
    )
    assert response.is_streamed
    chunks = list(response.iter_encoded())
    response.close()
    body = b"".join(chunks)
    expected = expected_csv(xtype, experiment)
    assert len(body) == len(expected)
    assert body == expected
    assert len(list(csv.reader(io.StringIO(body.decode(), newline="")))) == ROWS + 1
    assert chunks[0] == expected.split(b"\r\n", 1)[0] + b"\r\n"  # header first
    assert len(chunks) > 3
    assert max(len(c) for c in chunks) < 2 * exporting.CHUNK_BYTES


def test_type_export_of_thousands_of_rows_counts_every_row(client, big):
    xtype, experiment = big
    other = make_experiment(xtype, "Second")
    make_rows(xtype, other, [{"participant_id": "Z"}] * 10)
    body = client.get(f"/types/{xtype.id}/export.csv?_sort=n&_dir=desc").data
    rows = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    assert len(rows) == ROWS + 10
    assert len({r["id"] for r in rows}) == ROWS + 10


def test_a_planned_export_streams_without_the_request_context(big):
    """The server iterates the response after the view returned: no app context."""
    xtype, experiment = big
    args = MultiDict([("s__icontains", "WORD"), ("_sort", "s"), ("_dir", "desc")])
    plan = exporting.plan_export(xtype, args, experiment)
    out: dict[str, bytes] = {}

    def stream() -> None:
        out["csv"] = b"".join(exporting.CsvExport(plan).chunks())
        out["zip"] = b"".join(exporting.zip_chunks(plan))

    thread = threading.Thread(target=stream)
    thread.start()
    thread.join(timeout=60)
    rows = list(csv.DictReader(io.StringIO(out["csv"].decode(), newline="")))
    assert rows and {r["s"] for r in rows} == {'quoted "word"'}
    expected = sum(1 for r in stored_texts(xtype, experiment) if r == 'quoted "word"')
    assert len(rows) == expected
    assert zipfile.ZipFile(io.BytesIO(out["zip"])).testzip() is None


def stored_texts(xtype, experiment) -> list[str | None]:
    table = datatables.reflect(xtype)
    stmt = sa.select(table.c.s).where(table.c.experiment_uuid == experiment.uuid)
    return list(_db.session.scalars(stmt))


def export_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wave-export"]


def wait_until(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_client_that_leaves_early_releases_the_database(client, big, app):
    xtype, experiment = big
    with app.app_context():
        pool = _db.engine.pool
        before = pool.checkedout()
    response = client.get(f"/experiments/{experiment.uuid}/export.csv", buffered=False)
    chunks = response.iter_encoded()
    next(chunks), next(chunks)
    response.close()  # what the server does when the socket goes away
    assert wait_until(lambda: not export_threads())
    assert wait_until(lambda: pool.checkedout() <= before)
    again = client.get(f"/experiments/{experiment.uuid}/export.csv")
    assert again.data.count(b"\n") >= ROWS


def test_a_failure_midway_never_ends_like_a_complete_file(client, big, monkeypatch):
    _xtype, experiment = big
    calls = {"n": 0}

    def after_one(real):
        def flaky(*args):
            calls["n"] += 1
            if calls["n"] > 1:
                raise RuntimeError("connection lost")
            return real(*args)

        return flaky

    # PostgreSQL: the reader thread fails; SQLite: the formatting loop fails.
    monkeypatch.setattr(
        exporting._CopySink, "flush", after_one(exporting._CopySink.flush)
    )
    monkeypatch.setattr(exporting, "_drain", after_one(exporting._drain))
    response = client.get(f"/experiments/{experiment.uuid}/export.csv", buffered=False)
    received = []
    with pytest.raises((exporting.ExportFailed, RuntimeError)):
        for chunk in response.iter_encoded():
            received.append(chunk)
    response.close()
    assert len(received) == 2  # the header, one chunk, then the failure
    assert wait_until(lambda: not export_threads())


# ----------------------------------------------------------------------
# PostgreSQL's float output against Python's repr()
# ----------------------------------------------------------------------


def random_doubles(n: int) -> list[float]:
    rng = random.Random(11)
    values = [0.0, -0.0, 1.0, -1.0, 0.1, 1e-05, 1e20, 1e15, 1e16, 9.999999999999998e14]
    values += [1e15 + 0.5, -1234567890123456.8, 5e-324, 1.7976931348623157e308, 1e-4]
    values += [123456789012345.0, 0.30000000000000004, 2.5e-05, 100.0, 1e22, 1e21]
    while len(values) < n:
        kind = rng.random()
        if kind < 0.4:  # any bit pattern
            value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        elif kind < 0.7:  # around the switch to exponent notation
            value = rng.uniform(1, 10) * 10.0 ** rng.choice([14, 15, 16, -4, -5])
        elif kind < 0.85:  # whole numbers
            value = float(rng.randrange(-(10**17), 10**17))
        else:
            value = round(rng.uniform(-1000, 1000), rng.randrange(6))
        if value == value and abs(value) != float("inf"):
            values.append(value)
    return values


def test_postgresql_float_output_is_python_repr(db, dialect):
    """The COPY spelling of a double is repr()'s, up to 2**53; it always reads back.

    Above 2**53 (whole numbers only) PostgreSQL's shortest-digits algorithm does not
    use a decimal that lies exactly on the rounding boundary, which repr() may: it
    then prints one or two digits more (8.073857325593059e+16 for repr's
    8.07385732559306e+16). Both read back as the same double.
    """
    if dialect != "postgresql":
        pytest.skip("the float expression runs on PostgreSQL only")
    values = random_doubles(5000)
    texts = sa.values(sa.column("v", sa.Text), name="vals").data(
        [(repr(v),) for v in values]
    )
    number = sa.cast(texts.c.v, sa.Float)  # float8in: exact, keeps -0
    stmt = sa.select(texts.c.v, exporting._float_sql(number))
    connection = _db.session.connection()
    connection.exec_driver_sql("SET LOCAL extra_float_digits = 1")
    wrong, longer = [], 0
    for given, got in _db.session.execute(stmt):
        if given == got:
            continue
        if abs(float(given)) >= 2**53 and float(got) == float(given):
            longer += 1
            continue
        wrong.append((given, got))
    assert wrong == []
    assert longer < len(values) // 20

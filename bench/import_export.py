#!/usr/bin/env python3
"""CSV import and export at scale (issue 5, design §10); run by hand, not a test.

Generates N rows with ../shared/bench/gen_csv.py (participant_id plus one column of
each type), then per database:

export (this part): loads the rows straight into one experiment (PostgreSQL: COPY …
FROM STDIN; SQLite: executemany in one transaction), measures raw
`COPY (SELECT * …) TO STDOUT` through psycopg2 into a null sink as the baseline, then
the app's download `/experiments/<uuid>/export.csv` through the Flask test client,
iterating the streamed response. Each export runs in a fresh subprocess per size (the
first 200,000 rows through an `id__lte` view, then all rows), which reports its time,
time to first byte, rows and bytes received and its peak RSS growth (VmHWM after the
export minus VmRSS before it, peak reset through /proc/self/clear_refs).

import: the same CSV through the real upload endpoint (`POST /experiments/<uuid>/import`
with `confirm=1`, then polling the job until it succeeds), each run in a fresh
subprocess that reports its time and peak RSS growth; baselines in the same run:
PostgreSQL's own `COPY … FROM STDIN WITH (FORMAT csv)` of the file into a table built
exactly like the app's data table (same columns and indexes), and on SQLite a raw
`executemany` of the unvalidated csv.reader rows into such a table.

The last line is

    RESULT import_pg_rows_per_s=… import_pg_copy_ratio=… import_sqlite_rows_per_s=…
           export_pg_rows_per_s=… import_peak_rss_mb=…

usage: python bench/import_export.py [--rows N] [--database both|postgresql|sqlite]
                                     [--gen PATH] [--csv PATH]
PostgreSQL: WAVE_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test),
in a throwaway schema dropped at the end.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import itertools
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import BENCH_COLUMNS  # noqa: E402
from bench.common import database_url  # noqa: E402
from bench.common import load_csv  # noqa: E402
from bench.common import signed_in_client  # noqa: E402
from wave_web import catalog  # noqa: E402
from wave_web import create_app  # noqa: E402
from wave_web import datatables  # noqa: E402
from wave_web import schema  # noqa: E402
from wave_web.config import normalise_database_url  # noqa: E402
from wave_web.extensions import db  # noqa: E402

GENERATOR = ROOT.parent / "shared" / "bench" / "gen_csv.py"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULT_KEYS = (
    "import_pg_rows_per_s",
    "import_pg_copy_ratio",
    "import_sqlite_rows_per_s",
    "export_pg_rows_per_s",
    "import_peak_rss_mb",
)
SMALL_SIZE = 200_000  # the memory check compares this many rows with all of them
BATCH = 10_000


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--export-child":
        export_child(json.loads(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--import-child":
        import_child(json.loads(sys.argv[2]))
        return
    args = parse_args()
    results: dict[str, float] = {key: math.nan for key in RESULT_KEYS}
    csv_path, tmpdir = args.csv, None
    if csv_path is None:
        tmpdir = tempfile.mkdtemp(prefix="wave_bench_csv_")
        csv_path = Path(tmpdir) / "rows.csv"
    try:
        if not csv_path.exists() or csv_rows(csv_path) != args.rows:
            seconds = timed(lambda: generate(args.gen, csv_path, args.rows))
            print(f"generate: {args.rows:,} rows in {seconds:.1f} s", flush=True)
        for backend in backends(args.database):
            with database_url(backend) as url:
                results.update(run_import(backend, url, csv_path, args))
            with database_url(backend) as url:
                results.update(run_export(backend, url, csv_path, args))
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    growths = [
        v
        for k, v in results.items()
        if k in ("import_pg_rss_mb", "import_sqlite_rss_mb")
    ]
    results["import_peak_rss_mb"] = max(growths) if growths else math.nan
    print("RESULT " + " ".join(f"{k}={fmt(results[k])}" for k in RESULT_KEYS))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument(
        "--database", choices=("both", "postgresql", "sqlite"), default="both"
    )
    p.add_argument("--gen", type=Path, default=GENERATOR, help="gen_csv.py to use")
    p.add_argument("--csv", type=Path, help="reuse (or keep) the generated CSV here")
    p.add_argument(
        "--reps", type=int, default=3, help="runs per measurement; the best counts"
    )
    args = p.parse_args()
    if args.rows < 1:
        p.error("--rows must be at least 1")
    return args


def backends(choice: str) -> list[str]:
    return ["postgresql", "sqlite"] if choice == "both" else [choice]


def fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def generate(generator: Path, path: Path, rows: int) -> None:
    if not generator.exists():
        sys.exit(f"generator not found: {generator} (use --gen PATH)")
    subprocess.run([sys.executable, str(generator), str(rows), str(path)], check=True)


def csv_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def make_app(url: str):
    # CSRF off as in the test suite: the test client posts no form token.
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "bench",
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
        }
    )


# ----------------------------------------------------------------------
# Loading (the app's import pipeline, without the upload form)
# ----------------------------------------------------------------------


def load_rows(backend: str, url: str, csv_path: Path) -> tuple[int, str]:
    """A type with the generator's columns, one experiment holding every row."""
    app = make_app(url)
    try:
        with app.app_context():
            xtype = schema.create_type(
                "Bench trials", "", "bench_trials", BENCH_COLUMNS
            )
            experiment = catalog.create_experiment(xtype, "Bench export", [], {})
            rows = load_csv(xtype, experiment.uuid, csv_path)
            if backend == "postgresql":
                analyse(xtype.table_name)
            return rows, str(experiment.uuid)
    finally:
        dispose(app)


def dispose(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def analyse(table_name: str) -> None:
    from psycopg2 import sql

    raw = db.engine.raw_connection()
    try:
        raw.dbapi_connection.rollback()
        raw.dbapi_connection.autocommit = True
        with raw.dbapi_connection.cursor() as cur:
            cur.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table_name)))
    finally:
        raw.dbapi_connection.autocommit = False
        raw.close()


# ----------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------


class NullSink:
    """Where the baseline COPY writes: counts and forgets."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


def copy_baseline(url: str, experiment_uuid: str, limit_id: int | None) -> dict:
    """Raw COPY (SELECT * …) TO STDOUT of the same rows through psycopg2."""
    from psycopg2 import sql

    engine = sa.create_engine(normalise_database_url(url))
    try:
        raw = engine.raw_connection()
        try:
            with raw.dbapi_connection.cursor() as cur:
                where = sql.SQL("experiment_uuid = {u}").format(
                    u=sql.Literal(experiment_uuid)
                )
                if limit_id is not None:
                    where = sql.SQL("{w} AND id <= {n}").format(
                        w=where, n=sql.Literal(limit_id)
                    )
                copy = sql.SQL(
                    "COPY (SELECT * FROM bench_trials WHERE {w} ORDER BY id) "
                    "TO STDOUT WITH (FORMAT csv)"
                ).format(w=where)
                sink = NullSink()
                start = time.perf_counter()
                cur.copy_expert(copy.as_string(raw.dbapi_connection), sink)
                seconds = time.perf_counter() - start
                return {"seconds": seconds, "rows": cur.rowcount, "bytes": sink.bytes}
        finally:
            raw.close()
    finally:
        engine.dispose()


def run_export(
    backend: str, url: str, csv_path: Path, args: argparse.Namespace
) -> dict[str, float]:
    """Load, then per size: baseline (PostgreSQL) and the app's export in a child.

    Each is run --reps times, alternating; the fastest run counts (other work on the
    machine only ever slows a run down) and the largest memory growth.
    """
    rows = args.rows
    start = time.perf_counter()
    loaded_rows, experiment_uuid = load_rows(backend, url, csv_path)
    seconds = time.perf_counter() - start
    print(
        f"[{backend}] load: {loaded_rows:,} rows in {seconds:.1f} s "
        f"({loaded_rows / seconds:,.0f} rows/s)",
        flush=True,
    )
    sizes = sorted({min(SMALL_SIZE, rows), rows})
    found: dict[str, float] = {}
    for size in sizes:
        limit = size if size < rows else None  # ids run 1..N after the load
        runs, baselines = [], []
        for _ in range(args.reps):
            runs.append(run_child(url, experiment_uuid, limit))
            if backend == "postgresql":
                baselines.append(copy_baseline(url, experiment_uuid, limit))
        for run in runs:
            if run["rows"] != size:
                sys.exit(f"[{backend}] export truncated: {run['rows']:,} of {size:,}")
        child = min(runs, key=lambda r: r["seconds"])
        child["rss_growth_mb"] = max(r["rss_growth_mb"] for r in runs)
        rate = size / child["seconds"]
        line = (
            f"[{backend}] export {size:,} rows: {child['seconds']:.2f} s "
            f"({rate:,.0f} rows/s, {child['bytes'] / 1e6:,.1f} MB), first byte "
            f"{child['first_byte_s'] * 1000:.0f} ms, peak RSS growth "
            f"{child['rss_growth_mb']:.1f} MB"
        )
        if backend == "postgresql":
            base = min(baselines, key=lambda r: r["seconds"])
            ratio = base["seconds"] / child["seconds"]
            line += (
                f"; raw COPY {base['seconds']:.2f} s "
                f"({size / base['seconds']:,.0f} rows/s): ratio {ratio:.2f}"
            )
        print(line, flush=True)
        prefix = "export_pg" if backend == "postgresql" else "export_sqlite"
        found[f"{prefix}_rows_per_s"] = rate
        found[f"{prefix}_rss_mb_{size}"] = child["rss_growth_mb"]
        if backend == "postgresql":
            found["export_pg_copy_ratio"] = ratio
    summary = " ".join(f"{k}={fmt(v)}" for k, v in found.items())
    print(f"[{backend}] {summary}", flush=True)
    return found


def run_child(url: str, experiment_uuid: str, limit_id: int | None) -> dict:
    """One export in a fresh interpreter, so its memory is its own."""
    job = {"url": url, "experiment": experiment_uuid, "limit_id": limit_id}
    out = subprocess.run(
        [sys.executable, __file__, "--export-child", json.dumps(job)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def vm_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
        return True
    except OSError:
        return False


def export_child(job: dict) -> None:
    """Runs in the subprocess: one warm-up request, then the timed export."""
    app = make_app(job["url"])
    client = signed_in_client(app)
    base = f"/experiments/{job['experiment']}/export.csv"
    params = [("id__lte", str(job["limit_id"]))] if job["limit_id"] else []
    client.get(f"/experiments/{job['experiment']}/export?{urlencode(params)}")
    before = vm_kib("VmRSS")
    reset_peak()
    start = time.perf_counter()
    response = client.get(f"{base}?{urlencode(params)}", buffered=False)
    received = records = 0
    first_byte = None
    for chunk in response.iter_encoded():
        if first_byte is None:
            first_byte = time.perf_counter() - start
        received += len(chunk)
        records += chunk.count(b"\r\n")  # values hold bare \n only
    response.close()
    seconds = time.perf_counter() - start
    growth = (vm_kib("VmHWM") - before) / 1024
    dispose(app)
    result = {
        "seconds": seconds,
        "first_byte_s": first_byte or seconds,
        "bytes": received,
        "rows": records - 1,
        "rss_growth_mb": growth,
    }
    print(json.dumps(result))


# ----------------------------------------------------------------------
# Import
# ----------------------------------------------------------------------


def empty_experiment(url: str, description: str) -> str:
    """A bench type (created once per database) and a new empty experiment in it."""
    from wave_web.models import ExperimentType

    app = make_app(url)
    try:
        with app.app_context():
            xtype = (
                db.session.query(ExperimentType)
                .filter_by(table_name="bench_trials")
                .one_or_none()
            )
            if xtype is None:
                xtype = schema.create_type(
                    "Bench trials", "", "bench_trials", BENCH_COLUMNS
                )
            experiment = catalog.create_experiment(xtype, description, [], {})
            return str(experiment.uuid)
    finally:
        dispose(app)


def baseline_table(conn: sa.Connection, name: str) -> sa.Table:
    """A fresh table with the columns and indexes of the app's data table."""
    conn.execute(sa.text("DROP TABLE IF EXISTS " + name))  # fixed bench name
    table = datatables.build_table(name, list(BENCH_COLUMNS))
    table.metadata.create_all(conn)
    return table


def copy_in_baseline(url: str, csv_path: Path) -> float:
    """Seconds for PostgreSQL's own COPY of the file into a data-table twin."""
    engine = sa.create_engine(normalise_database_url(url))
    try:
        with engine.begin() as conn:
            baseline_table(conn, "bench_copy_in")
        raw = engine.raw_connection()
        try:
            names = ["participant_id", *(c.name for c in BENCH_COLUMNS)]
            statement = (
                "COPY bench_copy_in (experiment_uuid, created_at, updated_at, "
                + ", ".join(names)
                + ") FROM STDIN WITH (FORMAT csv, HEADER true)"
            )
            with raw.dbapi_connection.cursor() as cur:
                cur.execute(
                    "ALTER TABLE bench_copy_in "
                    "ALTER experiment_uuid SET DEFAULT gen_random_uuid(), "
                    "ALTER created_at SET DEFAULT now(), "
                    "ALTER updated_at SET DEFAULT now()"
                )
                raw.dbapi_connection.commit()
                statement = statement.replace(
                    "experiment_uuid, created_at, updated_at, ", ""
                )
                start = time.perf_counter()
                with open(csv_path, encoding="utf-8", newline="") as f:
                    cur.copy_expert(statement, f)
                raw.dbapi_connection.commit()
                return time.perf_counter() - start
        finally:
            raw.close()
    finally:
        engine.dispose()


def executemany_baseline(url: str, csv_path: Path) -> float:
    """Seconds for sqlite3's executemany of the raw rows into a data-table twin."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            table = baseline_table(conn, "bench_copy_in")
        names = ["participant_id", *(c.name for c in BENCH_COLUMNS)]
        insert = table.insert().compile(
            dialect=engine.dialect,
            column_keys=[*names, "experiment_uuid", "created_at", "updated_at"],
        )
        order = [
            [*names, "experiment_uuid", "created_at", "updated_at"].index(n)
            for n in insert.positiontup
        ]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        constants = (uuid.uuid4().hex, now, now)
        raw = engine.raw_connection()
        try:
            cur = raw.dbapi_connection.cursor()
            start = time.perf_counter()
            cur.execute("BEGIN")
            with open(csv_path, encoding="utf-8", newline="") as f:
                reader = csv.reader(f)
                next(reader)
                while batch := [
                    tuple((*r, *constants)[i] for i in order)
                    for r in itertools.islice(reader, BATCH)
                ]:
                    cur.executemany(insert.string, batch)
            cur.execute("COMMIT")
            return time.perf_counter() - start
        finally:
            raw.close()
    finally:
        engine.dispose()


def run_import(
    backend: str, url: str, csv_path: Path, args: argparse.Namespace
) -> dict[str, float]:
    """The app's import (best of --reps, each into a new experiment) vs the baseline."""
    rows = args.rows
    runs, baselines = [], []
    for rep in range(args.reps):
        experiment_uuid = empty_experiment(url, f"Bench import {rep + 1}")
        runs.append(run_import_child(url, experiment_uuid, csv_path))
        if runs[-1]["written"] != rows:
            sys.exit(f"[{backend}] import wrote {runs[-1]['written']:,} of {rows:,}")
        if backend == "postgresql":
            baselines.append(copy_in_baseline(url, csv_path))
        else:
            baselines.append(executemany_baseline(url, csv_path))
    best = min(runs, key=lambda r: r["seconds"])
    base = min(baselines)
    rate = rows / best["seconds"]
    growth = max(r["rss_growth_mb"] for r in runs)
    what = "raw COPY" if backend == "postgresql" else "raw executemany"
    ratio = base / best["seconds"]
    print(
        f"[{backend}] import {rows:,} rows: {best['seconds']:.2f} s "
        f"({rate:,.0f} rows/s), peak RSS growth {growth:.1f} MB; {what} "
        f"{base:.2f} s ({rows / base:,.0f} rows/s): ratio {ratio:.2f}",
        flush=True,
    )
    prefix = "import_pg" if backend == "postgresql" else "import_sqlite"
    ratio_key = "import_pg_copy_ratio" if backend == "postgresql" else prefix + "_ratio"
    return {
        f"{prefix}_rows_per_s": rate,
        ratio_key: ratio,
        f"{prefix}_rss_mb": growth,
    }


def run_import_child(url: str, experiment_uuid: str, csv_path: Path) -> dict:
    job = {"url": url, "experiment": experiment_uuid, "csv": str(csv_path)}
    out = subprocess.run(
        [sys.executable, __file__, "--import-child", json.dumps(job)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def import_child(job: dict) -> None:
    """Runs in the subprocess: one upload with confirm=1, then wait for the job."""
    app = make_app(job["url"])
    client = signed_in_client(app)
    base = f"/experiments/{job['experiment']}"
    client.get(base + "/import")  # warm up: templates, reflection
    before = vm_kib("VmRSS")
    reset_peak()
    start = time.perf_counter()
    with open(job["csv"], "rb") as f:
        response = client.post(
            base + "/import",
            data={"file": (f, "bench.csv"), "mode": "insert", "confirm": "1"},
            content_type="multipart/form-data",
            headers={"Accept": "application/json"},
        )
    state = response.get_json()
    while state["state"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.05)
        state = client.get(state["url"], headers={"Accept": "application/json"})
        state = state.get_json()
    seconds = time.perf_counter() - start
    growth = (vm_kib("VmHWM") - before) / 1024
    if state["state"] != "succeeded":
        sys.exit(f"import {state['state']}: {state['message']}")
    dispose(app)
    print(
        json.dumps(
            {"seconds": seconds, "written": state["written"], "rss_growth_mb": growth}
        )
    )


if __name__ == "__main__":
    main()

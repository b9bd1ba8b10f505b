#!/usr/bin/env python3
"""Server time of the rows grid at scale (issue 4); run by hand, not a test.

Fills ONE experiment with N rows of ../shared/bench/gen_csv.py output, loaded directly
(PostgreSQL: COPY; SQLite: executemany in one transaction), plus `--types` small types,
then times requests through the Flask test client: the first page, a deep page (keyset
cursor at row ~500,000), a filtered page, a page sorted on an indexed column, one
participant's rows across every type and the summary panel (served from its cache, and
computed anew). A raw DBAPI run of the first page's SELECT is the baseline of the same
run. The last line is

    RESULT first_p95_ms=… deep_p95_ms=… filtered_p95_ms=… sorted_p95_ms=… summary_ms=…
           summary_cold_ms=… participant_ms=…

(on one line).

usage: python bench/grid.py [--database sqlite|postgresql] [--rows N] [--types N]
                            [--reps N] [--csv PATH] [--explain]
PostgreSQL: WAVE_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test);
everything goes into a throwaway schema that is dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import BENCH_COLUMNS  # noqa: E402
from bench.common import bench_app  # noqa: E402
from bench.common import database_url  # noqa: E402
from bench.common import load_csv  # noqa: E402
from bench.common import sign_in  # noqa: E402
from wave_web import catalog  # noqa: E402
from wave_web import datatables  # noqa: E402
from wave_web import queries  # noqa: E402
from wave_web import schema  # noqa: E402
from wave_web.columns import ColumnDef  # noqa: E402
from wave_web.extensions import db  # noqa: E402
from wave_web.models import Experiment  # noqa: E402

GENERATOR = ROOT.parent / "shared" / "bench" / "gen_csv.py"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

SMALL_COLUMNS = (
    ColumnDef("score", "INTEGER"),
    ColumnDef("label", "STRING"),
    ColumnDef("seen_at", "DATETIME"),
)
SORT_COLUMN = "reaction_time"
FILTER = ("reaction_time__gt", "2.0")  # about a fifth of the rows
BATCH = 10_000
PARTICIPANT = "P0001"  # the generator draws P0000–P1999


def main() -> None:
    args = parse_args()
    with database_url(args.database) as url, bench_app(url) as app:
        run(app, args)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--types", type=int, default=1000, help="small types besides")
    p.add_argument("--reps", type=int, default=30, help="timed requests per case")
    p.add_argument("--summary-reps", type=int, default=5)
    p.add_argument("--deep-row", type=int, help="default: min(500000, rows // 2)")
    p.add_argument("--csv", type=Path, help="reuse (or keep) the generated CSV here")
    p.add_argument("--explain", action="store_true", help="print query plans")
    return p.parse_args()


# ----------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------


def run(app, args: argparse.Namespace) -> None:
    backend = args.database
    print(f"database={backend} rows={args.rows:,} types={args.types:,}", flush=True)
    csv_path, tmpdir = args.csv, None
    if csv_path is None:
        tmpdir = tempfile.mkdtemp(prefix="wave_bench_csv_")
        csv_path = Path(tmpdir) / "rows.csv"
    try:
        if not csv_path.exists() or csv_rows(csv_path) != args.rows:
            seconds = timed(lambda: generate(csv_path, args.rows))
            print(f"generate: {seconds:.1f} s ({csv_path})", flush=True)
        with app.app_context():
            seconds = timed(lambda: add_small_types(args.types))
            print(f"small types: {args.types:,} in {seconds:.1f} s", flush=True)
            xtype = schema.create_type(
                "Bench trials", "", "bench_trials", BENCH_COLUMNS
            )
            experiment = catalog.create_experiment(
                xtype, "Bench: one big experiment", [], {}
            )
            seconds = timed(lambda: load_csv(xtype, experiment.uuid, csv_path))
            print(
                f"load: {args.rows:,} rows in {seconds:.1f} s "
                f"({args.rows / seconds:,.0f} rows/s)",
                flush=True,
            )
            seconds = timed(lambda: add_sort_index(xtype, SORT_COLUMN))
            print(f"index on {SORT_COLUMN}: {seconds:.1f} s", flush=True)
            if backend == "postgresql":
                vacuum_analyze(xtype.table_name)  # what autovacuum does after a load
            ids = (xtype.id, experiment.uuid)
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    measure(app, args, *ids)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def generate(path: Path, rows: int) -> None:
    subprocess.run([sys.executable, str(GENERATOR), str(rows), str(path)], check=True)


def csv_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def add_small_types(n: int) -> None:
    """n types with three columns, one experiment and five rows each."""
    for i in range(n):
        xtype = schema.create_type(
            f"Small type {i:04d}", "", f"small_{i:04d}_data", SMALL_COLUMNS
        )
        experiment = catalog.create_experiment(xtype, f"Small {i}", [], {})
        rows = [
            {"participant_id": f"P{j}", "score": j, "label": "x", "seen_at": None}
            for j in range(5)
        ]
        datatables.insert_rows(xtype, experiment.uuid, rows)
        db.session.commit()


def add_sort_index(xtype, name: str) -> None:
    """The project's "add index" action if it exists, else the same index by hand."""
    if hasattr(schema, "add_index"):
        schema.add_index(xtype, name)
        return
    table = datatables.reflect(xtype)
    sa.Index(
        datatables.index_name(table.name, f"s_{name}"),
        table.c.experiment_uuid,
        table.c[name],
        table.c.id,
    ).create(db.session.connection())
    db.session.commit()
    datatables.forget(xtype.table_name)


def vacuum_analyze(table_name: str) -> None:
    from psycopg2 import sql

    raw = db.engine.raw_connection()
    conn = raw.dbapi_connection
    try:
        conn.rollback()
        conn.autocommit = True  # VACUUM cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table_name)))
    finally:
        conn.autocommit = False
        raw.close()


# ----------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------


class StatementLog:
    """Statements the engine runs while active (to count them and explain them)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.statements: list[tuple[str, Any]] = []
        self.active = False
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany):
        if self.active:
            self.statements.append((statement, parameters))

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[tuple[str, Any]]]:
        self.statements, self.active = [], True
        try:
            yield self.statements
        finally:
            self.active = False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def measure(app, args: argparse.Namespace, type_id: int, experiment_uuid) -> None:
    with app.app_context():
        xtype = schema.get_type(type_id)
        table = datatables.reflect(xtype)
        total = db.session.get(Experiment, experiment_uuid).row_count
        deep_row = args.deep_row or min(500_000, total // 2)
        deep = cursor_at(xtype, table, experiment_uuid, "id", deep_row)
        sorted_deep = cursor_at(xtype, table, experiment_uuid, SORT_COLUMN, deep_row)
        baseline = raw_first_page(table, experiment_uuid)
        log = StatementLog(db.engine)
        db.session.remove()
    base = f"/experiments/{experiment_uuid}"
    cases = {
        "first": base,
        "deep": f"{base}?{urlencode([('_after', deep), ('_start', deep_row)])}",
        "filtered": f"{base}?{urlencode([FILTER])}",
        "sorted": f"{base}?{urlencode([('_sort', SORT_COLUMN)])}",
        "sorted_deep": f"{base}?"
        + urlencode(
            [("_sort", SORT_COLUMN), ("_after", sorted_deep), ("_start", deep_row)]
        ),
    }
    client = app.test_client()
    sign_in(app, client)
    results: dict[str, tuple[float, float, int]] = {}
    base_times = repeat(baseline, args.reps)
    results["baseline_raw"] = (*p50_p95(base_times), 1)
    for name, url in cases.items():
        results[name] = time_get(client, log, url, args.reps, args.explain)
    # Not a grid page: one participant's rows in every type (args.types + 1 types).
    results["participant"] = time_get(
        client,
        log,
        f"/participants/{PARTICIPANT}",
        args.summary_reps,
        args.explain,
        PARTICIPANT.encode(),
    )
    summary_url = f"{base}/summary"
    summary = time_summary(
        app, client, log, summary_url, args, type_id, experiment_uuid
    )
    if summary is not None:
        results["summary"] = summary
        results["summary_cold"] = time_summary_cold(app, client, summary_url, args)
    print_table(results, deep_row)
    summary_ms = f"{summary[1]:.0f}" if summary is not None else "nan"
    cold = results.get("summary_cold")
    cold_ms = f"{cold[1]:.0f}" if cold is not None else "nan"
    print(
        f"RESULT first_p95_ms={results['first'][1]:.1f} "
        f"deep_p95_ms={results['deep'][1]:.1f} "
        f"filtered_p95_ms={results['filtered'][1]:.1f} "
        f"sorted_p95_ms={results['sorted'][1]:.1f} summary_ms={summary_ms} "
        f"summary_cold_ms={cold_ms} "
        f"participant_ms={results['participant'][1]:.0f}"
    )


def cursor_at(xtype, table: sa.Table, experiment_uuid, sort: str, position: int) -> str:
    """The `_after` token of the row at 1-based `position` in (sort, id) order.

    One OFFSET query, run once while setting up; the grid itself never uses OFFSET.
    """
    key = table.c[sort]
    order = [key, table.c.id] if sort != "id" else [table.c.id]
    row = db.session.execute(
        sa.select(key, table.c.id)
        .where(table.c.experiment_uuid == experiment_uuid)
        .order_by(*order)
        .offset(position - 1)
        .limit(1)
    ).one()
    col = next(c for c in queries.grid_columns(xtype) if c.name == sort)
    return queries.Cursor(row[0], row[1]).encode(col)


def raw_first_page(table: sa.Table, experiment_uuid) -> Callable[[], None]:
    """The grid's first-page SELECT on a raw DBAPI cursor (no ORM, no template)."""
    stmt = (
        sa.select(table)
        .where(table.c.experiment_uuid == experiment_uuid)
        .order_by(table.c.id)
        .limit(queries.DEFAULT_PAGE_SIZE + 1)
    )
    dialect = db.engine.dialect
    compiled = stmt.compile(dialect=dialect)
    values = compiled.construct_params()

    def plain(value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return value.hex if dialect.name == "sqlite" else str(value)
        return value

    if compiled.positiontup:
        params: Any = tuple(plain(values[k]) for k in compiled.positiontup)
    else:
        params = {k: plain(v) for k, v in values.items()}
    sql_text = str(compiled)
    raw = db.engine.raw_connection()

    def run() -> None:
        cur = raw.cursor()
        cur.execute(sql_text, params)
        rows = cur.fetchall()
        cur.close()
        raw.rollback()
        assert len(rows) == queries.DEFAULT_PAGE_SIZE + 1, len(rows)

    return run


def repeat(fn: Callable[[], None], reps: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def p50_p95(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), percentile(times, 0.95)


def time_get(client, log, url: str, reps: int, explain: bool, shows=b'id="row-'):
    def get() -> None:
        response = client.get(url)
        if response.status_code != 200 or shows not in response.data:
            raise SystemExit(f"GET {url} gave {response.status_code} without rows")

    with log.capture() as statements:
        get()
    if explain:
        print_plans(client.application, url, statements)
    return (*p50_p95(repeat(get, reps)), len(statements))


def time_summary(app, client, log: StatementLog, url: str, args, type_id, exp_uuid):
    """The summary panel's route if it exists, else summaries.summarise, else None."""
    with log.capture() as statements:
        response = client.get(url)
    if response.status_code == 200:
        if args.explain:
            print_plans(app, url, statements)

        def get() -> None:
            assert client.get(url).status_code == 200

        times = repeat(get, args.summary_reps, warmup=1)
        return (*p50_p95(times), len(statements))
    try:
        from wave_web.summaries import summarise
    except ImportError:
        print("summary: neither the route nor wave_web.summaries exists: nan")
        return None
    print(f"summary: GET {url} gave {response.status_code}; timing summarise()")

    def call() -> None:
        with app.app_context():
            xtype = schema.get_type(type_id)
            cols = queries.grid_columns(xtype)
            summarise(xtype, queries.RowQuery(tuple(cols)), exp_uuid)
            db.session.remove()

    return (*p50_p95(repeat(call, args.summary_reps, warmup=1)), 0)


def time_summary_cold(app, client, url: str, args) -> tuple[float, float, int] | None:
    """The summary panel with its cache emptied before each request: computed anew,
    as after any row write (summary_ms is the repeat view, served from the cache)."""
    cache = app.extensions.get("wave_summaries")
    if cache is None:
        return None

    def get() -> None:
        cache.clear()
        assert client.get(url).status_code == 200

    return (*p50_p95(repeat(get, args.summary_reps, warmup=1)), 0)


def print_plans(app, url: str, statements: list[tuple[str, Any]]) -> None:
    """EXPLAIN (ANALYZE) each data-table statement of one request."""
    print(f"\n-- plans for GET {url}")
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            is_pg = db.engine.dialect.name == "postgresql"
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if is_pg else "EXPLAIN QUERY PLAN "
            for statement, params in statements:
                if "bench_trials" not in statement:
                    continue
                print(" ".join(statement.split()))
                cur = raw.cursor()
                cur.execute(prefix + statement, params)
                for line in cur.fetchall():
                    print("   ", line[0] if is_pg else line[-1])
                cur.close()
                raw.rollback()
        finally:
            raw.close()


def print_table(results: dict[str, tuple[float, float, int]], deep_row: int) -> None:
    base = results["baseline_raw"][0]
    print(f"\n{'case':<14}{'p50_ms':>9}{'p95_ms':>9}{'queries':>9}{'p50/raw':>9}")
    for name, (p50, p95, n) in results.items():
        print(f"{name:<14}{p50:>9.2f}{p95:>9.2f}{n:>9}{p50 / base:>8.1f}x")
    print(f"(deep pages start after row {deep_row:,}; filter {FILTER[0]}={FILTER[1]})")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"(load average {load} on {os.cpu_count()} CPUs: other work skews p95)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Column summaries computed cold (no cache, as after a write) at scale (issue 13).

Fills ONE experiment with N rows of ../shared/bench/gen_csv.py output through the app's
import, then times summaries.compute() of the experiment's whole view, and times each
statement it runs. The baseline of the same run is the same computation with every
pass read in one statement (summaries.SPLIT_IDS out of reach: SQLite's passes then run
on one core, as before the split), alternated with the measured one. The last line is

    RESULT database=… rows=… cold_ms=… one_pass_ms=… ratio=… load1=…

usage: python bench/summaries.py [--database sqlite|postgresql] [--rows N] [--reps N]
                                 [--csv PATH] [--keep DIR]
--keep DIR keeps (and reuses) the SQLite database in DIR (1M rows take a minute).
PostgreSQL: WAVE_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test);
a throwaway schema, dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import BENCH_COLUMNS  # noqa: E402
from bench.common import bench_app  # noqa: E402
from bench.common import database_url  # noqa: E402
from bench.common import load_csv  # noqa: E402
from wave_web import catalog  # noqa: E402
from wave_web import queries  # noqa: E402
from wave_web import schema  # noqa: E402
from wave_web import summaries  # noqa: E402
from wave_web.extensions import db  # noqa: E402
from wave_web.models import Experiment  # noqa: E402
from wave_web.models import ExperimentType  # noqa: E402

GENERATOR = ROOT.parent / "shared" / "bench" / "gen_csv.py"
TABLE = "bench_summary_trials"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--csv", type=Path, help="reuse (or keep) the generated CSV here")
    p.add_argument("--keep", type=Path, help="SQLite: keep/reuse the database here")
    args = p.parse_args()
    with _url(args) as url, bench_app(url) as app, app.app_context():
        run(args)


@contextlib.contextmanager
def _url(args):
    if args.database == "sqlite" and args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{args.keep.resolve()}/bench.db"
        return
    with database_url(args.database) as url:
        yield url


def run(args) -> None:
    xtype = db.session.query(ExperimentType).filter_by(table_name=TABLE).one_or_none()
    if xtype is None:
        xtype = build(args)
    experiment = (
        db.session.query(Experiment).filter_by(experiment_type_id=xtype.id).one()
    )
    query = queries.RowQuery(tuple(queries.grid_columns(xtype)))
    log: list[tuple[str, float]] = []
    engine = db.engine

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, params, context, many):
        conn.info["t0"] = time.perf_counter()

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, params, context, many):
        log.append((statement, time.perf_counter() - conn.info["t0"]))

    split_ids = summaries.SPLIT_IDS

    def cold(split: bool) -> float:
        db.session.commit()
        summaries.SPLIT_IDS = split_ids if split else sys.maxsize
        try:
            start = time.perf_counter()
            summaries.compute(xtype, query, experiment.uuid)
            return time.perf_counter() - start
        finally:
            summaries.SPLIT_IDS = split_ids

    cold(True)  # warm the page cache
    base, times = [], []
    for _ in range(args.reps):
        base.append(cold(False))
        log.clear()
        times.append(cold(True))
    print("statements of the last run:")
    for statement, seconds in log:
        if seconds > 0.005:
            print(f"  {seconds * 1000:8.0f} ms  {' '.join(statement.split())[:100]}")
    cold_ms = statistics.median(times) * 1000
    base_ms = statistics.median(base) * 1000
    load = os.getloadavg()
    print(
        f"cold: {[round(t * 1000) for t in times]} ms; one pass per statement: "
        f"{[round(t * 1000) for t in base]} ms; load {load}"
    )
    print(
        f"RESULT database={args.database} rows={args.rows} cold_ms={cold_ms:.0f} "
        f"one_pass_ms={base_ms:.0f} ratio={cold_ms / base_ms:.2f} "
        f"load1={load[0]:.2f}"
    )


def build(args):
    csv_path = args.csv
    tmp = None
    if csv_path is None:
        tmp = tempfile.mkdtemp(prefix="wave_bench_csv_")
        csv_path = Path(tmp) / "rows.csv"
    if not csv_path.exists():
        subprocess.run(
            [sys.executable, str(GENERATOR), str(args.rows), str(csv_path)], check=True
        )
    xtype = schema.create_type("Bench summaries", "", TABLE, BENCH_COLUMNS)
    experiment = catalog.create_experiment(xtype, "Bench: summaries", [], {})
    start = time.perf_counter()
    written = load_csv(xtype, experiment.uuid, csv_path)
    print(f"load: {written:,} rows in {time.perf_counter() - start:.1f} s", flush=True)
    if args.database == "postgresql":
        raw = db.engine.raw_connection()
        try:
            raw.dbapi_connection.autocommit = True
            with raw.dbapi_connection.cursor() as cur:
                cur.execute(f'VACUUM ANALYZE "{TABLE}"')
        finally:
            raw.close()
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return xtype


if __name__ == "__main__":
    main()

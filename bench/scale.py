#!/usr/bin/env python3
"""The grid's server time as a type's table grows: 200k, 1M, 10M rows (PostgreSQL).

Issue 13 item 3 ("flat from 200k to 10M rows") and issue 14 item 3 (partitioned data
tables). Two types with the columns of ../shared/bench/gen_csv.py: one ordinary, one
partitioned by experiment (partitioning.py). Each gets one large experiment of
`--big` rows, loaded once by the app's own import (COPY) from a generated CSV, and
99 more experiments that take every further row; the table is grown to each size
by server-side `INSERT … SELECT` copies of the large experiment's stored rows (the
values exactly as an import stores them; a step of over 500k rows drops the indexes
but the primary key first and builds them again after), then VACUUM ANALYZE (what
autovacuum does after a load). The large experiment stays the same size: what is
measured is whether a page of one experiment costs more when the table around it is
50 times larger.

At each size and for each table, through the Flask test client (the whole request:
routing, queries, template), ≥ `--reps` timed requests per case, medians and p95:

- first: the experiment's first page with its row count
- filtered: participant_id equals one participant, with the matching count
- sorted_deep: a page of the sort on an indexed column, `--deep` rows in (keyset)

Then the ratio of each case's median at the largest size to the smallest (flat ≈ 1),
and `EXPLAIN (ANALYZE, BUFFERS)` of the first page's SELECT at the largest size on both
tables: on the partitioned one a single partition appears in the plan. The last line:

    RESULT worst_ratio_plain=… worst_ratio_partitioned=… first_p50_ms_max=…
           partitions_in_plan=… rows_max=… load_s=…

usage: python bench/scale.py [--sizes 200000,1000000,10000000] [--reps 15]
                             [--big 100000] [--deep 50000]
       python bench/scale.py --convert 1000000   # time `flask partition-type` only
PostgreSQL: WAVE_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test);
everything goes into a throwaway schema, dropped at the end (also on Ctrl-C).
Disk: about 3 GB per 10M rows and table (check `df -h` first).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
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
from bench.grid import StatementLog  # noqa: E402
from bench.grid import cursor_at  # noqa: E402
from bench.grid import generate  # noqa: E402
from bench.grid import p50_p95  # noqa: E402
from bench.grid import repeat  # noqa: E402
from bench.grid import vacuum_analyze  # noqa: E402
from wave_web import catalog  # noqa: E402
from wave_web import datatables  # noqa: E402
from wave_web import partitioning  # noqa: E402
from wave_web import schema  # noqa: E402
from wave_web.extensions import db  # noqa: E402
from wave_web.models import Experiment  # noqa: E402

SORT_COLUMN = "reaction_time"
PARTICIPANT = "P0001"  # the generator draws P0000–P1999
OTHER_EXPERIMENTS = 99
VARIANTS = {"plain": False, "partitioned": True}
MODULUS = partitioning.MODULUS
PARTITION = re.compile(r"\bpt_\w+?_[0-9a-f]{8}_\d{2}\b")  # partitioning.partition_name
CASES = ("first", "filtered", "sorted_deep")
CHUNK = 1_000_000  # rows per INSERT … SELECT statement (one transaction each)
REBUILD_OVER = 500_000  # growing by more: indexes dropped, then built again


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="200000,1000000,10000000")
    p.add_argument("--reps", type=int, default=15, help="timed requests per case")
    p.add_argument("--big", type=int, default=100_000, help="rows of the paged one")
    p.add_argument("--deep", type=int, default=50_000, help="rows before sorted_deep")
    p.add_argument(
        "--convert",
        type=int,
        default=0,
        help="only time `flask partition-type` on an ordinary type of this many rows",
    )
    args = p.parse_args()
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.sizes[0] < args.big:
        p.error("every size must be at least --big")
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    print(f"load average at start: {loadavg()}", flush=True)
    with database_url("postgresql") as url, bench_app(url) as app:
        run(app, args)
    print(f"wall time {time.perf_counter() - started:.0f} s (schema dropped)")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(app, args: argparse.Namespace) -> None:
    variants = {"plain": False} if args.convert else VARIANTS
    tmp = tempfile.mkdtemp(prefix="wave_scale_")
    try:
        csv_path = Path(tmp) / "big.csv"
        generate(csv_path, args.big)
        with app.app_context():
            made = {v: setup(v, p, csv_path) for v, p in variants.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.convert:
        convert(app, made["plain"], args.convert)
        return
    results: dict[tuple[str, int], dict[str, tuple[float, float]]] = {}
    load_seconds = 0.0
    for size in args.sizes:
        for variant in VARIANTS:
            with app.app_context():
                seconds = grow(made[variant], size)
            load_seconds += seconds
            print(
                f"{variant:<12} grown to {size:>11,} rows in {seconds:6.1f} s "
                f"(load {loadavg()})",
                flush=True,
            )
        for variant in VARIANTS:  # measured after both are loaded: same machine state
            results[variant, size] = measure(app, args, made[variant])
            print_size(variant, size, results[variant, size])
    report(app, args, made, results, load_seconds)


# ----------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------


def setup(variant: str, partitioned: bool, csv_path: Path) -> dict[str, Any]:
    """The type, its large experiment (loaded by the app's import) and the others."""
    xtype = schema.create_type(
        f"Scale {variant}",
        "",
        f"scale_{variant}",
        list(BENCH_COLUMNS),
        partitioned=partitioned,
    )
    big = catalog.create_experiment(xtype, "The large experiment", [], {})
    start = time.perf_counter()
    written = load_csv(xtype, big.uuid, csv_path)
    print(
        f"{variant:<12} import of {written:,} rows: "
        f"{written / (time.perf_counter() - start):,.0f} rows/s",
        flush=True,
    )
    schema.add_index(xtype, SORT_COLUMN)
    others = [
        catalog.create_experiment(xtype, f"Filler {i:02d}", [], {}).uuid
        for i in range(OTHER_EXPERIMENTS)
    ]
    return {
        "variant": variant,
        "type_id": xtype.id,
        "table": xtype.table_name,
        "big": big.uuid,
        "big_rows": written,
        "others": others,
        "rows": written,
    }


def grow(made: dict[str, Any], size: int) -> float:
    """Copies of the large experiment's rows into the others until `size` rows."""
    start = time.perf_counter()
    xtype = schema.get_type(made["type_id"])
    table = datatables.reflect(xtype)
    names = [c.name for c in table.columns if c.name not in ("id", "experiment_uuid")]
    rebuild = size - made["rows"] > REBUILD_OVER
    if rebuild:  # a bulk load: sorted index builds beat millions of random inserts
        indexes = drop_indexes(table)
    others = (
        sa.values(sa.column("n", sa.Integer), sa.column("u", sa.Uuid), name="others")
        .data(list(enumerate(made["others"])))
        .alias("others")
    )
    while made["rows"] < size:
        n = min(CHUNK, size - made["rows"])
        copies = -(-n // made["big_rows"])
        series = (
            sa.func.generate_series(1, copies).table_valued("k").render_derived("g")
        )
        spread = (series.c.k * 7 + table.c.id + made["rows"]) % OTHER_EXPERIMENTS
        source = (
            sa.select(others.c.u, *(table.c[n_] for n_ in names))
            .select_from(table)
            .join(series, sa.true())
            .join(others, others.c.n == spread)
            .where(table.c.experiment_uuid == made["big"])
            .limit(n)
        )
        db.session.execute(
            sa.insert(table).from_select(["experiment_uuid", *names], source)
        )
        db.session.commit()
        made["rows"] += n
    if rebuild:
        create_indexes(indexes)
    recount(made)
    db.session.commit()
    db.session.remove()
    vacuum_analyze(made["table"])
    return time.perf_counter() - start


def drop_indexes(table: sa.Table) -> list[sa.Index]:
    """Drop the table's indexes but the primary key; the Index objects to rebuild."""
    kept = []
    for index in sorted(table.indexes, key=lambda i: i.name):
        holder = sa.Table(
            table.name, sa.MetaData(), *(sa.Column(c.name) for c in index.columns)
        )
        kept.append(sa.Index(index.name, *(holder.c[c.name] for c in index.columns)))
        index.drop(db.session.connection())
    db.session.commit()
    return kept


def create_indexes(indexes: list[sa.Index]) -> None:
    """CREATE INDEX each again (on a partitioned table: on every partition)."""
    conn = db.session.connection()
    conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
    for index in indexes:
        index.create(conn)
    db.session.commit()


def recount(made: dict[str, Any]) -> None:
    """experiments.row_count of the filler experiments, as the app keeps it."""
    xtype = schema.get_type(made["type_id"])
    table = datatables.reflect(xtype)
    counts = dict(
        db.session.execute(
            sa.select(table.c.experiment_uuid, sa.func.count())
            .where(table.c.experiment_uuid.in_(made["others"]))
            .group_by(table.c.experiment_uuid)
        ).all()
    )
    for experiment_uuid, count in counts.items():
        db.session.execute(
            sa.update(Experiment)
            .where(Experiment.uuid == experiment_uuid)
            .values(row_count=count)
        )


def convert(app, made: dict[str, Any], size: int) -> None:
    """Time partitioning.partition_type (what `flask partition-type` runs)."""
    with app.app_context():
        grow(made, size)
        done = partitioning.partition_type(schema.get_type(made["type_id"]))
    print(
        f"partition-type: {done.rows:,} rows in {done.seconds:.1f} s under the lock "
        f"({done.rows / done.seconds:,.0f} rows/s; load {loadavg()})"
    )
    print(f"RESULT convert_rows={done.rows} convert_s={done.seconds:.1f}")


# ----------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------


def urls(app, args, made: dict[str, Any]) -> dict[str, str]:
    with app.app_context():
        xtype = schema.get_type(made["type_id"])
        table = datatables.reflect(xtype)
        deep = cursor_at(xtype, table, made["big"], SORT_COLUMN, args.deep)
        db.session.remove()
    base = f"/experiments/{made['big']}"
    return {
        "first": base,
        "filtered": f"{base}?{urlencode([('participant_id__exact', PARTICIPANT)])}",
        "sorted_deep": f"{base}?"
        + urlencode([("_sort", SORT_COLUMN), ("_after", deep), ("_start", args.deep)]),
    }


def measure(app, args, made: dict[str, Any]) -> dict[str, tuple[float, float]]:
    client = app.test_client()
    sign_in(app, client)
    out = {}
    for name, url in urls(app, args, made).items():

        def get(url: str = url) -> None:
            response = client.get(url)
            if response.status_code != 200 or b'id="row-' not in response.data:
                raise SystemExit(f"GET {url} gave {response.status_code} without rows")

        out[name] = p50_p95(repeat(get, args.reps))
    return out


def print_size(variant: str, size: int, cases: dict[str, tuple[float, float]]) -> None:
    parts = "  ".join(
        f"{name} {p50:6.1f}/{p95:6.1f}" for name, (p50, p95) in cases.items()
    )
    print(f"{variant:<12}{size:>11,} rows  p50/p95 ms: {parts}  (load {loadavg()})")


def grid_statements(app, made: dict[str, Any], url: str) -> list[tuple[str, Any]]:
    """The data-table statements one grid request runs (for EXPLAIN)."""
    client = app.test_client()
    sign_in(app, client)
    with app.app_context():
        log = StatementLog(db.engine)
    with log.capture() as seen:
        assert client.get(url).status_code == 200
    return [(s, p) for s, p in seen if made["table"] in s]


def explain(app, statement: str, params: Any) -> list[str]:
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
            lines = [row[0] for row in cur.fetchall()]
            cur.close()
            raw.rollback()
        finally:
            raw.close()
    return lines


def report(app, args, made, results, load_seconds: float) -> None:
    small, large = args.sizes[0], args.sizes[-1]
    print(f"\nratio of medians {large:,} / {small:,} rows (flat ≈ 1):")
    worst = {}
    for variant in VARIANTS:
        ratios = {
            c: results[variant, large][c][0] / results[variant, small][c][0]
            for c in CASES
        }
        worst[variant] = max(ratios.values())
        shown = "  ".join(f"{c} {r:.2f}" for c, r in ratios.items())
        print(f"  {variant:<12}{shown}")
    touched = 0
    for variant in VARIANTS:
        shown = urls(app, args, made[variant])
        cases = ["first", "filtered"] if VARIANTS[variant] else ["first"]
        for case in cases:
            statements = grid_statements(app, made[variant], shown[case])
            print(f"\n-- {variant}, {large:,} rows, {case}: GET {shown[case]}")
            for statement, params in statements:
                print(" ".join(statement.split()))
                plan = explain(app, statement, params)
                for line in plan:
                    print("   ", line)
                if VARIANTS[variant]:
                    found = set(PARTITION.findall("\n".join(plan)))
                    touched = max(touched, len(found))
                    print(f"partitions in this plan: {len(found)} of {MODULUS}")
    first_max = max(results[v, large]["first"][0] for v in VARIANTS)
    print(f"(load average {loadavg()} on {os.cpu_count()} CPUs: other work skews p95)")
    print(
        f"RESULT worst_ratio_plain={worst['plain']:.2f} "
        f"worst_ratio_partitioned={worst['partitioned']:.2f} "
        f"first_p50_ms_max={first_max:.1f} partitions_in_plan={touched} "
        f"rows_max={large} load_s={load_seconds:.0f}"
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Server time of the participants index at scale (issue 12); run by hand, not a test.

Fills `--types` types with `--participants` participant ids (each in one or two types,
`--rows-per` rows each per type, in several experiments), loaded directly in one
transaction per type, then times requests of /participants/ through the Flask test
client: the first page, a deep page (after the middle id), the page before it, and a
prefix search. The last line is

    RESULT first_p95_ms=… deep_p95_ms=… previous_p95_ms=… prefix_p95_ms=…

(the time of a whole request through the test client: sign-in check and page included).

usage: python bench/participants.py [--database sqlite|postgresql]
           [--participants N] [--types N] [--rows-per N] [--reps N]
PostgreSQL: WAVE_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test);
everything goes into a throwaway schema that is dropped at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import bench_app  # noqa: E402
from bench.common import database_url  # noqa: E402
from bench.common import signed_in_client  # noqa: E402
from wave_web import catalog  # noqa: E402
from wave_web import datatables  # noqa: E402
from wave_web import schema  # noqa: E402
from wave_web.columns import ColumnDef  # noqa: E402
from wave_web.extensions import db  # noqa: E402
from wave_web.models import Experiment  # noqa: E402

EXPERIMENTS_PER_TYPE = 4


def main() -> None:
    args = parse_args()
    with database_url(args.database) as url, bench_app(url) as app:
        run(app, args)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--participants", type=int, default=100_000)
    p.add_argument("--types", type=int, default=3)
    p.add_argument("--rows-per", type=int, default=3, help="rows per participant/type")
    p.add_argument("--reps", type=int, default=30)
    return p.parse_args()


def fill(args: argparse.Namespace) -> int:
    """Participant i has rows in type i % types and, for even i, the next one too."""
    now = dt.datetime(2026, 1, 1)
    total = 0
    for t in range(args.types):
        xtype = schema.create_type(
            f"Bench {t}", "", f"bench_{t}_data", [ColumnDef("score", "INTEGER")]
        )
        experiments = [
            catalog.create_experiment(xtype, f"Run {e}", [], {})
            for e in range(EXPERIMENTS_PER_TYPE)
        ]
        table = datatables.reflect(xtype)
        rows, counts = [], dict.fromkeys((e.uuid for e in experiments), 0)
        for i in range(args.participants):
            if i % args.types != t and not (i % 2 == 0 and (i + 1) % args.types == t):
                continue
            for r in range(args.rows_per):
                key = experiments[(i + r) % EXPERIMENTS_PER_TYPE].uuid
                counts[key] += 1
                rows.append(
                    {
                        "experiment_uuid": key,
                        "participant_id": f"P{i:07d}",
                        "created_at": now,
                        "updated_at": now,
                        "score": r,
                    }
                )
        db.session.execute(sa.insert(table), rows)
        for key, n in counts.items():
            db.session.execute(
                sa.update(Experiment).where(Experiment.uuid == key).values(row_count=n)
            )
        db.session.commit()
        total += len(rows)
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(sa.text("VACUUM ANALYZE"))
    return total


def timed(client, url: str, reps: int) -> tuple[float, float]:
    """(median, p95) of the time of GET url, in ms (the first request warms up)."""
    assert client.get(url).status_code == 200, url
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    return statistics.median(times), statistics.quantiles(times, n=20)[-1]


def run(app, args: argparse.Namespace) -> None:
    with app.app_context():
        start = time.perf_counter()
        rows = fill(args)
        print(
            f"{args.database}: {args.participants:,} participants, {rows:,} rows in "
            f"{args.types} types, loaded in {time.perf_counter() - start:.1f} s"
        )
    client = signed_in_client(app)
    middle = f"P{args.participants // 2:07d}"
    cases = {
        "first": "/participants/",
        "deep": f"/participants/?after={middle}",
        "previous": f"/participants/?before={middle}",
        "prefix": f"/participants/?q={middle[:5]}",
    }
    results = {name: timed(client, url, args.reps) for name, url in cases.items()}
    for name, (median, p95) in results.items():
        print(f"{name:>9}: median {median:.1f} ms, p95 {p95:.1f} ms  ({cases[name]})")
    print("RESULT " + " ".join(f"{k}_p95_ms={v[1]:.1f}" for k, v in results.items()))


if __name__ == "__main__":
    main()

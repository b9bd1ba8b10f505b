"""The app under load (issue 14 item 4): the long version of
tests/resilience/test_load.py, the same scenario (tests/resilience/scenario.py).

gunicorn with the repository's gunicorn.conf.py (4 processes × 2 threads) on
127.0.0.1, 200,000 rows preloaded through the import pipeline, then for --seconds:
16 users browsing (lists, grid pages and next pages, a filter, a sort, inline edits),
2 users uploading 10,000-row CSVs back to back, 1 user streaming the whole export.

Baseline in the same run, before the load: one browsing user alone for a quarter
of --seconds (at most 15 s). Prints p50/p95/p99 per request kind and overall
(pages; uploads, exports and sign-ins apart), loaded / alone, the load average,
and ends with

    RESULT p50_ms=… p95_ms=… p99_ms=… responses_5xx=… connection_errors=… rows_lost=…

Target (issue 14): p99 < 500 ms, with 0 5xx, 0 connection errors and 0 rows lost.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import database_url  # noqa: E402
from tests.resilience import scenario  # noqa: E402
from tests.servers import ADMIN  # noqa: E402
from tests.servers import start_gunicorn  # noqa: E402
from tests.servers import wait_for_every_worker  # noqa: E402

TARGET_P99_MS = 500


def main() -> None:
    args = parse_args()
    print(f"load average before: {load_average()}", flush=True)
    with (
        database_url(args.database) as url,
        tempfile.TemporaryDirectory(prefix="wave_load_") as tmp,
    ):
        folder = Path(tmp)
        start = time.perf_counter()
        experiment = scenario.prepare(url, folder)
        upload_csv = scenario.write_csv(folder / "upload.csv", scenario.UPLOAD_ROWS)
        print(
            f"{args.database}: {scenario.ROWS:,} rows preloaded in "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
        plan = scenario.Plan(experiment, upload_csv)
        with scenario.served(url, folder, start_gunicorn, wait_for_every_worker) as (
            base,
            log_path,
        ):
            alone_s = min(15.0, args.seconds / 4)
            print(f"baseline: 1 browsing user alone, {alone_s:.0f} s", flush=True)
            alone = scenario.run(base, ADMIN, plan, alone_s, 1, 0, 0)
            print(
                f"load: {args.browsers} browsing, {args.uploaders} uploading "
                f"{scenario.UPLOAD_ROWS:,}-row CSVs, {args.exporters} exporting; "
                f"{args.seconds} s",
                flush=True,
            )
            results = scenario.run(
                base,
                ADMIN,
                plan,
                args.seconds,
                args.browsers,
                args.uploaders,
                args.exporters,
            )
            loaded_average = load_average()
            problems = scenario.server_problems(log_path)
        counted, stored = scenario.count_rows(url, folder, experiment)
    report(args, alone, results, counted, stored, problems, loaded_average)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=60, help="length of the load")
    p.add_argument(
        "--database",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="PostgreSQL: a throwaway schema on WAVE_BENCH_DATABASE_URL's server",
    )
    for kind, default in (
        ("browsers", scenario.BROWSERS),
        ("uploaders", scenario.UPLOADERS),
        ("exporters", scenario.EXPORTERS),
    ):
        p.add_argument(f"--{kind}", type=int, default=default, help="users of the kind")
    args = p.parse_args()
    if args.seconds < 5 or min(args.browsers, args.uploaders, args.exporters) < 0:
        p.error("--seconds ≥ 5, users ≥ 0")
    return args


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def report(args, alone, results, counted, stored, problems, loaded_average) -> None:
    expected = scenario.ROWS + scenario.UPLOAD_ROWS * results.uploads_completed
    print("\n" + "\n".join(results.table()))
    loaded, solo = results.percentiles(), alone.percentiles()
    print(
        f"\npages loaded / alone: p50 {loaded['p50'] / solo['p50']:.1f}×, "
        f"p95 {loaded['p95'] / solo['p95']:.1f}× "
        f"(alone p50 {solo['p50']:.0f} ms, p95 {solo['p95']:.0f} ms)"
    )
    print(
        f"uploads completed {results.uploads_completed} "
        f"({scenario.UPLOAD_ROWS * results.uploads_completed:,} rows), refused "
        f"{len(results.uploads_refused)}; exports {results.exports_completed}; "
        f"edits saved {results.edits_saved}, conflicts (409) {results.edit_conflicts}"
    )
    print(
        f"rows: expected {expected:,}, in the table {counted:,}, "
        f"experiments.row_count {stored:,}"
    )
    for text in (
        results.unexpected + results.connection_errors + results.uploads_refused
    )[:10]:
        print(f"  ! {text}")
    for line in problems[:10]:
        print(f"  server: {line}")
    verdict = "met" if loaded["p99"] < TARGET_P99_MS else "missed"
    print(f"target p99 < {TARGET_P99_MS} ms: {verdict}")
    print(f"load average during the run: {loaded_average}; after: {load_average()}")
    print(
        f"RESULT database={args.database} seconds={args.seconds} "
        f"p50_ms={loaded['p50']:.0f} p95_ms={loaded['p95']:.0f} "
        f"p99_ms={loaded['p99']:.0f} responses_5xx={results.responses_5xx} "
        f"connection_errors={len(results.connection_errors)} "
        f"rows_lost={expected - counted}"
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Type inference at scale (csv_io/inference.py); run by hand, not a test.

Generates N rows with ../shared/bench/gen_csv.py (participant_id plus one column of
each type) and a second file of N/10 rows, then times `detect_layout` + `analyse` over
each in a fresh subprocess, which reports its time and its peak RSS growth (VmHWM after
minus VmRSS before, peak reset through /proc/self/clear_refs): equal growth at N/10 and
N rows means memory flat in the number of rows. The baseline, in the same run, is the
plain import of the same N-row file into SQLite through the app's own pipeline
(bench/common.load_csv: every cell validated, rows written in one transaction).

The target (issue 10): inference takes at most twice the time of that import, i.e.
import time / inference time ≥ 0.5. The last line is

    RESULT infer_rows_per_s=… infer_vs_import_ratio=…

usage: python bench/infer.py [--rows N] [--reps N] [--gen PATH] [--csv PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import BENCH_COLUMNS  # noqa: E402
from bench.common import database_url  # noqa: E402
from bench.common import load_csv  # noqa: E402
from bench.import_export import csv_rows  # noqa: E402
from bench.import_export import dispose  # noqa: E402
from bench.import_export import fmt  # noqa: E402
from bench.import_export import generate  # noqa: E402
from bench.import_export import make_app  # noqa: E402
from bench.import_export import reset_peak  # noqa: E402
from bench.import_export import vm_kib  # noqa: E402
from wave_web import catalog  # noqa: E402
from wave_web import schema  # noqa: E402

GENERATOR = Path(__file__).resolve().parents[2] / "shared" / "bench" / "gen_csv.py"
TARGET_RATIO = 0.5


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--infer-child":
        infer_child(sys.argv[2])
        return
    args = parse_args()
    tmpdir = tempfile.mkdtemp(prefix="wave_bench_infer_")
    big = args.csv or Path(tmpdir) / "rows.csv"
    small = Path(tmpdir) / "rows_small.csv"
    try:
        ensure_csv(args.gen, big, args.rows)
        ensure_csv(args.gen, small, max(args.rows // 10, 1))
        runs = {size: [] for size in (args.rows // 10, args.rows)}
        for _ in range(args.reps):
            runs[args.rows // 10].append(run_child(small))
            runs[args.rows].append(run_child(big))
        imports = [import_seconds(big) for _ in range(args.reps)]
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    report(args.rows, runs, min(imports))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument(
        "--reps", type=int, default=1, help="runs per measurement; the fastest counts"
    )
    p.add_argument("--gen", type=Path, default=GENERATOR, help="gen_csv.py to use")
    p.add_argument("--csv", type=Path, help="reuse (or keep) the N-row CSV here")
    args = p.parse_args()
    if args.rows < 10:
        p.error("--rows must be at least 10")
    return args


def ensure_csv(generator: Path, path: Path, rows: int) -> None:
    if path.exists() and csv_rows(path) == rows:
        return
    start = time.perf_counter()
    generate(generator, path, rows)
    print(f"generate: {rows:,} rows in {time.perf_counter() - start:.1f} s", flush=True)


def run_child(path: Path) -> dict:
    """One inference in a fresh interpreter, so its memory is its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--infer-child", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def infer_child(path: str) -> None:
    """Runs in the subprocess: detect_layout + analyse, timed, with peak RSS growth."""
    from wave_web.csv_io.inference import analyse
    from wave_web.csv_io.inference import detect_layout

    before = vm_kib("VmRSS")
    reset_peak()
    start = time.perf_counter()
    analysis = analyse(path, detect_layout(path))
    seconds = time.perf_counter() - start
    growth = (vm_kib("VmHWM") - before) / 1024
    proposed = {c.name: c.type for c in analysis.columns}
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rows": analysis.rows,
                "rss_growth_mb": growth,
                "types": proposed,
            }
        )
    )


def import_seconds(path: Path) -> float:
    """The plain import of the file into an empty SQLite experiment (load only)."""
    with database_url("sqlite") as url:
        app = make_app(url)
        try:
            with app.app_context():
                xtype = schema.create_type(
                    "Bench trials", "", "bench_trials", BENCH_COLUMNS
                )
                experiment = catalog.create_experiment(xtype, "Bench infer", [], {})
                start = time.perf_counter()
                written = load_csv(xtype, experiment.uuid, path)
                seconds = time.perf_counter() - start
        finally:
            dispose(app)
    print(
        f"import (SQLite, app pipeline): {written:,} rows in {seconds:.2f} s "
        f"({written / seconds:,.0f} rows/s)",
        flush=True,
    )
    return seconds


def report(rows: int, runs: dict[int, list[dict]], import_s: float) -> None:
    for size, found in runs.items():
        best = min(found, key=lambda r: r["seconds"])
        growth = max(r["rss_growth_mb"] for r in found)
        if best["rows"] != size:
            sys.exit(f"inference saw {best['rows']:,} rows of {size:,}")
        print(
            f"inference {size:,} rows: {best['seconds']:.2f} s "
            f"({size / best['seconds']:,.0f} rows/s), peak RSS growth {growth:.1f} MB",
            flush=True,
        )
    full = min(runs[rows], key=lambda r: r["seconds"])
    expected = {c.name: c.type for c in BENCH_COLUMNS}
    wrong = {
        k: v for k, v in full["types"].items() if k in expected and expected[k] != v
    }
    if wrong:  # e.g. the generator's TEXT notes fit in 255 characters: STRING
        shown = ", ".join(
            f"{k}: {v} (generated as {expected[k]})" for k, v in wrong.items()
        )
        print(f"proposed types that differ from the generator's: {shown}")
    ratio = import_s / full["seconds"]
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(
        f"import / inference = {ratio:.2f} ({verdict} the target ≥ {TARGET_RATIO})",
        flush=True,
    )
    rate = rows / full["seconds"] if full["seconds"] else math.nan
    print(f"RESULT infer_rows_per_s={fmt(rate)} infer_vs_import_ratio={fmt(ratio)}")


if __name__ == "__main__":
    main()

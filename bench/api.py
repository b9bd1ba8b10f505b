#!/usr/bin/env python3
"""The JSON API under load (issue 11); run by hand, not a test.

Serves the app with gunicorn as the README's production command does (the
repository's gunicorn.conf.py: 4 processes × 2 threads, keep-alive; bound to
127.0.0.1 on a free port) on PostgreSQL: a database made for the run
(`CREATE DATABASE` on WAVE_BENCH_DATABASE_URL's server, default
postgresql://postgres@127.0.0.1:5432/test) and dropped at the end. Then:

1. **Single inserts**: `--clients` processes (4), each one kept-alive http.client
   connection, post one row at a time (`POST /api/v1/experiment-data/<uuid>/data/`,
   what experiment software sends per trial) for `--seconds` (20), after a few
   untimed ones.
2. **Batch**: one `POST …/data/batch` of `--batch-rows` rows (100,000; gunicorn is
   started with WAVE_API_BATCH_MAX_ROWS and WAVE_API_MAX_BODY_MB large enough,
   printed), timed from sending the (pre-encoded) body to the answer.
3. **Baseline** in the same run: the same rows as CSV through the import pipeline
   directly (`csv_io.importing.import_file` in an app context of this process, into
   a third experiment of the same type): what the batch is compared with.
4. **Floor** in the same run: phase 1 against bench/floor_app.py (a bare WSGI
   insert, no framework, no checks) under the same gunicorn settings: what this
   machine allows any Python server.

The rows are those of ../shared/bench/gen_csv.py (participant_id plus one column of
each type); the singles cycle through its first rows. Every answer must be a 201
and the row counts must match at the end, or the script stops.

Last lines:

    single inserts / floor (a bare WSGI insert, same server and clients) = …
    RESULT single_inserts_per_s=… batch_rows_per_s=… batch_vs_pipeline_ratio=…

Targets: ≥ 800 single inserts/s, batch ≥ 0.7 × the pipeline.

usage: python bench/api.py [--seconds 20] [--clients 4] [--batch-rows 100000]
                           [--workers N] [--threads N] [--gen PATH] [--csv PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import json
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import BENCH_COLUMNS  # noqa: E402
from bench.common import load_csv  # noqa: E402
from bench.import_export import csv_rows  # noqa: E402
from bench.import_export import fmt  # noqa: E402
from bench.import_export import generate  # noqa: E402
from wave_web.config import normalise_database_url  # noqa: E402

GENERATOR = ROOT.parent / "shared" / "bench" / "gen_csv.py"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_INSERTS = 800
TARGET_RATIO = 0.7
WARM_UP = 25  # untimed inserts per client
SINGLE_ROWS = 5_000  # distinct rows the single-insert clients cycle through
START_SECONDS = 60
LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")
MIB = 1024 * 1024


def main() -> None:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wave_bench_api_"))
    path = args.csv or tmp / "rows.csv"
    try:
        if not (path.exists() and csv_rows(path) == args.batch_rows):
            generate(args.gen, path, args.batch_rows)
        rows = list(json_rows(path))
        with database() as url:
            run(args, url, path, rows, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="single-insert phase")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients")
    p.add_argument("--batch-rows", type=int, default=100_000)
    p.add_argument("--workers", type=int, help="gunicorn -w (gunicorn.conf.py: 4)")
    p.add_argument("--threads", type=int, help="gunicorn --threads (there: 2)")
    p.add_argument("--timeout", type=int, help="gunicorn --timeout (there: 60 s)")
    p.add_argument("--reps", type=int, default=1, help="batch/pipeline runs; best")
    p.add_argument("--gen", type=Path, default=GENERATOR, help="gen_csv.py to use")
    p.add_argument("--csv", type=Path, help="reuse (or keep) the generated CSV here")
    args = p.parse_args()
    if args.batch_rows < 100 or args.clients < 1 or args.seconds <= 0:
        p.error("--batch-rows ≥ 100, --clients ≥ 1, --seconds > 0")
    return args


# ----------------------------------------------------------------------
# Data: the generator's CSV, and the same rows as the API's JSON
# ----------------------------------------------------------------------


def json_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The CSV's rows as a client sends them (typed JSON values, "" as null)."""
    with open(path, newline="", encoding="utf-8") as f:
        for rec in csv.DictReader(f):
            yield {
                "participant_id": rec["participant_id"],
                "data": {
                    "reaction_time": float(rec["reaction_time"]),
                    "accuracy": float(rec["accuracy"]),
                    "difficulty_level": int(rec["difficulty_level"]),
                    "stimulus_type": rec["stimulus_type"],
                    "correct": rec["correct"] == "true",
                    "response_at": rec["response_at"],
                    "notes": rec["notes"] or None,
                    "extra": json.loads(rec["extra"]),
                },
            }


# ----------------------------------------------------------------------
# A database for the run, and the app's objects in it
# ----------------------------------------------------------------------


@contextlib.contextmanager
def database() -> Iterator[str]:
    """The URL of a new PostgreSQL database, dropped at the end."""
    from psycopg2 import sql

    given = os.environ.get("WAVE_BENCH_DATABASE_URL", DEFAULT_PG_URL)
    base = sa.make_url(normalise_database_url(given))
    name = f"wave_bench_api_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")

    def execute(statement) -> None:
        raw = admin.raw_connection()
        try:
            with raw.dbapi_connection.cursor() as cur:
                cur.execute(statement)
        finally:
            raw.close()

    execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )
        admin.dispose()


def make_app(url: str):
    from wave_web import create_app

    return create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "TESTING": True}
    )


def dispose(app) -> None:
    from wave_web.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def prepare(url: str) -> dict[str, Any]:
    """Type, three experiments (singles, batch, pipeline) and an experimentee key."""
    from wave_web import accounts
    from wave_web import catalog
    from wave_web import schema
    from wave_web.extensions import db

    app = make_app(url)
    try:
        with app.app_context():
            xtype = schema.create_type(
                "Bench trials", "", "bench_trials", list(BENCH_COLUMNS)
            )
            made = {
                role: str(catalog.create_experiment(xtype, role, [], {}).uuid)
                for role in ("singles", "batch", "pipeline")
            }
            _key, secret = accounts.create_key("bench api", "experimentee")
            db.session.commit()
            return made | {"key": secret, "type_id": xtype.id}
    finally:
        dispose(app)


def pipeline_seconds(url: str, path: Path, experiment: str) -> tuple[float, int]:
    """The baseline: the CSV through csv_io.importing.import_file, committed."""
    from wave_web.extensions import db
    from wave_web.models import ExperimentType

    app = make_app(url)
    try:
        with app.app_context():
            xtype = db.session.scalars(
                sa.select(ExperimentType).filter_by(table_name="bench_trials")
            ).one()
            start = time.perf_counter()
            written = load_csv(xtype, uuid.UUID(experiment), path)
            return time.perf_counter() - start, written
    finally:
        dispose(app)


def row_count(url: str, experiment: str) -> int:
    from wave_web.extensions import db
    from wave_web.models import Experiment

    app = make_app(url)
    try:
        with app.app_context():
            return db.session.get(Experiment, uuid.UUID(experiment)).row_count
    finally:
        dispose(app)


# ----------------------------------------------------------------------
# gunicorn
# ----------------------------------------------------------------------


@contextlib.contextmanager
def gunicorn(
    args, tmp: Path, env_extra: dict[str, str], app: str = "wsgi:app"
) -> Iterator[str]:
    """`app` served by gunicorn with the repository's gunicorn.conf.py (the README's
    production settings) on a free port, unless --workers/--threads override them."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(ROOT / "gunicorn.conf.py"),
        *(["-w", str(args.workers)] if args.workers else []),
        *(["--threads", str(args.threads)] if args.threads else []),
        *(["--timeout", str(args.timeout)] if args.timeout else []),
        "-b",
        "127.0.0.1:0",
        app,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVE_")}
    env.update(SECRET_KEY="bench", PYTHONPATH=str(ROOT), **env_extra)
    shown = " ".join(command[1:]).replace("127.0.0.1:0", "127.0.0.1:<free port>")
    shown = shown.replace(str(ROOT) + os.sep, "")
    settings = " ".join(
        f"{k}={v}" for k, v in env_extra.items() if k.startswith("WAVE_API")
    )
    print(f"server: python {shown} {settings}".rstrip(), flush=True)
    log_path = tmp / f"gunicorn-{app.replace(':', '-')}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield wait_until_up(process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
        problems = [
            line
            for line in log_path.read_text().splitlines()
            if "Traceback" in line or "WORKER TIMEOUT" in line or "ERROR" in line
        ]
        if problems:
            print("gunicorn log problems:\n  " + "\n  ".join(problems[:10]))


def wait_until_up(process: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + START_SECONDS
    base = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("gunicorn exited:\n" + log_path.read_text()[-3000:])
        if base is None:
            found = LISTENING.search(log_path.read_text())
            base = found.group(1) if found else None
        if base is not None:
            with contextlib.suppress(requests.RequestException):
                if requests.get(base + "/health", timeout=5).status_code == 200:
                    return base
        time.sleep(0.2)
    sys.exit("gunicorn did not answer /health:\n" + log_path.read_text()[-3000:])


# ----------------------------------------------------------------------
# The clients
# ----------------------------------------------------------------------


def client(url, key, bodies, seconds, barrier, results) -> None:
    """One client process: warm up, wait for the others, insert for `seconds`.

    A plain http.client connection (kept open when the server allows it, opened
    again when it answers `Connection: close`): the client's own CPU is a fraction
    of a requests.Session's, which on 2 cores is CPU taken from the server.
    """
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "X-WAVE-Client-Version": "1.0.0",
    }

    def send(body: bytes) -> tuple[int, bytes, str]:
        conn.request("POST", parts.path, body, headers)
        r = conn.getresponse()
        return r.status, r.read(), r.getheader("Connection", "")

    def post(body: bytes) -> float:
        start = time.perf_counter()
        try:
            status, text, connection = send(body)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # a kept-alive connection the server closed while idle (gunicorn's
            # --keep-alive): the request never arrived; send it again on a new one
            conn.close()
            try:
                status, text, connection = send(body)
            except (http.client.HTTPException, OSError) as exc:
                raise SystemExit(f"insert failed: {exc!r}") from None
        except (http.client.HTTPException, OSError) as exc:
            raise SystemExit(f"insert failed: {exc!r}") from None
        took = time.perf_counter() - start
        if status != 201:
            raise SystemExit(f"insert answered {status}: {text[:300]!r}")
        if connection.lower() == "close":
            conn.close()
        return took

    try:
        for body in bodies[:WARM_UP]:
            post(body)
    except SystemExit as exc:
        results.put({"error": str(exc)})
        raise
    finally:
        barrier.wait()
    latencies = []
    start = time.perf_counter()
    deadline = start + seconds
    i = 0
    try:
        while time.perf_counter() < deadline:
            latencies.append(post(bodies[i % len(bodies)]))
            i += 1
    except SystemExit as exc:
        results.put({"error": str(exc)})
        raise
    results.put({"count": i, "seconds": time.perf_counter() - start, "lat": latencies})


def single_inserts(args, base: str, made: dict, rows: list[dict]) -> dict[str, Any]:
    url = f"{base}/api/v1/experiment-data/{made['singles']}/data/"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(args.clients + 1)
    results = ctx.Queue()
    share = [orjson.dumps(r) for r in rows[:SINGLE_ROWS]]
    procs = []
    for n in range(args.clients):
        mine = share[n :: args.clients] or share
        p = ctx.Process(
            target=client, args=(url, made["key"], mine, args.seconds, barrier, results)
        )
        p.start()
        procs.append(p)
    barrier.wait(timeout=120)
    found = [results.get(timeout=args.seconds + 120) for _ in procs]
    failed = [r["error"] for r in found if "error" in r]
    if failed:
        sys.exit("a client failed: " + "; ".join(failed))
    for p in procs:
        p.join(30)
        if p.exitcode != 0:
            sys.exit(f"a client failed (exit code {p.exitcode})")
    latencies = sorted(x for r in found for x in r["lat"])
    count = sum(r["count"] for r in found)
    rate = sum(r["count"] / r["seconds"] for r in found)
    return {
        "count": count,
        "warm": WARM_UP * args.clients,
        "rate": rate,
        "p50": percentile(latencies, 0.50) * 1000,
        "p95": percentile(latencies, 0.95) * 1000,
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    return values[min(len(values) - 1, int(q * len(values)))]


def batch_seconds(base: str, made: dict, body: bytes) -> float:
    url = f"{base}/api/v1/experiment-data/{made['batch']}/data/batch"
    headers = {
        "Authorization": f"Bearer {made['key']}",
        "Content-Type": "application/json",
    }
    start = time.perf_counter()
    r = requests.post(url, data=body, headers=headers, timeout=900)
    took = time.perf_counter() - start
    if r.status_code != 201:
        sys.exit(f"batch answered {r.status_code}: {r.text[:500]}")
    return took


# ----------------------------------------------------------------------


def run(args, url: str, path: Path, rows: list[dict], tmp: Path) -> None:
    n = len(rows)
    made = prepare(url)
    body = orjson.dumps({"rows": rows})
    body_mb = max(32, math.ceil(len(body) * 1.25 / MIB))
    extra = {
        "WAVE_API_BATCH_MAX_ROWS": str(max(10_000, n)),
        "WAVE_API_MAX_BODY_MB": str(body_mb),
    }
    extra |= {"DATABASE_URL": url, "WAVE_UPLOAD_DIR": str(tmp / "uploads")}
    batches, pipelines = [], []
    with gunicorn(args, tmp, extra) as base:
        singles = single_inserts(args, base, made, rows)
        show_singles("single inserts", args, singles)
        for rep in range(args.reps):
            if rep:  # a fresh experiment per run, as the first
                made["batch"] = prepare_more(url, "batch")
            took = batch_seconds(base, made, body)
            batches.append(took)
            print(
                f"batch: {n:,} rows ({len(body) / MIB:.1f} MB of JSON) in "
                f"{took:.2f} s ({n / took:,.0f} rows/s)",
                flush=True,
            )
            if rep:
                made["pipeline"] = prepare_more(url, "pipeline")
            took, written = pipeline_seconds(url, path, made["pipeline"])
            if written != n:
                sys.exit(f"the pipeline wrote {written:,} rows of {n:,}")
            pipelines.append(took)
            print(
                f"pipeline (import_file, the same rows as CSV): {took:.2f} s "
                f"({n / took:,.0f} rows/s)",
                flush=True,
            )
    floor = floor_inserts(args, url, tmp, rows)
    expected = singles["count"] + singles["warm"]
    got = row_count(url, made["singles"])
    if got != expected:
        sys.exit(f"the singles experiment has {got:,} rows, {expected:,} were posted")
    if row_count(url, made["batch"]) != n:
        sys.exit("the batch experiment does not have every row")
    batch_rate = n / min(batches)
    pipe_rate = n / min(pipelines)
    ratio = batch_rate / pipe_rate
    verdicts = (
        f"single inserts {'meet' if singles['rate'] >= TARGET_INSERTS else 'miss'} "
        f"the target ≥ {TARGET_INSERTS}/s; batch / pipeline = {ratio:.2f} "
        f"({'meets' if ratio >= TARGET_RATIO else 'misses'} the target ≥ "
        f"{TARGET_RATIO})"
    )
    print(verdicts, flush=True)
    print(
        f"single inserts / floor (a bare WSGI insert, same server and clients) = "
        f"{singles['rate'] / floor['rate']:.2f}"
    )
    print(
        f"RESULT single_inserts_per_s={fmt(singles['rate'])} "
        f"batch_rows_per_s={fmt(batch_rate)} batch_vs_pipeline_ratio={fmt(ratio)}"
    )


def show_singles(what: str, args, found: dict[str, Any]) -> None:
    print(
        f"{what}: {args.clients} clients × {args.seconds:g} s: "
        f"{found['count']:,} rows, {found['rate']:,.0f}/s, "
        f"p50 {found['p50']:.1f} ms, p95 {found['p95']:.1f} ms",
        flush=True,
    )


def floor_inserts(args, url: str, tmp: Path, rows: list[dict]) -> dict[str, Any]:
    """The same single inserts against bench/floor_app.py: no framework, no checks,
    one INSERT and a commit per request, under the same gunicorn settings."""
    experiment = prepare_more(url, "floor")
    dsn = sa.make_url(url).set(drivername="postgresql")
    env = {
        "BENCH_FLOOR_DSN": dsn.render_as_string(hide_password=False),
        "BENCH_FLOOR_EXPERIMENT": experiment,
    }
    with gunicorn(args, tmp, env, app="bench.floor_app:app") as base:
        found = single_inserts(args, base, {"singles": experiment, "key": ""}, rows)
    show_singles("floor: bare WSGI + psycopg2, one INSERT per request", args, found)
    return found


def prepare_more(url: str, description: str) -> str:
    from wave_web import catalog
    from wave_web.extensions import db
    from wave_web.models import ExperimentType

    app = make_app(url)
    try:
        with app.app_context():
            xtype = db.session.scalars(
                sa.select(ExperimentType).filter_by(table_name="bench_trials")
            ).one()
            made = str(catalog.create_experiment(xtype, description, [], {}).uuid)
            db.session.commit()
            return made
    finally:
        dispose(app)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The app beside its peers, same file, same machine, same run (issue 13); by hand.

Generates N rows with ../shared/bench/gen_csv.py (or reuses --csv), then per database
(SQLite, PostgreSQL):

1. **Import**: the app's real upload over HTTP (`POST /experiments/<uuid>/import`,
   confirm=1, polling the job) to the app under gunicorn (gunicorn.conf.py, as
   bench/api.py starts it), against, into tables built like the app's data table
   (same columns, same indexes): pandas `read_csv` + `to_sql`, on SQLite
   sqlite-utils' `insert_all` (its library: the CLI cannot fill the table's
   experiment_uuid/created_at columns) and the floor: raw `executemany` of the
   csv.reader rows (SQLite) / PostgreSQL's own `COPY … FROM STDIN`.
2. **Grid**: the first page with its count, a filtered page (participant_id
   equals) and a deep page of a sort on an indexed column (reaction_time, indexed
   with the app's "add index"), over HTTP against the app and against Datasette
   (`datasette serve` on a SQLite copy of the same rows with the same indexes; the
   PostgreSQL app is compared with that same Datasette), requests interleaved
   app/peer, --reps timed of each after 2 untimed.
3. **Cold summaries**: the app's column summaries page after a write (the
   experiment's description edited over HTTP before each request, which changes the
   summary's data version: computed anew), --reps times.
4. **Export** of the whole experiment: the app's CSV download against Datasette's
   CSV export (`.csv?_stream=on`), streamed over HTTP, interleaved, every row counted.

Ratios are app / peer. For times (ms) a ratio > 1 means the app is SLOWER; for
rates (rows/s) a ratio > 1 means the app is FASTER (printed at the top of a run).
The imports' peers are fair to the letter: the same file, into a table with the
app's data-table columns and indexes, created empty just before, in one
transaction each (pandas' to_sql runs in one; the raw executemany in BEGIN …
COMMIT), each timed from reading the file to the commit; the app from sending the
file to its job's success.

Every server started is stopped and every database dropped at the end, also on
Ctrl-C or an error. The last line is

    RESULT worst_grid_ratio=… import_sqlite_vs_pandas=… import_pg_vs_copy=…
           export_vs_datasette=… summary_cold_ms=… import_sqlite_vs_executemany=…

(on one line; worst_grid_ratio and summary_cold_ms are times: lower is better; the
import and export ratios are rates: higher is better). usage: python bench/peers.py
    [--rows N] [--reps 7] [--import-reps 1] [--backend sqlite|postgresql|both]
    [--only import,grid,summary,export] [--csv PATH] [--keep]
PostgreSQL: a database made on WAVE_BENCH_DATABASE_URL's server
(default postgresql://postgres@127.0.0.1:5432/test) and dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode
from urllib.parse import urljoin

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api import database as pg_database  # noqa: E402
from bench.api import gunicorn  # noqa: E402
from bench.common import BENCH_COLUMNS  # noqa: E402
from bench.common import load_csv  # noqa: E402
from bench.grid import PARTICIPANT  # noqa: E402
from bench.grid import SORT_COLUMN  # noqa: E402
from bench.grid import cursor_at  # noqa: E402
from bench.grid import percentile  # noqa: E402
from bench.import_export import baseline_table  # noqa: E402
from bench.import_export import copy_in_baseline  # noqa: E402
from bench.import_export import csv_rows  # noqa: E402
from bench.import_export import dispose  # noqa: E402
from bench.import_export import executemany_baseline  # noqa: E402
from bench.import_export import fmt  # noqa: E402
from bench.import_export import generate  # noqa: E402
from bench.import_export import make_app  # noqa: E402
from wave_web.config import normalise_database_url  # noqa: E402

GENERATOR = ROOT.parent / "shared" / "bench" / "gen_csv.py"
EMAIL = "peers.bench@example.org"
PASSWORD = "a long bench password for peers"
TABLE = "bench_trials"
BATCH = 10_000  # rows per chunk for pandas and sqlite-utils
WARM_UP = 2  # untimed requests per case and server
START_SECONDS = 60
CSRF = re.compile(rb'name="csrf_token" value="([^"]+)"')
APP_ROWS = b'id="row-'  # a grid page that shows rows
PEER_ROWS = b'class="col-id'  # a Datasette table page that shows rows
LOAD_TIMEOUT = 3600
PARTS = ("import", "grid", "summary", "export")
# How often the upload's job is asked about: every ask costs the server a request
# while it imports (at 50 ms, a third of a core); the end is seen within this.
POLL_SECONDS = 0.2


STOPPED_BY: list[int] = []  # the signal that stopped the run


def stop_run(signum: int, _frame: Any) -> None:
    """Ctrl-C or SIGTERM: unwind, so that the finally blocks stop every server and
    drop every database (an error raised while unwinding still means stopped)."""
    STOPPED_BY.append(signum)
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGINT, stop_run)
    signal.signal(signal.SIGTERM, stop_run)
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wave_bench_peers_"))
    try:
        path = args.csv or tmp / "rows.csv"
        if not (path.exists() and csv_rows(path) == args.rows):
            start = time.perf_counter()
            generate(GENERATOR, path, args.rows)
            print(
                f"generate: {args.rows:,} rows in {time.perf_counter() - start:.1f} s"
            )
        run(args, path, tmp)
    except BaseException as exc:
        if STOPPED_BY:
            sys.exit(f"stopped by {signal.Signals(STOPPED_BY[0]).name}")
        if isinstance(exc, requests.RequestException):
            sys.exit(f"a server stopped answering: {exc}")
        raise
    finally:
        if args.keep:
            print(f"kept: {tmp} (SQLite files, server logs; PostgreSQL is dropped)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        if STOPPED_BY:
            print("every server stopped, every database dropped", file=sys.stderr)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=7, help="timed requests per case")
    p.add_argument(
        "--import-reps",
        type=int,
        default=1,
        help="rounds of the imports (app, then each peer; medians)",
    )
    p.add_argument(
        "--backend", choices=("sqlite", "postgresql", "both"), default="both"
    )
    p.add_argument("--csv", type=Path, help="reuse (or keep) the generated CSV here")
    p.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of {','.join(PARTS)} (default: all); "
        "grid, summary and export need the import",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the temp folder (SQLite, logs)"
    )
    args = p.parse_args()
    if args.rows < 1000 or args.reps < 1 or args.import_reps < 1:
        p.error("--rows ≥ 1000, --reps ≥ 1, --import-reps ≥ 1")
    args.only = set(filter(None, args.only.split(",")))
    if not args.only or args.only - set(PARTS):
        p.error(f"--only takes parts of {','.join(PARTS)}")
    return args


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# ----------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------


def run(args: argparse.Namespace, path: Path, tmp: Path) -> None:
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(
        f"rows={args.rows:,} reps={args.reps} backends={','.join(backends)} "
        f"load average {load_average()} on {os.cpu_count()} CPUs"
    )
    print(
        "ratio = app / peer. Times (ms): > 1 means the app is SLOWER. "
        "Rates (rows/s): > 1 means the app is FASTER."
    )
    found: dict[str, float] = {}
    grid_ratios: list[float] = []
    export_ratios: list[float] = []
    colds: list[float] = []
    peer_file = tmp / "peer.db"
    with contextlib.ExitStack() as stack:
        peer = None
        for backend in backends:
            url = stack.enter_context(app_database(backend, tmp))
            made = prepare(url)
            env = {"DATABASE_URL": url, "WAVE_UPLOAD_DIR": str(tmp / f"up-{backend}")}
            no_overrides = SimpleNamespace(workers=None, threads=None, timeout=None)
            with gunicorn(no_overrides, tmp, env) as base:
                app = signed_in(base)
                print(f"\n== {backend}: import ({args.rows:,} rows)", flush=True)
                found |= imports(backend, url, base, app, made, path, tmp, args)
                if args.only == {"import"}:
                    continue
                add_sort_index(url, made["type_id"])
                if peer is None:
                    source = url if backend == "sqlite" else sqlite_source(path, tmp)
                    build_peer(source, peer_file)
                    peer = stack.enter_context(datasette(peer_file, tmp))
                if "grid" in args.only:
                    print(
                        f"\n== {backend}: grid vs Datasette (SQLite copy)", flush=True
                    )
                    grid_ratios += grid(args, url, base, app, peer, peer_file, made)
                if "summary" in args.only:
                    colds.append(summary_cold(args, base, app, made))
                if "export" in args.only:
                    export_ratios.append(exports(args, base, app, peer, made))
            print(f"(load average {load_average()})", flush=True)
    print(
        "RESULT "
        f"worst_grid_ratio={fmt(max(grid_ratios, default=math.nan))} "
        f"import_sqlite_vs_pandas={fmt(found.get('sqlite_vs_pandas', math.nan))} "
        f"import_pg_vs_copy={fmt(found.get('pg_vs_copy', math.nan))} "
        f"export_vs_datasette={fmt(min(export_ratios, default=math.nan))} "
        f"summary_cold_ms={fmt(max(colds, default=math.nan))} "
        "import_sqlite_vs_executemany="
        f"{fmt(found.get('sqlite_vs_executemany', math.nan))}"
    )


@contextlib.contextmanager
def app_database(backend: str, tmp: Path) -> Iterator[str]:
    """SQLite: a file in the temp folder; PostgreSQL: a database dropped at the end."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/app.db"
        return
    with pg_database() as url:
        yield url


def prepare(url: str, suffix: str = "", user: bool = True) -> dict[str, Any]:
    """The generator's type, the experiment the upload fills, a user who signs in
    (a later import round: another type, so another empty table, and no user)."""
    from wave_web import accounts
    from wave_web import catalog
    from wave_web import schema
    from wave_web.extensions import db

    app = make_app(url)
    try:
        with app.app_context():
            xtype = schema.create_type(
                f"Bench trials {suffix}".strip(),
                "",
                f"{TABLE}{'_' + suffix if suffix else ''}",
                list(BENCH_COLUMNS),
            )
            experiment = catalog.create_experiment(xtype, "Bench peers", [], {})
            if user:
                accounts.create_user(EMAIL, PASSWORD, "admin")
            db.session.commit()
            return {"type_id": xtype.id, "experiment": str(experiment.uuid)}
    finally:
        dispose(app)


def add_sort_index(url: str, type_id: int) -> None:
    """The app's "add index" on the sorted column (every worker reflects it)."""
    from wave_web import schema
    from wave_web.extensions import db

    app = make_app(url)
    try:
        with app.app_context():
            schema.add_index(schema.get_type(type_id), SORT_COLUMN)
            db.session.commit()
            if db.engine.dialect.name == "postgresql":
                with db.engine.connect() as conn:
                    conn.execute(sa.text(f"ANALYZE {TABLE}"))  # fixed bench name
                    conn.commit()
    finally:
        dispose(app)


# ----------------------------------------------------------------------
# HTTP helpers
# ----------------------------------------------------------------------


def csrf_token(session: requests.Session, url: str) -> str:
    r = session.get(url, timeout=60)
    found = CSRF.search(r.content)
    if r.status_code != 200 or not found:
        sys.exit(f"GET {url}: {r.status_code}, no CSRF token")
    return found.group(1).decode()


def signed_in(base: str) -> requests.Session:
    """A kept-alive session signed in through the real sign-in form."""
    session = requests.Session()
    token = csrf_token(session, base + "/login")
    r = session.post(
        base + "/login",
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
        timeout=60,
    )
    if r.status_code not in (302, 303):
        sys.exit(f"sign-in answered {r.status_code}")
    return session


def timed_get(session: requests.Session, url: str, shows: bytes) -> float:
    start = time.perf_counter()
    r = session.get(url, timeout=300)
    took = (time.perf_counter() - start) * 1000
    if r.status_code != 200 or shows not in r.content:
        sys.exit(f"GET {url} gave {r.status_code} without rows: {r.text[:300]!r}")
    return took


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------
# Import
# ----------------------------------------------------------------------


def imports(backend, url, base, app, made, path, tmp, args) -> dict[str, float]:
    """The app's upload and each peer into an empty table like the app's, in turn,
    --import-reps rounds (the app's later rounds into a new type: an empty table as
    the peers get); medians of rows/s, app/peer (> 1: the app is faster)."""
    rows = args.rows
    times: dict[str, list[float]] = {}
    for rep in range(args.import_reps):
        target = made if rep == 0 else prepare(url, f"{rep + 1}", user=False)
        times.setdefault("app", []).append(
            upload(base, app, target["experiment"], path, rows)
        )
        if backend == "sqlite":
            contenders = {
                "pandas to_sql": lambda: pandas_seconds(
                    f"sqlite:///{tmp}/pandas.db", path
                ),
                "sqlite-utils insert_all": lambda: sqlite_utils_seconds(
                    tmp / "su.db", path
                ),
                "raw executemany": lambda: executemany_baseline(
                    f"sqlite:///{tmp}/raw.db", path
                ),
            }
        else:
            contenders = {
                "pandas to_sql": lambda: pandas_seconds(url, path),
                "raw COPY": lambda: copy_in_baseline(url, path),
            }
        for name, measure in contenders.items():
            times.setdefault(name, []).append(measure())
    rates = {name: [rows / t for t in found] for name, found in times.items()}
    app_rate = statistics.median(rates.pop("app"))
    spread = ""
    if args.import_reps > 1:
        spread = f" (app runs: {', '.join(f'{rows / t:,.0f}' for t in times['app'])})"
    print(
        f"{'import (rows/s, median of ' + str(args.import_reps) + ')':<34}"
        f"{'app':>12}{'peer':>13}{'ratio':>8}{spread}"
    )
    medians = {}
    for name, found in rates.items():
        rate = medians[name] = statistics.median(found)
        print(
            f"import vs {name:<24}{app_rate:>12,.0f}{rate:>13,.0f}"
            f"{app_rate / rate:>8.2f}   (peer {rows / rate:.1f} s, app "
            f"{rows / app_rate:.1f} s)"
        )
    if backend == "sqlite":
        return {
            "sqlite_vs_pandas": app_rate / medians["pandas to_sql"],
            "sqlite_vs_executemany": app_rate / medians["raw executemany"],
        }
    return {"pg_vs_copy": app_rate / medians["raw COPY"]}


def upload(base: str, session: requests.Session, experiment: str, path, rows) -> float:
    """Seconds of the real upload, from sending the file to the job's success."""
    url = f"{base}/experiments/{experiment}/import"
    token = csrf_token(session, url)
    start = time.perf_counter()
    with open(path, "rb") as f:
        r = session.post(
            url,
            data={"mode": "insert", "confirm": "1", "csrf_token": token},
            files={"file": ("bench.csv", f, "text/csv")},
            headers={"Accept": "application/json"},
            timeout=LOAD_TIMEOUT,
        )
    if r.status_code not in (200, 202):
        sys.exit(f"upload answered {r.status_code}: {r.text[:500]}")
    state = r.json()
    while state["state"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(POLL_SECONDS)
        r = session.get(
            urljoin(base, state["url"]), headers={"Accept": "application/json"}
        )
        state = r.json()
    seconds = time.perf_counter() - start
    if state["state"] != "succeeded" or state["written"] != rows:
        sys.exit(f"import {state['state']}: {state.get('message')}")
    return seconds


def constants(sqlite: bool) -> dict[str, str]:
    """The values the CSV lacks: the experiment and the row's times."""
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else now.isoformat()
    key = uuid.uuid4()
    return {
        "experiment_uuid": key.hex if sqlite else str(key),
        "created_at": stamp,
        "updated_at": stamp,
    }


def pandas_seconds(url: str, path: Path) -> float:
    """pandas: read_csv, then to_sql into a table built like the app's."""
    import pandas as pd

    engine = sa.create_engine(normalise_database_url(url))
    try:
        with engine.begin() as conn:
            baseline_table(conn, "bench_pandas")
        start = time.perf_counter()
        frame = pd.read_csv(path, dtype={"participant_id": str})
        for key, value in constants(engine.dialect.name == "sqlite").items():
            frame[key] = value
        frame.to_sql(
            "bench_pandas", engine, if_exists="append", index=False, chunksize=BATCH
        )
        return time.perf_counter() - start
    finally:
        engine.dispose()


def sqlite_utils_seconds(db_path: Path, path: Path) -> float:
    """sqlite-utils: insert_all of the csv.DictReader rows (its CLI's `insert --csv`
    reads them the same way) into a table built like the app's."""
    import sqlite_utils

    engine = sa.create_engine(f"sqlite:///{db_path}")
    try:
        with engine.begin() as conn:
            baseline_table(conn, "bench_su")
    finally:
        engine.dispose()
    start = time.perf_counter()
    target = sqlite_utils.Database(db_path)
    extra = constants(True)
    with open(path, newline="", encoding="utf-8") as f:
        rows = (rec | extra for rec in csv.DictReader(f))
        target["bench_su"].insert_all(rows, batch_size=BATCH)
    target.close()
    return time.perf_counter() - start


# ----------------------------------------------------------------------
# Datasette on a SQLite copy of the same rows
# ----------------------------------------------------------------------


def sqlite_source(path: Path, tmp: Path) -> str:
    """For a PostgreSQL-only run: the rows as the SQLite app stores them."""
    from wave_web import catalog
    from wave_web import schema

    url = f"sqlite:///{tmp}/peer_source.db"
    app = make_app(url)
    try:
        with app.app_context():
            xtype = schema.create_type("Bench trials", "", TABLE, list(BENCH_COLUMNS))
            experiment = catalog.create_experiment(xtype, "Peer source", [], {})
            load_csv(xtype, experiment.uuid, path)
    finally:
        dispose(app)
    return url


def build_peer(source_url: str, peer_file: Path) -> None:
    """Datasette's file: the app's SQLite rows of the first experiment, in a table
    with the data table's columns and indexes, and the sort index as Datasette needs
    it: the app's is (experiment_uuid, reaction_time, id), read for one experiment;
    the copy holds one experiment only and Datasette's pages do not filter on it, so
    here it is (reaction_time) (an SQLite index ends in the rowid, i.e. id).

    One difference: the app declares FLOAT columns `FLOAT BLOB` (no affinity, so a
    float is stored exactly as given); here they are plain `FLOAT` (REAL affinity),
    as sqlite-utils makes them. The values are the same REALs, but Datasette's
    `_next` compares them with a text parameter, which under no affinity matches no
    row: its deep sorted pages would be empty.
    """
    from wave_web import datatables

    table = datatables.build_table(TABLE, list(BENCH_COLUMNS))
    sa.Index("ix_peer_sort", table.c[SORT_COLUMN])
    dialect = sa.create_engine("sqlite://").dialect
    ddl = [str(sa.schema.CreateTable(table).compile(dialect=dialect))]
    ddl += [
        str(sa.schema.CreateIndex(i).compile(dialect=dialect)) for i in table.indexes
    ]
    names = ", ".join(c.name for c in table.c)
    conn = sqlite3.connect(peer_file)
    try:
        for statement in ddl:
            conn.execute(statement.replace("FLOAT BLOB", "FLOAT"))
        conn.execute("ATTACH DATABASE ? AS app", (sa.make_url(source_url).database,))
        first = conn.execute(
            f"SELECT experiment_uuid FROM app.{TABLE} ORDER BY id LIMIT 1"  # noqa: S608
        ).fetchone()[0]
        conn.execute(
            f"INSERT INTO main.{TABLE} ({names}) "  # noqa: S608 (fixed bench names)
            f"SELECT {names} FROM app.{TABLE} WHERE experiment_uuid = ?",
            (first,),
        )
        conn.commit()
        conn.execute("DETACH DATABASE app")
    finally:
        conn.close()


@contextlib.contextmanager
def datasette(peer_file: Path, tmp: Path) -> Iterator[SimpleNamespace]:
    """`datasette serve` on the copy; the query time limit raised so that every case
    is answered in full (its default, 1 s, would cut the big ones off)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "datasette",
        "serve",
        str(peer_file),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--setting",
        "sql_time_limit_ms",
        "120000",
        "--setting",
        "max_csv_mb",
        "0",
    ]
    shown = " ".join(command[5:]).replace(str(port), "<free port>")
    print(f"peer: datasette serve peer.db {shown}", flush=True)
    log_path = tmp / "datasette.log"
    with open(log_path, "w") as log:
        # its own session: Ctrl-C reaches the bench, which then stops it
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit("datasette did not start:\n" + log_path.read_text()[-3000:])
            with contextlib.suppress(requests.RequestException):
                if requests.get(base + "/-/versions.json", timeout=5).ok:
                    break
            time.sleep(0.2)
        yield SimpleNamespace(base=base, session=requests.Session())
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def peer_token(peer_file: Path, position: int) -> str:
    """Datasette's `_next` for the page after the row at `position` in sort order."""
    from datasette.utils import tilde_encode

    conn = sqlite3.connect(peer_file)
    try:
        value, row_id = conn.execute(
            f"SELECT {SORT_COLUMN}, id FROM {TABLE} "  # noqa: S608
            f"ORDER BY {SORT_COLUMN}, id LIMIT 1 OFFSET ?",
            (position - 1,),
        ).fetchone()
    finally:
        conn.close()
    return f"{tilde_encode(str(value))},{tilde_encode(str(row_id))}"


# ----------------------------------------------------------------------
# Grid, summaries, export
# ----------------------------------------------------------------------


def grid(args, url, base, app, peer, peer_file, made) -> list[float]:
    """The three grid cases, app and Datasette interleaved; prints, returns ratios."""
    from wave_web import datatables
    from wave_web import queries
    from wave_web import schema

    deep_row = min(500_000, args.rows // 2)
    flask_app = make_app(url)
    try:
        with flask_app.app_context():
            xtype = schema.get_type(made["type_id"])
            table = datatables.reflect(xtype)
            experiment = uuid.UUID(made["experiment"])
            cursor = cursor_at(xtype, table, experiment, SORT_COLUMN, deep_row)
            size = queries.DEFAULT_PAGE_SIZE
    finally:
        dispose(flask_app)
    mine = f"{base}/experiments/{made['experiment']}"
    theirs = f"{peer.base}/peer/{TABLE}"
    scope = [("_size", str(size))]  # the copy holds the experiment's rows only
    sort = [("_sort", SORT_COLUMN)]
    cases = {
        "first page with count": (mine, f"{theirs}?{urlencode(scope)}"),
        "filtered participant_id equals": (
            f"{mine}?{urlencode([('participant_id__exact', PARTICIPANT)])}",
            f"{theirs}?{urlencode([*scope, ('participant_id', PARTICIPANT)])}",
        ),
        f"deep sorted page (row {deep_row:,})": (
            f"{mine}?{urlencode([*sort, ('_after', cursor), ('_start', deep_row)])}",
            f"{theirs}?"
            + urlencode([*scope, *sort, ("_next", peer_token(peer_file, deep_row))]),
        ),
    }
    print(
        f"{'case (ms)':<34}{'app p50':>9}{'p95':>8}{'peer p50':>10}{'p95':>8}"
        f"{'ratio':>8}"
    )
    ratios = []
    for name, (app_url, peer_url) in cases.items():
        ours = interleaved(
            [
                lambda u=app_url: timed_get(app, u, APP_ROWS),
                lambda u=peer_url: timed_get(peer.session, u, PEER_ROWS),
            ],
            args.reps,
        )
        a, p = ours
        ratio = statistics.median(a) / statistics.median(p)
        ratios.append(ratio)
        print(
            f"{name:<34}{statistics.median(a):>9.1f}{percentile(a, 0.95):>8.1f}"
            f"{statistics.median(p):>10.1f}{percentile(p, 0.95):>8.1f}{ratio:>8.2f}",
            flush=True,
        )
    return ratios


def interleaved(calls: list[Callable[[], float]], reps: int) -> list[list[float]]:
    """WARM_UP untimed rounds, then `reps` rounds of one call each, in turn."""
    for _ in range(WARM_UP):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(reps):
        for call, found in zip(calls, times, strict=True):
            found.append(call())
    return times


def summary_cold(args, base: str, app: requests.Session, made: dict) -> float:
    """The summary page right after a write (the description edited): computed anew.
    Returns the median in ms; Datasette has no such page (target < 1 s)."""
    page = f"{base}/experiments/{made['experiment']}"
    token = csrf_token(app, page + "/edit")
    times = []
    for i in range(args.reps + 1):
        r = app.post(
            page + "/edit",
            data={"description": f"Bench peers {i}", "csrf_token": token},
            allow_redirects=False,
            timeout=60,
        )
        if r.status_code not in (302, 303):
            sys.exit(f"editing the experiment answered {r.status_code}")
        took = timed_get(app, page + "/summary", b"")
        if i:  # the first, untimed, warms the templates
            times.append(took)
    median = statistics.median(times)
    print(
        f"{'column summaries, cold (ms)':<34}{median:>9.0f}"
        f"{percentile(times, 0.95):>8.0f}{'(target < 1,000 ms)':>26}",
        flush=True,
    )
    return median


def streamed_rows(session: requests.Session, url: str) -> tuple[float, int]:
    """Seconds to read a whole CSV download and its records (lines end in CRLF,
    values hold bare LF only); the header is not counted."""
    start = time.perf_counter()
    lines = 0
    with session.get(url, stream=True, timeout=LOAD_TIMEOUT) as r:
        if r.status_code != 200:
            sys.exit(f"GET {url} gave {r.status_code}")
        tail = b""
        for chunk in r.iter_content(1 << 20):
            data = tail + chunk  # a CRLF split across chunks counts in the next
            lines += data.count(b"\r\n")
            tail = b"\r" if data.endswith(b"\r") else b""
    return time.perf_counter() - start, lines - 1


def exports(args, base, app, peer, made) -> float:
    """The whole experiment as CSV from each, interleaved (once each at 1M rows,
    three times below 200,000); the fastest counts. Returns app/peer rows/s."""
    mine = f"{base}/experiments/{made['experiment']}/export.csv"
    theirs = f"{peer.base}/peer/{TABLE}.csv?_stream=on&_size=max"
    runs = 3 if args.rows < 200_000 else 1
    best = {"app": math.inf, "peer": math.inf}
    for _ in range(runs):
        for who, session, url in (("app", app, mine), ("peer", peer.session, theirs)):
            seconds, rows = streamed_rows(session, url)
            if rows != args.rows:
                sys.exit(f"{who} export gave {rows:,} rows of {args.rows:,}")
            best[who] = min(best[who], seconds)
    app_rate, peer_rate = args.rows / best["app"], args.rows / best["peer"]
    print(
        f"{'export whole experiment (rows/s)':<34}{app_rate:>17,.0f}"
        f"{peer_rate:>18,.0f}{app_rate / peer_rate:>8.2f}",
        flush=True,
    )
    return app_rate / peer_rate


if __name__ == "__main__":
    main()

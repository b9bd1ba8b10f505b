"""The load scenario shared by tests/resilience/test_load.py (20 s in CI) and
bench/load.py (60 s by hand): the app under gunicorn with 200,000 rows, used at
once by browsing users, users uploading CSVs and a user streaming the export.

Each simulated user is a thread with its own `httpx.Client` (a browser: its own
cookies and kept-alive connection), signed in through the real sign-in form.

- browsing users (16): the experiment list, the types list, the grid's first page
  and next pages, a filter, a sort, and an inline edit of a row as the grid does it
  (htmx GET of the edit row, then POST with the form's CSRF token and the row's
  `expected_updated_at`: optimistic concurrency, a 409 when another user saved the
  row in between); a pause of `think` seconds between actions;
- uploading users (2): 10,000-row CSVs back to back through the real upload form
  in one step (`confirm=1`, as scripts do), polling the job until it is done;
- one user streaming the whole experiment's CSV export in a loop.

Nothing here is timed against a limit: the caller asserts no 5xx, no connection
error and no lost row, and prints the percentiles.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import random
import re
import statistics
import threading
import time
from collections import Counter
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import httpx
import sqlalchemy as sa

ROWS = 200_000
UPLOAD_ROWS = 10_000
BROWSERS = 16
UPLOADERS = 2
EXPORTERS = 1
TABLE = "load_trials"
SORTED = "reaction_time"  # indexed, as the app's "add index" does
EDITED = "accuracy"
HEADER = ("participant_id", "reaction_time", "accuracy", "difficulty", "stimulus")
# the sign-in limit of the run: every simulated user signs in from 127.0.0.1
LOGIN_LIMIT = "1000 per minute"
PASSWORD = "a long first password"  # tests/servers.py's first admin
# kinds reported on their own, left out of the overall percentiles of pages: a
# whole upload or export lasts seconds by nature, and the sign-ins all come at once
# at the start (a deliberately slow password hash each)
SEPARATE_KINDS = ("sign_in", "upload", "export")
TIMEOUT = httpx.Timeout(120.0, connect=30.0)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
EXPECTED = re.compile(r'name="expected_updated_at" value="([^"]+)"')
NEXT = re.compile(r'rel="next" href="([^"]+)"')
ROW_ID = re.compile(r'<tr id="row-(\d+)"')


# ----------------------------------------------------------------------
# Data: the type, the experiment and its 200,000 rows, through domain functions
# ----------------------------------------------------------------------


def write_csv(path: Path, rows: int, seed: int = 0) -> Path:
    """A CSV of `rows` trials with the scenario's header (deterministic)."""
    rng = random.Random(seed)
    stimuli = ("word", "face", "tone", "shape")
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        for i in range(rows):
            out.writerow(
                (
                    f"P{i % 500:04d}",
                    f"{rng.uniform(0.2, 3.0):.4f}",
                    f"{rng.random():.3f}",
                    rng.randint(1, 5),
                    stimuli[i % 4],
                )
            )
    return path


def prepare(database_url: str, folder: Path, rows: int = ROWS) -> str:
    """The type, one experiment holding `rows` rows (experiments.row_count kept)
    and an index on the sorted column; returns the experiment's uuid.

    Rows go in with the app's own import pipeline (PostgreSQL COPY, SQLite batched
    executemany), not over HTTP. No user is made: gunicorn makes the first admin.
    """
    from wave_web import catalog
    from wave_web import schema
    from wave_web.columns import ColumnDef
    from wave_web.csv_io.importing import ImportOptions
    from wave_web.csv_io.importing import import_file
    from wave_web.extensions import db

    app = _app(database_url, folder)
    defs = [
        ColumnDef("reaction_time", "FLOAT"),
        ColumnDef("accuracy", "FLOAT"),
        ColumnDef("difficulty", "INTEGER"),
        ColumnDef("stimulus", "STRING"),
    ]
    path = write_csv(folder / "preload.csv", rows, seed=1)
    try:
        with app.app_context():
            xtype = schema.create_type("Load trials", "", TABLE, defs)
            experiment = catalog.create_experiment(xtype, "Load test", [], {})
            schema.add_index(xtype, SORTED)
            db.session.commit()
            import_file(xtype, experiment.uuid, str(path), ImportOptions())
            db.session.commit()
            if db.engine.dialect.name == "postgresql":
                db.session.execute(sa.text("ANALYZE load_trials"))  # as autovacuum
                db.session.commit()
            return str(experiment.uuid)
    finally:
        path.unlink()
        _dispose(app)


def count_rows(database_url: str, folder: Path, experiment: str) -> tuple[int, int]:
    """(rows of the experiment in its data table, its experiments.row_count)."""
    from wave_web import catalog
    from wave_web import datatables
    from wave_web.extensions import db

    app = _app(database_url, folder)
    try:
        with app.app_context():
            found = catalog.get_experiment(experiment)
            table = datatables.reflect(found.experiment_type)
            counted = db.session.scalar(
                sa.select(sa.func.count()).where(table.c.experiment_uuid == found.uuid)
            )
            return int(counted), int(found.row_count)
    finally:
        _dispose(app)


def _app(database_url: str, folder: Path):
    from wave_web import create_app

    instance = folder / "prepare"
    instance.mkdir(parents=True, exist_ok=True)
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SECRET_KEY": "load",
            "TESTING": True,
            "WAVE_UPLOAD_DIR": str(instance / "uploads"),
        }
    )


def _dispose(app) -> None:
    from wave_web.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# ----------------------------------------------------------------------
# What happened: every request's kind, status and time
# ----------------------------------------------------------------------


@dataclasses.dataclass
class Results:
    """Thread-safe record of the run."""

    times: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: defaultdict(list)
    )
    statuses: dict[str, Counter] = dataclasses.field(
        default_factory=lambda: defaultdict(Counter)
    )
    connection_errors: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    uploads_completed: int = 0
    uploads_refused: list[str] = dataclasses.field(default_factory=list)
    exports_completed: int = 0
    edits_saved: int = 0
    edit_conflicts: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def add(self, kind: str, status: int, ms: float) -> None:
        with self.lock:
            self.times[kind].append(ms)
            self.statuses[kind][status] += 1

    def note(self, what: str, text: str) -> None:
        with self.lock:
            getattr(self, what).append(text[:300])

    def count(self, what: str) -> None:
        with self.lock:
            setattr(self, what, getattr(self, what) + 1)

    @property
    def responses_5xx(self) -> int:
        return sum(n for c in self.statuses.values() for s, n in c.items() if s >= 500)

    def percentiles(self, kinds: list[str] | None = None) -> dict[str, float]:
        values = sorted(
            ms
            for kind, found in self.times.items()
            if (kind in kinds if kinds is not None else kind not in SEPARATE_KINDS)
            for ms in found
        )
        return percentiles(values)

    def table(self) -> list[str]:
        """Per kind and overall: requests, p50/p95/p99 in ms, statuses."""
        lines = [f"{'kind':<14}{'n':>6}{'p50':>9}{'p95':>9}{'p99':>9}  statuses"]
        kinds = sorted(self.times)
        for kind in [*kinds, "overall"]:
            if kind == "overall":
                p = self.percentiles()
                n = sum(
                    len(v) for k, v in self.times.items() if k not in SEPARATE_KINDS
                )
                shown = "pages: all but " + ", ".join(SEPARATE_KINDS)
            else:
                p = self.percentiles([kind])
                n = len(self.times[kind])
                shown = " ".join(
                    f"{s}×{c}" for s, c in sorted(self.statuses[kind].items())
                )
            lines.append(
                f"{kind:<14}{n:>6}{p['p50']:>9.0f}{p['p95']:>9.0f}{p['p99']:>9.0f}"
                f"  {shown}"
            )
        return lines


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 of sorted values (nearest rank); nan when there are none."""
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    if len(values) == 1:
        return {"p50": values[0], "p95": values[0], "p99": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}


# ----------------------------------------------------------------------
# A simulated user
# ----------------------------------------------------------------------


class Unexpected(Exception):
    """An answer the user's script did not expect (recorded, the user goes on)."""


class User:
    """One browser: a client with its own cookies, signed in as the first admin."""

    def __init__(self, base: str, email: str, results: Results) -> None:
        self.base = base
        self.email = email
        self.results = results
        self.client = httpx.Client(base_url=base, timeout=TIMEOUT)

    def request(
        self, kind: str, method: str, url: str, expect: tuple[int, ...] = (200,), **kw
    ) -> httpx.Response:
        """One timed request; connection errors and 5xx are recorded and raised."""
        start = time.perf_counter()
        try:
            response = self.client.request(method, url, **kw)
        except httpx.TransportError as exc:
            self.results.note("connection_errors", f"{kind} {url}: {exc!r}")
            raise
        self.results.add(kind, response.status_code, _ms(start))
        if response.status_code not in expect:
            self.results.note(
                "unexpected",
                f"{kind} {method} {url}: {response.status_code} {response.text[:200]}",
            )
            raise Unexpected(kind)
        return response

    def sign_in(self) -> None:
        token = self.csrf("sign_in", "/login")
        self.request(
            "sign_in",
            "POST",
            "/login",
            expect=(302, 303),
            data={"email": self.email, "password": PASSWORD, "csrf_token": token},
        )

    def csrf(self, kind: str, url: str) -> str:
        found = CSRF.search(self.request(kind, "GET", url).text)
        if not found:
            self.results.note("unexpected", f"{kind} {url}: no CSRF token")
            raise Unexpected(kind)
        return found.group(1)

    def close(self) -> None:
        self.client.close()


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


# ----------------------------------------------------------------------
# What each kind of user does
# ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the users work on."""

    experiment: str
    upload_csv: Path
    think: tuple[float, float] = (0.3, 1.0)


def browse(user: User, plan: Plan, stop: threading.Event, rng: random.Random) -> None:
    """Lists, grid pages, next pages, a filter, a sort and inline edits, in turn."""
    grid = f"/experiments/{plan.experiment}"
    while not stop.is_set():
        action = rng.choice(
            ("experiments", "types", "grid", "grid", "filter", "sort", "edit", "edit")
        )
        if action in ("experiments", "types"):
            user.request(action, "GET", f"/{action}/")
        elif action == "grid":
            page = user.request("grid", "GET", grid).text
            for _ in range(rng.randint(1, 3)):  # a few next pages
                found = NEXT.search(page)
                if not found or stop.is_set():
                    break
                page = user.request("grid_next", "GET", _unescape(found.group(1))).text
        elif action == "filter":
            low = f"{rng.uniform(0.2, 2.9):.2f}"
            user.request("filter", "GET", grid, params={f"{SORTED}__gt": low})
        elif action == "sort":
            order = rng.choice(("asc", "desc"))
            user.request("sort", "GET", grid, params={"_sort": SORTED, "_dir": order})
        else:
            edit_a_row(user, plan, rng)
        stop.wait(rng.uniform(*plan.think))


def edit_a_row(user: User, plan: Plan, rng: random.Random) -> None:
    """Double-click a cell, type, Enter: the grid's inline edit over htmx."""
    grid = f"/experiments/{plan.experiment}"
    # a page somewhere in the rows, so that users seldom edit the same row
    after = {"id__gt": rng.randint(0, ROWS - 100)}
    page = user.request("filter", "GET", grid, params=after)
    ids = ROW_ID.findall(page.text)
    if not ids:
        user.results.note("unexpected", "grid page without rows")
        raise Unexpected("grid")
    row = f"{grid}/rows/{rng.choice(ids)}"
    htmx = {"HX-Request": "true", "HX-Current-URL": user.base + grid}
    form = user.request("edit_form", "GET", row + "/edit", headers=htmx).text
    token, expected = CSRF.search(form), EXPECTED.search(form)
    if not (token and expected):
        user.results.note("unexpected", f"edit form of {row} without its fields")
        raise Unexpected("edit_form")
    response = user.request(
        "edit_save",
        "POST",
        row,
        expect=(200, 409),  # 409: another user saved the row since the form
        headers={**htmx, "X-CSRFToken": token.group(1)},
        data={
            "csrf_token": token.group(1),
            "expected_updated_at": _unescape(expected.group(1)),
            f"row.{EDITED}": f"{rng.random():.3f}",
        },
    )
    if response.status_code == 409:
        user.results.count("edit_conflicts")
    elif "Saved row" in response.text:
        user.results.count("edits_saved")
    else:
        user.results.note("unexpected", f"edit of {row}: {response.text[:200]}")


def upload(user: User, plan: Plan, stop: threading.Event, rng: random.Random) -> None:
    """10,000-row CSVs back to back, each in one step (confirm=1) as scripts do."""
    url = f"/experiments/{plan.experiment}/import"
    json = {"Accept": "application/json"}
    while not stop.is_set():
        token = user.csrf("import_page", url)
        with open(plan.upload_csv, "rb") as fh:
            response = user.request(
                "upload",
                "POST",
                url,
                expect=(200, 202, 422),
                headers=json,
                data={"mode": "insert", "confirm": "1", "csrf_token": token},
                files={"file": ("trials.csv", fh, "text/csv")},
            )
        state = response.json()
        while state["state"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.25)  # the job page's own polling interval, roughly
            state = user.request("job_poll", "GET", state["url"], headers=json).json()
        if state["state"] == "succeeded" and state["written"] == UPLOAD_ROWS:
            user.results.count("uploads_completed")
        else:
            user.results.note(
                "uploads_refused", f"{state['state']}: {state.get('message')}"
            )


def export(user: User, plan: Plan, stop: threading.Event, rng: random.Random) -> None:
    """The whole experiment's CSV, streamed and its lines counted, in a loop."""
    url = f"/experiments/{plan.experiment}/export.csv"
    while not stop.is_set():
        start = time.perf_counter()
        try:
            with user.client.stream("GET", url) as response:
                lines = sum(chunk.count(b"\n") for chunk in response.iter_bytes())
        except httpx.TransportError as exc:
            user.results.note("connection_errors", f"export: {exc!r}")
            raise
        user.results.add("export", response.status_code, _ms(start))
        if response.status_code != 200 or lines < ROWS:
            user.results.note(
                "unexpected", f"export: {response.status_code}, {lines} lines"
            )
            raise Unexpected("export")
        user.results.count("exports_completed")


def _unescape(text: str) -> str:
    return text.replace("&amp;", "&").replace("&#43;", "+").replace("&#x2B;", "+")


# ----------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------


def run(
    base: str,
    email: str,
    plan: Plan,
    seconds: float,
    browsers: int = BROWSERS,
    uploaders: int = UPLOADERS,
    exporters: int = EXPORTERS,
) -> Results:
    """Every user signs in, then works for `seconds`; a user's request in flight
    (an upload and its job included) is finished before this returns."""
    results = Results()
    stop = threading.Event()
    ready = threading.Barrier(browsers + uploaders + exporters + 1)
    work: list[Callable] = (
        [browse] * browsers + [upload] * uploaders + [export] * exporters
    )
    threads = [
        threading.Thread(
            target=_user,
            args=(base, email, plan, results, stop, ready, job, n),
            name=f"{job.__name__}-{n}",
            daemon=True,  # Ctrl-C in a bench run need not wait for them
        )
        for n, job in enumerate(work)
    ]
    for thread in threads:
        thread.start()
    try:
        with contextlib.suppress(threading.BrokenBarrierError):
            ready.wait(120)  # every user signed in (or gave up)
        stop.wait(seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(600)
    return results


def _user(base, email, plan, results, stop, ready, job, n) -> None:
    rng = random.Random(n)
    user = User(base, email, results)
    try:
        try:
            user.sign_in()
        finally:
            with contextlib.suppress(threading.BrokenBarrierError):
                ready.wait(120)
        while not stop.is_set():
            try:
                job(user, plan, stop, rng)
            except Unexpected:  # recorded; carry on as a user would
                stop.wait(0.5)
    except (httpx.TransportError, Unexpected):
        pass  # recorded: the user stops (a connection error fails the run)
    finally:
        user.close()


@contextlib.contextmanager
def served(
    database_url: str, folder: Path, start: Callable, wait: Callable
) -> Iterator[tuple[str, Path]]:
    """gunicorn (tests/servers.py's start and wait) with the scenario's settings;
    (base URL, log path). Stopped on leaving."""
    from tests.servers import stop as stop_server

    log_path = folder / "gunicorn.log"
    process = start(
        database_url,
        folder / "instance",
        log_path,
        WAVE_LOGIN_LIMIT=LOGIN_LIMIT,
        WAVE_UPLOAD_DIR=str(folder / "uploads"),
    )
    try:
        yield wait(process, log_path), log_path
    finally:
        stop_server(process)


SERVER_PROBLEMS = ("Traceback", "database is locked", "WORKER TIMEOUT", "ERROR")


def server_problems(log_path: Path) -> list[str]:
    """Lines of the gunicorn log that show a fault (a traceback, a locked SQLite,
    a worker killed for silence, an error logged)."""
    return [
        line
        for line in log_path.read_text(errors="replace").splitlines()
        if any(p in line for p in SERVER_PROBLEMS)
    ]

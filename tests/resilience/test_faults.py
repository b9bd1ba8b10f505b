"""Faults: what the app does when the database, a worker, a client or the disk fails.

Each fault of issue 14 item 5 is a test. A fault that needs a database restart or
stop runs on a private PostgreSQL cluster of this module (tests/pgcluster.py, never
the shared one); a fault of a server process runs against gunicorn (tests/servers.py)
serving that cluster or an SQLite file, started once per backend for the module.
Faults the Flask test client can show (a database restart seen from a request, a
full disk) use it. Timeouts are short (instance config / environment) so the file
stays quick: heartbeat 1 s, a silent job counts as interrupted after 5 s, a one-step
upload waits 1 s before answering 202.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from tests.conftest import TEST_PASSWORD
from tests.conftest import close_app_with_jobs
from tests.conftest import make_app
from tests.factories import make_experiment
from tests.factories import make_type
from tests.pgcluster import PgCluster
from tests.pgcluster import new_folder
from tests.servers import start_gunicorn
from tests.servers import stop
from tests.servers import wait_for_every_worker
from wave_web import accounts
from wave_web.columns import ColumnDef
from wave_web.csv_io import runner as runner_module
from wave_web.extensions import db as _db
from wave_web.models import ExperimentType
from wave_web.models import ImportJob

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
# Short waits, so a fault ends within seconds (names as in wave_web/config.py).
FAST = {
    "WAVE_DB_TIMEOUT_SECONDS": 2,
    "WAVE_IMPORT_SYNC_SECONDS": 1,
    "WAVE_IMPORT_HEARTBEAT_SECONDS": 1,
    "WAVE_IMPORT_STALE_SECONDS": 5,
}
# Text that must never reach a user: driver, SQL and stack traces.
INTERNALS = (
    "psycopg",
    "OperationalError",
    "sqlalchemy",
    "Traceback",
    "SQLSTATE",
    "server closed the connection",
    "Connection refused",
    "database is locked",
)
COLUMNS = [ColumnDef("rt", "FLOAT"), ColumnDef("word", "STRING")]
NOTHING = "Nothing was written"
BOUND = 60  # seconds within which every fault must have ended


# ----------------------------------------------------------------------
# Databases, apps and data
# ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster for the module: each test makes its database."""
    found = PgCluster(new_folder("wave-faults-"))
    try:
        yield found.init().start()
    finally:
        found.remove()


def new_database(backend: str, request, folder: Path) -> str:
    """The URL of an empty database: an SQLite file, or one on the private cluster."""
    if backend == "sqlite":
        return f"sqlite:///{folder / 'wave.db'}"
    cluster = request.getfixturevalue("cluster")
    return cluster.create_database(f"faults_{uuid.uuid4().hex[:12]}")


def local_app(url: str, folder: Path, **overrides):
    """The app in this process on `url` (migrated), uploads in `folder`."""
    settings = {"WAVE_UPLOAD_DIR": str(folder / "uploads"), **FAST, **overrides}
    return make_app(url, folder, **settings)


def new_target(app, name: str) -> tuple[str, str]:
    """(experiment uuid, data table) of a new type `name` with one experiment."""
    table = re.sub(r"[^a-z0-9]+", "_", name.lower()) + "_data"
    with app.app_context():
        xtype = make_type(name, table, COLUMNS)
        experiment = make_experiment(xtype)
        _db.session.commit()
        found = str(experiment.uuid), xtype.table_name
        _db.session.remove()
    return found


def api_key(app) -> str:
    with app.app_context():
        _key, secret = accounts.create_key("fault tests", "admin")
        _db.session.commit()
        _db.session.remove()
    return secret


def csv_text(rows: int, width: int = 8) -> str:
    """A CSV of `rows` valid rows; `width` sets the length of each word."""
    pad = "x" * max(0, width - 6)
    lines = [f"P{i % 50},{i / 10},w{i:05d}{pad}\n" for i in range(rows)]
    return "participant_id,rt,word\n" + "".join(lines)


def scalar(app, stmt):
    with app.app_context():
        try:
            return _db.session.execute(stmt).scalar()
        finally:
            _db.session.remove()


def row_count(app, table: str) -> int:
    return scalar(app, sa.select(sa.func.count()).select_from(sa.table(table)))


def job_rows(app, experiment: str) -> list[tuple[str, str, str | None]]:
    """(uuid, state, message) of the experiment's import jobs, as stored."""
    stmt = sa.select(ImportJob.uuid, ImportJob.state, ImportJob.message).where(
        ImportJob.experiment_uuid == uuid.UUID(experiment)
    )
    with app.app_context():
        try:
            return [(str(u), s, m) for u, s, m in _db.session.execute(stmt)]
        finally:
            _db.session.remove()


def idle_in_transaction(cluster: PgCluster, url: str) -> list[str]:
    """The sessions on the test's database left open in a transaction."""
    found = cluster.psql(
        "SELECT pid || ' ' || left(query, 80) FROM pg_stat_activity "
        "WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        database=url.rsplit("/", 1)[1],
    )
    return [line for line in found.splitlines() if line]


def sqlite_write_lock_held(url: str) -> list[str]:
    """["write lock held"] when another connection holds SQLite's write lock."""
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.5)
    try:
        conn.isolation_level = None
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return []
    except sqlite3.OperationalError as exc:
        return [f"write lock held ({exc})"]
    finally:
        conn.close()


def data_tables(app) -> set[str]:
    """Tables in the database that are not the app's own (the types' data tables)."""
    with app.app_context():
        try:
            names = set(sa.inspect(_db.engine).get_table_names())
        finally:
            _db.session.remove()
    return names - set(_db.metadata.tables) - {"alembic_version"}


def registered_tables(app) -> set[str]:
    with app.app_context():
        try:
            return set(_db.session.scalars(sa.select(ExperimentType.table_name)))
        finally:
            _db.session.remove()


def assert_plain(text: str) -> None:
    leaked = [t for t in INTERNALS if t.lower() in text.lower()]
    assert not leaked, f"internal text {leaked} reached the user: {text[:600]}"


def timed(fn: Callable[[], object]):
    """(what `fn` returns, the seconds it took)."""
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


def timed_get(client, path: str, headers: dict):
    return timed(lambda: client.get(path, headers=headers))


def eventually(check: Callable[[], object], seconds: float = 15) -> object:
    """The first true result of `check` within `seconds` (else its last result)."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


class Pause:
    """Wraps a function: its first call stops after it returns, until `go`."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()
        self.result: object = None

    def after(self, fn: Callable) -> Callable:
        def paused(*args, **kwargs):
            result = fn(*args, **kwargs)
            if not self.reached.is_set():
                self.result = result
                self.reached.set()
                assert self.go.wait(BOUND), "the test never released the pause"
            return result

        return paused


# ----------------------------------------------------------------------
# 1. The database restarts in the middle of an import
# ----------------------------------------------------------------------


@pytest.mark.postgresql
def test_database_restarted_mid_import_leaves_nothing_and_the_next_request_works(
    cluster, tmp_path, monkeypatch
):
    url = cluster.create_database(f"faults_{uuid.uuid4().hex[:12]}")
    app = local_app(url, tmp_path)
    try:
        experiment, table = new_target(app, "Restart test")
        key = api_key(app)
        # The import stops after writing every row, before its commit: the rows
        # exist only in its transaction when the database restarts.
        pause = Pause()
        monkeypatch.setattr(
            runner_module, "import_file", pause.after(runner_module.import_file)
        )
        client = app.test_client()
        answer = client.post(
            f"/experiments/{experiment}/import?confirm=1",
            data={"file": (io.BytesIO(csv_text(500).encode()), "session.csv")},
            headers={"Accept": "application/json"},
        )
        assert answer.status_code == 202, answer.text[:500]
        job_url = answer.headers["Location"]
        job_id = answer.json["job"]
        assert pause.reached.wait(BOUND), "the import never wrote its rows"
        assert pause.result.written == 500  # in its transaction, not committed yet

        cluster.restart("fast")
        pause.go.set()
        assert runner_module.wait_all(BOUND), "the import job never ended"

        page, seconds = timed(lambda: client.get(job_url))
        assert page.status_code == 200 and seconds < 5, (page.status_code, seconds)
        assert NOTHING in page.text
        assert_plain(page.text)
        assert [state for _job, state, _m in job_rows(app, experiment)] == ["failed"]
        status = client.get(
            f"/api/v1/imports/{job_id}", headers={"Authorization": f"Bearer {key}"}
        )
        assert status.status_code == 200, status.text
        assert status.json["state"] == "failed"
        assert NOTHING in status.json["message"] and status.json["written"] == 0
        assert_plain(status.text)
        assert row_count(app, table) == 0
        assert client.get(f"/experiments/{experiment}").status_code == 200
    finally:
        close_app_with_jobs(app)


# ----------------------------------------------------------------------
# 2. The database is down
# ----------------------------------------------------------------------


@pytest.mark.postgresql
def test_database_down_answers_503_within_5_seconds_and_recovers_when_back(
    cluster, tmp_path
):
    url = cluster.create_database(f"faults_{uuid.uuid4().hex[:12]}")
    app = local_app(url, tmp_path)
    try:
        experiment, _table = new_target(app, "Down test")
        auth = {"Authorization": f"Bearer {api_key(app)}"}
        client = app.test_client()
        asks = [
            ("page", f"/experiments/{experiment}", {}),
            ("list", "/experiments/", {}),
            ("api", f"/api/v1/experiments/{experiment}", auth),
        ]
        for _name, path, headers in asks:
            assert client.get(path, headers=headers).status_code == 200, path

        cluster.stop("fast")
        try:
            for name, path, headers in asks:
                answer, seconds = timed_get(client, path, headers)
                assert answer.status_code == 503, (name, answer.text[:500])
                assert seconds < 5, (name, seconds)
                assert answer.headers.get("Retry-After")
                assert_plain(answer.text)
                if name == "api":
                    assert "Database unavailable" in answer.json["detail"]
                else:
                    assert "database is not reachable" in answer.text
            health = client.get("/health")
            assert health.status_code == 503
            # a write too: refused the same way, nothing half done
            for name, path, kwargs in (
                ("form", "/experiments/new", {"data": {"description": "x"}}),
                (
                    "api-write",
                    "/api/v1/experiment-types/",
                    {"json": {}, "headers": auth},
                ),
            ):
                answer, seconds = timed(lambda p=path, k=kwargs: client.post(p, **k))
                assert answer.status_code == 503 and seconds < 5, (name, seconds)
                assert_plain(answer.text)
        finally:
            cluster.start()

        for name, path, headers in asks:
            answer, seconds = timed_get(client, path, headers)
            assert answer.status_code == 200 and seconds < 5, (name, seconds)
        assert client.get("/health").status_code == 200
    finally:
        close_app_with_jobs(app)


# ----------------------------------------------------------------------
# A real server per backend, for the faults of processes and connections
# ----------------------------------------------------------------------


@dataclass
class Served:
    backend: str
    base: str
    url: str
    app: object  # the app in this process, on the same database, to inspect it
    key: str
    uploads: Path
    process: subprocess.Popen
    cluster: PgCluster | None
    log: Path

    def logged(self, path: str) -> list[tuple[int, int]]:
        """(status, bytes sent) of the finished requests for `path`, from gunicorn's
        access log, in order."""
        found = []
        for line in self.log.read_text().splitlines():
            if f' {path} HTTP/1.1" ' in line:
                status, sent = line.split('" ', 1)[1].split()[:2]
                found.append((int(status), int(sent)))
        return found

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def upload_url(self, experiment: str) -> str:
        return f"{self.base}/api/v1/experiment-data/{experiment}/data/upload"

    def assert_no_server_errors(self) -> None:
        """No answer of the server was a 5xx and nothing logged a traceback."""
        text = self.log.read_text()
        errors = re.findall(r'^.*HTTP/1\.1" 5\d\d .*$', text, flags=re.MULTILINE)
        assert not errors, errors[:5]
        assert "Traceback" not in text, text[text.index("Traceback") :][:3000]

    def leftovers(self) -> list[str]:
        """Files left in the server's upload folder."""
        return sorted(os.listdir(self.uploads)) if self.uploads.exists() else []

    def idle(self) -> list[str]:
        """Sessions holding a transaction open: PostgreSQL's idle in transaction;
        SQLite's write lock, when nothing should hold it."""
        if self.cluster is None:
            return sqlite_write_lock_held(self.url)
        return idle_in_transaction(self.cluster, self.url)

    def workers(self) -> list[int]:
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        )
        return [int(p) for p in found.stdout.split()]


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory) -> Iterator[Served]:
    """gunicorn (4 workers × 2 threads, gunicorn.conf.py) on a new database."""
    backend = request.param
    folder = tmp_path_factory.mktemp(f"served-{backend}")
    url = new_database(backend, request, folder)
    app = local_app(url, folder)
    instance = folder / "server"
    instance.mkdir()
    (instance / "config.py").write_text(
        "".join(f"{k} = {v}\n" for k, v in FAST.items())
    )
    log = folder / "gunicorn.log"
    process = start_gunicorn(url, instance, log)
    try:
        base = wait_for_every_worker(process, log)
        yield Served(
            backend,
            base,
            url,
            app,
            api_key(app),
            instance / "uploads",
            process,
            request.getfixturevalue("cluster") if backend != "sqlite" else None,
            log,
        )
    finally:
        stop(process)
        close_app_with_jobs(app)


def sign_in(base: str) -> requests.Session:
    """A browser session of the admin make_app made (the database had a user before
    gunicorn started, so WAVE_ADMIN_EMAIL made none)."""
    browser = requests.Session()
    page = browser.get(base + "/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    answer = browser.post(
        base + "/login",
        data={
            "email": "admin@example.org",
            "password": TEST_PASSWORD,
            "csrf_token": token,
        },
        timeout=10,
    )
    assert answer.status_code == 200 and "/login" not in answer.url, answer.text[:300]
    return browser


# ----------------------------------------------------------------------
# 3. A worker is killed (SIGKILL) in the middle of an import
# ----------------------------------------------------------------------

KILL_ROWS = 150_000


def _worker_with_fd(served: Served, matches: Callable[[str], bool]):
    """The worker with an open file descriptor whose link `matches`."""
    for pid in served.workers():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if matches(os.readlink(f"/proc/{pid}/fd/{fd}")):
                        return pid
    return None


def _worker_holding_sqlite_write_lock(served: Served) -> int | None:
    """SQLite (WAL): the worker holding the write lock, a POSIX lock on byte 120 of
    the -shm file (see /proc/locks), i.e. the one inside the import's transaction."""
    try:
        inode = os.stat(served.url.removeprefix("sqlite:///") + "-shm").st_ino
    except FileNotFoundError:
        return None
    workers = set(served.workers())
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if fields[1:4] != ["POSIX", "ADVISORY", "WRITE"]:
                continue
            pid, file_id, first = int(fields[4]), fields[5], fields[6]
            here = file_id.rsplit(":", 1)[1] == str(inode) and first == "120"
            if here and pid in workers:
                return pid
    return None


def _worker_of_writing_session(served: Served) -> int | None:
    """PostgreSQL: the worker whose connection holds a write transaction."""
    ports = served.cluster.psql(
        "SELECT client_port FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
        "AND datname = current_database()",
        database=served.url.rsplit("/", 1)[1],
    ).split()
    inodes = set()
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if str(local_port) in ports:
                inodes.add(f"socket:[{fields[9]}]")
    return _worker_with_fd(served, inodes.__contains__) if inodes else None


def test_worker_killed_mid_import_leaves_no_rows_and_the_job_ends(served):
    experiment, table = new_target(served.app, f"Kill {served.backend}")
    body = csv_text(KILL_ROWS).encode()
    outcome: dict[str, object] = {}

    def upload() -> None:
        try:
            outcome["answer"] = requests.post(
                served.upload_url(experiment),
                data=body,
                headers={**served.auth, "Content-Type": "text/csv"},
                timeout=BOUND,
            )
        except requests.RequestException as exc:  # its worker may be the one killed
            outcome["error"] = exc

    sender = threading.Thread(target=upload, daemon=True)
    sender.start()

    def importing_worker() -> tuple[str, int] | None:
        jobs = [j for j in job_rows(served.app, experiment) if j[1] == "importing"]
        if not jobs:
            return None
        job_id = jobs[0][0]
        if served.cluster is not None:
            pid = _worker_of_writing_session(served)
        else:
            pid = _worker_holding_sqlite_write_lock(served)
        return (job_id, pid) if pid else None

    found = eventually(importing_worker, BOUND)
    assert found, f"no worker was seen importing: {job_rows(served.app, experiment)}"
    job_id, pid = found
    os.kill(pid, signal.SIGKILL)
    # it was mid-import: none of the rows it wrote was committed
    assert row_count(served.app, table) == 0, "the import ended before the kill"
    sender.join(BOUND)

    def ended() -> dict | None:
        with contextlib.suppress(requests.RequestException):
            answer = requests.get(
                f"{served.base}/api/v1/imports/{job_id}",
                headers=served.auth,
                timeout=10,
            )
            if answer.status_code == 200 and answer.json()["state"] in (
                "succeeded",
                "failed",
            ):
                return answer.json()
        return None

    final = eventually(ended, BOUND)
    assert final, f"the job never ended: {job_rows(served.app, experiment)}"
    rows = row_count(served.app, table)
    print(f"killed worker {pid}: the job ended {final['state']} with {rows} rows")
    if final["state"] == "succeeded":  # taken over by another worker
        assert rows == KILL_ROWS
    else:
        assert rows == 0, f"a killed import left {rows} rows"
        assert NOTHING in final["message"]
    assert_plain(final["message"])
    assert not served.idle()
    # the next upload stores the dead job's end and removes its file
    after = requests.post(
        served.upload_url(experiment),
        data=csv_text(3).encode(),
        headers={**served.auth, "Content-Type": "text/csv"},
        timeout=BOUND,
    )
    assert after.status_code == 201, after.text[:500]
    stored = dict((j, s) for j, s, _m in job_rows(served.app, experiment))
    assert stored[job_id] == final["state"], stored
    assert eventually(lambda: not served.leftovers(), 10), served.leftovers()
    served.assert_no_server_errors()


# ----------------------------------------------------------------------
# 4. A client goes away in the middle of an upload or a download
# ----------------------------------------------------------------------


def _send_part_and_close(base: str, head: str, body: bytes, served: Served):
    """Send the request head and half the body, then close the connection; the
    sessions idle in a transaction while the rest of the body was awaited."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(1.0)  # the server reads what came, and waits for the rest
        return served.idle()


def _multipart(fields: dict[str, str], rows: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    body = (
        "".join(parts).encode()
        + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="a.csv"\r\nContent-Type: text/csv\r\n\r\n'.encode()
        + rows
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("kind", ["api-raw", "api-multipart", "web-form"])
def test_upload_aborted_mid_body_stores_nothing_and_leaves_no_session(served, kind):
    experiment, table = new_target(served.app, f"Abort {kind} {served.backend}")
    rows = csv_text(20_000).encode()
    if kind == "web-form":  # the browser's upload form, signed in, with CSRF
        browser = sign_in(served.base)
        path = f"/experiments/{experiment}/import"
        form = browser.get(served.base + path, timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        body, content_type = _multipart({"csrf_token": token}, rows)
        cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
        credentials = f"Cookie: {cookie}\r\n"
    else:
        path = served.upload_url(experiment).removeprefix(served.base)
        if kind == "api-raw":
            body, content_type = rows, "text/csv"
        else:
            body, content_type = _multipart({}, rows)
        credentials = f"Authorization: Bearer {served.key}\r\n"
    head = (
        f"POST {path}?confirm=1 HTTP/1.1\r\nHost: localhost\r\n{credentials}"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    waiting = _send_part_and_close(served.base, head, body, served)

    # the server has seen the body end early, and refused it (not a shorter file)
    logged = eventually(lambda: served.logged(f"{path}?confirm=1"), BOUND)
    assert logged and logged[0][0] == 400, logged
    assert waiting == [], "a session stayed in a transaction while the body came"
    assert eventually(lambda: not served.leftovers(), 10), served.leftovers()
    assert eventually(lambda: not served.idle(), 10), served.idle()
    assert job_rows(served.app, experiment) == []
    assert row_count(served.app, table) == 0
    # the server is fine afterwards
    after = requests.get(served.base + "/health", timeout=10)
    assert after.status_code == 200
    served.assert_no_server_errors()


EXPORT_ROWS = 40_000


def test_download_closed_after_the_first_chunk_leaves_no_session(served):
    experiment, table = new_target(served.app, f"Download {served.backend}")
    loaded = requests.post(
        served.upload_url(experiment) + "?confirm=1",
        data=csv_text(EXPORT_ROWS, width=120).encode(),
        headers={**served.auth, "Content-Type": "text/csv"},
        timeout=BOUND,
    )
    assert loaded.status_code in (201, 202), loaded.text[:500]
    assert eventually(lambda: row_count(served.app, table) == EXPORT_ROWS, BOUND)
    browser = sign_in(served.base)
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)

    host, port = served.base.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the server blocks
    sock.settimeout(20)
    sock.connect((host, int(port)))
    try:
        sock.sendall(
            f"GET /experiments/{experiment}/export.csv HTTP/1.1\r\nHost: localhost\r\n"
            f"Cookie: {cookie}\r\n\r\n".encode()
        )
        first = sock.recv(4096)
        assert b" 200 " in first.split(b"\r\n", 1)[0], first[:300]
        time.sleep(0.5)  # the stream is under way, its transaction open
    finally:
        sock.close()

    assert eventually(lambda: not served.idle(), 10), served.idle()
    assert not served.leftovers()
    # every worker still answers, and the export works for the next client
    path = f"/experiments/{experiment}/export.csv"
    whole = browser.get(served.base + path, timeout=60)
    assert whole.status_code == 200
    assert whole.content.count(b"\n") >= EXPORT_ROWS
    assert not served.idle()
    # the first download really was cut short
    assert served.logged(path)[0][1] < len(whole.content), served.logged(path)
    served.assert_no_server_errors()


def at_once(count: int, send: Callable[[int], requests.Response]) -> list:
    """`send(i)` for each i below `count`, from threads released together; every
    answer must be a response (a connection error fails the test)."""
    start = threading.Barrier(count)
    answers: list[requests.Response | Exception | None] = [None] * count

    def run(i: int) -> None:
        start.wait()
        try:
            answers[i] = send(i)
        except requests.RequestException as exc:
            answers[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    assert all(isinstance(a, requests.Response) for a in answers), answers
    return answers


# ----------------------------------------------------------------------
# 5. Ten clients create a type with one name at once
# ----------------------------------------------------------------------


def test_ten_concurrent_creates_of_one_name_one_wins_nine_told_name_taken(served):
    name = f"Race {served.backend}"
    table = f"race_{served.backend}"
    before = data_tables(served.app)

    def create(_i: int) -> requests.Response:
        return requests.post(
            f"{served.base}/api/v1/experiment-types/",
            json={
                "name": name,
                "table_name": table,
                "schema_definition": {"rt": "FLOAT", "word": "STRING"},
            },
            headers=served.auth,
            timeout=BOUND,
        )

    answers = at_once(10, create)
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [400] * 9, [(a.status_code, a.text[:200]) for a in answers]
    for lost in (a for a in answers if a.status_code != 200):
        detail = lost.json()["detail"]
        assert "already" in detail or "took that name" in detail, detail
        assert_plain(detail)
    assert data_tables(served.app) - before == {table}
    assert data_tables(served.app) == registered_tables(served.app)
    assert not served.idle()
    served.assert_no_server_errors()


# ----------------------------------------------------------------------
# 6. Four imports at once on SQLite
# ----------------------------------------------------------------------

EACH = 20_000


@pytest.mark.parametrize("served", ["sqlite"], indirect=True)
def test_four_concurrent_sqlite_imports_succeed_or_say_busy(served):
    targets = [new_target(served.app, f"Busy {i}") for i in range(4)]

    def upload(i: int) -> requests.Response:
        return requests.post(
            served.upload_url(targets[i][0]),
            data=csv_text(EACH).encode(),
            headers={**served.auth, "Content-Type": "text/csv"},
            timeout=BOUND,
        )

    answers = at_once(4, upload)
    codes = [a.status_code for a in answers]
    for answer in answers:
        assert answer.status_code in (201, 202, 503), answer.text[:500]
        assert_plain(answer.text)
        if answer.status_code == 503:
            assert "retry" in answer.json()["detail"].lower()

    def final(answer) -> dict | None:
        if answer.status_code == 503:
            return {"state": "busy", "message": answer.json()["detail"]}
        found = requests.get(
            served.base + answer.json()["status_url"], headers=served.auth, timeout=10
        ).json()
        return found if found["state"] in ("succeeded", "failed") else None

    ends = [eventually(lambda a=a: final(a), BOUND) for a in answers]
    assert all(ends), ends
    for (_experiment, table), end in zip(targets, ends, strict=True):
        assert_plain(end["message"] or "")
        if end["state"] == "succeeded":
            assert row_count(served.app, table) == EACH
        else:
            assert "busy" in end["message"].lower() or "retry" in end["message"]
            assert row_count(served.app, table) == 0
    states = [e["state"] for e in ends]
    print(f"4 imports at once on SQLite: {states}, answers {codes}")
    assert states.count("succeeded") >= 1
    served.assert_no_server_errors()


@pytest.mark.postgresql
def test_two_imports_of_one_type_finishing_at_once_both_succeed(
    cluster, tmp_path, monkeypatch
):
    """Both remember the file's mapping for the type: the second one to store it
    must not fail on the first one's row (found by the kill test: a resumed
    import and a new one of the same header ending together)."""
    url = cluster.create_database(f"faults_{uuid.uuid4().hex[:12]}")
    app = local_app(url, tmp_path, WAVE_IMPORT_SYNC_SECONDS=30)
    try:
        first, table = new_target(app, "Twin imports")
        with app.app_context():
            xtype = _db.session.scalar(
                sa.select(ExperimentType).where(ExperimentType.table_name == table)
            )
            second = str(make_experiment(xtype, "Second").uuid)
            _db.session.commit()
            _db.session.remove()
        together = threading.Barrier(2, timeout=30)
        real = runner_module.remember

        def remember_together(*args, **kwargs):
            together.wait()  # both looked for no mapping yet, both store one
            return real(*args, **kwargs)

        monkeypatch.setattr(runner_module, "remember", remember_together)
        answers: list = [None, None]

        def upload(i: int, experiment: str) -> None:
            answers[i] = app.test_client().post(
                f"/api/v1/experiment-data/{experiment}/data/upload",
                data=csv_text(100).encode(),
                headers={**auth, "Content-Type": "text/csv"},
            )

        auth = {"Authorization": f"Bearer {api_key(app)}"}
        threads = [
            threading.Thread(target=upload, args=(i, e))
            for i, e in enumerate((first, second))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BOUND)
        assert [a.status_code for a in answers] == [201, 201], [
            a.text[:300] for a in answers
        ]
        assert row_count(app, table) == 200
    finally:
        close_app_with_jobs(app)


# ----------------------------------------------------------------------
# 7. The disk of the upload folder is full
# ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 2 MB tmpfs (root only), unmounted at the end."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_disk_during_an_upload_is_refused_cleanly_and_commits_nothing(
    backend, request, tmp_path, small_disk
):
    app = local_app(
        new_database(backend, request, tmp_path),
        tmp_path,
        WAVE_UPLOAD_DIR=str(small_disk),
    )
    try:
        experiment, table = new_target(app, "Disk test")
        auth = {"Authorization": f"Bearer {api_key(app)}"}
        body = csv_text(60_000, width=40).encode()  # ~3 MB: more than the disk
        assert len(body) > 2.5 * 1024 * 1024
        client = app.test_client()

        page = client.post(
            f"/experiments/{experiment}/import?confirm=1",
            data={"file": (io.BytesIO(body), "big.csv")},
        )
        api = client.post(
            f"/api/v1/experiment-data/{experiment}/data/upload",
            data=body,
            headers={**auth, "Content-Type": "text/csv"},
        )
        for answer in (page, api):
            assert answer.status_code in (413, 507), answer.text[:800]
            assert "space" in answer.text
            assert_plain(answer.text)
        assert os.listdir(small_disk) == []
        assert job_rows(app, experiment) == []
        assert row_count(app, table) == 0
    finally:
        close_app_with_jobs(app)

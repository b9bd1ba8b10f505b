"""Private PostgreSQL clusters for tests that restart, stop or replicate a database.

Never the shared cluster: each `PgCluster` is made by `initdb` in a temporary folder,
listens on 127.0.0.1 on a free port (no Unix socket), and is removed at the end.
PostgreSQL refuses to run as root, so as root the server programs run as the
`postgres` account, which then owns the folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers import free_port

# test clusters need no durability: a crash test kills the server, never the machine
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "60",
    "unix_socket_directories": "''",
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "replica",
    "max_wal_senders": "4",
    "hot_standby": "on",
}


def server_bin() -> Path | None:
    """The folder of initdb/pg_ctl/pg_basebackup: on PATH, else Debian's layout."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(versions[-1]).parent if versions else None


def _version(path: str) -> tuple[int, ...]:
    part = path.split("/")[-3]
    return tuple(int(x) for x in part.split(".") if x.isdigit())


def _missing(reason: str) -> None:
    if os.environ.get("WAVE_REQUIRE_POSTGRESQL"):
        pytest.fail(reason)
    pytest.skip(reason)


class PgCluster:
    """One PostgreSQL server of our own: init, start, stop, kill, restart, replicate."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.port = port or free_port()
        self.bin = server_bin()
        if self.bin is None:
            _missing("PostgreSQL server programs (initdb, pg_ctl) are not installed")

    # -- running the server programs --------------------------------------------

    def _run(self, program: str, *args: str, check: bool = True, timeout=120):
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(
            command,
            check=check,
            timeout=timeout,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def _own(self) -> None:
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            for path in (self.folder, *self.folder.rglob("*")):
                os.chown(path, account.pw_uid, account.pw_gid)

    def _configure(self, **settings: str) -> None:
        lines = [f"{k} = {v}" for k, v in {**FAST_SETTINGS, **settings}.items()]
        lines.append(f"port = {self.port}")
        with open(self.data / "postgresql.auto.conf", "a") as conf:
            conf.write("\n".join(lines) + "\n")

    def init(self, **settings: str) -> PgCluster:
        """initdb with trust auth for `postgres` (replication allowed on 127.0.0.1)."""
        self._own()
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--locale", "C",
        )  # fmt: skip
        self._configure(**settings)
        return self

    def start(self, wait: float = 60) -> PgCluster:
        """Start and wait until it accepts connections."""
        result = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", str(int(wait)), "start", check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{result.stdout}\n{self.tail()}")
        return self

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop (`fast` ends sessions; `immediate` is a crash without kill)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster and its children, like a crashed server."""
        pid = self.pid()
        if pid:
            children = subprocess.run(
                ["pgrep", "-P", str(pid)], stdout=subprocess.PIPE, text=True
            ).stdout.split()
            for each in [pid, *map(int, children)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(each, signal.SIGKILL)
            time.sleep(0.5)
            (self.data / "postmaster.pid").unlink(missing_ok=True)

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False) \
            .returncode == 0  # fmt: skip

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text()[-chars:]
        except OSError:
            return ""

    # -- using it ------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` with psql as postgres; the unaligned, tuples-only output."""
        result = subprocess.run(
            [
                str(self.bin / "psql") if (self.bin / "psql").exists() else "psql",
                "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                "-d", database, "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql,
            ],
            check=True, timeout=60, capture_output=True, text=True,
        )  # fmt: skip
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        """A new database (name from the test, a plain identifier); its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def make_replica(self, folder: Path) -> PgCluster:
        """A streaming replica of this (running) cluster: pg_basebackup -R, started."""
        replica = PgCluster(folder)
        replica._own()
        self._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-D", str(replica.data), "-R", "-X", "stream", "--no-sync",
            "--checkpoint=fast",  # a spread checkpoint would take ~90 s here
        )  # fmt: skip
        replica._configure()
        return replica.start()

    def remove(self) -> None:
        """Stop (immediately) and delete the folder."""
        if self.data.exists():
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def new_folder(prefix: str = "wave-pg-") -> Path:
    """A temp folder the `postgres` account can reach (pytest's tmp_path is root's)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


@pytest.fixture
def private_cluster() -> Iterator[PgCluster]:
    """A started private cluster, removed after the test."""
    cluster = PgCluster(new_folder())
    try:
        yield cluster.init().start()
    finally:
        cluster.remove()

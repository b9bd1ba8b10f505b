"""Real servers for tests: gunicorn with the repository's gunicorn.conf.py, nginx
with docs/deploy/nginx.conf, and clients that upload slowly."""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 4  # gunicorn.conf.py's
BOOT_SECONDS = 90  # 4 workers importing at once on a busy 2-core machine
LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")
READY = re.compile(r"Worker \d+ ready")
FAILED = ("Worker failed to boot", "Traceback", "Shutting down: Master")
ADMIN = "first.admin@example.org"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def start_gunicorn(
    url: str, instance: Path, log_path: Path, workers: int = WORKERS, **env_extra: str
) -> subprocess.Popen:
    """`gunicorn -b 127.0.0.1:0 wsgi:app` with gunicorn.conf.py (4 × 2 threads), the
    first admin from the environment and no SECRET_KEY (made in `instance`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVE_")}
    env.pop("SECRET_KEY", None)
    env.update(
        DATABASE_URL=url,
        WAVE_INSTANCE_PATH=str(instance),
        WAVE_ADMIN_EMAIL=ADMIN,
        WAVE_ADMIN_PASSWORD="a long first password",
        PYTHONPATH=str(ROOT),
        **env_extra,
    )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        str(workers),
        "-b",
        "127.0.0.1:0",  # the kernel picks a free port; the log names it
        "--graceful-timeout",
        "5",
        "wsgi:app",
    ]
    with open(log_path, "w") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def wait_for_every_worker(
    process: subprocess.Popen, log_path: Path, workers: int = WORKERS
) -> str:
    """The base URL once every worker has loaded the app; fails on a failed boot."""
    deadline = time.monotonic() + BOOT_SECONDS
    while time.monotonic() < deadline:
        text = log_path.read_text()
        failed = [m for m in FAILED if m in text]
        if failed or process.poll() is not None:
            pytest.fail(f"gunicorn: {failed or 'exited'}\n{text[-4000:]}")
        found = LISTENING.search(text)
        if found and len(READY.findall(text)) >= workers:
            return found.group(1)
        time.sleep(0.2)
    pytest.fail("not every worker booted in time:\n" + log_path.read_text()[-4000:])


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(upstream: str, folder: Path) -> tuple[subprocess.Popen, str]:
    """nginx running docs/deploy/nginx.conf in front of `upstream` (host:port), on a
    free port, everything under `folder`; (process, base URL)."""
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (apt-get install -y nginx-light)")
    port = free_port()
    site = (ROOT / "docs" / "deploy" / "nginx.conf").read_text()
    site = site.replace("server 127.0.0.1:8000;", f"server {upstream};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    assert upstream in site and str(port) in site, "the site file changed shape"
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = folder / "nginx.conf"
    conf.write_text(
        f"user root;\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} warn;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n    access_log off;\n{temp}\n{site}\n}}\n"
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(folder), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "stderr.log", "w"),  # noqa: SIM115 (the process's)
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("nginx exited: " + (folder / "stderr.log").read_text()[-2000:])
        try:
            if requests.get(base + "/health", timeout=5).status_code == 200:
                return process, base
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail("nginx did not answer: " + (folder / "error.log").read_text()[-2000:])


class SlowUpload:
    """A client sending a form body at one byte a second (a slow mobile link)."""

    def __init__(self, base: str, path: str = "/login") -> None:
        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\n".encode()
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            + b"Content-Length: 100000\r\n\r\n"
        )
        self.sent = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.done.wait(1.0):
            try:
                self.sock.sendall(b"x")
            except OSError:
                return
            self.sent += 1

    def answered(self) -> bool:
        """The server has answered or closed the connection (it is readable)."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.sock.close()

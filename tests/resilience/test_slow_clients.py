"""Slow clients are kept off the workers by the production set-up (issue 14 item 1).

Clients uploading at one byte a second each hold a gunicorn thread for as long as
they send: with gunicorn.conf.py's 4 processes × 2 threads, a page sent straight to
gunicorn waits behind them. nginx (docs/deploy/nginx.conf) reads each body whole
before passing the request on, so through it the same page answers at once.

One server for both halves, on SQLite: what is measured is the HTTP layer, the same
for both databases.
"""

from __future__ import annotations

import time

import pytest
import requests
from tests.servers import WORKERS
from tests.servers import SlowUpload
from tests.servers import start_gunicorn
from tests.servers import start_nginx
from tests.servers import stop
from tests.servers import wait_for_every_worker

THREADS = 2  # gunicorn.conf.py's
# 4 per gunicorn thread: gunicorn's processes take connections as they come, so
# every process gets more slow uploads than it has threads
SLOW = 4 * WORKERS * THREADS
WAIT = 10  # seconds a page straight to gunicorn is given (a page takes < 1 s)
PAGE = "/login"


def _slow_uploads(base: str) -> list[SlowUpload]:
    slow = [SlowUpload(base) for _ in range(SLOW)]
    while min(s.sent for s in slow) < 2:  # every one is sending its body
        time.sleep(0.1)
    return slow


def _close(slow: list[SlowUpload]) -> None:
    for s in slow:
        s.close()


def test_slow_uploads_hold_a_bare_gunicorn_but_not_gunicorn_behind_nginx(tmp_path):
    log_path = tmp_path / "gunicorn.log"
    app = start_gunicorn(
        f"sqlite:///{tmp_path / 'wave.db'}",
        tmp_path / "instance",
        log_path,
        WAVE_PROXY_COUNT="1",
    )
    proxy = None
    slow: list[SlowUpload] = []
    try:
        direct = wait_for_every_worker(app, log_path)
        (tmp_path / "nginx").mkdir()
        proxy, base = start_nginx(direct.removeprefix("http://"), tmp_path / "nginx")

        slow = _slow_uploads(base)
        start = time.perf_counter()
        assert requests.get(base + PAGE, timeout=60).status_code == 200
        through_nginx = time.perf_counter() - start
        assert not any(s.answered() for s in slow)  # all still sending
        _close(slow)

        slow = _slow_uploads(direct)
        start = time.perf_counter()
        with pytest.raises(requests.ReadTimeout):
            requests.get(direct + PAGE, timeout=WAIT)
        waited = time.perf_counter() - start
        _close(slow)  # the threads are free again: the same page answers
        assert requests.get(direct + PAGE, timeout=60).status_code == 200
        print(
            f"\n{SLOW} uploads at 1 byte/s: the page answered in {through_nginx:.2f} s "
            f"through nginx; straight to gunicorn it had no answer after {waited:.0f} s"
        )
    finally:
        _close(slow)
        if proxy is not None:
            stop(proxy)
        stop(app)

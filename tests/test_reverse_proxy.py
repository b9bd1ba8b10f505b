"""The production set-up of docs/production.md: nginx (docs/deploy/nginx.conf) in
front of gunicorn (gunicorn.conf.py).

Without a buffering proxy a client that uploads slowly holds a gunicorn thread for
as long as it sends; 8 of them (4 processes × 2 threads) stop every page. nginx
reads each request whole before passing it on, so gunicorn never waits for one.
"""

from __future__ import annotations

import re
import time

import pytest
import requests
from tests.conftest import make_app
from tests.servers import WORKERS
from tests.servers import SlowUpload
from tests.servers import start_gunicorn
from tests.servers import start_nginx
from tests.servers import stop
from tests.servers import wait_for_every_worker

THREADS = 2  # gunicorn.conf.py's
PAGES = ("/login", "/health", "/api-docs", "/static/app.css")


def test_slow_uploads_through_nginx_hold_no_worker(database_url, tmp_path):
    log_path = tmp_path / "gunicorn.log"
    app = start_gunicorn(
        database_url, tmp_path / "instance", log_path, WAVE_PROXY_COUNT="1"
    )
    proxy = None
    slow: list[SlowUpload] = []
    try:
        upstream = wait_for_every_worker(app, log_path).removeprefix("http://")
        (tmp_path / "nginx").mkdir()
        proxy, base = start_nginx(upstream, tmp_path / "nginx")
        # one more than gunicorn has threads: straight to gunicorn, every page waits
        slow = [SlowUpload(base) for _ in range(WORKERS * THREADS + 1)]
        while min(s.sent for s in slow) < 2:
            time.sleep(0.1)
        for path in PAGES:
            assert requests.get(base + path, timeout=60).status_code == 200
        # answered while every slow upload is still sending, unanswered
        assert not any(s.answered() for s in slow)
        assert all(s.thread.is_alive() for s in slow)
    finally:
        for s in slow:
            s.close()
        if proxy is not None:
            stop(proxy)
        stop(app)


def test_through_nginx_the_app_sees_the_client_and_the_proxys_request_id(
    database_url, tmp_path
):
    log_path = tmp_path / "gunicorn.log"
    app = start_gunicorn(
        database_url, tmp_path / "instance", log_path, WAVE_PROXY_COUNT="1"
    )
    proxy = None
    try:
        upstream = wait_for_every_worker(app, log_path).removeprefix("http://")
        (tmp_path / "nginx").mkdir()
        proxy, base = start_nginx(upstream, tmp_path / "nginx")
        response = requests.get(base + "/login", timeout=30)
        request_id = response.headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)  # nginx's $request_id
        stop(app)
        app = None
        line = next(x for x in log_path.read_text().splitlines() if "GET /login" in x)
        assert line.startswith("127.0.0.1 ") and f"rid={request_id}" in line
    finally:
        if proxy is not None:
            stop(proxy)
        if app is not None:
            stop(app)


@pytest.mark.parametrize(
    ("count", "seen"), [(1, "203.0.113.7 https"), (None, "127.0.0.1 http")]
)
def test_proxy_count_takes_the_client_address_from_x_forwarded_for(
    database_url, tmp_path, count, seen
):
    from flask import request
    from wave_web.access import PUBLIC
    from wave_web.access import requires
    from wave_web.extensions import db

    app = make_app(
        database_url, tmp_path, **({"WAVE_PROXY_COUNT": count} if count else {})
    )

    @app.get("/whoami")
    @requires(PUBLIC)
    def whoami():
        return f"{request.remote_addr} {request.scheme}"

    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    try:
        assert app.test_client().get("/whoami", headers=headers).text == seen
    finally:
        with app.app_context():
            db.engine.dispose()

"""A live server on a fresh database and headless system Chromium via Playwright."""

from __future__ import annotations

import contextlib
import os
import threading

import pytest
from tests.conftest import make_app
from tests.conftest import session_for
from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def live_app(database_url, tmp_path):
    """The app of the live server: CSRF on, as in production."""
    return make_app(database_url, tmp_path, WTF_CSRF_ENABLED=True)


@contextlib.contextmanager
def serving(app):
    """`app` served by a real HTTP server in a thread; gives its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def live_url(live_app):
    """The app served by a real HTTP server in a thread."""
    with serving(live_app) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def signed_in_cookie(app, url: str, role: str = "admin") -> dict:
    """The session cookie of a signed-in `role` user, for a browser context."""
    signer = app.session_interface.get_signing_serializer(app)
    value = signer.dumps(session_for(app, role))
    return {"name": app.config["SESSION_COOKIE_NAME"], "value": value, "url": url}


@pytest.fixture
def page(browser, live_app, live_url):
    """A page signed in as an admin on the live server."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([signed_in_cookie(live_app, live_url)])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"

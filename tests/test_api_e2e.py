"""End to end over real HTTP: the app under gunicorn, a client flow with `requests`.

gunicorn (two workers, so a row written by one process is read by another) serves
`wsgi:app` on a free port of 127.0.0.1 against the test's database (an SQLite file,
or a throwaway PostgreSQL schema), with a key and an admin made by the `flask`
commands. The flow is what experiment software and analysis scripts do: create a
type and an experiment, post rows singly and in a batch, upload a CSV, query them
back, update and delete one; then the rows are checked in the web grid as the
signed-in admin sees them, and the experiment and type are deleted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from tests.servers import ROOT
from tests.servers import stop
from tests.servers import wait_for_every_worker
from wave_web.extensions import db as _db

ADMIN_EMAIL = "e2e-admin@example.org"
ADMIN_PASSWORD = "end to end password 42"


def _environment(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WAVE_", "DATABASE_URL", "SECRET_KEY", "FLASK_"))
    }
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY="end-to-end-test-secret",
        WAVE_UPLOAD_DIR=str(tmp_path / "uploads"),
        PYTHONPATH=str(ROOT),
    )
    return env


def _flask(env: dict[str, str], *args: str) -> str:
    """Run a `flask --app wave_web` command; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wave_web", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def server(database_url, tmp_path):
    """(base URL, admin key secret) of gunicorn serving the app on a free port."""
    env = _environment(database_url, tmp_path)
    # The command migrates the new database, so the workers start on a ready one.
    key = _flask(env, "keys", "create", "--label", "e2e client", "--role", "admin")
    key = key.strip().splitlines()[-1]
    _flask(
        env,
        "users",
        "create",
        "--email",
        ADMIN_EMAIL,
        "--role",
        "admin",
        "--password",
        ADMIN_PASSWORD,
    )
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                "2",
                "--threads",
                "2",
                "-b",
                "127.0.0.1:0",  # the kernel picks a free port; the log names it
                "--graceful-timeout",
                "5",
                "wsgi:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = wait_for_every_worker(process, log_path, workers=2)
        yield base, key
    finally:
        stop(process)


class Client:
    """What the client libraries do: a keep-alive session, key and JSON on each call."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base + "/api/v1"
        self.http = requests.Session()
        self.http.headers.update(
            {
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
                "X-WAVE-Client-Version": "1.0.0",
            }
        )

    def __call__(self, method: str, path: str, status: int, body=None, **kw):
        r = self.http.request(method, self.base + path, json=body, timeout=30, **kw)
        assert r.status_code == status, (method, path, r.status_code, r.text[:1000])
        assert r.headers["X-WAVE-API-Version"] == "1.0.0"
        assert r.headers["Content-Type"].startswith("application/json")
        return r.json()


def _sign_in(base: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(base + "/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = browser.post(
        base + "/login",
        data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token},
        timeout=10,
    )
    assert r.status_code == 200 and "/login" not in r.url, r.text[:500]
    return browser


def test_a_whole_client_flow_over_http_under_gunicorn(server):
    base, key = server
    api = Client(base, key)
    assert requests.get(base + "/health", timeout=5).json()["status"] == "healthy"

    xtype = api(
        "POST",
        "/experiment-types/",
        200,
        {
            "name": "Stroop e2e",
            "description": "end to end",
            "table_name": "stroop_e2e",
            "schema_definition": {"rt": "FLOAT", "word": "STRING", "ok": "BOOLEAN"},
        },
    )
    experiment = api(
        "POST",
        "/experiments/",
        200,
        {"experiment_type_id": xtype["id"], "description": "pilot", "tags": []},
    )
    uuid = experiment["uuid"]
    data = f"/experiment-data/{uuid}/data"

    singles = [
        api(
            "POST",
            data + "/",
            201,
            {"participant_id": f"S{i}", "data": {"rt": i / 4, "word": f"one{i}"}},
        )
        for i in range(3)
    ]
    assert [r["rt"] for r in singles] == [0.0, 0.25, 0.5]
    batch = api(
        "POST",
        data + "/batch",
        201,
        {
            "rows": [
                {"participant_id": "B", "data": {"rt": 1 + i, "word": f"many{i}"}}
                for i in range(10)
            ]
        },
    )
    assert batch["inserted"] == 10 and len(set(batch["ids"])) == 10
    csv_text = "participant_id,rt,word,ok\nU1,2.5,uploaded1,true\nU2,3.5,uploaded2,\n"
    uploaded = requests.post(
        api.base + data + "/upload",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("session.csv", csv_text.encode(), "text/csv")},
        timeout=30,
    )
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["written"] == 2

    listed = api("GET", data + "/?limit=100", 200)
    assert len(listed) == 15
    assert [r["id"] for r in listed] == sorted((r["id"] for r in listed), reverse=True)
    assert api("GET", data + "/count", 200)["count"] == 15
    found = api("POST", data + "/query", 200, {"participant_id": "B", "limit": 5})
    assert [r["word"] for r in found] == [f"many{i}" for i in (9, 8, 7, 6, 5)]

    changed = singles[1]["id"]
    updated = api("PUT", f"{data}/row/{changed}", 200, {"data": {"word": "changed"}})
    assert (updated["rt"], updated["word"], updated["ok"]) == (0.25, "changed", None)
    assert api("GET", f"{data}/row/{changed}", 200)["word"] == "changed"
    gone = batch["ids"][0]
    deleted = api("DELETE", f"{data}/row/{gone}", 200)
    assert deleted["deleted_id"] == gone
    api("GET", f"{data}/row/{gone}", 404)
    assert api("GET", data + "/count", 200)["count"] == 14

    # The rows as the web grid shows them to a signed-in admin
    browser = _sign_in(base)
    grid = browser.get(f"{base}/experiments/{uuid}", timeout=10)
    assert grid.status_code == 200
    for word in ("one0", "changed", "one2", "many1", "many9", "uploaded1", "uploaded2"):
        assert f">{word}<" in grid.text, word
    assert ">one1<" not in grid.text and ">many0<" not in grid.text
    assert '<span id="row-count">14</span> rows' in grid.text

    removed = api("DELETE", f"/experiments/{uuid}", 200)
    assert removed["deleted_data_rows"] == 14
    api("GET", f"/experiments/{uuid}", 404)
    api("DELETE", f"/experiment-types/{xtype['id']}", 200)
    api("GET", f"/experiment-types/{xtype['id']}", 404)


def test_the_keys_create_command_prints_a_key_that_works(app, client):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["keys", "create", "--label", "ci", "--role", "test"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip()
    r = client.get(
        "/api/v1/experiment-types/", headers={"Authorization": f"Bearer {secret}"}
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    with app.app_context():
        from wave_web.models import ApiKey

        key = _db.session.query(ApiKey).one()
        assert (key.label, key.role) == ("ci", "test")
        assert secret not in (key.key_hash or "")


def test_the_keys_create_command_refuses_a_bad_role_or_label(app):
    runner = app.test_cli_runner()
    bad_role = runner.invoke(args=["keys", "create", "--label", "x", "--role", "boss"])
    assert bad_role.exit_code != 0 and "boss" in bad_role.output
    no_label = runner.invoke(args=["keys", "create", "--label", " ", "--role", "test"])
    assert no_label.exit_code != 0 and "label" in no_label.output
    with app.app_context():
        from wave_web.models import ApiKey

        assert _db.session.query(ApiKey).count() == 0

"""The API page (/api-docs): public, every task with a curl and a Python example,
the examples work, every API route listed, linked from the keys, home and experiment
pages. Both databases (the examples run against the API through the test client).
"""

from __future__ import annotations

import os
import re
import sys
import types
from html import unescape
from typing import Any

import orjson
import pytest
from tests.api_helpers import mint_key
from tests.conftest import close_app_with_jobs
from tests.conftest import make_app
from tests.factories import make_experiment
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web.api import http

PAGE = "/api-docs"
TASKS = (
    "create-type",
    "create-experiment",
    "post-row",
    "post-batch",
    "list-rows",
    "count-rows",
    "update-row",
    "upload-csv",
    "search",
)
SECTIONS = ("keys", "basics", "errors", "pagination", "tasks", "endpoints", *TASKS)
# How the page's endpoint table spells the route table's path parameters
PARAMETER_NAMES = {
    "experiment_type_id": "id",
    "tag_id": "id",
    "experiment_uuid": "experiment",
    "experiment_id": "experiment",
    "experiment_type_name": "name",
}
ROWS_PREFIX = "/api/v1/experiment-data/{experiment}"


@pytest.fixture
def app(database_url, tmp_path):
    app = make_app(database_url, tmp_path, WAVE_UPLOAD_DIR=str(tmp_path / "uploads"))
    yield app
    close_app_with_jobs(app)  # the upload example runs an import job


def page(client, url: str = PAGE):
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return parse(response.data)


def code_blocks(section) -> dict[str, list[str]]:
    """Language → the code texts of the examples in a section."""
    found: dict[str, list[str]] = {}
    for code in section.find_all("code"):
        language = code.attrs.get("class", "").removeprefix("language-")
        if language in ("sh", "python"):
            found.setdefault(language, []).append(code.text)
    return found


def raw_code(html: str, language: str) -> list[str]:
    """The examples' text exactly as shown (line breaks kept), in page order."""
    pattern = rf'<code class="language-{language}">(.*?)</code>'
    return [unescape(block) for block in re.findall(pattern, html, re.S)]


def test_api_page_is_public_with_a_table_of_contents(app):
    doc = page(app.test_client(user=None))
    assert doc.find("title").text.startswith("JSON API")
    assert doc.find("h1").text == "JSON API"
    toc = doc.find("nav", **{"aria-labelledby": "toc-heading"})
    targets = [a.attrs["href"] for a in toc.find_all("a")]
    for section in SECTIONS:
        assert f"#{section}" in targets
        assert doc.find(id=section) is not None, section
    for target in targets:
        if target.startswith("#"):
            assert doc.find(id=target[1:]) is not None, target


def test_api_page_says_how_to_get_a_key_and_what_each_role_may_do(app):
    doc = page(app.test_client(user=None))
    keys = doc.find("section", **{"aria-labelledby": "keys"})
    assert keys.find("a", href="/admin/keys") is not None
    text = keys.text
    for role in ("experimentee", "researcher", "admin", "test"):
        assert role in text
    assert "shown once" in text
    assert "participants' browsers must be experimentee keys" in text


def test_api_page_shows_this_servers_base_url_and_the_headers(app):
    doc = page(app.test_client(user=None))
    basics = doc.find("section", **{"aria-labelledby": "basics"})
    assert "http://localhost" in basics.text  # the test client's address
    for header in ("Authorization: Bearer", "X-WAVE-API-Version", "Content-Type"):
        assert header in basics.text
    setup = code_blocks(basics)
    assert 'WAVE_URL="http://localhost"' in setup["sh"][0]
    assert 'WAVE = "http://localhost"' in setup["python"][0]


def test_api_page_describes_error_shapes_and_pagination(app):
    doc = page(app.test_client(user=None))
    errors = doc.find("section", **{"aria-labelledby": "errors"}).text
    for status in ("400", "401", "403", "404", "422", "503"):
        assert status in errors
    assert '"detail"' in errors and "Retry" in errors
    paging = doc.find("section", **{"aria-labelledby": "pagination"}).text
    for word in ("skip", "offset", "limit", "1000", "newest first"):
        assert word in paging


@pytest.mark.parametrize("task", TASKS)
def test_every_task_has_a_curl_and_a_python_example(app, task):
    doc = page(app.test_client(user=None))
    section = doc.find("section", **{"aria-labelledby": task})
    blocks = code_blocks(section)
    assert blocks.get("sh") and blocks["sh"][0].startswith("curl"), task
    assert blocks.get("python"), task
    assert "$WAVE_API_KEY" in blocks["sh"][0]
    assert "api." in blocks["python"][0]


def test_upload_task_describes_the_file_field_and_both_answers(app):
    doc = page(app.test_client(user=None))
    text = doc.find("section", **{"aria-labelledby": "upload-csv"}).text
    assert "/data/upload" in text and "file" in text and "text/csv" in text
    assert "201" in text and "202" in text and "status_url" in text


def test_api_page_links_the_openapi_document(app, client):
    doc = page(app.test_client(user=None))
    assert doc.find_all("a", href="/api/v1/openapi.json")
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"].startswith("3.1")


def endpoint_table(doc) -> set[tuple[str, str]]:
    """(method, path) of the page's endpoint table, written out in full."""
    table = doc.find("table", class_="endpoints")
    found = set()
    for row in table.find("tbody").find_all("tr"):
        cells = row.find_all("td")
        if not cells:
            continue  # a group heading
        path = cells[1].text.replace("…", ROWS_PREFIX)
        found.add((cells[0].text, path))
    return found


def route_table() -> set[tuple[str, str]]:
    """(method, path) of every API route, in the page's spelling of parameters."""
    found = {("GET", "/health"), ("GET", "/version"), ("GET", "/api/v1/openapi.json")}
    for route in http.ROUTES:
        path = re.sub(
            r"{(\w+)}",
            lambda m: "{" + PARAMETER_NAMES.get(m[1], m[1]) + "}",
            route.openapi_path,
        )
        found.add((route.method, path))
    return found


def test_endpoint_table_lists_every_api_route_and_no_other(app):
    doc = page(app.test_client(user=None))
    assert endpoint_table(doc) == route_table()


def test_endpoint_table_gives_each_routes_least_role(app):
    doc = page(app.test_client(user=None))
    roles = {}
    for row in doc.find("table", class_="endpoints").find("tbody").find_all("tr"):
        cells = row.find_all("td")
        if cells:
            roles[(cells[0].text, cells[1].text.replace("…", ROWS_PREFIX))] = cells[
                2
            ].text
    for route in http.ROUTES:
        path = re.sub(
            r"{(\w+)}",
            lambda m: "{" + PARAMETER_NAMES.get(m[1], m[1]) + "}",
            route.openapi_path,
        )
        assert roles[(route.method, path)] == route.role, path


def test_keys_page_links_the_api_page(app, client):
    doc = page(client, "/admin/keys")  # the client is an admin's
    link = doc.find("a", id="api-docs-link")
    assert link is not None and link.attrs["href"] == PAGE


@pytest.mark.parametrize("role", ["viewer", "researcher"])
def test_home_page_links_the_api_page(app, role):
    doc = page(app.test_client(user=role), "/")
    assert doc.find("a", id="api-docs-link").attrs["href"] == PAGE


def test_welcome_steps_link_through_the_api_to_the_api_page(app):
    doc = page(app.test_client(user="researcher"), "/")  # no types yet: the steps
    step = next(li for li in doc.find_all("li") if "Add rows" in li.text)
    assert step.find("a").attrs["href"] == PAGE


def test_empty_experiment_names_its_api_address_and_links_the_api_page(app, db):
    experiment = make_experiment(make_type(), "Empty")
    db.session.commit()
    doc = page(app.test_client(user="viewer"), f"/experiments/{experiment.uuid}")
    main = doc.find("main")
    assert f"/api/v1/experiment-data/{experiment.uuid}/data/" in main.text
    assert main.find("a", href=f"{PAGE}#post-row") is not None


def test_api_page_is_not_an_api_route(app):
    """The page is HTML for browsers; a key or a JSON Accept does not change that."""
    key = mint_key(app, "test")
    response = app.test_client(user=None).get(
        PAGE, headers={"Authorization": f"Bearer {key}", "Accept": "application/json"}
    )
    assert response.status_code == 200 and response.mimetype == "text/html"


def test_unknown_method_on_the_api_page_is_refused(app):
    response = app.test_client(user=None).post(PAGE)
    assert response.status_code == 405


# ----------------------------------------------------------------------
# The Python examples, run in page order against the API (test client)
# ----------------------------------------------------------------------


class Answer:
    """What the examples use of a requests.Response."""

    def __init__(self, response) -> None:
        self.status_code = response.status_code
        self.text = response.get_data(as_text=True)
        self._response = response

    def json(self) -> Any:
        return orjson.loads(self._response.data)

    def raise_for_status(self) -> None:
        assert self.status_code < 400, (self.status_code, self.text)


class Session:
    """A requests.Session on the Flask test client, with the examples' key."""

    def __init__(self, client, key: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}

    def request(self, method, url, json=None, params=None, files=None) -> Answer:
        kwargs: dict[str, Any] = {"query_string": params, "headers": self.headers}
        if json is not None:
            kwargs["data"] = orjson.dumps(json)
            kwargs["content_type"] = "application/json"
        if files:
            kwargs["data"] = {
                name: (f, os.path.basename(f.name)) for name, f in files.items()
            }
            kwargs["content_type"] = "multipart/form-data"
        return Answer(self.client.open(url, method=method, **kwargs))

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post(self, url, **kw):
        return self.request("POST", url, **kw)

    def put(self, url, **kw):
        return self.request("PUT", url, **kw)

    def delete(self, url, **kw):
        return self.request("DELETE", url, **kw)


def test_python_examples_run_in_order_and_do_what_they_say(
    app, client, tmp_path, monkeypatch
):
    html = client.get(PAGE).get_data(as_text=True)
    setup, *examples = raw_code(html, "python")
    assert "requests.Session()" in setup
    assert len(examples) == len(TASKS)
    (tmp_path / "stroop_P02.csv").write_text(
        "participant_id,trial,word,rt,correct\nP02,4,RED,0.5,true\nP02,5,BLUE,0.6,false\n"
    )
    monkeypatch.chdir(tmp_path)
    pandas = types.ModuleType("pandas")  # the list example hands rows to pandas
    pandas.DataFrame = list
    monkeypatch.setitem(sys.modules, "pandas", pandas)
    namespace: dict[str, Any] = {
        "WAVE": "",
        "api": Session(client, mint_key(app, "admin")),
    }
    for number, example in enumerate(examples):
        exec(compile(example, f"example {TASKS[number]}", "exec"), namespace)  # noqa: S102

    assert namespace["ids"] == [2, 3]  # the batch, after the single row 1
    assert len(namespace["rows"]) == 3 and namespace["frame"] == namespace["rows"]
    assert [r["trial"] for r in namespace["correct"]] == [2, 1]
    assert namespace["job"]["state"] == "succeeded"
    assert namespace["job"]["written"] == 2
    assert namespace["found"]["total"] == 1
    count = client.get(
        f"/api/v1/experiment-data/{namespace['experiment']}/data/count",
        headers=namespace["api"].headers,
    ).get_json()["count"]
    assert count == 4  # three posted, one deleted, two uploaded

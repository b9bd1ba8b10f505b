"""Request ids: on every response, every log line of the request, every error page."""

from __future__ import annotations

import logging
import re

import pytest
from tests.htmlparse import parse
from wave_web.access import requires
from wave_web.requestlog import FORMAT
from wave_web.requestlog import RequestIdFilter

ID = re.compile(r"[0-9a-f]{16}")


@pytest.mark.parametrize(
    "path", ["/", "/api/v1/experiments", "/health", "/no-such-page", "/static/app.css"]
)
def test_every_response_carries_a_new_request_id(client, path):
    first = client.get(path).headers["X-Request-ID"]
    second = client.get(path).headers["X-Request-ID"]
    assert ID.fullmatch(first) and ID.fullmatch(second) and first != second


def test_a_request_id_from_the_proxy_is_kept(client):
    given = "req-2026-12-04:abc.123"
    assert (
        client.get("/", headers={"X-Request-ID": given}).headers["X-Request-ID"]
        == given
    )


@pytest.mark.parametrize(
    "given",
    ["short", "x" * 65, "has space in it", "<script>alert(1)</script>", "é" * 10],
)
def test_an_unusable_request_id_is_replaced(client, given):
    sent = client.get("/", headers={"X-Request-ID": given}).headers["X-Request-ID"]
    assert ID.fullmatch(sent)


def test_the_500_page_and_the_log_line_name_the_same_request(app, client, capsys):
    @app.get("/boom-logged")
    @requires("viewer")
    def boom_logged():
        raise RuntimeError("internal detail")

    response = client.get("/boom-logged")
    assert response.status_code == 500
    request_id = response.headers["X-Request-ID"]
    page = parse(response.get_data(as_text=True))
    assert page.find("code").text == request_id
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "unhandled error" in x)
    assert f"ERROR [{request_id}] wave_web.errors: unhandled error" in line


def test_an_htmx_500_fragment_names_the_request_too(app, client):
    @app.get("/boom-fragment")
    @requires("viewer")
    def boom_fragment():
        raise RuntimeError("internal detail")

    response = client.get("/boom-fragment", headers={"HX-Request": "true"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] in response.get_data(as_text=True)


def test_a_4xx_page_shows_no_reference(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "Reference" not in response.get_data(as_text=True)


def test_lines_outside_requests_say_so():
    record = logging.LogRecord("wave_web.x", logging.INFO, "", 0, "start", (), None)
    assert RequestIdFilter().filter(record) and record.request_id == "-"
    assert "start" in logging.Formatter(FORMAT).format(record)

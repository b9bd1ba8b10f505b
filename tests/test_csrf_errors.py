"""A refused CSRF token gets its own message: reload and submit again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.htmlparse import parse
from wave_web.errors import CSRF_MESSAGE
from wave_web.extensions import db as _db
from wave_web.models import Tag


def _tag_count(app) -> int:
    with app.app_context():
        return _db.session.scalar(sa.select(sa.func.count()).select_from(Tag))


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_missing_or_bad_csrf_token_shows_the_reload_message(csrf_app, token):
    client = csrf_app.test_client()
    data = {"name": "pilot"} | ({"csrf_token": token} if token else {})
    response = client.post("/tags/", data=data)
    assert response.status_code == 400
    page = parse(response.data)
    assert page.find("p", class_="lead").text == CSRF_MESSAGE
    assert _tag_count(csrf_app) == 0


def test_csrf_failure_of_an_htmx_request_is_a_fragment_with_the_message(csrf_app):
    client = csrf_app.test_client()
    response = client.post(
        "/tags/", data={"name": "pilot"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 400
    assert CSRF_MESSAGE in parse(response.data).find("div").text
    assert b"<html" not in response.data
    assert _tag_count(csrf_app) == 0


def test_token_from_another_session_is_refused_with_the_message(csrf_app):
    other = csrf_app.test_client()
    form = parse(other.get("/tags/").data).find("main").find("form", method="post")
    token = form.find("input", name="csrf_token").attrs["value"]
    response = csrf_app.test_client().post(
        "/tags/", data={"name": "pilot", "csrf_token": token}
    )
    assert response.status_code == 400
    assert CSRF_MESSAGE in response.get_data(as_text=True)

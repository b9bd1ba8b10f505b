"""Helpers for tests of the JSON API: keys, calls, a made type and experiment.

Bodies are sent as orjson bytes, never with the test client's `json=` (which sorts
keys: column order matters in schema definitions and rows). Paths without a leading
slash are under /api/v1.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import sqlalchemy as sa

V1 = "/api/v1"
NO_BODY = object()

# A type with one column of each type (short names), as in factories.EVERY_TYPE
EVERY_TYPE_SCHEMA = {
    "n": "INTEGER",
    "x": "FLOAT",
    "s": "STRING",
    "t": "TEXT",
    "b": "BOOLEAN",
    "d": "DATETIME",
    "j": "JSON",
}


def mint_key(
    app,
    role: str = "test",
    label: str | None = None,
    expires_at: dt.datetime | None = None,
) -> str:
    """The secret of a new API key with `role`."""
    from wave_web import accounts
    from wave_web.extensions import db

    with app.app_context():
        _key, secret = accounts.create_key(label or f"{role} key", role, expires_at)
        db.session.commit()
    return secret


def url(path: str) -> str:
    return path if path.startswith("/") else f"{V1}/{path}"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def call(
    client,
    method: str,
    path: str,
    key: str | None = None,
    body: Any = NO_BODY,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
):
    """One request as the clients send it: JSON content type, Bearer key, body bytes."""
    sent = {"Content-Type": "application/json"}
    if key is not None:
        sent.update(bearer(key))
    sent.update(headers or {})
    if body is not NO_BODY:
        kwargs["data"] = body if isinstance(body, bytes | str) else orjson.dumps(body)
    return client.open(url(path), method=method, headers=sent, **kwargs)


class Api:
    """A test's API caller: one key per role, minted on first use."""

    def __init__(self, app, client) -> None:
        self.app = app
        self.client = client
        self.keys: dict[str, str] = {}

    def key(self, role: str = "test") -> str:
        if role not in self.keys:
            self.keys[role] = mint_key(self.app, role)
        return self.keys[role]

    def call(self, method: str, path: str, body: Any = NO_BODY, role="test", **kw):
        key = kw.pop("key", None) or self.key(role)
        return call(self.client, method, path, key, body, **kw)

    def get(self, path: str, **kw):
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = NO_BODY, **kw):
        return self.call("POST", path, body, **kw)

    def put(self, path: str, body: Any = NO_BODY, **kw):
        return self.call("PUT", path, body, **kw)

    def delete(self, path: str, **kw):
        return self.call("DELETE", path, **kw)

    def ok(self, method: str, path: str, body: Any = NO_BODY, status=200, **kw):
        """The JSON of a call that must succeed with `status`."""
        r = self.call(method, path, body, **kw)
        assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
        return r.get_json()

    # Objects made through the API itself

    def make_type(
        self,
        name: str = "Stroop",
        table_name: str = "stroop",
        schema: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        body = {"name": name, "table_name": table_name, **fields}
        body["schema_definition"] = EVERY_TYPE_SCHEMA if schema is None else schema
        return self.ok("POST", "experiment-types/", body)

    def make_tag(self, name: str, description: str | None = None) -> dict[str, Any]:
        return self.ok("POST", "tags/", {"name": name, "description": description})

    def make_experiment(
        self,
        type_id: int,
        description: str = "pilot",
        tags: list[str] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        body = {"experiment_type_id": type_id, "description": description, **fields}
        if tags is not None:
            body["tags"] = tags
        return self.ok("POST", "experiments/", body)

    def post_row(
        self, experiment: str, participant: str = "P1", data=None, **kw
    ) -> dict[str, Any]:
        body = {"participant_id": participant, "data": data or {}}
        path = f"experiment-data/{experiment}/data/"
        return self.ok("POST", path, body, status=201, **kw)


def table_count(app, table_name: str, **where: Any) -> int:
    """Rows in a table of the database (reflected), optionally with column = value."""
    from wave_web.extensions import db

    with app.app_context():
        table = sa.Table(table_name, sa.MetaData(), autoload_with=db.engine)
        stmt = sa.select(sa.func.count()).select_from(table)
        for name, value in where.items():
            stmt = stmt.where(table.c[name] == value)
        with db.engine.connect() as conn:
            return conn.scalar(stmt)


def table_exists(app, table_name: str) -> bool:
    from wave_web.extensions import db

    with app.app_context():
        return sa.inspect(db.engine).has_table(table_name)


def problems(response) -> list[tuple[str, tuple]]:
    """(type, loc) of every entry of a 422 answer."""
    assert response.status_code == 422, response.get_data(as_text=True)
    return [(p["type"], tuple(p["loc"])) for p in response.get_json()["detail"]]


def detail(response, status: int) -> Any:
    """The `detail` of an error answer, after checking its status and JSON type."""
    assert response.status_code == status, (
        response.status_code,
        response.get_data(as_text=True),
    )
    assert response.mimetype == "application/json"
    return response.get_json()["detail"]

"""The API's request cycle: route table, key check, request shapes, JSON answers.

Every endpoint is declared once with `endpoint(...)`: its path, method, least role
and the pydantic models of its query and body. The same declarations validate the
traffic and produce the OpenAPI document (openapi.py). The order of checks is the
one of api-v1.md §1.7: route and method (Flask), key and role, request shape (all
problems at once, 422), then the view, which looks resources up (404) and applies
the business rules (400).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import orjson
import pydantic
from flask import Blueprint
from flask import Response
from flask import request

from wave_web.api import keys
from wave_web.errors import NotFound
from wave_web.errors import WaveError

API_VERSION = "1.0.0"
INT32_MAX = 2**31 - 1

bp = Blueprint("api", __name__, url_prefix="/api/v1")


class ApiError(Exception):
    """An answer other than success: `detail` is a message or a list of problems."""

    def __init__(
        self, status: int, detail: Any, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail if isinstance(detail, str) else "invalid request")
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def json_response(data: Any, status: int = 200, headers: dict | None = None):
    body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status=status, mimetype="application/json", headers=headers)


def error_response(exc: ApiError) -> Response:
    return json_response({"detail": exc.detail}, exc.status, exc.headers)


def problem(
    kind: str, loc: list[Any], msg: str, value: Any = None, ctx: dict | None = None
) -> dict[str, Any]:
    """One entry of a 422 list, in pydantic's (and FastAPI's) shape."""
    entry: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx:
        entry["ctx"] = ctx
    return entry


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def pydantic_problems(
    exc: pydantic.ValidationError, where: str
) -> list[dict[str, Any]]:
    found = []
    for error in exc.errors(include_url=False):
        entry = problem(
            error["type"],
            [where, *error["loc"]],
            error["msg"],
            _jsonable(error.get("input")),
            _jsonable(error["ctx"]) if error.get("ctx") else None,
        )
        found.append(entry)
    return found


# ----------------------------------------------------------------------
# Path parameters: taken as strings and checked here (a URL converter would 404)
# ----------------------------------------------------------------------

_DIGITS = re.compile(r"[+-]?\d+")


def path_int(name: str, raw: str, errors: list) -> int | None:
    """An integer path segment; None (a 404 later) when it cannot be an id."""
    if not _DIGITS.fullmatch(raw.strip()):
        errors.append(
            problem(
                "int_parsing",
                ["path", name],
                "Input should be a valid integer, unable to parse string as an integer",
                raw,
            )
        )
        return None
    value = int(raw)
    return value if 1 <= value <= INT32_MAX else 0


def path_uuid(name: str, raw: str, errors: list) -> uuid.UUID | None:
    try:
        if len(raw) not in (32, 36):
            raise ValueError
        return uuid.UUID(raw)
    except ValueError:
        errors.append(
            problem(
                "uuid_parsing",
                ["path", name],
                "Input should be a valid UUID, invalid character: expected an "
                "optional prefix of `urn:uuid:` followed by [0-9a-fA-F-]",
                raw,
            )
        )
        return None


PATH_KINDS: dict[str, Callable[[str, str, list], Any]] = {
    "int": path_int,
    "uuid": path_uuid,
    "str": lambda _name, raw, _errors: raw,
}


# ----------------------------------------------------------------------
# Bodies and query strings
# ----------------------------------------------------------------------


def _read_body() -> tuple[bool, Any, list]:
    """(present, value, problems) of the JSON body."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        return False, None, []
    mimetype = request.mimetype or ""
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        return (
            True,
            None,
            [
                problem(
                    "model_attributes_type",
                    ["body"],
                    f"Send the body as JSON with Content-Type: application/json "
                    f"(this request says {mimetype[:60]})",
                    None,
                )
            ],
        )
    try:
        return True, orjson.loads(raw), []
    except orjson.JSONDecodeError as exc:
        return (
            True,
            None,
            [
                problem(
                    "json_invalid",
                    ["body", exc.pos],
                    "JSON decode error",
                    {},
                    {"error": str(exc.msg)[:200]},
                )
            ],
        )


def parse_body(model: type[pydantic.BaseModel], errors: list) -> Any:
    present, value, problems = _read_body()
    if problems:
        errors.extend(problems)
        return None
    if not present:
        errors.append(problem("missing", ["body"], "Field required", None))
        return None
    if not isinstance(value, dict):
        errors.append(
            problem(
                "model_attributes_type",
                ["body"],
                "Input should be a valid dictionary or object to extract fields from",
                _jsonable(value),
            )
        )
        return None
    found: list[dict[str, Any]] = []
    result = None
    try:
        result = model.model_validate(value)
    except pydantic.ValidationError as exc:
        found = pydantic_problems(exc, "body")
    extra = getattr(model, "extra_problems", None)
    if extra is not None:
        reported = {tuple(p["loc"][:2]) for p in found}
        found += [p for p in extra(value) if tuple(p["loc"][:2]) not in reported]
    if found:
        errors.extend(found)
        return None
    return result


def parse_query(model: type[pydantic.BaseModel], errors: list) -> Any:
    data: dict[str, Any] = {}
    lists = getattr(model, "list_fields", ())
    for name in model.model_fields:
        if name in lists:
            values = request.args.getlist(name)
            if values:
                data[name] = values
        elif name in request.args:
            data[name] = request.args.get(name)
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        errors.extend(pydantic_problems(exc, "query"))
        return None


# ----------------------------------------------------------------------
# The route table
# ----------------------------------------------------------------------


@dataclass
class Route:
    rule: str  # Flask rule, e.g. /experiment-types/<experiment_type_id>
    method: str
    role: str  # least API role (keys.ROLES)
    view: Callable[..., Any]
    summary: str
    group: str
    path: dict[str, str] = field(default_factory=dict)  # name → int | uuid | str
    query: type[pydantic.BaseModel] | None = None
    body: type[pydantic.BaseModel] | None = None
    response: Any = None  # a model, [model], or a JSON schema dict
    status: int = 200
    errors: tuple[int, ...] = ()
    writes: bool = True
    bulk: bool = False  # builds many objects at once: the cyclic GC is paused

    @property
    def openapi_path(self) -> str:
        return "/api/v1" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", self.rule)


ROUTES: list[Route] = []


def endpoint(
    rule: str,
    method: str,
    role: str,
    *,
    summary: str,
    group: str,
    path: dict[str, str] | None = None,
    query: type[pydantic.BaseModel] | None = None,
    body: type[pydantic.BaseModel] | None = None,
    response: Any = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    writes: bool | None = None,
    bulk: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an API operation. The view gets path values, `query` and `body`.

    Collections are declared with a trailing slash and also served without it (and
    the other paths with one added), never through a redirect (api-v1.md §1.1).
    `writes` (default: not a GET) says whether the operation may write; a POST that
    only reads (a search) says False, so SQLite does not take its write lock for it.
    `bulk` says that a request builds a great many objects (a batch of 100,000 rows):
    Python's cyclic garbage collector is paused while it runs (gc_paused).
    """

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        route = Route(
            rule,
            method,
            role,
            view,
            summary,
            group,
            dict(path or {}),
            query,
            body,
            response,
            status,
            errors,
            method != "GET" if writes is None else writes,
            bulk,
        )
        ROUTES.append(route)
        wrapped = _wrap(route)
        name = view.__name__
        bp.add_url_rule(rule, name, wrapped, methods=[method], strict_slashes=False)
        if not rule.endswith("/"):
            bp.add_url_rule(rule + "/", name + "_slash", wrapped, methods=[method])
        return view

    return register


_paused = 0
_paused_lock = threading.Lock()


@contextlib.contextmanager
def gc_paused():
    """Python's cyclic garbage collector off while the block runs.

    Parsing and reading a large batch creates millions of objects that live until
    the answer; every collection pass walks all of them again, which made a third
    of a 100,000-row batch's time. Reference counting still frees everything (the
    objects of a batch hold no cycles). With threaded workers the collector is
    turned back on when the last paused request ends.
    """
    global _paused
    with _paused_lock:
        _paused += 1
        gc.disable()
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if not _paused:
                gc.enable()


def _wrap(route: Route) -> Callable[..., Any]:
    @functools.wraps(route.view)
    def view(**segments: str):
        if route.bulk:
            with gc_paused():
                return answer(segments)
        return answer(segments)

    def answer(segments: dict[str, str]):
        try:
            keys.authenticate(route.role, route.writes)
            errors: list[dict[str, Any]] = []
            kwargs: dict[str, Any] = {}
            for name, kind in route.path.items():
                kwargs[name] = PATH_KINDS[kind](name, segments[name], errors)
            if route.query is not None:
                kwargs["query"] = parse_query(route.query, errors)
            if route.body is not None:
                kwargs["body"] = parse_body(route.body, errors)
            if errors:
                raise ApiError(422, errors)
            result = route.view(**kwargs)
        except ApiError as exc:
            _rollback()
            return error_response(exc)
        except WaveError as exc:  # a domain rule: its message is safe to show
            _rollback()
            status = 404 if isinstance(exc, NotFound) else 400
            if exc.status >= 500:  # the server's own state (a full disk): say so
                status = exc.status
            return error_response(ApiError(status, exc.message))
        if isinstance(result, Response):
            return result
        return json_response(result, route.status)

    view.wave_api = True  # type: ignore[attr-defined]
    if not route.writes:
        view.wave_read_only = lambda: True  # type: ignore[attr-defined]
    return view


def _rollback() -> None:
    from wave_web.extensions import db

    db.session.rollback()

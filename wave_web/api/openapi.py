"""The OpenAPI 3.1 document, built from the route table and its pydantic models.

The models that validate a request are the ones described here, so the document
cannot drift from the traffic it describes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from wave_web.api import http
from wave_web.api.http import API_VERSION
from wave_web.api.http import json_response

REF = "#/components/schemas/{model}"
ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERROR = {
    "type": "object",
    "properties": {
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                    "input": {},
                    "ctx": {"type": "object"},
                },
                "required": ["type", "loc", "msg"],
            },
        }
    },
    "required": ["detail"],
}
ERROR_TEXT = {
    400: "A rule was broken (the detail says which)",
    401: "No key, or an unknown, revoked or expired one",
    403: "The key's role is too low for this operation",
    404: "Not found",
    422: "The request does not have the declared shape",
}
PATH_SCHEMAS = {
    "int": {"type": "integer"},
    "uuid": {"type": "string", "format": "uuid"},
    "str": {"type": "string"},
}


def _models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for route in http.ROUTES:
        for model in (route.query, route.body, _response_model(route.response)):
            if model is not None and model not in found:
                found.append(model)
    return found


def _response_model(response: Any) -> type[BaseModel] | None:
    if isinstance(response, list):
        return response[0]
    return response if isinstance(response, type) else None


def _response_schema(response: Any) -> dict[str, Any]:
    if isinstance(response, list):
        return {
            "type": "array",
            "items": {"$ref": REF.format(model=response[0].__name__)},
        }
    if isinstance(response, type):
        return {"$ref": REF.format(model=response.__name__)}
    return {}


def _query_parameters(model: type[BaseModel], components: dict) -> list[dict]:
    schema = components[model.__name__]
    lists = getattr(model, "list_fields", ())
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": name in schema.get("required", []),
                "schema": prop,
                **({"style": "form", "explode": True} if name in lists else {}),
            }
        )
    return parameters


def document() -> dict[str, Any]:
    """The whole OpenAPI document of /api/v1."""
    models = _models()
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    components: dict[str, Any] = dict(top.get("$defs", {}))
    components["Error"] = ERROR
    components["ValidationError"] = VALIDATION_ERROR
    paths: dict[str, dict[str, Any]] = {}
    for route in http.ROUTES:
        operation: dict[str, Any] = {
            "operationId": route.view.__name__,
            "summary": route.summary,
            "tags": [route.group],
            "security": [{"bearer": []}],
            "description": f"Least key role: {route.role}.",
            "parameters": [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": PATH_SCHEMAS[kind],
                }
                for name, kind in route.path.items()
            ],
            "responses": {
                str(route.status): {
                    "description": "Success",
                    "content": {
                        "application/json": {"schema": _response_schema(route.response)}
                    },
                },
                "401": _error(401),
                "403": _error(403),
            },
        }
        if route.query is not None:
            operation["parameters"] += _query_parameters(route.query, components)
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": REF.format(model=route.body.__name__)}
                    }
                },
            }
        elif getattr(route.view, "openapi_request_body", None):  # a file upload
            operation["requestBody"] = route.view.openapi_request_body
        for status in route.errors:
            operation["responses"][str(status)] = _error(status)
        operation["responses"].update(getattr(route.view, "openapi_responses", {}))
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wave_web JSON API",
            "version": API_VERSION,
            "description": (
                "Wire-compatible with the WAVE client libraries. Authenticate with "
                "`Authorization: Bearer <API key>`; keys are made by an admin on the "
                "API keys page."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _error(status: int) -> dict[str, Any]:
    schema = "ValidationError" if status == 422 else "Error"
    return {
        "description": ERROR_TEXT.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": REF.format(model=schema)}}},
    }


_cached: dict[str, Any] = {}


def _openapi_view():
    if "doc" not in _cached:
        _cached["doc"] = document()
    return json_response(_cached["doc"])


_openapi_view.wave_api = True  # type: ignore[attr-defined]
http.bp.add_url_rule("/openapi.json", "openapi", _openapi_view, methods=["GET"])

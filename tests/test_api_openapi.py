"""GET /api/v1/openapi.json: valid OpenAPI 3.1, every route of api-v1.md, each
operation with its security, responses and models; answers of real requests match
the schemas the document declares. Both databases.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator import validate
from tests.api_helpers import Api
from tests.api_helpers import call
from wave_web.api import http

DOC = "/api/v1/openapi.json"
ROWS = "/api/v1/experiment-data/{experiment_id}/data"
# The 31 operations on 19 paths of api-v1.md (its appendix), by (method, path)
SPEC = {
    ("POST", "/api/v1/experiment-types/"),
    ("GET", "/api/v1/experiment-types/"),
    ("GET", "/api/v1/experiment-types/{experiment_type_id}"),
    ("PUT", "/api/v1/experiment-types/{experiment_type_id}"),
    ("DELETE", "/api/v1/experiment-types/{experiment_type_id}"),
    ("GET", "/api/v1/experiment-types/name/{experiment_type_name}/columns"),
    ("POST", "/api/v1/tags/"),
    ("GET", "/api/v1/tags/"),
    ("GET", "/api/v1/tags/{tag_id}"),
    ("PUT", "/api/v1/tags/{tag_id}"),
    ("DELETE", "/api/v1/tags/{tag_id}"),
    ("POST", "/api/v1/experiments/"),
    ("GET", "/api/v1/experiments/"),
    ("GET", "/api/v1/experiments/{experiment_uuid}"),
    ("PUT", "/api/v1/experiments/{experiment_uuid}"),
    ("DELETE", "/api/v1/experiments/{experiment_uuid}"),
    ("GET", "/api/v1/experiments/{experiment_uuid}/columns"),
    ("POST", ROWS + "/"),
    ("GET", ROWS + "/"),
    ("GET", ROWS + "/count"),
    ("GET", ROWS + "/columns"),
    ("GET", ROWS + "/row/{row_id}"),
    ("PUT", ROWS + "/row/{row_id}"),
    ("DELETE", ROWS + "/row/{row_id}"),
    ("POST", ROWS + "/query"),
    ("POST", "/api/v1/search/experiments/by-tags"),
    ("POST", "/api/v1/search/experiment-types/by-description"),
    ("POST", "/api/v1/search/tags/by-name"),
    ("POST", "/api/v1/search/experiments/by-description-and-type"),
    ("POST", "/api/v1/search/experiments/advanced"),
    ("POST", "/api/v1/search/experiment-data/by-tags"),
}
# Ours: the batch (§9.9), the CSV upload and the state of the import it started
EXTENSIONS = {
    ("POST", ROWS + "/batch"),
    ("POST", ROWS + "/upload"),
    ("GET", "/api/v1/imports/{job_id}"),
}
# Least role per operation (api-v1.md §2.2); the rest need a researcher
EXPERIMENTEE = {("POST", ROWS + "/"), ("POST", ROWS + "/batch")}
# Answered 201 (rows); every other success is a 200, creates of types included
CREATED = {("POST", ROWS + "/"), ("POST", ROWS + "/batch"), ("POST", ROWS + "/upload")}
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
def document(client) -> dict[str, Any]:
    response = client.get(DOC)
    assert response.status_code == 200
    return response.get_json()


def operations(document) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def resolve(document, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def refs(node: Any):
    """Every $ref below a node of the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_the_spec_list_has_31_operations_on_19_paths():
    assert len(SPEC) == 31
    assert len({path for _method, path in SPEC}) == 19


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)  # raises on any error


def test_document_lists_every_route_of_the_spec_and_our_extensions(document):
    assert set(operations(document)) == SPEC | EXTENSIONS


def test_document_describes_the_route_table_the_traffic_goes_through(document):
    table = {(route.method, route.openapi_path) for route in http.ROUTES}
    assert table == set(operations(document))


def test_every_reference_resolves(document):
    for ref in refs(document):
        assert resolve(document, ref) is not None, ref


def test_operation_ids_are_unique_and_summaries_present(document):
    found = operations(document).values()
    ids = [op["operationId"] for op in found]
    assert len(ids) == len(set(ids))
    assert all(op["summary"] and op["tags"] for op in found)


def test_every_operation_requires_the_bearer_key(document):
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert scheme == {"type": "http", "scheme": "bearer"}
    for key, op in operations(document).items():
        assert op["security"] == [{"bearer": []}], key
        assert {"401", "403"} <= set(op["responses"]), key


def test_every_operation_declares_its_least_role(document):
    for key, op in operations(document).items():
        if key in EXPERIMENTEE:
            role = "experimentee"
        elif key[0] == "DELETE":
            role = "admin"
        else:
            role = "researcher"
        assert op["description"] == f"Least key role: {role}.", key


def success(op) -> tuple[str, dict[str, Any]]:
    codes = [code for code in op["responses"] if code.startswith("2")]
    first = sorted(codes)[0]
    return first, op["responses"][first]


def test_every_operation_has_a_json_success_answer_with_a_model(document):
    for key, op in operations(document).items():
        code, answer = success(op)
        schema = answer["content"]["application/json"]["schema"]
        found = list(refs(schema))
        assert found, key  # a model, or an array of one
        for ref in found:
            assert ref.startswith("#/components/schemas/"), key
        assert code == ("201" if key in CREATED else "200"), key


def test_every_error_answer_has_the_detail_shape(document):
    for key, op in operations(document).items():
        for code, answer in op["responses"].items():
            if code.startswith("2"):
                continue
            schema = answer["content"]["application/json"]["schema"]
            model = "ValidationError" if code == "422" else "Error"
            assert schema == {"$ref": f"#/components/schemas/{model}"}, (key, code)


def test_every_body_and_path_parameter_is_declared(document):
    for (method, path), op in operations(document).items():
        parameters = op.get("parameters", [])
        declared = {p["name"] for p in parameters if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), path
        checked = [  # parameters a request can get wrong: a 422
            p
            for p in parameters
            if p["in"] == "query" or p["schema"] != {"type": "string"}
        ]
        if checked or "requestBody" in op:
            assert "422" in op["responses"], path
        if method in ("POST", "PUT"):
            body = op["requestBody"]
            assert body["required"] is True, path
            for media in body["content"].values():
                assert media["schema"], path
        else:
            assert "requestBody" not in op, path


def test_json_bodies_refer_to_the_validating_models(document):
    schemas = document["components"]["schemas"]
    for route in http.ROUTES:
        if route.body is None:
            continue
        op = operations(document)[(route.method, route.openapi_path)]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{route.body.__name__}"
        model = route.body.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        assert set(schemas[route.body.__name__]["properties"]) == set(
            model["properties"]
        )


def test_required_fields_of_a_row_are_required_in_the_document(document):
    row = document["components"]["schemas"]["RowCreate"]
    assert set(row["required"]) == {"participant_id", "data"}
    batch = document["components"]["schemas"]["RowBatch"]
    assert batch["properties"]["rows"]["minItems"] == 1


def test_paging_bounds_are_in_the_document(document):
    op = operations(document)[("GET", "/api/v1/tags/")]
    limit = next(p for p in op["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    tags = operations(document)[("GET", "/api/v1/experiments/")]["parameters"]
    repeated = next(p for p in tags if p["name"] == "tags")
    assert repeated["explode"] is True


def test_upload_declares_the_file_field_the_csv_body_and_its_202(document):
    op = operations(document)[("POST", ROWS + "/upload")]
    content = op["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["required"] == ["file"]
    assert "text/csv" in content
    assert {"201", "202", "400", "404", "422"} <= set(op["responses"])


def test_document_is_served_without_a_key_with_the_version_header(client):
    response = client.get(DOC, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["X-WAVE-API-Version"] == "1.0.0"
    assert "X-WAVE-API-Version" in response.headers["Access-Control-Expose-Headers"]
    assert response.get_json()["info"]["version"] == "1.0.0"


def test_document_other_methods_are_refused_as_json(client):
    response = client.post(DOC)
    assert response.status_code == 405
    assert response.get_json() == {"detail": "Method Not Allowed"}
    assert response.headers["X-WAVE-API-Version"] == "1.0.0"


# ----------------------------------------------------------------------
# Real answers match the schemas the document declares
# ----------------------------------------------------------------------


def check(document, key: tuple[str, str], response) -> None:
    op = operations(document)[key]
    answer = op["responses"][str(response.status_code)]
    schema = dict(answer["content"]["application/json"]["schema"])
    schema["components"] = document["components"]
    jsonschema.validate(response.get_json(), schema)


def test_answers_of_a_client_flow_match_their_declared_schemas(app, client, document):
    api = Api(app, client)
    xtype = api.call(
        "POST",
        "experiment-types/",
        {
            "name": "Stroop",
            "table_name": "stroop",
            "schema_definition": {"rt": "FLOAT"},
        },
    )
    check(document, ("POST", "/api/v1/experiment-types/"), xtype)
    type_id = xtype.get_json()["id"]
    check(document, ("POST", "/api/v1/tags/"), api.post("tags/", {"name": "pilot"}))
    made = api.post("experiments/", {"experiment_type_id": type_id, "tags": ["pilot"]})
    check(document, ("POST", "/api/v1/experiments/"), made)  # a 422: no description
    made = api.post(
        "experiments/",
        {"experiment_type_id": type_id, "description": "x", "tags": ["pilot"]},
    )
    check(document, ("POST", "/api/v1/experiments/"), made)
    rows = f"experiment-data/{made.get_json()['uuid']}/data"
    row = api.post(rows + "/", {"participant_id": "P1", "data": {"rt": 0.5}})
    check(document, ("POST", ROWS + "/"), row)
    bad = api.post(rows + "/", {"participant_id": "P1", "data": {"rt": "fast"}})
    check(document, ("POST", ROWS + "/"), bad)  # a 400
    batch = api.post(rows + "/batch", {"rows": [{"participant_id": "P2", "data": {}}]})
    check(document, ("POST", ROWS + "/batch"), batch)
    for path, key in (
        (rows + "/", ("GET", ROWS + "/")),
        (rows + "/count", ("GET", ROWS + "/count")),
        (rows + "/columns", ("GET", ROWS + "/columns")),
        ("experiment-types/", ("GET", "/api/v1/experiment-types/")),
        ("experiments/", ("GET", "/api/v1/experiments/")),
        ("tags/", ("GET", "/api/v1/tags/")),
        (
            "experiment-types/9",
            ("GET", "/api/v1/experiment-types/{experiment_type_id}"),
        ),
    ):
        check(document, key, api.get(path))
    unauthenticated = call(client, "GET", "tags/")
    check(document, ("GET", "/api/v1/tags/"), unauthenticated)
    refused = api.delete(f"{rows}/row/1", role="researcher")
    assert refused.status_code == 403
    check(document, ("DELETE", ROWS + "/row/{row_id}"), refused)
    deleted = api.delete(f"{rows}/row/1")
    check(document, ("DELETE", ROWS + "/row/{row_id}"), deleted)

"""Property-based run over the OpenAPI document (schemathesis, in-process WSGI).

For every operation of /api/v1/openapi.json, requests generated from its declared
shapes, valid ones and broken ones, are sent with a key of the highest role to an
app holding a type with a column of each type, a tag, an experiment and rows. Half
of the cases name those objects in the path, so the views are reached, not only
their 404s. No answer may be a 5xx, and every answer must have a documented status,
a JSON content type and the declared schema. Deletes run last, so the other
operations find the objects. Bounded (`EXAMPLES` per operation and mode) to stay
well under a minute per database.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import content_type_conformance
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.specs.openapi.checks import status_code_conformance
from tests.api_helpers import EVERY_TYPE_SCHEMA
from tests.api_helpers import Api
from tests.api_helpers import problems
from tests.conftest import close_app_with_jobs
from tests.conftest import make_app

EXAMPLES = 12  # per operation and generation mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def app(database_url, tmp_path):
    app = make_app(database_url, tmp_path, WAVE_UPLOAD_DIR=str(tmp_path / "uploads"))
    yield app
    close_app_with_jobs(app)  # generated uploads start import jobs


@pytest.fixture
def known(app, client) -> dict[str, object]:
    """Path values that name real objects: a type, a tag, an experiment, a row."""
    api = Api(app, client)
    xtype = api.make_type("Stroop", "stroop", EVERY_TYPE_SCHEMA)
    tag = api.make_tag("pilot")
    experiment = api.make_experiment(xtype["id"], "pilot run", ["pilot"])["uuid"]
    row = api.post_row(experiment, "P1", {"n": 1, "x": 0.5, "s": "a", "b": True})
    api.post_row(experiment, "P2", {"d": "2026-01-02T03:04:05Z", "j": {"a": [1]}})
    return {
        "experiment_type_id": xtype["id"],
        "experiment_type_name": xtype["name"],
        "tag_id": tag["id"],
        "experiment_uuid": experiment,
        "experiment_id": experiment,
        "row_id": row["id"],
        "key": api.key("test"),
    }


def operations(schema):
    found = [result.ok() for result in schema.get_all_operations()]
    return sorted(found, key=lambda op: (op.method.upper() == "DELETE", op.label))


def run_operation(operation, client, known, mode: GenerationMode) -> None:
    headers = {"Authorization": f"Bearer {known['key']}"}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
    def fuzz(case, real):
        if real and case.path_parameters:
            case.path_parameters = {
                name: known.get(name, value)
                for name, value in case.path_parameters.items()
            }
        case.call_and_validate(session=client, headers=headers, checks=CHECKS)

    fuzz()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_get_documented_answers_never_a_5xx(app, known, mode):
    client = app.test_client(user=None)  # keys only: no session cookie
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    found = operations(schema)
    assert len(found) == 34
    failures = []
    for operation in found:
        try:
            run_operation(operation, client, known, mode)
        except (Exception, FailureGroup) as exc:  # try all operations, report all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


# ----------------------------------------------------------------------
# What the run found (500s, fixed): kept as plain regression tests
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "experiment-types/?skip={n}",
        "tags/?skip={n}",
        "experiments/?skip={n}",
        "experiment-data/{experiment}/data/?offset={n}",
    ],
)
@pytest.mark.parametrize("n", [2**63 - 1, 2**63, 2**70])
def test_list_offset_beyond_64_bits_is_an_empty_page(app, client, known, path, n):
    api = Api(app, client)
    url = path.format(n=n, experiment=known["experiment_uuid"])
    assert api.ok("GET", url) == []


def test_data_query_offset_beyond_64_bits_is_an_empty_page(app, client, known):
    api = Api(app, client)
    url = f"experiment-data/{known['experiment_uuid']}/data/query"
    assert api.ok("POST", url, {"offset": 2**63}) == []
    # a JSON number past 64 bits is read as a float, no integer: a 422, never a 500
    too_big = api.post(url, f'{{"offset": {2**70}}}')
    assert problems(too_big) == [("int_parsing_size", ("body", "offset"))]


@pytest.mark.parametrize("type_id", [-1, 2**31, 2**63, 2**70])
def test_experiments_of_a_type_id_no_type_can_have_are_none(
    app, client, known, type_id
):
    api = Api(app, client)
    assert api.ok("GET", f"experiments/?experiment_type_id={type_id}") == []
    real = known["experiment_type_id"]
    assert len(api.ok("GET", f"experiments/?experiment_type_id={real}")) == 1

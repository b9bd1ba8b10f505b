"""CSV upload into an experiment by API (the one-step import) and the job's status.

POST /api/v1/experiment-data/<uuid>/data/upload runs the web's one-step import
(csv_io.jobs.start with confirm) and answers 201, 400 (nothing written) or 202;
GET /api/v1/imports/<job_id> tells a job's state. Both databases.
"""

from __future__ import annotations

import io
import threading

import pytest
import sqlalchemy as sa
from tests.api_helpers import Api
from tests.api_helpers import bearer
from tests.api_helpers import detail
from tests.conftest import close_app_with_jobs
from tests.conftest import make_app
from tests.uploads_kept import kept_uploads
from wave_web.api import uploads
from wave_web.csv_io import jobs
from wave_web.extensions import db as _db
from wave_web.models import AuditEntry
from wave_web.models import ImportJob

WAIT = 30
API_BODY_LIMIT = 4096  # the JSON routes' limit here; uploads may be larger
UPLOAD_LIMIT = 256 * 1024  # MAX_CONTENT_LENGTH here
SCHEMA = {"rt": "FLOAT", "ok": "BOOLEAN", "word": "STRING"}
GOOD = "participant_id,rt,ok,word\nP1,0.5,true,red\nP2,0.75,false,blue\n"


@pytest.fixture
def app(database_url, tmp_path):
    app = make_app(
        database_url,
        tmp_path,
        WAVE_UPLOAD_DIR=str(tmp_path / "uploads"),
        WAVE_API_MAX_BODY_BYTES=API_BODY_LIMIT,
        MAX_CONTENT_LENGTH=UPLOAD_LIMIT,
    )
    yield app
    close_app_with_jobs(app)


@pytest.fixture
def api(app, client):
    return Api(app, client)


@pytest.fixture
def experiment(api):
    xtype = api.make_type("Stroop", "stroop", SCHEMA)
    return api.make_experiment(xtype["id"])["uuid"]


def upload_url(experiment: str) -> str:
    return f"/api/v1/experiment-data/{experiment}/data/upload"


def post_file(client, key, experiment, text, name="data.csv", **query):
    body = text.encode() if isinstance(text, str) else text
    return client.post(
        upload_url(experiment),
        headers=bearer(key),
        data={"file": (io.BytesIO(body), name)},
        content_type="multipart/form-data",
        query_string=query,
    )


def post_raw(client, key, experiment, body, content_type="text/csv", **query):
    return client.post(
        upload_url(experiment),
        headers=bearer(key) | {"Content-Type": content_type},
        data=body,
        query_string=query,
    )


def rows_of(api, experiment) -> list[dict]:
    found = api.ok("GET", f"experiment-data/{experiment}/data/?limit=1000")
    return sorted(found, key=lambda r: r["id"])


def stored_files(app) -> list[str]:
    return kept_uploads(app)


def job_rows(app) -> list[ImportJob]:
    with app.app_context():
        return list(_db.session.scalars(sa.select(ImportJob)))


# ----------------------------------------------------------------------
# Success
# ----------------------------------------------------------------------


def test_a_multipart_csv_is_imported_in_one_step_and_answers_201(app, api, experiment):
    key = api.key("researcher")
    r = post_file(api.client, key, experiment, GOOD, name="session 1.csv")
    assert r.status_code == 201, r.get_data(as_text=True)
    body = r.get_json()
    assert body["state"] == "succeeded"
    assert (body["rows"], body["written"], body["problem_count"]) == (2, 2, 0)
    assert body["message"] == "Imported 2 rows."
    assert body["file_name"] == "session 1.csv"
    assert body["experiment_id"] == experiment
    assert body["status_url"] == f"/api/v1/imports/{body['job_id']}"
    rows = rows_of(api, experiment)
    assert [(r["participant_id"], r["rt"], r["ok"], r["word"]) for r in rows] == [
        ("P1", 0.5, True, "red"),
        ("P2", 0.75, False, "blue"),
    ]
    assert stored_files(app) == []  # the job's file is gone once it has finished


def test_a_raw_text_csv_body_is_imported_with_the_scripts_options(api, experiment):
    key = api.key("researcher")
    text = "subject,rt,ok,word\nP7,NA,true,x\nP8,1.5,false,y\n"
    r = post_raw(
        api.client,
        key,
        experiment,
        text.encode(),
        mapping='{"subject": "participant_id"}',
        missing_token="NA",
        filename="trial.csv",
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.get_json()["file_name"] == "trial.csv"
    rows = rows_of(api, experiment)
    assert [(r["participant_id"], r["rt"]) for r in rows] == [("P7", None), ("P8", 1.5)]


def test_an_xlsx_workbook_body_is_imported(api, experiment):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["participant_id", "rt", "ok", "word"])
    sheet.append(["P1", 0.25, True, "w"])
    buffer = io.BytesIO()
    book.save(buffer)
    r = post_raw(
        api.client,
        api.key("researcher"),
        experiment,
        buffer.getvalue(),
        content_type=uploads.XLSX_TYPES[0],
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.get_json()["file_name"] == "upload.xlsx"
    assert [row["rt"] for row in rows_of(api, experiment)] == [0.25]


def test_the_upload_is_served_with_a_trailing_slash_too(api, experiment):
    r = api.client.post(
        upload_url(experiment) + "/",
        headers=bearer(api.key("researcher")) | {"Content-Type": "text/csv"},
        data=GOOD.encode(),
    )
    assert r.status_code == 201, r.get_data(as_text=True)


def test_the_import_is_audited_with_the_key_that_sent_it(app, api, experiment):
    r = post_file(api.client, api.key("researcher"), experiment, GOOD)
    assert r.status_code == 201
    with app.app_context():
        entry = _db.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "rows.import")
        ).one()
        assert entry.actor.startswith("API key ")
        assert "“researcher key” (researcher)" in entry.actor


def test_the_api_body_limit_does_not_apply_but_the_upload_limit_does(api, experiment):
    key = api.key("researcher")
    many = GOOD + "".join(f"P{i},{i / 10},true,word{i}\n" for i in range(400))
    assert API_BODY_LIMIT < len(many) < UPLOAD_LIMIT
    r = post_raw(api.client, key, experiment, many.encode())
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.get_json()["written"] == 402
    # a JSON route of the same size is refused by the API's own limit
    big = api.post(f"experiment-data/{experiment}/data/", "x" * API_BODY_LIMIT * 2)
    assert big.status_code == 413
    # and an upload beyond MAX_CONTENT_LENGTH is refused as JSON, nothing written
    huge = post_file(api.client, key, experiment, GOOD + "P9,1,true,w\n" * 30_000)
    assert huge.status_code == 413
    assert huge.mimetype == "application/json"
    assert "larger than this server accepts" in huge.get_json()["detail"]
    assert len(rows_of(api, experiment)) == 402


# ----------------------------------------------------------------------
# Refused files: 400 naming where and why, nothing written
# ----------------------------------------------------------------------


def test_a_refused_file_names_row_column_value_and_rule_and_writes_nothing(
    app, api, experiment
):
    text = "participant_id,rt,ok,word\nP1,0.5,true,a\nP2,abc,maybe,b\n"
    r = post_file(api.client, api.key("researcher"), experiment, text)
    message = detail(r, 400)
    assert message.startswith("Nothing was imported: 2 problems found.")
    assert "Row 2, line 3, column rt: “abc”" in message
    assert "Row 2, line 3, column ok: “maybe”" in message
    assert "expected true or false" in message
    assert rows_of(api, experiment) == []
    assert [j.state for j in job_rows(app)] == ["failed"]
    assert stored_files(app) == []


def test_a_file_with_an_unknown_column_is_refused_with_its_name(api, experiment):
    text = "participant_id,rt,colour\nP1,0.5,red\n"
    r = post_raw(api.client, api.key("researcher"), experiment, text.encode())
    assert "colour" in detail(r, 400)
    assert rows_of(api, experiment) == []


def test_many_problems_are_listed_up_to_a_bound_then_counted(api, experiment):
    text = "participant_id,rt\n" + "".join(f"P{i},bad{i}\n" for i in range(60))
    r = post_raw(api.client, api.key("researcher"), experiment, text.encode())
    message = detail(r, 400)
    assert message.count("column rt") == uploads.SHOWN_PROBLEMS
    assert "and 40 more" in message
    assert rows_of(api, experiment) == []


def test_bad_options_are_refused_before_anything_is_stored(app, api, experiment):
    key = api.key("researcher")
    r = post_file(api.client, key, experiment, GOOD, mode="merge", header_line="0")
    assert sorted(p["loc"][1] for p in detail(r, 422)) == ["header_line", "mode"]
    r = post_file(api.client, key, experiment, GOOD, mapping="[1, 2]")
    assert "mapping must be a JSON object" in detail(r, 400)
    r = post_file(api.client, key, experiment, GOOD, missing_token="n/a")
    assert "is not one of the offered missing-value spellings" in detail(r, 400)
    assert job_rows(app) == [] and stored_files(app) == []


# ----------------------------------------------------------------------
# No file, roles, not found
# ----------------------------------------------------------------------


def test_a_request_without_a_file_is_a_400(app, api, experiment):
    key = api.key("researcher")
    empty_form = api.client.post(
        upload_url(experiment),
        headers=bearer(key),
        data={"other": "x"},
        content_type="multipart/form-data",
    )
    assert detail(empty_form, 400) == uploads.NO_FILE
    as_json = api.post(f"experiment-data/{experiment}/data/upload", {"rows": []})
    assert detail(as_json, 400) == uploads.NO_FILE
    no_body = post_raw(api.client, key, experiment, b"")
    assert detail(no_body, 400) == uploads.NO_FILE
    empty_file = post_file(api.client, key, experiment, b"")
    assert "is empty (0 bytes)" in detail(empty_file, 400)
    assert job_rows(app) == [] and stored_files(app) == []


@pytest.mark.parametrize("role", ["researcher", "admin", "test"])
def test_researchers_and_above_may_upload(api, experiment, role):
    r = post_file(api.client, api.key(role), experiment, GOOD)
    assert r.status_code == 201, r.get_data(as_text=True)


def test_an_experimentee_key_or_no_key_may_not_upload(app, api, experiment):
    r = post_file(api.client, api.key("experimentee"), experiment, GOOD)
    assert detail(r, 403) == (
        "Authorization failed: Insufficient permissions. "
        "Required: researcher, Found: experimentee"
    )
    anonymous = api.client.post(
        upload_url(experiment),
        data={"file": (io.BytesIO(GOOD.encode()), "a.csv")},
        content_type="multipart/form-data",
    )
    assert detail(anonymous, 401) == "Not authenticated"
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    wrong = post_file(api.client, "wave_nope", experiment, GOOD)
    assert detail(wrong, 401).startswith("Authentication failed")
    assert job_rows(app) == [] and stored_files(app) == []
    assert rows_of(api, experiment) == []


def test_an_unknown_or_malformed_experiment_is_404_or_422(app, api):
    key = api.key("researcher")
    missing = post_file(api.client, key, "0" * 32, GOOD)
    assert detail(missing, 404) == "Experiment not found"
    malformed = post_file(api.client, key, "not-a-uuid", GOOD)
    assert detail(malformed, 422)[0]["type"] == "uuid_parsing"
    assert job_rows(app) == [] and stored_files(app) == []


# ----------------------------------------------------------------------
# The job's status
# ----------------------------------------------------------------------


def test_the_status_of_an_import_is_its_job_as_json(api, experiment):
    made = post_file(api.client, api.key("researcher"), experiment, GOOD).get_json()
    status = api.ok("GET", made["status_url"], role="researcher")
    assert status == made
    assert set(status) == set(uploads.ImportJobOut.model_fields)


def test_the_status_of_a_refused_import_lists_its_problems(app, api, experiment):
    text = "participant_id,rt\nP1,abc\n"
    post_raw(api.client, api.key("researcher"), experiment, text.encode())
    (job,) = job_rows(app)
    status = api.ok("GET", f"imports/{job.uuid}")
    assert (status["state"], status["written"], status["problem_count"]) == (
        "failed",
        0,
        1,
    )
    (problem,) = status["problems"]
    assert (problem["row"], problem["column"], problem["value"]) == (1, "rt", "abc")
    assert problem["rule"]


def test_the_status_endpoint_refuses_unknown_ids_and_low_roles(api, experiment):
    made = post_file(api.client, api.key("researcher"), experiment, GOOD).get_json()
    assert detail(api.get("imports/" + "0" * 32), 404) == "Import job not found"
    assert detail(api.get("imports/xyz"), 422)[0]["type"] == "uuid_parsing"
    low = api.get(made["status_url"], role="experimentee")
    assert detail(low, 403).endswith("Required: researcher, Found: experimentee")
    assert detail(api.client.get(made["status_url"]), 401) == "Not authenticated"


def test_an_import_still_running_answers_202_with_its_status_address(
    app, api, experiment, monkeypatch
):
    app.config["WAVE_IMPORT_SYNC_SECONDS"] = 0.01
    release = threading.Event()
    original = jobs.Live.progress

    def held(live, rows_done):
        if live.phase == "importing":
            assert release.wait(WAIT), "the test never released the import"
        return original(live, rows_done)

    monkeypatch.setattr(jobs.Live, "progress", held)
    try:
        r = post_file(api.client, api.key("researcher"), experiment, GOOD)
        assert r.status_code == 202, r.get_data(as_text=True)
        body = r.get_json()
        assert r.headers["Location"] == body["status_url"]
        # any state of a job still on its way (a busy machine may answer before the
        # check has even started)
        assert body["state"] in jobs.ACTIVE_STATES
        assert body["written"] == 0
    finally:
        release.set()
    assert jobs.wait_all(WAIT)
    status = api.ok("GET", body["status_url"])
    assert (status["state"], status["written"]) == ("succeeded", 2)
    assert len(rows_of(api, experiment)) == 2

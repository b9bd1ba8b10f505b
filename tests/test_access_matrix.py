"""Every route × role × method does what the declared matrix says; CSRF everywhere.

The matrices below are the one place a reviewer reads to see who may do what: web
pages by signed-in role (MATRIX), the JSON API by key role (API_MATRIX, api-v1.md
§2.2). A route added without a role declaration, or with a different one, fails
here. API routes take keys only: a signed-in browser is no key (401), and they are
exempt from CSRF because no cookie can act on them.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import url_for
from tests.api_helpers import mint_key
from wave_web.access import declared_role
from wave_web.api import http
from wave_web.api import keys
from wave_web.extensions import db as _db

MATRIX = {
    "static": "public",
    "auth.login": "public",
    "auth.setup": "public",
    "auth.logout": "viewer",
    "auth.password": "viewer",
    "pages.home": "viewer",
    "pages.api_docs": "public",
    "experiment_types.index": "viewer",
    "experiment_types.show": "viewer",
    "experiment_types.create": "researcher",
    "experiment_types.from_file": "researcher",
    "experiment_types.draft": "researcher",
    "experiment_types.update_draft": "researcher",
    "experiment_types.create_from_draft": "researcher",
    "experiment_types.discard_draft": "researcher",
    "experiment_types.check": "researcher",
    "experiment_types.edit": "researcher",
    "experiment_types.add_column": "researcher",
    "experiment_types.rename_column": "researcher",
    "experiment_types.set_nullable": "researcher",
    "experiment_types.describe_column": "researcher",
    "experiment_types.change_type": "researcher",
    "experiment_types.add_index": "researcher",
    "experiment_types.drop_column": "researcher",
    "experiment_types.delete": "admin",
    "experiments.index": "viewer",
    "experiments.show": "viewer",
    "experiments.create": "researcher",
    "experiments.edit": "researcher",
    "experiments.delete": "researcher",
    "tags.index": "viewer",
    "tags.create": "researcher",
    "tags.edit": "researcher",
    "tags.delete": "researcher",
    "data.type_rows": "viewer",
    "data.participants": "viewer",
    "data.participant": "viewer",
    "data.show_row": "viewer",
    "data.experiment_summary": "viewer",
    "data.type_summary": "viewer",
    "data.edit_row": "researcher",
    "data.update_row": "researcher",
    "data.create_row": "researcher",
    "data.delete_row": "researcher",
    "data.delete_selected": "researcher",
    "data.delete_matching": "researcher",
    "data.experiment_export": "viewer",
    "data.experiment_download": "viewer",
    "data.experiment_csv": "viewer",
    "data.experiment_zip": "viewer",
    "data.experiment_xlsx": "viewer",
    "data.experiment_json": "viewer",
    "data.type_export": "viewer",
    "data.type_download": "viewer",
    "data.type_csv": "viewer",
    "data.type_zip": "viewer",
    "data.type_xlsx": "viewer",
    "data.type_json": "viewer",
    "data.type_dictionary_json": "viewer",
    "data.type_dictionary_csv": "viewer",
    "data.type_template": "viewer",
    "data.import_upload": "researcher",
    "data.import_job": "researcher",
    "data.import_progress": "researcher",
    "data.import_recheck": "researcher",
    "data.import_confirm": "researcher",
    "data.import_cancel": "researcher",
    "data.import_offending": "researcher",
    "admin.users": "admin",
    "admin.create_user": "admin",
    "admin.edit_user": "admin",
    "admin.delete_user": "admin",
    "admin.keys": "admin",
    "admin.create_key": "admin",
    "admin.revoke_key": "admin",
    "admin.audit_log": "admin",
    "admin.audit_export": "admin",
}
# The JSON API: least key role of each operation ("public": no key). Routes other
# than the four collections are also served with a trailing slash: endpoint + "_slash".
API_MATRIX = {
    "api_service.health": "public",
    "api_service.version": "public",
    "api.openapi": "public",
    "api.create_type": "researcher",
    "api.list_types": "researcher",
    "api.get_type": "researcher",
    "api.update_type": "researcher",
    "api.delete_type": "admin",
    "api.type_columns": "researcher",
    "api.create_tag": "researcher",
    "api.list_tags": "researcher",
    "api.get_tag": "researcher",
    "api.update_tag": "researcher",
    "api.delete_tag": "admin",
    "api.create_experiment": "researcher",
    "api.list_experiments": "researcher",
    "api.get_experiment": "researcher",
    "api.update_experiment": "researcher",
    "api.delete_experiment": "admin",
    "api.experiment_columns": "researcher",
    "api.create_row": "experimentee",
    "api.create_rows": "experimentee",
    "api.list_rows": "researcher",
    "api.count_rows": "researcher",
    "api.data_columns": "researcher",
    "api.get_row": "researcher",
    "api.update_row": "researcher",
    "api.delete_row": "admin",
    "api.query_rows": "researcher",
    "api.upload_rows": "researcher",
    "api.import_status": "researcher",
    "api.search_experiments_by_tags": "researcher",
    "api.search_experiment_types": "researcher",
    "api.search_tags": "researcher",
    "api.search_experiments_by_description": "researcher",
    "api.search_experiments_advanced": "researcher",
    "api.search_experiment_data": "researcher",
}
API_ROLES = ("experimentee", "researcher", "admin", "test")
ROLES = ("viewer", "researcher", "admin")
RANK = {None: -1, "viewer": 0, "researcher": 1, "admin": 2}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
DUMMY = {
    "experiment_uuid": "00000000-0000-4000-8000-000000000000",
    "experiment_id": "00000000-0000-4000-8000-000000000000",
    "job_id": "00000000-0000-4000-8000-000000000003",
    "experiment_type_name": "nothing_here",
    "job_uuid": "00000000-0000-4000-8000-000000000001",
    "draft_uuid": "00000000-0000-4000-8000-000000000002",
    "name": "nothing_here",
    "participant_id": "P1",
    "filename": "app.css",
}


def routes(app):
    """(endpoint, method, url) for every rule, with values that name nothing."""
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            values = {arg: DUMMY.get(arg, 2147483646) for arg in rule.arguments}
            url = url_for(rule.endpoint, **values)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                found.append((rule.endpoint, method, url))
    return found


def is_api(app, endpoint: str) -> bool:
    """A view of the JSON API or its service routes: keys, never the session."""
    return getattr(app.view_functions.get(endpoint), "wave_api", False)


def api_role(app, endpoint: str) -> str:
    """The least key role the route table gives the view ("public": no key check)."""
    view = app.view_functions[endpoint]
    for route in http.ROUTES:
        if getattr(view, "__wrapped__", None) is route.view:
            return route.role
    return "public"


def api_needed(endpoint: str) -> str:
    return API_MATRIX[endpoint.removesuffix("_slash")]


def test_every_route_declares_the_role_of_the_matrix(app):
    with app.test_request_context():
        declared = {
            rule.endpoint: declared_role(rule.endpoint)
            for rule in app.url_map.iter_rules()
            if not is_api(app, rule.endpoint)
        }
    assert declared == MATRIX


def test_every_api_route_declares_the_key_role_of_the_matrix(app):
    api = {r.endpoint for r in app.url_map.iter_rules() if is_api(app, r.endpoint)}
    declared = {endpoint: api_role(app, endpoint) for endpoint in api}
    assert {e.removesuffix("_slash") for e in api} == set(API_MATRIX)
    assert declared == {endpoint: api_needed(endpoint) for endpoint in api}
    # every operation also answers with a trailing slash added or removed
    slashed = {e.removesuffix("_slash") for e in api if e.endswith("_slash")}
    assert slashed == {e for e in api if "_slash" not in e} - {
        "api_service.health",
        "api_service.version",
        "api.openapi",
        "api.create_type",
        "api.list_types",
        "api.create_tag",
        "api.list_tags",
        "api.create_experiment",
        "api.list_experiments",
        "api.create_row",
        "api.list_rows",
    }


def test_api_routes_carry_no_web_role(app):
    """An API view is the API's own: declaring a web role on it would be a mix-up."""
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if is_api(app, rule.endpoint):
                assert declared_role(rule.endpoint) is None, rule.endpoint


def test_each_role_gets_exactly_what_the_matrix_allows(app):
    # Signing out ends the role's shared test session: walk it last.
    walk = sorted(routes(app), key=lambda r: r[0] == "auth.logout")
    for endpoint, method, url in walk:
        if is_api(app, endpoint):
            continue  # keys, not sign-ins: the tests below
        needed = MATRIX[endpoint]
        for role in (None, *ROLES):
            client = app.test_client(user=role)
            response = client.open(url, method=method)
            where = f"{method} {url} as {role or 'signed out'} (needs {needed})"
            to_login = response.status_code == 302 and "/login" in response.headers.get(
                "Location", ""
            )
            if needed == "public":
                assert response.status_code != 403 and not to_login, where
            elif role is None:
                assert to_login, where
            elif RANK[role] < RANK[needed]:
                assert response.status_code == 403, where
            elif endpoint == "auth.logout":
                assert response.status_code == 302, where  # to the sign-in page
            else:
                assert response.status_code not in (401, 403) and not to_login, where


def api_routes(app):
    return [r for r in routes(app) if is_api(app, r[0])]


def test_each_key_role_gets_exactly_what_the_api_matrix_allows(app):
    secrets = {role: mint_key(app, role) for role in API_ROLES}
    client = app.test_client(user=None)
    walk = api_routes(app)
    assert len(walk) > 60  # 34 operations, most in two spellings, and the services
    for endpoint, method, url in walk:
        needed = api_needed(endpoint)
        for role in (None, *API_ROLES):
            headers = {"Content-Type": "application/json"}  # as the clients send
            if role is not None:
                headers["Authorization"] = f"Bearer {secrets[role]}"
            response = client.open(url, method=method, headers=headers)
            where = f"{method} {url} with {role or 'no'} key (needs {needed})"
            assert response.status_code < 500, where
            assert response.mimetype == "application/json", where
            if needed == "public":
                assert response.status_code not in (401, 403), where
            elif role is None:
                assert response.status_code == 401, where
                assert response.get_json() == {"detail": keys.NOT_AUTHENTICATED}
                assert response.headers["WWW-Authenticate"] == "Bearer", where
            elif keys.rank(role) < keys.rank(needed):
                assert response.status_code == 403, where
                assert response.get_json() == {
                    "detail": "Authorization failed: Insufficient permissions. "
                    f"Required: {needed}, Found: {role}"
                }, where
            else:
                assert response.status_code not in (401, 403), where


@pytest.mark.parametrize("role", ROLES)
def test_a_signed_in_browser_is_no_api_key(app, role):
    """The API never reads the session cookie: every keyed route answers 401."""
    client = app.test_client(user=role)
    for endpoint, method, url in api_routes(app):
        response = client.open(url, method=method)
        where = f"{method} {url} signed in as {role}"
        if api_needed(endpoint) == "public":
            assert response.status_code not in (401, 403), where
        else:
            assert response.status_code == 401, where
            assert response.get_json() == {"detail": keys.NOT_AUTHENTICATED}, where


def test_a_key_below_the_route_is_refused_before_its_body_is_read(app):
    """Order of checks (api-v1.md §1.7): 401/403 come before any 422."""
    experimentee = mint_key(app, "experimentee")
    client = app.test_client(user=None)
    for endpoint, method, url in api_routes(app):
        if method not in ("POST", "PUT") or api_needed(endpoint) == "public":
            continue
        broken = {"data": b"{not json", "content_type": "application/json"}
        assert client.open(url, method=method, **broken).status_code == 401, url
        if api_needed(endpoint) != "experimentee":
            response = client.open(
                url,
                method=method,
                headers={"Authorization": f"Bearer {experimentee}"},
                **broken,
            )
            assert response.status_code == 403, url


def test_refused_access_is_audited(app):
    response = app.test_client(user="viewer").post("/tags/", data={"name": "sneaky"})
    assert response.status_code == 403
    assert "needs the researcher role" in response.get_data(as_text=True)
    from wave_web.models import AuditEntry

    with app.app_context():
        entry = _db.session.query(AuditEntry).filter_by(action="access.refused").one()
        assert entry.actor == "viewer@example.org"
        assert entry.details == {"role": "viewer", "needed": "researcher"}


def test_signed_out_htmx_request_is_redirected_by_htmx(app):
    response = app.test_client(user=None).get("/tags/", headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert "/login" in response.headers["HX-Redirect"]


@pytest.fixture
def csrf_client(csrf_app):
    return csrf_app.test_client()


def test_every_state_changing_route_needs_the_csrf_token(csrf_app, csrf_client):
    unsafe = [
        r for r in routes(csrf_app) if r[1] in UNSAFE and not is_api(csrf_app, r[0])
    ]
    assert len(unsafe) > 20
    for _endpoint, method, url in unsafe:
        response = csrf_client.open(url, method=method, data={"name": "x"})
        assert response.status_code == 400, f"{method} {url}"
        assert b"form has expired" in response.data


def test_api_routes_need_a_key_not_a_csrf_token(csrf_app, csrf_client):
    """CSRF-exempt by design: a signed-in browser's cookie gets 401, never a form
    error, and a key alone (no token) gets past both checks."""
    unsafe = [r for r in api_routes(csrf_app) if r[1] in UNSAFE]
    assert len(unsafe) > 20
    key = mint_key(csrf_app, "test")
    for _endpoint, method, url in unsafe:
        response = csrf_client.open(url, method=method, data={"name": "x"})
        assert response.status_code == 401, f"{method} {url}"
        assert b"form has expired" not in response.data
        response = csrf_client.open(
            url,
            method=method,
            data=b"{}",
            headers={"Authorization": f"Bearer {key}"},
            content_type="application/json",
        )
        where = f"{method} {url} with a key"
        assert response.status_code not in (401, 403), where
        assert response.mimetype == "application/json", where
        assert b"form has expired" not in response.data, where


def test_no_get_changes_state(app, db):
    """Walking every GET route changes no table (exports only add audit entries)."""
    from tests.factories import make_experiment
    from tests.factories import make_rows
    from tests.factories import make_type

    xtype = make_type()
    experiment = make_experiment(xtype, "GET walk", tags=["pilot"])
    make_rows(xtype, experiment, [{"participant_id": "P1", "accuracy": 0.5}])

    def counts():
        _db.session.rollback()
        tables = [
            t
            for t in _db.metadata.sorted_tables
            if t.name not in ("audit_log", "alembic_version")
        ] + [sa.table(xtype.table_name)]
        return {
            t.name: _db.session.scalar(sa.select(sa.func.count()).select_from(t))
            for t in tables
        }

    key = mint_key(app, "test")  # API GETs with a key write only its last use
    before = counts()
    client = app.test_client()
    real = {
        "experiment_uuid": str(experiment.uuid),
        "experiment_id": str(experiment.uuid),
        "type_id": xtype.id,
        "experiment_type_id": xtype.id,
        "experiment_type_name": xtype.name,
        "tag_id": 1,
        "row_id": 1,
    }
    with app.test_request_context():
        urls = [
            url_for(
                rule.endpoint,
                **{a: real.get(a, DUMMY.get(a, 1)) for a in rule.arguments},
            )
            for rule in app.url_map.iter_rules()
            if "GET" in rule.methods and rule.endpoint != "static"
        ]
    for url in urls:
        assert client.get(url).status_code < 500, url
        if url.startswith("/api/"):
            response = client.get(url, headers={"Authorization": f"Bearer {key}"})
            assert response.status_code < 500, url
    assert counts() == before

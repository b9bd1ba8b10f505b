"""Every route × role × method does what the declared matrix says; CSRF everywhere.

The matrix below is the one place a reviewer reads to see who may do what. A route
added without a role declaration, or with a different one, fails here.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import url_for
from wave_web.access import declared_role
from wave_web.extensions import db as _db

MATRIX = {
    "static": "public",
    "auth.login": "public",
    "auth.setup": "public",
    "auth.logout": "viewer",
    "auth.password": "viewer",
    "pages.home": "viewer",
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
ROLES = ("viewer", "researcher", "admin")
RANK = {None: -1, "viewer": 0, "researcher": 1, "admin": 2}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
DUMMY = {
    "experiment_uuid": "00000000-0000-4000-8000-000000000000",
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


def test_every_route_declares_the_role_of_the_matrix(app):
    with app.test_request_context():
        declared = {
            rule.endpoint: declared_role(rule.endpoint)
            for rule in app.url_map.iter_rules()
        }
    assert declared == MATRIX


def test_each_role_gets_exactly_what_the_matrix_allows(app):
    # Signing out ends the role's shared test session: walk it last.
    walk = sorted(routes(app), key=lambda r: r[0] == "auth.logout")
    for endpoint, method, url in walk:
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
    unsafe = [r for r in routes(csrf_app) if r[1] in UNSAFE]
    assert len(unsafe) > 20
    for _endpoint, method, url in unsafe:
        response = csrf_client.open(url, method=method, data={"name": "x"})
        assert response.status_code == 400, f"{method} {url}"
        assert b"form has expired" in response.data


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

    before = counts()
    client = app.test_client()
    real = {
        "experiment_uuid": str(experiment.uuid),
        "type_id": xtype.id,
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
    assert counts() == before

"""Menus and buttons offer only what the signed-in role may do (issue 6 §3).

Two kinds of checks, for a viewer, a researcher and an admin on the main pages:
- every link, form and htmx address on a page leads to a route whose declared role
  (`@requires`) the user has: nothing is offered that would answer 403;
- the controls that matter are there for the roles that may use them (so the first
  check cannot pass by hiding everything).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import Element
from tests.htmlparse import parse
from wave_web import catalog
from wave_web.columns import ColumnDef
from wave_web.models import ROLES
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound
from werkzeug.routing import RequestRedirect

ROLE_NAMES = ("viewer", "researcher", "admin")
HTMX_VERBS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class World:
    type_id: int
    experiment: str
    row_id: int
    tag_id: int


@pytest.fixture
def world(db) -> World:
    """A type with one experiment (tagged, two rows) and a tag."""
    xtype = make_type(
        columns=(
            ColumnDef("reaction_time", "FLOAT", description="seconds"),
            ColumnDef("answer", "STRING"),
        )
    )
    experiment = make_experiment(xtype, "Pilot", ["pilot"])
    make_rows(
        xtype,
        experiment,
        [
            {"participant_id": "p1", "reaction_time": 0.5, "answer": "a"},
            {"participant_id": "p2", "reaction_time": 0.7, "answer": "b"},
        ],
    )
    tag = catalog.find_tag("pilot")
    row_id = db.session.scalar(sa.text("SELECT min(id) FROM cognitive_test_data"))
    return World(xtype.id, str(experiment.uuid), row_id, tag.id)


@dataclass(frozen=True)
class Control:
    """Something on a page that sends a request: a link, a form or an htmx address."""

    method: str
    path: str
    source: str


def controls(page: Element, page_path: str) -> list[Control]:
    """Every same-site request a page offers (links, forms, htmx attributes)."""
    found = []
    for e in page.iter():
        if e.tag == "a" and "href" in e.attrs:
            found.append(Control("GET", e.attrs["href"], "a"))
        if e.tag == "form":
            method = e.attrs.get("method", "get").upper()
            found.append(Control(method, e.attrs.get("action") or page_path, "form"))
        for verb in HTMX_VERBS:
            if f"hx-{verb}" in e.attrs:
                target = e.attrs[f"hx-{verb}"] or page_path
                found.append(Control(verb.upper(), target, f"hx-{verb}"))
    out = []
    for c in found:
        parts = urlsplit(c.path)
        if parts.scheme or parts.netloc or not parts.path or c.path.startswith("#"):
            continue  # another site, or an anchor on this page
        if parts.path.startswith("/static/"):
            continue
        out.append(Control(c.method, parts.path, c.source))
    return out


def declared_role(app, method: str, path: str) -> str:
    """The role the view behind `method path` declared with @requires."""
    adapter = app.url_map.bind("localhost")
    try:
        endpoint, _ = adapter.match(path, method=method)
    except RequestRedirect as redirect:  # /types → /types/
        endpoint, _ = adapter.match(urlsplit(redirect.new_url).path, method=method)
    except (NotFound, MethodNotAllowed) as exc:
        raise AssertionError(f"{method} {path} is offered but answers {exc}") from None
    return app.view_functions[endpoint].wave_role


def may(role: str, needed: str) -> bool:
    return needed == "public" or ROLES.index(role) >= ROLES.index(needed)


def visit(app, role: str, path: str) -> Element:
    response = app.test_client(user=role).get(path)
    assert response.status_code == 200, (role, path, response.status_code)
    return parse(response.data)


def assert_offers_only_what_role_may(app, role: str, path: str) -> Element:
    """GET `path` as `role`: nothing on it leads to a route above the role."""
    page = visit(app, role, path)
    beyond = [
        f"{c.method} {c.path} ({c.source}, needs {needed})"
        for c in controls(page, path)
        if not may(role, needed := declared_role(app, c.method, c.path))
    ]
    assert not beyond, f"{role} is offered on {path}: {beyond}"
    return page


def offered(page: Element, path: str, method: str = "GET") -> bool:
    """True when some link, form or htmx attribute sends `method path`.

    Forms without an action (they send to the page itself) do not count.
    """
    return any(c.method == method and c.path == path for c in controls(page, ""))


def main_pages(w: World) -> list[str]:
    e = f"/experiments/{w.experiment}"
    return [
        "/",
        "/types/",
        f"/types/{w.type_id}",
        f"/types/{w.type_id}/rows",
        "/experiments/",
        e,
        f"{e}?participant_id__exact=p1",
        f"{e}/rows/{w.row_id}",
        f"{e}/summary",
        f"{e}/export",
        "/tags/",
        "/participants/p1",
    ]


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_pages_offer_nothing_beyond_the_role(app, world, role):
    for path in main_pages(world):
        assert_offers_only_what_role_may(app, role, path)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_empty_pages_offer_nothing_beyond_the_role(app, role):
    for path in ("/", "/types/", "/experiments/", "/tags/"):
        assert_offers_only_what_role_may(app, role, path)


@pytest.mark.parametrize(
    ("role", "expected"), [("viewer", False), ("researcher", True), ("admin", True)]
)
def test_create_controls_only_for_researchers(app, world, role, expected):
    t, e = world.type_id, f"/experiments/{world.experiment}"
    types = visit(app, role, "/types/")
    assert offered(types, "/types/new") is expected
    type_page = visit(app, role, f"/types/{t}")
    assert offered(type_page, "/experiments/new") is expected
    assert offered(type_page, f"/types/{t}/edit") is expected
    assert offered(type_page, f"/types/{t}/columns", "POST") is expected
    for action in ("rename", "describe", "type", "index", "nullable", "drop"):
        path = f"/types/{t}/columns/reaction_time/{action}"
        assert offered(type_page, path, "POST") is expected, action
    assert bool(type_page.find("details", class_="column-actions")) is expected
    assert offered(type_page, f"/types/{t}/export")  # everyone may export
    experiments = visit(app, role, "/experiments/")
    assert offered(experiments, "/experiments/new") is expected
    experiment = visit(app, role, e)
    for path in (f"{e}/rows/new", f"{e}/import", f"{e}/edit", f"{e}/delete"):
        assert offered(experiment, path) is expected, path
    assert offered(experiment, f"{e}/export")
    tags = visit(app, role, "/tags/")
    assert offered(tags, "/tags/", "POST") is expected
    assert offered(tags, f"/tags/{world.tag_id}/edit") is expected
    assert offered(tags, f"/tags/{world.tag_id}/delete") is expected


@pytest.mark.parametrize(
    ("role", "expected"), [("viewer", False), ("researcher", False), ("admin", True)]
)
def test_delete_type_and_admin_pages_only_for_admins(app, world, role, expected):
    type_page = visit(app, role, f"/types/{world.type_id}")
    assert offered(type_page, f"/types/{world.type_id}/delete") is expected
    home = visit(app, role, "/")
    for path in ("/admin/users", "/admin/keys", "/admin/audit"):
        assert offered(home, path) is expected, path
    assert offered(home, "/logout", "POST")  # everyone signed in may sign out
    assert offered(home, "/account/password")


@pytest.mark.parametrize(
    ("role", "expected"), [("viewer", False), ("researcher", True), ("admin", True)]
)
def test_grid_editing_and_selection_only_for_researchers(app, world, role, expected):
    e = f"/experiments/{world.experiment}"
    row = f"{e}/rows/{world.row_id}"
    grid = visit(app, role, f"{e}?participant_id__exact=p1")
    assert bool(grid.find("input", name="ids")) is expected
    assert bool(grid.find(id="bulk-form")) is expected
    assert bool(grid.find_all("input", **{"data-select-all": ""})) is expected
    assert bool([a for a in grid.iter() if "data-edit" in a.attrs]) is expected
    assert offered(grid, f"{row}/edit") is expected
    assert offered(grid, f"{row}/delete", "POST") is expected
    assert offered(grid, f"{e}/rows/delete-matching") is expected
    # instead of editing in place, a viewer opens each row's page
    assert offered(grid, row) is not expected
    row_page = visit(app, role, row)
    assert offered(row_page, f"{row}/edit") is expected
    assert offered(row_page, f"{row}/delete") is expected
    type_grid = visit(app, role, f"/types/{world.type_id}/rows")
    assert offered(type_grid, row)
    assert offered(type_grid, f"{row}/edit") is expected


def test_viewer_grid_has_no_empty_select_column(app, world):
    grid = visit(app, "viewer", f"/experiments/{world.experiment}")
    table = grid.find("table", class_="grid")
    header = table.find("thead").find("tr").find_all("th")
    first_row = table.find("tbody").find("tr").find_all("td")
    assert len(header) == len(first_row)
    assert not table.find_all(class_="select")


@pytest.mark.parametrize(
    ("role", "expected"), [("viewer", False), ("researcher", True), ("admin", True)]
)
def test_empty_states_invite_only_those_who_may_act(app, role, expected):
    home = visit(app, role, "/")
    assert offered(home, "/types/new") is expected
    types = visit(app, role, "/types/")
    assert offered(types, "/types/new") is expected
    experiments = visit(app, role, "/experiments/")
    assert offered(experiments, "/types/new") is expected
    tags = visit(app, role, "/tags/")
    assert offered(tags, "/tags/", "POST") is expected


def test_viewer_tags_page_uses_the_width_without_the_form(app, world):
    page = visit(app, "viewer", "/tags/")
    assert page.find("div", class_="col-lg-4") is None
    assert page.find("div", class_="col-12") is not None
    header = page.find("thead").find_all("th")
    assert [th.text for th in header] == ["Tag", "Description", "Experiments"]


def test_viewer_type_page_has_no_actions_column(app, world):
    page = visit(app, "viewer", f"/types/{world.type_id}")
    columns = page.find("table", **{"aria-describedby": "columns"})
    assert len(columns.find("thead").find_all("th")) == 4
    for tr in columns.find("tbody").find_all("tr"):
        assert len(tr.find_all("td")) == 4


def test_signed_out_pages_show_no_menu(app):
    page = parse(app.test_client(user=None).get("/login").data)
    assert page.find("ul", class_="navbar-nav") is None
    assert page.find("details", class_="account-menu") is None


def test_top_bar_names_the_user_and_role(app):
    page = visit(app, "researcher", "/")
    menu = page.find("details", class_="account-menu")
    assert "researcher@example.org" in menu.text
    assert "researcher" in menu.find("summary").text

"""Stored and reflected XSS: hostile values in every user-editable field stay inert.

Payloads go into every field a user can fill (through the domain functions the forms
call, and through the real upload page for file names and headers); then real
Chromium visits every page that shows them. A test fails when a dialog opens, when
an injected element or attribute exists in the DOM, or when an injected htmx
attribute fires (a request to …/x).

The browser context bypasses the Content-Security-Policy: the CSP would block inline
handlers anyway, and then an escaping bug would go unnoticed. Without it, an
injected `onerror` would really run and open a dialog.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import quote
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect
from tests.browser.conftest import signed_in_cookie
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import accounts
from wave_web import catalog
from wave_web.columns import ColumnDef
from wave_web.csv_io import jobs
from wave_web.extensions import db

pytestmark = pytest.mark.browser


def hostile(where: str) -> list[str]:
    """Payloads that would run script, inject markup or fire htmx if not escaped."""
    return [
        f"<img src=x onerror=alert('{where}')>",
        f'"><svg onload=alert("{where}")>',
        "{{7*7}}",
        "javascript:alert(1)",
        f"</script><script>alert('{where}')</script>",
        "' hx-get=/x hx-trigger=load '",
        '<div hx-get="/x" hx-trigger="load">htmx</div>',
    ]


def joined(where: str) -> str:
    return " ".join(hostile(where))


# Short ones for fields with a length limit (tags: 50, participant ids: 100).
SHORT = hostile("short")
# What a browser keeps of a file name: no path separators.
FILE_NAME = "<img src=x onerror=alert('file')> \"><svg onload=alert(1)> {{7*7}}.csv"
EMAILS = [
    "\"><svg/onload=alert('email')>@evil.example",
    "<img/src=x/onerror=alert('email')>@evil.example",
    "{{7*7}}'hx-get=/x'hx-trigger=load@evil.example",
]

# Everything injected would show up here: inline handlers, javascript: URLs, htmx
# attributes pointing at /x or firing on load, images, frames and inline scripts (the
# app has none of those of its own).
INSPECT = """
() => {
  const found = [];
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "");
  for (const el of document.querySelectorAll("*")) {
    for (const attr of el.attributes) {
      const key = attr.name.toLowerCase();
      const value = attr.value.trim().toLowerCase();
      if (key.startsWith("on")) found.push(`${name(el)} has ${key}`);
      if (["href", "src", "action", "formaction", "xlink:href"].includes(key)
          && value.startsWith("javascript:")) found.push(`${name(el)} ${key}=${value}`);
      const htmx = key.startsWith("hx-") || key.startsWith("data-hx-");
      const fires = key.endsWith("trigger") && value.includes("load");
      if (htmx && (value === "/x" || value === "x" || fires))
        found.push(`${name(el)} ${key}=${value}`);
    }
  }
  for (const el of document.querySelectorAll("img, iframe, object, embed, frame"))
    found.push(`injected ${name(el)}`);
  for (const s of document.scripts) {
    const path = s.src ? new URL(s.src).pathname : "";
    if (!path.startsWith("/static/") || s.textContent.trim())
      found.push(`script ${path || s.textContent.slice(0, 60)}`);
  }
  return found;
}
"""


# True when the page shows a payload somewhere, as text or in a form field: a page
# that shows none proves nothing.
SHOWS_PAYLOAD = """
() => {
  const marks = ["alert(", "{{7*7}}", "hx-trigger=load"];
  const texts = [document.body.innerText, document.title];
  for (const el of document.querySelectorAll("*"))
    for (const attr of el.attributes) texts.push(attr.value);
  for (const el of document.querySelectorAll("input, textarea")) texts.push(el.value);
  return texts.some((t) => marks.some((m) => t.includes(m)));
}
"""


# Text with a payload under `selector` that no [hx-disable] ancestor guards.
UNGUARDED = r"""
(selector) => {
  const out = [];
  for (const root of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const node = walker.currentNode;
      if (/alert\(|hx-trigger=load/.test(node.nodeValue)
          && !node.parentElement.closest("[hx-disable]"))
        out.push(node.nodeValue.slice(0, 60));
    }
  }
  return out;
}
"""


def unguarded(page, selector: str) -> list[str]:
    assert page.locator(selector).count(), f"nothing matches {selector}"
    return page.evaluate(UNGUARDED, selector)


@dataclass
class Watch:
    """What the browser did that it must not: dialogs, requests to …/x, JS errors."""

    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    injected: dict[str, list[str]] = field(default_factory=dict)
    blank: list[str] = field(default_factory=list)

    def dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def request(self, request) -> None:
        path = urlsplit(request.url).path
        if path == "/x" or path.endswith("/x"):
            self.requests.append(request.url)

    def check(self, page, label: str, shows_payload: bool = True) -> None:
        """Inspect the page as it is now."""
        found = page.evaluate(INSPECT)
        if found:
            self.injected[label] = found
        if shows_payload and not page.evaluate(SHOWS_PAYLOAD):
            self.blank.append(label)

    def assert_inert(self) -> None:
        assert not self.dialogs, f"dialogs opened: {self.dialogs}"
        assert not self.requests, f"injected htmx or images fired: {self.requests}"
        assert not self.injected, f"injected into the DOM: {self.injected}"
        assert not self.errors, f"JavaScript errors: {self.errors}"
        assert not self.blank, (
            f"pages that show no payload (test nothing): {self.blank}"
        )


@pytest.fixture
def hostile_page(browser, live_app, live_url):
    """An admin's page without CSP, watched for dialogs and requests to …/x."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=True
    )
    context.add_cookies([signed_in_cookie(live_app, live_url)])
    page = context.new_page()
    watch = Watch()
    page.on("dialog", watch.dialog)
    page.on("request", watch.request)
    page.on("pageerror", lambda exc: watch.errors.append(str(exc)))
    yield page, watch
    context.close()
    with live_app.app_context():
        jobs.wait_all(30)
        db.session.remove()


def test_the_watch_catches_an_injection(hostile_page, live_url, planted):
    """The checks themselves: markup put into the page by script is caught."""
    page, watch = hostile_page
    visit(page, watch, f"{live_url}/types/{planted.type_id}")
    page.evaluate(
        """() => {
        document.body.insertAdjacentHTML("beforeend",
          '<img src=x onerror="alert(1)"><div hx-get="/x" hx-trigger="load"></div>');
        htmx.process(document.body);
      }"""
    )
    page.wait_for_load_state("networkidle")
    watch.check(page, "injected by the test")
    assert watch.dialogs == ["alert: 1"]
    assert any(url.endswith("/x") for url in watch.requests)
    assert {"img has onerror", "injected img", "div hx-get=/x"} <= set(
        watch.injected["injected by the test"]
    )


def visit(
    page, watch: Watch, url: str, status: int = 200, shows_payload: bool = True
) -> None:
    """Open `url` and inspect it once loaded (images tried, htmx initialised)."""
    response = page.goto(url, wait_until="load")
    assert response is not None and response.status == status, (url, response.status)
    watch.check(page, url, shows_payload)


@dataclass(frozen=True)
class Planted:
    type_id: int
    experiment: str
    row_ids: list[int]
    participants: list[str]
    tag_ids: list[int]
    user_ids: list[int]
    key_id: int


@pytest.fixture
def planted(live_app) -> Planted:
    """Payloads in every field the domain functions behind the forms accept."""
    with live_app.app_context():
        xtype = make_type(
            joined("type-name")[:100],
            "hostile_data",
            [
                ColumnDef("answer", "STRING", description=joined("column-description")),
                ColumnDef("notes", "TEXT", description=SHORT[1]),
                ColumnDef("meta", "JSON", description=SHORT[5]),
                ColumnDef("score", "FLOAT"),
            ],
            description=joined("type-description"),
        )
        experiment = make_experiment(
            xtype,
            joined("experiment-description"),
            SHORT,  # one tag per payload
            {p: {"value": p, "list": hostile("additional-data")} for p in SHORT},
        )
        for tag, payload in zip(SHORT, hostile("tag-description"), strict=True):
            t = catalog.find_tag(tag)
            catalog.update_tag(t, t.name, payload)
        rows = [
            {
                "participant_id": pid,
                "answer": payload[:255],
                "notes": joined("text-cell") + "\n" + payload,
                "meta": {payload: hostile("json-cell"), "k": payload},
                "score": float(i),
            }
            for i, (pid, payload) in enumerate(
                zip(SHORT, hostile("string-cell"), strict=True)
            )
        ]
        make_rows(xtype, experiment, rows)
        users = [
            accounts.create_user(e, "hostile password 123", "viewer") for e in EMAILS
        ]
        key, _ = accounts.create_key(joined("key-label")[:100], "researcher")
        db.session.commit()
        row_ids = list(
            db.session.scalars(sa.text("SELECT id FROM hostile_data ORDER BY id"))
        )
        planted = Planted(
            xtype.id,
            str(experiment.uuid),
            row_ids,
            list(SHORT),
            [catalog.find_tag(t).id for t in SHORT],
            [u.id for u in users],
            key.id,
        )
        db.session.remove()
    return planted


def catalog_pages(base: str, p: Planted) -> list[str]:
    t, e = f"{base}/types/{p.type_id}", f"{base}/experiments/{p.experiment}"
    row = f"{e}/rows/{p.row_ids[0]}"
    ids = urlencode([("ids", i) for i in p.row_ids])
    pages = [
        f"{base}/",
        f"{base}/types/",
        t,
        f"{t}/edit",
        f"{t}/delete",
        f"{t}/rows",
        f"{t}/summary",
        f"{t}/export",
        f"{base}/experiments/",
        e,
        f"{e}/summary",
        f"{e}/edit",
        f"{e}/delete",
        f"{e}/export",
        f"{e}/import",
        row,
        f"{row}/edit",
        f"{row}/delete",
        f"{e}/rows/new",
        f"{e}/rows/delete?{ids}",
        f"{e}/rows/delete-matching?score__gt=-1",
        f"{base}/tags/",
        f"{base}/admin/users",
        f"{base}/admin/keys",
        f"{base}/admin/keys/{p.key_id}/revoke",
        f"{base}/admin/audit",
    ]
    pages += [f"{base}/tags/{i}/edit" for i in p.tag_ids[:2]]
    pages += [f"{base}/tags/{i}/delete" for i in p.tag_ids[:1]]
    pages += [f"{base}/admin/users/{i}" for i in p.user_ids]
    pages += [f"{base}/admin/users/{p.user_ids[0]}/delete"]
    pages += [f"{base}/participants/{quote(pid, safe='')}" for pid in p.participants]
    pages += [f"{row[: row.rindex('/')]}/{i}" for i in p.row_ids[1:]]
    return pages


def test_stored_payloads_are_inert_on_every_page(hostile_page, live_url, planted):
    page, watch = hostile_page
    for url in catalog_pages(live_url, planted):
        visit(page, watch, url)
    watch.assert_inert()
    # Shown as text, not evaluated: neither by Jinja nor by anything in the browser.
    visit(page, watch, f"{live_url}/types/{planted.type_id}")
    expect(page.locator("main")).to_contain_text("{{7*7}}")
    expect(page.locator("main")).to_contain_text("<img src=x onerror=alert(")


def test_payloads_in_htmx_swaps_are_inert(hostile_page, live_url, planted):
    page, watch = hostile_page
    e = f"{live_url}/experiments/{planted.experiment}"
    visit(page, watch, e)
    assert unguarded(page, "#grid tbody") == []
    # column summaries load into the grid through htmx (top values of the payloads)
    page.get_by_role("link", name="Column summaries").click()
    expect(page.locator("#summary-panel .summary-card").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    watch.check(page, "summary panel")
    # inline edit: the row is swapped for a form holding the payloads, then back
    first = planted.row_ids[0]
    page.locator(f"#row-{first} [data-edit]").click()
    editing = page.locator(f"#row-{first}.row-editing")
    expect(editing).to_be_visible()
    watch.check(page, "inline edit")
    editing.get_by_role("button", name="Save").click()
    expect(page.locator(f"#row-{first} .saved-badge")).to_be_visible()
    watch.check(page, "inline save")
    assert unguarded(page, f"#row-{first}") == []
    # a boosted swap of the grid: sort by another column
    page.get_by_role("link", name="answer", exact=True).click()
    expect(page.locator("th[aria-sort]")).to_contain_text("answer")
    page.wait_for_load_state("networkidle")
    watch.check(page, "boosted sort")
    # the type builder echoes what is typed in live checks (htmx, out of band)
    visit(page, watch, f"{live_url}/types/new", shows_payload=False)
    page.fill("#name", joined("type-name")[:100])
    page.fill("#columns-0-name", SHORT[0])
    page.fill("#columns-0-description", joined("builder-description"))
    expect(page.locator("#columns-0-feedback")).not_to_be_empty()
    page.wait_for_load_state("networkidle")
    watch.check(page, "builder live check")
    watch.assert_inert()


def test_reflected_payloads_are_inert(hostile_page, live_url, planted):
    page, watch = hostile_page
    e = f"{live_url}/experiments/{planted.experiment}"
    row = f"{e}/rows/{planted.row_ids[0]}"
    payload = joined("reflected")
    fits = joined("r")  # within the list searches' limits (200; tags 100)
    assert len(fits) <= 200
    two_filters = {"answer__contains": SHORT[0], "notes__startswith": SHORT[1]}
    add_filter = {"_fcol": "answer", "_fop": "exact", "_fval": payload}
    visit(page, watch, f"{e}?{urlencode({'answer__exact': payload})}")
    assert unguarded(page, "#grid [aria-label='Active filters']") == []
    visit(page, watch, f"{e}?{urlencode({'score__gt': payload})}", 400)
    assert unguarded(page, "#grid-error") == []
    for url, status in [  # (a 404 need not echo the address)
        (f"{e}?{urlencode({'answer__exact': payload})}", 200),
        (f"{e}?{urlencode(two_filters)}", 200),
        (f"{e}?{urlencode(add_filter)}", 200),
        (f"{e}?{urlencode({'score__gt': payload})}", 400),  # not a number: echoed
        (f"{e}/summary?{urlencode({'answer__exact': payload})}", 200),
        (f"{live_url}/experiments/?{urlencode({'q': fits})}", 200),
        (f"{live_url}/experiments/?{urlencode({'tag': SHORT[0]})}", 200),
        (f"{live_url}/tags/?{urlencode({'q': fits[:100]})}", 200),
        (f"{live_url}/admin/audit?{urlencode({'actor': payload})}", 200),
        (f"{live_url}/admin/audit?{urlencode({'object_id': payload})}", 200),
        (f"{live_url}/admin/audit?{urlencode({'since': payload})}", 400),
        (f"{live_url}/experiments/{quote(SHORT[1], safe='')}", 404),
        (f"{row}/edit?{urlencode({'_hide': payload})}", 200),
    ]:
        visit(page, watch, url, status, shows_payload=status != 404)
    watch.assert_inert()


def test_payloads_in_an_uploaded_file_are_inert(hostile_page, live_url, planted):
    page, watch = hostile_page
    upload = f"{live_url}/experiments/{planted.experiment}/import"
    header = ["participant_id", "answer", *hostile("header")]
    bad = [header, ["p1", "a", *(["x"] * len(hostile("header")))]]
    good = [["participant_id", "answer", "notes", "meta"]] + [
        [pid, value[:255], joined("file-text"), json.dumps({value: value})]
        for pid, value in zip(SHORT, hostile("file-cell"), strict=True)
    ]

    # hostile header names: a preview with unmatched columns and problems
    visit(page, watch, upload)
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": FILE_NAME, "mimeType": "text/csv", "buffer": csv_bytes(bad)}]
    )
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_role("heading", name="Columns of the file")).to_be_visible()
    page.wait_for_load_state("networkidle")
    watch.check(page, "preview with hostile header")
    assert (
        unguarded(
            page,
            "h1, .mapping-table tbody, .problems-table tbody, .problems-per-column",
        )
        == []
    )
    expect(page.locator("main")).to_contain_text(hostile("header")[0])

    # hostile values: a clean preview of the rows, then the import and its result
    visit(page, watch, upload)
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": FILE_NAME, "mimeType": "text/csv", "buffer": csv_bytes(good)}]
    )
    page.get_by_role("button", name="Upload and check").click()
    expect(page.locator(".alert-success")).to_contain_text("are valid")
    page.wait_for_load_state("networkidle")
    watch.check(page, "preview of hostile rows")
    assert unguarded(page, ".preview-rows tbody, h1") == []
    page.locator("#confirm-import").click()
    expect(page.locator(".alert-success")).to_contain_text("Imported")
    page.wait_for_load_state("networkidle")
    watch.check(page, "import result")

    # the file name in the recent imports, the job titles and the audit log
    visit(page, watch, upload)
    expect(page.locator("main")).to_contain_text("<img src=x onerror=alert('file')>")
    assert unguarded(page, ".text-break a") == []  # recent imports
    visit(page, watch, f"{live_url}/admin/audit")
    assert unguarded(page, "table.data tbody") == []
    visit(page, watch, f"{live_url}/experiments/{planted.experiment}")
    watch.assert_inert()


def submit(page, watch: Watch, label: str, button: str, status: int) -> None:
    """Submit `button`'s form without the browser's own checks; inspect the answer."""
    page.evaluate(
        "() => document.querySelectorAll('main form').forEach(f => f.noValidate = true)"
    )
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=button, exact=True).click()
    assert navigation.value.status == status, (label, navigation.value.status)
    watch.check(page, label)


def test_payloads_through_forms_and_their_errors_are_inert(
    hostile_page, browser, live_url, planted
):
    """Pages answering a form: what was created, or the error echoing the input."""
    page, watch = hostile_page
    visit(page, watch, f"{live_url}/admin/keys/new", shows_payload=False)
    page.fill("#label", joined("key-form")[:100])
    submit(page, watch, "key created", "Create the key", 200)
    visit(page, watch, f"{live_url}/admin/users/new", shows_payload=False)
    page.fill("#email", "\"><img/src=x/onerror=alert('new-user')>@evil.example")
    submit(page, watch, "user created", "Add the user", 200)
    visit(page, watch, f"{live_url}/admin/users/new", shows_payload=False)
    page.fill("#email", "<img/src=x/onerror=alert('not-an-email')>")
    submit(page, watch, "email refused", "Add the user", 422)
    visit(page, watch, f"{live_url}/tags/")
    page.fill("#name", f"{SHORT[0]},{SHORT[1]}")
    submit(page, watch, "tag refused", "Create tag", 422)
    visit(page, watch, f"{live_url}/experiments/{planted.experiment}/edit")
    page.fill("#additional_data", '{"a": "' + SHORT[0])  # not valid JSON
    submit(page, watch, "JSON refused", "Save", 422)
    visit(page, watch, f"{live_url}/types/{planted.type_id}")
    page.locator("details.column-actions summary").first.click()
    page.locator("input[id='rename-answer']").fill(SHORT[1])  # not a column name
    submit(page, watch, "column name refused", "Rename", 422)
    watch.assert_inert()
    # signed out: the sign-in page echoes the address that failed
    context = browser.new_context(bypass_csp=True)
    try:
        signed_out = context.new_page()
        signed_out.on("dialog", watch.dialog)
        signed_out.on("request", watch.request)
        signed_out.goto(f"{live_url}/login?{urlencode({'next': SHORT[1]})}")
        signed_out.fill("#email", EMAILS[0])
        signed_out.fill("#password", "not the password 123")
        submit(signed_out, watch, "sign-in refused", "Sign in", 401)
    finally:
        context.close()
    watch.assert_inert()


def csv_bytes(rows: list[list[str]]) -> bytes:
    import csv
    import io

    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()

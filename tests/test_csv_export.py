"""CSV export: downloads, views, options, file format, names, sidecars, audit.

Values and the round trip are in test_csv_export_roundtrip.py, size and streaming in
test_csv_export_streaming.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from types import SimpleNamespace
from urllib.parse import parse_qsl
from urllib.parse import unquote
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import queries
from wave_web.columns import ColumnDef
from wave_web.csv_io import exporting
from wave_web.models import AuditEntry
from werkzeug.datastructures import MultiDict

COLUMNS = (
    ColumnDef("reaction_time", "FLOAT", description="Seconds from onset"),
    ColumnDef("difficulty_level", "INTEGER"),
    ColumnDef("stimulus_type", "STRING"),
    ColumnDef("notes", "TEXT"),
    ColumnDef("correct", "BOOLEAN"),
    ColumnDef("extra", "JSON"),
)


def row(pid, rt, level, stimulus, notes=None, correct=None, extra=None):
    return dict(
        participant_id=pid,
        reaction_time=rt,
        difficulty_level=level,
        stimulus_type=stimulus,
        notes=notes,
        correct=correct,
        extra=extra,
    )


ROWS = [
    row("P01", 0.41, 1, "red", "ok", True, {"k": 1}),
    row("P02", 0.93, 2, "blue", None, False),
    row("P03", None, 3, "red", '=HYPERLINK("x")', None),
    row("P04", 0.52, None, "green", "-", True, [1, 2]),
    row("@P05", 0.77, 2, "+red", "\tindent", False),
    row("P06", 0.41, 1, None, "fine", True),
]


@pytest.fixture
def data(db):
    xtype = make_type("Cognitive test", "cognitive_test_data", COLUMNS)
    experiment = make_experiment(xtype, "Pilot <b>bold</b>")
    make_rows(xtype, experiment, ROWS)
    other = make_experiment(xtype, "Other")
    make_rows(xtype, other, [row("X99", 9.0, 5, "other")])
    return SimpleNamespace(
        xtype=xtype,
        experiment=experiment,
        other=other,
        url=f"/experiments/{experiment.uuid}",
        type_url=f"/types/{xtype.id}",
    )


def records(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.data[-400:]
    text = response.data.decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def header(response) -> list[str]:
    return response.data.decode("utf-8-sig").split("\r\n", 1)[0].split(",")


def pids(response) -> list[str]:
    return [r["participant_id"] for r in records(response)]


# ----------------------------------------------------------------------
# What is exported
# ----------------------------------------------------------------------


def test_experiment_export_has_its_rows_in_id_order(client, data):
    response = client.get(f"{data.url}/export.csv")
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Type"].startswith("text/csv; charset=utf-8")
    assert pids(response) == ["P01", "P02", "P03", "P04", "'@P05", "P06"]


def test_export_columns_are_id_participant_then_schema_order(client, data):
    response = client.get(f"{data.url}/export.csv")
    assert header(response) == [
        "id",
        "participant_id",
        "reaction_time",
        "difficulty_level",
        "stimulus_type",
        "notes",
        "correct",
        "extra",
    ]


def test_system_columns_follow_the_options(client, data):
    without_id = header(client.get(f"{data.url}/export.csv?_id=0"))
    assert without_id[:2] == ["participant_id", "reaction_time"]
    with_times = header(client.get(f"{data.url}/export.csv?_timestamps=1"))
    assert with_times[0] == "id" and with_times[-2:] == ["created_at", "updated_at"]
    stamp = records(client.get(f"{data.url}/export.csv?_timestamps=1"))[0]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", stamp["created_at"]
    )


def test_type_export_has_every_experiment_with_its_uuid(client, data):
    response = client.get(f"{data.type_url}/export.csv")
    rows = records(response)
    assert header(response)[:3] == ["id", "experiment_uuid", "participant_id"]
    assert [r["participant_id"] for r in rows][-1] == "X99"
    assert {r["experiment_uuid"] for r in rows} == {
        str(data.experiment.uuid),
        str(data.other.uuid),
    }
    assert len(rows) == len(ROWS) + 1


def test_export_of_an_experiment_leaves_other_experiments_out(client, data):
    assert "X99" not in pids(client.get(f"{data.url}/export.csv"))


def test_empty_experiment_exports_only_the_header(client, data):
    empty = make_experiment(data.xtype, "Empty")
    response = client.get(f"/experiments/{empty.uuid}/export.csv")
    assert response.data == (
        b"id,participant_id,reaction_time,difficulty_level,stimulus_type,notes,"
        b"correct,extra\r\n"
    )


# ----------------------------------------------------------------------
# "This view": the grid's query string
# ----------------------------------------------------------------------

VIEWS = [
    "",
    "reaction_time__gt=0.45",
    "stimulus_type=red",
    "_sort=reaction_time",
    "_sort=reaction_time&_dir=desc",
    "_sort=stimulus_type&_dir=desc&difficulty_level__lte=2",
    "notes__isnull=",
    "participant_id__istartswith=p0&_sort=difficulty_level",
    "correct=true&_sort=participant_id",
]


def grid_ids(xtype, experiment_uuid, query: str) -> list[int]:
    """Every row of the grid view in its order (the grid's own paging)."""
    cols = queries.grid_columns(xtype, with_experiment=experiment_uuid is None)
    args = MultiDict(parse_qsl(query, keep_blank_values=True) + [("_size", "500")])
    page = queries.page_rows(
        xtype, queries.RowQuery.from_args(cols, args), experiment_uuid
    )
    assert not page.has_next
    return [r["id"] for r in page.rows]


@pytest.mark.parametrize("view", VIEWS)
def test_view_export_has_the_grid_rows_in_the_grid_order(client, data, view):
    response = client.get(f"{data.url}/export.csv?{view}")
    exported = [int(r["id"]) for r in records(response)]
    assert exported == grid_ids(data.xtype, data.experiment.uuid, view)


@pytest.mark.parametrize("view", [*VIEWS[:4], "experiment_uuid={other}"])
def test_type_view_export_has_the_type_grid_rows(client, data, view):
    view = view.format(other=data.other.uuid)
    response = client.get(f"{data.type_url}/export.csv?{view}")
    exported = [int(r["id"]) for r in records(response)]
    assert exported == grid_ids(data.xtype, None, view)


def test_hidden_columns_are_left_out_of_a_view_export(client, data):
    response = client.get(f"{data.url}/export.csv?_hide=notes&_hide=extra")
    assert "notes" not in header(response) and "extra" not in header(response)
    assert header(response)[:2] == ["id", "participant_id"]


def test_hiding_every_column_is_a_400(client, data):
    hide = "&".join(f"_hide={c.name}" for c in queries.grid_columns(data.xtype))
    response = client.get(f"{data.url}/export.csv?{hide}")
    assert response.status_code == 400
    assert b"show at least one column" in response.data


def test_paging_parameters_are_ignored(client, data):
    paging = "_size=25&_after=garbage&_before=x&_last=1&_start=99&_count=exact"
    response = client.get(f"{data.url}/export.csv?stimulus_type=red&{paging}")
    assert pids(response) == ["P01", "P03"]


def test_an_option_never_clashes_with_a_column_of_the_same_name(client, db):
    xtype = make_type("Clash", "clash_data", [ColumnDef("bom", "INTEGER")])
    experiment = make_experiment(xtype)
    make_rows(xtype, experiment, [{"participant_id": "a", "bom": 1}])
    make_rows(xtype, experiment, [{"participant_id": "b", "bom": 2}])
    response = client.get(f"/experiments/{experiment.uuid}/export.csv?bom=2&_bom=1")
    assert response.data.startswith(exporting.BOM)
    assert pids(response) == ["b"]


BAD_VIEWS = [
    "nosuch=1",
    "reaction_time__regex=1",
    "stimulus_type__gt=a",
    "extra__exact=%7B%7D",
    "_sort=extra",
    "_sort=nosuch",
    "_sort=",
    "_hide=nosuch",
    "_dir=sideways",
    "reaction_time__gt=abc",
    "difficulty_level__exact=1.5",
    "correct=maybe",
    "stimulus_type__contains=a%00b",
    "_sort=x%22)%20OR%201%3D1%20--",
    "x%22)%20OR%201%3D1__exact=1",
    "experiment_uuid__exact=1",  # not a column of an experiment's grid
]


def grid_message(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 400
    return parse(response.data).find(id="grid-error").find("span").text.strip()


@pytest.mark.parametrize("kind", ["export.csv", "export.zip", "export.json", "export"])
def test_bad_view_is_the_grid_400_with_its_message(client, data, kind):
    wrong = {}
    for view in BAD_VIEWS:
        response = client.get(f"{data.url}/{kind}?{view}")
        lead = parse(response.data).find("p", class_="lead")
        message = lead.text if lead is not None else None
        expected = grid_message(client, f"{data.url}?{view}")
        if response.status_code != 400 or message != expected:
            wrong[view] = (response.status_code, message, expected)
    assert wrong == {}


@pytest.mark.parametrize("option", ["_bom=2", "_neutralise=maybe", "_id=yes%00"])
def test_bad_export_option_is_a_400(client, data, option):
    response = client.get(f"{data.url}/export.csv?{option}")
    assert response.status_code == 400
    assert b"must be 1 or 0" in response.data


@pytest.mark.parametrize(
    "url",
    [
        "/experiments/00000000-0000-0000-0000-000000000000/export.csv",
        "/experiments/not-a-uuid/export.csv",
        "/experiments/not-a-uuid/export",
        "/types/999999/export.csv",
        "/types/999999/dictionary.json",
        "/types/999999/template.csv",
        "/types/99999999999/export.csv",
    ],
)
def test_unknown_experiment_or_type_is_a_404(client, data, url):
    assert client.get(url).status_code == 404


def test_injection_in_a_view_leaves_the_table_intact(client, data, db):
    for view in ("stimulus_type=a%27%3B%20DROP%20TABLE%20cognitive_test_data%3B--",):
        assert records(client.get(f"{data.url}/export.csv?{view}")) == []
    response = client.get(f"{data.url}/export.csv")
    assert len(records(response)) == len(ROWS)


# ----------------------------------------------------------------------
# File format
# ----------------------------------------------------------------------


def test_records_end_in_crlf_and_line_breaks_in_values_are_kept(client, data):
    make_rows(data.xtype, data.experiment, [row("P07", 1.0, 1, "a\nb", "c\r\nd", True)])
    body = client.get(f"{data.url}/export.csv?_neutralise=0").data
    assert body.endswith(b"\r\n")
    assert body.count(b"\r\n") == len(ROWS) + 3  # header, rows, one inside a value
    assert b',"a\nb","c\r\nd",true,' in body
    last = list(csv.reader(io.StringIO(body.decode(), newline="")))[-1]
    assert last[4:7] == ["a\nb", "c\r\nd", "true"]


def test_export_is_utf8_without_bom_unless_asked(client, data):
    make_rows(data.xtype, data.experiment, [row("Zoë", 1.0, 1, "naïve ☃ 漢字")])
    plain = client.get(f"{data.url}/export.csv").data
    assert not plain.startswith(exporting.BOM)
    assert "naïve ☃ 漢字".encode() in plain
    with_bom = client.get(f"{data.url}/export.csv?_bom=1").data
    assert with_bom == exporting.BOM + plain


def test_formula_cells_are_neutralised_in_text_columns_only(client, data):
    make_rows(
        data.xtype,
        data.experiment,
        [row("-P8", -0.5, -3, "@SUM(1)", "\rcr", None, {"f": "=1"})],
    )
    rows = records(client.get(f"{data.url}/export.csv"))
    assert [r["participant_id"] for r in rows][-1] == "'-P8"
    last = rows[-1]
    assert last["reaction_time"] == "-0.5" and last["difficulty_level"] == "-3"
    assert last["stimulus_type"] == "'@SUM(1)" and last["notes"] == "'\rcr"
    assert last["extra"] == '{"f":"=1"}'
    assert rows[2]["notes"] == '\'=HYPERLINK("x")' and rows[3]["notes"] == "'-"
    assert rows[4]["notes"] == "'\tindent" and rows[4]["stimulus_type"] == "'+red"


def test_neutralisation_can_be_switched_off_per_download(client, data):
    rows = records(client.get(f"{data.url}/export.csv?_neutralise=0"))
    assert rows[2]["notes"] == '=HYPERLINK("x")'
    assert rows[4]["participant_id"] == "@P05"


def test_booleans_json_and_empty_values_are_canonical(client, data):
    rows = records(client.get(f"{data.url}/export.csv"))
    assert [r["correct"] for r in rows] == [
        "true",
        "false",
        "",
        "true",
        "false",
        "true",
    ]
    assert rows[0]["extra"] == '{"k":1}' and rows[3]["extra"] == "[1,2]"
    assert rows[1]["extra"] == "" and rows[2]["reaction_time"] == ""


def test_stored_json_is_compact_on_both_databases(data, db):
    table = sa.table("cognitive_test_data", sa.column("extra"), sa.column("id"))
    text = db.session.execute(
        sa.select(sa.cast(table.c.extra, sa.Text)).order_by(table.c.id).limit(1)
    ).scalar_one()
    assert text == '{"k":1}'


# ----------------------------------------------------------------------
# File names
# ----------------------------------------------------------------------


def test_file_name_names_table_experiment_and_day(client, data):
    disposition = client.get(f"{data.url}/export.csv").headers["Content-Disposition"]
    short = str(data.experiment.uuid)[:8]
    match = re.fullmatch(
        r"attachment; filename=\"(?P<a>[^\"]+)\"; filename\*=UTF-8''(?P<u>\S+)",
        disposition,
    )
    assert match and match["a"] == unquote(match["u"])
    assert re.fullmatch(
        rf"cognitive_test_data-{short}-\d{{4}}-\d\d-\d\d\.csv", match["a"]
    )


def test_file_names_of_type_and_filtered_exports(client, data):
    type_name = client.get(f"{data.type_url}/export.csv").headers["Content-Disposition"]
    assert 'filename="cognitive_test_data-all-' in type_name
    view = client.get(f"{data.url}/export.csv?stimulus_type=red")
    assert "-filtered-" in view.headers["Content-Disposition"]
    assert (
        client.get(f"{data.url}/export.zip")
        .headers["Content-Disposition"]
        .endswith(".zip")
    )


@pytest.mark.parametrize(
    "name",
    [
        'evil"; filename="x.exe',
        "line\r\nSet-Cookie: a=b.csv",
        "naïve data ☃.csv",
        "..\\..\\etc\\passwd",
        "semi;colon,comma.csv",
        "",
    ],
)
def test_content_disposition_cannot_be_broken_out_of(name):
    value = exporting.content_disposition(name)
    assert "\r" not in value and "\n" not in value
    fallback, star = re.fullmatch(
        r"attachment; filename=\"([A-Za-z0-9._-]+)\"; filename\*=UTF-8''(\S*)", value
    ).groups()
    assert unquote(star) == name
    assert not fallback.startswith(".")


# ----------------------------------------------------------------------
# Options page, buttons, download redirect
# ----------------------------------------------------------------------


def test_options_page_explains_and_keeps_the_view(client, data):
    response = client.get(f"{data.url}/export?stimulus_type=red&_sort=reaction_time")
    assert response.status_code == 200
    page = parse(response.data)
    assert page.find("title").text.startswith("Export · Pilot")
    crumbs = page.find("nav", **{"aria-label": "Breadcrumb"}).text
    assert "Experiments" in crumbs and "Export" in crumbs
    form = page.find("form", method="get", action=f"{data.url}/export/download")
    hidden = [
        (e.attrs["name"], e.attrs["value"])
        for e in form.find_all("input", type="hidden")
    ]
    assert ("stimulus_type__exact", "red") in hidden
    assert ("_sort", "reaction_time") in hidden
    assert page.find("input", id="opt-neutralise").attrs.get("checked") is not None
    assert page.find("input", id="opt-id").attrs.get("checked") is not None
    assert "checked" not in page.find("input", id="opt-bom").attrs
    assert "2 rows matching the view" in page.find(id="export-count").text
    assert "leading apostrophe" in page.text


def test_options_page_escapes_what_users_typed(client, data):
    response = client.get(f"{data.url}/export?stimulus_type=%3Cscript%3Ex")
    assert b"<b>bold</b>" not in response.data
    assert b"<script>x" not in response.data
    assert b"&lt;script&gt;x" in response.data


def test_type_options_page(client, data):
    response = client.get(f"{data.type_url}/export")
    page = parse(response.data)
    assert response.status_code == 200
    assert "7 rows" in page.find(id="export-count").text
    assert page.find("form", action=f"{data.type_url}/export/download") is not None


@pytest.mark.parametrize(
    ("query", "target"),
    [
        ("", "export.csv"),
        ("_dictionary=1", "export.zip"),
        ("_id=0&_id=1&_neutralise=0&_dictionary=0&stimulus_type=red", "export.csv"),
    ],
)
def test_download_goes_on_to_the_file_with_the_same_view(client, data, query, target):
    response = client.get(f"{data.url}/export/download?{query}")
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == f"{data.url}/{target}"
    params = parse_qsl(location.query)
    assert ("_dictionary", "1") not in params and ("_id", "1") not in params
    if "stimulus_type" in query:
        assert params == [("stimulus_type__exact", "red"), ("_neutralise", "0")]


def test_grid_export_link_carries_the_view_but_not_the_page(client, data):
    view = "stimulus_type=red&_sort=reaction_time&_dir=desc&_hide=notes&_size=25"
    grid = client.get(f"{data.url}?{view}")
    link = parse(grid.data).find("a", id="export-view-csv").attrs["href"]
    url = urlsplit(link)
    assert url.path == f"{data.url}/export.csv"
    assert parse_qsl(url.query) == [
        ("stimulus_type__exact", "red"),
        ("_sort", "reaction_time"),
        ("_dir", "desc"),
        ("_hide", "notes"),
    ]
    options = parse(grid.data).find("a", id="export-view-options").attrs["href"]
    assert options == f"{data.url}/export?{url.query}"
    assert client.get(link).status_code == 200


def test_type_grid_has_an_export_link(client, data):
    page = parse(client.get(f"/types/{data.xtype.id}/rows?stimulus_type=red").data)
    link = page.find("a", id="export-view-csv").attrs["href"]
    assert link == f"{data.type_url}/export.csv?stimulus_type__exact=red"


def test_experiment_and_type_pages_link_to_the_exports(client, data):
    page = parse(client.get(data.url).data)
    assert page.find("a", href=f"{data.url}/export") is not None
    type_page = parse(client.get(data.type_url).data)
    for href in ("export", "template.csv", "dictionary.csv", "dictionary.json"):
        assert type_page.find("a", href=f"{data.type_url}/{href}") is not None


# ----------------------------------------------------------------------
# Dictionary, template, sidecar, zip
# ----------------------------------------------------------------------


def test_template_is_the_header_an_upload_expects(client, data):
    response = client.get(f"{data.type_url}/template.csv")
    assert response.data == (
        b"participant_id,reaction_time,difficulty_level,stimulus_type,notes,correct,"
        b"extra\r\n"
    )
    assert "cognitive_test_data-template.csv" in response.headers["Content-Disposition"]


def test_data_dictionary_as_csv_and_json(client, data):
    entries = records(client.get(f"{data.type_url}/dictionary.csv"))
    assert list(entries[0]) == [
        "column",
        "type",
        "nullable",
        "description",
        "example",
        "format",
    ]
    by_name = {e["column"]: e for e in entries}
    assert list(by_name)[:3] == ["id", "experiment_uuid", "participant_id"]
    assert by_name["reaction_time"]["description"] == "Seconds from onset"
    assert by_name["reaction_time"]["type"] == "FLOAT"
    assert by_name["participant_id"]["nullable"] == "false"
    document = json.loads(client.get(f"{data.type_url}/dictionary.json").data)
    assert document["type"]["table_name"] == "cognitive_test_data"
    assert [c["column"] for c in document["columns"]] == list(by_name)


def test_zip_holds_csv_dictionary_and_sidecar_with_hash(client, data):
    response = client.get(f"{data.url}/export.zip?stimulus_type=red")
    assert response.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert archive.testzip() is None
    names = archive.namelist()
    assert [n.rsplit(".", 1)[1] for n in names] == ["csv", "json", "csv"]
    body = archive.read(names[0])
    assert body == client.get(f"{data.url}/export.csv?stimulus_type=red").data
    sidecar = json.loads(archive.read(names[1]))
    assert sidecar["sha256"] == hashlib.sha256(body).hexdigest()
    assert sidecar["row_count"] == 2
    assert sidecar["file"] == names[0]
    assert sidecar["experiment"]["uuid"] == str(data.experiment.uuid)
    assert sidecar["view"]["filters"][0]["label"] == "stimulus_type = red"
    assert [c["column"] for c in sidecar["columns"]] == header(
        client.get(f"{data.url}/export.csv")
    )
    assert archive.read(names[2]).startswith(b"column,type,nullable,description")


def test_sidecar_download_recomputes_the_hash_of_the_csv(client, data):
    for query in ("", "_bom=1&_neutralise=0&_sort=reaction_time"):
        body = client.get(f"{data.url}/export.csv?{query}").data
        sidecar = json.loads(client.get(f"{data.url}/export.json?{query}").data)
        assert sidecar["sha256"] == hashlib.sha256(body).hexdigest()
        assert sidecar["row_count"] == len(ROWS)
        assert sidecar["csv"]["bom"] == ("_bom=1" in query)


def test_zip_streams_to_an_unseekable_target(data, db):
    plan = exporting.plan_export(data.xtype, MultiDict(), data.experiment)
    chunks = list(exporting.zip_chunks(plan))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None
    assert archive.infolist()[0].flag_bits & 0x08  # sizes in a data descriptor


# ----------------------------------------------------------------------
# Audit
# ----------------------------------------------------------------------


def test_each_download_is_audited_with_its_view(client, data, db):
    client.get(f"{data.url}/export.csv?stimulus_type=red&_neutralise=0")
    client.get(f"{data.type_url}/export.zip")
    client.get(f"{data.url}/export")  # the options page exports nothing
    entries = db.session.scalars(
        sa.select(AuditEntry)
        .where(AuditEntry.action == "rows.export")
        .order_by(AuditEntry.id)
    ).all()
    assert [(e.object_type, e.object_id) for e in entries] == [
        ("experiment", str(data.experiment.uuid)),
        ("experiment_type", str(data.xtype.id)),
    ]
    first = entries[0]
    assert first.details["filters"] == ["stimulus_type = red"]
    assert first.details["options"]["neutralise_formulas"] is False
    assert first.details["format"] == "csv"
    assert "matching stimulus_type = red" in first.summary
    assert entries[1].details["format"] == "zip"


def test_head_request_neither_streams_nor_audits(client, data, db):
    response = client.head(f"{data.url}/export.csv")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    count = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.action == "rows.export")
    )
    assert count == 0

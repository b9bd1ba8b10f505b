"""Excel: .xlsx read as CSV for the import pipeline, typed .xlsx downloads of exports.

The round trip compares an .xlsx download, read back by our reader, with the CSV
download of the same rows. One documented difference: Excel keeps times to the
millisecond, so the workbook has the microseconds cut.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import tempfile
import tracemalloc
import zipfile
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import openpyxl
import pytest
import sqlalchemy as sa
from tests.factories import EVERY_TYPE
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import parse
from tests.test_csv_export_roundtrip import TRICKY_ROWS
from tests.test_csv_export_roundtrip import assert_same_rows
from tests.test_csv_export_roundtrip import export_types
from tests.test_csv_export_roundtrip import parse_export
from wave_web.columns import ColumnDef
from wave_web.csv_io import excel
from wave_web.csv_io import exporting
from wave_web.csv_io import reading
from wave_web.csv_io.reading import FileRefused
from wave_web.models import AuditEntry

SAMPLES = Path(__file__).parent / "data" / "samples"
D = dt.datetime


# ----------------------------------------------------------------------
# Workbooks made by hand (what Excel writes that openpyxl cannot)
# ----------------------------------------------------------------------

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    "</Types>"
)
ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
    'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
    'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/'
    '2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
    "</Relationships>"
)
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def raw_workbook(path, rows_xml: str, shared=(), dimension: str = "") -> str:
    """A minimal .xlsx whose one sheet has the given <row> elements, written as is."""
    sheet = (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}">'
        f"{dimension}<sheetData>{rows_xml}</sheetData></worksheet>"
    )
    strings = "".join(f"<si><t>{s}</t></si>" for s in shared)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("_rels/.rels", ROOT_RELS)
        archive.writestr("xl/workbook.xml", WORKBOOK)
        archive.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS)
        archive.writestr("xl/worksheets/sheet1.xml", sheet)
        archive.writestr("xl/sharedStrings.xml", f'<sst xmlns="{MAIN}">{strings}</sst>')
    return str(path)


def inline(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'


def read_csv(path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def convert(src, tmp_path, sheet=None) -> tuple[excel.SheetInfo, list[list[str]]]:
    dst = tmp_path / "out.csv"
    info = excel.xlsx_to_csv(str(src), str(dst), sheet)
    return info, read_csv(dst)


# ----------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------


def test_cell_values_become_canonical_csv_text(tmp_path):
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "Trials"
    ws.append(["participant", "n", "x", "ok", "at", "day", "clock", "note"])
    ws.append(["007", 3, 3.0, True, D(2024, 10, 23, 13, 56, 15), None, None, "grün"])
    ws.append(["P2", -5, 0.1, False, D(2024, 10, 23, 13, 56, 15, 156000)])
    ws.append(["P3", 2**40, -1.5, None, D(2024, 10, 23), None, None, "a,b\nc"])
    ws.append(["P4", 0, 2.0**60, None, None, None, None, '"quoted"'])
    ws.append(["P5", 0, 1e-05, None, None, None, None, "=A1"])  # a formula
    ws["F2"] = dt.date(2024, 10, 23)
    ws["F2"].number_format = "yyyy-mm-dd"
    ws["G2"] = dt.time(13, 56, 15)
    path = tmp_path / "trials.xlsx"
    book.save(path)

    info, rows = convert(path, tmp_path)

    assert info == excel.SheetInfo("Trials", ["Trials"], 6)
    assert rows == [
        ["participant", "n", "x", "ok", "at", "day", "clock", "note"],
        ["007", "3", "3", "true", "2024-10-23T13:56:15", "2024-10-23", "13:56:15",
         "grün"],
        ["P2", "-5", "0.1", "false", "2024-10-23T13:56:15.156000", "", "", ""],
        ["P3", str(2**40), "-1.5", "", "2024-10-23T00:00:00", "", "", "a,b\nc"],
        ["P4", "0", "1.152921504606847e+18", "", "", "", "", '"quoted"'],
        ["P5", "0", "1e-05", "", "", "", "", ""],  # never computed: no cached value
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "text"),
    [
        ("4611686018427387904", "4611686018427387904"),  # an int stays exact
        ("3.0", "3"),
        ("-0.0", "-0"),  # integral, and the sign of zero survives
        ("9007199254740992.0", "9007199254740992"),  # 2**53
        ("1E+20", "1e+20"),  # beyond 2**53: shortest round-trip digits
        ("0.30000000000000004", "0.30000000000000004"),
        ("5e-324", "5e-324"),
    ],
)
def test_numbers_keep_their_digits(tmp_path, stored, text):
    path = raw_workbook(
        tmp_path / "n.xlsx",
        '<row r="1">' + inline("A1", "x") + f'</row><row r="2"><c r="A2"><v>{stored}'
        "</v></c></row>",
    )
    _info, rows = convert(path, tmp_path)
    assert rows == [["x"], [text]]


def test_csv_is_utf8_without_bom_with_lf_line_ends(tmp_path):
    path = raw_workbook(
        tmp_path / "a.xlsx",
        '<row r="1">' + inline("A1", "name") + inline("B1", "text") + "</row>"
        '<row r="2">' + inline("A2", "Ünïcödé 😀") + inline("B2", "x") + "</row>",
    )
    excel.xlsx_to_csv(path, str(tmp_path / "out.csv"))
    data = (tmp_path / "out.csv").read_bytes()
    assert data == "name,text\nÜnïcödé 😀,x\n".encode()


def test_cached_formula_values_errors_and_shared_strings(tmp_path):
    path = raw_workbook(
        tmp_path / "f.xlsx",
        '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c>'
        '<c r="C1" t="s"><v>2</v></c></row>'
        '<row r="2"><c r="A2"><f>1+1</f><v>2</v></c>'
        '<c r="B2" t="str"><f>"a"&amp;"b"</f><v>ab</v></c>'
        '<c r="C2" t="e"><f>1/0</f><v>#DIV/0!</v></c></row>'
        '<row r="3"><c r="A3"><f>A2*2</f></c><c r="B3" t="e"><v>#N/A</v></c>'
        '<c r="C3" t="s"><v>3</v></c></row>',
        shared=["sum", "joined", "error", "line_x000D_\nbreak"],
    )
    _info, rows = convert(path, tmp_path)
    assert rows == [
        ["sum", "joined", "error"],
        ["2", "ab", "#DIV/0!"],
        ["", "#N/A", "line\r\nbreak"],
    ]


def test_empty_rows_are_skipped_and_rows_padded_or_trimmed_to_the_header(tmp_path):
    path = raw_workbook(
        tmp_path / "g.xlsx",
        '<row r="2">' + inline("A2", "a") + inline("B2", "b") + inline("C2", "c")
        + "</row>"
        '<row r="3"><c r="A3" s="0"/><c r="B3"/></row>'  # styled but empty
        '<row r="4">' + inline("A4", "1") + "</row>"
        '<row r="6">' + inline("B6", "2") + inline("E6", "") + "</row>"
        '<row r="7">' + inline("A7", "3") + inline("E7", "extra") + "</row>",
    )  # fmt: skip
    info, rows = convert(path, tmp_path)
    assert rows == [
        ["a", "b", "c"],
        ["1", "", ""],
        ["", "2", ""],
        ["3", "", "", "", "extra"],  # a cell beyond the header is kept for the check
    ]
    assert info.rows == 4


def test_a_wrong_dimension_does_not_cut_rows_off(tmp_path):
    rows_xml = "".join(
        f'<row r="{i}">' + inline(f"A{i}", f"v{i}") + inline(f"B{i}", "w") + "</row>"
        for i in range(1, 6)
    )
    path = raw_workbook(
        tmp_path / "d.xlsx", rows_xml, dimension='<dimension ref="A1:A2"/>'
    )
    _info, rows = convert(path, tmp_path)
    assert rows == [[f"v{i}", "w"] for i in range(1, 6)]


def test_escaped_characters_are_decoded_and_lookalikes_kept(tmp_path):
    path = raw_workbook(
        tmp_path / "e.xlsx",
        '<row r="1">' + inline("A1", "t") + "</row>"
        '<row r="2">' + inline("A2", "a_x000D_b_x0001_c") + "</row>"
        '<row r="3">' + inline("A3", "_x005F_x000D_ stays") + "</row>"
        '<row r="4">' + inline("A4", "_x0041_ is not a control") + "</row>",
    )
    _info, rows = convert(path, tmp_path)
    assert [r[0] for r in rows[1:]] == [
        "a\rb\x01c",
        "_x000D_ stays",
        "_x0041_ is not a control",
    ]


def test_output_is_read_by_the_import_pipeline_unchanged(tmp_path):
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(["participant_id", "rt", "word"])
    ws.append(["007", 0.25, 'say "hi",\nthen go'])
    ws.append(["P2", None, ";tab\there"])
    book.save(tmp_path / "p.xlsx")
    excel.xlsx_to_csv(str(tmp_path / "p.xlsx"), str(tmp_path / "p.csv"))
    fmt = reading.sniff(str(tmp_path / "p.csv"))
    assert fmt == reading.CsvFormat("utf-8", ",")
    records = [cells for _line, cells in reading.records(str(tmp_path / "p.csv"), fmt)]
    assert records == [
        ["participant_id", "rt", "word"],
        ["007", "0.25", 'say "hi",\nthen go'],
        ["P2", "", ";tab\there"],
    ]


def _typed(text: str):
    """A cell as a lab's own workbook holds it: numbers as numbers, "007" as text."""
    digits = text.lstrip("-")
    if len(digits) > 1 and digits[0] == "0" and digits[1] != ".":
        return text  # a zero-padded code
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def test_a_sample_export_saved_as_xlsx_reads_back_as_its_csv(tmp_path):
    sample = SAMPLES / "psychopy_stroop.csv"
    with open(sample, encoding="utf-8", newline="") as f:
        original = list(csv.reader(f))
    book = openpyxl.Workbook(write_only=True)
    ws = book.create_sheet("stroop")
    for record in original:
        ws.append([_typed(c) if c else None for c in record])
    book.save(tmp_path / "stroop.xlsx")

    _info, rows = convert(tmp_path / "stroop.xlsx", tmp_path)

    width = len(rows[0])
    assert original[0][width:] == [""]  # PsychoPy's trailing comma: trimmed
    assert len(rows) == len(original) == 60
    for got, want in zip(rows, original, strict=True):
        want = want[:width]
        for a, b in zip(got, want, strict=True):
            assert a == b or float(a) == float(b), (a, b)
    assert {r[rows[0].index("participant")] for r in rows[1:]} == {"007"}


def two_sheets(path) -> str:
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["about this file"])
    data = book.create_sheet("Trials (v2)")
    data.append(["participant_id", "rt"])
    data.append(["P1", 0.5])
    book.create_sheet("Empty")
    book.active = 1
    book.save(path)
    return str(path)


def test_sheets_are_listed_and_the_active_one_is_read_by_default(tmp_path):
    path = two_sheets(tmp_path / "two.xlsx")
    assert excel.sheet_names(path) == ["Notes", "Trials (v2)", "Empty"]
    info, rows = convert(path, tmp_path)
    assert info.name == "Trials (v2)" and rows == [
        ["participant_id", "rt"],
        ["P1", "0.5"],
    ]
    info, rows = convert(path, tmp_path, sheet="Notes")
    assert info == excel.SheetInfo("Notes", ["Notes", "Trials (v2)", "Empty"], 1)


def test_unknown_or_empty_sheet_is_refused_naming_the_sheets(tmp_path):
    path = two_sheets(tmp_path / "two.xlsx")
    with pytest.raises(FileRefused) as refused:
        convert(path, tmp_path, sheet="Data")
    assert refused.value.message == (
        "The workbook has no sheet “Data”; its sheets are “Notes”, “Trials (v2)”, "
        "“Empty”."
    )
    with pytest.raises(FileRefused, match="The sheet “Empty” is empty"):
        convert(path, tmp_path, sheet="Empty")
    assert not (tmp_path / "out.csv").exists()  # no half-written file is left


def truncated(tmp_path) -> str:
    whole = Path(two_sheets(tmp_path / "whole.xlsx")).read_bytes()
    (tmp_path / "cut.xlsx").write_bytes(whole[: len(whole) // 2])
    return str(tmp_path / "cut.xlsx")


def corrupt_member(tmp_path) -> str:
    path = Path(two_sheets(tmp_path / "whole.xlsx"))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("xl/worksheets/sheet2.xml")
    start = info.header_offset + 30 + len(info.filename) + 5
    data[start : start + 40] = bytes(40)  # zeros inside the deflated sheet
    path.write_bytes(bytes(data))
    return str(path)


def renamed_zip(tmp_path) -> str:
    with zipfile.ZipFile(tmp_path / "data.xlsx", "w") as archive:
        archive.writestr("data.csv", "participant_id\nP1\n")
    return str(tmp_path / "data.xlsx")


def ole2(tmp_path) -> str:
    (tmp_path / "old.xls").write_bytes(excel.OLE2_MAGIC + bytes(504))
    return str(tmp_path / "old.xls")


def broken_xml(tmp_path) -> str:
    return raw_workbook(
        tmp_path / "x.xlsx", '<row r="1">' + inline("A1", "a") + "</row><row"
    )


def missing_sheet(tmp_path) -> str:
    path = raw_workbook(tmp_path / "m.xlsx", '<row r="1"/>')
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / "m2.xlsx", "w") as d:
        for item in src.infolist():
            if item.filename != "xl/worksheets/sheet1.xml":
                d.writestr(item, src.read(item))
    return str(tmp_path / "m2.xlsx")


def ods(tmp_path) -> str:
    with zipfile.ZipFile(tmp_path / "s.ods", "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")
    return str(tmp_path / "s.ods")


def empty_sheet(tmp_path) -> str:
    return raw_workbook(tmp_path / "e.xlsx", "")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (renamed_zip, "The file is a zip file but not an Excel workbook."),
        (ods, "It is an OpenDocument file (.ods)"),
        (ole2, "password-protected or in the old .xls format; save it as .xlsx "
               "without a password or as CSV UTF-8"),
        (truncated, "damaged or incomplete"),
        (corrupt_member, "damaged or incomplete"),
        (broken_xml, "damaged or incomplete"),
        (missing_sheet, "has no worksheet to read"),
        (empty_sheet, "The sheet “Data” is empty: it needs a header row"),
    ],
)  # fmt: skip
def test_malformed_workbooks_are_refused_with_a_clear_message(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(FileRefused) as refused:
        excel.xlsx_to_csv(path, str(tmp_path / "out.csv"))
    assert message in refused.value.message
    assert refused.value.status == 422
    try:  # the names are in the workbook part: a damaged sheet shows only on reading
        excel.sheet_names(path)
    except FileRefused as exc:
        assert exc.message == refused.value.message


def test_a_sheet_over_excels_row_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(excel, "MAX_XLSX_ROWS", 3)
    rows_xml = "".join(
        f'<row r="{i}">' + inline(f"A{i}", str(i)) + "</row>" for i in range(1, 5)
    )
    path = raw_workbook(tmp_path / "big.xlsx", rows_xml)
    with pytest.raises(FileRefused, match="more than 3 rows"):
        excel.xlsx_to_csv(path, str(tmp_path / "out.csv"))


def test_shared_strings_that_expand_too_far_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(excel, "MAX_SHARED_STRINGS_BYTES", 100)
    path = raw_workbook(tmp_path / "s.xlsx", '<row r="1"/>', shared=["x" * 200])
    with pytest.raises(FileRefused, match="distinct texts"):
        excel.sheet_names(path)


def test_is_xlsx_looks_at_the_content_not_the_name(tmp_path):
    workbook = Path(two_sheets(tmp_path / "upload-123"))  # no extension at all
    csv_named_xlsx = tmp_path / "data.xlsx"
    csv_named_xlsx.write_text("participant_id\nP1\n")
    tiny = tmp_path / "tiny.xlsx"
    tiny.write_bytes(b"PK")
    empty_csv = tmp_path / "empty.csv"
    empty_csv.write_bytes(b"")
    assert excel.is_xlsx(str(workbook))
    assert excel.is_xlsx(str(workbook), "results.csv")
    assert not excel.is_xlsx(str(csv_named_xlsx), "data.xlsx")
    assert excel.is_xlsx(ole2(tmp_path))
    assert excel.is_xlsx(renamed_zip(tmp_path))  # refused by xlsx_to_csv, with why
    assert excel.is_xlsx(str(tiny), "tiny.xlsx")
    assert not excel.is_xlsx(str(tiny), "tiny.csv")
    assert not excel.is_xlsx(str(empty_csv), "empty.csv")


def test_an_uploaded_workbook_without_extension_is_read(tmp_path):
    path = two_sheets(tmp_path / "upload-123")
    info, _rows = convert(path, tmp_path)
    assert info.name == "Trials (v2)"


def _peak_bytes(path, tmp_path) -> int:
    tracemalloc.start()
    try:
        excel.xlsx_to_csv(path, str(tmp_path / "out.csv"))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_streams_memory_grows_by_bytes_per_row_not_by_the_sheet(tmp_path):
    """Rows are parsed one at a time. openpyxl keeps each parsed <row> element, cleared
    (~150 bytes), so memory is not perfectly flat: a budget of 400 bytes per row holds
    that; a reader that loads the sheet needs kilobytes per row of three cells.
    """

    def sheet(n):
        return "".join(
            f'<row r="{i}">' + inline(f"A{i}", f"P{i:05d}")
            + f'<c r="B{i}"><v>{i / 7!r}</v></c><c r="C{i}" t="b"><v>1</v></c></row>'
            for i in range(1, n + 1)
        )  # fmt: skip

    small = raw_workbook(tmp_path / "small.xlsx", sheet(1_000))
    large = raw_workbook(tmp_path / "large.xlsx", sheet(10_000))
    _peak_bytes(small, tmp_path)  # imports and caches warmed up
    growth = _peak_bytes(large, tmp_path) - _peak_bytes(small, tmp_path)
    assert growth / 9_000 < 400
    assert len(read_csv(tmp_path / "out.csv")) == 1_000


# ----------------------------------------------------------------------
# Writing: sheet names, escapes, the file's chunks
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "title"),
    [
        (("Pilot",), "Pilot"),
        (("a/b\\c*d?e:f[g]h",), "a b c d e f g h"),
        (("x" * 40,), "x" * 31),
        (("😀" * 20,), "😀" * 15),  # Excel counts UTF-16 units
        (("'quoted'",), "quoted"),
        (("History", "stroop_data"), "stroop_data"),
        (("Columns", "stroop_data"), "stroop_data"),
        (("", "  ", "stroop_data"), "stroop_data"),
        (("line\nbreak\ttab",), "line break tab"),
        (("columns",), "data"),
    ],
)
def test_sheet_titles_follow_excels_rules(candidates, title):
    assert excel.sheet_title(*candidates) == title


def test_escape_text_round_trips_through_unescape():
    for text in ("plain", "a\rb", "\x01\x1f", "_x000D_", "_x005F_", "\ufffe\uffff", ""):
        assert excel.unescape_text(excel.escape_text(text)) == text
    assert excel.escape_text("a\nb\tc") == "a\nb\tc"  # legal in XML: as they are


def test_file_chunks_delete_the_file_when_read_or_closed(tmp_path):
    for read in (True, False):
        handle, path = tempfile.mkstemp(dir=tmp_path)
        os.write(handle, b"x" * (excel.CHUNK_BYTES + 10))
        os.close(handle)
        chunks = excel.FileChunks(path)
        assert chunks.size == excel.CHUNK_BYTES + 10
        if read:
            assert [len(c) for c in chunks] == [excel.CHUNK_BYTES, 10]
        else:
            chunks.close()
        assert not os.path.exists(path)
        assert list(chunks) == []


# ----------------------------------------------------------------------
# The download
# ----------------------------------------------------------------------

EXTRA_ROWS = [
    dict(participant_id="P11", n=5, x=0.30000000000000004, s="=1+1", t="#N/A",
         b=True, d=D(1899, 12, 31, 23, 59, 59), j={"=": "=1+1"}),
    dict(participant_id="P12", n=6, x=-1e-300, s="_x000D_", t="a\x0bb\ufffec",
         b=False, d=D(1900, 1, 1), j=[None]),
    dict(participant_id="P13", n=7, x=2.0**53 + 2, s="#DIV/0!", t="@SUM(1)",
         b=None, d=D(1900, 2, 28, 12), j="=x"),
]  # fmt: skip
ROWS = TRICKY_ROWS + EXTRA_ROWS


@pytest.fixture
def data(db):
    xtype = make_type("Round trip", "round_trip_data", EVERY_TYPE)
    experiment = make_experiment(xtype, "Tricky values: [all] of them?")
    make_rows(xtype, experiment, ROWS)
    other = make_experiment(xtype, "Other")
    make_rows(xtype, other, [dict(participant_id="X1", n=1)])
    return SimpleNamespace(
        xtype=xtype,
        experiment=experiment,
        url=f"/experiments/{experiment.uuid}",
        type_url=f"/types/{xtype.id}",
    )


def download_xlsx(client, url: str, tmp_path) -> Path:
    response = client.get(url)
    assert response.status_code == 200, response.data[-600:]
    assert response.mimetype == excel.XLSX_MIME
    assert int(response.headers["Content-Length"]) == len(response.data)
    path = tmp_path / "download.xlsx"
    path.write_bytes(response.data)
    return path


def xlsx_as_csv(path: Path, tmp_path) -> bytes:
    excel.xlsx_to_csv(str(path), str(tmp_path / "download.csv"))
    return (tmp_path / "download.csv").read_bytes()


def cut_to_milliseconds(rows, names):
    for row in rows:
        for name in names:
            if isinstance(row.get(name), dt.datetime):
                value = row[name]
                row[name] = value.replace(microsecond=value.microsecond // 1000 * 1000)
    return rows


@pytest.mark.parametrize("neutralise", ["0", "1"])
@pytest.mark.parametrize("scope", ["experiment", "type"])
def test_xlsx_reads_back_as_the_same_values_as_the_csv(
    client, data, tmp_path, neutralise, scope
):
    base = data.url if scope == "experiment" else data.type_url
    query = f"?_neutralise={neutralise}&_timestamps=1"
    path = download_xlsx(client, f"{base}/export.xlsx{query}", tmp_path)
    csv_data = client.get(f"{base}/export.csv{query}").data
    types = export_types(data.xtype)

    from_csv = parse_export(csv_data, types)
    from_xlsx = parse_export(xlsx_as_csv(path, tmp_path), types)

    header = csv_data.decode().split("\r\n", 1)[0].split(",")
    datetimes = [n for n in header if types[n] == "DATETIME"]
    assert len(from_csv) == len(ROWS) + (1 if scope == "type" else 0)
    assert_same_rows(cut_to_milliseconds(from_csv, datetimes), from_xlsx, header)
    zeros = [r["x"] for r in from_xlsx if r["x"] == 0]
    assert [math.copysign(1.0, z) for z in zeros] == [-1.0]  # -0.0 keeps its sign
    formulas = {r["s"] for r in from_xlsx if r["s"] and "1+1" in r["s"]}
    assert formulas == ({"=1+1"} if neutralise == "0" else {"'=1+1"})


def test_cells_are_typed_and_text_is_never_a_formula(client, data, tmp_path):
    path = download_xlsx(client, f"{data.url}/export.xlsx?_neutralise=0", tmp_path)
    book = openpyxl.load_workbook(path)  # the full reader: types and styles
    assert book.sheetnames == ["Tricky values all of them", "columns"]
    ws = book.worksheets[0]
    header = [c.value for c in ws[1]]
    assert header == ["id", "participant_id", "n", "x", "s", "t", "b", "d", "j"]
    assert all(c.font.b for c in ws[1])
    assert ws.freeze_panes == "A2"
    by_pid = {
        row[1].value: dict(zip(header, row, strict=True)) for row in ws.iter_rows(2)
    }
    p1, p11, p13 = by_pid["P1"], by_pid["P11"], by_pid["P13"]
    assert (p1["n"].data_type, p1["n"].value) == ("n", 0)
    assert (p1["x"].data_type, p1["x"].value) == ("n", 0.1)
    assert (p1["b"].data_type, p1["b"].value) == ("b", True)
    assert p1["d"].is_date and p1["d"].value == D(2024, 3, 4, 14, 30)
    assert p1["j"].data_type == "s" and p1["j"].value == '{"a":{"b":[1,2,{"c":null}]}}'
    assert (p11["s"].data_type, p11["s"].value) == ("s", "=1+1")
    assert (p11["t"].data_type, p11["t"].value) == ("s", "#N/A")
    assert (p13["s"].data_type, p13["s"].value) == ("s", "#DIV/0!")
    assert p11["x"].value == 0.30000000000000004  # not rounded to 16 digits
    assert p11["d"].data_type == "s" and p11["d"].value == "1899-12-31T23:59:59Z"
    assert p13["d"].value == D(1900, 2, 28, 12)
    assert by_pid["P6"]["d"].number_format.endswith(".000")  # milliseconds shown
    assert ws.column_dimensions["H"].width >= 19  # wide enough for a datetime
    with zipfile.ZipFile(path) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
    assert b"<f>" not in sheet


def test_the_columns_sheet_is_the_data_dictionary(client, db, tmp_path):
    xtype = make_type(
        "Described",
        "described_data",
        [
            ColumnDef("rt", "FLOAT", False, "Seconds from onset"),
            ColumnDef("note", "TEXT", True, "=notes typed by the RA"),
        ],
    )
    experiment = make_experiment(xtype, "Pilot")
    make_rows(xtype, experiment, [dict(participant_id="P1", rt=0.5)])
    path = download_xlsx(
        client, f"/experiments/{experiment.uuid}/export.xlsx?_hide=note", tmp_path
    )
    ws = openpyxl.load_workbook(path)["columns"]
    rows = [[c.value for c in row] for row in ws.iter_rows()]
    assert rows[0] == ["name", "type", "nullable", "description"]
    assert rows[1][:3] == ["id", "INTEGER", False]
    assert rows[2][:3] == ["participant_id", "STRING", False]
    assert rows[3] == ["rt", "FLOAT", False, "Seconds from onset"]
    assert len(rows) == 4  # the hidden column is not in the file, nor here
    path = download_xlsx(
        client, f"/experiments/{experiment.uuid}/export.xlsx", tmp_path
    )
    ws = openpyxl.load_workbook(path)["columns"]
    assert ws["D5"].value == "'=notes typed by the RA" and ws["D5"].data_type == "s"


def test_xlsx_keeps_the_views_filters_sort_and_columns(client, data, tmp_path):
    query = "?n__gt=2&_sort=n&_dir=desc&_hide=t&_hide=j&_id=0"
    path = download_xlsx(client, f"{data.url}/export.xlsx{query}", tmp_path)
    rows = list(csv.reader(io.StringIO(xlsx_as_csv(path, tmp_path).decode())))
    csv_rows = list(
        csv.reader(io.StringIO(client.get(f"{data.url}/export.csv{query}").text))
    )
    assert rows[0] == csv_rows[0] == ["participant_id", "n", "x", "s", "b", "d"]
    assert [r[1] for r in rows[1:]] == [r[1] for r in csv_rows[1:]]
    assert [int(r[1]) for r in rows[1:]] == sorted(
        (r["n"] for r in ROWS if (r["n"] or 0) > 2), reverse=True
    )


def test_download_form_goes_on_to_the_xlsx_with_the_view(client, data):
    response = client.get(
        f"{data.url}/export/download?n__gt=2&_sort=n&_neutralise=0&_bom=1"
        "&_dictionary=1&_format=xlsx"
    )
    assert response.status_code == 303
    target = urlsplit(response.headers["Location"])
    assert target.path == f"{data.url}/export.xlsx"
    assert parse_qsl(target.query) == [
        ("n__gt", "2"),
        ("_sort", "n"),
        ("_neutralise", "0"),
    ]
    response = client.get(f"{data.type_url}/export/download?_format=xlsx")
    assert response.headers["Location"] == f"{data.type_url}/export.xlsx"


def audit_entries(db):
    return db.session.scalars(
        sa.select(AuditEntry)
        .where(AuditEntry.action == "rows.export")
        .order_by(AuditEntry.id)
    ).all()


def test_xlsx_downloads_are_audited_like_csv(client, data, db, tmp_path):
    download_xlsx(client, f"{data.url}/export.xlsx?n__gt=2", tmp_path)
    (entry,) = audit_entries(db)
    assert entry.details["format"] == "xlsx"
    assert entry.details["filters"] == ["n > 2"]
    assert entry.summary.endswith("(XLSX)")
    assert client.head(f"{data.url}/export.xlsx").status_code == 200
    assert len(audit_entries(db)) == 1  # a HEAD request is not an export


def test_over_the_row_limit_nothing_is_written(client, data, db, monkeypatch):
    monkeypatch.setattr(excel, "MAX_XLSX_ROWS", len(ROWS))  # header + rows > limit
    before = temporary_files()
    response = client.get(f"{data.url}/export.xlsx")
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert (
        f"This export has {len(ROWS)} rows; Excel sheets hold at most {len(ROWS)} rows "
        "(header included). Download CSV instead or filter the rows."
    ) in text
    assert "Traceback" not in text
    assert audit_entries(db) == []
    assert temporary_files() == before
    filtered = client.get(f"{data.url}/export.xlsx?n__gt=2")  # fewer rows: fits
    assert filtered.status_code == 200


def test_type_export_over_the_limit_says_more_than(client, data, monkeypatch):
    monkeypatch.setattr(excel, "MAX_XLSX_ROWS", 3)
    response = client.get(f"{data.type_url}/export.xlsx?n__gt=0")
    assert response.status_code == 422
    assert "This export has more than 3 rows" in response.get_data(as_text=True)


def test_rows_arriving_after_the_count_still_cannot_overflow(
    app, data, db, monkeypatch, tmp_path
):
    monkeypatch.setattr(excel, "MAX_XLSX_ROWS", 4)
    with app.test_request_context():
        plan = exporting.plan_export(data.xtype, {}, data.experiment)
        with pytest.raises(excel.ExcelLimit, match="more than 3 rows"):
            excel.write_xlsx(plan, str(tmp_path / "x.xlsx"))


def test_a_text_longer_than_a_cell_is_refused_naming_row_and_column(
    client, db, tmp_path
):
    before = temporary_files()
    xtype = make_type("Long", "long_data", [ColumnDef("essay", "TEXT")])
    experiment = make_experiment(xtype, "Pilot")
    make_rows(
        xtype,
        experiment,
        [
            dict(participant_id="P1", essay="ok"),
            dict(participant_id="P2", essay="x" * 40_000),
        ],
    )
    response = client.get(f"/experiments/{experiment.uuid}/export.xlsx")
    assert response.status_code == 422
    assert (
        "The value of row id 2, column essay, has 40,000 characters; an Excel cell "
        "holds at most 32,767. Download CSV instead"
    ) in response.get_data(as_text=True)
    assert temporary_files() == before  # the half-written workbook is gone too


def test_the_temporary_file_is_gone_after_the_download(client, data, monkeypatch):
    made = []
    real = tempfile.mkstemp

    def spy(*args, **kwargs):
        handle, path = real(*args, **kwargs)
        made.append(path)
        return handle, path

    monkeypatch.setattr(excel.tempfile, "mkstemp", spy)
    response = client.get(f"{data.url}/export.xlsx")
    assert response.status_code == 200 and response.data.startswith(b"PK")
    assert len(made) == 1 and not os.path.exists(made[0])
    assert client.head(f"{data.url}/export.xlsx").status_code == 200
    assert len(made) == 2 and not os.path.exists(made[1])


def temporary_files() -> set[str]:
    """Ours and openpyxl's own (one per sheet while a workbook is written)."""
    return {
        name
        for name in os.listdir(tempfile.gettempdir())
        if name.startswith(("wave-export-", "openpyxl."))
    }


def test_options_page_offers_excel_with_its_limit(client, data, monkeypatch):
    page = parse(client.get(f"{data.url}/export?n__gt=2").data)
    button = page.find("button", id="download-xlsx")
    assert button.attrs["name"] == "_format" and button.attrs["value"] == "xlsx"
    assert "disabled" not in button.attrs
    form = page.find("form", action=f"{data.url}/export/download")
    assert form.find("button", id="download-xlsx") is not None
    assert "1,048,576 rows (header included)" in page.find(id="xlsx-help").text
    monkeypatch.setattr(excel, "MAX_XLSX_ROWS", 3)
    page = parse(client.get(f"{data.url}/export").data)
    assert "disabled" in page.find("button", id="download-xlsx").attrs
    assert "Download CSV instead or filter the rows" in page.find(id="xlsx-help").text


@pytest.mark.parametrize("role", ["viewer", "researcher"])
def test_viewers_and_up_can_download_xlsx(app, data, role):
    client = app.test_client(user=role)
    assert client.get(f"{data.url}/export.xlsx").status_code == 200
    assert client.get(f"{data.type_url}/export.xlsx").status_code == 200


def test_signed_out_users_are_sent_to_sign_in(app, data):
    client = app.test_client(user=None)
    for url in (f"{data.url}/export.xlsx", f"{data.type_url}/export.xlsx"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]

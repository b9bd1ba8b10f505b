"""Excel workbooks: .xlsx uploads read as CSV, and typed .xlsx downloads of an export.

Reading uses openpyxl's read-only mode, which parses a sheet row by row as it is
read: memory stays flat in rows (only the workbook's table of distinct texts is held
whole). python-calamine reads ~15× faster but loads the whole sheet into memory
first (about 80 MB per 100,000 rows of 7 columns), so a 1M-row sheet would not fit.

Writing uses openpyxl's write-only mode into a temporary file, which is then streamed
back in chunks and deleted. Every text is written as a text cell (openpyxl would make
"=1+1" a formula and "#N/A" an error), floats with their shortest exact digits
(openpyxl's own "%.16g" would round 0.30000000000000004), and characters XML cannot
hold with the OOXML `_xHHHH_` escape, which Excel and this reader decode.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import math
import os
import re
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openpyxl
import sqlalchemy as sa
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.xml.constants import XLSM
from openpyxl.xml.constants import XLSX
from openpyxl.xml.constants import XLTM
from openpyxl.xml.constants import XLTX

from wave_web import columns
from wave_web.csv_io import exporting
from wave_web.csv_io.reading import FileRefused
from wave_web.errors import WaveError
from wave_web.queries import GridColumn

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_XLSX_ROWS = 1_048_576  # Excel's own limit, header included
MAX_CELL_CHARS = 32_767  # Excel's limit for the text of one cell
MAX_SHEET_TITLE = 31  # Excel counts UTF-16 code units
# The table of distinct texts is read whole: bound what a small zip may expand to.
MAX_SHARED_STRINGS_BYTES = 512 * 1024 * 1024
CHUNK_BYTES = exporting.CHUNK_BYTES
BATCH_ROWS = exporting.BATCH_ROWS

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, or an encrypted .xlsx
EXCEL_EXTENSIONS = (".xlsx", ".xlsm", ".xltx", ".xltm", ".xls", ".xlsb")
WORKBOOK_PART = "xl/workbook.xml"
SHARED_STRINGS_PART = "xl/sharedStrings.xml"
WORKBOOK_TYPES = tuple(t.encode() for t in (XLSX, XLSM, XLTX, XLTM))

# openpyxl warns about parts it skips (data validation, print settings, …): noise.
warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl\.")

# What openpyxl and the zip and XML layers below it raise on a damaged workbook.
READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,  # a deflated member cut short
    KeyError,  # a part the workbook names is missing
    IndexError,  # a cell points past the table of texts
    InvalidFileException,
    ValueError,  # openpyxl wraps broken XML in ValueError
    TypeError,
    SyntaxError,  # xml.etree's ParseError (and lxml's) when a sheet is read
)

OLE2_MESSAGE = (
    "The file is password-protected or in the old .xls format; save it as .xlsx "
    "without a password or as CSV UTF-8."
)
DAMAGED_MESSAGE = (
    "The Excel workbook is damaged or incomplete (was the upload cut short?). Open "
    "it in Excel, save it again as .xlsx (or as CSV UTF-8) and upload that file."
)


# ----------------------------------------------------------------------
# What kind of file
# ----------------------------------------------------------------------


def _signature(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(8)


def is_xlsx(path: str, file_name: str = "") -> bool:
    """True when the file is to be read as an Excel workbook, judged by its content.

    A zip holding xl/workbook.xml is a workbook. Any other zip (.xlsb, .ods, a zip
    of CSV files) and any OLE2 compound file (an old .xls, a password-protected
    .xlsx) answer True too: they are never CSV, and xlsx_to_csv refuses them with a
    message that says what they are. `file_name` only decides for a file too short
    to carry a signature: named .xlsx, .xls, … it goes to the workbook reader.
    """
    head = _signature(path)
    if head.startswith(ZIP_MAGIC) or head.startswith(OLE2_MAGIC):
        return True
    return len(head) < len(OLE2_MAGIC) and file_name.lower().endswith(EXCEL_EXTENSIONS)


def _not_a_workbook(archive: zipfile.ZipFile) -> str:
    names = set(archive.namelist())
    what = "Save the sheet as .xlsx or as CSV UTF-8 and upload that file."
    if "xl/workbook.bin" in names:
        what = "It is a binary workbook (.xlsb): save it as .xlsx or as CSV UTF-8."
    elif "mimetype" in names and b"opendocument" in archive.read("mimetype")[:100]:
        what = (
            "It is an OpenDocument file (.ods): save it as .xlsx or as CSV UTF-8 "
            "(LibreOffice: File › Save As)."
        )
    elif "word/document.xml" in names:
        what = "It is a Word document. " + what
    return f"The file is a zip file but not an Excel workbook. {what}"


def _is_workbook(archive: zipfile.ZipFile) -> bool:
    names = set(archive.namelist())
    if WORKBOOK_PART in names:
        return True
    if "[Content_Types].xml" not in names:
        return False
    manifest = archive.read("[Content_Types].xml")  # small: one line per part
    return any(t in manifest for t in WORKBOOK_TYPES)


def _check_container(path: str) -> None:
    """FileRefused unless the file is a zip that holds a workbook of sane size."""
    head = _signature(path)
    if head.startswith(OLE2_MAGIC):
        raise FileRefused(OLE2_MESSAGE)
    if not head:
        raise FileRefused("The file is empty: it needs a header row and data rows.")
    if not head.startswith(ZIP_MAGIC):
        raise FileRefused(
            "The file is not an Excel workbook (.xlsx). If it holds text, save it "
            "as CSV UTF-8 and upload that file."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            if not _is_workbook(archive):
                raise FileRefused(_not_a_workbook(archive))
            names = set(archive.namelist())
            if SHARED_STRINGS_PART in names:
                size = archive.getinfo(SHARED_STRINGS_PART).file_size
                if size > MAX_SHARED_STRINGS_BYTES:
                    raise FileRefused(
                        "The workbook holds more than "
                        f"{MAX_SHARED_STRINGS_BYTES // (1024 * 1024)} MB of distinct "
                        "texts; save the sheet as CSV UTF-8 and upload that file."
                    )
    except READ_ERRORS:
        raise FileRefused(DAMAGED_MESSAGE) from None


class _Workbook:
    """A read-only workbook opened from a path; FileRefused when it cannot be read.

    The file is opened as a file object: openpyxl refuses a path whose name does not
    end in .xlsx, and uploads are stored under names of our own.
    """

    def __init__(self, path: str) -> None:
        _check_container(path)
        self.file = open(path, "rb")  # noqa: SIM115 - closed in __exit__
        try:
            self.book = openpyxl.load_workbook(
                self.file, read_only=True, data_only=True
            )
        except READ_ERRORS:
            self.file.close()
            raise FileRefused(DAMAGED_MESSAGE) from None
        except BaseException:
            self.file.close()
            raise

    def __enter__(self) -> Any:
        return self.book

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        self.book.close()
        self.file.close()
        if exc is not None and isinstance(exc, READ_ERRORS):
            raise FileRefused(DAMAGED_MESSAGE) from None


def sheet_names(path: str) -> list[str]:
    """The workbook's worksheet names in tab order; FileRefused if unreadable."""
    with _Workbook(path) as book:
        return [ws.title for ws in _worksheets(book)]


# ----------------------------------------------------------------------
# Reading a sheet as CSV
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class SheetInfo:
    """What xlsx_to_csv read: the sheet, the workbook's sheets, the records written."""

    name: str
    sheets: list[str]  # all sheet names, for a chooser
    rows: int  # records written (header included)


def _quote_names(names: Sequence[str]) -> str:
    return ", ".join(f"“{columns.shorten(n)}”" for n in names)


def _worksheets(book: Any) -> list[Any]:
    sheets = book.worksheets
    if not sheets:
        raise FileRefused(
            "The workbook has no worksheet to read: only charts, or its sheets are "
            "missing from the file (is it damaged?)."
        )
    return sheets


def _choose_sheet(book: Any, sheet: str | None) -> Any:
    sheets = _worksheets(book)
    if sheet is None:
        active = book.active  # the sheet Excel shows on opening
        return active if active in sheets else sheets[0]
    for ws in sheets:
        if ws.title == sheet:
            return ws
    raise FileRefused(
        f"The workbook has no sheet “{columns.shorten(sheet)}”; its sheets are "
        f"{_quote_names([ws.title for ws in sheets])}."
    )


# A number format shows a time when it has hours or seconds outside quoted text,
# escapes and [colour]/[$-locale] sections ("m" alone is the month).
_FORMAT_NOISE = re.compile(r'"[^"]*"|\\.|\[(?![hms]+\])[^\]]*\]')


def _is_date_format(number_format: str) -> bool:
    code = _FORMAT_NOISE.sub("", number_format.lower())
    return "h" not in code and "s" not in code


# Characters the writer (and Excel) escape as _xHHHH_: controls, "_" before a
# lookalike, and U+FFFE/U+FFFF. openpyxl's table of texts already turned Excel's
# "_x005F_" into "_"; its inline texts (what this app writes) are left as stored.
_UNESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_ESCAPED_CODES = frozenset((*range(0x20), 0x5F, 0xFFFE, 0xFFFF))


def unescape_text(text: str) -> str:
    """Decode the OOXML `_xHHHH_` escapes of characters XML cannot hold."""
    if "_x" not in text:
        return text

    def decode(match: re.Match) -> str:
        code = int(match.group(1), 16)
        return chr(code) if code in _ESCAPED_CODES else match.group(0)

    return _UNESCAPE.sub(decode, text)


def _duration_text(value: dt.timedelta) -> str:
    seconds = value.days * 86400 + value.seconds
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(seconds), 3600)
    text = f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return text + (f".{value.microseconds:06d}" if value.microseconds else "")


def _float_text(value: float) -> str:
    if value.is_integer() and abs(value) <= 2**53:
        # "3", not "3.0"; "-0" keeps the sign of a negative zero
        return "-0" if math.copysign(1.0, value) < 0 and value == 0 else str(int(value))
    return repr(value)


def cell_text(value: Any, number_format: str = "General") -> str:
    """The CSV text of a cell value as openpyxl reads it (data_only)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return unescape_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time() and _is_date_format(number_format):
            return value.date().isoformat()
        return value.isoformat()  # microseconds only when not zero
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _duration_text(value)
    return str(value)


def _row_texts(cells: Sequence[Any]) -> list[str]:
    texts = [
        cell_text(c.value, c.number_format if isinstance(c.value, dt.datetime) else "")
        for c in cells
    ]
    while texts and texts[-1] == "":
        texts.pop()
    return texts


class _CsvWriter:
    """csv.writer with "\n" line ends that also quotes cells holding a CR.

    csv quotes only cells with characters of its line terminator: a bare CR would
    end the record for a reader.
    """

    def __init__(self, out: Any) -> None:
        self.plain = csv.writer(out, lineterminator="\n")
        self.quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, cells: list[str]) -> None:
        if any("\r" in c for c in cells):
            self.quoted.writerow(cells)
        else:
            self.plain.writerow(cells)


def _copy_rows(ws: Any, writer: _CsvWriter) -> int:
    """Write the sheet's non-empty rows; short rows are padded to the header's width."""
    ws.reset_dimensions()  # a wrong <dimension> would cut rows or columns off
    width = None
    rows = 0
    for cells in ws.iter_rows():
        texts = _row_texts(cells)
        if not texts:
            continue
        if width is None:
            width = len(texts)
        elif len(texts) < width:
            texts += [""] * (width - len(texts))
        rows += 1
        if rows > MAX_XLSX_ROWS:
            raise FileRefused(
                f"The sheet “{columns.shorten(ws.title)}” has more than "
                f"{MAX_XLSX_ROWS:,} rows, more than Excel allows: the file is not a "
                "valid workbook. Save it as CSV UTF-8 and upload that file."
            )
        writer.writerow(texts)
    return rows


def xlsx_to_csv(src: str, dst: str, sheet: str | None = None) -> SheetInfo:
    """Write one sheet of the workbook `src` to `dst` as CSV the import pipeline reads.

    UTF-8 without BOM, comma-separated, RFC 4180 quoting, "\\n" line ends; streamed
    row by row. `sheet` None is the sheet Excel opens on. Fully empty rows are
    skipped, trailing empty cells trimmed. FileRefused (and `dst` removed) when the
    workbook cannot be read, the sheet is unknown or empty.
    """
    try:
        with _Workbook(src) as book:
            ws = _choose_sheet(book, sheet)
            names = [s.title for s in book.worksheets]
            with open(dst, "w", encoding="utf-8", newline="") as out:
                rows = _copy_rows(ws, _CsvWriter(out))
        if rows == 0:
            raise FileRefused(
                f"The sheet “{columns.shorten(ws.title)}” is empty: it needs a header "
                "row and data rows."
                + (" Choose another sheet." if len(names) > 1 else "")
            )
    except FileRefused:
        _remove(dst)
        raise
    return SheetInfo(ws.title, names, rows)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


# ----------------------------------------------------------------------
# Writing an export
# ----------------------------------------------------------------------


class ExcelLimit(WaveError):
    """The export does not fit in an Excel sheet: too many rows, a cell too long."""

    status = 422


def too_many_rows(count: int, capped: bool = False) -> str:
    """The message for an export over Excel's row limit."""
    rows = f"more than {count:,}" if capped else f"{count:,}"
    return (
        f"This export has {rows} rows; Excel sheets hold at most {MAX_XLSX_ROWS:,} "
        "rows (header included). Download CSV instead or filter the rows."
    )


def fits_in_excel(count: int, capped: bool = False) -> bool:
    """True when `count` rows and the header fit in one sheet."""
    return not capped and count + 1 <= MAX_XLSX_ROWS


def check_row_limit(plan: exporting.ExportPlan) -> int:
    """The export's row count; ExcelLimit (422) before anything is written if over."""
    count, capped = exporting.count_rows(plan, cap=MAX_XLSX_ROWS)
    if not fits_in_excel(count, capped):
        raise ExcelLimit(too_many_rows(count, capped))
    return count


_BAD_TITLE = re.compile(r"[\\/*?:\[\]\x00-\x1f\x7f]")


def _utf16_prefix(text: str, limit: int) -> str:
    units = 0
    for i, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:i]
    return text


def sheet_title(*candidates: str) -> str:
    """The first candidate made a valid sheet name, else "data".

    Excel allows 31 characters, none of \\ / * ? : [ ], no apostrophe at either end;
    "History" is its own, "columns" is the dictionary sheet's.
    """
    for text in candidates:
        title = " ".join(_BAD_TITLE.sub(" ", text or "").split())
        title = _utf16_prefix(title, MAX_SHEET_TITLE).strip().strip("'").strip()
        if title and title.casefold() not in ("columns", "history"):
            return title
    return "data"


class _TooLong(Exception):
    """A text longer than an Excel cell holds."""


_ESCAPE = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\r\ufffe\uffff]|_(?=x[0-9A-Fa-f]{4}_)"
)
# openpyxl would store these as a formula or an error, not as text
_NOT_PLAIN = ("=", "#")


def escape_text(text: str) -> str:
    """`text` with characters XML cannot hold as OOXML `_xHHHH_` escapes.

    CR is escaped too: XML readers turn a literal CR into LF.
    """
    return _ESCAPE.sub(lambda m: f"_x{ord(m.group()):04X}_", text)


class _Cells:
    """Turns one database row into the cells of a sheet row, column by column."""

    def __init__(self, ws: Any, cols: Sequence[GridColumn], neutralise: bool) -> None:
        self.ws = ws
        self.names = [c.name for c in cols]
        self.neutralise = neutralise
        self.converters = [self._converter(c) for c in cols]

    def row(self, values: Sequence[Any]) -> list[Any]:
        try:
            return [
                None if v is None else f(v)
                for f, v in zip(self.converters, values, strict=True)
            ]
        except _TooLong:
            self._name_long_column(values)
            raise

    def _name_long_column(self, values: Sequence[Any]) -> None:
        for name, f, v in zip(self.names, self.converters, values, strict=True):
            try:
                if v is not None:
                    f(v)
            except _TooLong as exc:
                raise _TooLong(exc.args[0], name) from None

    def _converter(self, col: GridColumn) -> Callable[[Any], Any]:
        if col.type == "FLOAT":
            return self.number
        if col.type == "DATETIME":
            return self._datetimes()
        if col.type == "JSON":
            return lambda v: self.text(exporting.canonical_json(v))
        if col.type in exporting.TEXT_TYPES:
            if self.neutralise:
                return lambda v: self.text(exporting.neutralise(v))
            return self.text
        if col.type == "UUID":
            return str
        return _same  # INTEGER and BOOLEAN are cells of their own kind

    def text(self, value: str) -> Any:
        """A text cell holding exactly `value`, whatever it starts with."""
        escaped = escape_text(value)
        if len(escaped) > MAX_CELL_CHARS:
            raise _TooLong(len(value))
        if len(escaped) != len(value) or escaped.startswith(_NOT_PLAIN):
            cell = WriteOnlyCell(self.ws, value=escaped)
            cell.data_type = "s"
            return cell
        return value

    def number(self, value: float) -> Any:
        """A number cell with repr()'s shortest round-trip digits ("-0.0" included)."""
        cell = WriteOnlyCell(self.ws, value=repr(value))
        cell.data_type = "n"
        return cell

    def _datetimes(self) -> Callable[[dt.datetime], Any]:
        # one styled cell per format, reused row after row: a sheet row is written
        # out before the next one is made
        whole = WriteOnlyCell(self.ws)
        whole.number_format = "yyyy-mm-dd hh:mm:ss"
        fraction = WriteOnlyCell(self.ws)
        fraction.number_format = "yyyy-mm-dd hh:mm:ss.000"

        def convert(value: dt.datetime) -> Any:
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            if value < EXCEL_FIRST_DAY:  # Excel has no dates before 1900
                return self.text(columns.format_datetime(value))
            # Excel keeps milliseconds (and openpyxl reads them back rounded to
            # milliseconds): cut the microseconds, never round up into the next day
            milliseconds = value.microsecond // 1000
            cell = fraction if milliseconds else whole
            cell.value = value.replace(microsecond=milliseconds * 1000)
            return cell

        return convert


EXCEL_FIRST_DAY = dt.datetime(1900, 1, 1)


def _same(value: Any) -> Any:
    return value


def _column_width(col: GridColumn) -> float:
    widths = {"DATETIME": 23, "UUID": 38, "FLOAT": 14, "BOOLEAN": 8}
    return max(len(col.name) + 3, widths.get(col.type, 12))


def _header(ws: Any, names: Sequence[str]) -> list[Any]:
    bold = Font(bold=True)
    cells = []
    for name in names:
        cell = WriteOnlyCell(ws, value=name)
        cell.data_type = "s"
        cell.font = bold
        cells.append(cell)
    return cells


def _data_sheet(book: Any, plan: exporting.ExportPlan) -> Any:
    ws = book.create_sheet(
        sheet_title(
            plan.experiment.description if plan.experiment else plan.type_name,
            plan.table_name,
        )
    )
    ws.freeze_panes = "A2"
    for i, col in enumerate(plan.columns, 1):
        ws.column_dimensions[get_column_letter(i)].width = _column_width(col)
    ws.append(_header(ws, plan.header))
    return ws


DICTIONARY_HEADER = ("name", "type", "nullable", "description")


def _dictionary_sheet(book: Any, plan: exporting.ExportPlan) -> None:
    ws = book.create_sheet("columns")
    ws.freeze_panes = "A2"
    for letter, width in zip("ABCD", (24, 10, 10, 80), strict=True):
        ws.column_dimensions[letter].width = width
    ws.append(_header(ws, DICTIONARY_HEADER))
    cells = _Cells(ws, [], plan.options.neutralise)
    for col in plan.columns:
        entry = exporting.dictionary_entry(col)
        description = str(entry["description"] or "")
        if plan.options.neutralise:
            description = exporting.neutralise(description)
        text = cells.text(description) if description else None
        ws.append([col.name, col.type, bool(col.nullable), text])


def _statement(plan: exporting.ExportPlan) -> sa.Select:
    """The view's rows with typed values; JSON as its stored text."""
    table = plan.table
    return exporting.select_rows(
        plan,
        [
            sa.cast(table.c[c.name], sa.Text) if c.type == "JSON" else table.c[c.name]
            for c in plan.columns
        ],
    )


def write_xlsx(plan: exporting.ExportPlan, path: str) -> int:
    """Write the export as a workbook to `path`: the rows, then a "columns" sheet.

    Returns the rows written. ExcelLimit when the rows outgrow a sheet (the count
    was checked before, but rows may arrive meanwhile) or a text outgrows a cell.
    """
    book = openpyxl.Workbook(write_only=True)
    try:
        written = _write_rows(book, plan)
        _dictionary_sheet(book, plan)
    finally:
        # also after a failure (the caller deletes the incomplete file): saving is
        # what removes openpyxl's own temporary file of each sheet
        book.save(path)
    return written


def _write_rows(book: Any, plan: exporting.ExportPlan) -> int:
    ws = _data_sheet(book, plan)
    cells = _Cells(ws, plan.columns, plan.options.neutralise)
    written = 0
    with plan.engine.connect() as conn:
        result = conn.execution_options(yield_per=BATCH_ROWS).execute(_statement(plan))
        for values in result:
            if written + 2 > MAX_XLSX_ROWS:
                raise ExcelLimit(too_many_rows(written, capped=True))
            try:
                ws.append(cells.row(values))
            except _TooLong as exc:
                raise ExcelLimit(_too_long(plan, values, exc, written)) from None
            written += 1
        conn.rollback()
    return written


def _too_long(
    plan: exporting.ExportPlan, values: Sequence[Any], exc: _TooLong, index: int
) -> str:
    length, column = exc.args
    where = f"row id {values[0]}" if plan.header[0] == "id" else f"row {index + 1}"
    return (
        f"The value of {where}, column {column}, has {length:,} characters; an Excel "
        f"cell holds at most {MAX_CELL_CHARS:,}. Download CSV instead (it keeps the "
        "whole text)."
    )


class FileChunks:
    """The bytes of a finished file in chunks; the file is deleted when the iteration
    ends or close() is called (a WSGI server calls it, also for a client that left).
    """

    def __init__(self, path: str, rows: int = 0) -> None:
        self.path: str | None = path
        self.rows = rows
        self.size = os.path.getsize(path)
        self._file: Any = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.path is None:
            raise StopIteration
        if self._file is None:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        data = self._file.read(CHUNK_BYTES)
        if not data:
            self.close()
            raise StopIteration
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.path is not None:
            _remove(self.path)
            self.path = None


def build_xlsx(plan: exporting.ExportPlan) -> FileChunks:
    """Check the row limit, write the workbook to a temporary file, return its chunks.

    Nothing is sent before the workbook is complete, so every refusal is a page. The
    file is removed if writing fails, else once the chunks are read or closed.
    """
    check_row_limit(plan)
    handle, path = tempfile.mkstemp(prefix="wave-export-", suffix=".xlsx")
    os.close(handle)
    try:
        rows = write_xlsx(plan, path)
        return FileChunks(path, rows)
    except BaseException:
        _remove(path)
        raise

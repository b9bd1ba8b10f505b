"""Reading uploaded CSV files: encoding, delimiter, records with their line numbers.

Pure file handling, no database. UTF-8 (with or without BOM) and UTF-16 with BOM are
read; anything else is refused with the line of the first undecodable byte, so no
mojibake and no U+FFFD is ever stored. Quoting is RFC 4180 (quoted newlines, doubled
quotes), checked strictly: a stray quote is an error with its line, not a guess.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass

from wave_web.errors import WaveError

# A large TEXT cell is a value, not a parser crash: the csv module's default limit is
# 128 KiB. Uploads are bounded by MAX_CONTENT_LENGTH anyway; one cell may use 64 MiB.
MAX_CELL_BYTES = 64 * 1024 * 1024
csv.field_size_limit(MAX_CELL_BYTES)

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
ENCODINGS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 with BOM",
    "utf-16": "UTF-16 with BOM",
    "utf-16-le": "UTF-16 LE without BOM",
    "utf-16-be": "UTF-16 BE without BOM",
}
_SNIFF_BYTES = 64 * 1024


class FileRefused(WaveError):
    """The file cannot be read as CSV at all: encoding, quoting or an empty file."""

    status = 422

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class CsvFormat:
    """How a file is written: its text encoding and its delimiter."""

    encoding: str = "utf-8"
    delimiter: str = ","

    @property
    def label(self) -> str:
        return f"{ENCODINGS[self.encoding]}, {DELIMITERS[self.delimiter]}-separated"


def detect_encoding(head: bytes) -> str:
    """The encoding named by the file's first bytes; FileRefused for BOM-less UTF-16."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if head.startswith(codecs.BOM_UTF32_LE) or head.startswith(codecs.BOM_UTF32_BE):
        raise FileRefused("The file is UTF-32; save it as UTF-8 (“CSV UTF-8”).", 1)
    sample = head[:200]
    if len(sample) >= 4 and sample.count(0) * 3 >= len(sample):
        raise FileRefused(
            "The file looks like UTF-16 without a byte order mark; "
            "save it as UTF-8 (“CSV UTF-8” in Excel) or UTF-16 with BOM.",
            1,
        )
    return "utf-8"


def locate_decode_error(path: str, encoding: str) -> tuple[int, int] | None:
    """(line, byte offset) of the first byte that does not decode, or None."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    plain = encoding.removesuffix("-sig")
    line, offset = 1, 0
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                good = chunk[: max(exc.start, 0)].decode(plain, errors="ignore")
                return line + _newlines(good), offset + max(exc.start, 0)
            line += _newlines(text)
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return line, offset
    return None


def _newlines(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _header_line(text: str) -> str:
    """The first line, ignoring line breaks inside quotes."""
    quoted = False
    for i, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char in "\r\n" and not quoted:
            return text[:i]
    return text


def detect_delimiter(text: str) -> str:
    """`,` unless the header line has more `;` or tabs (outside quotes)."""
    line = _header_line(text)
    counts = {d: 0 for d in DELIMITERS}
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def sniff(path: str) -> CsvFormat:
    """Encoding and delimiter of a file, from its first 64 KiB."""
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if not head.strip():
        raise FileRefused("The file is empty: it needs a header row and data rows.", 1)
    encoding = detect_encoding(head)
    text = head.decode(encoding, errors="ignore")
    return CsvFormat(encoding, detect_delimiter(text))


def refuse_undecodable(path: str, fmt: CsvFormat) -> FileRefused:
    """The error for a file that failed to decode, naming the line of the bad byte."""
    line, offset = locate_decode_error(path, fmt.encoding) or (None, 0)
    where = f"Line {line} has" if line else "The file has"
    return FileRefused(
        f"{where} a byte that is not valid {ENCODINGS[fmt.encoding]} "
        f"(byte {offset + 1} of the file). The file may be Latin-1 or Windows-1252: "
        "save it as “CSV UTF-8” and upload it again.",
        line,
    )


def records(path: str, fmt: CsvFormat) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, cells) of every non-blank record, header included.

    Blank lines and records whose cells are all empty are skipped. Undecodable bytes
    and quoting errors raise FileRefused naming their line.
    """
    with open(path, encoding=fmt.encoding, errors="strict", newline="") as f:
        reader = csv.reader(f, delimiter=fmt.delimiter, strict=True)
        line = 1
        try:
            # One loop over the reader (no call per row): the import's hot loop.
            for cells in reader:
                start, line = line, reader.line_num + 1
                if cells and (cells[0] or any(cells)):
                    yield start, cells
        except UnicodeDecodeError:
            raise refuse_undecodable(path, fmt) from None
        except csv.Error as exc:
            raise FileRefused(
                _quoting_message(line, reader.line_num, str(exc)), line
            ) from None


def _quoting_message(line: int, now: int, detail: str) -> str:
    if "field larger than field limit" in detail:
        return (
            f"Line {line}: a cell is larger than {MAX_CELL_BYTES // (1024 * 1024)} MiB."
        )
    if "expected after" in detail:
        return (
            f"Line {max(now, line)}: a quote inside a quoted cell must be doubled "
            '(""), as in RFC 4180. Files that escape quotes with a backslash (\\") '
            "need to be saved again by a spreadsheet program."
        )
    if "unexpected end of data" in detail or "EOF" in detail:
        return f'Line {line}: a quoted cell starting here is never closed (missing ").'
    return f"Line {line}: the file is not valid CSV ({detail})."

"""Propose a whole experiment type from a researcher's data file (no database).

Two steps. `detect_layout` reads the first records: encoding (UTF-8 ± BOM, UTF-16 ±
BOM), delimiter, the header line (E-Prime puts a path line above it), extra header
rows (Qualtrics rows 2-3) and backslash-escaped quotes (OpenSesame). `analyse` then
reads every record once, in chunks, and proposes per column a clean name, a type, a
value format (formats.py) and whether it is nullable, with counter-examples when a few
cells keep a column from a stricter type. Memory does not grow with the number of rows:
per column it keeps counts, three samples and three counter-examples.

Each chunk of a column is first tried at C speed with the import's own whole-column
converters (fastpath.py); only when that fails are the chunk's distinct values checked
one by one. A type is proposed only when every value fits it; ambiguous dates are
never guessed.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import itertools
import re
from collections import Counter
from collections import deque
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from itertools import repeat
from operator import contains
from operator import itemgetter
from typing import Any

import orjson

from wave_web import columns
from wave_web.csv_io import fastpath
from wave_web.csv_io import formats as value_formats
from wave_web.csv_io import reading
from wave_web.csv_io.importing import show_value
from wave_web.csv_io.reading import CsvFormat
from wave_web.csv_io.reading import FileRefused
from wave_web.errors import InvalidValue

# Offered missing-value spellings (the import's MISSING_TOKENS, in the same order).
MISSING_SPELLINGS = ("NA", "N/A", "None", "null", "NULL", "NaN", "[]", ".")
# Participant columns, as columns.suggest_name spells their headers. Secondary ones
# yield to any other: Gorilla's Private ID wins over its Public ID, Prolific's PID over
# Qualtrics' ResponseId.
PARTICIPANT_ALIASES = (
    "participant",
    "participant_id",
    "participant_nr",
    "participant_number",
    "participant_private_id",
    "participant_public_id",
    "subject",
    "subject_id",
    "subject_nr",
    "subject_number",
    "subj",
    "sub",
    "vp",
    "vp_nr",
    "vpn",
    "prolific_pid",
    "prolific_id",
    "response_id",
    "responseid",
    "worker_id",
    "workerid",
)
SECONDARY_PARTICIPANT_ALIASES = ("participant_public_id", "response_id", "responseid")
SENTINEL = "END OF FILE"  # Gorilla's last record
CHUNK_ROWS = 5_000
HEAD_RECORDS = 50  # what detect_layout reads after the header
ALMOST_SHARE = 0.10  # at most this share of values may keep a column from a type
MAX_EXAMPLES = 3
MAX_SKIPS = 100  # sentinel records listed (a file has one)
MAX_PARTICIPANTS = 10_000  # distinct participant ids counted exactly
_SNIFF_BYTES = 64 * 1024
_MAX_DISPLAY = 80
_TOOLS = {
    "qualtrics": "Qualtrics",
    "gorilla": "Gorilla",
    "psychopy": "PsychoPy",
    "jspsych": "jsPsych",
    "eprime": "E-Prime",
    "opensesame": "OpenSesame",
}


@dataclass(frozen=True)
class Skip:
    """A record that is neither the header nor data."""

    line: int  # physical line (1-based) where the skipped record starts
    kind: str  # "preamble", "header_extra" or "sentinel"
    reason: str  # human text
    text: str  # the record's first cells, shortened, for display


@dataclass(frozen=True)
class Layout:
    """How a file is laid out: format, header line and the records to skip."""

    format: CsvFormat
    header_line: int
    skips: tuple[Skip, ...]
    descriptions: dict[int, str]  # file position -> description (Qualtrics row 2)
    header: tuple[str, ...] = ()  # the header cells
    backslash_quotes: bool = False  # `\"` inside quoted cells means `"` (OpenSesame)
    tool: str | None = None  # key of _TOOLS when the header is recognised
    zones: dict[int, str] = field(default_factory=dict)  # Qualtrics time zones


@dataclass(frozen=True)
class CounterExample:
    """A cell that keeps a column from a stricter type."""

    row: int  # 1-based data row (after the header and skipped rows)
    value: str  # shortened, escaped


@dataclass
class ColumnGuess:
    """What inference proposes for one column of the file."""

    position: int
    header: str
    name: str
    type: str
    nullable: bool
    reason: str
    almost: str | None
    counter_examples: list[CounterExample]
    missing: dict[str, int]
    format: str | None
    format_choices: list[str]
    ambiguous: str | None
    drop: bool
    participant: bool
    samples: list[str]
    description: str = ""


@dataclass
class Analysis:
    """The proposal for a whole file."""

    layout: Layout
    rows: int
    columns: list[ColumnGuess]
    participant: int | None
    missing_found: dict[str, int]
    notes: list[str]


# ----------------------------------------------------------------------
# Encoding, delimiter, quoting
# ----------------------------------------------------------------------


def utf16_without_bom(head: bytes) -> str | None:
    """ "utf-16-le"/"utf-16-be" when BOM-less UTF-16 text shows in its NUL bytes."""
    sample = head[:400]
    sample = sample[: len(sample) // 2 * 2]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    half = len(sample) // 2
    if odd.count(0) * 10 >= half * 6 and even.count(0) * 10 < half:
        return "utf-16-le"
    if even.count(0) * 10 >= half * 6 and odd.count(0) * 10 < half:
        return "utf-16-be"
    return None


def sniff(path: str) -> CsvFormat:
    """Encoding and delimiter, from the first 64 KiB (BOM-less UTF-16 included)."""
    return _sniff(path)[0]


def _sniff(path: str) -> tuple[CsvFormat, str]:
    head = _head(path)
    if not head.strip(b"\x00\r\n\t ") or head in (codecs.BOM_UTF8,):
        raise FileRefused("The file is empty: it needs a header row and data rows.", 1)
    boms = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    encoding = None if head.startswith(boms) else utf16_without_bom(head)
    encoding = encoding or reading.detect_encoding(head)
    text = _decode_head(head, encoding)
    return CsvFormat(encoding, detect_delimiter(text)), text


def _head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(_SNIFF_BYTES)


def _decode_head(head: bytes, encoding: str) -> str:
    text = head.decode(encoding, errors="ignore")
    if len(head) == _SNIFF_BYTES:  # cut at the last line break: no partial record
        cut = max(text.rfind("\n"), text.rfind("\r"))
        text = text[: cut + 1] if cut > 0 else text
    return text


def detect_delimiter(text: str) -> str:
    """The delimiter that splits the most records into the same number of cells.

    Scores every candidate over the first records (not only the first line, which
    may be a preamble such as E-Prime's path line); ties go to reading's choice.
    """
    preferred = reading.detect_delimiter(text)
    best, best_score = preferred, 0
    for delimiter in reading.DELIMITERS:
        widths = [len(r) for r in _loose_records(text, delimiter)]
        wide = [w for w in widths if w >= 2]
        if not wide:
            continue
        width, count = Counter(wide).most_common(1)[0]
        score = count * (width - 1)
        if score > best_score or (score == best_score and delimiter == preferred):
            best, best_score = delimiter, score
    return best if best_score else preferred


def _loose_records(text: str, delimiter: str, limit: int = 30) -> list[list[str]]:
    """The first records, read leniently (for scoring only)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    found = []
    try:
        for cells in itertools.islice(reader, limit):
            if any(cells):
                found.append(cells)
    except csv.Error:
        pass
    return found


def _escape_pattern(delimiter: str) -> re.Pattern[str]:
    """`\\"` that is not at the end of a cell: an OpenSesame-escaped quote."""
    return re.compile(r'\\"(?!' + re.escape(delimiter) + r'|"?[\r\n]|"?$)')


def uses_backslash_quotes(text: str, delimiter: str) -> bool:
    """True when the text only parses as CSV once `\\"` is read as a quote."""
    pattern = _escape_pattern(delimiter)
    if not pattern.search(text):
        return False
    return not _parses(text, delimiter) and _parses(pattern.sub('""', text), delimiter)


def _parses(text: str, delimiter: str) -> bool:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        for _ in reader:
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)  # the head ends inside a cell
    return True


# ----------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------


def records(
    path: str, fmt: CsvFormat, backslash_quotes: bool = False
) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, cells) of every non-blank record, as reading.records.

    With `backslash_quotes`, `\\"` inside a cell is a quote (OpenSesame), while
    other backslashes stay plain characters (`C:\\Users`).
    """
    if not backslash_quotes:
        yield from reading.records(path, fmt)
        return
    pattern = _escape_pattern(fmt.delimiter)
    with open(path, encoding=fmt.encoding, errors="strict", newline="") as f:
        lines = (pattern.sub('""', line) for line in f)
        reader = csv.reader(lines, delimiter=fmt.delimiter, strict=True)
        line = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise reading.refuse_undecodable(path, fmt) from None
            except csv.Error:
                raise FileRefused(
                    f"Line {line}: the file is not valid CSV, even reading "
                    'backslash-escaped quotes (\\") as quotes.',
                    line,
                ) from None
            start, line = line, reader.line_num + 1
            if cells and (cells[0] or any(cells)):
                yield start, cells


def data_records(path: str, layout: Layout) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of the data records only: the layout's skips left out."""
    rows = _after_header(path, layout, [])
    next(rows)
    yield from rows


def _after_header(
    path: str, layout: Layout, sentinels: list[Skip]
) -> Iterator[tuple[int, list[str]]]:
    """The header record, then the data records; sentinel records go to `sentinels`."""
    extra = {s.line for s in layout.skips if s.kind == "header_extra"}
    rows = records(path, layout.format, layout.backslash_quotes)
    for line, cells in rows:
        if line == layout.header_line:
            yield line, cells
            break
        if line > layout.header_line:
            raise _not_a_record(layout.header_line)
    else:
        raise FileRefused("The file has no header row.", 1)
    for line, cells in rows:
        if line in extra:
            continue
        if cells[0] == SENTINEL:
            sentinels.append(_skip(line, "sentinel", _SENTINEL_REASON, cells))
            continue
        yield line, cells


_SENTINEL_REASON = "Gorilla's end-of-file marker, not data"


def _not_a_record(line: int) -> InvalidValue:
    return InvalidValue(
        f"Line {line} is blank or inside a quoted cell: choose the line where the "
        "header row starts.",
        field="header_line",
    )


def _skip(line: int, kind: str, reason: str, cells: list[str]) -> Skip:
    text = ", ".join(c for c in cells if c.strip()) or "(empty cells)"
    return Skip(line, kind, reason, show_value(text, _MAX_DISPLAY))


# ----------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------


def detect_layout(
    path: str, fmt: CsvFormat | None = None, header_line: int | None = None
) -> Layout:
    """Format, header line and skipped records, from the first ~50 records.

    `fmt` and `header_line` given by the user override detection; Qualtrics' extra
    header rows and Gorilla's sentinel are still recognised after the header.
    Sentinels further down are found by `analyse`, which returns them in its Layout.
    """
    if fmt is None:
        fmt, text = _sniff(path)
    else:
        text = _decode_head(_head(path), fmt.encoding)
    backslash = uses_backslash_quotes(text, fmt.delimiter)
    if header_line is not None and header_line < 1:
        raise InvalidValue("The header line must be 1 or more.", field="header_line")
    head = _head_records(path, fmt, backslash, header_line)
    if not head:
        raise FileRefused("The file has no header row.", 1)
    if header_line is None:
        index = header_index(head)
        reason = _PREAMBLE_REASON
    else:
        index = next((i for i, (ln, _) in enumerate(head) if ln == header_line), None)
        if index is None:
            raise _not_a_record(header_line)
        reason = "above the chosen header line"
    line, header = head[index]
    skips = [_skip(ln, "preamble", reason, cells) for ln, cells in head[:index]]
    extra, descriptions, zones = qualtrics_rows(header, head[index + 1 :])
    skips += extra
    skipped = {s.line for s in extra}
    skips += [
        _skip(ln, "sentinel", _SENTINEL_REASON, cells)
        for ln, cells in head[index + 1 :]
        if cells[0] == SENTINEL and ln not in skipped
    ]
    return Layout(
        format=fmt,
        header_line=line,
        skips=tuple(skips),
        descriptions=descriptions,
        header=tuple(header),
        backslash_quotes=backslash,
        tool=recognise_tool(header),
        zones=zones,
    )


_PREAMBLE_REASON = "above the header (not a header: fewer cells or type rows)"


def _head_records(
    path: str, fmt: CsvFormat, backslash: bool, header_line: int | None
) -> list[tuple[int, list[str]]]:
    """The records up to the header line (if given; the last MAX_SKIPS above it)
    plus HEAD_RECORDS more."""
    rows = records(path, fmt, backslash)
    head: deque[tuple[int, list[str]]] = deque(maxlen=MAX_SKIPS + 1)
    if header_line is not None:
        for line, cells in rows:
            head.append((line, cells))
            if line >= header_line:
                break
    return [*head, *itertools.islice(rows, HEAD_RECORDS + 3)]


_EPRIME_TYPES = frozenset({"STRING", "INTEGER", "FLOAT", "BOOLEAN", "DATE", "TIME"})
_EPRIME_KINDS = frozenset({"EXPNAME", "SUBJECT", "SESSION", "VARIABLE", "LOG_LEVEL"})
_NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?")


def header_index(head: list[tuple[int, list[str]]]) -> int:
    """Index in `head` of the header record; preamble records come before it.

    Skipped: records with at most one filled cell above a wider header (E-Prime's
    path line, titles) and E-Prime "text" type rows (STRING/INTEGER, EXPNAME/…/
    VARIABLE, level numbers). Conservative: when unsure, the first record.
    """
    typed = False
    index = 0
    for index, (_, cells) in enumerate(head):
        present = [c.strip() for c in cells if c.strip()]
        if index + 1 < len(head) and len(present) <= 1:
            continue
        if _is_type_row(present):
            typed = True
            continue
        if typed and present and all(c.isdigit() for c in present):
            continue
        break
    if index == 0:
        return 0
    cells = head[index][1]
    present = [c.strip() for c in cells if c.strip()]
    wider = all(len(c) <= len(cells) for _, c in head[:index])
    if len(present) >= 2 and wider and _header_like(present):
        return index
    return 0


def _is_type_row(present: list[str]) -> bool:
    if len(present) < 2:
        return False
    words = set(present)
    if words <= _EPRIME_TYPES:
        return True
    return words <= _EPRIME_TYPES | _EPRIME_KINDS and bool(
        words & {"EXPNAME", "VARIABLE", "LOG_LEVEL"}
    )


def _header_like(present: list[str]) -> bool:
    """No cell is a number and no name repeats: it can be a header."""
    return len(set(present)) == len(present) and not any(
        _NUMBER.fullmatch(c) for c in present
    )


_QUALTRICS_META = ("StartDate", "EndDate", "ResponseId")
_IMPORT_ID = '{"ImportId"'


def qualtrics_rows(
    header: list[str], following: list[tuple[int, list[str]]]
) -> tuple[list[Skip], dict[int, str], dict[int, str]]:
    """Qualtrics' rows 2 and 3: (skips, descriptions from row 2, time zones).

    Row 3 holds `{"ImportId": …}` per column; row 2 the question text. Older exports
    lack row 3: then row 2 is skipped only under Qualtrics' metadata columns and when
    its StartDate cell is not a date.
    """
    row2 = following[0] if following else None
    row3 = following[1] if len(following) > 1 else None
    if row3 is not None and _import_ids(row3[1]):
        return (
            [
                _skip(row2[0], "header_extra", _QUESTION_REASON, row2[1]),
                _skip(row3[0], "header_extra", _IMPORT_ID_REASON, row3[1]),
            ],
            _descriptions(header, row2[1]),
            _zones(row3[1]),
        )
    if row2 is not None and _import_ids(row2[1]):
        return (
            [_skip(row2[0], "header_extra", _IMPORT_ID_REASON, row2[1])],
            {},
            _zones(row2[1]),
        )
    if row2 is not None and all(m in header for m in _QUALTRICS_META):
        start = row2[1][header.index("StartDate")] if row2[1] else ""
        if start.strip() and not _is_datetime(start):
            return (
                [_skip(row2[0], "header_extra", _QUESTION_REASON, row2[1])],
                _descriptions(header, row2[1]),
                {},
            )
    return [], {}, {}


_QUESTION_REASON = "Qualtrics question text (kept as column descriptions)"
_IMPORT_ID_REASON = "Qualtrics import ids, not data"


def _import_ids(cells: list[str]) -> bool:
    present = [c.strip() for c in cells if c.strip()]
    hits = sum(c.startswith(_IMPORT_ID) for c in present)
    return bool(present) and hits * 2 >= len(present)


def _descriptions(header: list[str], cells: list[str]) -> dict[int, str]:
    found = {}
    for position, text in enumerate(cells[: len(header)]):
        text = text.strip()
        if text and text != header[position].strip():
            found[position] = text
    return found


def _zones(cells: list[str]) -> dict[int, str]:
    found = {}
    for position, text in enumerate(cells):
        if "timeZone" not in text:
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict) and isinstance(value.get("timeZone"), str):
            found[position] = value["timeZone"][:64]
    return found


def _is_datetime(text: str) -> bool:
    try:
        columns.parse_datetime(text)
    except ValueError:
        return False
    return True


def recognise_tool(header: list[str]) -> str | None:
    """The experiment tool whose export this header looks like (a _TOOLS key)."""
    names = {h.strip() for h in header}
    if {"StartDate", "EndDate"} <= names and names & {"ResponseId", "ResponseID"}:
        return "qualtrics"
    if "Event Index" in names and names & {"Participant Private ID", "Tree Node Key"}:
        return "gorilla"
    if "psychopyVersion" in names or {"expName", "frameRate"} <= names:
        return "psychopy"
    if {"trial_type", "trial_index", "time_elapsed"} <= names:
        return "jspsych"
    if names & {"opensesame_version", "opensesame_codename"}:
        return "opensesame"
    if {"ExperimentName", "Subject", "Session"} <= names:
        return "eprime"
    return None


# ----------------------------------------------------------------------
# Names and the participant column
# ----------------------------------------------------------------------


def _key(text: str) -> str:
    """Header text reduced to lower-case letters and digits, for alias matching."""
    name = columns.suggest_name(text) or ""
    return re.sub(r"[^a-z0-9]", "", name.removesuffix("_value"))


_SECONDARY_KEYS = {_key(a) for a in SECONDARY_PARTICIPANT_ALIASES}
_PRIMARY_KEYS = {_key(a) for a in PARTICIPANT_ALIASES} - _SECONDARY_KEYS


def participant_position(header: list[str] | tuple[str, ...]) -> int | None:
    """The column proposed as participant_id: the first alias, secondary ones last."""
    keys = [_key(h) for h in header]
    for group in (_PRIMARY_KEYS, _SECONDARY_KEYS):
        for position, key in enumerate(keys):
            if key in group:
                return position
    return None


def propose_names(
    header: list[str] | tuple[str, ...], participant: int | None
) -> tuple[list[str], list[str]]:
    """(a valid, unique column name per header cell, notes about clashes)."""
    taken = set(columns.STANDARD_COLUMNS)
    names, notes = [], []
    for position, text in enumerate(header):
        if position == participant:
            names.append("participant_id")
            continue
        base = columns.suggest_name(text) or f"column_{position + 1}"
        name, n = base, 2
        while name in taken:
            tail = f"_{n}"
            name, n = base[: columns.MAX_NAME_BYTES - len(tail)] + tail, n + 1
        if name != base and text.strip():
            notes.append(
                f"Column {position + 1} (“{show_value(text)}”) would also be named "
                f"{base}: it is proposed as {name}."
            )
        names.append(columns.validate_name(name))
        taken.add(name)
    return names, notes


# ----------------------------------------------------------------------
# Candidate types of a column
# ----------------------------------------------------------------------


def _fits(parse: Callable[[str], Any]) -> Callable[[str], bool]:
    def fits(text: str) -> bool:
        try:
            parse(text)
        except (ValueError, OverflowError):
            return False
        return True

    return fits


def _container(text: str) -> None:
    if not isinstance(columns.parse_json(text), dict | list):
        raise ValueError("not a JSON object or array")


def _fast(type_name: str) -> Callable[[list[str]], list[Any] | None]:
    parse = fastpath.PARSERS[type_name]
    return lambda values: parse(values, False)


def _fast_containers(values: list[str]) -> list[Any] | None:
    """Objects and arrays at C speed, as parse_json accepts them; None otherwise.

    A value cannot nest deeper than its length, so only long values need the depth
    check (fastpath.jsons checks every value of a chunk that has many brackets).
    """
    try:
        parsed = list(map(orjson.loads, values))
    except orjson.JSONDecodeError:
        return None
    if not set(map(type, parsed)) <= {dict, list}:
        return None
    if max(map(len, values)) > columns.MAX_JSON_DEPTH:
        try:
            for text, value in zip(values, parsed, strict=True):
                if len(text) > columns.MAX_JSON_DEPTH:
                    columns.check_json_depth(text, value)
        except ValueError:
            return None
    return parsed


def _format_check(key: str) -> Callable[[str], bool]:
    fmt = value_formats.lookup(key)
    parse = columns.COLUMN_TYPES[fmt.type].parse
    return _fits(lambda text: parse(fmt.convert(text)))


@dataclass
class _Candidate:
    """A type (with a format or not) that a column may have, and its failures."""

    key: str  # the type name, or the format key
    type: str
    format: str | None
    fast: Callable[[list[str]], list[Any] | None] | None
    fits: Callable[[str], bool]
    implies: tuple[str, ...] = ()  # keys that fit whenever this one fits
    forced: bool = False  # chosen by the user: counted to the end, never dropped
    alive: bool = True
    fails: int = 0
    examples: list[CounterExample] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.type} ({self.format})" if self.format else self.type


def _candidates(forced: str | None) -> list[_Candidate]:
    """Every type a column may have, most specific first (or only the forced one)."""
    if forced is not None:
        fmt = value_formats.lookup(forced)
        return [
            _Candidate(forced, fmt.type, forced, None, _format_check(forced), (), True)
        ]
    return [
        _Candidate(
            "BOOLEAN",
            "BOOLEAN",
            None,
            _fast("BOOLEAN"),
            _fits(columns.parse_boolean),
            ("bool_words",),
        ),
        _Candidate(
            "INTEGER",
            "INTEGER",
            None,
            _fast("INTEGER"),
            _fits(columns.parse_integer),
            ("FLOAT", "decimal_comma"),
        ),
        _Candidate("FLOAT", "FLOAT", None, _fast("FLOAT"), _fits(columns.parse_float)),
        _Candidate(
            "DATETIME",
            "DATETIME",
            None,
            _fast("DATETIME"),
            _fits(columns.parse_datetime),
        ),
        *(
            _Candidate(f.key, f.type, f.key, None, _format_check(f.key))
            for f in value_formats.FORMATS.values()
            if f.type == "DATETIME"
        ),
        _Candidate(
            "bool_words", "BOOLEAN", "bool_words", None, _format_check("bool_words")
        ),
        _Candidate(
            "decimal_comma",
            "FLOAT",
            "decimal_comma",
            None,
            _format_check("decimal_comma"),
        ),
        _Candidate("JSON", "JSON", None, _fast_containers, _fits(_container)),
    ]


# ----------------------------------------------------------------------
# One column, fed chunk by chunk
# ----------------------------------------------------------------------


_BOOL_WORDS = frozenset({"true", "false", "t", "f", "yes", "no", "y", "n"})


def _is_whole(text: str) -> bool:
    s = text.strip()
    digits = s[1:] if s[:1] in "+-" else s
    return digits.isascii() and digits.isdigit()


def _zero_padded(text: str) -> bool:
    s = text.strip().lstrip("+-")
    return len(s) > 1 and s[0] == "0" and _is_whole(text)


class _Column:
    """Counts, samples and candidate types of one column over the chunks seen."""

    def __init__(
        self,
        position: int,
        header: str,
        tokens: frozenset[str],
        participant: bool,
        forced: str | None,
    ) -> None:
        self.position = position
        self.header = header
        self.participant = participant
        self.tokens = frozenset({""}) if participant else tokens | {""}
        self.candidates = [] if participant else _candidates(forced)
        self.by_key = {c.key: c for c in self.candidates}
        self.forced = forced
        self.missing: Counter[str] = Counter()
        self.values = 0  # non-missing cells
        self.samples: list[str] = []
        self.max_len = 0
        self.nul_row: int | None = None
        self.word_booleans = False  # a boolean value other than 0/1 was seen
        self.zero_padded: str | None = None  # an integer like 007
        self.big_int: str | None = None  # an integer beyond 32 bits
        self.ids: set[str] = set()  # participant ids (bounded)
        self.long_id_row: int | None = None

    def feed(self, col: tuple[str, ...], first_row: int) -> None:
        """Take one chunk of the column; `first_row` is the chunk's first data row."""
        present = set(col)
        missing = present & self.tokens
        count = len(col)
        if missing:
            present -= missing
            for token in missing:
                found = col.count(token)
                self.missing[token] += found
                count -= found
        if self.participant:
            self._feed_participant(col, present, count, first_row)
            return
        if not present:
            return
        values = list(present)
        failed = self._fast_checks(values)
        if failed:
            padded = self._padded_missing(values, col)
            if padded:
                present -= padded
                values = list(present)
                count -= sum(col.count(v) for v in padded)
        self.values += count
        if failed and values:
            counts = Counter(col)
            for cand in failed:
                self._classify(cand, values, col, counts, first_row)
        if values:
            self._describe(values, present, col, first_row)

    def _fast_checks(self, values: list[str]) -> list[_Candidate]:
        """Candidates that failed their C-speed check on this chunk (to classify)."""
        passed: set[str] = set()
        failed = []
        for cand in self.candidates:
            if not cand.alive or cand.key in passed:
                continue
            result = cand.fast(values) if cand.fast is not None else None
            if result is None:
                failed.append(cand)
                continue
            passed.update(cand.implies)
            if cand.key == "INTEGER" and self.zero_padded is None:
                self._check_zero_padded(values, result)
            if cand.key == "FLOAT" and self.big_int is None:
                self._check_big_int(values, result)
        return failed

    def _check_zero_padded(self, values: list[str], ints: list[int]) -> None:
        """Integers like 007 (only looked for when a value is not spelt canonically)."""
        if list(map(str, ints)) != values:
            self.zero_padded = next(filter(_zero_padded, values), None)

    def _check_big_int(self, values: list[str], floats: list[float]) -> None:
        """Whole numbers beyond 32 bits among numbers (only when one is that large)."""
        if floats and max(map(abs, floats)) > columns.INT_MAX:
            self.big_int = next(filter(self._beyond_32_bits, values), None)

    @staticmethod
    def _beyond_32_bits(text: str) -> bool:
        return _is_whole(text) and not columns.INT_MIN <= int(text) <= columns.INT_MAX

    def _padded_missing(self, values: list[str], col: tuple[str, ...]) -> set[str]:
        """Values that are missing once stripped (`  `, ` NA`); counted as missing."""
        padded = {v for v in values if v.strip() in self.tokens}
        for value in padded:
            self.missing[value.strip()] += col.count(value)
        return padded

    def _classify(
        self,
        cand: _Candidate,
        values: list[str],
        col: tuple[str, ...],
        counts: Counter[str],
        first_row: int,
    ) -> None:
        """Check a candidate value by value; drop it once too many cells fail."""
        limit = ALMOST_SHARE * self.values
        failing = set()
        fails = cand.fails
        for value in values:
            if cand.fits(value):
                if cand.key == "INTEGER" and self.zero_padded is None:
                    self.zero_padded = value if _zero_padded(value) else None
                elif cand.key == "FLOAT" and self.big_int is None:
                    self.big_int = value if self._beyond_32_bits(value) else None
                continue
            failing.add(value)
            fails += counts[value]
            if fails > limit and not cand.forced:
                cand.alive = False
                return
        cand.fails = fails
        if failing and len(cand.examples) < MAX_EXAMPLES:
            for offset, value in enumerate(col):
                if value in failing:
                    cand.examples.append(
                        CounterExample(first_row + offset, show_value(value))
                    )
                    if len(cand.examples) == MAX_EXAMPLES:
                        break

    def _describe(
        self, values: list[str], present: set[str], col: tuple[str, ...], first: int
    ) -> None:
        self.max_len = max(self.max_len, max(map(len, values)))
        if self.nul_row is None and any(map(contains, values, repeat("\x00"))):
            self.nul_row = first + next(i for i, v in enumerate(col) if "\x00" in v)
        boolean = self.by_key.get("BOOLEAN")
        if boolean is not None and boolean.alive and not self.word_booleans:
            self.word_booleans = any(v.strip().lower() in _BOOL_WORDS for v in values)
        self._sample(present, col)

    def _feed_participant(
        self, col: tuple[str, ...], present: set[str], count: int, first_row: int
    ) -> None:
        blank = {v for v in present if not v.strip()}
        for value in blank:
            found = col.count(value)
            self.missing[""] += found
            count -= found
        present -= blank
        self.values += count
        if len(self.ids) < MAX_PARTICIPANTS:
            self.ids.update(itertools.islice(present, MAX_PARTICIPANTS))
        if present and self.long_id_row is None and max(map(len, present)) > 100:
            offset = next(i for i, v in enumerate(col) if len(v) > 100)
            self.long_id_row = first_row + offset
        self._sample(present, col)

    def _sample(self, present: set[str], col: tuple[str, ...]) -> None:
        if len(self.samples) < MAX_EXAMPLES:
            for value in col:
                if value in present and value not in self.samples:
                    self.samples.append(value)
                    if len(self.samples) == MAX_EXAMPLES:
                        break


# ----------------------------------------------------------------------
# Choosing a type
# ----------------------------------------------------------------------


@dataclass
class _Choice:
    type: str
    reason: str
    format: str | None = None
    format_choices: list[str] = field(default_factory=list)
    ambiguous: str | None = None
    almost: str | None = None
    examples: list[CounterExample] = field(default_factory=list)


_AMBIGUOUS = "dates fit both day-first and month-first: choose one"
_DATE_FORMATS = tuple(f.key for f in value_formats.formats_for("DATETIME"))


def choose(column: _Column, tool: str | None) -> _Choice:
    """The proposed type of a fed column: the most specific one every value fits."""
    if column.participant:
        return _Choice("STRING", _participant_reason(column))
    if column.forced is not None:
        return _forced_choice(column)
    if column.values == 0:
        if column.missing.get("[]"):
            return _Choice("JSON", "the only values are empty JSON arrays ([])")
        return _Choice("STRING", "every cell is empty or a missing-value spelling")
    keys = {c.key for c in column.candidates if c.alive and c.fails == 0}
    if "BOOLEAN" in keys and column.word_booleans:
        return _Choice("BOOLEAN", "every value is true or false" + _like(column))
    if "INTEGER" in keys:
        if column.zero_padded is not None:
            return _Choice(
                "STRING",
                f"whole numbers written with leading zeros (like "
                f"{show_value(column.zero_padded)}) are kept as text so the zeros stay",
            )
        return _Choice("INTEGER", "every value is a whole number (32-bit)")
    if "FLOAT" in keys:
        if column.big_int is not None:
            return _Choice(
                "STRING",
                f"whole numbers beyond 32 bits (like {show_value(column.big_int)}) "
                "are kept as text so no digit is lost",
            )
        return _Choice("FLOAT", "every value is a number")
    if "DATETIME" in keys:
        return _Choice("DATETIME", "every value is an ISO 8601 date or date-time")
    dates = [k for k in _DATE_FORMATS if k in keys]
    if "dmy" in dates and "mdy" in dates:
        if tool == "gorilla":
            return _Choice(
                "DATETIME",
                "every value is a date, and Gorilla writes dates day first",
                "dmy",
                dates,
            )
        return _Choice("STRING", _AMBIGUOUS, None, dates, _AMBIGUOUS)
    if dates:
        label = value_formats.FORMATS[dates[0]].label
        return _Choice(
            "DATETIME",
            f"every value is a date or time written {label}",
            dates[0],
            dates,
        )
    if "bool_words" in keys:
        return _Choice(
            "BOOLEAN",
            "every value is a true/false word" + _like(column),
            "bool_words",
            ["bool_words"],
        )
    if "decimal_comma" in keys:
        return _Choice(
            "FLOAT",
            "every value is a number with a decimal comma" + _like(column),
            "decimal_comma",
            ["decimal_comma"],
        )
    if "JSON" in keys:
        return _Choice("JSON", "every value is a JSON object or array")
    return _text_choice(column, _almost(column))


def _like(column: _Column) -> str:
    shown = ", ".join(show_value(v, 20) for v in column.samples[:2])
    return f" ({shown})" if shown else ""


def _participant_reason(column: _Column) -> str:
    count = len(column.ids)
    many = f"more than {MAX_PARTICIPANTS:,}" if count >= MAX_PARTICIPANTS else count
    return (
        f"proposed as the participant id, kept as text ({many} distinct "
        f"value{'' if count == 1 else 's'})"
    )


def _forced_choice(column: _Column) -> _Choice:
    cand = column.candidates[0]
    fmt = value_formats.lookup(cand.key)
    if column.values == 0:
        return _Choice(
            "STRING", "every cell is empty or a missing-value spelling", cand.key
        )
    if cand.fails == 0:
        return _Choice(
            fmt.type,
            f"every value fits the chosen format: {fmt.label}",
            cand.key,
            [cand.key],
        )
    return _text_choice(column, cand)


def _almost(column: _Column) -> _Candidate | None:
    """The most specific type that all but a few values (≤ 10 %) fit, if any."""
    for cand in column.candidates:
        if not cand.alive or cand.fails == 0 or cand.fails >= column.values:
            continue
        if cand.fails > ALMOST_SHARE * column.values:
            continue
        if cand.key == "BOOLEAN" and not column.word_booleans:
            continue  # 0/1 with a few others: INTEGER says it better
        if (cand.key == "INTEGER" and column.zero_padded) or (
            cand.key == "FLOAT" and column.big_int
        ):
            continue
        return cand
    return None


def _text_choice(column: _Column, almost: _Candidate | None) -> _Choice:
    if column.max_len > 255:
        choice = _Choice(
            "TEXT",
            f"some values are longer than 255 characters (the longest has "
            f"{column.max_len:,})",
        )
    else:
        choice = _Choice(
            "STRING",
            f"values are text of at most {column.max_len:,} "
            f"character{'' if column.max_len == 1 else 's'}",
        )
    if almost is not None:
        shown = ", ".join(f"`{e.value}` row {e.row}" for e in almost.examples)
        more = ", …" if almost.fails > len(almost.examples) else ""
        cells = "cell" if almost.fails == 1 else "cells"
        choice.almost = f"{almost.label} except {almost.fails} {cells}: {shown}{more}"
        choice.examples = list(almost.examples)
    return choice


# ----------------------------------------------------------------------
# The whole file
# ----------------------------------------------------------------------


@dataclass
class _Shape:
    """Rows whose number of cells differs from the header's."""

    short: int = 0
    first_short: int | None = None
    long: int = 0
    first_long: int | None = None


def _transpose(
    rows: list[list[str]], width: int, first_row: int, shape: _Shape
) -> list[tuple[str, ...]]:
    """The chunk's columns; short rows padded with empty cells, extra cells cut."""
    if set(map(len, rows)) == {width}:
        return list(zip(*rows, strict=True))
    fixed = []
    for offset, cells in enumerate(rows):
        if len(cells) < width:
            shape.short += 1
            shape.first_short = shape.first_short or first_row + offset
            cells = cells + [""] * (width - len(cells))
        elif len(cells) > width:
            if any(c.strip() for c in cells[width:]):
                shape.long += 1
                shape.first_long = shape.first_long or first_row + offset
            cells = cells[:width]
        fixed.append(cells)
    return list(zip(*fixed, strict=True))


class _QualtricsCounts:
    """Survey previews (Status = 1) and unfinished responses (Finished = 0)."""

    def __init__(self, header: list[str]) -> None:
        names = [h.strip() for h in header]
        self.status = names.index("Status") if "Status" in names else None
        self.finished = names.index("Finished") if "Finished" in names else None
        self.previews = self.unfinished = 0

    def feed(self, by_column: list[tuple[str, ...]]) -> None:
        if self.status is not None:
            self.previews += by_column[self.status].count("1")
        if self.finished is not None:
            col = by_column[self.finished]
            self.unfinished += sum(col.count(v) for v in ("0", "False", "false"))

    def notes(self) -> list[str]:
        found = []
        if self.previews:
            found.append(
                f"{_rows(self.previews)} {_be(self.previews)} a Qualtrics survey "
                "preview (Status = 1)."
            )
        if self.unfinished:
            response = "response" if self.unfinished == 1 else "responses"
            found.append(
                f"{self.unfinished} {response} {_be(self.unfinished)} unfinished "
                "(Finished = 0)."
            )
        return found


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _be(n: int) -> str:
    return "is" if n == 1 else "are"


def _forced_formats(
    chosen: Mapping[int, str] | None, width: int
) -> dict[int, str | None]:
    found: dict[int, str | None] = {}
    for position, key in (chosen or {}).items():
        value_formats.converter(key)  # InvalidValue for an unknown key
        if not isinstance(position, int) or not 0 <= position < width:
            raise InvalidValue(
                f"Column {position} is not in the file (it has {width} columns).",
                field="format",
            )
        found[position] = key
    return found


def analyse(
    path: str,
    layout: Layout,
    missing: frozenset[str] | None = None,
    formats: Mapping[int, str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Analysis:
    """Read every data record once and propose a type per column.

    `missing=None` treats every MISSING_SPELLINGS token (and the empty cell) as
    missing; a given set only those and the empty cell. `formats` forces a value
    format (formats.FORMATS key) on columns by file position. `progress` gets the
    number of data rows read after each chunk.
    """
    tokens = frozenset(MISSING_SPELLINGS if missing is None else missing)
    sentinels: list[Skip] = []
    rows = _after_header(path, layout, sentinels)
    _, header = next(rows)
    width = len(header)
    forced = _forced_formats(formats, width)
    participant = participant_position(header)
    fed = [
        _Column(p, h, tokens, p == participant, forced.get(p))
        for p, h in enumerate(header)
    ]
    shape = _Shape()
    qualtrics = _QualtricsCounts(header) if layout.tool == "qualtrics" else None
    total = 0
    while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
        by_column = _transpose(list(map(itemgetter(1), chunk)), width, total + 1, shape)
        for column, values in zip(fed, by_column, strict=True):
            column.feed(values, total + 1)
        if qualtrics is not None:
            qualtrics.feed(by_column)
        total += len(chunk)
        del sentinels[MAX_SKIPS:]
        if progress is not None:
            progress(total)
    kept = tuple(s for s in layout.skips if s.kind != "sentinel")
    final = dataclasses.replace(
        layout, skips=kept + tuple(sentinels), header=tuple(header)
    )
    names, notes = propose_names(header, participant)
    guesses = [
        _guess(column, name, choose(column, layout.tool), layout)
        for column, name in zip(fed, names, strict=True)
    ]
    notes = _notes(final, guesses, fed, shape, qualtrics) + notes
    return Analysis(
        layout=final,
        rows=total,
        columns=guesses,
        participant=participant,
        missing_found=_missing_found(guesses),
        notes=notes,
    )


def _guess(column: _Column, name: str, choice: _Choice, layout: Layout) -> ColumnGuess:
    missing = dict(column.missing.most_common())
    if choice.type == "JSON" and "[]" in missing:
        missing.pop("[]")  # an empty array is a JSON value, not a missing one
    return ColumnGuess(
        position=column.position,
        header=column.header,
        name=name,
        type=choice.type,
        nullable=bool(missing) and not column.participant,
        reason=choice.reason,
        almost=choice.almost,
        counter_examples=choice.examples,
        missing=missing,
        format=choice.format,
        format_choices=choice.format_choices,
        ambiguous=choice.ambiguous,
        drop=(
            column.values == 0
            and not column.header.strip()
            and choice.type != "JSON"
            and not column.participant
        ),
        participant=column.participant,
        samples=[show_value(v, 60) for v in column.samples],
        description=layout.descriptions.get(column.position, ""),
    )


def _missing_found(guesses: list[ColumnGuess]) -> dict[str, int]:
    """Missing-value spellings met where treating them as missing changes the type."""
    found: Counter[str] = Counter()
    for guess in guesses:
        if guess.participant:
            continue
        typed = guess.type not in ("STRING", "TEXT") or guess.reason.startswith(
            "every cell is empty"
        )
        if typed:
            found.update({k: v for k, v in guess.missing.items() if k})
    return {t: found[t] for t in MISSING_SPELLINGS if found[t]}


def _notes(
    layout: Layout,
    guesses: list[ColumnGuess],
    fed: list[_Column],
    shape: _Shape,
    qualtrics: _QualtricsCounts | None,
) -> list[str]:
    notes = []
    if layout.tool is not None:
        notes.append(f"The header looks like an export of {_TOOLS[layout.tool]}.")
    if layout.format != CsvFormat():
        notes.append(f"Read as {layout.format.label}.")
    if layout.backslash_quotes:
        notes.append('Quotes written as \\" (OpenSesame) are read as quotes.')
    if qualtrics is not None:
        notes += qualtrics.notes()
    if layout.zones:
        zones = sorted(set(layout.zones.values()))
        names = ", ".join(
            guesses[p].header for p in sorted(layout.zones) if p < len(guesses)
        )
        notes.append(
            f"Qualtrics wrote {names} in the time zone {', '.join(zones)}; their "
            "value format reads them in that zone and stores them in UTC."
        )
    notes += _participant_notes(guesses, fed)
    if shape.short:
        notes.append(
            f"{_rows(shape.short)} {_be(shape.short)} shorter than the header "
            f"(first: row {shape.first_short}); the missing cells count as empty."
        )
    if shape.long:
        notes.append(
            f"{_rows(shape.long)} {_be(shape.long)} longer than the header "
            f"(first: row {shape.first_long}); an import refuses such rows."
        )
    for column in fed:
        if column.nul_row is not None:
            notes.append(
                f"Column “{show_value(column.header)}” has a NUL character in row "
                f"{column.nul_row}, which cannot be stored."
            )
    return notes


def _participant_notes(guesses: list[ColumnGuess], fed: list[_Column]) -> list[str]:
    found = [c for c in fed if c.participant]
    if not found:
        return ["No column looks like a participant id: choose the one to use."]
    column = found[0]
    notes = []
    empty = column.missing.get("", 0)
    if empty:
        notes.append(
            f"{_rows(empty)} {'has' if empty == 1 else 'have'} no participant id in "
            f"“{show_value(column.header)}”: an import needs one on every row."
        )
    if column.long_id_row is not None:
        notes.append(
            f"Participant ids are limited to 100 characters; row "
            f"{column.long_id_row} has a longer one."
        )
    return notes

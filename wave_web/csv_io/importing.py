"""CSV import: map the header, validate every cell, write all rows or none.

One pipeline serves the preview and the import, so a preview that says "valid" never
fails on confirm:

    sniff (encoding, delimiter) → plan the header → convert every cell with the
    column's converter (chosen once per column) → write in batches

Writing streams into PostgreSQL's `COPY … FROM STDIN` (the server parses while Python
validates the next chunk: both cores work) or into SQLite with batched `executemany`,
inside the caller's transaction. The first bad cell stops the writing but not the
checking: the report lists the first problems in full and counts the rest per column,
then ImportRefused makes the caller roll back.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import operator
import os
import queue
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from wave_web import columns
from wave_web import datatables
from wave_web import models
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.csv_io import fastpath
from wave_web.csv_io import formats
from wave_web.csv_io.reading import CsvFormat
from wave_web.csv_io.reading import FileRefused
from wave_web.csv_io.reading import records
from wave_web.csv_io.reading import sniff
from wave_web.errors import InvalidValue
from wave_web.errors import NotFound
from wave_web.errors import WaveError
from wave_web.extensions import db

MAX_LISTED = 100  # problems shown in full; the rest are counted per column
PREVIEW_ROWS = 20
CHUNK_ROWS = 5_000  # rows per COPY chunk / executemany / progress report
# Missing-value spellings an import may treat as empty (opt-in, per import).
MISSING_TOKENS = ("NA", "N/A", "None", "null", "NULL", "NaN", "[]", ".")
SET_BY_APP = ("experiment_uuid", "created_at", "updated_at")
MODES = ("insert", "update")
# Convert the next chunk in a thread while SQLite writes the last one (bench/ compares).
OVERLAP_SQLITE_WRITES = True
# The same on PostgreSQL: a thread reads and converts while this one sends COPY data
# (psycopg2 sends without the GIL), so the reading goes on while a send waits for the
# server.
OVERLAP_COPY = True

Progress = Callable[[int], None]  # rows done so far; may raise to stop the import


class ImportRefused(WaveError):
    """The file has problems; nothing was written. `report` lists them."""

    status = 422

    def __init__(self, report: Report) -> None:
        super().__init__(report.summary())
        self.report = report


@dataclass(frozen=True)
class ImportOptions:
    """What the user chose: insert or update, header overrides, missing-value words.

    `mapping` maps a file column's position (0-based) to a target column name, or to
    "" to ignore that column; positions not in it are mapped by name. `header_line`
    is the physical line of the header (None: the first record; records before it
    are a preamble), `skip_lines` the start lines of records that are not data
    (extra header rows, sentinel rows). `formats` names a csv_io.formats format per
    target column (decimal comma, day-first dates …); `add_columns` are new optional
    columns the import adds to the type, in the import's transaction.
    """

    mode: str = "insert"
    mapping: Mapping[int, str] = field(default_factory=dict)
    missing: frozenset[str] = frozenset()
    header_line: int | None = None
    skip_lines: frozenset[int] = frozenset()
    formats: Mapping[str, str] = field(default_factory=dict)
    add_columns: tuple[ColumnDef, ...] = ()
    # How to read the file when known (a type from a file): else sniffed.
    format: CsvFormat | None = None
    backslash_quotes: bool = False  # `\"` inside a cell is a quote (OpenSesame)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise WaveError(
                f"Unknown import mode “{columns.shorten(str(self.mode))}”; "
                "use insert or update.",
                field="mode",
            )


@dataclass(frozen=True)
class Problem:
    """One thing to fix. `row` is the 1-based record after the header.

    A problem of a header cell also has the cell's 0-based `position`.
    """

    row: int | None
    line: int | None
    column: str | None
    value: str | None
    rule: str
    position: int | None = None

    def describe(self) -> str:
        if self.position is not None and self.row is None:
            # "Column 2 “rt” is a duplicate column: …" (the header on line 1)
            where = "" if self.line in (None, 1) else f" (header on line {self.line:,})"
            name = f"Column {self.position + 1:,} “{self.column or ''}”"
            return f"{name}{where} {self.rule}"
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column:
            where.append(f"column {self.column}")
        value = f" “{self.value}”" if self.value is not None else ""
        return f"{', '.join(where).capitalize()}:{value} {self.rule}"


@dataclass(frozen=True)
class HeaderCell:
    """One column of the file: its header text and where its values go."""

    position: int
    text: str
    target: str | None  # None: ignored
    note: str = ""


# What a job's stored report keeps (Report.bounded_json): the rest is counted, so
# every page, fragment and JSON answer about a job stays small whatever the file.
SHOWN_HEADER_CELLS = 25  # header cells (the rows of the mapping form)
SHOWN_NAMES = 20  # names listed in one message or note before "and N more"
SHOWN_PER_COLUMN = 50  # columns of the problem counts per column
SHOWN_PREVIEW_COLUMNS = 30  # columns of the preview rows
PREVIEW_CHARS = 24_000  # characters of all preview values together (about)
MAX_HEADER_TEXT = 255  # characters of a header cell kept (a label is at most 255)
MAX_RULE = 500  # characters of a problem's rule


def _is_unmatched(cell: HeaderCell) -> bool:
    """A named file column that goes nowhere and was not ignored on purpose."""
    return cell.target is None and cell.note != "ignored" and bool(cell.text.strip())


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class HiddenColumns:
    """The file columns after the first ones a page shows."""

    count: int
    unmatched: int
    names: list[str]  # the first unmatched ones, as shown in messages


@dataclass
class Report:
    """What a check or an import found: format, header plan, counts and problems."""

    format: CsvFormat | None = None
    header: list[HeaderCell] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: int = 0
    written: int = 0
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    per_column: Counter = field(default_factory=Counter)
    bad_rows: int = 0
    preview: list[dict[str, str]] = field(default_factory=list)
    mode: str = "insert"
    # column → missing-value spelling ("" for empty) → cells read as empty
    missing_counts: dict[str, Counter] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)  # start lines of skipped records
    # missing-value spellings among the refused cells (the page proposes them)
    tokens_seen: Counter = field(default_factory=Counter)
    # file position → proposed new column {name, type, reason} for unmatched columns
    new_columns: dict[str, dict[str, str]] = field(default_factory=dict)
    # column → csv_io.formats keys that read every refused value listed (proposals)
    format_choices: dict[str, list[str]] = field(default_factory=dict)
    # What a bounded copy (bounded_json) cut, counted; 0 and [] when nothing was.
    header_total: int = 0  # columns of the file
    unmatched_rest: int = 0  # unmatched columns after the header cells kept
    unmatched_rest_names: list[str] = field(default_factory=list)
    preview_total: int = 0  # columns of the preview rows
    per_column_rest: list[int] = field(default_factory=lambda: [0, 0])  # cols, count

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def column_count(self) -> int:
        """Columns of the file (the header kept may be the first ones only)."""
        return max(self.header_total, len(self.header))

    @property
    def preview_column_count(self) -> int:
        shown = len(self.preview[0]) if self.preview else 0
        return max(self.preview_total, shown)

    def hidden_columns(self, shown: int) -> HiddenColumns:
        """The columns after the first `shown` header cells, counted."""
        after = [c for c in self.header[shown:] if _is_unmatched(c)]
        names = [show_value(c.text) for c in after] + self.unmatched_rest_names
        return HiddenColumns(
            count=max(0, self.column_count - shown),
            unmatched=len(after) + self.unmatched_rest,
            names=names[:SHOWN_NAMES],
        )

    @property
    def targets(self) -> list[str]:
        return [c.target for c in self.header if c.target]

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        self.per_column[problem.column or "(whole row)"] += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(problem)

    def summary(self) -> str:
        if self.ok:
            return f"{self.rows:,} rows are valid."
        first = self.problems[0].describe() if self.problems else ""
        many = "s" if self.problem_count != 1 else ""
        return (
            f"Nothing was imported: {self.problem_count:,} problem{many} found. "
            f"First: {first}"
        )

    def to_json(self) -> dict[str, Any]:
        """A plain-data copy for storing with a job."""
        return {
            "format": (
                {"encoding": self.format.encoding, "delimiter": self.format.delimiter}
                if self.format
                else None
            ),
            "header": [c.__dict__ for c in self.header],
            "notes": self.notes,
            "rows": self.rows,
            "written": self.written,
            "problems": [p.__dict__ for p in self.problems],
            "problem_count": self.problem_count,
            "per_column": dict(self.per_column),
            "bad_rows": self.bad_rows,
            "preview": self.preview,
            "mode": self.mode,
            "missing_counts": {k: dict(v) for k, v in self.missing_counts.items()},
            "skipped": self.skipped[:MAX_LISTED],
            "tokens_seen": dict(self.tokens_seen),
            "new_columns": self.new_columns,
            "format_choices": self.format_choices,
            "header_total": self.column_count,
            "unmatched_rest": self.unmatched_rest,
            "unmatched_rest_names": self.unmatched_rest_names,
            "preview_total": self.preview_column_count,
            "per_column_rest": list(self.per_column_rest),
        }

    def bounded_json(self) -> dict[str, Any]:
        """A copy for a job's row, cut to what its pages show; the rest is counted.

        Keeps the first header cells (and the new-column proposals of those), the
        first preview columns with shortened values and the columns with the most
        problems, so the copy stays far below 100 KB whatever the file.
        """
        data = self.to_json()
        kept = self.header[:SHOWN_HEADER_CELLS]
        hidden = self.hidden_columns(len(kept))
        data["header"] = [c.__dict__ | {"text": c.text[:MAX_HEADER_TEXT]} for c in kept]
        data["unmatched_rest"] = hidden.unmatched
        data["unmatched_rest_names"] = hidden.names
        positions = {str(c.position) for c in kept}
        data["new_columns"] = {
            p: v for p, v in self.new_columns.items() if p in positions
        }
        data["problems"] = [
            p.__dict__ | {"rule": _cut(p.rule, MAX_RULE)} for p in self.problems
        ]
        data["preview"] = self._bounded_preview()
        listed = self.per_column.most_common(SHOWN_PER_COLUMN)
        rest = self.per_column.most_common()[SHOWN_PER_COLUMN:]
        data["per_column"] = dict(listed)
        data["per_column_rest"] = [
            self.per_column_rest[0] + len(rest),
            self.per_column_rest[1] + sum(n for _, n in rest),
        ]
        return data

    def _bounded_preview(self) -> list[dict[str, str]]:
        if not self.preview:
            return []
        names = list(self.preview[0])[:SHOWN_PREVIEW_COLUMNS]
        cells = max(1, len(self.preview) * len(names))
        limit = max(20, min(200, PREVIEW_CHARS // cells))
        return [
            {n: None if row.get(n) is None else _cut(str(row[n]), limit) for n in names}
            for row in self.preview
        ]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        fmt = data.get("format")
        return cls(
            format=CsvFormat(**fmt) if fmt else None,
            header=[HeaderCell(**c) for c in data.get("header", [])],
            notes=list(data.get("notes", [])),
            rows=data.get("rows", 0),
            written=data.get("written", 0),
            problems=[Problem(**p) for p in data.get("problems", [])],
            problem_count=data.get("problem_count", 0),
            per_column=Counter(data.get("per_column", {})),
            bad_rows=data.get("bad_rows", 0),
            preview=list(data.get("preview", [])),
            mode=data.get("mode", "insert"),
            missing_counts={
                k: Counter(v) for k, v in data.get("missing_counts", {}).items()
            },
            skipped=list(data.get("skipped", [])),
            tokens_seen=Counter(data.get("tokens_seen", {})),
            new_columns=dict(data.get("new_columns", {})),
            format_choices=dict(data.get("format_choices", {})),
            header_total=data.get("header_total", 0),
            unmatched_rest=data.get("unmatched_rest", 0),
            unmatched_rest_names=list(data.get("unmatched_rest_names", [])),
            preview_total=data.get("preview_total", 0),
            per_column_rest=list(data.get("per_column_rest", [0, 0])),
        )


def show_value(text: str, limit: int = 40) -> str:
    """A cell as it may be quoted in a message: control characters visible, short."""
    shown = (
        text.encode("unicode_escape").decode("ascii")
        if not text.isprintable()
        else text
    )
    return columns.shorten(shown, limit)


# ----------------------------------------------------------------------
# Header
# ----------------------------------------------------------------------


def _targets(xtype: Any, mode: str) -> dict[str, ColumnDef | None]:
    """Column names a file may fill: participant_id, the custom columns, id (update)."""
    found: dict[str, ColumnDef | None] = {"participant_id": None}
    found.update((c.name, c) for c in xtype.columns)
    if mode == "update":
        found = {"id": None, **found}
    return found


def _match(text: str, targets: Mapping[str, Any]) -> tuple[str | None, str]:
    """The target a header names (exactly, or up to case/spaces) and a note."""
    if text in targets:
        return text, ""
    loose = text.strip().lower()
    if loose in targets:
        return loose, f"“{show_value(text)}” read as {loose} (case or spaces)"
    cleaned = columns.suggest_name(text)
    if cleaned in targets:
        return cleaned, f"“{show_value(text)}” read as {cleaned}"
    return None, ""


def _unknown_rule(text: str, targets: Mapping[str, Any], mode: str) -> str:
    name = text.strip().lower()
    if name == "id":
        return (
            "rows get their ids from wave_web; choose update mode to change existing "
            "rows by id, or ignore this column"
        )
    if name in SET_BY_APP:
        return "is set by wave_web, not by files; ignore this column or remove it"
    close = difflib.get_close_matches(name, list(targets), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else "."
    return f"is not a column of this type{hint} Ignore it or map it to a column."


def plan_header(
    xtype: Any,
    header: list[str],
    options: ImportOptions,
    report: Report,
    line: int = 1,
) -> None:
    """Decide where each file column goes; problems and notes go into `report`."""
    targets = _targets(xtype, options.mode)
    used: dict[str, int] = {}

    def problem(position: int, text: str, rule: str) -> None:
        report.add(Problem(None, line, show_value(text), None, rule, position))

    for position, text in enumerate(header):
        note = ""
        if position in options.mapping:
            target = options.mapping[position] or None
            if target is not None and target not in targets:
                problem(position, text, f"cannot go to {columns.shorten(target)}")
                target = None
            elif target is None:
                note = "ignored"
            elif target != text:
                note = f"mapped to {target}"
        elif not text.strip():
            target, note = None, "no name: must be empty in every row"
        else:
            target, note = _match(text, targets)
            if target is None:
                problem(position, text, _unknown_rule(text, targets, options.mode))
                note = "not matched"
        if target is not None and target in used:
            problem(
                position,
                text,
                f"is a duplicate column: the header already has {target} in column "
                f"{used[target] + 1:,}; ignore one of them",
            )
            target, note = None, "duplicate column"
        if target is not None:
            used[target] = position
        report.header.append(HeaderCell(position, text, target, note))
    _check_missing(xtype, used, options.mode, report, line)


def _check_missing(
    xtype: Any, used: Mapping[str, int], mode: str, report: Report, line: int
) -> None:
    required = ["id"] if mode == "update" else ["participant_id"]
    if mode == "insert":
        required += [c.name for c in xtype.columns if not c.nullable]
    for name in required:
        if name not in used:
            report.add(
                Problem(
                    None,
                    line,
                    name,
                    None,
                    "is required but the file has no such column",
                )
            )
    if mode == "insert":
        absent = [c.name for c in xtype.columns if c.nullable and c.name not in used]
        if absent:
            listed = ", ".join(absent[:SHOWN_NAMES])
            more = len(absent) - SHOWN_NAMES
            rest = f" and {more:,} more" if more > 0 else ""
            report.notes.append(f"Not in the file, left empty: {listed}{rest}.")
    else:
        report.notes.append("Columns not in the file keep their current values.")


# ----------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------

REQUIRED = "is required: the column does not allow empty values"


def _parse_id(text: str) -> int:
    value = columns.parse_integer(text)
    if value < 1:
        raise ValueError("expected a row id (a positive whole number)")
    return value


def _empty_only(text: str) -> None:
    if text.strip():
        raise ValueError("this column has no name in the header, so it must be empty")
    return None


def _parse_participant(text: str) -> str:
    try:
        return datatables.parse_participant_id(text)
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix("participant_id ")) from None


def value_converter(
    col: ColumnDef,
    missing: frozenset[str],
    fmt: str | None = None,
    seen: Counter | None = None,
) -> Callable[[str], Any]:
    """text → Python value (None when empty) for one column, or ValueError.

    `fmt` (a csv_io.formats key) turns a cell into the registry's spelling first;
    `seen` counts the missing-value spellings met (for the preview).
    """
    ctype = columns.COLUMN_TYPES[col.type]
    parse, nullable = ctype.parse, col.nullable
    if col.type == "JSON":  # `[]` is a JSON value (an empty list), not a missing one
        missing = missing - {"[]"}
    if fmt is not None:
        prepare = formats.converter(fmt)
        plain = parse

        def parse(text: str) -> Any:
            return plain(prepare(text.strip()))

    def convert(text: str) -> Any:
        bare = text.strip() if ctype.strip or missing else text
        if not (bare if ctype.strip else text) or bare in missing:
            if seen is not None:
                seen[bare] += 1
            if nullable:
                return None
            raise ValueError(REQUIRED)
        try:
            value = parse(text)
        except ValueError as exc:
            raise ValueError(_token_hint(str(exc), text, missing)) from None
        if value is None and not nullable:  # JSON null
            raise ValueError(REQUIRED)
        return value

    return convert


def _token_hint(rule: str, text: str, missing: frozenset[str]) -> str:
    """A refused missing-value spelling: say that the import can treat it as empty."""
    token = text.strip()
    if token in MISSING_TOKENS and token not in missing:
        return (
            f"{rule} (if “{token}” means no value here, choose “{token}” under "
            "missing values)"
        )
    return rule


def _python_converter(
    name: str | None,
    col: ColumnDef | None,
    options: ImportOptions,
    report: Report | None = None,
) -> Callable[[str], Any]:
    if name is None:
        return _empty_only
    if name == "id":
        return _parse_id
    if col is None:
        return _parse_participant
    seen = None
    if report is not None and options.missing:
        seen = report.missing_counts.setdefault(name, Counter())
    return value_converter(col, options.missing, options.formats.get(name), seen)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(text: str) -> str:
    """A value in COPY's text format (tab-separated, \\N is NULL)."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


_COPY_FORMATS: dict[str, Callable[[Any], str]] = {
    "INTEGER": str,
    "FLOAT": repr,
    "STRING": _copy_text,
    "TEXT": _copy_text,
    "BOOLEAN": lambda v: "t" if v else "f",
    "DATETIME": lambda v: v.isoformat(),
    "JSON": lambda v: _copy_text(columns.format_json(v)),
}


def _compose(
    convert: Callable[[str], Any], out: Callable[[Any], Any] | None, null: Any
) -> Callable[[str], Any]:
    if out is None:
        return convert

    def converted(text: str) -> Any:
        value = convert(text)
        return null if value is None else out(value)

    return converted


def _sink_converter(
    sink: str,
    name: str,
    col: ColumnDef | None,
    table: sa.Table,
    dialect: sa.Dialect,
    options: ImportOptions,
) -> Callable[[str], Any]:
    """text → what the writer sends: COPY text, or a DB-API value for SQLite."""
    convert = _python_converter(name, col, options)
    if sink == "copy":
        fmt = _copy_text if col is None else _COPY_FORMATS[col.type]
        return _compose(convert, fmt, "\\N")
    if sink == "sqlite":
        return _compose(convert, _bind_processor(table.c[name], dialect), None)
    return convert


# ----------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------


@dataclass
class _Plan:
    """How each file column read is converted, in output order."""

    positions: list[int]  # file positions that are read
    names: list[str | None]  # target per position (None: an unnamed, empty column)
    converters: list[Callable[[str], Any]]  # cell by cell, with messages
    fast: list[fastpath.ColumnConverter] | None  # whole columns, or None
    width: int

    @property
    def written(self) -> list[int]:
        """Indexes (into positions) of the columns that are written."""
        return [i for i, n in enumerate(self.names) if n is not None]


def _bind_processor(column: sa.Column, dialect: sa.Dialect) -> Callable | None:
    """What SQLAlchemy applies to a value of `column` before the driver sees it.

    The dialect's implementation of the type, not the generic type: SQLite stores
    datetimes as SQLAlchemy's own text format, which the generic type does not know.
    """
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def _fast_converter(
    name: str | None,
    col: ColumnDef | None,
    sink: str,
    table: sa.Table | None,
    dialect: sa.Dialect | None,
) -> fastpath.ColumnConverter | None:
    if name is None or name == "id":
        return None
    if col is None:
        return fastpath.participant_ids(sink)
    processor = None
    if sink == "sqlite":
        processor = _bind_processor(table.c[name], dialect)
    return fastpath.column_converter(col.type, col.nullable, sink, processor)


def _make_plan(
    report: Report,
    xtype: Any,
    options: ImportOptions,
    sink: str,
    table: sa.Table | None = None,
    dialect: sa.Dialect | None = None,
) -> _Plan:
    targets = _targets(xtype, options.mode)
    positions, names, converters, fast = [], [], [], []
    counted = report if sink == "python" else None
    for cell in report.header:
        if cell.target is None and not cell.note.startswith("no name"):
            continue
        # Unnamed columns (target None) are checked to be empty but never written.
        name, col = cell.target, targets.get(cell.target or "")
        positions.append(cell.position)
        names.append(name)
        if name is None or sink == "python":
            converters.append(_python_converter(name, col, options, counted))
        else:
            converters.append(_sink_converter(sink, name, col, table, dialect, options))
        fast.append(_fast_converter(name, col, sink, table, dialect))
    usable = (
        not options.missing and not options.formats and all(f is not None for f in fast)
    )
    return _Plan(
        positions, names, converters, fast if usable else None, len(report.header)
    )


def _check_row(
    plan: _Plan, row: int, line: int, cells: list[str], report: Report
) -> tuple[list[Any] | None, list[str]]:
    """(converted values or None, messages); problems also go to `report`."""
    if len(cells) != plan.width:
        extra = cells[plan.width :]
        if len(cells) < plan.width or any(c.strip() for c in extra):
            rule = f"has {len(cells)} cells but the header has {plan.width}"
            report.add(Problem(row, line, None, None, rule))
            return None, [rule]
    values, messages = [], []
    for position, name, convert in zip(
        plan.positions, plan.names, plan.converters, strict=True
    ):
        text = cells[position]
        try:
            values.append(convert(text))
        except ValueError as exc:
            if text.strip() in MISSING_TOKENS:
                report.tokens_seen[text.strip()] += 1
            label = name or f"column {position + 1}"
            report.add(Problem(row, line, label, show_value(text), str(exc)))
            messages.append(f"{label}: {exc}")
    return (None if messages else values), messages


_LINE, _CELLS = operator.itemgetter(0), operator.itemgetter(1)


def _fast_columns(plan: _Plan, chunk: list[tuple[int, list[str]]]) -> list | None:
    """The chunk's written columns converted at C speed, or None to go cell by cell."""
    rows = list(map(_CELLS, chunk))
    if plan.fast is None or set(map(len, rows)) != {plan.width}:
        return None
    by_position = list(zip(*rows, strict=True))
    out = []
    for i in plan.written:
        values = plan.fast[i](list(by_position[plan.positions[i]]))
        if values is None:
            return None
        out.append(values)
    return out


def _slow_columns(
    plan: _Plan, chunk: list[tuple[int, list[str]]], first_row: int, report: Report
) -> list | None:
    """The chunk converted cell by cell; None when it has problems (in `report`)."""
    converted = []
    for number, (line, cells) in enumerate(chunk, start=first_row):
        values, messages = _check_row(plan, number, line, cells, report)
        if messages:
            report.bad_rows += 1
        elif report.ok:
            converted.append(values)
    if not report.ok:
        return None
    return [[row[i] for row in converted] for i in plan.written]


@dataclass
class _Batch:
    """Converted rows of one chunk, as columns (written columns of the plan)."""

    first_row: int
    lines: list[int]
    columns: list[list[Any]]

    def __len__(self) -> int:
        return len(self.lines)


def _batches(
    rows: Iterator[tuple[int, list[str]]],
    plan: _Plan,
    report: Report,
    progress: Progress | None,
) -> Iterator[_Batch]:
    """Converted chunks while the file has no problem.

    After the first problem nothing more is yielded, but every row is still checked,
    so the report is complete.
    """
    while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
        first_row = report.rows + 1
        report.rows += len(chunk)
        cols = _fast_columns(plan, chunk)
        if cols is None:
            cols = _slow_columns(plan, chunk, first_row, report)
        if report.ok and cols is not None:
            yield _Batch(first_row, list(map(_LINE, chunk)), cols)
        if progress is not None:
            progress(report.rows)


@dataclass(frozen=True)
class _WithAdded:
    """A type as an import sees it: its columns plus those the import adds."""

    base: Any
    columns: list[ColumnDef]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def effective_type(xtype: Any, options: ImportOptions) -> Any:
    """`xtype`, or a view of it with `options.add_columns` appended."""
    if not options.add_columns:
        return xtype
    return _WithAdded(xtype, [*xtype.columns, *options.add_columns])


def _header(
    rows: Iterator[tuple[int, list[str]]], options: ImportOptions, report: Report
) -> tuple[int, list[str]]:
    """The header record: the first one, or the one starting at `header_line`."""
    for line, cells in rows:
        if options.header_line is None or line == options.header_line:
            return line, cells
        if line > options.header_line:
            break
        report.skipped.append(line)
    if options.header_line is not None:
        raise FileRefused(
            f"No record of the file starts on line {options.header_line:,}, the "
            "chosen header line.",
            options.header_line,
        )
    raise FileRefused("The file has no header row.", 1)


def _data_rows(
    rows: Iterator[tuple[int, list[str]]], skip: frozenset[int], report: Report
) -> Iterator[tuple[int, list[str]]]:
    for line, cells in rows:
        if line in skip:
            report.skipped.append(line)
        else:
            yield line, cells


def _start(
    xtype: Any, path: str, options: ImportOptions
) -> tuple[Report, Iterator[tuple[int, list[str]]]]:
    """Sniff the file and plan its header; the iterator yields the data rows."""
    report = Report(mode=options.mode)
    report.format = options.format or sniff(path)
    if options.backslash_quotes:
        from wave_web.csv_io import inference  # it builds on this module

        rows = inference.records(path, report.format, backslash_quotes=True)
    else:
        rows = records(path, report.format)
    line, header = _header(rows, options, report)
    if options.skip_lines:
        rows = _data_rows(rows, options.skip_lines, report)
    plan_header(xtype, header, options, report, line)
    if report.format.encoding != "utf-8" or report.format.delimiter != ",":
        report.notes.append(f"Read as {report.format.label}.")
    return report, rows


def _no_rows(report: Report) -> None:
    if report.rows == 0 and report.ok:
        report.add(
            Problem(None, None, None, None, "The file has a header but no rows.")
        )


def check_file(
    xtype: Any, path: str, options: ImportOptions, progress: Progress | None = None
) -> Report:
    """Validate a file without writing; the report holds the first rows as stored.

    Raises FileRefused when the file is not readable CSV; problems in the header or
    cells are in the returned report (it never raises ImportRefused).
    """
    xtype = effective_type(xtype, options)
    report, rows = _start(xtype, path, options)
    plan = _make_plan(report, xtype, options, "python")
    names = [plan.names[i] for i in plan.written]
    targets = _targets(xtype, options.mode)
    with _collector_paused():
        for batch in _batches(rows, plan, report, progress):
            if len(report.preview) < PREVIEW_ROWS:
                for values in itertools.islice(zip(*batch.columns, strict=True), 20):
                    if len(report.preview) < PREVIEW_ROWS:
                        report.preview.append(_preview_row(names, values, targets))
    _no_rows(report)
    if options.mode == "insert":
        report.new_columns = _new_column_proposals(xtype, path, options, report)
    report.format_choices = _format_proposals(xtype, options, report)
    return report


def _format_proposals(
    xtype: Any, options: ImportOptions, report: Report
) -> dict[str, list[str]]:
    """For columns with refused cells: the value formats that would read them all.

    Only proposed (the preview shows them): a format is applied when the user
    chooses it. Two that fit (day- and month-first dates) mean the user must choose.
    """
    by_name = {c.name: c for c in xtype.columns}
    refused: dict[str, list[str]] = {}
    for problem in report.problems:
        col = by_name.get(problem.column or "")
        if col is None or problem.value is None or col.name in options.formats:
            continue
        if problem.value.strip() and problem.value.strip() not in MISSING_TOKENS:
            refused.setdefault(col.name, []).append(problem.value)
    found = {}
    for name, values in refused.items():
        parse = columns.COLUMN_TYPES[by_name[name].type].parse
        fits = []
        for fmt in formats.formats_for(by_name[name].type):
            try:
                for value in values:
                    parse(fmt.convert(value.strip()))
            except ValueError:
                continue
            fits.append(fmt.key)
        if fits:
            found[name] = fits
    return found


MAX_PROPOSED_COLUMNS = 200


def _new_column_proposals(
    xtype: Any, path: str, options: ImportOptions, report: Report
) -> dict[str, dict[str, str]]:
    """A name and a type (inferred from every value) for each unmatched column."""
    unmatched = {
        c.position
        for c in report.header
        if c.target is None and c.text.strip() and c.position not in options.mapping
    }
    if not unmatched:
        return {}
    from wave_web.csv_io import inference  # it reads files with this module's help

    try:
        layout = inference.detect_layout(path, header_line=options.header_line)
        analysis = inference.analyse(path, layout)
    except (FileRefused, WaveError):
        return {}
    taken = {c.name for c in xtype.columns} | set(columns.STANDARD_COLUMNS)
    found = {}
    for guess in analysis.columns:
        if guess.position not in unmatched or len(found) >= MAX_PROPOSED_COLUMNS:
            continue
        name, number = guess.name, 2
        while name in taken:
            name, number = f"{guess.name[:58]}_{number}", number + 1
        taken.add(name)
        found[str(guess.position)] = {
            "name": name,
            "type": guess.type,
            "reason": guess.reason,
        }
    return found


def _preview_row(
    names: list[str], values: Iterable[Any], targets: Mapping[str, Any]
) -> dict[str, str]:
    row = {}
    for name, value in zip(names, values, strict=True):
        col = targets[name]
        row[name] = str(value) if col is None else columns.format_value(col.type, value)
    return row


def offending_rows(xtype: Any, path: str, options: ImportOptions) -> Iterator[list]:
    """The rows with problems, as cells plus an `error` cell; the header first."""
    xtype = effective_type(xtype, options)
    report, rows = _start(xtype, path, options)
    header = [c.text for c in report.header]
    yield [*header, "error"]
    if not report.ok:
        # A header problem concerns every row: say so once.
        yield [*([""] * len(header)), "; ".join(p.describe() for p in report.problems)]
        return
    plan = _make_plan(report, xtype, options, "python")
    for number, (line, cells) in enumerate(rows, start=1):
        _, messages = _check_row(plan, number, line, cells, report)
        if messages:
            yield [*cells, "; ".join(messages)]


# ----------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------


def import_file(
    xtype: Any,
    experiment_uuid: uuid.UUID,
    path: str,
    options: ImportOptions,
    progress: Progress | None = None,
) -> Report:
    """Validate and write a file into one experiment, in the current transaction.

    The caller commits. On any problem ImportRefused is raised after the whole file
    was checked; the caller must roll back (nothing it wrote may be kept).
    """
    # Schema changes lock the type's row FOR UPDATE: they wait until this commits,
    # and a change that committed just before is seen by the refresh. An import
    # that adds columns is a schema change itself.
    if not models.lock_type(xtype.id, shared=not options.add_columns):
        raise NotFound("The experiment type was deleted.")
    db.session.refresh(xtype)
    datatables.require_experiment(xtype, experiment_uuid)
    if not options.add_columns:
        with _collector_paused():
            return _import_rows(xtype, experiment_uuid, path, options, progress)
    try:
        _add_columns(xtype, options)
        options = replace(options, add_columns=())
        with _collector_paused():
            return _import_rows(xtype, experiment_uuid, path, options, progress)
    except BaseException:
        datatables.forget(xtype.table_name)  # the rollback takes the columns away
        raise


def _collector_paused() -> contextlib.AbstractContextManager[None]:
    """Python's cyclic garbage collector off while a file is read and written.

    Every row makes a list of cells, every JSON cell a dict or list: a million-row
    file makes millions of tracked objects, and each collection pass walks the ones
    alive. That was half of the JSON column's time. Reference counting frees the
    rows (they hold no cycles); the API's batch pauses it the same way, and the
    collector is back on when the last paused operation of the process ends.
    """
    from wave_web.api.http import gc_paused  # shared count with the API's batches

    return gc_paused()


def _add_columns(xtype: Any, options: ImportOptions) -> None:
    try:
        schema.add_columns_for_import(xtype, options.add_columns)
    except InvalidValue as exc:  # e.g. someone added a column of that name meanwhile
        report = Report(mode=options.mode)
        report.add(Problem(None, None, None, None, exc.message))
        raise ImportRefused(report) from None


def _import_rows(
    xtype: Any,
    experiment_uuid: uuid.UUID,
    path: str,
    options: ImportOptions,
    progress: Progress | None,
) -> Report:
    report, rows = _start(xtype, path, options)
    if not report.ok:
        report.rows = sum(1 for _ in rows)  # for the report; cells are not checked
        raise ImportRefused(report)
    table = datatables.reflect(xtype)
    conn = db.session.connection()
    if options.mode == "update":
        plan = _make_plan(report, xtype, options, "python")
        batches = _batches(rows, plan, report, progress)
        _update(table, experiment_uuid, plan, batches, report)
    elif conn.dialect.name == "postgresql":
        plan = _make_plan(report, xtype, options, "copy", table, conn.dialect)
        if OVERLAP_COPY:
            batches = _prefetched(
                lambda relay: _batches(rows, plan, report, relay), progress
            )
        else:
            batches = _batches(rows, plan, report, progress)
        _copy_in(conn, table, plan, experiment_uuid, batches, report)
    else:
        plan = _make_plan(report, xtype, options, "sqlite", table, conn.dialect)
        if OVERLAP_SQLITE_WRITES:
            batches = _prefetched(
                lambda relay: _batches(rows, plan, report, relay), progress
            )
        else:
            batches = _batches(rows, plan, report, progress)
        with _sqlite_bulk_write(conn, table, os.path.getsize(path)):
            _insert_many(conn, table, plan, experiment_uuid, batches, report)
    _no_rows(report)
    if not report.ok:
        report.written = 0
        raise ImportRefused(report)
    if options.mode == "insert":
        datatables.adjust_row_count(experiment_uuid, report.written)
    else:
        datatables.touch_experiment(experiment_uuid)  # cached summaries are stale
    return report


class _Stopped(Exception):
    """The consumer of prefetched batches has gone."""


def _prefetched(
    make: Callable[[Progress], Iterator[_Batch]], progress: Progress | None
) -> Iterator[_Batch]:
    """Batches converted in a thread while this one writes the previous batch.

    sqlite3 releases the GIL while SQLite works, so converting and writing overlap.
    Progress is reported from this (the caller's) thread, so the callback may use
    the app context; an exception on either side stops both.
    """
    channel: queue.Queue = queue.Queue(maxsize=4)
    gone = threading.Event()

    def relay(rows: int) -> None:
        if gone.is_set():
            raise _Stopped
        channel.put(("progress", rows))

    def produce() -> None:
        try:
            for batch in make(relay):
                if gone.is_set():
                    return
                channel.put(("batch", batch))
            channel.put(("done", None))
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the caller's thread and raised there
            channel.put(("error", exc))

    worker = threading.Thread(target=produce, name="csv-import", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = channel.get()
            if kind == "batch":
                yield item
            elif kind == "progress":
                if progress is not None:
                    progress(item)
            elif kind == "error":
                raise item
            else:
                return
    finally:
        gone.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                channel.get(timeout=0.05)
        worker.join()


SQLITE_IMPORT_CACHE_KIB = 64 * 1024  # page cache of the import's connection
SQLITE_DEFER_INDEXES_BYTES = 1024 * 1024  # files from this size into an empty table


@contextlib.contextmanager
def _sqlite_bulk_write(conn: sa.Connection, table: sa.Table, size: int) -> Iterator:
    """SQLite settings for a large insert, inside the import's transaction.

    - A larger page cache for this connection while the rows go in, and helper
      threads for the index builds' sorts (both restored after): with the default
      2 MiB cache, the indexes on participant_id, whose keys come in random order,
      spill pages to the WAL and write them again and again.
    - Into an empty table, a large file is inserted without the table's secondary
      indexes, which are built again at the end from their own SQL (a sort is far
      cheaper than a million random inserts). The DDL is part of the transaction: a
      refused or failed import rolls it back with the rows, and readers (WAL) keep
      seeing the committed table and its indexes meanwhile.

    Durability is untouched: journal mode and synchronous stay as they are.
    """
    cursor = conn.connection.dbapi_connection.cursor()
    (previous,) = cursor.execute("PRAGMA cache_size").fetchone()
    (threads,) = cursor.execute("PRAGMA threads").fetchone()
    try:
        cursor.execute(f"PRAGMA cache_size = {-SQLITE_IMPORT_CACHE_KIB:d}")
        cursor.execute("PRAGMA threads = 2")  # index builds sort on both cores
        indexes = []
        if size >= SQLITE_DEFER_INDEXES_BYTES:
            indexes = _deferrable_indexes(conn, table)
        for name, _sql in indexes:
            conn.execute(sa.schema.DropIndex(sa.Index(name)))  # the dialect quotes
        yield
        for _name, sql in indexes:
            cursor.execute(sql)
    finally:
        cursor.execute(f"PRAGMA cache_size = {int(previous):d}")
        cursor.execute(f"PRAGMA threads = {int(threads):d}")
        cursor.close()


def _deferrable_indexes(conn: sa.Connection, table: sa.Table) -> list[tuple[str, str]]:
    """(name, CREATE INDEX sql) of an empty table's plain secondary indexes.

    Empty, because built at the end an index holds only the new rows' entries; no
    UNIQUE index, so no row of the file can fail at the end instead of in its row.
    """
    if conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first():
        return []
    found = conn.execute(
        sa.text(
            "SELECT name, sql FROM sqlite_master "
            "WHERE type = 'index' AND tbl_name = :table AND sql IS NOT NULL"
        ),
        {"table": table.name},
    ).all()
    if any("UNIQUE" in sql.upper().split("(")[0] for _, sql in found):
        return []
    return found


def _written_names(plan: _Plan) -> list[str]:
    return [plan.names[i] for i in plan.written]


def _copy_in(
    conn: sa.Connection,
    table: sa.Table,
    plan: _Plan,
    experiment_uuid: uuid.UUID,
    batches: Iterator[_Batch],
    report: Report,
) -> None:
    """Stream converted rows into COPY … FROM STDIN (text format)."""
    names = [*_written_names(plan), *SET_BY_APP]
    now = datatables.naive_utcnow().isoformat()
    suffix = f"\t{experiment_uuid}\t{now}\t{now}\n"

    def chunks() -> Iterator[str]:
        for batch in batches:
            report.written += len(batch)
            lines = map("\t".join, zip(*batch.columns, strict=True))
            yield suffix.join(lines) + suffix

    source = _ChunkReader(chunks())
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(_copy_statement(conn.dialect, table, names), source)
    except Exception:
        # psycopg2 reports an exception raised by read() as a cancelled COPY.
        if source.error is not None:
            raise source.error from None
        raise
    finally:
        cursor.close()


def _copy_statement(dialect: sa.Dialect, table: sa.Table, names: list[str]) -> str:
    """COPY's SQL, identifiers from the reflected table quoted by the dialect."""
    quote = dialect.identifier_preparer.quote
    cols = ", ".join(quote(table.c[n].name) for n in names)
    target = dialect.identifier_preparer.format_table(table)
    return "COPY " + target + " (" + cols + ") FROM STDIN"


class _ChunkReader:
    """The file-like object copy_expert reads: each read() is the next chunk."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> str:
        try:
            return next(self._chunks, "")
        except BaseException as exc:
            self.error = exc
            raise

    readline = read


def _insert_many(
    conn: sa.Connection,
    table: sa.Table,
    plan: _Plan,
    experiment_uuid: uuid.UUID,
    batches: Iterator[_Batch],
    report: Report,
) -> None:
    """Batched executemany of converted rows (SQLite)."""
    names = [*_written_names(plan), *SET_BY_APP]
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=names)
    processors = [_bind_processor(table.c[n], conn.dialect) for n in SET_BY_APP]
    now = datatables.naive_utcnow()
    constants = [
        p(v) if p else v
        for p, v in zip(processors, (experiment_uuid, now, now), strict=True)
    ]
    # The statement lists columns in table order; `order` says where each one is.
    order = [names.index(n) for n in compiled.positiontup]
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        for batch in batches:
            cols = [*batch.columns, *(itertools.repeat(c) for c in constants)]
            rows = zip(*(cols[i] for i in order), strict=False)  # repeat() is endless
            cursor.executemany(compiled.string, rows)
            report.written += len(batch)
    finally:
        cursor.close()


def _update(
    table: sa.Table,
    experiment_uuid: uuid.UUID,
    plan: _Plan,
    batches: Iterator[_Batch],
    report: Report,
) -> None:
    """Update rows of this experiment by id, in batches; unknown ids are problems."""
    names = _written_names(plan)
    changed = [n for n in names if n != "id"]
    stmt = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("_id"))
        .where(table.c.experiment_uuid == experiment_uuid)
        .values({n: sa.bindparam("_" + n) for n in changed})
        .values(updated_at=sa.bindparam("_updated_at"))
    )
    keys = ["_" + n for n in names]
    seen: set[int] = set()
    now = datatables.naive_utcnow()
    for batch in batches:
        ids = batch.columns[names.index("id")]
        _check_ids(table, experiment_uuid, ids, seen, batch, report)
        if report.ok:
            params = [
                dict(zip(keys, row, strict=True)) | {"_updated_at": now}
                for row in zip(*batch.columns, strict=True)
            ]
            db.session.execute(stmt, params)
            report.written += len(batch)


def _existing(table: sa.Table, experiment_uuid: uuid.UUID, ids: list[int]) -> set:
    """The ids among `ids` that are rows of this experiment."""
    found: set[int] = set()
    for start in range(0, len(ids), 1000):
        chunk = [i for i in ids[start : start + 1000] if i <= columns.INT_MAX]
        stmt = sa.select(table.c.id).where(
            table.c.experiment_uuid == experiment_uuid, table.c.id.in_(chunk)
        )
        found.update(db.session.scalars(stmt))
    return found


def _check_ids(
    table: sa.Table,
    experiment_uuid: uuid.UUID,
    ids: list[int],
    seen: set[int],
    batch: _Batch,
    report: Report,
) -> None:
    found = _existing(table, experiment_uuid, ids)
    for offset, row_id in enumerate(ids):
        row, line = batch.first_row + offset, batch.lines[offset]
        if row_id in seen:
            report.add(
                Problem(row, line, "id", str(row_id), "appears twice in the file")
            )
        elif row_id not in found:
            report.add(
                Problem(
                    row,
                    line,
                    "id",
                    str(row_id),
                    "is not a row of this experiment (unknown, deleted, or in "
                    "another experiment)",
                )
            )
        seen.add(row_id)


def mapping_from_form(values: Iterable[tuple[str, str]]) -> dict[int, str]:
    """`map-<position>` form fields → ImportOptions.mapping."""
    mapping = {}
    for key, value in values:
        if key.startswith("map-") and key[4:].isdigit():
            mapping[int(key[4:])] = value
    return mapping

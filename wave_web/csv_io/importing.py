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

import difflib
import itertools
import operator
import uuid
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import sqlalchemy as sa

from wave_web import columns
from wave_web import datatables
from wave_web.columns import ColumnDef
from wave_web.csv_io.reading import CsvFormat
from wave_web.csv_io.reading import FileRefused
from wave_web.csv_io.reading import records
from wave_web.csv_io.reading import sniff
from wave_web.errors import WaveError
from wave_web.extensions import db

MAX_LISTED = 100  # problems shown in full; the rest are counted per column
PREVIEW_ROWS = 20
CHUNK_ROWS = 5_000  # rows per COPY chunk / executemany / progress report
MISSING_TOKENS = ("NA", "N/A", "None", "null", "NULL", "NaN", "nan")
SET_BY_APP = ("experiment_uuid", "created_at", "updated_at")
MODES = ("insert", "update")

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
    "" to ignore that column; positions not in it are mapped by name.
    """

    mode: str = "insert"
    mapping: Mapping[int, str] = field(default_factory=dict)
    missing: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise WaveError(
                f"Unknown import mode “{columns.shorten(str(self.mode))}”; "
                "use insert or update.",
                field="mode",
            )


@dataclass(frozen=True)
class Problem:
    """One thing to fix. `row` is the 1-based record after the header."""

    row: int | None
    line: int | None
    column: str | None
    value: str | None
    rule: str

    def describe(self) -> str:
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

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

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
        }

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
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"is not a column of this type{hint} Ignore it or map it to a column"


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
    for position, text in enumerate(header):
        note = ""
        if position in options.mapping:
            target = options.mapping[position] or None
            if target is not None and target not in targets:
                report.add(
                    Problem(
                        None, line, show_value(text), None, f"cannot go to {target}"
                    )
                )
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
                rule = _unknown_rule(text, targets, options.mode)
                report.add(Problem(None, line, show_value(text), None, rule))
        if target is not None and target in used:
            report.add(
                Problem(
                    None,
                    line,
                    show_value(text),
                    None,
                    f"is a second column for {target} (first: column "
                    f"{used[target] + 1}); ignore one of them",
                )
            )
            target = None
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
            report.notes.append(
                "Not in the file, left empty: " + ", ".join(absent) + "."
            )
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


def value_converter(col: ColumnDef, missing: frozenset[str]) -> Callable[[str], Any]:
    """text → Python value (None when empty) for one column, or ValueError."""
    ctype = columns.COLUMN_TYPES[col.type]
    parse, nullable = ctype.parse, col.nullable

    def convert(text: str) -> Any:
        bare = text.strip() if ctype.strip or missing else text
        if not (bare if ctype.strip else text) or bare in missing:
            if nullable:
                return None
            raise ValueError(REQUIRED)
        return parse(text)

    return convert


def _python_converter(
    name: str | None, col: ColumnDef | None, missing: frozenset[str]
) -> Callable[[str], Any]:
    if name is None:
        return _empty_only
    if name == "id":
        return _parse_id
    if col is None:
        return _parse_participant
    return value_converter(col, missing)


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
    missing: frozenset[str],
) -> Callable[[str], Any]:
    """text → what the writer sends: COPY text, or a DB-API value for SQLite."""
    convert = _python_converter(name, col, missing)
    if sink == "copy":
        fmt = _copy_text if col is None else _COPY_FORMATS[col.type]
        return _compose(convert, fmt, "\\N")
    if sink == "sqlite":
        return _compose(convert, table.c[name].type.bind_processor(dialect), None)
    return convert


# ----------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------


@dataclass
class _Plan:
    positions: list[int]  # file positions that are read, in output order
    names: list[str | None]  # target per position (None: an unnamed, empty column)
    converters: list[Callable[[str], Any]]
    width: int


def _make_plan(
    report: Report,
    xtype: Any,
    options: ImportOptions,
    sink: str,
    table: sa.Table | None = None,
    dialect: sa.Dialect | None = None,
) -> _Plan:
    targets = _targets(xtype, options.mode)
    positions, names, converters = [], [], []
    for cell in report.header:
        if cell.target is None and cell.note.startswith("no name"):
            # Unnamed columns are checked to be empty but never written.
            name = None
        elif cell.target is None:
            continue
        else:
            name = cell.target
        positions.append(cell.position)
        names.append(name)
        if name is None or sink == "python":
            converters.append(
                _python_converter(name, targets.get(name or ""), options.missing)
            )
        else:
            converters.append(
                _sink_converter(
                    sink, name, targets[name], table, dialect, options.missing
                )
            )
    return _Plan(positions, names, converters, len(report.header))


def _check_row(
    plan: _Plan, row: int, line: int, cells: list[str], report: Report
) -> list[str] | None:
    """The row's messages (for the offending-rows file); problems go to `report`."""
    messages = []
    if len(cells) != plan.width:
        extra = cells[plan.width :]
        if len(cells) < plan.width or any(c.strip() for c in extra):
            rule = f"has {len(cells)} cells but the header has {plan.width}"
            report.add(Problem(row, line, None, None, rule))
            return [rule]
    for position, name, convert in zip(
        plan.positions, plan.names, plan.converters, strict=True
    ):
        text = cells[position]
        try:
            convert(text)
        except ValueError as exc:
            label = name or f"column {position + 1}"
            problem = Problem(row, line, label, show_value(text), str(exc))
            report.add(problem)
            messages.append(f"{label}: {exc}")
    return messages


def _convert_rows(
    rows: Iterator[tuple[int, list[str]]],
    plan: _Plan,
    report: Report,
    progress: Progress | None,
    on_bad: Callable[[list[str], list[str]], None] | None = None,
) -> Iterator[list[Any]]:
    """Converted rows (positions in plan order) while the file has no problem.

    After the first problem nothing more is yielded, but every row is still checked,
    so the report is complete.
    """
    positions, converters, width = plan.positions, plan.converters, plan.width
    pairs = list(zip(positions, converters, strict=True))
    identity = positions == list(range(width))
    for number, (line, cells) in enumerate(rows, start=1):
        report.rows = number
        if progress is not None and number % CHUNK_ROWS == 0:
            progress(number)
        try:
            if len(cells) != width:
                raise ValueError
            if identity:
                values = [c(t) for c, t in zip(converters, cells)]  # noqa: B905
            else:
                values = [c(cells[p]) for p, c in pairs]
        except (ValueError, IndexError):
            messages = _check_row(plan, number, line, cells, report)
            if messages:
                report.bad_rows += 1
                if on_bad is not None:
                    on_bad(cells, messages)
                continue
            values = [c(cells[p]) for p, c in pairs]
        if report.ok:
            yield values


def _start(
    xtype: Any, path: str, options: ImportOptions
) -> tuple[Report, Iterator[tuple[int, list[str]]]]:
    """Sniff the file and plan its header; the iterator yields the data rows."""
    report = Report(mode=options.mode)
    report.format = sniff(path)
    rows = records(path, report.format)
    first = next(rows, None)
    if first is None:
        raise FileRefused("The file has no header row.", 1)
    plan_header(xtype, first[1], options, report, first[0])
    if report.format.encoding != "utf-8" or report.format.delimiter != ",":
        report.notes.append(f"Read as {report.format.label}.")
    return report, rows


def _finish(report: Report) -> Report:
    if report.rows == 0 and report.ok:
        report.add(
            Problem(None, None, None, None, "The file has a header but no rows.")
        )
    if not report.ok:
        raise ImportRefused(report)
    return report


def check_file(
    xtype: Any, path: str, options: ImportOptions, progress: Progress | None = None
) -> Report:
    """Validate a file without writing; the report holds the first rows as stored.

    Raises FileRefused when the file is not readable CSV; problems in the header or
    cells are in the returned report (it never raises ImportRefused).
    """
    report, rows = _start(xtype, path, options)
    plan = _make_plan(report, xtype, options, "python")
    names = plan.names
    targets = _targets(xtype, options.mode)
    for values in _convert_rows(rows, plan, report, progress):
        if len(report.preview) < PREVIEW_ROWS:
            report.preview.append(_preview_row(names, values, targets))
    if report.rows == 0 and report.ok:
        report.add(
            Problem(None, None, None, None, "The file has a header but no rows.")
        )
    return report


def _preview_row(
    names: list[str | None], values: list[Any], targets: Mapping[str, Any]
) -> dict[str, str]:
    row = {}
    for name, value in zip(names, values, strict=True):
        if name is None:
            continue
        col = targets[name]
        row[name] = str(value) if col is None else columns.format_value(col.type, value)
    return row


def offending_rows(xtype: Any, path: str, options: ImportOptions) -> Iterator[list]:
    """The rows with problems, as cells plus an `error` cell; the header first."""
    report, rows = _start(xtype, path, options)
    header = [c.text for c in report.header]
    yield [*header, "error"]
    if not report.ok:
        # A header problem concerns every row: say so once.
        yield [*([""] * len(header)), "; ".join(p.describe() for p in report.problems)]
        return
    plan = _make_plan(report, xtype, options, "python")
    for number, (line, cells) in enumerate(rows, start=1):
        messages = _check_row(plan, number, line, cells, report)
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
    datatables.require_experiment(xtype, experiment_uuid)
    report, rows = _start(xtype, path, options)
    if not report.ok:
        for _ in rows:  # count the rows for the report; cells are not checked
            report.rows += 1
        raise ImportRefused(report)
    table = datatables.reflect(xtype)
    conn = db.session.connection()
    dialect = conn.dialect
    if options.mode == "update":
        _update(xtype, table, experiment_uuid, rows, report, options, progress)
    elif dialect.name == "postgresql":
        plan = _make_plan(report, xtype, options, "copy", table, dialect)
        _copy_in(conn, table, plan, experiment_uuid, rows, report, progress)
    else:
        plan = _make_plan(report, xtype, options, "sqlite", table, dialect)
        _insert_many(conn, table, plan, experiment_uuid, rows, report, progress)
    _finish(report)
    if options.mode == "insert":
        datatables.adjust_row_count(experiment_uuid, report.written)
    return report


def _written_names(plan: _Plan) -> list[str]:
    return [n for n in plan.names if n is not None]


def _keep(plan: _Plan) -> Callable[[list[Any]], list[Any]]:
    """Drop the values of unnamed (always empty) columns."""
    if all(n is not None for n in plan.names):
        return lambda values: values
    keep = [i for i, n in enumerate(plan.names) if n is not None]
    return lambda values: [values[i] for i in keep]


def _copy_in(
    conn: sa.Connection,
    table: sa.Table,
    plan: _Plan,
    experiment_uuid: uuid.UUID,
    rows: Iterator[tuple[int, list[str]]],
    report: Report,
    progress: Progress | None,
) -> None:
    """Stream converted rows into COPY … FROM STDIN (text format)."""
    names = [*_written_names(plan), *SET_BY_APP]
    now = datatables.naive_utcnow().isoformat()
    suffix = f"\t{experiment_uuid}\t{now}\t{now}\n"
    keep = _keep(plan)
    converted = _convert_rows(rows, plan, report, progress)

    def chunks() -> Iterator[str]:
        while batch := list(itertools.islice(converted, CHUNK_ROWS)):
            report.written += len(batch)
            yield "".join("\t".join(keep(values)) + suffix for values in batch)

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
    if not report.ok:
        report.written = 0


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
    rows: Iterator[tuple[int, list[str]]],
    report: Report,
    progress: Progress | None,
) -> None:
    """Batched executemany of converted rows (SQLite)."""
    names = [*_written_names(plan), *SET_BY_APP]
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=names)
    # The statement lists columns in table order; `order` puts each row in it.
    order = operator.itemgetter(*(names.index(n) for n in compiled.positiontup))
    extra = [table.c[n].type.bind_processor(conn.dialect) for n in SET_BY_APP]
    now = datatables.naive_utcnow()
    constants = tuple(
        p(v) if p else v
        for p, v in zip(extra, (experiment_uuid, now, now), strict=True)
    )
    keep = _keep(plan)
    converted = _convert_rows(rows, plan, report, progress)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        while batch := list(itertools.islice(converted, CHUNK_ROWS)):
            cursor.executemany(
                compiled.string, [order((*keep(v), *constants)) for v in batch]
            )
            report.written += len(batch)
    finally:
        cursor.close()
    if not report.ok:
        report.written = 0


def _update(
    xtype: Any,
    table: sa.Table,
    experiment_uuid: uuid.UUID,
    rows: Iterator[tuple[int, list[str]]],
    report: Report,
    options: ImportOptions,
    progress: Progress | None,
) -> None:
    """Update rows of this experiment by id, in batches; unknown ids are problems."""
    plan = _make_plan(report, xtype, options, "python")
    names = _written_names(plan)
    keep = _keep(plan)
    id_at = names.index("id")
    changed = [n for n in names if n != "id"]
    stmt = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("_id"))
        .where(table.c.experiment_uuid == experiment_uuid)
        .values({n: sa.bindparam("_" + n) for n in changed})
        .values(updated_at=sa.bindparam("_updated_at"))
    )
    seen: set[int] = set()
    where = {n: names.index(n) for n in changed}
    now = datatables.naive_utcnow()
    numbered = _numbered(rows)
    converted = _convert_rows(numbered.rows(), plan, report, progress)
    while batch := list(itertools.islice(converted, CHUNK_ROWS)):
        batch = [keep(v) for v in batch]
        ids = [v[id_at] for v in batch]
        _check_ids(table, experiment_uuid, ids, seen, numbered, report)
        if report.ok:
            params = [
                {"_id": v[id_at], "_updated_at": now}
                | {"_" + n: v[i] for n, i in where.items()}
                for v in batch
            ]
            db.session.execute(stmt, params)
            report.written += len(batch)
    if not report.ok:
        report.written = 0


class _numbered:
    """Remembers (row number, line) of each id, for messages about unknown ids."""

    def __init__(self, rows: Iterator[tuple[int, list[str]]]) -> None:
        self._rows = rows
        self.lines: list[int] = []

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        for line, cells in self._rows:
            self.lines.append(line)
            yield line, cells


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
    numbered: _numbered,
    report: Report,
) -> None:
    # Rows of this batch are the last len(ids) rows read that had no problem.
    found = _existing(table, experiment_uuid, ids)
    first_row = report.rows - len(ids) + 1
    for offset, row_id in enumerate(ids):
        row = first_row + offset
        line = numbered.lines[row - 1] if row - 1 < len(numbered.lines) else None
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

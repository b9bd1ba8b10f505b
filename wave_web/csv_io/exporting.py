"""CSV export: streamed downloads of an experiment, a type or a grid view.

An export is planned from the grid's query string (the same RowQuery, so a view exports
exactly the rows the grid shows, in its order), recorded in the audit log, then
streamed on a connection of its own:

- PostgreSQL: `COPY (SELECT …) TO STDOUT WITH (FORMAT csv)` through psycopg2's
  `copy_expert`, in a thread that feeds a bounded queue. The SELECT is built by
  SQLAlchemy from the reflected table and formats every value in canonical spelling
  (design §2) in SQL; its parameters are bound by SQLAlchemy and inlined only by
  psycopg2's `cursor.mogrify`.
- SQLite: one SELECT read in batches (`yield_per`), formatted in Python by the column
  registry and written with `csv.writer`.

Both give RFC 4180 CSV (CRLF line ends), UTF-8 with an optional BOM, and neutralise
text cells that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR) with
a leading `'`, unless the download opts out. Memory stays constant: at most a few
chunks of CHUNK_BYTES are in flight.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import queue
import re
import threading
import unicodedata
import uuid
import zipfile
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import orjson
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from wave_web import columns
from wave_web import datatables
from wave_web import queries
from wave_web import replica
from wave_web.errors import WaveError
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import record
from wave_web.queries import BadQuery
from wave_web.queries import GridColumn
from wave_web.queries import RowQuery

CHUNK_BYTES = 128 * 1024  # one piece of the response body
QUEUE_CHUNKS = 4  # chunks the PostgreSQL reader may be ahead of the client
BATCH_ROWS = 1000  # rows per fetch on SQLite
WRITE_ROWS = 50  # rows formatted between two looks at the chunk size
BOM = codecs.BOM_UTF8

# A cell starting with one of these is a formula to Excel, LibreOffice and Sheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_SET = frozenset(FORMULA_PREFIXES)
# Only these hold free text; numbers, booleans, times and JSON are never altered.
TEXT_TYPES = frozenset({"STRING", "TEXT"})

# Grid parameters that only move through pages: an export has all matching rows.
PAGING_PARAMS = frozenset(("_size", "_after", "_before", "_last", "_start", "_count"))
FILTER_FORM_PARAMS = frozenset(("_fcol", "_fop", "_fval"))  # the grid redirects these


class ExportFailed(WaveError):
    """The database stopped an export midway; the download must not look complete."""

    status = 503


# ----------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExportOptions:
    """What a download contains besides the rows; parsed from `_`-prefixed params.

    Underscore names never clash with filters: column names start with a letter.
    """

    bom: bool = False
    neutralise: bool = True
    include_id: bool = True
    timestamps: bool = False
    dictionary: bool = False

    PARAMS = {
        "bom": "_bom",
        "neutralise": "_neutralise",
        "include_id": "_id",
        "timestamps": "_timestamps",
        "dictionary": "_dictionary",
    }

    @classmethod
    def from_args(cls, args: Mapping | MultiDict) -> ExportOptions:
        """Options from a query string; the last value wins (hidden 0 + checkbox 1)."""
        values = {}
        for attr, param in cls.PARAMS.items():
            raw = _last(args, param)
            if raw is not None:
                values[attr] = _flag(param, raw)
        return cls(**values)

    def params(self, with_dictionary: bool = False) -> list[tuple[str, str]]:
        """The options that differ from the defaults, as query parameters."""
        default = ExportOptions()
        out = []
        for attr, param in self.PARAMS.items():
            if attr == "dictionary" and not with_dictionary:
                continue
            value = getattr(self, attr)
            if value != getattr(default, attr):
                out.append((param, "1" if value else "0"))
        return out


OPTION_PARAMS = frozenset(ExportOptions.PARAMS.values())
IGNORED_PARAMS = PAGING_PARAMS | FILTER_FORM_PARAMS | OPTION_PARAMS
_TRUE = frozenset({"1", "true", "on", "yes"})
_FALSE = frozenset({"0", "false", "off", "no", ""})


def _last(args: Mapping | MultiDict, key: str) -> str | None:
    if isinstance(args, MultiDict):
        found = args.getlist(key)
        return found[-1] if found else None
    return args.get(key)


def _flag(param: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadQuery(
        f"The export option {param} must be 1 or 0, not “{columns.shorten(raw)}”.",
        field=param,
    )


# ----------------------------------------------------------------------
# The plan of one export
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentInfo:
    """The experiment's metadata, copied so the stream needs no ORM session."""

    uuid: uuid.UUID
    description: str
    tags: tuple[str, ...]
    additional_data: Any
    created_at: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "uuid": str(self.uuid),
            "description": self.description,
            "tags": list(self.tags),
            "additional_data": self.additional_data,
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True, eq=False)
class ExportPlan:
    """Everything an export needs, parsed and checked before the first byte is sent."""

    type_id: int
    type_name: str
    type_description: str
    table_name: str
    schema_version: int
    table: sa.Table
    engine: sa.Engine
    query: RowQuery
    columns: tuple[GridColumn, ...]
    options: ExportOptions
    experiment: ExperimentInfo | None
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    # Built while the request's context is there (filters may ask for the dialect):
    # the SELECT, and for databases without COPY the function that formats a row.
    statement: sa.Select | None = None
    cells: Callable[[Any], list] | None = None

    @property
    def is_view(self) -> bool:
        """Filtered, sorted or with hidden columns: not simply all rows."""
        return self.query.is_view

    @property
    def header(self) -> list[str]:
        return [c.name for c in self.columns]

    def filename(self, extension: str) -> str:
        """`<table>-<experiment or "all">[-filtered]-<date>.<extension>`."""
        who = str(self.experiment.uuid)[:8] if self.experiment else "all"
        view = "-filtered" if self.query.filters else ""
        day = self.started.date().isoformat()
        return f"{self.table_name}-{who}{view}-{day}.{extension}"

    def view_params(self) -> list[tuple[str, str]]:
        """The grid's query string of this view (filters, sort, hidden columns)."""
        return [(k, v) for k, v in self.query.view_params() if k != "_size"]

    def describe(self) -> str:
        """One line for the audit log and the page."""
        what = (
            f"experiment {self.experiment.uuid}"
            if self.experiment
            else f"all experiments of type “{self.type_name}”"
        )
        labels = [f.label for f in self.query.filters]
        return f"Exported rows of {what}" + (
            f" matching {'; '.join(labels)}" if labels else ""
        )


def export_columns(
    cols: list[GridColumn], query: RowQuery, options: ExportOptions
) -> tuple[GridColumn, ...]:
    """Columns of the file: [id] [experiment_uuid] participant_id custom… [times].

    participant_id and the custom columns come first in the order of the blank
    template; `id` (on by default) lets an edited file update its rows on re-import;
    the timestamps (off by default) are for analysis only, since an import refuses them.
    Columns hidden in the grid view are left out.
    """
    by_name = {c.name: c for c in cols}
    names = ["id"] if options.include_id else []
    names += [n for n in ("experiment_uuid", "participant_id") if n in by_name]
    names += [c.name for c in cols if not c.standard]
    if options.timestamps:
        names += ["created_at", "updated_at"]
    return tuple(by_name[n] for n in names if n not in query.hidden)


def plan_export(
    xtype: Any, args: Mapping | MultiDict, experiment: Any | None = None
) -> ExportPlan:
    """Parse the grid's query string and the options; BadQuery (400) when unusable.

    Paging parameters are ignored: an export has every matching row.
    """
    cols = queries.grid_columns(xtype, with_experiment=experiment is None)
    items = args.items(multi=True) if isinstance(args, MultiDict) else args.items()
    view = MultiDict((k, v) for k, v in items if k not in IGNORED_PARAMS)
    query = RowQuery.from_args(cols, view)
    options = ExportOptions.from_args(args)
    chosen = export_columns(cols, query, options)
    if not chosen:
        raise BadQuery(
            "Every column of this view is hidden: show at least one column to export.",
            field="_hide",
        )
    plan = ExportPlan(
        type_id=xtype.id,
        type_name=xtype.name,
        type_description=xtype.description or "",
        table_name=xtype.table_name,
        schema_version=xtype.schema_version,
        table=datatables.reflect(xtype),
        engine=replica.read_engine(),  # the read replica's, for a GET with one
        query=query,
        columns=chosen,
        options=options,
        experiment=_experiment_info(experiment) if experiment is not None else None,
    )
    if plan.engine.dialect.name == "postgresql":
        _install_copy_hook(plan.engine)
        return replace(plan, statement=postgresql_select(plan))
    statement, cells = python_rows(plan)
    return replace(plan, statement=statement, cells=cells)


def _experiment_info(experiment: Any) -> ExperimentInfo:
    return ExperimentInfo(
        uuid=experiment.uuid,
        description=experiment.description,
        tags=tuple(experiment.tags or ()),
        additional_data=experiment.additional_data,
        created_at=experiment.created_at,
    )


def count_rows(plan: ExportPlan, cap: int = queries.COUNT_CAP) -> tuple[int, bool]:
    """Rows the export will hold, exact up to `cap`: (count, capped).

    Without filters the experiments' kept row counts answer at once.
    """
    if not plan.query.filters:
        return total_rows(plan), False
    inner = sa.select(plan.table.c.id).where(*_where(plan)).limit(cap + 1)
    found = db.session.execute(
        sa.select(sa.func.count()).select_from(inner.subquery())
    ).scalar_one()
    return min(found, cap), found > cap


def total_rows(plan: ExportPlan) -> int:
    """Rows of the plan's experiment (or type) without filters, from the kept counts."""
    stmt = sa.select(sa.func.coalesce(sa.func.sum(Experiment.row_count), 0))
    if plan.experiment:
        stmt = stmt.where(Experiment.uuid == plan.experiment.uuid)
    else:
        stmt = stmt.where(Experiment.experiment_type_id == plan.type_id)
    return int(db.session.execute(stmt).scalar_one())


def record_export(plan: ExportPlan, kind: str = "csv") -> None:
    """Audit the export in a short transaction of its own, before streaming starts.

    The read transaction of the request ends first, so on SQLite the entry's write
    waits for the lock (busy timeout) instead of failing on a stale snapshot.
    """
    db.session.commit()
    q = plan.query
    record(
        "rows.export",
        "experiment" if plan.experiment else "experiment_type",
        plan.experiment.uuid if plan.experiment else plan.type_id,
        f"{plan.describe()} ({kind.upper()})",
        table=plan.table_name,
        format=kind,
        filters=[f.label for f in q.filters],
        sort=q.sort,
        direction="desc" if q.desc else "asc",
        hidden=list(q.hidden),
        columns=plan.header,
        options=_options_json(plan.options),
    )
    db.session.commit()


def _options_json(options: ExportOptions) -> dict[str, bool]:
    return {
        "bom": options.bom,
        "neutralise_formulas": options.neutralise,
        "include_id": options.include_id,
        "include_timestamps": options.timestamps,
    }


# ----------------------------------------------------------------------
# The SELECT
# ----------------------------------------------------------------------


def _order(table: sa.Table, q: RowQuery) -> list[sa.ColumnElement]:
    """The grid's order: sort column with empty values last, ties by id alike."""
    ident = table.c.id.desc() if q.desc else table.c.id.asc()
    key = table.c[q.sort]
    if key is table.c.id:
        return [ident]
    return [(key.desc() if q.desc else key.asc()).nulls_last(), ident]


def _where(plan: ExportPlan) -> list[sa.ColumnElement[bool]]:
    experiment_uuid = plan.experiment.uuid if plan.experiment else None
    return queries._where(plan.table, plan.query, experiment_uuid)


def select_rows(plan: ExportPlan, expressions: list[sa.ColumnElement]) -> sa.Select:
    """SELECT `expressions` FROM the type's table WHERE the view's filters, in order."""
    return (
        sa.select(*expressions)
        .select_from(plan.table)
        .where(*_where(plan))
        .order_by(*_order(plan.table, plan.query))
    )


def _neutralised_sql(col: sa.ColumnElement) -> sa.ColumnElement:
    # ascii() is the code point of the first character (0 for ''): no substring
    first = sa.func.ascii(col, type_=sa.Integer)
    return sa.case(
        (first.in_([ord(c) for c in FORMULA_PREFIXES]), sa.literal("'").concat(col)),
        else_=col,
    )


def _float_sql(col: sa.ColumnElement) -> sa.ColumnElement:
    """Python's repr() of a double, from PostgreSQL's shortest output.

    With extra_float_digits = 1 PostgreSQL prints the same shortest digits as repr(),
    but writes integral values without ".0" (1, -0) and switches to exponent notation
    at 1e15 instead of 1e16. Those two cases are rewritten; the rest passes through.
    """
    text = sa.cast(col, sa.Text)
    size = sa.func.abs(col)
    mantissa = sa.func.split_part(text, "e", 1, type_=sa.Text)
    digits = sa.func.replace(
        sa.func.replace(mantissa, "-", "", type_=sa.Text), ".", "", type_=sa.Text
    )
    sign = sa.case((col < 0, "-"), else_="")
    positional = sign.concat(
        sa.case(
            (
                sa.func.length(digits) > 16,
                sa.func.left(digits, 16, type_=sa.Text)
                .concat(".")
                .concat(sa.func.substr(digits, 17, type_=sa.Text)),
            ),
            else_=sa.func.rpad(digits, 16, "0", type_=sa.Text).concat(".0"),
        )
    )
    return sa.case(
        (sa.and_(col == sa.func.trunc(col), size < 1e15), text.concat(".0")),
        (sa.and_(size >= 1e15, size < 1e16), positional),
        else_=text,
    )


def _datetime_sql(col: sa.ColumnElement) -> sa.ColumnElement:
    """isoformat() + "Z" from the ISO DateStyle text (one conversion per value).

    PostgreSQL prints `2024-03-04 14:30:00.5`; isoformat() gives six fraction digits
    or none: `2024-03-04T14:30:00.500000`. (to_char would do it, at twice the cost.)
    """
    text = sa.func.replace(sa.cast(col, sa.Text), " ", "T", type_=sa.Text)
    whole = sa.func.date_trunc("second", col, type_=col.type) == col
    return sa.case(
        (whole, text.concat("Z")),
        else_=sa.func.rpad(text, 26, "0", type_=sa.Text).concat("Z"),
    )


def _sql_expression(col: sa.Column, ctype: str, neutralise: bool) -> sa.ColumnElement:
    """One output column of the COPY, in canonical spelling."""
    if ctype == "FLOAT":
        return _float_sql(col)
    if ctype == "BOOLEAN":
        return sa.case((col.is_(True), "true"), (col.is_(False), "false"))
    if ctype == "DATETIME":
        return _datetime_sql(col)
    if ctype in TEXT_TYPES and neutralise:
        return _neutralised_sql(col)
    return col  # INTEGER, UUID, JSON (stored compact) and text print as they are


def postgresql_select(plan: ExportPlan) -> sa.Select:
    """The SELECT whose rows COPY writes as CSV: every value formatted in SQL."""
    neutralise = plan.options.neutralise
    expressions = [
        _sql_expression(plan.table.c[c.name], c.type, neutralise).label(c.name)
        for c in plan.columns
    ]
    return select_rows(plan, expressions)


# ----------------------------------------------------------------------
# Python formatting (SQLite)
# ----------------------------------------------------------------------


def neutralise(text: str) -> str:
    """`text` with a leading `'` when a spreadsheet would read it as a formula."""
    return "'" + text if text[:1] in _FORMULA_SET else text


_LONG_DIGITS = re.compile(r"\d{19}")


def canonical_json(text: Any) -> str:
    """Stored JSON text in compact canonical form (rows stored before JSON was).

    orjson reads faster than the json module but turns integers beyond 64 bits into
    floats: text with 19 digits in a row takes the exact path.
    """
    if not isinstance(text, str):  # SQLite keeps a bare JSON number as a number
        return columns.format_json(text)
    if _LONG_DIGITS.search(text):
        return columns.format_json(json.loads(text))
    return orjson.dumps(orjson.loads(text)).decode("utf-8")


def _formatter(col: GridColumn, neutralise_text: bool) -> Callable[[Any], str]:
    if col.type == "UUID":
        return str
    if col.type in TEXT_TYPES:
        return neutralise if neutralise_text else str
    if col.type == "JSON":
        return canonical_json  # selected as text: no round trip through json.loads
    return columns.COLUMN_TYPES[col.type].format


def _python_column(table: sa.Table, col: GridColumn) -> sa.ColumnElement:
    column = table.c[col.name]
    return sa.type_coerce(column, sa.Text) if col.type == "JSON" else column


def python_rows(plan: ExportPlan) -> tuple[sa.Select, Callable[[Any], list]]:
    """The plain SELECT and a function that turns one of its rows into CSV cells."""
    formats = [_formatter(c, plan.options.neutralise) for c in plan.columns]
    stmt = select_rows(plan, [_python_column(plan.table, c) for c in plan.columns])

    def cells(row: Any) -> list:
        return [None if v is None else f(v) for f, v in zip(formats, row, strict=True)]

    return stmt, cells


# ----------------------------------------------------------------------
# Streams
# ----------------------------------------------------------------------


def header_bytes(plan: ExportPlan) -> bytes:
    """The BOM (if asked for) and the header row."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(plan.header)
    prefix = BOM if plan.options.bom else b""
    return prefix + buffer.getvalue().encode("utf-8")


class CsvExport:
    """The CSV of a plan as an iterator of byte chunks; `rows` and `sha256` after.

    Iterate `chunks()` once. Resources (a connection, on PostgreSQL a reader thread)
    are taken on the first chunk and released when the iteration ends or is closed.
    """

    def __init__(self, plan: ExportPlan, hashed: bool = False) -> None:
        self.plan = plan
        self.rows = 0
        self._hash = hashlib.sha256() if hashed else None
        self.complete = False

    @property
    def sha256(self) -> str | None:
        return self._hash.hexdigest() if self._hash and self.complete else None

    def chunks(self) -> Iterator[bytes]:
        first = header_bytes(self.plan)
        if self._hash:
            self._hash.update(first)
        yield first  # the first byte goes out before the query runs
        body = self._python_chunks() if self.plan.cells else self._postgresql_chunks()
        with contextlib.closing(body):  # a client that leaves releases the database
            for chunk in body:
                if self._hash:
                    self._hash.update(chunk)
                yield chunk
        self.complete = True

    # SQLite (and any database without COPY): format in Python, batch by batch.
    def _python_chunks(self) -> Iterator[bytes]:
        stmt, cells = self.plan.statement, self.plan.cells
        buffer = io.StringIO()
        writer = csv.writer(buffer)  # lineterminator \r\n, minimal quoting
        with self.plan.engine.connect() as conn:
            result = conn.execution_options(yield_per=BATCH_ROWS).execute(stmt)
            for batch in result.partitions():
                for start in range(0, len(batch), WRITE_ROWS):
                    writer.writerows(
                        [cells(r) for r in batch[start : start + WRITE_ROWS]]
                    )
                    if buffer.tell() >= CHUNK_BYTES:
                        yield _drain(buffer)
                self.rows += len(batch)
            conn.rollback()
        if buffer.tell():
            yield _drain(buffer)

    # PostgreSQL: COPY in a reader thread, the response drains a bounded queue.
    def _postgresql_chunks(self) -> Iterator[bytes]:
        reader = _CopyReader(self.plan.engine, self.plan.statement)
        reader.start()
        try:
            while True:
                item = reader.queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise ExportFailed(
                        "The database stopped the export; the file is incomplete."
                    ) from item
                yield item
            self.rows = reader.rows
        finally:
            reader.stop()


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode("utf-8")
    buffer.seek(0)
    buffer.truncate()
    return data


_END = object()


class _Cancelled(Exception):
    """The client went away: the reader thread stops its COPY."""


class _CopySink:
    """File-like target of copy_expert: psycopg2 calls write() once per row.

    libpq hands over exactly one row per call, ending in LF; rows are joined with CRLF
    (RFC 4180) while line breaks inside quoted values stay as stored.
    """

    def __init__(self, put: Callable[[bytes], None]) -> None:
        self.put = put
        self.parts: list[bytes] = []
        self.size = 0
        self.rows = 0

    def write(self, data: bytes) -> int:
        self.parts.append(data[:-1])
        self.size += len(data)
        if self.size >= CHUNK_BYTES:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.parts:
            self.rows += len(self.parts)
            self.parts.append(b"")
            chunk = b"\r\n".join(self.parts)
            self.parts, self.size = [], 0
            self.put(chunk)


class _CopyReader(threading.Thread):
    """Runs COPY (SELECT …) TO STDOUT on its own connection, chunks into a queue."""

    def __init__(self, engine: sa.Engine, stmt: sa.Select) -> None:
        super().__init__(name="wave-export", daemon=True)
        self.engine = engine
        self.stmt = stmt
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.cancelled = threading.Event()
        self.dbapi_connection: Any = None
        self.rows = 0

    def run(self) -> None:
        try:
            self._copy()
            self._put(_END)
        except _Cancelled:
            pass
        except BaseException as exc:  # handed to the response, which fails loudly
            with contextlib.suppress(_Cancelled):
                self._put(exc)

    def _copy(self) -> None:
        sink = _CopySink(self._put)
        with self.engine.connect() as conn:
            try:
                self.dbapi_connection = conn.connection.dbapi_connection
                # shortest round-trip floats, whatever the server's default
                conn.exec_driver_sql("SET LOCAL extra_float_digits = 1")
                conn.exec_driver_sql("SET LOCAL client_encoding = 'UTF8'")
                conn.exec_driver_sql("SET LOCAL DateStyle = 'ISO, YMD'")
                # parallel workers would compete for the cores that format and send
                conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
                conn.execution_options(wave_copy_to=sink).execute(self.stmt)
                sink.flush()
                conn.rollback()
            except BaseException:
                conn.invalidate()  # a COPY cut short leaves the connection unusable
                raise
            finally:
                self.dbapi_connection = None
        self.rows = sink.rows

    def _put(self, item: Any) -> None:
        while not self.cancelled.is_set():
            try:
                self.queue.put(item, timeout=0.25)
                return
            except queue.Full:
                continue
        raise _Cancelled()

    def stop(self) -> None:
        """End the COPY if it still runs (client gone) and wait briefly for it."""
        self.cancelled.set()
        connection = self.dbapi_connection
        if self.is_alive() and connection is not None:
            connection.cancel()  # libpq's cancel request is safe from another thread
        self.join(timeout=5)


_hook_lock = threading.Lock()


def _install_copy_hook(engine: sa.Engine) -> None:
    """Let a statement run as COPY (…) TO STDOUT when executed with wave_copy_to.

    SQLAlchemy compiles the SELECT and processes its parameters as usual; the hook
    inlines them with psycopg2's mogrify (the driver's own quoting) and streams the
    result into the sink instead of fetching rows.
    """
    with _hook_lock:
        if not sa.event.contains(engine, "do_execute", _copy_hook):
            sa.event.listen(engine, "do_execute", _copy_hook)
            sa.event.listen(engine, "do_execute_no_params", _copy_hook_no_params)


def _copy_hook(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    sink = context.execution_options.get("wave_copy_to")
    if sink is None:
        return False
    select = cursor.mogrify(statement, parameters)
    cursor.copy_expert(b"COPY (" + select + b") TO STDOUT WITH (FORMAT csv)", sink)
    return True


def _copy_hook_no_params(cursor: Any, statement: str, context: Any) -> bool:
    return _copy_hook(cursor, statement, None, context)


# ----------------------------------------------------------------------
# Zip with dictionary, JSON sidecar
# ----------------------------------------------------------------------


class _Pipe:
    """A write-only, unseekable file: zipfile writes, the response drains."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self.parts)
        self.parts, self.size = [], 0
        return data


def zip_chunks(plan: ExportPlan) -> Iterator[bytes]:
    """A .zip of the CSV, its data dictionary (CSV) and the JSON sidecar, streamed.

    The CSV is hashed while it is compressed; the sidecar written after it carries the
    row count and SHA-256. zipfile writes data descriptors to an unseekable stream.
    """
    pipe = _Pipe()
    export = CsvExport(plan, hashed=True)
    stem = plan.filename("csv")[: -len(".csv")]
    with zipfile.ZipFile(
        pipe, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1
    ) as archive:
        with archive.open(f"{stem}.csv", "w", force_zip64=True) as member:
            for chunk in export.chunks():
                member.write(chunk)
                if pipe.size >= CHUNK_BYTES:
                    yield pipe.drain()
        sidecar_json = json_bytes(sidecar(plan, export.rows, export.sha256))
        archive.writestr(f"{stem}.json", sidecar_json)
        archive.writestr(f"{stem}-dictionary.csv", dictionary_csv(list(plan.columns)))
    yield pipe.drain()


def sidecar(plan: ExportPlan, row_count: int, sha256: str | None) -> dict[str, Any]:
    """The JSON that explains a CSV without the app: type, columns, view, hash."""
    q = plan.query
    return {
        "file": plan.filename("csv"),
        "exported_at": _iso(plan.started),
        "type": {
            "id": plan.type_id,
            "name": plan.type_name,
            "description": plan.type_description,
            "table_name": plan.table_name,
            "schema_version": plan.schema_version,
        },
        "experiment": plan.experiment.to_json() if plan.experiment else None,
        "columns": [dictionary_entry(c) for c in plan.columns],
        "view": {
            "filters": [
                {
                    "column": f.column.name,
                    "operator": f.op,
                    "value": f.text,
                    "label": f.label,
                }
                for f in q.filters
            ],
            "sort": q.sort,
            "direction": "desc" if q.desc else "asc",
            "hidden_columns": list(q.hidden),
        },
        "options": _options_json(plan.options),
        "csv": CSV_FORMAT | {"bom": plan.options.bom},
        "row_count": row_count,
        "sha256": sha256,
    }


CSV_FORMAT = {
    "standard": "RFC 4180",
    "encoding": "UTF-8",
    "line_terminator": "CRLF",
    "header": True,
    "empty_cell": "no value (NULL)",
    "formula_neutralisation": (
        "text cells starting with = + - @ tab or CR get a leading ' "
        "(unless the option is off)"
    ),
}


def compute_sidecar(plan: ExportPlan) -> dict[str, Any]:
    """The sidecar of a fresh export of `plan`: reads every row to hash the CSV."""
    export = CsvExport(plan, hashed=True)
    for _chunk in export.chunks():
        pass
    return sidecar(plan, export.rows, export.sha256)


def json_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"


def _iso(value: dt.datetime | None) -> str | None:
    return columns.format_datetime(value) if value is not None else None


# ----------------------------------------------------------------------
# Data dictionary and template
# ----------------------------------------------------------------------

STANDARD_DESCRIPTIONS = {
    "id": "Row id, unique within the type. Keep it in a file you re-import in "
    "update mode: it says which row each line changes.",
    "experiment_uuid": "The experiment the row belongs to.",
    "participant_id": "The participant's identifier (at most 100 characters).",
    "created_at": "When the row was stored (UTC). Not accepted on import.",
    "updated_at": "When the row was last changed (UTC). Not accepted on import.",
}
STANDARD_EXAMPLES = {
    "id": "1",
    "experiment_uuid": "6f1c2b8e-3d4a-4f5b-9c7d-2e1f0a9b8c7d",
    "participant_id": "P0001",
    "created_at": "2024-03-04T14:30:00Z",
    "updated_at": "2024-03-04T14:30:00.250000Z",
}
FORMATS = {
    "INTEGER": "whole number, e.g. 42",
    "FLOAT": "decimal number, shortest form that reads back exactly (0.1, 1e-05, 2.0)",
    "STRING": "text as stored, at most 255 characters",
    "TEXT": "text as stored",
    "BOOLEAN": "true or false",
    "DATETIME": "ISO 8601 in UTC with Z; fraction only when not zero",
    "JSON": "compact JSON",
    "UUID": "UUID in lower-case hex with hyphens",
}
DICTIONARY_FIELDS = ("column", "type", "nullable", "description", "example", "format")


def dictionary_entry(col: GridColumn) -> dict[str, Any]:
    """One column of a data dictionary."""
    if col.standard:
        description = STANDARD_DESCRIPTIONS[col.name]
        example = STANDARD_EXAMPLES[col.name]
    else:
        description = col.description
        example = columns.COLUMN_TYPES[col.type].example
    return {
        "column": col.name,
        "type": col.type,
        "nullable": col.nullable,
        "description": description,
        "example": example,
        "format": FORMATS[col.type],
    }


def dictionary_columns(xtype: Any) -> list[GridColumn]:
    """Every column an export of the type can hold, in file order."""
    cols = queries.grid_columns(xtype, with_experiment=True)
    every = ExportOptions(include_id=True, timestamps=True)
    return list(export_columns(cols, RowQuery(tuple(cols)), every))


def data_dictionary(xtype: Any) -> dict[str, Any]:
    """The type's dictionary as JSON: the type and one entry per column."""
    return {
        "type": {
            "id": xtype.id,
            "name": xtype.name,
            "description": xtype.description or "",
            "table_name": xtype.table_name,
            "schema_version": xtype.schema_version,
        },
        "columns": [dictionary_entry(c) for c in dictionary_columns(xtype)],
        "csv": CSV_FORMAT,
    }


def dictionary_csv(cols: list[GridColumn]) -> bytes:
    """The dictionary of `cols` as CSV: column, type, nullable, description, …"""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(DICTIONARY_FIELDS)
    for col in cols:
        entry = dictionary_entry(col)
        entry["nullable"] = "true" if entry["nullable"] else "false"
        writer.writerow([neutralise(str(entry[k])) for k in DICTIONARY_FIELDS])
    return buffer.getvalue().encode("utf-8")


def template_csv(xtype: Any) -> bytes:
    """A blank CSV for the type: the header an import expects, no rows."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(["participant_id", *(c.name for c in xtype.columns)])
    return buffer.getvalue().encode("utf-8")


# ----------------------------------------------------------------------
# File names
# ----------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the RFC 5987 `filename*`.

    The fallback keeps letters, digits, dot, hyphen and underscore, so no quote,
    backslash, semicolon, CR or LF can reach the header.
    """
    ascii_name = (
        unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    )
    ascii_name = _UNSAFE.sub("_", ascii_name).strip("._") or "export"
    encoded = quote(filename, safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"

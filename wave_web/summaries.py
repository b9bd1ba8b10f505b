"""Column summaries of a grid view (its filters), computed in the database.

Per column: non-empty, empty and distinct counts; for numbers and datetimes min, max,
mean, sample standard deviation and a histogram; for text and booleans the most common
values. At most three statements, whatever the number of columns (a type too wide for
one statement takes more; on SQLite a view of SPLIT_IDS rows or more reads passes 1
and 2 in two id ranges at once, see _id_ranges):

1. totals, one pass over the view: row count, per column count, min, max, true count,
   and on PostgreSQL each number's and datetime's mean and variance (avg, var_samp);
2. moments, one more pass on SQLite (which has no var_samp), or on PostgreSQL for
   floats beyond ±1e100: sums of the values and of their squares, measured in
   histogram bins from the minimum so that they neither cancel out nor overflow;
3. the sample figures, one statement over the view's first SAMPLE_ROWS rows by id (all
   of them when the view is no larger): histogram bins (GROUP BY bucket), distinct
   counts and the most common text values of every column, as one UNION ALL.

Counts, minimum, maximum, mean and sd are exact. Histograms, distinct counts and top
values of a larger view are approximate, from its first SAMPLE_ROWS rows, and say so
(`*_sampled`). summarise() caches a summary per process for its view and data version
(`data_version`): every row write changes the version, so a cached summary is never
served after a row changed.

Column names come only from the reflected Table; every value is a bound parameter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from flask import current_app

from wave_web import columns
from wave_web import datatables
from wave_web.database import _is_sqlite_file
from wave_web.database import _is_write_request
from wave_web.extensions import db
from wave_web.models import AuditEntry
from wave_web.models import Experiment
from wave_web.queries import GridColumn
from wave_web.queries import RowQuery
from wave_web.queries import filter_clause
from wave_web.queries import format_cell
from wave_web.queries import without_index

BINS = 20
TOP_VALUES = 10
SAMPLE_ROWS = 50_000  # histograms, distinct counts and top values of larger views
CACHE_SIZE = 64  # summaries kept per process
SKIPPED = frozenset({"id", "experiment_uuid"})
ORDERED = frozenset({"INTEGER", "FLOAT", "DATETIME"})
VALUED = frozenset({"STRING", "TEXT", "BOOLEAN"})
TEXTUAL = frozenset({"STRING", "TEXT"})
EPOCH = dt.datetime(1970, 1, 1)
# Result columns per statement and branches per UNION ALL: PostgreSQL allows 1,664
# result columns, SQLite 2,000 and 500 compound terms; wider types take more passes.
MAX_AGGREGATES = 600
MAX_BRANCHES = 200
# SQLite runs a statement on one core: a view spanning this many ids has its totals
# and moments passes read in two id ranges at once, the second on a thread of its own.
SPLIT_IDS = 200_000


@dataclass(frozen=True)
class Bin:
    """One histogram bar: values from `low` (inclusive) to `high`, and their count."""

    low: Any
    high: Any
    count: int
    label: str


@dataclass(frozen=True)
class TopValue:
    """A frequent value: `text` as stored, `param` to filter the grid by it.

    `label` is short and distinct from the other labels of the chart; `full` is the
    whole value with its whitespace made visible (hover and screen readers).
    """

    value: Any
    count: int
    text: str
    param: str
    label: str = ""
    full: str = ""


@dataclass(frozen=True)
class ColumnSummary:
    """What one column of the view holds; numbers in the column's own units."""

    column: GridColumn
    rows: int  # rows of the view
    count: int  # non-empty cells
    empty: int
    distinct: int | None = None  # None: not counted (JSON)
    distinct_sampled: bool = False  # counted in the first SAMPLE_ROWS rows only
    minimum: Any = None
    maximum: Any = None
    mean: Any = None  # a datetime for DATETIME columns
    sd: float | None = None  # seconds for DATETIME columns
    bins: tuple[Bin, ...] = ()
    bins_sampled: bool = False  # bin counts of the first SAMPLE_ROWS rows only
    top: tuple[TopValue, ...] = ()
    top_sampled: bool = False  # top values of the first SAMPLE_ROWS rows only

    @property
    def kind(self) -> str:
        """Its chart: "ordered" (histogram), "values" (top values) or "json" (none)."""
        if self.column.type in ORDERED:
            return "ordered"
        return "values" if self.column.type in VALUED else "json"

    @property
    def min_text(self) -> str:
        return self._stored_text(self.minimum)

    @property
    def max_text(self) -> str:
        return self._stored_text(self.maximum)

    @property
    def min_exact(self) -> str:
        """The minimum as stored, when min_text shortened it (for a title)."""
        return self._exact_text(self.minimum)

    @property
    def max_exact(self) -> str:
        return self._exact_text(self.maximum)

    def _stored_text(self, value: Any) -> str:
        if self.column.type == "FLOAT" and value is not None:
            return stored_number_text(value)
        return format_cell(self.column, value)

    def _exact_text(self, value: Any) -> str:
        exact = format_cell(self.column, value)
        return exact if exact != self._stored_text(value) else ""

    @property
    def mean_text(self) -> str:
        if self.mean is None:
            return ""
        if isinstance(self.mean, dt.datetime):
            return columns.format_datetime(_round_time(self.mean, self.sd or 0.0))
        return derived_number_text(self.mean)

    @property
    def axis_low(self) -> str:
        """The minimum, as short as a histogram's axis label needs."""
        return self._axis_text(self.minimum)

    @property
    def axis_high(self) -> str:
        return self._axis_text(self.maximum)

    def _axis_text(self, value: Any) -> str:
        if value is None:
            return ""
        if self.column.type == "FLOAT":
            return derived_number_text(value)
        if self.column.type != "DATETIME" or len(self.bins) < 2:
            return format_cell(self.column, value)
        width = (self.bins[0].high - self.bins[0].low).total_seconds()
        if width < 60:  # the date is in the minimum and maximum above the chart
            return value.strftime("%H:%M:%S.%f")[:-3]
        return _time_text(value, width)

    @property
    def sd_text(self) -> str:
        if self.sd is None:
            return ""
        if self.column.type == "DATETIME":
            return duration_text(self.sd)
        return derived_number_text(self.sd)


# ----------------------------------------------------------------------
# Numbers and labels as a person reads them
# ----------------------------------------------------------------------

NOISE = 1e-14  # relative: float arithmetic in experiment software is off by less
DERIVED_DIGITS = 4
LABEL_WIDTH = 17  # characters of a value's label beside its bar
FULL_WIDTH = 1000  # a value in a tooltip or for a screen reader, cut in the middle
# ␣ (open box) rather than ␠ (symbol for space), and ↵ for every line break: the
# default fonts of Linux (DejaVu, Liberation) draw no Control Pictures but these.
WHITESPACE_MARKERS = {"\t": "⇥", "\n": "↵", "\r": "↵"}
SPACE_MARKER = "␣"


def stored_number_text(value: float) -> str:
    """A stored float in its shortest form (repr), rounding noise of arithmetic dropped.

    505.89999999999856 (a difference of two timestamps in jsPsych) reads 505.9: the
    shortest decimal within NOISE of the value. The exact value goes in a title.
    """
    exact = repr(float(value))
    if not math.isfinite(value):
        return exact
    for digits in range(1, 18):
        text = f"{value:.{digits}g}"
        if abs(float(text) - value) <= abs(value) * NOISE:
            return exact if float(text) == value else text
    return exact


def derived_number_text(value: float, digits: int = DERIVED_DIGITS) -> str:
    """A computed figure (mean, SD, bin edge) to `digits` significant digits.

    Whole digits are never dropped (12345.6 reads 12346, not 1.235e+04); exponents
    only below 1e-4 and from 1e15.
    """
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else repr(float(value))
    magnitude = math.floor(math.log10(abs(value)))
    if not -5 < magnitude < 15:
        return f"{value:.{digits}g}"
    text = f"{value:.{max(digits - 1 - magnitude, 0)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def duration_text(seconds: float) -> str:
    """A length of time in the unit that reads best (0.25 s, 3.5 min, 2.125 days)."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{derived_number_text(seconds / size)} {unit}"
    return f"{derived_number_text(seconds)} s"


def visible_text(text: str) -> str:
    """Whitespace a label would lose, made visible.

    Spaces at either end (all of a blank value) become ␣, tabs ⇥ and line breaks ↵
    wherever they are; spaces between words stay spaces.
    """
    marked = text.replace("\r\n", "↵")
    marked = "".join(WHITESPACE_MARKERS.get(ch, ch) for ch in marked)
    core = marked.strip()
    if not core:
        return SPACE_MARKER * len(marked)
    lead = len(marked) - len(marked.lstrip())
    trail = len(marked) - len(marked.rstrip())
    return SPACE_MARKER * lead + core + SPACE_MARKER * trail


def cut_middle(text: str, width: int) -> str:
    """At most `width` characters: the start and the end, an ellipsis between."""
    if len(text) <= width:
        return text
    head = width // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def distinct_labels(texts: Sequence[str], width: int = LABEL_WIDTH) -> list[str]:
    """Labels of at most `width` characters, different for different texts.

    Cut in the middle first; texts whose cuts are the same show where they differ
    ("Wha…t key B was…") instead; numbered as a last resort.
    """
    labels = [cut_middle(t, width) for t in texts]
    for _ in range(4):
        clashes = _clashes(texts, labels)
        if not clashes:
            return labels
        for group in clashes:
            start = len(os.path.commonprefix([texts[i] for i in group]))
            for i in group:
                labels[i] = _around(texts[i], start, width)
    for group in _clashes(texts, labels):
        for n, i in enumerate(group, 1):
            labels[i] = f"{cut_middle(texts[i], width - 3)} ·{n}"
    return labels


def _clashes(texts: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Indexes of different texts that share a label, grouped by the label."""
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    return [g for g in groups.values() if len({texts[i] for i in g}) > 1]


def _around(text: str, start: int, width: int) -> str:
    """The first characters, then the text from a little before `start`."""
    head = text[:3]
    begin = max(start - 3, len(head))
    room = width - len(head) - 2
    middle = "…" if begin > len(head) else text[len(head) : begin]
    window = text[begin : begin + room]
    end = "…" if begin + room < len(text) else ""
    return head + middle + window + end


# ----------------------------------------------------------------------
# The cache
# ----------------------------------------------------------------------

_cache_lock = threading.Lock()


def data_version(xtype: Any, experiment_uuid: uuid.UUID | None = None) -> bytes:
    """A digest that changes whenever a row of the experiment (or type) changes.

    Built from experiments.row_count and experiments.updated_at, which every row write
    changes in its own transaction (datatables.adjust_row_count, touch_experiment),
    and, as a second line for a writer that forgets the latter, the newest audit entry
    (row edits, deletes and imports are audited). One query on indexed columns; the
    data table is not read.
    """
    newest_entry = sa.select(sa.func.max(AuditEntry.id)).scalar_subquery()
    stmt = sa.select(
        Experiment.uuid, Experiment.row_count, Experiment.updated_at, newest_entry
    )
    if experiment_uuid is not None:
        stmt = stmt.where(Experiment.uuid == experiment_uuid)
    else:
        stmt = stmt.where(Experiment.experiment_type_id == xtype.id)
    found = sorted(repr(tuple(row)) for row in db.session.execute(stmt))
    return hashlib.sha256(repr(found).encode()).digest()


def _cache() -> OrderedDict[tuple, tuple[bytes, tuple[ColumnSummary, ...]]]:
    return current_app.extensions.setdefault("wave_summaries", OrderedDict())


def _cache_key(xtype: Any, query: RowQuery, experiment_uuid: uuid.UUID | None) -> tuple:
    """What a summary depends on besides the data: type, scope, filters, columns."""
    return (
        xtype.id,
        xtype.table_name,
        xtype.schema_version,
        repr(xtype.created_at),
        experiment_uuid,
        tuple((f.param, f.text) for f in query.filters),
        tuple(c.name for c in query.visible_columns),
        SAMPLE_ROWS,
    )


def summarise(
    xtype: Any, query: RowQuery, experiment_uuid: uuid.UUID | None = None
) -> list[ColumnSummary]:
    """Summaries of the view's visible columns (not id, experiment_uuid), in order.

    Served from the cache while the data version is unchanged. The version is read
    before the rows, so a summary is never stored under a version older than the data
    it was computed from.
    """
    version = data_version(xtype, experiment_uuid)
    key = _cache_key(xtype, query, experiment_uuid)
    with _cache_lock:
        cached = _cache().get(key)
        if cached is not None and cached[0] == version:
            _cache().move_to_end(key)
            return list(cached[1])
    found = compute(xtype, query, experiment_uuid)
    with _cache_lock:
        cache = _cache()
        cache[key] = (version, tuple(found))
        cache.move_to_end(key)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
    return found


# ----------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------


def compute(
    xtype: Any, query: RowQuery, experiment_uuid: uuid.UUID | None = None
) -> list[ColumnSummary]:
    """The summaries, computed now (summarise() caches them)."""
    table = datatables.reflect(xtype)
    where = [filter_clause(table, f) for f in query.filters]
    if experiment_uuid is not None:
        where.insert(0, _experiment_clause(xtype, table, query, experiment_uuid))
    cols = [c for c in query.visible_columns if c.name not in SKIPPED]
    ranges = _id_ranges(xtype, table, experiment_uuid)
    rows, totals = _totals(table, where, cols, ranges)
    scales = {c.name: _scale(c, totals[c.name]) for c in cols if c.type in ORDERED}
    binned = [s for s in scales.values() if s and s.bins]
    moments = {n: t["moments"] for n, t in totals.items() if t.get("moments")}
    missing = [s for s in binned if s.column.name not in moments]
    moments.update(_moments(table, where, missing, totals, ranges))
    sampled = rows > SAMPLE_ROWS
    figures = _sample_figures(table, where, cols, scales, sampled)
    out = []
    for col in cols:
        t = totals[col.name]
        summary = ColumnSummary(col, rows, t["count"], rows - t["count"])
        if col.type in ORDERED:
            summary = _ordered(summary, t, scales[col.name], moments, figures, sampled)
        elif col.type == "BOOLEAN":
            summary = _boolean(summary, t["true"])
        elif col.type in TEXTUAL:
            summary = _top_values(summary, figures, sampled)
        out.append(summary)
    return out


def _experiment_clause(
    xtype: Any, table: sa.Table, query: RowQuery, experiment_uuid: uuid.UUID
) -> sa.ColumnElement[bool]:
    """experiment_uuid = :uuid, read by a scan on SQLite when the index is worse.

    SQLite (unlike PostgreSQL, which keeps statistics) takes the experiment_uuid
    index for every pass; when the experiment holds a large part of its table, a row
    lookup per index entry makes a pass about three times slower than a plain scan.
    Not when a filter can use an (experiment_uuid, column, id) index: it may select
    few rows.
    """
    column: sa.ColumnElement = table.c.experiment_uuid
    indexed = datatables.sort_indexed_columns(table)
    if db.session.get_bind().dialect.name == "sqlite" and not any(
        f.column.name in indexed for f in query.filters
    ):
        counts = sa.select(
            sa.func.coalesce(
                sa.func.sum(
                    sa.case(
                        (Experiment.uuid == experiment_uuid, Experiment.row_count),
                        else_=0,
                    )
                ),
                0,
            ),
            sa.func.coalesce(sa.func.sum(Experiment.row_count), 0),
        ).where(Experiment.experiment_type_id == xtype.id)
        mine, everything = db.session.execute(counts).one()
        if mine * 4 >= everything:
            column = without_index(column)
    return column == experiment_uuid


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _id_ranges(
    xtype: Any, table: sa.Table, experiment_uuid: uuid.UUID | None
) -> list[list[sa.ColumnElement[bool]]]:
    """Conditions that split a pass into id ranges read at once; [[]]: one pass.

    SQLite in a file only (PostgreSQL runs its own parallel workers; a database in
    memory is not shared by a second connection), and only for a read: the second
    range is read on a connection of its own, which sees committed rows only. An
    experiment (or type) of fewer than SPLIT_IDS rows (experiments.row_count) is
    read in one pass; else its ids come from two index lookups, cut in the middle.
    """
    url = db.session.get_bind().url
    if _is_postgresql() or not _is_sqlite_file(url) or _is_write_request():
        return [[]]
    if db.session.new or db.session.dirty or db.session.deleted:
        return [[]]
    size = sa.select(sa.func.coalesce(sa.func.sum(Experiment.row_count), 0))
    if experiment_uuid is not None:
        size = size.where(Experiment.uuid == experiment_uuid)
    else:
        size = size.where(Experiment.experiment_type_id == xtype.id)
    if db.session.execute(size).scalar_one() < SPLIT_IDS:
        return [[]]
    lowest, highest = sa.func.min(table.c.id), sa.func.max(table.c.id)
    low_q, high_q = sa.select(lowest), sa.select(highest)
    if experiment_uuid is not None:  # the (experiment_uuid, id) index
        low_q = low_q.where(table.c.experiment_uuid == experiment_uuid)
        high_q = high_q.where(table.c.experiment_uuid == experiment_uuid)
    low, high = db.session.execute(
        sa.select(low_q.scalar_subquery(), high_q.scalar_subquery())
    ).one()
    if low is None or high - low + 1 < SPLIT_IDS:
        return [[]]
    middle = low + (high - low + 1) // 2
    return [[table.c.id < middle], [table.c.id >= middle]]


def _split(
    ranges: list[list[sa.ColumnElement[bool]]],
    statement: Callable[[list[sa.ColumnElement[bool]]], sa.Select],
) -> list[sa.Row]:
    """The one-row result of statement(range) per range: the first on the session,
    the others at the same time, each on its own connection and thread."""
    statements = [statement(extra) for extra in ranges]  # needs the app context
    if len(ranges) == 1:
        return [db.session.execute(statements[0]).one()]
    engine = db.session.get_bind()
    found: dict[int, Any] = {}

    def read(i: int) -> None:
        try:
            with engine.connect() as conn:
                found[i] = conn.execute(statements[i]).one()
        except Exception as error:  # raised again on the caller's thread
            found[i] = error

    threads = [
        threading.Thread(target=read, args=(i,), daemon=True)
        for i in range(1, len(ranges))
    ]
    for thread in threads:
        thread.start()
    try:
        first = db.session.execute(statements[0]).one()
    finally:
        for thread in threads:
            thread.join()
    rows = [first] + [found[i] for i in range(1, len(ranges))]
    for row in rows:
        if isinstance(row, Exception):
            raise row
    return rows


def _merge_totals(keys: Sequence[str], rows: Sequence[sa.Row]) -> list[Any]:
    """The totals of several id ranges as those of one: counts and true counts
    add up, minimum of the minima, maximum of the maxima (None: no value)."""
    merged = list(rows[0])
    for row in rows[1:]:
        for i, (key, value) in enumerate(zip(keys, row, strict=True)):
            if value is None:
                continue
            if merged[i] is None:
                merged[i] = value
            elif key == "min":
                merged[i] = min(merged[i], value)
            elif key == "max":
                merged[i] = max(merged[i], value)
            else:  # rows, count, true
                merged[i] += value
    return merged


def _totals(
    table: sa.Table,
    where: list,
    cols: Sequence[GridColumn],
    ranges: list[list[sa.ColumnElement[bool]]],
) -> tuple[int, dict[str, dict[str, Any]]]:
    """Rows of the view and, per column, count / min / max / true count: one pass
    (per id range, merged)."""
    parts: list[tuple[str, str, sa.ColumnElement]] = []
    for col in cols:
        c = table.c[col.name]
        if col.nullable:  # a required column has a value in every row
            parts.append((col.name, "count", sa.func.count(c)))
        if col.type in ORDERED:
            parts += [
                (col.name, "min", sa.func.min(c)),
                (col.name, "max", sa.func.max(c)),
            ]
            if _is_postgresql():
                parts += _pg_moment_parts(col, c)
        elif col.type == "BOOLEAN":
            true = sa.func.coalesce(sa.func.sum(sa.case((c, 1), else_=0)), 0)
            parts.append((col.name, "true", true))
    totals: dict[str, dict[str, Any]] = {c.name: {} for c in cols}
    rows = 0
    for chunk in _chunks(parts, MAX_AGGREGATES) if parts else [[]]:
        exprs = [sa.func.count(), *(expr for _, _, expr in chunk)]
        found = _split(
            ranges,
            lambda extra, exprs=exprs: (
                sa.select(*exprs).select_from(table).where(*where, *extra)
            ),
        )
        row = _merge_totals(["rows", *(key for _, key, _ in chunk)], found)
        rows = row[0]
        for (name, key, _), value in zip(chunk, row[1:], strict=True):
            totals[name][key] = value
    for col in cols:
        t = totals[col.name]
        t.setdefault("count", rows)
        if "mean" in t:  # PostgreSQL
            n, mean, variance = (
                t.pop("tame", t["count"]),
                t.pop("mean"),
                t.pop("variance"),
            )
            if n == t["count"] > 1:  # else: _moments
                t["moments"] = _Moments(mean, variance)
    return rows, totals


# |x| below this: PostgreSQL's running sums for avg and var_samp (about x² n²) cannot
# overflow, which would be an error there, not infinity.
PG_MOMENT_LIMIT = 1e100


def _pg_moment_parts(
    col: GridColumn, c: sa.ColumnElement
) -> list[tuple[str, str, sa.ColumnElement]]:
    """PostgreSQL's mean and sample variance of a column, for the totals pass.

    avg and var_samp share one running state (Youngs–Cramer: no cancellation). Huge
    floats are left out and counted: when any is, _moments measures in bins instead.
    """
    x = _epoch_seconds(c) if col.type == "DATETIME" else sa.cast(c, sa.Float)
    if col.type != "FLOAT":  # integers and datetimes are far from the limit
        return [
            (col.name, "mean", sa.func.avg(x)),
            (col.name, "variance", sa.func.var_samp(x)),
        ]
    tame = sa.and_(c > -PG_MOMENT_LIMIT, c < PG_MOMENT_LIMIT)
    return [
        (col.name, "mean", sa.func.avg(x).filter(tame)),
        (col.name, "variance", sa.func.var_samp(x).filter(tame)),
        (col.name, "tame", sa.func.count(c).filter(tame)),
    ]


def _epoch_seconds(c: sa.ColumnElement) -> sa.ColumnElement:
    """A naive UTC timestamp as seconds since 1970 (PostgreSQL)."""
    return sa.func.date_part("epoch", c - sa.literal(EPOCH, sa.DateTime))


# ----------------------------------------------------------------------
# Numbers and datetimes
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Scale:
    """How a column's values map to bins: bin = floor((x - low) / width)."""

    column: GridColumn
    minimum: Any  # as stored
    low: float  # the minimum as a number: epoch seconds for DATETIME
    width: float
    bins: int  # 0: the range is too wide for a double (beyond ±1e308): no histogram


def _epoch(value: dt.datetime) -> float:
    return (value - EPOCH).total_seconds()


def _scale(col: GridColumn, t: dict[str, Any]) -> _Scale | None:
    """The histogram layout of a column; None when it has fewer than two values."""
    low, high = t["min"], t["max"]
    if not t["count"] or low == high:
        return None
    if col.type == "DATETIME":
        low, high = _epoch(low), _epoch(high)
    if col.type == "INTEGER":  # whole-number bins: 3–4, not 2.75–4.1
        width = math.ceil((high - low + 1) / BINS)
        return _Scale(col, t["min"], low, width, math.ceil((high - low + 1) / width))
    if not math.isfinite((high - low) * 1.1):
        return _Scale(col, t["min"], low, math.inf, 0)
    return _Scale(col, t["min"], low, (high - low) / BINS, BINS)


def _is_postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _offset(source: sa.FromClause, s: _Scale) -> sa.ColumnElement:
    """x - minimum as a double: seconds for datetimes (stored as naive UTC)."""
    c = source.c[s.column.name]
    if s.column.type != "DATETIME":
        return sa.cast(c, sa.Float) - sa.literal(s.low, sa.Float)
    if _is_postgresql():  # epoch of an interval: cheaper than of a timestamp, exact
        return sa.func.date_part("epoch", c - sa.literal(s.minimum, sa.DateTime))
    epoch = (sa.func.julianday(c) - 2440587.5) * 86400.0
    return epoch - sa.literal(s.low, sa.Float)


def _units(source: sa.FromClause, s: _Scale) -> sa.ColumnElement:
    """(x - minimum + width) / width: the value in bin widths, plus one.

    The added width keeps every intermediate ≥ 1, because PostgreSQL raises an error
    (not 0) when a product or quotient of doubles underflows, e.g. 1e-200 squared.
    """
    width = sa.literal(s.width, sa.Float)
    return (_offset(source, s) + width) / width


def _bucket(units: sa.ColumnElement) -> sa.ColumnElement:
    """floor(units): CAST alone rounds on PostgreSQL (it truncates on SQLite)."""
    if _is_postgresql():
        units = sa.func.floor(units)
    return sa.cast(units, sa.Integer)


@dataclass(frozen=True)
class _Moments:
    """Mean and sample variance of a column's values (seconds for datetimes)."""

    mean: float
    variance: float


def _moments(
    table: sa.Table,
    where: list,
    scales: Sequence[_Scale],
    totals: dict[str, dict[str, Any]],
    ranges: list[list[sa.ColumnElement[bool]]],
) -> dict[str, _Moments]:
    """Mean and variance of columns measured in bins from the minimum: one pass.

    Sums of the units (see _units) and of their squares; an extra pass on SQLite,
    which has no var_samp, and on PostgreSQL for columns of huge floats. SQLite reads
    the units from a subquery that OFFSET keeps from being merged into the sums, so
    they are computed once per row rather than once per sum. The sums of id ranges
    read at once add up.
    """
    out: dict[str, _Moments] = {}
    for chunk in _chunks(scales, MAX_AGGREGATES // 2):

        def statement(extra: list, chunk: Sequence[_Scale] = chunk) -> sa.Select:
            units = (_units(table, s).label(f"u{i}") for i, s in enumerate(chunk))
            inner = sa.select(*units).where(*where, *extra).offset(0).subquery()
            parts = []
            for i in range(len(chunk)):
                u = inner.c[f"u{i}"]
                parts += [sa.func.sum(u), sa.func.sum(u * u)]
            return sa.select(*parts)

        found = _split(ranges, statement)
        row = [sum(r[i] or 0.0 for r in found) for i in range(2 * len(chunk))]
        for i, s in enumerate(chunk):
            n = totals[s.column.name]["count"]
            total, total_sq = row[2 * i], row[2 * i + 1]
            mean = total / n
            variance = max(total_sq - total * mean, 0.0) / (n - 1)
            out[s.column.name] = _Moments(
                s.low + s.width * (mean - 1), s.width * s.width * variance
            )
    return out


def _one_bin_per_value(s: _Scale) -> bool:
    return s.column.type == "INTEGER" and s.width == 1


# ----------------------------------------------------------------------
# The sample: histograms, distinct counts, top values
# ----------------------------------------------------------------------


@dataclass
class _Figures:
    """What the sample statement found, per column name."""

    bins: dict[str, list[int]] = field(default_factory=dict)
    distinct: dict[str, int] = field(default_factory=dict)
    top: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


def _sample_figures(
    table: sa.Table,
    where: list,
    cols: Sequence[GridColumn],
    scales: dict[str, _Scale | None],
    sampled: bool,
) -> _Figures:
    """Bins, distinct counts and top values over the view's first SAMPLE_ROWS rows.

    One UNION ALL per statement over one CTE (materialised once, being read by every
    branch). Each result row is (kind, column number, bucket, value, count).
    """
    binned = [s for s in scales.values() if s and s.bins]
    counted = [s for s in scales.values() if s and not _one_bin_per_value(s)]
    texts = [c for c in cols if c.type in TEXTUAL]
    figures = _Figures({s.column.name: [0] * s.bins for s in binned})
    names = list(
        dict.fromkeys(
            [s.column.name for s in binned + counted] + [c.name for c in texts]
        )
    )
    if not names:
        return figures
    inner = sa.select(*(table.c[n] for n in names)).where(*where)
    if sampled:
        inner = inner.order_by(table.c.id).limit(SAMPLE_ROWS)
    sample = inner.cte("summary_sample")
    number = {n: i for i, n in enumerate(names)}
    branches = [_bin_branch(sample, s, number) for s in binned]
    branches += [_distinct_branch(sample, s, number) for s in counted]
    branches += [_top_branch(sample, c, number) for c in texts]
    for chunk in _chunks(branches, MAX_BRANCHES):
        stmt = sa.union_all(*chunk) if len(chunk) > 1 else chunk[0]
        for kind, i, bucket, value, n in db.session.execute(stmt):
            _take(figures, names[i], kind, bucket, value, n)
    return figures


def _row(kind: int, i: int, bucket: Any, value: Any, n: Any) -> sa.Select:
    """One branch's columns: (kind, column number, bucket, value, count)."""
    return sa.select(
        sa.literal(kind, sa.Integer).label("kind"),
        sa.literal(i, sa.Integer).label("col"),
        sa.cast(bucket, sa.BigInteger).label("bucket"),
        sa.cast(value, sa.Text).label("value"),
        sa.cast(n, sa.BigInteger).label("n"),
    )


_BIN, _DISTINCT, _TOP = 1, 2, 3


def _bin_branch(sample: sa.CTE, s: _Scale, number: dict[str, int]) -> sa.Select:
    bucket = _bucket(_units(sample, s))
    c = sample.c[s.column.name]
    return (
        _row(_BIN, number[s.column.name], bucket, sa.null(), sa.func.count())
        .select_from(sample)
        .where(c.is_not(None))
        .group_by(bucket)
    )


def _distinct_branch(sample: sa.CTE, s: _Scale, number: dict[str, int]) -> sa.Select:
    n = sa.func.count(sa.distinct(sample.c[s.column.name]))
    return _row(_DISTINCT, number[s.column.name], sa.null(), sa.null(), n).select_from(
        sample
    )


def _top_branch(sample: sa.CTE, col: GridColumn, number: dict[str, int]) -> sa.Select:
    """The TOP_VALUES most common values (ties by value) and the distinct count."""
    value = sample.c[col.name]
    n = sa.func.count()
    top = (
        sa.select(value.label("v"), n.label("n"), sa.func.count().over().label("d"))
        .select_from(sample)
        .where(value.is_not(None))
        .group_by(value)
        .order_by(n.desc(), value)
        .limit(TOP_VALUES)
        .subquery()
    )
    return _row(_TOP, number[col.name], top.c.d, top.c.v, top.c.n).select_from(top)


def _take(
    figures: _Figures,
    name: str,
    kind: int,
    bucket: int | None,
    value: str | None,
    n: int,
) -> None:
    """File one result row of the sample statement under its column.

    The bucket of the maximum (and of a value a rounding error off either end) is
    clamped into the first or last bin.
    """
    if kind == _BIN:
        bins = figures.bins[name]
        bins[min(max(bucket - 1, 0), len(bins) - 1)] += n
    elif kind == _DISTINCT:
        figures.distinct[name] = n
    else:  # top value: the bucket column carries the distinct count
        figures.top.setdefault(name, []).append((value, n))
        figures.distinct[name] = bucket


def _ordered(
    summary: ColumnSummary,
    t: dict[str, Any],
    scale: _Scale | None,
    moments: dict[str, _Moments],
    figures: _Figures,
    sampled: bool,
) -> ColumnSummary:
    n = summary.count
    fields: dict[str, Any] = {"minimum": t["min"], "maximum": t["max"]}
    if scale is None:  # no value, or every value the same
        fields.update(distinct=min(n, 1), mean=t["min"], sd=0.0 if n > 1 else None)
        if n:
            label = replace(summary, minimum=t["min"]).min_text
            fields["bins"] = (Bin(t["min"], t["max"], n, label),)
        return replace(summary, **fields)
    name = summary.column.name
    fields["distinct_sampled"] = sampled
    if not scale.bins:  # values near ±1e308: too wide to bin or average in doubles
        return replace(summary, distinct=figures.distinct[name], **fields)
    counts = figures.bins[name]
    if _one_bin_per_value(scale):
        fields["distinct"] = sum(1 for count in counts if count)
    else:
        fields["distinct"] = figures.distinct[name]
    m = moments[name]
    mean = m.mean
    if summary.column.type == "DATETIME":
        mean = EPOCH + dt.timedelta(seconds=mean)
    fields.update(
        mean=mean,
        sd=math.sqrt(max(m.variance, 0.0)),
        bins=tuple(_bins(scale, counts)),
        bins_sampled=sampled,
    )
    return replace(summary, **fields)


def _bins(scale: _Scale, counts: list[int]) -> list[Bin]:
    col = scale.column
    out = []
    for i, count in enumerate(counts):
        low = scale.low + i * scale.width
        high = scale.low + (i + 1) * scale.width
        if col.type == "INTEGER":
            low, high = int(low), int(high) - 1  # inclusive
            label = str(low) if low == high else f"{low}–{high}"
        elif col.type == "DATETIME":
            low = EPOCH + dt.timedelta(seconds=low)
            high = EPOCH + dt.timedelta(seconds=high)
            label = f"{_time_text(low, scale.width)} – {_time_text(high, scale.width)}"
        else:
            label = f"{derived_number_text(low)} – {derived_number_text(high)}"
        out.append(Bin(low, high, count, label))
    return out


def _time_text(value: dt.datetime, width: float) -> str:
    """A bin edge, as precise as the bin width needs."""
    if width >= 86400:
        return value.strftime("%Y-%m-%d")
    if width >= 60:
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat(sep=" ", timespec="milliseconds")


def _round_time(value: dt.datetime, sd: float) -> dt.datetime:
    """The mean to the second, or to the microsecond when the values are that close."""
    if sd >= 1:
        return (value + dt.timedelta(microseconds=500_000)).replace(microsecond=0)
    return value


# ----------------------------------------------------------------------
# Text and booleans
# ----------------------------------------------------------------------


def _boolean(summary: ColumnSummary, true: int) -> ColumnSummary:
    counts = [(True, int(true)), (False, summary.count - int(true))]
    counts.sort(key=lambda vc: (-vc[1], vc[0]))  # as ORDER BY count DESC, value
    top = _labelled(_top(summary.column, v, n) for v, n in counts if n)
    return replace(summary, distinct=len(top), top=top)


def _top_values(
    summary: ColumnSummary, figures: _Figures, sampled: bool
) -> ColumnSummary:
    """The TOP_VALUES most common values (ties by value) and the distinct count.

    Text sorts by code point in Python as in both databases (COLLATE "C", BINARY).
    """
    name = summary.column.name
    found = sorted(figures.top.get(name, []), key=lambda vc: (-vc[1], vc[0]))
    return replace(
        summary,
        distinct=figures.distinct.get(name, 0),
        distinct_sampled=sampled,
        top=_labelled(_top(summary.column, v, c) for v, c in found),
        top_sampled=sampled,
    )


def _top(col: GridColumn, value: Any, count: int) -> TopValue:
    text = format_cell(col, value)
    return TopValue(value, count, text, text)


def _labelled(top: Iterator[TopValue]) -> tuple[TopValue, ...]:
    """The values with their labels: whitespace visible, distinct, empty text named."""
    values = list(top)
    shown = [visible_text(v.text) if v.text else "(empty text)" for v in values]
    labels = distinct_labels(shown)
    return tuple(
        replace(v, label=label, full=cut_middle(text, FULL_WIDTH))
        for v, label, text in zip(values, labels, shown, strict=True)
    )

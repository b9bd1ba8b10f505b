"""Column summaries of a grid view (its filters), computed in the database.

Per column: non-empty, empty and distinct counts; for numbers and datetimes min, max,
mean, sample standard deviation and a histogram; for text and booleans the most common
values. The statements, each one pass over the view's rows:

1. one aggregate pass: row count, per column count, min, max (and true counts);
2. one GROUP BY bucket per number or datetime column for its histogram, with the sums
   of its values in bucket units: mean and sd come from these sums, the same way on both
   databases (SQLite has no stddev); measuring from the minimum keeps the sum of
   squares from cancelling out (datetimes in epoch seconds);
3. distinct counts of numbers and datetimes over at most SAMPLE_ROWS rows;
4. one GROUP BY per text column for its top values (the distinct count comes with it);
   TEXT columns, long and mostly unique, look at the first SAMPLE_ROWS rows only.

Column names come only from the reflected Table; every value is a bound parameter.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from wave_web import columns
from wave_web import datatables
from wave_web.extensions import db
from wave_web.queries import GridColumn
from wave_web.queries import RowQuery
from wave_web.queries import filter_clause
from wave_web.queries import format_cell

BINS = 20
TOP_VALUES = 10
SAMPLE_ROWS = 100_000  # distinct counts of ordered columns, TEXT top values
SKIPPED = frozenset({"id", "experiment_uuid"})
ORDERED = frozenset({"INTEGER", "FLOAT", "DATETIME"})
VALUED = frozenset({"STRING", "TEXT", "BOOLEAN"})
EPOCH = dt.datetime(1970, 1, 1)


@dataclass(frozen=True)
class Bin:
    """One histogram bar: values from `low` (inclusive) to `high`, and their count."""

    low: Any
    high: Any
    count: int
    label: str


@dataclass(frozen=True)
class TopValue:
    """A frequent value: `text` to show, `param` to filter the grid by it."""

    value: Any
    count: int
    text: str
    param: str


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
        return format_cell(self.column, self.minimum)

    @property
    def max_text(self) -> str:
        return format_cell(self.column, self.maximum)

    @property
    def mean_text(self) -> str:
        if self.mean is None:
            return ""
        if isinstance(self.mean, dt.datetime):
            return columns.format_datetime(_round_time(self.mean, self.sd or 0.0))
        return number_text(self.mean)

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
            return number_text(value)
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
        return number_text(self.sd)


def number_text(value: float, digits: int = 6) -> str:
    """A float shortened to `digits` significant digits (2.5, 0.1235, 1.5e+06)."""
    if float(value).is_integer() and abs(value) < 10**digits:
        return str(int(value))
    return f"{value:.{digits}g}"


def duration_text(seconds: float) -> str:
    """A length of time in the unit that reads best (0.25 s, 3.5 min, 2.1 days)."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{number_text(seconds / size, 3)} {unit}"
    return f"{number_text(seconds, 3)} s"


# ----------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------


def summarise(
    xtype: Any, query: RowQuery, experiment_uuid: uuid.UUID | None = None
) -> list[ColumnSummary]:
    """Summaries of the view's visible columns (not id, experiment_uuid), in order."""
    table = datatables.reflect(xtype)
    where = [filter_clause(table, f) for f in query.filters]
    if experiment_uuid is not None:
        where.insert(0, table.c.experiment_uuid == experiment_uuid)
    cols = [c for c in query.visible_columns if c.name not in SKIPPED]
    rows, totals = _totals(table, where, cols)
    scales = {c.name: _scale(c, totals[c.name]) for c in cols if c.type in ORDERED}
    moments = _histograms(table, where, [s for s in scales.values() if s])
    distinct = _distinct_counts(table, where, list(scales.values()), rows)
    out = []
    for col in cols:
        t = totals[col.name]
        summary = ColumnSummary(col, rows, t["count"], rows - t["count"])
        if col.type in ORDERED:
            summary = _ordered(summary, t, scales[col.name], moments, distinct)
        elif col.type == "BOOLEAN":
            summary = _boolean(summary, t["true"])
        elif col.type in VALUED:
            summary = _top_values(table, where, summary)
        out.append(summary)
    return out


def _totals(
    table: sa.Table, where: list, cols: Sequence[GridColumn]
) -> tuple[int, dict[str, dict[str, Any]]]:
    """Rows of the view and, per column, count / min / max / true count: one pass."""
    parts: list[tuple[str, str, sa.ColumnElement]] = []
    for col in cols:
        c = table.c[col.name]
        parts.append((col.name, "count", sa.func.count(c)))
        if col.type in ORDERED:
            parts += [
                (col.name, "min", sa.func.min(c)),
                (col.name, "max", sa.func.max(c)),
            ]
        elif col.type == "BOOLEAN":
            true = sa.func.coalesce(sa.func.sum(sa.case((c, 1), else_=0)), 0)
            parts.append((col.name, "true", true))
    stmt = sa.select(sa.func.count(), *(expr for _, _, expr in parts)).where(*where)
    row = db.session.execute(stmt.select_from(table)).one()
    totals: dict[str, dict[str, Any]] = {c.name: {} for c in cols}
    for (name, key, _), value in zip(parts, row[1:], strict=True):
        totals[name][key] = value
    return row[0], totals


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


def _offset(table: sa.Table, s: _Scale) -> sa.ColumnElement:
    """x - minimum as a double: seconds for datetimes (stored as naive UTC)."""
    c = table.c[s.column.name]
    if s.column.type != "DATETIME":
        return sa.cast(c, sa.Float) - sa.literal(s.low, sa.Float)
    if _is_postgresql():  # epoch of an interval: cheaper than of a timestamp, exact
        return sa.func.date_part("epoch", c - sa.literal(s.minimum, sa.DateTime))
    epoch = (sa.func.julianday(c) - 2440587.5) * 86400.0
    return epoch - sa.literal(s.low, sa.Float)


def _units(table: sa.Table, s: _Scale) -> sa.ColumnElement:
    """(x - minimum + width) / width: the value in bin widths, plus one.

    The added width keeps every intermediate ≥ 1, because PostgreSQL raises an error
    (not 0) when a product or quotient of doubles underflows, e.g. 1e-200 squared.
    """
    width = sa.literal(s.width, sa.Float)
    return (_offset(table, s) + width) / width


def _bucket(units: sa.ColumnElement) -> sa.ColumnElement:
    """floor(units): CAST alone rounds on PostgreSQL (it truncates on SQLite)."""
    if _is_postgresql():
        units = sa.func.floor(units)
    return sa.cast(units, sa.Integer)


@dataclass
class _Moments:
    bins: list[int]
    sum: float = 0.0  # of the values in bin widths, plus one (see _units)
    sum_sq: float = 0.0


def _histogram_statement(table: sa.Table, where: list, s: _Scale) -> sa.Select:
    """bucket, count, sum(units), sum(units²) of one column, GROUP BY bucket.

    PostgreSQL estimates the groups of floor(f(x)) as the distinct values of x (a
    million for timestamps) and then neither hashes nor works in parallel. Joining
    the bucket to the list of bucket numbers makes the estimate that list's length.
    """
    units = _units(table, s)
    bucket = _bucket(units)
    source: sa.FromClause = table
    if _is_postgresql():
        numbers = sa.values(sa.column("k", sa.Integer), name="buckets").data(
            [(k,) for k in range(-1, s.bins + 3)]
        )
        source = table.join(numbers, numbers.c.k == bucket)
        bucket = numbers.c.k
    return (
        sa.select(
            bucket, sa.func.count(), sa.func.sum(units), sa.func.sum(units * units)
        )
        .select_from(source)
        .where(*where, table.c[s.column.name].is_not(None))
        .group_by(bucket)
    )


def _histograms(
    table: sa.Table, where: list, scales: Sequence[_Scale]
) -> dict[str, _Moments]:
    """Bin counts and the sums for mean and sd: one GROUP BY bucket per column.

    The bucket of the maximum (and of a value a rounding error off either end) is
    clamped into the first or last bin here.
    """
    out = {}
    for s in (s for s in scales if s.bins):
        m = out[s.column.name] = _Moments([0] * s.bins)
        for b, n, total, total_sq in _bucket_rows(table, where, s):
            m.bins[min(max(b - 1, 0), s.bins - 1)] += n
            m.sum += total
            m.sum_sq += total_sq
    return out


def _one_bin_per_value(s: _Scale) -> bool:
    return s.column.type == "INTEGER" and s.width == 1


def _bucket_rows(table: sa.Table, where: list, s: _Scale):
    """(bucket, count, sum, sum of squares) rows of one column's histogram."""
    if not _one_bin_per_value(s):
        return db.session.execute(_histogram_statement(table, where, s))
    # one bin per value (a rating, a level): count the values, sum them exactly here
    c = table.c[s.column.name]
    stmt = sa.select(c, sa.func.count()).where(*where, c.is_not(None)).group_by(c)
    units = ((value - s.low + 1, n) for value, n in db.session.execute(stmt))
    return [(u, n, u * n, u * u * n) for u, n in units]


def _distinct_counts(
    table: sa.Table, where: list, scales: Sequence[_Scale | None], rows: int
) -> dict[str, int]:
    """Distinct values of numbers and datetimes, in the first SAMPLE_ROWS rows.

    Not for columns of one value or none, nor for those with a bin per value.
    """
    wanted = [s.column for s in scales if s and not _one_bin_per_value(s)]
    if not wanted:
        return {}
    inner = sa.select(*(table.c[c.name] for c in wanted)).where(*where)
    if rows > SAMPLE_ROWS:
        inner = inner.order_by(table.c.id).limit(SAMPLE_ROWS)
    sample = inner.subquery()
    stmt = sa.select(*(sa.func.count(sa.distinct(sample.c[c.name])) for c in wanted))
    counts = db.session.execute(stmt).one()
    return {c.name: n for c, n in zip(wanted, counts, strict=True)}


def _ordered(
    summary: ColumnSummary,
    t: dict[str, Any],
    scale: _Scale | None,
    moments: dict[str, _Moments],
    distinct: dict[str, int],
) -> ColumnSummary:
    n = summary.count
    fields: dict[str, Any] = {"minimum": t["min"], "maximum": t["max"]}
    if scale is None:  # no value, or every value the same
        fields.update(distinct=min(n, 1), mean=t["min"], sd=0.0 if n > 1 else None)
        if n:
            label = format_cell(summary.column, t["min"])
            fields["bins"] = (Bin(t["min"], t["max"], n, label),)
        return replace(summary, **fields)
    if not scale.bins:  # values near ±1e308: too wide to bin or average in doubles
        sampled = summary.rows > SAMPLE_ROWS
        return replace(
            summary,
            distinct=distinct[summary.column.name],
            distinct_sampled=sampled,
            **fields,
        )
    m = moments[summary.column.name]
    if _one_bin_per_value(scale):
        fields["distinct"] = sum(1 for count in m.bins if count)
    else:
        fields["distinct"] = distinct[summary.column.name]
        fields["distinct_sampled"] = summary.rows > SAMPLE_ROWS
    mean_units = m.sum / n
    var_units = max(m.sum_sq - m.sum * mean_units, 0.0) / (n - 1)
    mean = scale.low + scale.width * (mean_units - 1)
    if summary.column.type == "DATETIME":
        mean = EPOCH + dt.timedelta(seconds=mean)
    fields.update(
        mean=mean,
        sd=scale.width * math.sqrt(var_units),
        bins=tuple(_bins(scale, m.bins)),
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
            label = f"{number_text(low, 4)} – {number_text(high, 4)}"
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
    top = tuple(_top(summary.column, v, n) for v, n in counts if n)
    return replace(summary, distinct=len(top), top=top)


def _top_values(table: sa.Table, where: list, summary: ColumnSummary) -> ColumnSummary:
    """The TOP_VALUES most common values (ties by value) and the distinct count."""
    name = summary.column.name
    sampled = summary.column.type == "TEXT" and summary.rows > SAMPLE_ROWS
    source: sa.FromClause = table
    if sampled:  # long free text: grouping a million mostly unique values is slow
        inner = sa.select(table.c[name]).where(*where)
        source = inner.order_by(table.c.id).limit(SAMPLE_ROWS).subquery()
        where = []
    value = source.c[name]
    n = sa.func.count()
    stmt = (
        sa.select(value, n, sa.func.count().over())
        .select_from(source)
        .where(*where, value.is_not(None))
        .group_by(value)
        .order_by(n.desc(), value)
        .limit(TOP_VALUES)
    )
    found = db.session.execute(stmt).all()
    top = tuple(_top(summary.column, v, c) for v, c, _ in found)
    distinct = found[0][2] if found else 0
    return replace(
        summary,
        distinct=distinct,
        distinct_sampled=sampled,
        top=top,
        top_sampled=sampled,
    )


def _top(col: GridColumn, value: Any, count: int) -> TopValue:
    text = format_cell(col, value)
    return TopValue(value, count, text, text)

"""Column summaries: figures against Python's own, filters, charts, hostile addresses.

Every figure is compared with the same figure computed in Python (statistics.mean and
statistics.stdev for the sample standard deviation) from the stored rows of the view.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import current_app
from tests.conftest import statements
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import Element
from tests.htmlparse import parse
from wave_web import datatables
from wave_web import schema
from wave_web import summaries
from wave_web.columns import ColumnDef
from wave_web.extensions import db as _db
from wave_web.models import record
from wave_web.queries import BadQuery
from wave_web.queries import RowQuery
from wave_web.queries import filter_clause
from wave_web.queries import grid_columns
from wave_web.summaries import ColumnSummary

COLUMNS = (
    ColumnDef("score", "INTEGER"),
    ColumnDef("ratio", "FLOAT"),
    ColumnDef("label", "STRING"),
    ColumnDef("note", "TEXT"),
    ColumnDef("flag", "BOOLEAN"),
    ColumnDef("seen_at", "DATETIME"),
    ColumnDef("extra", "JSON"),
)
# 21 labels: more than TOP_VALUES, with ties, the empty string and a non-ASCII letter.
LABELS = ["a", "b", "a", "c", "", "Ä", "a", "b", None] + [f"u{k}" for k in range(12)]
EPOCH = dt.datetime(1970, 1, 1)


def row(i: int) -> dict[str, Any]:
    return {
        "participant_id": f"P{i % 4}",
        "score": None if i % 7 == 0 else (i * 37) % 23 - 5,
        "ratio": None if i % 5 == 3 else round(math.sin(i) * 100, 3),
        "label": LABELS[i % len(LABELS)],
        "note": None if i % 3 else f"note {i % 2}",
        "flag": None if i % 6 == 0 else i % 3 == 0,
        "seen_at": None
        if i % 4 == 1
        else dt.datetime(2024, 1, 1) + dt.timedelta(hours=i * i, microseconds=i),
        "extra": None if i % 2 else {"i": i},
    }


def neighbour_row(i: int) -> dict[str, Any]:
    """Rows of another experiment of the type: far outside every range above."""
    return {
        "participant_id": "X99",
        "score": 1000 + i,
        "ratio": -5000.0,
        "label": "neighbour",
        "note": "neighbour",
        "flag": True,
        "seen_at": dt.datetime(1990, 1, 1),
        "extra": {"n": i},
    }


@pytest.fixture
def data(db):
    xtype = make_type("Summary", "summary_data", COLUMNS)
    experiment = make_experiment(xtype, "Main study")
    make_rows(xtype, experiment, [row(i) for i in range(40)])
    other = make_experiment(xtype, "Other study")
    make_rows(xtype, other, [neighbour_row(i) for i in range(5)])
    table = datatables.reflect(xtype)
    stored = [
        dict(r)
        for r in _db.session.execute(
            sa.select(table).where(table.c.experiment_uuid == experiment.uuid)
        ).mappings()
    ]
    _db.session.rollback()
    return SimpleNamespace(
        xtype=xtype,
        experiment=experiment,
        other=other,
        rows=stored,
        url=f"/experiments/{experiment.uuid}/summary",
        grid_url=f"/experiments/{experiment.uuid}",
    )


def summarise(data, args=(), experiment=True) -> dict[str, ColumnSummary]:
    cols = grid_columns(data.xtype, with_experiment=not experiment)
    query = RowQuery.from_args(cols, dict(args))
    found = summaries.summarise(
        data.xtype, query, data.experiment.uuid if experiment else None
    )
    return {s.column.name: s for s in found}


def numeric(name: str, value: Any) -> float:
    return (value - EPOCH).total_seconds() if name == "seen_at" else float(value)


def check_ordered(s: ColumnSummary, values: list[Any]) -> None:
    """count/empty/distinct/min/max/mean/sd of s against the stored values."""
    present = [v for v in values if v is not None]
    assert (s.rows, s.count, s.empty) == (
        len(values),
        len(present),
        len(values) - len(present),
    )
    assert s.distinct == len(set(present))
    assert not s.distinct_sampled
    assert s.minimum == min(present)
    assert s.maximum == max(present)
    xs = [numeric(s.column.name, v) for v in present]
    tolerance = 1e-3 if s.column.name == "seen_at" else 1e-9  # julianday: ~40 µs
    mean = s.mean if s.column.name != "seen_at" else numeric("seen_at", s.mean)
    assert mean == pytest.approx(statistics.mean(xs), rel=1e-12, abs=tolerance)
    assert s.sd == pytest.approx(statistics.stdev(xs), rel=1e-9, abs=tolerance)
    assert sum(b.count for b in s.bins) == len(present)


def summarise_values(name: str, column_type: str, values: list[Any]):
    """The summary of one column holding `values` in an experiment of its own."""
    xtype = make_type(name, name.lower(), [ColumnDef("x", column_type)])
    experiment = make_experiment(xtype)
    make_rows(xtype, experiment, [{"participant_id": "P", "x": v} for v in values])
    query = RowQuery.from_args(grid_columns(xtype), {})
    found = summaries.summarise(xtype, query, experiment.uuid)
    return next(s for s in found if s.column.name == "x")


# ----------------------------------------------------------------------
# The figures
# ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["score", "ratio", "seen_at"])
def test_number_and_datetime_figures_match_python(data, name):
    s = summarise(data)[name]
    values = [r[name] for r in data.rows]
    assert s.kind == "ordered"
    assert (s.rows, s.count, s.empty) == (
        40,
        sum(v is not None for v in values),
        sum(v is None for v in values),
    )
    check_ordered(s, values)


def test_datetime_minimum_and_maximum_are_exact(data):
    s = summarise(data)["seen_at"]
    present = [r["seen_at"] for r in data.rows if r["seen_at"] is not None]
    assert s.minimum == dt.datetime(2024, 1, 1)
    assert s.maximum == max(present)
    assert s.max_text == max(present).isoformat() + "Z"
    assert s.bins[0].low == s.minimum


def test_histogram_has_twenty_equal_bins_with_the_extremes_in_the_end_bins(data):
    for name in ("ratio", "seen_at"):
        s = summarise(data)[name]
        present = sorted(
            numeric(name, r[name]) for r in data.rows if r[name] is not None
        )
        assert len(s.bins) == summaries.BINS
        widths = {
            round(numeric(name, b.high) - numeric(name, b.low), 3) for b in s.bins
        }
        assert len(widths) == 1, name
        lo = present[0]
        width = present[-1] / summaries.BINS - lo / summaries.BINS  # as summaries
        expected = Counter(
            min(int((x - lo) / width), summaries.BINS - 1) for x in present
        )
        assert [b.count for b in s.bins] == [expected[i] for i in range(len(s.bins))]
        assert s.bins[0].count >= 1 and s.bins[-1].count >= 1


def test_integer_histogram_uses_whole_number_bins(data):
    s = summarise(data)["score"]
    present = [r["score"] for r in data.rows if r["score"] is not None]
    assert (min(present), max(present)) == (-5, 17)  # 23 values → bins of 2
    assert [(b.low, b.high) for b in s.bins[:2]] == [(-5, -4), (-3, -2)]
    assert s.bins[-1].label == "17–18"
    for b in s.bins:
        assert b.count == sum(b.low <= v <= b.high for v in present)


def test_small_integer_range_gets_one_bin_per_value(db):
    levels = [1, 2, 2, 5, None, 2]
    s = summarise_values("Levels", "INTEGER", levels)
    assert [(b.label, b.count) for b in s.bins] == [
        ("1", 1),
        ("2", 3),
        ("3", 0),
        ("4", 0),
        ("5", 1),
    ]
    present = [v for v in levels if v is not None]
    assert (s.count, s.empty, s.distinct) == (5, 1, 3)
    assert s.mean == pytest.approx(statistics.mean(present), rel=1e-12)
    assert s.sd == pytest.approx(statistics.stdev(present), rel=1e-12)


def test_top_values_are_the_ten_most_common_by_count_then_value(data):
    s = summarise(data)["label"]
    counts = Counter(r["label"] for r in data.rows if r["label"] is not None)
    expected = sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))[:10]
    assert [(v.value, v.count) for v in s.top] == expected
    assert s.top[0].value == "a"
    assert s.distinct == len(counts) > summaries.TOP_VALUES
    assert (s.count, s.empty) == (sum(counts.values()), 40 - sum(counts.values()))
    assert s.minimum is None and s.bins == ()


def test_boolean_top_values_are_true_and_false(data):
    s = summarise(data)["flag"]
    counts = Counter(r["flag"] for r in data.rows if r["flag"] is not None)
    expected = sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))
    assert [(v.value, v.count) for v in s.top] == expected
    assert {v.param for v in s.top} == {"true", "false"}
    assert s.distinct == 2


def test_json_columns_get_counts_only(data):
    s = summarise(data)["extra"]
    assert (s.count, s.empty, s.distinct) == (20, 20, None)
    assert s.kind == "json" and s.top == () and s.bins == ()


def test_text_top_values_and_distinct(data):
    s = summarise(data)["note"]
    counts = Counter(r["note"] for r in data.rows if r["note"] is not None)
    assert [(v.value, v.count) for v in s.top] == sorted(
        counts.items(), key=lambda vc: (-vc[1], vc[0])
    )
    assert s.distinct == 2 and not s.top_sampled


def test_summary_leaves_out_id_experiment_uuid_and_hidden_columns(data):
    found = summarise(data, [("_hide", "ratio")])
    assert "id" not in found and "ratio" not in found
    assert list(found) == [
        "participant_id",
        "created_at",
        "updated_at",
        "score",
        "label",
        "note",
        "flag",
        "seen_at",
        "extra",
    ]
    assert "experiment_uuid" not in summarise(data, experiment=False)


@pytest.mark.parametrize(
    "args",
    [
        [("score__gte", "3")],
        [("label", "a")],
        [("ratio__lt", "0"), ("participant_id__not", "P1")],
        [("seen_at__isnull", "")],
        [("note__icontains", "NOTE 1")],
    ],
)
def test_summary_follows_the_filters(data, args):
    query = RowQuery.from_args(grid_columns(data.xtype), dict(args))
    table = datatables.reflect(data.xtype)
    ids = set(
        _db.session.scalars(
            sa.select(table.c.id).where(
                table.c.experiment_uuid == data.experiment.uuid,
                *(filter_clause(table, f) for f in query.filters),
            )
        )
    )
    rows = [r for r in data.rows if r["id"] in ids]
    assert 0 < len(rows) < 40
    found = summarise(data, args)
    assert found["participant_id"].rows == len(rows)
    for name in ("score", "ratio", "seen_at"):
        values = [r[name] for r in rows]
        if sum(v is not None for v in values) >= 2 and len(set(values) - {None}) > 1:
            check_ordered(found[name], values)
        else:
            assert found[name].count == sum(v is not None for v in values)
    labels = Counter(r["label"] for r in rows if r["label"] is not None)
    assert [(v.value, v.count) for v in found["label"].top] == sorted(
        labels.items(), key=lambda vc: (-vc[1], vc[0])
    )[:10]


def test_summary_of_the_type_covers_every_experiment(data):
    found = summarise(data, experiment=False)
    assert found["score"].rows == 45
    assert found["score"].maximum == 1004
    assert found["seen_at"].minimum == dt.datetime(1990, 1, 1)
    assert ("neighbour", 5) in [(v.value, v.count) for v in found["label"].top]


def test_summary_of_an_experiment_leaves_out_its_neighbours(data):
    found = summarise(data)
    assert found["score"].maximum < 1000
    assert "neighbour" not in [v.value for v in found["label"].top]
    assert "X99" not in [v.value for v in found["participant_id"].top]


def test_column_with_one_value_or_none(db):
    xtype = make_type(
        "Sparse",
        "sparse",
        [ColumnDef("x", "FLOAT"), ColumnDef("t", "DATETIME"), ColumnDef("s", "STRING")],
    )
    experiment = make_experiment(xtype)
    when = dt.datetime(2024, 5, 6, 7, 8, 9)
    make_rows(
        xtype,
        experiment,
        [
            {"participant_id": "P", "x": 2.5, "t": when},
            {"participant_id": "P", "x": None, "t": when},
        ],
    )
    query = RowQuery.from_args(grid_columns(xtype), {})
    found = {
        s.column.name: s for s in summaries.summarise(xtype, query, experiment.uuid)
    }
    x, t, s = found["x"], found["t"], found["s"]
    assert (x.count, x.empty, x.distinct, x.minimum, x.mean, x.sd) == (
        1,
        1,
        1,
        2.5,
        2.5,
        None,
    )
    assert [(b.count, b.label) for b in x.bins] == [(1, "2.5")]
    assert (t.count, t.distinct, t.mean, t.sd, t.sd_text) == (2, 1, when, 0.0, "0 s")
    assert (s.count, s.empty, s.distinct, s.top) == (0, 2, 0, ())


def test_integer_extremes(db):
    values = [-(2**31), 2**31 - 1, 0, 1]
    n = summarise_values("Extremes", "INTEGER", values)
    assert (n.minimum, n.maximum, n.distinct) == (-(2**31), 2**31 - 1, 4)
    assert n.mean == pytest.approx(statistics.mean(values), rel=1e-12)
    assert n.sd == pytest.approx(statistics.stdev(values), rel=1e-9)
    assert sum(b.count for b in n.bins) == 4 and n.bins[-1].count == 1


def test_float_range_beyond_a_double_gets_counts_but_no_histogram(db):
    x = summarise_values("Huge", "FLOAT", [-1.7e308, 1.7e308, 0.0, 1e-300])
    assert (x.count, x.distinct, x.minimum, x.maximum) == (4, 4, -1.7e308, 1.7e308)
    assert (x.bins, x.mean, x.sd) == ((), None, None)


@pytest.mark.parametrize(
    "values",
    [
        [0.0, 1e-200, 1.0],  # (x - min)² underflows
        [5e-324, 1e-300, 1e32],  # (x - min) / width underflows
        [-1e-310, 0.0, 1e-310],  # subnormal range
        [1e150, 1e152, -1e153],
    ],
)
def test_tiny_and_large_floats_do_not_underflow_or_overflow(db, values):
    x = summarise_values("Tiny", "FLOAT", values)
    assert sum(b.count for b in x.bins) == len(values)
    assert (x.minimum, x.maximum) == (min(values), max(values))
    assert x.mean == pytest.approx(statistics.mean(values), rel=1e-9, abs=1e-300)
    assert x.sd == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-300)


def test_datetimes_a_microsecond_apart(db):
    xtype = make_type("Close", "close_times", [ColumnDef("t", "DATETIME")])
    experiment = make_experiment(xtype)
    base = dt.datetime(2030, 1, 1, 12)
    times = [base + dt.timedelta(microseconds=k) for k in (0, 1, 1, 2)]
    make_rows(xtype, experiment, [{"participant_id": "P", "t": t} for t in times])
    query = RowQuery.from_args(grid_columns(xtype), {})
    (t,) = [
        s
        for s in summaries.summarise(xtype, query, experiment.uuid)
        if s.column.name == "t"
    ]
    assert (t.minimum, t.maximum, t.distinct) == (times[0], times[-1], 3)
    assert sum(b.count for b in t.bins) == 4
    assert abs((t.mean - times[1]).total_seconds()) < 1e-4


def test_large_views_count_distinct_values_and_long_text_in_a_sample(data, monkeypatch):
    monkeypatch.setattr(summaries, "SAMPLE_ROWS", 12)
    found = summarise(data)
    first = sorted(data.rows, key=lambda r: r["id"])[:12]
    score = found["score"]
    assert score.distinct_sampled
    assert score.distinct == len({r["score"] for r in first} - {None})
    assert score.count == sum(r["score"] is not None for r in data.rows)  # exact
    note = found["note"]
    assert note.top_sampled and note.distinct_sampled
    notes = Counter(r["note"] for r in first if r["note"] is not None)
    assert [(v.value, v.count) for v in note.top] == sorted(
        notes.items(), key=lambda vc: (-vc[1], vc[0])
    )
    levels = summarise_values("Levels", "INTEGER", [3, 1, 2, 2, 5] * 5)
    assert (levels.distinct, levels.distinct_sampled) == (4, True)  # a bin per value
    label = found["label"]  # STRING: sampled too
    labels = Counter(r["label"] for r in first if r["label"] is not None)
    assert label.top_sampled and label.distinct == len(labels)
    assert [(v.value, v.count) for v in label.top] == sorted(
        labels.items(), key=lambda vc: (-vc[1], vc[0])
    )[:10]
    flag = found["flag"]  # booleans come from the exact pass
    assert not flag.top_sampled
    assert sum(v.count for v in flag.top) == sum(
        r["flag"] is not None for r in data.rows
    )


@pytest.mark.parametrize("name", ["score", "ratio", "seen_at"])
def test_large_views_bin_a_sample_but_keep_exact_moments(data, monkeypatch, name):
    monkeypatch.setattr(summaries, "SAMPLE_ROWS", 12)
    s = summarise(data)[name]
    values = [r[name] for r in data.rows]
    first = [r[name] for r in sorted(data.rows, key=lambda r: r["id"])[:12]]
    assert s.bins_sampled and s.distinct_sampled
    assert sum(b.count for b in s.bins) == sum(v is not None for v in first)
    # count, min, max, mean and sd are of every row of the view
    present = [v for v in values if v is not None]
    assert (s.count, s.minimum, s.maximum) == (len(present), min(present), max(present))
    xs = [numeric(name, v) for v in present]
    tolerance = 1e-3 if name == "seen_at" else 1e-9
    mean = numeric(name, s.mean) if name == "seen_at" else s.mean
    assert mean == pytest.approx(statistics.mean(xs), rel=1e-12, abs=tolerance)
    assert s.sd == pytest.approx(statistics.stdev(xs), rel=1e-9, abs=tolerance)
    # the bins still span the whole range, not just the sample's
    assert numeric(name, s.bins[0].low) == pytest.approx(numeric(name, s.minimum))


def test_small_views_are_not_sampled(data):
    for s in summarise(data).values():
        assert not (s.bins_sampled or s.distinct_sampled or s.top_sampled), s


def test_sampled_summary_page_says_what_is_approximate(client, data, monkeypatch):
    monkeypatch.setattr(summaries, "SAMPLE_ROWS", 12)
    response = client.get(data.url)
    assert response.status_code == 200
    page = parse(response.data)
    scope = page.find(id="summary-sampled").text
    assert "approximate, from the first 12 rows" in scope
    assert "mean and SD are exact" in scope
    found = cards(response)
    for name in ("score", "label", "note", "seen_at"):
        note = found[name].find(class_="summary-approximate")
        assert note is not None and "first 12 rows" in note.text, name
    histogram = found["score"].find("svg", class_="histogram")
    assert "(approximate, from the first 12 rows)" in histogram.attrs["aria-label"]
    top = found["label"].find("svg", class_="top-values")
    assert "(approximate, from the first 12 rows)" in top.attrs["aria-label"]
    assert found["flag"].find(class_="summary-approximate") is None  # exact
    unsampled = client.get(f"{data.url}?score__gte=100000")
    assert parse(unsampled.data).find(id="summary-sampled") is None


def test_wide_type_is_summarised_in_several_statements(db):
    # 200 columns (the most a type may have): about 1,000 aggregates, over 600
    wide = [ColumnDef(f"c{i:03d}", "FLOAT") for i in range(180)]
    wide += [ColumnDef(f"s{i:03d}", "STRING") for i in range(20)]
    xtype = make_type("Wide", "wide_data", wide)
    experiment = make_experiment(xtype)
    rows = [
        {
            "participant_id": f"P{j}",
            **{f"c{i:03d}": float(i * j) for i in range(180)},
            **{f"s{i:03d}": f"v{j % 2}" for i in range(20)},
        }
        for j in range(3)
    ]
    make_rows(xtype, experiment, rows)
    query = RowQuery.from_args(grid_columns(xtype), {})
    found = {
        s.column.name: s for s in summaries.summarise(xtype, query, experiment.uuid)
    }
    assert (found["c179"].minimum, found["c179"].maximum) == (0.0, 358.0)
    assert found["c179"].mean == pytest.approx(179.0)
    assert sum(b.count for b in found["c001"].bins) == 3
    assert found["c002"].distinct == 3
    assert [(v.value, v.count) for v in found["s019"].top] == [("v0", 2), ("v1", 1)]


# ----------------------------------------------------------------------
# The cache
# ----------------------------------------------------------------------


def data_statements(table_name: str = "summary_data"):
    """The statements run on a data table while the block runs."""
    return statements(containing=table_name)


def fresh(data, args=(), experiment=True) -> dict[str, ColumnSummary]:
    """The summaries computed now, bypassing the cache."""
    cols = grid_columns(data.xtype, with_experiment=not experiment)
    query = RowQuery.from_args(cols, dict(args))
    found = summaries.compute(
        data.xtype, query, data.experiment.uuid if experiment else None
    )
    return {s.column.name: s for s in found}


def test_unchanged_data_is_summarised_once(data):
    first = summarise(data)
    first_type = summarise(data, experiment=False)
    _db.session.rollback()  # the next request
    with data_statements() as seen:
        again = summarise(data)
        again_type = summarise(data, experiment=False)
    assert seen == []
    assert (again, again_type) == (first, first_type)
    with data_statements() as seen:
        summarise(data, [("score__gte", "3")])  # another view: another entry
        summarise(data, [("_hide", "ratio")])
    assert seen


def row_with_highest_score(data) -> dict[str, Any]:
    return max(data.rows, key=lambda r: (r["score"] is not None, r["score"] or 0))


WRITES = {
    "insert_row": lambda d: datatables.insert_row(
        d.xtype, d.experiment.uuid, {"participant_id": "P9", "score": 500}
    ),
    "insert_rows": lambda d: make_rows(
        d.xtype, d.experiment, [{"participant_id": "P9", "score": 500}]
    ),
    "update_row": lambda d: datatables.update_row(
        d.xtype,
        d.experiment.uuid,
        d.rows[0]["id"],
        {"score": 500},
        d.rows[0]["updated_at"],
    ),
    "delete_rows": lambda d: datatables.delete_rows(
        d.xtype, d.experiment.uuid, [row_with_highest_score(d)["id"]]
    ),
    "delete_matching": lambda d: datatables.delete_matching(
        d.xtype,
        d.experiment.uuid,
        RowQuery.from_args(grid_columns(d.xtype), {"score__gte": "10"}),
    ),
}


@pytest.mark.parametrize("write", WRITES)
def test_cached_summary_is_never_served_after_a_row_changed(data, write):
    before = summarise(data)
    before_type = summarise(data, experiment=False)
    _db.session.rollback()
    WRITES[write](data)
    _db.session.rollback()
    after = summarise(data)
    assert after["score"] != before["score"]
    assert after == fresh(data)
    assert summarise(data, experiment=False) == fresh(data, experiment=False)
    assert summarise(data, experiment=False) != before_type


def test_an_audited_write_that_forgets_to_touch_the_experiment_is_seen(data):
    """E.g. an import that updates rows: audited, but experiments is not touched."""
    before = summarise(data)["score"]
    _db.session.rollback()
    table = datatables.reflect(data.xtype)
    _db.session.execute(
        sa.update(table).where(table.c.id == data.rows[0]["id"]).values(score=500)
    )
    record("rows.import", "experiment", data.experiment.uuid, "Updated one row")
    _db.session.commit()
    after = summarise(data)["score"]
    assert after.maximum == 500 != before.maximum
    assert after == fresh(data)["score"]


def test_a_write_to_another_experiment_keeps_the_experiment_cached(data):
    summarise(data)
    _db.session.rollback()
    make_rows(data.xtype, data.other, [{"participant_id": "P9", "score": 500}])
    with data_statements() as seen:
        summarise(data)
    assert seen == []
    assert summarise(data, experiment=False)["score"].maximum == 1004  # 500 < 1004


def test_a_rolled_back_write_keeps_the_version(data):
    version = summaries.data_version(data.xtype, data.experiment.uuid)
    datatables.insert_rows(data.xtype, data.experiment.uuid, [{"participant_id": "P"}])
    _db.session.rollback()
    assert summaries.data_version(data.xtype, data.experiment.uuid) == version


def test_a_schema_change_is_a_new_summary(data):
    summarise(data)
    _db.session.rollback()
    schema.change_type(data.xtype, "score", "FLOAT")
    found = summarise(data)["score"]
    assert found.column.type == "FLOAT"
    assert found == fresh(data)["score"]


def test_the_cache_keeps_the_newest_summaries_only(data, monkeypatch):
    monkeypatch.setattr(summaries, "CACHE_SIZE", 2)
    for bound in ("1", "2", "3"):
        summarise(data, [("score__gte", bound)])
    assert len(current_app.extensions["wave_summaries"]) == 2
    with data_statements() as seen:
        summarise(data, [("score__gte", "3")])
    assert seen == []
    with data_statements() as seen:
        summarise(data, [("score__gte", "1")])
    assert seen


@pytest.mark.parametrize("experiment", [True, False])
def test_a_view_read_in_two_id_ranges_has_the_same_exact_figures(
    data, monkeypatch, dialect, experiment
):
    whole = fresh(data, experiment=experiment)
    monkeypatch.setattr(summaries, "SPLIT_IDS", 2)
    with data_statements() as seen:
        split = fresh(data, experiment=experiment)
    # SQLite reads the totals and the moments in two id ranges at once, PostgreSQL
    # (parallel workers of its own) in one statement each
    halves = [s for s in seen if "summary_data.id >=" in s]
    assert len(halves) == (2 if dialect == "sqlite" else 0)
    assert whole.keys() == split.keys()
    for name, s in split.items():
        assert replace(s, mean=None, sd=None) == replace(
            whole[name], mean=None, sd=None
        ), name
    if experiment:
        for name in ("score", "ratio", "seen_at"):
            check_ordered(split[name], [r[name] for r in data.rows])
    assert split["score"].rows == (40 if experiment else 45)
    assert split["flag"].top == whole["flag"].top


def test_a_write_request_reads_in_one_pass(app, data, monkeypatch):
    """A second connection would not see the request's own uncommitted rows."""
    monkeypatch.setattr(summaries, "SPLIT_IDS", 2)
    with app.test_request_context(method="POST"), data_statements() as seen:
        fresh(data)
    assert seen and not any("summary_data.id >=" in s for s in seen)


def test_sqlite_scans_the_table_for_an_experiment_that_fills_most_of_it(data, dialect):
    with data_statements() as seen:
        summarise(data)  # 40 of the table's 45 rows
    plus = "(+ summary_data.experiment_uuid)"
    assert all(plus in s for s in seen) == (dialect == "sqlite")
    query = RowQuery.from_args(grid_columns(data.xtype), {})
    with data_statements() as seen:
        summaries.summarise(data.xtype, query, data.other.uuid)  # 5 of 45: the index
    assert seen and not any(plus in s for s in seen)


def test_bad_query_string_is_refused_before_any_summary(data):
    with pytest.raises(BadQuery):
        summarise(data, [("nope", "1")])


# ----------------------------------------------------------------------
# Pages
# ----------------------------------------------------------------------


def cards(response) -> dict[str, Element]:
    page = parse(response.data)
    return {
        e.attrs["aria-labelledby"].removeprefix("summary-"): e
        for e in page.find_all("article", class_="summary-card")
    }


def test_summary_page_shows_a_card_per_visible_column(client, data):
    response = client.get(data.url)
    assert response.status_code == 200
    page = parse(response.data)
    assert "Column summaries" in page.find("title").text
    crumbs = page.find("nav", **{"aria-label": "Breadcrumb"}).text
    assert "Main study" in crumbs and "Column summaries" in crumbs
    found = cards(response)
    assert list(found) == [
        "participant_id",
        "created_at",
        "updated_at",
        "score",
        "ratio",
        "label",
        "note",
        "flag",
        "seen_at",
        "extra",
    ]
    histogram = found["score"].find("svg", class_="histogram")
    assert histogram.attrs["role"] == "img"
    assert "Histogram of score" in histogram.attrs["aria-label"]
    titles = [t.text for t in histogram.find_all("title")]
    assert titles[0].startswith("-5–-4: ") and len(titles) == len(
        summarise(data)["score"].bins
    )
    assert "Values 34" in found["score"].text
    assert "JSON values: counts only" in found["extra"].text
    assert (
        found["label"]
        .find("svg", class_="top-values")
        .attrs["aria-label"]
        .startswith("Most common values of label: a 6")
    )
    assert b'style="' not in response.data  # the CSP forbids inline styles


def test_summary_fragment_for_htmx(client, data):
    response = client.get(data.url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert b"<html" not in response.data
    assert parse(response.data).find("section", class_="column-summaries")
    assert len(cards(response)) == 10
    assert "HX-Request" in response.headers.get("Vary", "")


def test_summary_page_of_a_filtered_view_names_the_filters(client, data):
    response = client.get(f"{data.url}?score__gte=3&_sort=ratio")
    assert response.status_code == 200
    scope = parse(response.data).find(id="summary-scope").text
    assert "matching score ≥ 3" in scope
    links = [a.attrs["href"] for a in parse(response.data).find_all("a")]
    assert f"{data.grid_url}?score__gte=3&_sort=ratio" in links  # back to the rows


def test_top_value_links_filter_the_grid(client, data):
    response = client.get(f"{data.url}?score__gte=0")
    chart = cards(response)["label"].find("svg", class_="top-values")
    hrefs = [a.attrs["href"] for a in chart.find_all("a")]
    first = urlsplit(hrefs[0])
    assert first.path == data.grid_url
    assert parse_qsl(first.query, keep_blank_values=True) == [
        ("score__gte", "0"),
        ("label__exact", summarise(data, [("score__gte", "0")])["label"].top[0].value),
    ]
    grid = client.get(hrefs[0])
    assert grid.status_code == 200
    # the empty string is a value to filter by too
    empty = [
        h
        for h in hrefs
        if ("label__exact", "") in parse_qsl(urlsplit(h).query, keep_blank_values=True)
    ]
    assert empty and client.get(empty[0]).status_code == 200
    flags = cards(response)["flag"].find_all("a")
    assert {
        dict(parse_qsl(urlsplit(a.attrs["href"]).query))["flag__exact"] for a in flags
    } == {"true", "false"}


def test_grid_links_to_its_summary_with_the_view(client, data):
    response = client.get(f"{data.grid_url}?score__gte=3&_sort=ratio&_hide=note")
    page = parse(response.data)
    link = page.find("a", **{"hx-target": "#summary-panel"})
    assert link is not None
    url = urlsplit(link.attrs["href"])
    assert url.path == data.url
    assert parse_qsl(url.query) == [
        ("score__gte", "3"),
        ("_sort", "ratio"),
        ("_hide", "note"),
    ]
    assert link.attrs["hx-get"] == link.attrs["href"]
    assert link.attrs["hx-swap"] == "innerHTML"
    assert link.attrs["hx-push-url"] == "false"
    assert page.find(id="summary-panel") is not None
    fragment = client.get(link.attrs["href"], headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "note" not in cards(fragment)


def test_type_summary_covers_every_experiment(client, data):
    response = client.get(f"/types/{data.xtype.id}/summary")
    assert response.status_code == 200
    assert "Values 39 Empty 6" in cards(response)["score"].text  # 34 + 5
    crumbs = parse(response.data).find("nav", **{"aria-label": "Breadcrumb"}).text
    assert "All rows" in crumbs


def test_type_grid_links_to_the_type_summary(client, data):
    page = parse(client.get(f"/types/{data.xtype.id}/rows?_sort=score").data)
    link = page.find("a", **{"hx-target": "#summary-panel"})
    assert link.attrs["href"] == f"/types/{data.xtype.id}/summary?_sort=score"


@pytest.mark.parametrize(
    "url",
    [
        "/types/999/summary",
        "/types/99999999999/summary",
        "/experiments/not-a-uuid/summary",
        "/experiments/00000000-0000-0000-0000-000000000000/summary",
    ],
)
def test_unknown_type_or_experiment_is_404(client, db, url):
    assert client.get(url).status_code == 404


HOSTILE = [
    [("nope", "1")],
    [('x") OR 1=1 --', "1")],
    [("_sort", 'x") OR 1=1 --')],
    [("score__gt", "1) OR 1=1 --")],
    [("score__gt", "abc")],
    [("label__gt", "a")],
    [("_hide", 'id"; DROP TABLE summary_data; --')],
    [("label__exact", "a\x00")],
    [("_size", "7")],
]


@pytest.mark.parametrize("args", HOSTILE)
def test_hostile_query_string_is_a_400_with_a_message(client, data, args):
    response = client.get(f"{data.url}?{urlencode(args)}")
    assert response.status_code == 400
    assert b"summary-card" not in response.data
    message = parse(response.data).find(class_="lead") or parse(response.data).find(
        class_="alert"
    )
    assert message is not None and message.text
    htmx = client.get(f"{data.url}?{urlencode(args)}", headers={"HX-Request": "true"})
    assert htmx.status_code == 400 and b"<html" not in htmx.data
    # the table is intact
    assert client.get(f"/types/{data.xtype.id}/summary").status_code == 200


def test_unknown_column_message_names_it(client, data):
    response = client.get(f"{data.url}?nope=1", headers={"HX-Request": "true"})
    assert "nope" in parse(response.data).text


def test_empty_experiment_renders_without_error(client, data):
    empty = make_experiment(data.xtype, "Nothing yet")
    for headers in ({}, {"HX-Request": "true"}):
        response = client.get(f"/experiments/{empty.uuid}/summary", headers=headers)
        assert response.status_code == 200
        assert "No rows yet" in parse(response.data).text
    response = client.get(f"{data.url}?score__gt=100000")
    assert response.status_code == 200
    assert "No rows match these filters" in parse(response.data).text


def test_every_column_hidden(client, data):
    hide = [("_hide", c.name) for c in grid_columns(data.xtype)]
    response = client.get(f"{data.url}?{urlencode(hide)}")
    assert response.status_code == 200
    assert "nothing to summarise" in parse(response.data).text

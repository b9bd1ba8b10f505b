"""Searches of tags, types, experiments and their rows (api-v1.md §10).

Each search is one WHERE clause used twice: a COUNT for the real total and the page
itself, newest first (created_at descending, then the key) with OFFSET/LIMIT in the
database. Text matching is a case-insensitive substring test with `%`, `_` and `\\`
literal; letters beyond A–Z fold the same way on both databases (queries._lower).
Tag matching is exact and case-sensitive.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import selectinload

from wave_web import columns
from wave_web import datatables
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import Tag
from wave_web.queries import _lower

INT32_MAX = 2**31 - 1
UTC_MIN = dt.datetime.min.replace(tzinfo=dt.UTC)
UTC_MAX = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Window:
    """Inclusive creation-time bounds (naive = UTC) and the page wanted."""

    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    skip: int = 0
    limit: int = 100

    @property
    def bounded(self) -> bool:
        return self.created_after is not None or self.created_before is not None


@dataclass(frozen=True)
class Found:
    """One page of matches and the number of all matches."""

    items: list[Any]
    total: int


@dataclass(frozen=True)
class DataFound:
    """Rows of the matching experiments: one page, with every experiment's count."""

    experiments: list[tuple[Experiment, int]]  # all matches, newest first
    rows: list[tuple[Experiment, dict[str, Any]]]  # the page
    total_rows: int


# ----------------------------------------------------------------------
# Clauses
# ----------------------------------------------------------------------


def utc(value: dt.datetime) -> dt.datetime:
    """`value` as an aware UTC datetime: naive is taken as UTC, offsets converted.

    A bound whose conversion leaves the datetime range (9999-12-31T23:00-05:00) is
    the end of that range.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        return UTC_MAX if value.year > 1 else UTC_MIN


def created_between(
    column: Any, window: Window, naive: bool = False
) -> list[sa.ColumnElement[bool]]:
    """The window's inclusive bounds on `column` (naive UTC for data tables)."""
    clauses = []
    for bound, is_upper in (
        (window.created_after, False),
        (window.created_before, True),
    ):
        if bound is None:
            continue
        moment = utc(bound)
        if naive:
            moment = moment.replace(tzinfo=None)
        clauses.append(column <= moment if is_upper else column >= moment)
    return clauses


def text_match(column: Any, text: str) -> sa.ColumnElement[bool]:
    """`column` contains `text` in any case; `%`, `_` and `\\` are plain characters."""
    columns.clean_text(text, "search text", "search_text")
    return _lower(column).contains(text.lower(), autoescape=True)


def any_text_match(cols: Iterable[Any], text: str) -> sa.ColumnElement[bool]:
    """One of `cols` contains `text` (see text_match)."""
    return sa.or_(*(text_match(c, text) for c in cols))


def tags_match(names: list[str], match_all: bool) -> sa.ColumnElement[bool]:
    """The experiment carries all (or any) of `names`, compared exactly.

    One clause whatever the number of names (an array operator on PostgreSQL, the
    names as one JSON parameter on SQLite), so a long list cannot exceed a database
    limit. Names no experiment can carry (over 50 characters) match nothing.
    """
    for name in names:
        columns.clean_text(name, "tag", "tags")
    wanted = sorted({n for n in names if len(n) <= columns.MAX_TAG_LENGTH})
    if not wanted or (match_all and len(wanted) < len(set(names))):
        return sa.false()
    if db.session.get_bind().dialect.name == "postgresql":
        tags = sa.type_coerce(
            Experiment.tags, postgresql.ARRAY(sa.String(columns.MAX_TAG_LENGTH))
        )
        return tags.contains(wanted) if match_all else tags.overlap(wanted)
    each = sa.func.json_each(Experiment.tags).table_valued("value").alias("tag_each")
    given = sa.func.json_each(
        sa.bindparam(None, orjson.dumps(wanted).decode(), type_=sa.String)
    )
    given = given.table_valued("value").alias("tag_wanted")
    carried = each.c.value.in_(sa.select(given.c.value))
    if not match_all:
        return sa.exists(sa.select(1).select_from(each).where(carried))
    found = (
        sa.select(sa.func.count(sa.distinct(each.c.value)))
        .select_from(each)
        .where(carried)
        .scalar_subquery()
    )
    return found == len(wanted)


def type_is(type_id: int) -> sa.ColumnElement[bool]:
    """The experiment is of type `type_id` (an id that cannot exist matches nothing)."""
    if not 1 <= type_id <= INT32_MAX:
        return sa.false()
    return Experiment.experiment_type_id == type_id


# ----------------------------------------------------------------------
# Searches
# ----------------------------------------------------------------------


def _found(
    model: Any, where: list[sa.ColumnElement[bool]], order: list[Any], window: Window
) -> Found:
    total = db.session.scalar(
        sa.select(sa.func.count()).select_from(model).where(*where)
    )
    total = int(total or 0)
    if window.skip >= total:  # also keeps OFFSET within the databases' integers
        return Found([], total)
    stmt = sa.select(model).where(*where).order_by(*order)
    if model is Experiment:
        stmt = stmt.options(selectinload(Experiment.experiment_type))
    stmt = stmt.offset(window.skip).limit(window.limit)
    return Found(list(db.session.scalars(stmt)), total)


def search_tags(text: str, window: Window) -> Found:
    """Tags whose name or description contains `text`, newest first."""
    where = [
        any_text_match((Tag.name, Tag.description), text),
        *created_between(Tag.created_at, window),
    ]
    return _found(Tag, where, [Tag.created_at.desc(), Tag.id.desc()], window)


def search_types(text: str, window: Window) -> Found:
    """Experiment types whose name or description contains `text`, newest first."""
    t = ExperimentType
    where = [
        any_text_match((t.name, t.description), text),
        *created_between(t.created_at, window),
    ]
    return _found(t, where, [t.created_at.desc(), t.id.desc()], window)


EXPERIMENT_ORDER = (Experiment.created_at.desc(), Experiment.uuid)


def experiment_clauses(
    window: Window,
    text: str | None = None,
    tags: list[str] | None = None,
    match_all: bool = True,
    type_id: int | None = None,
) -> list[sa.ColumnElement[bool]]:
    """Every criterion given, combined; none given matches every experiment."""
    where = created_between(Experiment.created_at, window)
    if text:
        where.append(text_match(Experiment.description, text))
    if tags:
        where.append(tags_match(tags, match_all))
    if type_id is not None:
        where.append(type_is(type_id))
    return where


def search_experiments(
    window: Window,
    text: str | None = None,
    tags: list[str] | None = None,
    match_all: bool = True,
    type_id: int | None = None,
) -> Found:
    """Experiments matching every criterion given, newest first (see clauses)."""
    where = experiment_clauses(window, text, tags, match_all, type_id)
    return _found(Experiment, where, list(EXPERIMENT_ORDER), window)


def data_by_tags(tags: list[str], match_all: bool, window: Window) -> DataFound:
    """Rows of the experiments with these tags, experiment by experiment (newest
    first), newest row first; the bounds apply to experiments and rows alike.

    Exact counts per experiment say which experiments the page touches; only their
    rows are read, each with LIMIT/OFFSET in its own type's table.
    """
    where = experiment_clauses(window, tags=tags, match_all=match_all)
    stmt = (
        sa.select(Experiment)
        .where(*where)
        .options(selectinload(Experiment.experiment_type))
        .order_by(*EXPERIMENT_ORDER)
    )
    experiments = list(db.session.scalars(stmt))
    counts = _row_counts(experiments, where, window)
    counted = [(e, counts.get(e.uuid, 0)) for e in experiments]
    rows = _page_rows(counted, window)
    return DataFound(counted, rows, sum(n for _e, n in counted))


def _row_counts(
    experiments: list[Experiment],
    where: list[sa.ColumnElement[bool]],
    window: Window,
) -> dict[uuid.UUID, int]:
    """Rows per experiment within the bounds: the kept row_count when unbounded,
    else one grouped COUNT per type table."""
    if not window.bounded:
        return {e.uuid: e.row_count for e in experiments}
    types = {e.experiment_type_id: e.experiment_type for e in experiments}
    counts: dict[uuid.UUID, int] = {}
    for type_id, xtype in types.items():
        table = datatables.reflect(xtype)
        ours = sa.select(Experiment.uuid).where(*where, type_is(type_id))
        stmt = (
            sa.select(table.c.experiment_uuid, sa.func.count())
            .where(
                table.c.experiment_uuid.in_(ours),
                *created_between(table.c.created_at, window, naive=True),
            )
            .group_by(table.c.experiment_uuid)
        )
        counts.update({u: int(n) for u, n in db.session.execute(stmt)})
    return counts


def _page_rows(
    counted: list[tuple[Experiment, int]], window: Window
) -> list[tuple[Experiment, dict[str, Any]]]:
    """The rows at positions skip … skip+limit of all experiments' rows in order."""
    after, before = (
        utc(b).replace(tzinfo=None) if b is not None else None
        for b in (window.created_after, window.created_before)
    )
    start, end = window.skip, window.skip + window.limit
    rows: list[tuple[Experiment, dict[str, Any]]] = []
    position = 0  # rows of the experiments before this one
    for experiment, count in counted:
        if position >= end:
            break
        offset = max(0, start - position)
        take = min(count, end - position) - offset
        if take > 0:
            found = datatables.list_rows(
                experiment.experiment_type,
                experiment.uuid,
                None,
                after,
                before,
                take,
                offset,
            )
            rows += [(experiment, r) for r in found]
        position += count
    return rows

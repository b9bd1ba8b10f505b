"""The participants index: every participant id of every data table, in keyset pages.

There is no participants table: ids live in the indexed participant_id column of each
type's table. A page is one UNION ALL of per-table range scans of that index
(DISTINCT, ORDER BY, LIMIT page + 1: each table stops after the page's ids), merged in
Python, then one UNION ALL of counts for just those ids, in just the tables that hold
them. Nothing to maintain on the write paths (CSV COPY, API batches, edits,
deletes), and a page costs the same at participant 10 and 100,000. Both databases
compare participant_id by code point (columns.text_type), so the same ranges,
prefixes and cursors hold on each, and in Python.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from wave_web.errors import WaveError
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import ExperimentType

PAGE_SIZE = 50
MAX_ID_LENGTH = 100  # participant_id is VARCHAR(100)
PER_STATEMENT = 400  # SQLite allows 500 terms in a compound SELECT
_LAST_CHAR = chr(0x10FFFF)
_lock = threading.Lock()


class BadParticipantQuery(WaveError):
    """A search text or page cursor that cannot be a participant id."""


@dataclass(frozen=True)
class Participant:
    """One participant id with its counts across every type."""

    id: str
    rows: int
    experiments: int


@dataclass(frozen=True)
class ParticipantQuery:
    """Which page: ids starting with `prefix`, after or before a cursor id."""

    prefix: str = ""
    after: str | None = None
    before: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> ParticipantQuery:
        """Read ?q=, ?after= and ?before=; BadParticipantQuery when unusable."""
        prefix = _checked(args.get("q", "").strip(), "The search text")
        after = _checked(args.get("after", ""), "The page position") or None
        before = _checked(args.get("before", ""), "The page position") or None
        if after is not None and before is not None:
            raise BadParticipantQuery(
                "A page is either after or before a participant, not both: "
                "use the page links."
            )
        return cls(prefix, after, before)


@dataclass(frozen=True)
class ParticipantPage:
    """One page of participants, in participant id order."""

    participants: list[Participant]
    has_next: bool
    has_previous: bool

    @property
    def first_id(self) -> str:
        return self.participants[0].id

    @property
    def last_id(self) -> str:
        return self.participants[-1].id


def _checked(text: str, what: str) -> str:
    if len(text) > MAX_ID_LENGTH:
        raise BadParticipantQuery(
            f"{what} is {len(text)} characters long; a participant id has at most "
            f"{MAX_ID_LENGTH}."
        )
    if "\x00" in text:
        raise BadParticipantQuery(f"{what} cannot contain the NUL character.")
    return text


def prefix_end(prefix: str) -> str | None:
    """The first string after every string that starts with `prefix` (None: none).

    In code point order: the prefix with its last character incremented (U+10FFFF
    carries over; the surrogates, which no stored text holds, are skipped).
    """
    stem = prefix.rstrip(_LAST_CHAR)
    if not stem:
        return None
    following = ord(stem[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:
        following = 0xE000
    return stem[:-1] + chr(following)


def page_participants(q: ParticipantQuery, size: int | None = None) -> ParticipantPage:
    """The page of participants that `q` names, with their row and experiment counts."""
    size = size or PAGE_SIZE
    tables = _tables_with_rows()
    backward = q.before is not None
    low, low_inclusive, high = _bounds(q)
    shape = (low is not None, low_inclusive, high is not None, backward)
    params = {"low": low, "high": high}
    holders: dict[str, set[int]] = {}  # id → positions in `tables` of its tables
    for stmt in _statements(tables, shape, size + 1):
        for position, pid in db.session.execute(stmt, params):
            holders.setdefault(pid, set()).add(position)
    ids = sorted(holders, reverse=backward)
    more = len(ids) > size
    if backward and not more:  # back at the start: the full first page instead
        return page_participants(ParticipantQuery(q.prefix), size)
    ids = sorted(ids[:size])
    # A table holding a page id returned it: its ids before that one are on the page
    # too, so it is among the table's first size + 1. Only those tables are counted.
    counted = sorted(set().union(*(holders[i] for i in ids)))
    counts = _counts(tuple(tables[i] for i in counted), ids)
    participants = [Participant(i, *counts.get(i, (0, 0))) for i in ids]
    if backward:
        return ParticipantPage(participants, has_next=True, has_previous=True)
    return ParticipantPage(
        participants, has_next=more, has_previous=q.after is not None
    )


def _bounds(q: ParticipantQuery) -> tuple[str | None, bool, str | None]:
    """(low, whether low itself is in, high: excluded) of the ids on the page."""
    low: str | None = q.prefix or None
    high = prefix_end(q.prefix) if q.prefix else None
    if q.after is not None and (low is None or q.after >= low):
        return q.after, False, high
    if q.before is not None and (high is None or q.before < high):
        high = q.before
    return low, True, high


def _tables_with_rows() -> tuple[str, ...]:
    """Table names of the types whose experiments have rows (maintained counts)."""
    has_rows = sa.exists().where(
        Experiment.experiment_type_id == ExperimentType.id, Experiment.row_count > 0
    )
    stmt = sa.select(ExperimentType.table_name).where(has_rows)
    return tuple(db.session.scalars(stmt.order_by(ExperimentType.table_name)))


def _standard_columns(table_name: str) -> sa.TableClause:
    # Table names come from the registry; both columns are standard ones.
    return sa.table(
        table_name,
        sa.column("participant_id", sa.String),
        sa.column("experiment_uuid", sa.Uuid),
    )


def _chunks(tables: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [
        tables[start : start + PER_STATEMENT]
        for start in range(0, len(tables), PER_STATEMENT)
    ]


def _statements(tables: tuple[str, ...], shape: tuple, limit: int) -> list:
    """UNION ALLs of the per-table page scans, built once per (tables, shape, limit).

    Each gives (position of the table in `tables`, participant id), at most `limit`
    per table. A statement of a thousand branches costs more to build and key than
    to run.
    """
    key = ("ids", tables, shape, limit)
    return _cached(
        key,
        lambda: [
            _ids_statement(chunk, n * PER_STATEMENT, shape, limit)
            for n, chunk in enumerate(_chunks(tables))
        ],
    )


def _ids_statement(tables: tuple[str, ...], first: int, shape: tuple, limit: int):
    has_low, low_inclusive, has_high, backward = shape
    low = sa.bindparam("low", type_=sa.String)
    high = sa.bindparam("high", type_=sa.String)
    branches = []
    for position, table_name in enumerate(tables, start=first):
        pid = _standard_columns(table_name).c.participant_id
        where = []
        if has_low:
            where.append(pid >= low if low_inclusive else pid > low)
        if has_high:
            where.append(pid < high)
        scan = (
            sa.select(pid)
            .distinct()
            .where(*where)
            .order_by(pid.desc() if backward else pid)
            .limit(limit)
            .subquery()
        )
        position_column = sa.literal(position, sa.Integer).label("position")
        branches.append(sa.select(position_column, scan.c.participant_id))
    return sa.union_all(*branches) if len(branches) > 1 else branches[0]


def _counts(tables: tuple[str, ...], ids: list[str]) -> dict[str, tuple[int, int]]:
    """participant id → (rows, experiments); an experiment has one type, so sums."""
    if not ids or not tables:
        return {}
    totals: dict[str, list[int]] = {}
    for stmt in [_counts_statement(c) for c in _chunks(tables)]:
        for pid, rows, experiments in db.session.execute(stmt, {"ids": ids}):
            total = totals.setdefault(pid, [0, 0])
            total[0] += rows
            total[1] += experiments
    return {pid: (rows, experiments) for pid, (rows, experiments) in totals.items()}


@functools.lru_cache(maxsize=256)
def _counts_statement(tables: tuple[str, ...]):
    """Counts per id in `tables`; kept per list of tables (statements hold no data)."""
    ids = sa.bindparam("ids", expanding=True, type_=sa.String)
    branches = []
    for table_name in tables:
        table = _standard_columns(table_name)
        pid = table.c.participant_id
        branches.append(
            sa.select(
                pid,
                sa.func.count().label("rows"),
                sa.func.count(table.c.experiment_uuid.distinct()).label("experiments"),
            )
            .where(pid.in_(ids))
            .group_by(pid)
        )
    return sa.union_all(*branches) if len(branches) > 1 else branches[0]


def _cached(key: tuple, build):
    """Statements kept per key; a new list of tables drops the older ones."""
    cache = current_app.extensions.setdefault("wave_participant_index", {})
    with _lock:
        found = cache.get(key)
    if found is not None:
        return found
    found = build()
    with _lock:
        if any(k[1] != key[1] for k in cache):
            cache.clear()
        cache[key] = found
    return found

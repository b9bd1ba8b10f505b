"""Reading the audit log: filters, keyset pages (newest first) and a CSV export.

Entries are written by models.record() in the transaction of each change and never
edited; this module only reads them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from wave_web import columns
from wave_web.errors import InvalidValue
from wave_web.extensions import db
from wave_web.models import AuditEntry
from wave_web.params import parse_id

PAGE_SIZE = 50
EXPORT_BATCH = 1000
CSV_HEADER = (
    "id",
    "created_at",
    "actor",
    "remote_addr",
    "action",
    "object_type",
    "object_id",
    "summary",
    "details",
)


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page was asked for; every field optional."""

    actor: str = ""
    action: str = ""
    object_type: str = ""
    object_id: str = ""
    since: dt.date | None = None
    until: dt.date | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> AuditFilter:
        """Parse the query string; InvalidValue (400) names a bad field."""
        text = {
            k: str(args.get(k, "")).strip()[:255]
            for k in ("actor", "action", "object_type", "object_id")
        }
        for key, value in text.items():
            columns.clean_text(value, key.replace("_", " "), field=key)
        since, until = _date(args, "since"), _date(args, "until")
        if since and until and since > until:
            raise InvalidValue("The start date is after the end date.", field="since")
        return cls(**text, since=since, until=until)

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        found = []
        if self.actor:
            found.append(AuditEntry.actor == self.actor)
        if self.action:
            # "user" finds user.create, user.role …; "user.role" only that action
            found.append(
                sa.or_(
                    AuditEntry.action == self.action,
                    AuditEntry.action.startswith(self.action + ".", autoescape=True),
                )
            )
        if self.object_type:
            found.append(AuditEntry.object_type == self.object_type)
        if self.object_id:
            found.append(AuditEntry.object_id == self.object_id)
        if self.since:
            start = dt.datetime.combine(self.since, dt.time(), dt.UTC)
            found.append(AuditEntry.created_at >= start)
        if self.until:
            end = dt.datetime.combine(
                self.until + dt.timedelta(days=1), dt.time(), dt.UTC
            )
            found.append(AuditEntry.created_at < end)
        return found

    def args(self) -> dict[str, str]:
        """The filter as query-string arguments (for links and the export)."""
        out = {
            "actor": self.actor,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }
        return {k: v for k, v in out.items() if v}


def _date(args: Mapping[str, str], key: str) -> dt.date | None:
    text = str(args.get(key, "")).strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidValue(
            f"“{columns.shorten(text)}” is not a date like 2026-11-25.", field=key
        ) from None


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_before: int | None  # the `before` argument of the next (older) page


def page(flt: AuditFilter, before: str | None = None) -> AuditPage:
    """Newest entries first, PAGE_SIZE at a time, older than entry `before`."""
    stmt = sa.select(AuditEntry).where(*flt.clauses())
    if before:
        before_id = parse_id(before)
        if before_id is None:
            raise InvalidValue("The page position is not valid.", field="before")
        stmt = stmt.where(AuditEntry.id < before_id)
    rows = db.session.scalars(
        stmt.order_by(AuditEntry.id.desc()).limit(PAGE_SIZE + 1)
    ).all()
    more = len(rows) > PAGE_SIZE
    rows = list(rows[:PAGE_SIZE])
    return AuditPage(rows, rows[-1].id if more else None)


def actions() -> list[str]:
    """The actions that occur in the log (for the filter's suggestions)."""
    stmt = sa.select(AuditEntry.action).distinct().order_by(AuditEntry.action)
    return list(db.session.scalars(stmt))


def export_csv(flt: AuditFilter) -> Iterator[str]:
    """The filtered log as CSV text chunks, newest first, in keyset batches."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    before = None
    while True:
        stmt = sa.select(AuditEntry).where(*flt.clauses())
        if before is not None:
            stmt = stmt.where(AuditEntry.id < before)
        batch = db.session.scalars(
            stmt.order_by(AuditEntry.id.desc()).limit(EXPORT_BATCH)
        ).all()
        for entry in batch:
            writer.writerow(
                [
                    entry.id,
                    columns.format_datetime(entry.created_at),
                    entry.actor or "",
                    entry.remote_addr or "",
                    entry.action,
                    entry.object_type,
                    entry.object_id,
                    _neutralised(entry.summary),
                    columns.format_json(entry.details) if entry.details else "",
                ]
            )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(batch) < EXPORT_BATCH:
            return
        before = batch[-1].id


def _neutralised(text: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas: prefix a quote."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

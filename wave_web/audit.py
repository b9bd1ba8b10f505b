"""Reading the audit log: filters, keyset pages (newest first) and a CSV export.

Entries are written by models.record() in the transaction of each change and never
edited; this module only reads them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from wave_web import columns
from wave_web import datatables
from wave_web.errors import InvalidValue
from wave_web.extensions import db
from wave_web.models import ApiKey
from wave_web.models import AuditEntry
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import Tag
from wave_web.models import User
from wave_web.params import parse_id

PAGE_SIZE = 50
MAX_FILTER_TEXT = 255  # characters of a filter field (actor and object id are shorter)
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


# ----------------------------------------------------------------------
# The catalogue of actions: every action the app records, with a label a person
# reads. tests/test_audit_catalogue.py fails when code records one missing here.
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """A kind of audit entry: `name` as stored, `label` as read ("Rows · imported")."""

    name: str
    group: str
    verb: str

    @property
    def label(self) -> str:
        return f"{GROUPS[self.group]} · {self.verb}"


GROUPS = {  # key (also a filter value: every action of the group) → title
    "access": "Sign-in and access",
    "user": "Users",
    "key": "API keys",
    "type": "Types",
    "experiment": "Experiments",
    "row": "Rows",
    "tag": "Tags",
}
ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("login", "access", "signed in"),
        Action("login.failed", "access", "sign-in failed"),
        Action("logout", "access", "signed out"),
        Action("access.refused", "access", "access refused"),
        Action("user.create", "user", "created"),
        Action("user.role", "user", "role changed"),
        Action("user.disable", "user", "disabled"),
        Action("user.enable", "user", "enabled"),
        Action("user.password", "user", "password changed"),
        Action("user.delete", "user", "deleted"),
        Action("key.create", "key", "created"),
        Action("key.revoke", "key", "revoked"),
        Action("type.create", "type", "created"),
        Action("type.update", "type", "edited"),
        Action("type.add_column", "type", "column added"),
        Action("type.rename_column", "type", "column renamed"),
        Action("type.describe_column", "type", "column described"),
        Action("type.set_nullable", "type", "column made required or optional"),
        Action("type.change_type", "type", "column type changed"),
        Action("type.change_schema", "type", "columns changed"),
        Action("type.add_index", "type", "index added"),
        Action("type.partition", "type", "table partitioned by experiment"),
        Action("type.drop_column", "type", "column dropped"),
        Action("type.delete", "type", "deleted"),
        Action("experiment.create", "experiment", "created"),
        Action("experiment.update", "experiment", "edited"),
        Action("experiment.delete", "experiment", "deleted"),
        Action("row.create", "row", "row added"),
        Action("row.update", "row", "row edited"),
        Action("row.delete", "row", "row deleted"),
        Action("rows.insert_batch", "row", "added through the API"),
        Action("rows.import", "row", "imported"),
        Action("rows.export", "row", "exported"),
        Action("rows.delete", "row", "selected rows deleted"),
        Action("rows.delete_matching", "row", "matching rows deleted"),
        Action("tag.create", "tag", "created"),
        Action("tag.update", "tag", "edited"),
        Action("tag.delete", "tag", "deleted"),
    )
}
OBJECT_TYPES = {  # object_type as stored → what a person calls it
    "experiment_type": "Type",
    "experiment": "Experiment",
    "row": "Row",
    "tag": "Tag",
    "user": "User",
    "api_key": "API key",
    "route": "Page",
}


def action_groups() -> list[tuple[str, str, list[Action]]]:
    """(group key, title, its actions) in catalogue order, for the chooser."""
    return [
        (key, title, [a for a in ACTIONS.values() if a.group == key])
        for key, title in GROUPS.items()
    ]


def action_label(name: str) -> str:
    """The readable label of an action; an action unknown to the catalogue as is."""
    found = ACTIONS.get(name)
    return found.label if found else name


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
            k: str(args.get(k, "")).strip()
            for k in ("actor", "action", "object_type", "object_id")
        }
        for key, value in text.items():
            columns.clean_text(value, key.replace("_", " "), field=key)
            if len(value) > MAX_FILTER_TEXT:  # longer than any stored value: refused
                raise InvalidValue(
                    f"The {key.replace('_', ' ')} has at most {MAX_FILTER_TEXT} "
                    f"characters; this one has {len(value):,}.",
                    field=key,
                )
        if text["action"] and text["action"] not in ACTIONS.keys() | GROUPS.keys():
            raise InvalidValue(
                f"“{columns.shorten(text['action'])}” is not an action of the log: "
                "choose one in the list “What”.",
                field="action",
            )
        if text["object_type"] and text["object_type"] not in OBJECT_TYPES:
            raise InvalidValue(
                f"“{columns.shorten(text['object_type'])}” is not a kind of object "
                "of the log: choose one in the list “Object type”.",
                field="object_type",
            )
        since, until = _date(args, "since"), _date(args, "until")
        if since and until and since > until:
            raise InvalidValue("The start date is after the end date.", field="since")
        return cls(**text, since=since, until=until)

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        found = []
        if self.actor:
            found.append(AuditEntry.actor == self.actor)
        if self.action in ACTIONS:
            found.append(AuditEntry.action == self.action)
        elif self.action:  # a group: "user" finds user.create, user.role …
            group = [a.name for a in ACTIONS.values() if a.group == self.action]
            found.append(AuditEntry.action.in_(group))
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


def actors() -> tuple[list[str], list[str]]:
    """Who can appear in the log: (account emails, API key actors), for the chooser.

    Read from the accounts and keys (small tables), not the log: a DISTINCT over the
    log would read all of it.
    """
    emails = db.session.scalars(sa.select(User.email).order_by(User.email))
    keys = db.session.execute(
        sa.select(ApiKey.prefix, ApiKey.label, ApiKey.role).order_by(ApiKey.prefix)
    )
    return list(emails), [key_actor(*k) for k in keys]


def key_actor(prefix: str, label: str, role: str) -> str:
    """The audit log's actor of a request signed with an API key."""
    return f"API key {prefix} “{label}” ({role})"


# ----------------------------------------------------------------------
# The objects of a page of entries, looked up with one query per kind
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectLink:
    """Where an entry's object is now: None as `endpoint` when it is gone."""

    text: str
    endpoint: str | None = None
    args: tuple[tuple[str, Any], ...] = ()

    @property
    def is_deleted(self) -> bool:
        return self.endpoint is None


DELETED = ObjectLink("(deleted)")


def linked_objects(
    entries: Iterable[AuditEntry],
) -> dict[tuple[str, str], ObjectLink]:
    """The objects of the entries that still exist, and DELETED for those gone.

    An object id that names nothing (a failed sign-in's email, a route) is left out:
    the page shows it as text. One query per kind of object; rows take one per type.
    """
    wanted: dict[str, set[str]] = {}
    for entry in entries:
        wanted.setdefault(entry.object_type, set()).add(entry.object_id)
    out: dict[tuple[str, str], ObjectLink] = {}
    for kind, ids in wanted.items():
        finder = _FINDERS.get(kind)
        if finder is not None:
            out.update(((kind, i), link) for i, link in finder(ids).items())
    return out


def _int_ids(ids: Iterable[str]) -> dict[int, str]:
    found = {}
    for text in ids:
        number = parse_id(text)
        if number is not None:
            found[number] = text
    return found


def _by_id(
    model: Any, ids: Iterable[str], link: Callable[[Any], ObjectLink]
) -> dict[str, ObjectLink]:
    numbers = _int_ids(ids)
    if not numbers:
        return {}
    found = db.session.scalars(sa.select(model).where(model.id.in_(list(numbers))))
    out = dict.fromkeys(numbers.values(), DELETED)
    for obj in found:
        out[numbers[obj.id]] = link(obj)
    return out


def _users(ids: Iterable[str]) -> dict[str, ObjectLink]:
    return _by_id(
        User,
        ids,
        lambda u: ObjectLink(u.email, "admin.edit_user", (("user_id", u.id),)),
    )


def _keys(ids: Iterable[str]) -> dict[str, ObjectLink]:
    return _by_id(
        ApiKey,
        ids,
        lambda k: ObjectLink(f"{k.prefix} “{k.label}”", "admin.keys", ()),
    )


def _types(ids: Iterable[str]) -> dict[str, ObjectLink]:
    return _by_id(
        ExperimentType,
        ids,
        lambda t: ObjectLink(t.name, "experiment_types.show", (("type_id", t.id),)),
    )


def _tags(ids: Iterable[str]) -> dict[str, ObjectLink]:
    return _by_id(
        Tag, ids, lambda t: ObjectLink(t.name, "tags.edit", (("tag_id", t.id),))
    )


def _experiments(ids: Iterable[str]) -> dict[str, ObjectLink]:
    parsed = {}
    for text in ids:
        try:
            parsed[uuid.UUID(text)] = text
        except ValueError:
            continue
    if not parsed:
        return {}
    stmt = sa.select(Experiment.uuid, Experiment.description).where(
        Experiment.uuid.in_(list(parsed))
    )
    out = dict.fromkeys(parsed.values(), DELETED)
    for key, description in db.session.execute(stmt):
        out[parsed[key]] = ObjectLink(
            columns.shorten(description),
            "experiments.show",
            (("experiment_uuid", str(key)),),
        )
    return out


def _rows(ids: Iterable[str]) -> dict[str, ObjectLink]:
    """Row references "type id:row id": one query for the types, one per type."""
    wanted: dict[int, dict[int, str]] = {}
    for text in ids:
        type_text, _, row_text = text.partition(":")
        type_id, row_id = parse_id(type_text), parse_id(row_text)
        if type_id is not None and row_id is not None:
            wanted.setdefault(type_id, {})[row_id] = text
    out = {text: DELETED for rows in wanted.values() for text in rows.values()}
    if not wanted:
        return out
    types = db.session.scalars(
        sa.select(ExperimentType).where(ExperimentType.id.in_(list(wanted)))
    )
    for xtype in types:
        rows = wanted[xtype.id]
        table = datatables.reflect(xtype)
        stmt = sa.select(table.c.id, table.c.experiment_uuid).where(
            table.c.id.in_(list(rows))
        )
        for row_id, experiment_uuid in db.session.execute(stmt):
            out[rows[row_id]] = ObjectLink(
                f"row {row_id} of {xtype.name}",
                "data.show_row",
                (("experiment_uuid", str(experiment_uuid)), ("row_id", row_id)),
            )
    return out


_FINDERS: dict[str, Callable[[Iterable[str]], dict[str, ObjectLink]]] = {
    "user": _users,
    "api_key": _keys,
    "experiment_type": _types,
    "experiment": _experiments,
    "tag": _tags,
    "row": _rows,
}


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

"""Experiments and tags: one domain function per operation, shared by UI and API."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from sqlalchemy.orm import selectinload

from wave_web import columns
from wave_web import datatables
from wave_web.errors import Conflict
from wave_web.errors import InvalidValue
from wave_web.errors import NameTaken
from wave_web.errors import NotFound
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import Tag
from wave_web.models import has_tag
from wave_web.models import lock_type
from wave_web.models import name_key
from wave_web.models import record
from wave_web.models import tag_usage  # noqa: F401  (re-exported for views)
from wave_web.models import utcnow

MAX_DESCRIPTION = 10_000


@dataclass(frozen=True)
class ExperimentFilter:
    """What the experiments list shows: search text, type, tag, page."""

    q: str = ""
    type_id: int | None = None
    tag: str = ""
    page: int = 1


# ----------------------------------------------------------------------
# Experiments
# ----------------------------------------------------------------------


def get_experiment(experiment_uuid: uuid.UUID | str) -> Experiment:
    """The experiment with this uuid, or NotFound (also for malformed uuids)."""
    try:
        key = (
            experiment_uuid
            if isinstance(experiment_uuid, uuid.UUID)
            else uuid.UUID(experiment_uuid)
        )
    except ValueError:
        raise NotFound("There is no experiment with that id.") from None
    experiment = db.session.get(Experiment, key)
    if experiment is None:
        raise NotFound(f"There is no experiment {key}.")
    return experiment


SHORT_ID_DIGITS = 8  # lists show the first 8 hex digits of an experiment's uuid


def short_id_prefix(text: str) -> str | None:
    """The hex digits of a short experiment id (8 to 31 of them), else None.

    Any case, dashes anywhere; a full uuid (32 digits) is not a prefix.
    """
    digits = text.replace("-", "").lower()
    if not SHORT_ID_DIGITS <= len(digits) < 32:
        return None
    if digits.strip("0123456789abcdef"):
        return None
    return digits


def experiments_with_prefix(prefix: str, limit: int = 20) -> list[Experiment]:
    """The experiments whose uuid starts with the hex digits `prefix`, by uuid.

    A range on the primary key (SQLite keeps uuids as 32 hex digits, PostgreSQL as
    16 bytes: both orders agree with the hex digits').
    """
    low = uuid.UUID(prefix.ljust(32, "0"))
    high = uuid.UUID(prefix.ljust(32, "f"))
    stmt = (
        sa.select(Experiment)
        .where(Experiment.uuid.between(low, high))
        .order_by(Experiment.uuid)
        .limit(limit)
        .options(selectinload(Experiment.experiment_type))
    )
    return list(db.session.scalars(stmt))


@dataclass(frozen=True)
class TypeRef:
    """What row operations need of a type, read without the ORM (hot paths).

    Duck-types ExperimentType for datatables (id, table_name, schema_version,
    created_at, columns, column()); it is not attached to the session, so a commit
    does not expire it.
    """

    id: int
    name: str
    table_name: str
    schema_definition: dict[str, Any]
    schema_version: int
    created_at: Any

    @functools.cached_property
    def columns(self) -> list[columns.ColumnDef]:
        return columns.normalise_schema(self.schema_definition)

    def column(self, name: str) -> columns.ColumnDef | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class ExperimentRef:
    uuid: uuid.UUID
    row_count: int
    experiment_type: TypeRef


_E = Experiment.__table__.c
_T = ExperimentType.__table__.c
# Built once: a statement is costlier to build than to run (the API's hot path).
_EXPERIMENT_REF = (
    sa.select(
        _E.uuid,
        _E.row_count,
        _T.id,
        _T.name,
        _T.table_name,
        _T.schema_definition,
        _T.schema_version,
        _T.created_at,
    )
    .join_from(
        Experiment.__table__, ExperimentType.__table__, _T.id == _E.experiment_type_id
    )
    .where(_E.uuid == sa.bindparam("experiment_uuid"))
)


def experiment_ref(experiment_uuid: uuid.UUID) -> ExperimentRef | None:
    """An experiment and its type in one Core query, or None."""
    found = (
        db.session.connection()
        .execute(_EXPERIMENT_REF, {"experiment_uuid": experiment_uuid})
        .first()
    )
    if found is None:
        return None
    return ExperimentRef(found[0], found[1], TypeRef(*found[2:]))


def list_experiments(f: ExperimentFilter, per_page: int = 25):
    """A page of experiments, newest first, filtered; a Flask-SQLAlchemy Pagination.

    Their types come in one extra query (lists show each experiment's type name).
    """
    columns.clean_text(f.q, "search text", "q")
    columns.clean_text(f.tag, "tag filter", "tag")
    stmt = (
        sa.select(Experiment)
        .options(selectinload(Experiment.experiment_type))
        .order_by(Experiment.created_at.desc(), Experiment.uuid)
    )
    if f.q:
        stmt = stmt.where(Experiment.description.icontains(f.q, autoescape=True))
    if f.type_id is not None:
        stmt = stmt.where(Experiment.experiment_type_id == f.type_id)
    if f.tag:
        tag = find_tag(f.tag)  # tag names ignore case; arrays hold the stored spelling
        stmt = stmt.where(has_tag(tag.name if tag else f.tag))
    return db.paginate(
        stmt, page=f.page, per_page=per_page, error_out=False, count=True
    )


def row_counts(experiments: Iterable[Experiment]) -> dict[uuid.UUID, int]:
    """Rows per experiment: the maintained row_count, no query."""
    return {e.uuid: e.row_count for e in experiments}


def parse_additional_data(text: str) -> dict[str, Any]:
    """`additional_data` from a form: empty → {}, else a JSON object."""
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(
            "Additional data is not valid JSON "
            f"(line {exc.lineno}, column {exc.colno}: "
            f'{exc.msg}). Example: {{"site": "Berlin", "session": 2}}.',
            field="additional_data",
        ) from None
    try:
        columns.check_json_depth(text, value)
    except ValueError as exc:
        raise InvalidValue(
            f"Additional data is too deeply nested: {exc}.", field="additional_data"
        ) from None
    if not isinstance(value, dict):
        raise InvalidValue(
            'Additional data must be a JSON object in braces, e.g. {"site": "Berlin"}.',
            field="additional_data",
        )
    return value


def _clean_description(description: str) -> str:
    description = columns.clean_text(description, "description", "description").strip()
    if not description:
        raise InvalidValue(
            "Describe the experiment, e.g. “Pilot, spring 2026, lab B”.",
            field="description",
        )
    if len(description) > MAX_DESCRIPTION:
        raise InvalidValue(
            f"Keep the description under {MAX_DESCRIPTION:,} characters.",
            field="description",
        )
    return description


def create_experiment(
    xtype: ExperimentType,
    description: str,
    tag_names: Iterable[str],
    additional_data: dict,
    commit: bool = True,
    repeats: bool = False,
) -> Experiment:
    """A new experiment of `xtype`; unknown tags are created (see resolve_tags).

    With `commit=False` it stays in the caller's transaction.
    """
    description = _clean_description(description)
    # FOR SHARE: waits for a delete_type in progress, which then wins.
    if not lock_type(xtype.id, shared=True):
        db.session.rollback()
        raise Conflict(_TYPE_GONE, field="experiment_type_id")
    experiment = Experiment(
        experiment_type_id=xtype.id,
        description=description,
        tags=resolve_tags(tag_names, repeats),
        additional_data=additional_data,
    )
    db.session.add(experiment)
    try:
        db.session.flush()
    except sa_exc.IntegrityError:  # the type went away without our lock (SQLite)
        db.session.rollback()
        raise Conflict(_TYPE_GONE, field="experiment_type_id") from None
    record(
        "experiment.create",
        "experiment",
        experiment.uuid,
        f"Created experiment “{columns.shorten(experiment.description)}”",
        after=_snapshot(experiment),
    )
    if commit:
        db.session.commit()
    return experiment


def update_experiment(
    experiment: Experiment,
    description: str,
    tag_names: Iterable[str],
    additional_data: dict,
    repeats: bool = False,
    touch: bool = False,
) -> None:
    """Change description, tags and additional data (the type never changes).

    With `touch`, updated_at moves even when nothing changes (the API's PUT, §8).
    """
    _lock_experiment(experiment)  # re-reads the row: set updated_at after it
    if touch:
        experiment.updated_at = utcnow()
    before = _snapshot(experiment)
    experiment.description = _clean_description(description)
    experiment.tags = resolve_tags(tag_names, repeats)
    experiment.additional_data = additional_data
    after = _snapshot(experiment)
    if before != after:
        record(
            "experiment.update",
            "experiment",
            experiment.uuid,
            f"Edited experiment “{columns.shorten(experiment.description)}”",
            before=before,
            after=after,
        )
    db.session.commit()


def delete_experiment(experiment: Experiment) -> int:
    """Delete an experiment and its rows in one transaction; returns rows deleted.

    The row lock waits for imports into it (they hold KEY SHARE until they commit), so
    no imported row can outlive its experiment.
    """
    _lock_experiment(experiment)
    rows = datatables.delete_experiment_rows(
        experiment.experiment_type, experiment.uuid
    )
    record(
        "experiment.delete",
        "experiment",
        experiment.uuid,
        f"Deleted experiment “{columns.shorten(experiment.description)}” "
        f"and {rows} rows",
        before=_snapshot(experiment),
        rows=rows,
    )
    db.session.delete(experiment)
    db.session.commit()
    return rows


def _lock_experiment(experiment: Experiment) -> None:
    """Re-read the experiment under a row lock: a tag rename may be rewriting it."""
    try:
        db.session.refresh(experiment, with_for_update=True)
    except sa_exc.InvalidRequestError:  # deleted meanwhile
        raise NotFound("The experiment was deleted just now.") from None


_TYPE_GONE = (
    "The experiment type was deleted just now; nothing was saved. Choose another type."
)


def _snapshot(e: Experiment) -> dict[str, Any]:
    return {
        "description": e.description,
        "tags": list(e.tags),
        "additional_data": e.additional_data,
        "experiment_type_id": e.experiment_type_id,
    }


# ----------------------------------------------------------------------
# Tags
# ----------------------------------------------------------------------


def split_tag_text(text: str) -> list[str]:
    """Names typed into a comma-separated field."""
    return [part for part in (p.strip() for p in text.split(",")) if part]


def find_tag(name: str) -> Tag | None:
    """The tag with this name, ignoring case (also beyond A–Z, on both databases)."""
    return db.session.scalars(
        sa.select(Tag).where(Tag.name_key == name_key(name))
    ).first()


def resolve_tags(names: Iterable[str], repeats: bool = False) -> list[str]:
    """Canonical tag names for `names`, creating unknown ones.

    A name given twice is kept once, unless `repeats` (the API keeps a list as sent).
    More than columns.MAX_TAGS is refused before any tag is created.
    """
    cleaned = [columns.clean_tag_name(raw) for raw in names]
    count = len(cleaned) if repeats else len({name_key(n) for n in cleaned})
    if count > columns.MAX_TAGS:
        raise InvalidValue(
            f"An experiment has at most {columns.MAX_TAGS} tags; this one has "
            f"{count}. Remove {count - columns.MAX_TAGS}.",
            field="tags",
        )
    result: list[str] = []
    for name in cleaned:
        tag = find_tag(name) or _add_tag(name)
        if repeats or tag.name_key not in {name_key(r) for r in result}:
            result.append(tag.name)
    return result


def get_tag(tag_id: int) -> Tag:
    tag = db.session.get(Tag, tag_id)
    if tag is None:
        raise NotFound(f"There is no tag with id {tag_id}.")
    return tag


def list_tags(page: int = 1, per_page: int = 50, q: str = ""):
    """A page of tags by name, plus usage counts for all tags."""
    columns.clean_text(q, "search text", "q")
    stmt = sa.select(Tag).order_by(sa.func.lower(Tag.name))
    if q:
        stmt = stmt.where(Tag.name.icontains(q, autoescape=True))
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False), tag_usage()


def all_tag_names() -> list[str]:
    """Every tag name (for pickers), by name."""
    return list(
        db.session.scalars(sa.select(Tag.name).order_by(sa.func.lower(Tag.name)))
    )


def _check_unique(name: str, exclude_id: int | None = None) -> None:
    existing = find_tag(name)
    if existing is not None and existing.id != exclude_id:
        raise NameTaken(
            f"A tag named “{existing.name}” already exists (names ignore case).",
            field="tags",
        )


def _flush_tag(name: str) -> None:
    """Flush a new or renamed tag; a concurrent request that took the name wins."""
    try:
        db.session.flush()
    except sa_exc.IntegrityError:
        db.session.rollback()
        raise NameTaken(
            f"A tag named “{columns.shorten(name)}” was just created by someone else.",
            field="tags",
        ) from None


def _add_tag(name: str, description: str | None = None) -> Tag:
    """Insert a checked tag name with its audit entry (the caller commits)."""
    tag = Tag(name=name, description=description)
    db.session.add(tag)
    _flush_tag(name)
    record(
        "tag.create",
        "tag",
        tag.id,
        f"Created tag “{name}”",
        after={"name": name, "description": description},
    )
    return tag


def create_tag(name: str, description: str = "") -> Tag:
    """A new tag; the name is trimmed and unique ignoring case."""
    name = columns.clean_tag_name(name)
    _check_unique(name)
    tag = _add_tag(name, _tag_description(description))
    db.session.commit()
    return tag


def _tag_description(text: str) -> str | None:
    return columns.clean_text(text, "description", "description").strip() or None


def experiments_with_tag(name: str, for_update: bool = False) -> list[Experiment]:
    """Experiments carrying the tag `name`; locked until commit when `for_update`.

    A rename or delete rewrites their tag arrays: an edit committed meanwhile must be
    read first, not overwritten.
    """
    stmt = sa.select(Experiment).where(has_tag(name)).order_by(Experiment.uuid)
    if for_update:
        stmt = stmt.with_for_update()
    return list(db.session.scalars(stmt))


def update_tag(tag: Tag, name: str, description: str) -> int:
    """Rename/describe a tag; returns how many experiments' tags a rename updated."""
    new_name = columns.clean_tag_name(name)
    new_description = _tag_description(description)
    _check_unique(new_name, exclude_id=tag.id)
    before = {"name": tag.name, "description": tag.description}
    changed = 0
    if new_name != tag.name:
        for experiment in experiments_with_tag(tag.name, for_update=True):
            experiment.tags = [
                new_name if t == tag.name else t for t in experiment.tags
            ]
            changed += 1
    tag.name = new_name
    tag.description = new_description
    _flush_tag(new_name)
    after = {"name": tag.name, "description": tag.description}
    if before != after:
        record(
            "tag.update",
            "tag",
            tag.id,
            f"Edited tag “{tag.name}”",
            before=before,
            after=after,
            experiments_updated=changed,
        )
    db.session.commit()
    return changed


def delete_tag(tag: Tag) -> int:
    """Delete a tag and remove it from every experiment; returns experiments changed."""
    experiments = experiments_with_tag(tag.name, for_update=True)
    for experiment in experiments:
        experiment.tags = [t for t in experiment.tags if t != tag.name]
    record(
        "tag.delete",
        "tag",
        tag.id,
        f"Deleted tag “{tag.name}”",
        before={"name": tag.name, "description": tag.description},
        experiments_updated=len(experiments),
    )
    db.session.delete(tag)
    db.session.commit()
    return len(experiments)


def format_additional_data(value: dict | None) -> str:
    """additional_data as indented JSON for editing ('' when empty)."""
    if not value:
        return ""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode("utf-8")

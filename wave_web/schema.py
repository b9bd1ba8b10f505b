"""Experiment types: create, change and delete; registry and table in one transaction.

One function per operation, shared by the web UI and the API. Each either commits the
registry row, the DDL and the audit entry together or leaves the database as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError

from wave_web import columns
from wave_web import datatables
from wave_web import partitioning
from wave_web.columns import ColumnDef
from wave_web.errors import Conflict
from wave_web.errors import InvalidName
from wave_web.errors import InvalidValue
from wave_web.errors import NameTaken
from wave_web.errors import NotFound
from wave_web.extensions import db
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import lock_type
from wave_web.models import name_key
from wave_web.models import record
from wave_web.models import utcnow
from wave_web.params import parse_id

MAX_TYPE_NAME = 100


@dataclass(frozen=True)
class Problem:
    """A problem with one field of the builder: which field, what is wrong, a fix."""

    field: str
    message: str
    suggestion: str | None = None


class SchemaProblems(InvalidValue):
    """Several builder fields are wrong at once."""

    status = 422

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(" ".join(p.message for p in problems))
        self.problems = list(problems)


class ConversionRefused(Conflict):
    """Some rows hold values that the requested change cannot keep."""

    def __init__(self, message: str, count: int, offenders: list[datatables.Offender]):
        super().__init__(message)
        self.count = count
        self.offenders = offenders


# ----------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------


def get_type(type_id: int) -> ExperimentType:
    """The type with this id, or NotFound."""
    xtype = db.session.get(ExperimentType, type_id)
    if xtype is None:
        raise NotFound(f"There is no experiment type with id {type_id}.")
    return xtype


def all_types() -> list[ExperimentType]:
    """Every type, by name (for pickers)."""
    return list(
        db.session.scalars(sa.select(ExperimentType).order_by(ExperimentType.name))
    )


def experiment_count(xtype: ExperimentType) -> int:
    """How many experiments are of this type."""
    return db.session.execute(
        sa.select(sa.func.count())
        .select_from(Experiment)
        .where(Experiment.experiment_type_id == xtype.id)
    ).scalar_one()


@dataclass(frozen=True)
class TypeOverview:
    """What the type page lists: the newest experiments, the totals, rows per shown."""

    experiments: list[Experiment]
    experiment_total: int
    total_rows: int
    counts: dict[uuid.UUID, int]


def type_overview(xtype: ExperimentType, limit: int = 100) -> TypeOverview:
    """The newest `limit` experiments of a type and its totals (never all of them)."""
    stmt = (
        sa.select(Experiment)
        .where(Experiment.experiment_type_id == xtype.id)
        .order_by(Experiment.created_at.desc(), Experiment.uuid)
        .limit(limit)
    )
    experiments = list(db.session.scalars(stmt))
    total, rows = type_stats([xtype])[xtype.id]
    counts = {e.uuid: e.row_count for e in experiments}
    return TypeOverview(experiments, total, rows, counts)


def type_stats(types: Sequence[ExperimentType]) -> dict[int, tuple[int, int]]:
    """(experiments, rows) per type id for the given types."""
    stmt = (
        sa.select(
            Experiment.experiment_type_id,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(Experiment.row_count), 0),
        )
        .where(Experiment.experiment_type_id.in_([t.id for t in types]))
        .group_by(Experiment.experiment_type_id)
    )
    found = {type_id: (n, int(rows)) for type_id, n, rows in db.session.execute(stmt)}
    return {t.id: found.get(t.id, (0, 0)) for t in types}


# ----------------------------------------------------------------------
# Checks (used live by the builder and again by create_type)
# ----------------------------------------------------------------------


def check_type_name(name: str, exclude_id: int | None = None) -> str:
    """A display name: trimmed, 1–100 characters, unique ignoring case."""
    name = " ".join(columns.clean_text(name, "name", "name").split())
    if not name:
        raise InvalidValue("Give the type a name, e.g. “Stroop task”.")
    if len(name) > MAX_TYPE_NAME:
        raise InvalidValue(
            f"The name is {len(name)} characters long; the limit is {MAX_TYPE_NAME}."
        )
    # name_key, not lower(): SQLite's lower() folds only A–Z
    stmt = sa.select(ExperimentType.id).where(ExperimentType.name_key == name_key(name))
    if exclude_id is not None:
        stmt = stmt.where(ExperimentType.id != exclude_id)
    if db.session.execute(stmt).first():
        raise NameTaken(
            f"An experiment type named “{columns.shorten(name)}” already exists."
        )
    return name


def taken_table_names() -> set[str]:
    """Table names used by the registry or present in the database."""
    conn = db.session.connection()
    registered = set(db.session.scalars(sa.select(ExperimentType.table_name)))
    return registered | datatables.existing_table_names(conn) | _relation_names(conn)


def _relation_names(conn: sa.Connection) -> set[str]:
    """Every relation (index, sequence, view …) and PostgreSQL type of the schema.

    CREATE TABLE fails on any of them, e.g. `stroop_id_seq` while `stroop` exists.
    """
    if conn.dialect.name == "sqlite":
        master = sa.table("sqlite_master", sa.column("name"))
        return set(conn.scalars(sa.select(master.c.name)))
    pg_namespace = sa.table(
        "pg_namespace", sa.column("oid"), sa.column("nspname"), schema="pg_catalog"
    )
    pg_class = sa.table(
        "pg_class", sa.column("relname"), sa.column("relnamespace"), schema="pg_catalog"
    )
    pg_type = sa.table(
        "pg_type", sa.column("typname"), sa.column("typnamespace"), schema="pg_catalog"
    )
    in_schema = pg_namespace.c.nspname == sa.func.current_schema()
    stmt = sa.union(
        sa.select(pg_class.c.relname)
        .join(pg_namespace, pg_namespace.c.oid == pg_class.c.relnamespace)
        .where(in_schema),
        sa.select(pg_type.c.typname)
        .join(pg_namespace, pg_namespace.c.oid == pg_type.c.typnamespace)
        .where(in_schema),
    )
    return set(conn.scalars(stmt))


def check_table_name(table_name: str, taken: set[str] | None = None) -> str:
    """A table name valid on both databases and not in use."""
    return columns.validate_name(
        table_name, "table", taken if taken is not None else taken_table_names()
    )


def check_columns(defs: Sequence[ColumnDef]) -> list[Problem]:
    """Every problem with a list of custom columns (names, duplicates, types)."""
    problems: list[Problem] = []
    seen: list[str] = []
    for i, col in enumerate(defs):
        try:
            columns.validate_name(col.name, "column", seen)
        except InvalidName as exc:
            problems.append(Problem(f"columns-{i}-name", exc.message, exc.suggestion))
        if col.type not in columns.COLUMN_TYPES:
            problems.append(
                Problem(f"columns-{i}-type", f"Choose a column type for “{col.name}”.")
            )
        try:
            _check_description(col.description, f"columns-{i}-description")
        except InvalidValue as exc:
            problems.append(Problem(exc.field or "", exc.message))
        seen.append(col.name)
    return problems


def _check_description(text: str, field: str) -> str:
    """A column description: no NUL, under 1000 characters."""
    columns.clean_text(text, "description", field)
    if len(text) > 1000:
        raise InvalidValue("Keep descriptions under 1000 characters.", field=field)
    return text


def _type_description(text: str) -> str | None:
    """A type's description as stored: trimmed, None when empty, no NUL."""
    return columns.clean_text(text, "description", "description").strip() or None


def check_new_type(
    name: str, table_name: str, defs: Sequence[ColumnDef], description: str = ""
) -> tuple[str, str, list[Problem]]:
    """Validate a builder submission; returns the cleaned names and all problems."""
    problems: list[Problem] = []
    try:
        name = check_type_name(name)
    except (InvalidValue, NameTaken) as exc:
        problems.append(Problem("name", exc.message))
    try:
        _type_description(description)
    except InvalidValue as exc:
        problems.append(Problem("description", exc.message))
    table_name = table_name.strip() or (columns.suggest_name(name, "table") or "")
    try:
        check_table_name(table_name)
    except InvalidName as exc:
        problems.append(Problem("table_name", exc.message, exc.suggestion))
    if len(defs) > columns.MAX_COLUMNS:  # refused whole: none of them is dropped
        problems.append(Problem("columns", too_many_columns(len(defs))))
    else:
        problems.extend(check_columns(defs))
    return name, table_name, problems


def too_many_columns(count: int) -> str:
    """Why a new type of `count` columns is refused (over columns.MAX_COLUMNS)."""
    return (
        f"A type has at most {columns.MAX_COLUMNS:,} columns; this one has "
        f"{count:,}. Remove {count - columns.MAX_COLUMNS:,}, or split the measures "
        "over two types."
    )


# ----------------------------------------------------------------------
# Create and delete
# ----------------------------------------------------------------------


def create_type(
    name: str,
    description: str,
    table_name: str,
    defs: Sequence[ColumnDef],
    commit: bool = True,
    stored: dict[str, Any] | None = None,
    partitioned: bool = False,
) -> ExperimentType:
    """Registry row + CREATE TABLE + indexes + audit entry, in one transaction.

    With `commit=False` the caller goes on in the same transaction (a type from a
    file: experiment and rows commit with it) and must roll back on any error.
    `stored` is the schema_definition to keep when it is not the normal form (the
    API keeps a column given as "float" as sent); it must describe `defs`.
    `partitioned` (PostgreSQL only, see partitioning.py): a very large type's table,
    partitioned by experiment; refused on SQLite with the other problems.
    """
    name, table_name, problems = check_new_type(name, table_name, defs, description)
    dialect = db.session.get_bind().dialect
    if partitioned and not partitioning.supported(dialect):
        refusal = partitioning.PartitioningUnsupported(dialect.name)
        problems.append(Problem("size", refusal.message))
    if problems:
        db.session.rollback()
        raise SchemaProblems(problems)
    xtype = ExperimentType(
        name=name,
        description=_type_description(description),
        table_name=table_name,
        schema_definition=columns.schema_to_json(defs) if stored is None else stored,
    )
    try:
        db.session.add(xtype)
        db.session.flush()  # the unique index serialises racing creators here
        datatables.create_table(
            db.session.connection(), table_name, defs, partitioned=partitioned
        )
        after = {
            "name": name,
            "table_name": table_name,
            "schema_definition": xtype.schema_definition,
        }
        if partitioned:
            after["partitioned"] = f"by experiment, {partitioning.MODULUS} partitions"
        record(
            "type.create",
            "experiment_type",
            xtype.id,
            f"Created type “{name}”",
            after=after,
        )
        if commit:
            db.session.commit()
        else:
            db.session.flush()
    except sa_exc.DBAPIError as exc:
        # SQLite reports an existing table as OperationalError, PostgreSQL as
        # ProgrammingError (42P07) or IntegrityError (23505 on pg_type).
        db.session.rollback()
        if _is_name_clash(exc):
            raise NameTaken(
                f"The name “{columns.shorten(name)}” or table “{table_name}” "
                "was just taken by someone else. Choose another name."
            ) from None
        raise
    except Exception:
        db.session.rollback()  # never leave a half-created type in the session
        raise
    return xtype


def _is_name_clash(exc: sa_exc.DBAPIError) -> bool:
    """Unique violation (registry or pg_type) or an existing table of that name."""
    code = getattr(exc.orig, "pgcode", None)
    if code in ("23505", "42P07"):  # unique_violation, duplicate_table
        return True
    text = str(exc.orig).lower()
    return "unique constraint" in text or "already exists" in text


def delete_type(xtype: ExperimentType, confirm: str) -> None:
    """Drop a type and its data table; refused while the type has experiments."""
    if confirm.strip() != xtype.name:
        raise InvalidValue(
            f"Type the name “{xtype.name}” exactly to confirm deleting it."
        )
    # Until commit no experiment of this type can be created (it locks the row too).
    if not lock_type(xtype.id):
        raise NotFound(f"The type “{xtype.name}” was deleted just now.")
    count = experiment_count(xtype)
    if count:
        raise Conflict(
            f"“{xtype.name}” still has {count} experiment{'s' if count != 1 else ''}; "
            "delete or move them first."
        )
    table = datatables.reflect(xtype)
    record(
        "type.delete",
        "experiment_type",
        xtype.id,
        f"Deleted type “{xtype.name}”",
        before={
            "name": xtype.name,
            "table_name": xtype.table_name,
            "schema_definition": xtype.schema_definition,
        },
    )
    name, table_name = xtype.name, xtype.table_name
    table.drop(db.session.connection())  # its indexes go with it
    db.session.delete(xtype)
    try:
        db.session.commit()
    except (sa_exc.IntegrityError, StaleDataError):
        db.session.rollback()
        raise Conflict(
            f"“{name}” was changed or got an experiment while it was being deleted. "
            "Nothing was deleted; reload the page and try again."
        ) from None
    finally:
        datatables.forget(table_name)


def update_type(
    xtype: ExperimentType, name: str, description: str, commit: bool = True
) -> None:
    """Change a type's display name and description (the table name never changes).

    With `commit=False` the change stays in the caller's transaction.
    """
    before = {"name": xtype.name, "description": xtype.description}
    xtype.name = check_type_name(name, exclude_id=xtype.id)
    xtype.description = _type_description(description)
    after = {"name": xtype.name, "description": xtype.description}
    if before != after:
        record(
            "type.update",
            "experiment_type",
            xtype.id,
            f"Edited type “{xtype.name}”",
            before=before,
            after=after,
        )
    if commit:
        _commit(xtype)
    else:
        db.session.flush()


# ----------------------------------------------------------------------
# Types over time: each change alters the table and the registry together.
# ----------------------------------------------------------------------


def _existing(xtype: ExperimentType, name: str) -> ColumnDef:
    col = xtype.column(name)
    if col is None:
        raise NotFound(
            f"The type “{xtype.name}” has no column “{columns.shorten(name)}”."
        )
    return col


def commit_type(xtype: ExperimentType) -> None:
    """Commit changes made with `commit=False` (refused if the type changed)."""
    _commit(xtype)


def _commit(xtype: ExperimentType) -> None:
    """Commit; a concurrent change of the same type (version check) is refused."""
    try:
        db.session.commit()
    except StaleDataError:
        db.session.rollback()
        raise Conflict(
            "Someone else changed this type at the same time. Nothing was saved; "
            "reload the page and try again."
        ) from None
    except sa_exc.IntegrityError:
        db.session.rollback()
        raise NameTaken("Another experiment type took that name just now.") from None
    finally:
        datatables.forget(xtype.table_name)


def _save_schema(
    xtype: ExperimentType,
    defs: list[ColumnDef],
    action: str,
    summary: str,
    **details: Any,
) -> None:
    before = xtype.schema_definition
    xtype.schema_definition = columns.schema_to_json(defs)
    record(
        action,
        "experiment_type",
        xtype.id,
        summary,
        before=before,
        after=xtype.schema_definition,
        **details,
    )
    _commit(xtype)


def add_column(xtype: ExperimentType, col: ColumnDef, fill_text: str = "") -> None:
    """Add a custom column; a required one on a table with rows needs a fill value."""
    defs = xtype.columns
    problems = check_columns([*defs, col])
    if problems:
        raise InvalidValue(problems[-1].message + _try(problems[-1]))
    fill = _parse_fill(col, fill_text)
    table = datatables.reflect(xtype)
    conn = db.session.connection()
    datatables.lock_against_writes(conn, table)  # no row may appear after the check
    if not col.nullable and fill is None and datatables.has_rows(xtype):
        raise InvalidValue(
            f"The table already has rows: give a value for “{col.name}” "
            "to fill them with, or make the column optional."
        )
    datatables.add_column(conn, table, col, fill)
    _save_schema(
        xtype,
        [*defs, col],
        "type.add_column",
        f"Added column “{col.name}” ({col.type})",
    )


def add_columns_for_import(xtype: ExperimentType, defs: Sequence[ColumnDef]) -> None:
    """Add optional columns in the caller's transaction (an import's); no commit.

    The import commits them with its rows, or its rollback takes them away; either
    way the caller must `datatables.forget` the table afterwards on failure.
    """
    problems = check_columns([*xtype.columns, *defs])
    if problems:
        raise InvalidValue(problems[0].message + _try(problems[0]))
    table = datatables.reflect(xtype)
    conn = db.session.connection()
    for col in defs:
        datatables.add_column(conn, table, replace(col, nullable=True))
    before = xtype.schema_definition
    xtype.schema_definition = columns.schema_to_json(
        [*xtype.columns, *(replace(c, nullable=True) for c in defs)]
    )
    record(
        "type.add_column",
        "experiment_type",
        xtype.id,
        f"Added {len(defs)} column{'s' if len(defs) != 1 else ''} from an import: "
        + columns.shorten(", ".join(c.name for c in defs)),
        before=before,
        after=xtype.schema_definition,
    )
    db.session.flush()  # bumps schema_version: reflect() sees the new columns


def _try(problem: Problem) -> str:
    return (
        f" Try “{problem.suggestion}”."
        if problem.suggestion and "Try" not in problem.message
        else ""
    )


def _parse_fill(col: ColumnDef, text: str) -> Any:
    try:
        return columns.parse_value(col.type, text)
    except ValueError as exc:
        raise InvalidValue(
            f"The fill value “{columns.shorten(text)}” for “{col.name}” "
            f"is not valid: {exc}."
        ) from None


def rename_column(xtype: ExperimentType, old: str, new: str) -> None:
    """Rename a custom column in the table and the registry."""
    _existing(xtype, old)
    if new == old:
        return
    others = [c.name for c in xtype.columns if c.name != old]
    columns.validate_name(new, "column", others)
    datatables.rename_column(
        db.session.connection(), datatables.reflect(xtype), old, new
    )
    defs = [replace(c, name=new) if c.name == old else c for c in xtype.columns]
    _save_schema(
        xtype, defs, "type.rename_column", f"Renamed column “{old}” to “{new}”"
    )


def set_nullable(xtype: ExperimentType, name: str, nullable: bool) -> None:
    """Make a column optional or required; required is refused if rows lack a value."""
    col = _existing(xtype, name)
    if col.nullable == nullable:
        return
    table = datatables.reflect(xtype)
    conn = db.session.connection()
    datatables.lock_against_writes(conn, table)  # rows written after the scan
    if not nullable:
        count, offenders = datatables.null_rows(conn, table, name)
        if count:
            raise ConversionRefused(
                f"“{name}” cannot become required: "
                f"{count} row{'s' if count != 1 else ''} have no value.",
                count,
                offenders,
            )
    datatables.set_nullable(conn, table, name, nullable)
    defs = [
        replace(c, nullable=nullable) if c.name == name else c for c in xtype.columns
    ]
    state = "optional" if nullable else "required"
    _save_schema(xtype, defs, "type.set_nullable", f"Made column “{name}” {state}")


def describe_column(xtype: ExperimentType, name: str, description: str) -> None:
    """Change a column's description (registry only)."""
    _existing(xtype, name)
    description = _check_description(description.strip(), "description")
    defs = [
        replace(c, description=description) if c.name == name else c
        for c in xtype.columns
    ]
    _save_schema(xtype, defs, "type.describe_column", f"Described column “{name}”")


def drop_column(xtype: ExperimentType, name: str, confirm: str) -> None:
    """Drop a custom column and its values; the user types its name to confirm."""
    _existing(xtype, name)
    if confirm.strip() != name:
        raise InvalidValue(
            f"Type the column name “{name}” exactly to confirm dropping it."
        )
    datatables.drop_column(db.session.connection(), datatables.reflect(xtype), name)
    defs = [c for c in xtype.columns if c.name != name]
    _save_schema(xtype, defs, "type.drop_column", f"Dropped column “{name}”")


def change_type(xtype: ExperimentType, name: str, new_type: str) -> None:
    """Change a column's type when every existing value converts; else list the rows."""
    col = _existing(xtype, name)
    new_type = columns.column_type(new_type).name
    if new_type == col.type:
        return
    table = datatables.reflect(xtype)
    conn = db.session.connection()
    datatables.lock_against_writes(conn, table)  # rows written after the scan
    count, offenders, values = datatables.conversion_problems(
        conn, table, col, new_type
    )
    if count:
        raise ConversionRefused(
            f"“{name}” cannot become {new_type}: "
            f"{count} value{'s' if count != 1 else ''} would not convert. "
            "Fix or clear them first.",
            count,
            offenders,
        )
    datatables.change_type(conn, table, col, new_type, values)
    defs = [replace(c, type=new_type) if c.name == name else c for c in xtype.columns]
    _save_schema(
        xtype,
        defs,
        "type.change_type",
        f"Changed column “{name}” from {col.type} to {new_type}",
    )


INDEXABLE_STANDARD = ("participant_id", "created_at", "updated_at")


def add_index(xtype: ExperimentType, name: str) -> str:
    """Index (experiment_uuid, column, id) so sorting and filtering on it stay fast.

    Recorded in the type's history; bumps schema_version so that every worker reflects
    the new index. Refused for JSON columns (no ordering) and when the index exists.
    Returns the index name.
    """
    if name not in INDEXABLE_STANDARD:
        col = _existing(xtype, name)
        if col.type == "JSON":
            raise InvalidValue(
                f"“{name}” is a JSON column: it has no order, so an index cannot "
                "speed up sorting or filtering on it."
            )
    conn = db.session.connection()
    if datatables.has_sort_index(conn, xtype.table_name, name):
        raise Conflict(f"“{name}” already has an index for sorting and filtering.")
    table = datatables.reflect(xtype)
    try:
        index = datatables.create_sort_index(conn, table, name, xtype.schema_version)
    except sa_exc.DBAPIError as exc:
        db.session.rollback()
        if _is_name_clash(exc):  # someone added the same index a moment ago
            raise Conflict(
                f"“{name}” got an index for sorting and filtering just now."
            ) from None
        raise
    record(
        "type.add_index",
        "experiment_type",
        xtype.id,
        f"Added an index on “{name}” for sorting and filtering",
        column=name,
        index=index,
    )
    xtype.updated_at = utcnow()  # an UPDATE, so the version_id_col schema_version grows
    _commit(xtype)
    return index


def find_type(raw_id: str) -> ExperimentType | None:
    """The type for an id typed into a form, or None (no error for junk)."""
    type_id = parse_id(raw_id)
    return db.session.get(ExperimentType, type_id) if type_id is not None else None


def apply_definition(
    xtype: ExperimentType,
    defs: Sequence[ColumnDef],
    stored: dict[str, Any] | None = None,
    commit: bool = True,
) -> bool:
    """Make the type's table match a whole new column list (the API's schema PUT).

    New columns go at the end. While the table holds rows only optional columns can
    be added; removing a column or changing its type or nullability needs an empty
    table (Conflict otherwise, naming the columns). `stored` is the form to keep in
    the registry (the API keeps a column given as "float" as it was sent). Returns
    False when nothing changed (then nothing is written).
    """
    problems = check_columns(defs)
    if problems:
        raise SchemaProblems(problems)
    old = {c.name: c for c in xtype.columns}
    new = {c.name: c for c in defs}
    added = [c for c in defs if c.name not in old]
    removed = [n for n in old if n not in new]
    changed = [
        n
        for n in old
        if n in new and (old[n].type, old[n].nullable) != (new[n].type, new[n].nullable)
    ]
    if not (added or removed or changed):
        return False
    conn = db.session.connection()
    table = datatables.reflect(xtype)
    datatables.lock_against_writes(conn, table)
    if datatables.has_rows(xtype):
        if removed or changed:
            raise Conflict(
                f"Cannot remove or change column(s) {removed + changed!r} because "
                "the data table already holds rows"
            )
        required = next((c for c in added if not c.nullable), None)
        if required is not None:
            raise Conflict(
                f"Cannot add NOT NULL column '{required.name}' because the data "
                "table already holds rows; add it as nullable"
            )
    current = list(xtype.columns)
    for name in removed:
        datatables.drop_column(conn, table, name)
        current = [c for c in current if c.name != name]
        table = datatables.reflect_now(conn, xtype.table_name, current)
    for name in changed:
        was, becomes = old[name], replace(new[name], description=old[name].description)
        if was.type != becomes.type:
            target = replace(was, nullable=becomes.nullable)
            datatables.change_type(conn, table, target, becomes.type, {})
        else:
            datatables.set_nullable(conn, table, name, becomes.nullable)
        current = [becomes if c.name == name else c for c in current]
        table = datatables.reflect_now(conn, xtype.table_name, current)
    for col in added:
        datatables.add_column(conn, table, col)
        current.append(col)
        table = datatables.reflect_now(conn, xtype.table_name, current)
    before = xtype.schema_definition
    if stored is None:
        xtype.schema_definition = columns.schema_to_json(current)
    else:
        xtype.schema_definition = {c.name: stored[c.name] for c in current}
    record(
        "type.change_schema",
        "experiment_type",
        xtype.id,
        f"Changed the columns of “{xtype.name}”: "
        + columns.shorten(
            "; ".join(
                part
                for part in (
                    "added " + ", ".join(c.name for c in added) if added else "",
                    "removed " + ", ".join(removed) if removed else "",
                    "changed " + ", ".join(changed) if changed else "",
                )
                if part
            ),
            200,
        ),
        before=before,
        after=xtype.schema_definition,
    )
    if commit:
        _commit(xtype)
    else:
        db.session.flush()
    datatables.forget(xtype.table_name)
    return True

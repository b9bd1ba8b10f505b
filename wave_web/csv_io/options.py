"""Import options from forms and job rows, and the mapping a preview proposes."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from wave_web import columns
from wave_web.columns import ColumnDef
from wave_web.csv_io import formats
from wave_web.csv_io.importing import MISSING_TOKENS
from wave_web.csv_io.importing import ImportOptions
from wave_web.csv_io.importing import Report
from wave_web.csv_io.importing import mapping_from_form
from wave_web.csv_io.inference import PARTICIPANT_ALIASES
from wave_web.csv_io.reading import FileRefused
from wave_web.csv_io.reading import records
from wave_web.csv_io.reading import sniff
from wave_web.errors import InvalidName
from wave_web.errors import InvalidValue
from wave_web.extensions import db
from wave_web.models import ImportMapping
from wave_web.models import utcnow

BY_NAME = "?"  # mapping form value: match the header text by name


ADD = "+"  # mapping form value: add the file column to the type as a new column
MAX_SKIPS = 1_000
MAX_LINE = 10**9


def _values(form: Mapping[str, str], key: str) -> list[str]:
    getlist = getattr(form, "getlist", None)
    if getlist is not None:
        return getlist(key)
    value = form.get(key)
    return [] if value is None else [value]


def _line(text: str, field: str) -> int:
    text = text.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_LINE:
        raise InvalidValue(
            f"“{columns.shorten(text)}” is not a line number (1 or more).", field=field
        )
    return int(text)


def _missing(form: Mapping[str, str]) -> frozenset[str]:
    """The chosen spellings (`missing_token`, repeatable), or all with `missing=1`."""
    if form.get("missing"):
        return frozenset(MISSING_TOKENS)
    chosen = frozenset(t for t in _values(form, "missing_token") if t)
    unknown = sorted(chosen - set(MISSING_TOKENS))
    if unknown:
        raise InvalidValue(
            f"“{columns.shorten(unknown[0])}” is not one of the offered missing-value "
            f"spellings ({', '.join(MISSING_TOKENS)}).",
            field="missing_token",
        )
    return chosen


def _formats(form: Mapping[str, str]) -> dict[str, str]:
    """`format-<column>` fields: a csv_io.formats key per target column."""
    found = {}
    for key, value in form.items():
        if not key.startswith("format-") or not value:
            continue
        if formats.lookup(value) is None:
            raise InvalidValue(
                f"“{columns.shorten(value)}” is not a known value format.", field=key
            )
        found[key[len("format-") :][:100]] = value
    return found


def _added(form: Mapping[str, str], position: int) -> ColumnDef:
    """The new column a file column becomes (`add_name-<p>`, `add_type-<p>`)."""
    name = (form.get(f"add_name-{position}") or "").strip()
    type_name = (form.get(f"add_type-{position}") or "").strip().upper()
    label = (form.get(f"add_label-{position}") or "")[:255]
    try:
        columns.validate_name(name)
    except InvalidName as exc:
        raise InvalidValue(
            f"New column “{columns.shorten(name)}”: {exc.message}",
            field=f"add_name-{position}",
        ) from None
    if type_name not in columns.COLUMN_TYPES:
        raise InvalidValue(
            f"Choose a type for the new column “{name}”.", field=f"add_type-{position}"
        )
    return ColumnDef(name, type_name, True, "", label)


def options_from_form(form: Mapping[str, str]) -> ImportOptions:
    """ImportOptions from the upload or mapping form; InvalidValue names the field.

    Mapping selects (`map-<position>`) hold a target column, "" to ignore the column,
    BY_NAME to match its header text, or ADD to add it to the type as a new column;
    with `ignore_unmatched` the BY_NAME ones become "".
    """
    mode = form.get("mode") or "insert"
    if mode not in ("insert", "update"):
        raise InvalidValue("Choose insert or update.", field="mode")
    ignore = bool(form.get("ignore_unmatched"))
    mapping: dict[int, str] = {}
    added: list[ColumnDef] = []
    for position, target in mapping_from_form(form.items()).items():
        if len(target) > 100:
            raise InvalidValue("A mapping target is too long.", field="mapping")
        if target == BY_NAME:
            if ignore:
                mapping[position] = ""
        elif target == ADD:
            col = _added(form, position)
            if any(c.name == col.name for c in added):
                raise InvalidValue(
                    f"Two file columns would become the new column “{col.name}”.",
                    field=f"add_name-{position}",
                )
            added.append(col)
            mapping[position] = col.name
        else:
            mapping[position] = target
    header = (form.get("header_line") or "").strip()
    skips = [_line(t, "skip_line") for t in _values(form, "skip_line") if t.strip()]
    if len(skips) > MAX_SKIPS:
        raise InvalidValue(
            f"At most {MAX_SKIPS:,} lines can be skipped.", field="skip_line"
        )
    return ImportOptions(
        mode=mode,
        mapping=mapping,
        missing=_missing(form),
        header_line=_line(header, "header_line") if header else None,
        skip_lines=frozenset(skips),
        formats=_formats(form),
        add_columns=tuple(added),
    )


def header_mapping_from_form(form: Mapping[str, str]) -> dict[str, str]:
    """A script's `mapping` field: JSON of file header → column ("" ignores it)."""
    raw = form.get("mapping")
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidValue(
            'The mapping must be a JSON object like {"subject": "participant_id"}.',
            field="mapping",
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) <= 100
        for k, v in data.items()
    ):
        raise InvalidValue(
            "The mapping must be a JSON object of header text → column name "
            '(or "" to ignore the column).',
            field="mapping",
        )
    return data


def options_to_json(options: ImportOptions) -> dict[str, Any]:
    return {
        "mode": options.mode,
        "mapping": sorted([p, t] for p, t in options.mapping.items()),
        "missing": sorted(options.missing),
        "header_line": options.header_line,
        "skip_lines": sorted(options.skip_lines),
        "formats": dict(options.formats),
        "add_columns": [
            {"name": c.name, "type": c.type, "label": c.label}
            for c in options.add_columns
        ],
    }


def options_from_json(data: Mapping[str, Any]) -> ImportOptions:
    return ImportOptions(
        mode=data.get("mode", "insert"),
        mapping={int(p): t for p, t in data.get("mapping", [])},
        missing=frozenset(data.get("missing", [])),
        header_line=data.get("header_line"),
        skip_lines=frozenset(data.get("skip_lines", [])),
        formats=dict(data.get("formats", {})),
        add_columns=tuple(
            ColumnDef(c["name"], c["type"], True, "", c.get("label", ""))
            for c in data.get("add_columns", [])
        ),
    )


# ----------------------------------------------------------------------
# Proposals before the check, and mappings remembered per type and header
# ----------------------------------------------------------------------


def read_header(path: str, options: ImportOptions) -> list[str] | None:
    """The file's header cells (at `options.header_line`), or None if unreadable."""
    try:
        fmt = sniff(path)
        for line, cells in records(path, fmt):
            if options.header_line is None or line >= options.header_line:
                return cells
    except FileRefused:
        return None
    return None


def header_key(header: list[str]) -> str:
    """A file header's identity: the same tool writes the same header."""
    return hashlib.sha256("\x1f".join(header).encode("utf-8")).hexdigest()


def remembered(xtype: Any, header: list[str]) -> ImportMapping | None:
    stmt = sa.select(ImportMapping).where(
        ImportMapping.experiment_type_id == xtype.id,
        ImportMapping.header_key == header_key(header),
    )
    return db.session.scalars(stmt).first()


def _by_label(xtype: Any) -> dict[str, str]:
    return {c.label: c.name for c in xtype.columns if c.label}


def propose(
    xtype: Any,
    path: str,
    options: ImportOptions,
    by_header: Mapping[str, str] | None = None,
    guess: bool = True,
) -> ImportOptions:
    """Options with a target for every file column the user did not map himself.

    In order: a script's `mapping` by header text, the mapping remembered for this
    type and header, the column's label, then (with `guess`, for previews a person
    confirms) a usual participant column name and a close name. Columns matched
    exactly, or up to case and punctuation, are left to the header plan.
    """
    header = read_header(path, options)
    if header is None:
        return options
    targets = {"participant_id", *(c.name for c in xtype.columns)}
    if options.mode == "update":
        targets.add("id")
    memory = remembered(xtype, header)
    known = dict(memory.mapping) if memory else {}
    labels = _by_label(xtype)
    mapping = dict(options.mapping)
    used = set(mapping.values())
    for position, text in enumerate(header):
        if position in mapping:
            continue
        loose = _loose(text)
        if text in targets or text.strip().lower() in targets or loose in targets:
            used.add(loose if loose in targets else text.strip().lower())
            continue
        target = None
        if by_header and text in by_header:
            target = by_header[text]
        elif text in known and (known[text] in targets or known[text] == ""):
            target = known[text]
        elif text in labels:
            target = labels[text]
        elif guess and loose in PARTICIPANT_ALIASES and "participant_id" not in used:
            target = "participant_id"
        elif guess and loose:
            close = difflib.get_close_matches(loose, sorted(targets - used), 1, 0.85)
            target = close[0] if close else None
        if target is not None and (target == "" or target not in used):
            mapping[position] = target
            used.add(target)
    extra: dict[str, Any] = {}
    if memory and not options.missing and not options.formats:
        extra = {
            "missing": frozenset(memory.options.get("missing", [])),
            "formats": dict(memory.options.get("formats", {})),
        }
    return replace(options, mapping=mapping, **extra)


def remember(xtype: Any, report: Report, options: ImportOptions) -> None:
    """Keep where each column of this header went (in the import's transaction)."""
    header = [c.text for c in report.header]
    if not header:
        return
    mapping = {c.text: c.target or "" for c in report.header if c.text.strip()}
    data = {"missing": sorted(options.missing), "formats": dict(options.formats)}
    memory = remembered(xtype, header)
    if memory is None:
        memory = ImportMapping(
            experiment_type_id=xtype.id,
            header_key=header_key(header),
            header=header[:1000],
            uses=0,
            mapping=mapping,
            options=data,
        )
        try:
            # Another import of this header may store it first (PostgreSQL: this
            # insert waits for its commit, then fails): then this one updates theirs
            # instead of failing the whole import.
            with db.session.begin_nested():
                db.session.add(memory)
        except sa_exc.IntegrityError:
            memory = remembered(xtype, header)
    memory.mapping, memory.options = mapping, data
    memory.uses = (memory.uses or 0) + 1
    memory.updated_at = utcnow()


def _loose(text: str) -> str:
    return columns.suggest_name(text) if text.strip() else ""


def proposed_targets(report: Report, xtype: Any, options: ImportOptions) -> dict:
    """The target each mapping select shows: the current one, or a proposal.

    An unmatched column whose name is a usual participant column (`subject_nr`,
    `participant`, …) is proposed for participant_id when no column has it yet; the
    user confirms it by checking again.
    """
    chosen = {c.position: c.target or "" for c in report.header}
    used = {t for t in chosen.values() if t}
    for cell in report.header:
        if cell.position in options.mapping or cell.target:
            continue
        chosen[cell.position] = BY_NAME  # unnamed columns: checked to be empty
        if not cell.text.strip():
            continue
        if "participant_id" not in used and _loose(cell.text) in PARTICIPANT_ALIASES:
            chosen[cell.position] = "participant_id"
            used.add("participant_id")
    return chosen


def mapping_choices(xtype: Any, mode: str) -> list[tuple[str, str]]:
    """(value, label) of every column a file column can go to."""
    choices = [("participant_id", "participant_id (STRING)")]
    if mode == "update":
        choices.insert(0, ("id", "id (row to update)"))
    choices += [(c.name, f"{c.name} ({c.type})") for c in xtype.columns]
    return choices

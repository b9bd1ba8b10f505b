"""A new experiment type from a researcher's file: upload, proposal, choices, create.

A draft is an uploaded file plus what the app proposes for it (csv_io.inference: the
header line, skipped rows, a name, type and nullability per column, the participant
column) and what the user chose instead. It lives in the upload folder:

    drafts/<uuid>.csv    the data (an .xlsx upload is converted to CSV once)
    drafts/<uuid>.xlsx   the original workbook (another sheet can be chosen)
    drafts/<uuid>.json   owner, file facts, state, proposal, choices, last check

Analysing and checking run in a background thread (a 1M-row file takes a while); the
page polls until the state is "ready". Creating runs the import pipeline's own
validator and writes the type, an experiment and every row in ONE transaction, so a
refused file leaves no type behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import asdict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import sqlalchemy.exc as sa_exc
from flask import Flask
from flask import current_app

from wave_web import catalog
from wave_web import columns
from wave_web import database
from wave_web import datatables
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.csv_io import formats
from wave_web.csv_io.importing import MISSING_TOKENS
from wave_web.csv_io.importing import ImportOptions
from wave_web.csv_io.importing import ImportRefused
from wave_web.csv_io.importing import Report
from wave_web.csv_io.importing import check_file
from wave_web.csv_io.importing import import_file
from wave_web.csv_io.options import PARTICIPANT_ALIASES
from wave_web.csv_io.reading import CsvFormat
from wave_web.csv_io.reading import FileRefused
from wave_web.csv_io.runner import runner
from wave_web.csv_io.uploads import display_name
from wave_web.csv_io.uploads import remove_file
from wave_web.csv_io.uploads import store_stream
from wave_web.errors import InvalidValue
from wave_web.errors import NotFound
from wave_web.errors import WaveError
from wave_web.extensions import db
from wave_web.models import record
from wave_web.models import utcnow
from wave_web.schema import SchemaProblems

log = logging.getLogger(__name__)

EXTENSIONS = (".csv", ".tsv", ".txt", ".xlsx")
STATES = ("analysing", "checking", "ready", "creating", "created", "failed")
BUSY = ("analysing", "checking", "creating")
STALE_SECONDS = 600  # a busy draft whose thread died long ago is shown as failed
SHOWN_COLUMNS = 50  # columns per page of the screen (pages keep it under 100 KB)
ALIASES = {a.replace("_", "") for a in PARTICIPANT_ALIASES}
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class DraftGone(NotFound):
    """The draft was discarded, created, or never existed."""


# ----------------------------------------------------------------------
# Storage
# ----------------------------------------------------------------------


def _folder() -> str:
    return os.path.join(current_app.config["WAVE_UPLOAD_DIR"], "drafts")


def _path(key: str, ext: str, folder: str | None = None) -> str:
    return os.path.join(folder or _folder(), uuid.UUID(key).hex + ext)


def _lock(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


@dataclass
class Draft:
    """The stored state of one draft (its JSON file)."""

    uuid: str
    owner: int | None
    file_name: str
    file_size: int
    sha256: str
    kind: str  # "csv" or "xlsx"
    sheet: str | None
    sheets: list[str]
    state: str
    message: str | None
    created_at: str
    updated_at: str
    analysis: dict[str, Any] | None = None
    choices: dict[str, Any] | None = None
    check: dict[str, Any] | None = None
    result: dict[str, Any] | None = None

    @property
    def is_busy(self) -> bool:
        return self.state in BUSY and not self.is_stale

    @property
    def is_stale(self) -> bool:
        if self.state not in BUSY:
            return False
        then = dt.datetime.fromisoformat(self.updated_at)
        return (utcnow() - then).total_seconds() > STALE_SECONDS

    @property
    def report(self) -> Report | None:
        return Report.from_json(self.check) if self.check else None

    @property
    def data_path(self) -> str:
        return _path(self.uuid, ".csv")


def _save(draft: Draft, folder: str | None = None) -> None:
    draft.updated_at = utcnow().isoformat()
    target = _path(draft.uuid, ".json", folder)
    part = target + ".part"
    with open(part, "w", encoding="utf-8") as f:
        json.dump(asdict(draft), f)
    os.replace(part, target)


def _read(key: str, folder: str | None = None) -> Draft:
    try:
        with open(_path(key, ".json", folder), encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        raise DraftGone(
            "This file upload is gone (created, discarded, or older than a day); "
            "upload the file again."
        ) from None
    return Draft(**data)


def get_draft(key: str, user: Any) -> Draft:
    """The draft, if it exists and belongs to `user` (admins see every draft)."""
    try:
        key = str(uuid.UUID(key))
    except ValueError:
        raise DraftGone("There is no such file upload.") from None
    draft = _read(key)
    if draft.owner != user.id and user.role != "admin":
        raise DraftGone("There is no such file upload.")  # someone else's: not shown
    return draft


def _remove_files(key: str, folder: str | None = None) -> None:
    for ext in (".csv", ".xlsx", ".json"):
        remove_file(_path(key, ext, folder))


def reap_drafts(hours: float | None = None) -> int:
    """Delete drafts not touched for `hours` (default: the abandon time of imports)."""
    folder = _folder()
    hours = hours or current_app.config["WAVE_IMPORT_ABANDON_HOURS"]
    limit = utcnow().timestamp() - hours * 3600
    count = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.is_file() and entry.stat().st_mtime < limit:
                remove_file(entry.path)
                count += entry.name.endswith(".json")
    return count


# ----------------------------------------------------------------------
# Upload
# ----------------------------------------------------------------------


def start_draft(upload: Any, user: Any, sheet: str | None = None) -> Draft:
    """Store an uploaded file (a werkzeug FileStorage) and start analysing it."""
    if upload is None or not (upload.filename or upload.content_length):
        raise InvalidValue("Choose a file to upload.", field="file")
    name = display_name(upload.filename)
    if not name.lower().endswith(EXTENSIONS):
        raise InvalidValue(
            f"“{name}” is not a CSV, TSV, TXT or XLSX file. Save it as CSV UTF-8 or "
            "as an Excel workbook (.xlsx) and upload it again.",
            field="file",
        )
    os.makedirs(_folder(), exist_ok=True)
    reap_drafts()
    key = str(uuid.uuid4())
    is_xlsx = name.lower().endswith(".xlsx")
    raw = _path(key, ".xlsx" if is_xlsx else ".csv")
    stored = store_stream(upload.stream, raw)
    size, sha = stored.size, stored.sha256
    try:
        if size == 0:
            raise InvalidValue(f"The file “{name}” is empty (0 bytes).", field="file")
        sheets: list[str] = []
        with open(raw, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"
        if is_xlsx or is_zip:
            from wave_web.csv_io import excel  # TODO(#10): top-level once it lands

        if is_xlsx or (is_zip and excel.is_xlsx(raw, name)):
            if not is_xlsx:  # an .xlsx saved under another name
                os.replace(raw, _path(key, ".xlsx"))
                is_xlsx = True
            info = excel.xlsx_to_csv(_path(key, ".xlsx"), _path(key, ".csv"), sheet)
            sheets, sheet = info.sheets, info.name
        now = utcnow().isoformat()
        draft = Draft(
            uuid=key,
            owner=user.id,
            file_name=name,
            file_size=size,
            sha256=sha,
            kind="xlsx" if is_xlsx else "csv",
            sheet=sheet if is_xlsx else None,
            sheets=sheets,
            state="analysing",
            message=None,
            created_at=now,
            updated_at=now,
        )
        _save(draft)
    except FileRefused as exc:
        _remove_files(key)
        raise InvalidValue(exc.message, field="file") from None
    except BaseException:
        _remove_files(key)
        raise
    _run(draft.uuid, _analyse)
    return draft


def change_sheet(draft: Draft, sheet: str) -> Draft:
    """Convert another sheet of the workbook and analyse it from scratch."""
    from wave_web.csv_io import excel  # TODO(#10): top-level once it lands

    _require_idle(draft)
    if draft.kind != "xlsx":
        raise InvalidValue("Only Excel workbooks have sheets.", field="sheet")
    if sheet not in draft.sheets:
        raise InvalidValue(
            f"The workbook has no sheet “{columns.shorten(sheet)}”.", field="sheet"
        )
    try:
        excel.xlsx_to_csv(_path(draft.uuid, ".xlsx"), draft.data_path, sheet)
    except FileRefused as exc:
        raise InvalidValue(exc.message, field="sheet") from None
    draft.sheet, draft.analysis, draft.choices, draft.check = sheet, None, None, None
    draft.state, draft.message = "analysing", None
    _save(draft)
    _run(draft.uuid, _analyse)
    return draft


# ----------------------------------------------------------------------
# Background work
# ----------------------------------------------------------------------


def _run(key: str, step: Callable[[Draft], None]) -> None:
    """Run `step` on the draft in the import pool, with an app context."""
    app = current_app._get_current_object()
    folder = _folder()
    runner(app).pool.submit(_work, app, folder, key, step)


def _work(app: Flask, folder: str, key: str, step: Callable[[Draft], None]) -> None:
    with app.app_context(), _lock(key):
        try:
            draft = _read(key, folder)
        except DraftGone:
            return
        try:
            step(draft)
        except (FileRefused, WaveError) as exc:
            db.session.rollback()
            draft.state, draft.message = "failed", exc.message
        except Exception:
            log.exception("file draft %s failed", key)
            db.session.rollback()
            draft.state = "failed"
            draft.message = "The file could not be analysed (an unexpected error)."
        finally:
            db.session.rollback()
        if os.path.exists(_path(key, ".json", folder)):
            _save(draft, folder)


def wait(draft: Draft, seconds: float) -> Draft:
    """The draft after its background step finished, or as it is after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        current = _read(draft.uuid)
        if not current.is_busy or time.monotonic() >= deadline:
            return current
        time.sleep(0.05)


def _analyse(draft: Draft) -> None:
    """Propose a layout and columns, default the choices from them, then check."""
    from wave_web.csv_io import inference  # TODO(#10): top-level once it lands

    choices = draft.choices or {}
    header_line = choices.get("header_line")
    detected = inference.detect_layout(draft.data_path, header_line=header_line)
    undone = set(choices.get("undone_skips", []))
    # Rows the user keeps as data are analysed as data, and still listed (to redo).
    kept = tuple(s for s in detected.skips if s.line not in undone)
    layout = dataclasses.replace(detected, skips=kept)
    analysis = inference.analyse(draft.data_path, layout)
    draft.analysis = analysis_to_json(analysis)
    found = {s["line"] for s in draft.analysis["skips"]}
    draft.analysis["skips"] += [
        asdict(s) for s in detected.skips if s.line in undone and s.line not in found
    ]
    draft.choices = default_choices(draft, analysis, choices)
    wanted = sum(1 for g in analysis.columns if not g.drop and not g.participant)
    if wanted > columns.MAX_COLUMNS:
        draft.analysis["notes"].append(
            f"The file has {wanted:,} columns with data; a type holds at most "
            f"{columns.MAX_COLUMNS}: the first {columns.MAX_COLUMNS} are kept."
        )
    _check(draft)


def _check(draft: Draft) -> None:
    """Check every row of the file against the chosen columns (the import's check)."""
    xtype, options = planned_type(draft)
    report = check_file(xtype, draft.data_path, options)
    draft.check = report.to_json()
    draft.state, draft.message = "ready", None


# ----------------------------------------------------------------------
# Proposal → choices
# ----------------------------------------------------------------------


def analysis_to_json(analysis: Any) -> dict[str, Any]:
    """The inference result as plain data (it is kept with the draft)."""
    layout = analysis.layout
    return {
        "format": {
            "encoding": layout.format.encoding,
            "delimiter": layout.format.delimiter,
            "label": layout.format.label,
        },
        "header_line": layout.header_line,
        "backslash_quotes": layout.backslash_quotes,
        "skips": [asdict(s) for s in layout.skips],
        "rows": analysis.rows,
        "participant": analysis.participant,
        "missing_found": dict(analysis.missing_found),
        "notes": list(analysis.notes),
        "columns": [_guess_json(g) for g in analysis.columns],
    }


def _guess_json(guess: Any) -> dict[str, Any]:
    data = asdict(guess)
    data["counter_examples"] = [asdict(c) for c in guess.counter_examples]
    return data


def _type_name_from_file(file_name: str) -> str:
    stem = os.path.splitext(file_name)[0]
    words = " ".join(stem.replace("_", " ").replace("-", " ").split())
    return (words or "Imported data")[:100]


def default_choices(
    draft: Draft, analysis: Any, before: Mapping[str, Any]
) -> dict[str, Any]:
    """What the screen starts with: the proposal, keeping choices that still apply."""
    found = [t for t in MISSING_TOKENS if analysis.missing_found.get(t)]
    zones = analysis.layout.zones
    cols = {}
    for guess in analysis.columns:
        fmt = guess.format or ""
        if not fmt and guess.type == "DATETIME" and guess.position in zones:
            # Qualtrics names the zone its times are in: read them in it (shown)
            zone = formats.zone_format(zones[guess.position])
            fmt = zone.key if zone else ""
        cols[str(guess.position)] = {
            "include": not guess.drop and not guess.participant,
            "name": guess.name,
            "type": guess.type,
            "nullable": guess.nullable,
            "format": fmt,
        }
    participant = _participant(analysis)
    if participant is not None and participant != analysis.participant:
        cols[str(participant)]["include"] = False
        if analysis.participant is not None:  # kept as an ordinary column
            old = cols[str(analysis.participant)]
            header = next(
                g.header for g in analysis.columns if g.position == analysis.participant
            )
            old["include"], old["nullable"] = True, True
            old["name"] = columns.suggest_name(header) or f"column_{participant + 1}"
    kept = [k for k, c in cols.items() if c["include"]]
    for key in kept[columns.MAX_COLUMNS :]:  # a type holds at most MAX_COLUMNS
        cols[key]["include"] = False
    type_name = before.get("type_name") or _type_name_from_file(draft.file_name)
    return {
        "header_line": before.get("header_line"),
        "undone_skips": list(before.get("undone_skips", [])),
        "missing": before.get("missing", found),
        "participant": participant,
        "constant_participant": before.get("constant_participant", ""),
        "type_name": type_name,
        "table_name": before.get("table_name", ""),
        "description": before.get("description", ""),
        "experiment_description": before.get("experiment_description")
        or f"{draft.file_name} ({utcnow():%Y-%m-%d})",
        "columns": cols,
    }


def _participant(analysis: Any) -> int | None:
    """The proposed participant column, or another id column that is never empty.

    Every row needs an id: Qualtrics' PROLIFIC_PID is empty on preview responses,
    its ResponseId never is.
    """
    by_position = {g.position: g for g in analysis.columns}
    chosen = by_position.get(analysis.participant)
    if chosen is None or not any(chosen.missing.values()):
        return analysis.participant
    for guess in analysis.columns:
        loose = columns.suggest_name(guess.header) or ""
        if loose.replace("_", "") in ALIASES and not any(guess.missing.values()):
            return guess.position
    return analysis.participant


def skipped_lines(draft: Draft) -> frozenset[int]:
    """Start lines of the records that are not data: detected skips not undone."""
    analysis, choices = draft.analysis or {}, draft.choices or {}
    undone = set(choices.get("undone_skips", []))
    return frozenset(
        s["line"]
        for s in analysis.get("skips", [])
        if s["kind"] != "preamble" and s["line"] not in undone
    )


def _descriptions(draft: Draft) -> dict[int, str]:
    return {
        g["position"]: g.get("description", "")
        for g in (draft.analysis or {}).get("columns", [])
    }


def planned_columns(draft: Draft) -> list[tuple[int, ColumnDef]]:
    """(file position, column) of every column the user keeps, in file order."""
    choices = draft.choices or {}
    headers = {g["position"]: g["header"] for g in draft.analysis["columns"]}
    descriptions = _descriptions(draft)
    planned = []
    for key, col in sorted(choices["columns"].items(), key=lambda kv: int(kv[0])):
        position = int(key)
        if not col["include"] or position == choices.get("participant"):
            continue
        planned.append(
            (
                position,
                ColumnDef(
                    col["name"],
                    col["type"],
                    bool(col["nullable"]),
                    descriptions.get(position, "")[:1000],
                    headers.get(position, "")[:255],
                ),
            )
        )
    return planned


def planned_type(draft: Draft) -> tuple[Any, ImportOptions]:
    """A stand-in type with the chosen columns, and the options that import the file."""
    choices = draft.choices
    planned = planned_columns(draft)
    mapping = {int(k): "" for k in choices["columns"]}
    mapping.update((position, col.name) for position, col in planned)
    if choices.get("participant") is not None:
        mapping[int(choices["participant"])] = "participant_id"
    formats_by_name = {
        col.name: choices["columns"][str(position)]["format"]
        for position, col in planned
        if choices["columns"][str(position)].get("format")
    }
    analysis = draft.analysis or {}
    header_line = analysis.get("header_line")
    fmt = analysis.get("format")
    options = ImportOptions(
        format=CsvFormat(fmt["encoding"], fmt["delimiter"]) if fmt else None,
        backslash_quotes=bool(analysis.get("backslash_quotes")),
        mapping=mapping,
        missing=frozenset(choices.get("missing", [])),
        header_line=header_line,
        skip_lines=skipped_lines(draft),
        formats=formats_by_name,
    )
    return SimpleNamespace(columns=[col for _, col in planned]), options


# ----------------------------------------------------------------------
# What the screen shows
# ----------------------------------------------------------------------

TYPE_CHOICES = columns.TYPE_NAMES


@dataclass(frozen=True)
class ColumnRow:
    """One file column on the screen: the proposal, the choice, what the check saw."""

    position: int
    header: str
    guess: dict[str, Any]
    choice: dict[str, Any]
    is_participant: bool
    missing: dict[str, int]  # spelling → cells read as empty (from the check)
    problems: int  # cells the check refused


@dataclass(frozen=True)
class Screen:
    columns: list[ColumnRow]
    start: int  # index of the first column shown
    total: int  # columns of the file
    hidden_columns: int  # columns on other pages (they keep their choices)
    preview_names: list[str]
    skips: list[dict[str, Any]]
    undone: set[int]
    report: Report | None
    proposed_table_name: str  # used when the table name is left empty ("" if none)


def column_pages(total: int) -> list[int]:
    """The first index of every page of columns."""
    return list(range(0, total, SHOWN_COLUMNS))


def screen(draft: Draft, start: int = 0) -> Screen:
    """The draft as the proposal screen shows it: one page of columns, bounded."""
    analysis, choices = draft.analysis or {}, draft.choices or {}
    report = draft.report
    guesses = analysis.get("columns", [])
    planned = dict(planned_columns(draft)) if choices else {}
    rows = []
    start = max(0, min(start, (len(guesses) - 1) // SHOWN_COLUMNS * SHOWN_COLUMNS))
    for guess in guesses[start : start + SHOWN_COLUMNS]:
        position = guess["position"]
        col = planned.get(position)
        counts = report.missing_counts.get(col.name, {}) if report and col else {}
        rows.append(
            ColumnRow(
                position=position,
                header=guess["header"],
                guess=guess,
                choice=choices.get("columns", {}).get(str(position), {}),
                is_participant=position == choices.get("participant"),
                missing={k: v for k, v in counts.items() if v},
                problems=report.per_column.get(col.name, 0) if report and col else 0,
            )
        )
    names = []
    if report is not None and report.preview:
        on_page = {planned[r.position].name for r in rows if r.position in planned}
        names = [n for n in report.preview[0] if n == "participant_id" or n in on_page]
    return Screen(
        columns=rows,
        start=start,
        total=len(guesses),
        hidden_columns=max(0, len(guesses) - len(rows)),
        preview_names=names,
        skips=analysis.get("skips", []),
        undone=set(choices.get("undone_skips", [])),
        report=report,
        proposed_table_name=columns.suggest_name(choices.get("type_name", ""), "table")
        or "",
    )


# ----------------------------------------------------------------------
# The user's changes
# ----------------------------------------------------------------------


def _require_idle(draft: Draft) -> None:
    if draft.is_busy:
        raise InvalidValue("The file is still being analysed; wait a moment.")
    if draft.state in ("created",):
        raise DraftGone("A type was already created from this file.")


def update_choices(draft: Draft, form: Mapping[str, str], check: bool = True) -> Draft:
    """Apply the screen's form; analyse again when the data rows changed, else check.

    With `check=False` (the create button, which checks as it imports) the choices
    are only saved, unless the header line or skipped rows changed: then the file is
    analysed again and InvalidValue says to look at the new proposal first.
    Raises InvalidValue naming the field for a value that is not allowed.
    """
    _require_idle(draft)
    if draft.analysis is None or draft.choices is None:
        raise InvalidValue("The file has not been analysed yet.")
    old = draft.choices
    new = parse_choices(draft, form)
    same_rows = new["header_line"] == old.get("header_line")
    same_rows = same_rows and new["undone_skips"] == old.get("undone_skips", [])
    draft.choices = new
    if not check and same_rows:
        _save(draft)
        return draft
    draft.state = "checking" if same_rows else "analysing"
    _save(draft)
    _run(draft.uuid, _check if same_rows else _analyse)
    if not check:
        raise InvalidValue(
            "The header line or the skipped rows changed, so the file is analysed "
            "again: look at the new proposal, then create the type."
        )
    return draft


def _line_field(text: str, field: str) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 10**9:
        raise InvalidValue(f"“{columns.shorten(text)}” is not a line number.", field)
    return int(text)


def parse_choices(draft: Draft, form: Mapping[str, str]) -> dict[str, Any]:
    """The choices a submitted screen holds, validated field by field."""
    old = draft.choices
    getlist = getattr(form, "getlist", lambda k: [form[k]] if k in form else [])
    missing = [t for t in getlist("missing_token") if t]
    unknown = [t for t in missing if t not in MISSING_TOKENS]
    if unknown:
        raise InvalidValue(
            f"“{columns.shorten(unknown[0])}” is not an offered missing-value "
            "spelling.",
            field="missing_token",
        )
    skips = {s["line"] for s in draft.analysis.get("skips", [])}
    undone = sorted(
        line
        for text in getlist("undo_skip")
        if (line := _line_field(text, "undo_skip")) in skips
    )
    participant = (form.get("participant") or "").strip()
    positions = {int(k) for k in old["columns"]}
    if participant and (not participant.isdigit() or int(participant) not in positions):
        raise InvalidValue(
            "Choose the participant column from the list.", "participant"
        )
    cols = {}
    for key, col in old["columns"].items():
        if f"name-{key}" not in form:  # a column not shown on the screen keeps its
            cols[key] = col  # proposal
            continue
        type_name = (form.get(f"type-{key}") or col["type"]).upper()
        if type_name not in columns.COLUMN_TYPES:
            raise InvalidValue(
                f"Choose a type for column {int(key) + 1}.", f"type-{key}"
            )
        fmt = form.get(f"format-{key}") or ""
        found = formats.lookup(fmt) if fmt else None
        if found is None or found.type != type_name:
            fmt = ""  # unknown, or a format of another type: the type changed
        was_participant = key == str(old.get("participant"))
        cols[key] = {
            # a column that stops being the participant's is kept (its box was off)
            "include": bool(form.get(f"include-{key}"))
            or (was_participant and participant != key),
            "name": (form.get(f"name-{key}") or "").strip()[:200],
            "type": type_name,
            "nullable": bool(form.get(f"nullable-{key}")),
            "format": fmt,
        }
    text = {
        k: (form.get(k) or "")[:2000]
        for k in ("type_name", "table_name", "description", "experiment_description")
    }
    header_line = _line_field(form.get("header_line", ""), "header_line")
    if (
        header_line == draft.analysis.get("header_line")
        and old.get("header_line") is None
    ):
        header_line = None  # the detected line, as shown: still detected
    return {
        "header_line": header_line,
        "undone_skips": undone,
        "missing": [t for t in MISSING_TOKENS if t in missing],
        "participant": int(participant) if participant else None,
        "constant_participant": "",
        **{k: v.strip() if k != "description" else v for k, v in text.items()},
        "columns": cols,
    }


def discard(draft: Draft) -> None:
    """Delete the draft and its files (refused while a type is being created)."""
    if draft.state == "creating" and not draft.is_stale:
        raise InvalidValue("The type is being created right now.")
    _remove_files(draft.uuid)


# ----------------------------------------------------------------------
# Create: type + experiment + rows in one transaction
# ----------------------------------------------------------------------


def problems_before_create(draft: Draft) -> list[schema.Problem]:
    """What stops the create button: names, types, the participant column."""
    choices = draft.choices
    defs = [col for _, col in planned_columns(draft)]
    _, _, problems = schema.check_new_type(
        choices["type_name"], choices["table_name"], defs, choices["description"]
    )
    if len(defs) > columns.MAX_COLUMNS:
        problems.append(
            schema.Problem(
                "columns",
                f"A type holds at most {columns.MAX_COLUMNS} columns; this one would "
                f"have {len(defs):,}.",
            )
        )
    by_position = {i: p for i, (p, _) in enumerate(planned_columns(draft))}
    fixed = []
    for problem in problems:
        # check_columns names fields columns-<index>; the screen has name-<position>
        head, _, rest = problem.field.partition("-")
        if problem.field == "columns":  # too many: said above the columns
            problem = schema.Problem("form", problem.message + " Untick the others.")
        elif head == "columns" and rest.split("-")[0].isdigit():
            index, _, what = rest.partition("-")
            problem = schema.Problem(
                f"{what}-{by_position[int(index)]}", problem.message, problem.suggestion
            )
        fixed.append(problem)
    if choices.get("participant") is None:
        fixed.append(
            schema.Problem(
                "participant",
                "Choose the column that holds the participant id: every row needs one.",
            )
        )
    return fixed


def create(draft: Draft, user: Any) -> Draft:
    """Start creating the type, its first experiment and the rows (background)."""
    _require_idle(draft)
    problems = problems_before_create(draft)
    if problems:
        raise SchemaProblems(problems)
    draft.state, draft.message = "creating", None
    _save(draft)
    _run(draft.uuid, _create)
    return draft


def _create(draft: Draft) -> None:
    with runner().exclusive_write(), database.writing():
        try:
            result = _create_in_transaction(draft)
        except ImportRefused as exc:
            db.session.rollback()
            draft.check = exc.report.to_json()
            draft.state = "ready"
            draft.message = "Nothing was created: " + exc.report.summary()
            return
        except WaveError as exc:  # a name taken meanwhile, the type's rules
            db.session.rollback()
            draft.state = "ready"
            draft.message = "Nothing was created: " + exc.message
            return
        except sa_exc.OperationalError:  # SQLite busy past its timeout
            db.session.rollback()
            draft.state = "ready"
            draft.message = (
                "Nothing was created: the database was busy with other writes. "
                "Try again in a moment."
            )
            return
    draft.result, draft.state = result, "created"
    draft.message = created_message(result)
    remove_file(draft.data_path)
    remove_file(_path(draft.uuid, ".xlsx"))


def created_message(result: Mapping[str, Any]) -> str:
    """What the researcher reads after the create: type, rows, experiment."""
    rows = result["rows"]
    experiment = " ".join(result.get("experiment_description", "").split())
    if len(experiment) > 80:
        experiment = experiment[:79].rstrip() + "…"
    return (
        f"Created the type “{result.get('type_name', '')}” with {rows:,} "
        f"row{'s' if rows != 1 else ''} in the experiment “{experiment}”."
    )


def _create_in_transaction(draft: Draft) -> dict[str, Any]:
    choices = draft.choices
    defs = [col for _, col in planned_columns(draft)]
    _, options = planned_type(draft)
    xtype = schema.create_type(
        choices["type_name"],
        choices["description"],
        choices["table_name"],
        defs,
        commit=False,
    )
    try:
        experiment = catalog.create_experiment(
            xtype, choices["experiment_description"], [], {}, commit=False
        )
        report = import_file(xtype, experiment.uuid, draft.data_path, options)
        record(
            "rows.import",
            "experiment",
            experiment.uuid,
            f"Imported {report.written:,} rows from "
            f"“{columns.shorten(draft.file_name)}” (new type from the file)",
            file_name=draft.file_name,
            file_size=draft.file_size,
            sha256=draft.sha256,
            rows=report.written,
            mode="insert",
            table=xtype.table_name,
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        datatables.forget(xtype.table_name)
        raise
    return {
        "type_id": xtype.id,
        "type_name": xtype.name,
        "experiment_uuid": str(experiment.uuid),
        "experiment_description": experiment.description,
        "rows": report.written,
    }

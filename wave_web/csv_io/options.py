"""Import options from forms and job rows, and the mapping a preview proposes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from wave_web import columns
from wave_web.csv_io.importing import MISSING_TOKENS
from wave_web.csv_io.importing import ImportOptions
from wave_web.csv_io.importing import Report
from wave_web.csv_io.importing import mapping_from_form
from wave_web.errors import InvalidValue

log = logging.getLogger(__name__)

BY_NAME = "?"  # mapping form value: match the header text by name
PARTICIPANT_ALIASES = (
    "participant",
    "participant_nr",
    "participant_number",
    "participant_private_id",
    "participant_public_id",
    "subject",
    "subject_id",
    "subject_nr",
    "subject_number",
    "subj",
    "sub",
    "vp",
    "vp_nr",
    "prolific_pid",
    "responseid",
    "worker_id",
    "workerid",
)


def options_from_form(form: Mapping[str, str]) -> ImportOptions:
    """ImportOptions from the upload or mapping form; InvalidValue names the field.

    Mapping selects (`map-<position>`) hold a target column, "" to ignore the column,
    or BY_NAME to match its header text; with `ignore_unmatched` the last become "".
    """
    mode = form.get("mode") or "insert"
    if mode not in ("insert", "update"):
        raise InvalidValue("Choose insert or update.", field="mode")
    ignore = bool(form.get("ignore_unmatched"))
    mapping = {}
    for position, target in mapping_from_form(form.items()).items():
        if len(target) > 100:
            raise InvalidValue("A mapping target is too long.", field="mapping")
        if target == BY_NAME:
            if ignore:
                mapping[position] = ""
        else:
            mapping[position] = target
    missing = frozenset(MISSING_TOKENS) if form.get("missing") else frozenset()
    return ImportOptions(mode=mode, mapping=mapping, missing=missing)


def options_to_json(options: ImportOptions) -> dict[str, Any]:
    return {
        "mode": options.mode,
        "mapping": sorted([p, t] for p, t in options.mapping.items()),
        "missing": sorted(options.missing),
    }


def options_from_json(data: Mapping[str, Any]) -> ImportOptions:
    return ImportOptions(
        mode=data.get("mode", "insert"),
        mapping={int(p): t for p, t in data.get("mapping", [])},
        missing=frozenset(data.get("missing", [])),
    )


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

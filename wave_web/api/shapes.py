"""Objects as the API returns them (api-v1.md §4)."""

from __future__ import annotations

from typing import Any

from wave_web.jsonvalues import utc_iso
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import Tag


def tag(t: Tag) -> dict[str, Any]:
    return {
        "name": t.name,
        "description": t.description,
        "id": t.id,
        "created_at": utc_iso(t.created_at),
        "updated_at": utc_iso(t.updated_at),
    }


def schema_definition(stored: dict[str, Any] | None) -> dict[str, Any]:
    """A column sent as a string as it was sent; an object as type and nullable."""
    out: dict[str, Any] = {}
    for name, spec in (stored or {}).items():
        if isinstance(spec, str):
            out[name] = spec
        else:
            out[name] = {
                "type": str(spec.get("type", "")).upper(),
                "nullable": bool(spec.get("nullable", True)),
            }
    return out


def experiment_type(x: ExperimentType) -> dict[str, Any]:
    return {
        "name": x.name,
        "description": x.description,
        "table_name": x.table_name,
        "schema_definition": schema_definition(x.schema_definition),
        "id": x.id,
        "created_at": utc_iso(x.created_at),
        "updated_at": utc_iso(x.updated_at),
    }


def experiment(e: Experiment) -> dict[str, Any]:
    return {
        "description": e.description,
        "tags": list(e.tags or []),
        "additional_data": e.additional_data or {},
        "uuid": str(e.uuid),
        "experiment_type_id": e.experiment_type_id,
        "created_at": utc_iso(e.created_at),
        "updated_at": utc_iso(e.updated_at),
        "experiment_type": experiment_type(e.experiment_type),
    }


# The experiment resource's own columns (§5: what wave-backend describes)
EXPERIMENT_COLUMNS = (
    ("uuid", "UUID", False),
    ("experiment_type_id", "INTEGER", False),
    ("description", "TEXT", False),
    ("tags", "VARCHAR[]", True),
    ("additional_data", "JSON", True),
    ("created_at", "TIMESTAMP WITH TIME ZONE", True),
    ("updated_at", "TIMESTAMP WITH TIME ZONE", True),
)


def column_info(name: str, sql_type: str, nullable: bool) -> dict[str, Any]:
    return {
        "column_name": name,
        "column_type": sql_type,
        "is_nullable": nullable,
        "default_value": None,
    }


def experiment_columns(experiment_uuid: str | None, type_name: str) -> dict[str, Any]:
    return {
        "experiment_uuid": experiment_uuid,
        "experiment_type": type_name,
        "columns": [column_info(*c) for c in EXPERIMENT_COLUMNS],
    }


# Data table columns by logical type (§9.4), the same on both databases
SQL_TYPES = {
    "INTEGER": "INTEGER",
    "FLOAT": "DOUBLE PRECISION",
    "STRING": "VARCHAR(255)",
    "TEXT": "TEXT",
    "BOOLEAN": "BOOLEAN",
    "DATETIME": "TIMESTAMP",
    "JSON": "JSON",
}
STANDARD_DATA_COLUMNS = (
    ("id", "INTEGER", False),
    ("experiment_uuid", "UUID", False),
    ("participant_id", "VARCHAR(100)", False),
    ("created_at", "TIMESTAMP", False),
    ("updated_at", "TIMESTAMP", False),
)


def data_columns(xtype: ExperimentType) -> list[dict[str, Any]]:
    found = [column_info(*c) for c in STANDARD_DATA_COLUMNS]
    found += [column_info(c.name, SQL_TYPES[c.type], c.nullable) for c in xtype.columns]
    return found

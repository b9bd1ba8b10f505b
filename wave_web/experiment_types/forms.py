"""Type builder state, read from a posted form (columns-N-name, columns-N-type …)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field

from werkzeug.datastructures import MultiDict

from wave_web import columns
from wave_web.columns import ColumnDef

MAX_BUILDER_COLUMNS = columns.MAX_COLUMNS
_FIELD = re.compile(r"columns-(\d{1,6})-(name|type|nullable|description)")


@dataclass
class BuilderState:
    """What the researcher has typed so far; columns keep their order."""

    name: str = ""
    description: str = ""
    table_name: str = ""
    columns: list[ColumnDef] = field(default_factory=lambda: [ColumnDef("", "FLOAT")])
    focus: int | None = None
    partitioned: bool = False  # "Expected size: very large" (PostgreSQL only)

    @classmethod
    def from_form(cls, form: MultiDict) -> BuilderState:
        rows: dict[int, dict[str, str]] = {}
        for key in form:
            match = _FIELD.fullmatch(key)
            if match:
                rows.setdefault(int(match.group(1)), {})[match.group(2)] = form.get(
                    key, ""
                )
        defs = [
            ColumnDef(
                name=row.get("name", "").strip(),
                type=row.get("type", "").upper(),
                nullable="nullable" in row,
                description=row.get("description", "").strip(),
            )
            for _, row in sorted(rows.items())
        ]  # all of them: over MAX_BUILDER_COLUMNS the type is refused, not cut
        return cls(
            name=form.get("name", ""),
            description=form.get("description", ""),
            table_name=form.get("table_name", "").strip(),
            columns=defs,
            partitioned=form.get("size") == "partitioned",
        )

    def apply(self, action: str) -> None:
        """Add, remove or move a column row (the builder's buttons)."""
        if action == "add" and len(self.columns) < MAX_BUILDER_COLUMNS:
            self.columns.append(ColumnDef("", "FLOAT"))
            self.focus = len(self.columns) - 1
        kind, _, index = action.partition("-")
        if not (index.isascii() and index.isdigit()) or int(index) >= len(self.columns):
            return
        i = int(index)
        if kind == "remove":
            del self.columns[i]
        elif kind == "up" and i > 0:
            self.columns[i - 1], self.columns[i] = self.columns[i], self.columns[i - 1]
            self.focus = i - 1
        elif kind == "down" and i < len(self.columns) - 1:
            self.columns[i + 1], self.columns[i] = self.columns[i], self.columns[i + 1]
            self.focus = i + 1

    @property
    def filled_columns(self) -> list[ColumnDef]:
        """Columns with a name: an untouched empty row is not an error."""
        return [c for c in self.columns if c.name or c.description]

    @property
    def proposed_table_name(self) -> str:
        return columns.suggest_name(self.name, "table") or ""

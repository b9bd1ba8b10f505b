"""Ready-to-paste pandas and R code that loads an exported CSV with its column types.

The code follows what csv_io.exporting writes: `true`/`false`, ISO 8601 times in
UTC ending in Z, shortest round-trip floats, compact JSON, an empty cell for no value,
an optional BOM, and only the columns of the download (hidden ones left out, id and
the timestamps as chosen). Text stays text, so a participant "007" keeps its zeros.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wave_web import queries
from wave_web.csv_io import exporting
from wave_web.queries import GridColumn
from wave_web.queries import RowQuery

PANDAS_DTYPES = {
    "INTEGER": "Int64",  # nullable integers: an empty cell is <NA>, not a float NaN
    "FLOAT": "float64",
    "BOOLEAN": "boolean",
    "STRING": "string",
    "TEXT": "string",
    "UUID": "string",
}
R_COLUMN_TYPES = {
    "INTEGER": "readr::col_integer()",
    "FLOAT": "readr::col_double()",
    "BOOLEAN": "readr::col_logical()",
    "DATETIME": "readr::col_datetime()",
    "STRING": "readr::col_character()",
    "TEXT": "readr::col_character()",
    "UUID": "readr::col_character()",
    "JSON": "readr::col_character()",
}
# Reserved in R (?Reserved); the lower-case ones can be column names here.
R_RESERVED = frozenset(
    {
        "if", "else", "repeat", "while", "function", "for", "next", "break", "in",
        "TRUE", "FALSE", "NULL", "Inf", "NaN", "NA",
        "NA_integer_", "NA_real_", "NA_character_", "NA_complex_",
    }
)  # fmt: skip
_R_SYNTACTIC = re.compile(r"(?:[A-Za-z]|\.(?![0-9]))[A-Za-z0-9._]*")
NEUTRALISED_NOTE = (
    "This file was downloaded with “Neutralise formulas” on: text cells that start "
    "with = + - @, a tab or CR carry a leading apostrophe ('). For analysis, "
    "download it with the option off."
)
COMMENT_WIDTH = 79


@dataclass(frozen=True)
class Handoff:
    """The code blocks of an export's options page."""

    csv_name: str
    pandas: str
    r: str


def default_columns(xtype: Any) -> tuple[GridColumn, ...]:
    """The columns of a type's CSV with the default options, in file order."""
    cols = queries.grid_columns(xtype, with_experiment=True)
    return exporting.export_columns(
        cols, RowQuery(tuple(cols)), exporting.ExportOptions()
    )


def _literal(text: str) -> str:
    """A double-quoted string literal that Python and R both read as `text`."""
    return json.dumps(text, ensure_ascii=False)


def _comment(text: str) -> str:
    return " ".join(str(text).split())  # no line break can end the comment early


def _header(type_name: str, csv_name: str, neutralised: bool) -> list[str]:
    """Comment lines (without the "# ") that say what the code reads."""
    text = (
        f"{_comment(csv_name)}: rows of the experiment type “{_comment(type_name)}” "
        "exported by wave_web, read with the types they are stored with."
    )
    lines = textwrap.wrap(text, COMMENT_WIDTH - 2, break_long_words=False)
    if neutralised:
        lines += textwrap.wrap(NEUTRALISED_NOTE, COMMENT_WIDTH - 2)
    return lines


def pandas_code(
    xtype: Any,
    csv_name: str,
    columns: Sequence[GridColumn] | None = None,
    neutralised: bool = False,
) -> str:
    """pandas code that reads the CSV `csv_name` of `xtype` with the stored types.

    `columns` are the file's columns (default: the type's export with the default
    options); `neutralised` adds a warning about the apostrophe of formula-like text.
    """
    cols = tuple(columns) if columns is not None else default_columns(xtype)
    return _pandas(xtype.name, cols, csv_name, neutralised)


def _pandas(
    type_name: str, cols: Sequence[GridColumn], csv_name: str, neutralised: bool
) -> str:
    dtypes = [(c.name, PANDAS_DTYPES[c.type]) for c in cols if c.type in PANDAS_DTYPES]
    dates = [c.name for c in cols if c.type == "DATETIME"]
    jsons = [c.name for c in cols if c.type == "JSON"]
    lines = ["import json", ""] if jsons else []
    lines += ["import pandas as pd", ""]
    lines += [f"# {line}" for line in _header(type_name, csv_name, neutralised)]
    if jsons:
        lines += [
            "",
            "",
            "def from_json(text):",
            '    """A JSON cell as Python values; an empty cell is None."""',
            "    return json.loads(text) if text else None",
            "",
            "",
        ]
    floats = any(c.type == "FLOAT" for c in cols)
    if floats:
        lines += [
            "# pandas 2 reads some floats one bit off without exact parsing;",
            "# pandas 3 always parses them exactly (and deprecates the option).",
            "EXACT_FLOATS = (",
            '    {"float_precision": "round_trip"}',
            '    if int(pd.__version__.split(".")[0]) < 3',
            "    else {}",
            ")",
        ]
    lines += ["rows = pd.read_csv(", f"    {_literal(csv_name)},"]
    lines.append('    encoding="utf-8-sig",  # with or without a byte order mark')
    if dtypes:
        lines.append("    dtype={")
        lines += [f"        {_literal(n)}: {_literal(t)}," for n, t in dtypes]
        lines.append("    },")
    if any(c.type == "BOOLEAN" for c in cols):
        lines += ['    true_values=["true"],', '    false_values=["false"],']
    if dates:
        names = ", ".join(_literal(n) for n in dates)
        lines += [f"    parse_dates=[{names}],  # UTC", '    date_format="ISO8601",']
    if jsons:
        lines.append("    converters={")
        lines += [f"        {_literal(n)}: from_json," for n in jsons]
        lines.append("    },")
    lines += [
        '    keep_default_na=False,  # "NA", "null" and "None" stay text',
        '    na_values=[""],  # only an empty cell means no value',
    ]
    if floats:
        lines.append("    **EXACT_FLOATS,")
    lines.append(")")
    return "\n".join(lines) + "\n"


def r_name(name: str) -> str:
    """`name` for an R argument or `$`: in backticks if reserved or not syntactic."""
    if name in R_RESERVED or not _R_SYNTACTIC.fullmatch(name):
        return f"`{name}`"
    return name


def r_code(
    xtype: Any,
    csv_name: str,
    columns: Sequence[GridColumn] | None = None,
    neutralised: bool = False,
) -> str:
    """readr code that reads the CSV `csv_name` of `xtype` with the stored types."""
    cols = tuple(columns) if columns is not None else default_columns(xtype)
    return _r(xtype.name, cols, csv_name, neutralised)


def _r(
    type_name: str, cols: Sequence[GridColumn], csv_name: str, neutralised: bool
) -> str:
    lines = [f"# {line}" for line in _header(type_name, csv_name, neutralised)]
    if any(c.type == "INTEGER" and not c.standard for c in cols):
        lines.append("# R integers end at ±2147483647: -2147483648 reads as NA.")
    lines += ["rows <- readr::read_csv(", f"  {_literal(csv_name)},"]
    lines.append("  col_types = readr::cols(")
    specs = [f"    {r_name(c.name)} = {R_COLUMN_TYPES[c.type]}" for c in cols]
    lines.append(",\n".join(specs))
    lines += [
        "  ),",
        '  na = c(""),  # only an empty cell means no value',
        "  trim_ws = FALSE  # spaces around text are part of it",
        ")",
    ]
    jsons = [c.name for c in cols if c.type == "JSON"]
    if jsons:
        lines.append(
            '# JSON columns are text; to parse them: install.packages("jsonlite")'
        )
    for name in jsons:
        column = f"rows${r_name(name)}"
        lines.append(
            f"{column} <- lapply({column}, function(v) "
            "if (is.na(v)) NULL else jsonlite::fromJSON(v, simplifyVector = FALSE))"
        )
    return "\n".join(lines) + "\n"


def snippets(plan: exporting.ExportPlan) -> Handoff:
    """The pandas and R code for the CSV of `plan`, as its options stand."""
    name = plan.filename("csv")
    neutralised = plan.options.neutralise
    return Handoff(
        csv_name=name,
        pandas=_pandas(plan.type_name, plan.columns, name, neutralised),
        r=_r(plan.type_name, plan.columns, name, neutralised),
    )

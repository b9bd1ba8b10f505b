"""Loading code on the export pages: pandas run on a real export, R checked by shape."""

from __future__ import annotations

import datetime as dt
import math
import re

import pytest
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import queries
from wave_web.columns import ColumnDef
from wave_web.csv_io import handoff

COLUMNS = (
    ColumnDef("trials", "INTEGER"),
    ColumnDef("rt", "FLOAT"),
    ColumnDef("word", "STRING"),
    ColumnDef("notes", "TEXT"),
    ColumnDef("correct", "BOOLEAN"),
    ColumnDef("at", "DATETIME"),
    ColumnDef("extra", "JSON"),
    ColumnDef("function", "INTEGER"),  # reserved in R, a fine name in SQL
)
ROWS = [
    dict(participant_id="007", trials=3, rt=0.1, word="true", notes="NA",
         correct=True, at=dt.datetime(2024, 3, 4, 14, 30), extra={"k": [1, 2]},
         function=-2147483647),
    dict(participant_id="P2", trials=None, rt=-0.0, word="", notes=" padded ",
         correct=False, at=dt.datetime(2024, 3, 4, 14, 30, 0, 250000), extra=None,
         function=None),
    dict(participant_id="0042", trials=2147483647, rt=None, word="null",
         notes='say "hi",\nthen leave', correct=None, at=None, extra="text",
         function=7),
    dict(participant_id="P4", trials=-1, rt=0.30000000000000004, word="None",
         notes=None, correct=True, at=dt.datetime(2024, 12, 31, 23, 59, 59, 1),
         extra=[2**70, True, None], function=0),
]  # fmt: skip


@pytest.fixture
def data(db):
    xtype = make_type("Stroop task", "stroop_data", COLUMNS)
    experiment = make_experiment(xtype, "Pilot")
    make_rows(xtype, experiment, ROWS)
    return xtype, experiment


def raw_text(element) -> str:
    """The text of an element exactly as written (a <pre> keeps its line breaks)."""
    return "".join(
        child if isinstance(child, str) else raw_text(child)
        for child in element.children
    )


def export(client, experiment, tmp_path, query: str = "_neutralise=0"):
    """Download the CSV under the name the page shows; (path, name, page code)."""
    url = f"/experiments/{experiment.uuid}"
    page = parse(client.get(f"{url}/export?{query}").data)
    response = client.get(f"{url}/export.csv?{query}")
    assert response.status_code == 200
    name = page.find("section", id="handoff").find("code").text
    path = tmp_path / name
    path.write_bytes(response.data)
    codes = {
        lang: raw_text(page.find("details", id=f"handoff-{lang}").find("pre"))
        for lang in ("pandas", "r")
    }
    return path, name, codes


def run_pandas(code: str, directory, monkeypatch) -> object:
    """Run the generated code in `directory` (it names the file without a path)."""
    namespace: dict = {}
    monkeypatch.chdir(directory)
    exec(compile(code, "<generated>", "exec"), namespace)
    return namespace["rows"]


def test_pandas_code_reads_the_export_with_its_types(
    client, data, tmp_path, monkeypatch
):
    pd = pytest.importorskip("pandas", reason="pandas is not installed")
    xtype, experiment = data
    path, name, codes = export(client, experiment, tmp_path)
    rows = run_pandas(codes["pandas"], tmp_path, monkeypatch)

    assert list(rows.columns) == ["id", "participant_id", *(c.name for c in COLUMNS)]
    dtypes = {k: str(v) for k, v in rows.dtypes.items()}
    assert dtypes["id"] == dtypes["trials"] == dtypes["function"] == "Int64"
    assert dtypes["rt"] == "float64"
    assert dtypes["correct"] == "boolean"
    assert isinstance(rows["participant_id"].dtype, pd.StringDtype)
    assert isinstance(rows["word"].dtype, pd.StringDtype)
    assert str(rows["at"].dtype).startswith("datetime64[") and "UTC" in dtypes["at"]

    assert list(rows["participant_id"]) == ["007", "P2", "0042", "P4"]
    # text that looks like a boolean or a missing value stays text
    assert list(rows["word"].iloc[[0, 2, 3]]) == ["true", "null", "None"]
    assert rows["word"].isna().iloc[1]  # an empty text is an empty cell
    assert rows["notes"].iloc[0] == "NA" and rows["notes"].iloc[1] == " padded "
    assert rows["notes"].iloc[2] == 'say "hi",\nthen leave'
    assert rows["trials"].iloc[2] == 2147483647 and rows["trials"].isna().iloc[1]
    assert rows["rt"].iloc[3] == 0.30000000000000004
    assert math.copysign(1.0, rows["rt"].iloc[1]) == -1.0
    assert list(rows["correct"].iloc[[0, 1, 3]]) == [True, False, True]
    assert rows["correct"].isna().iloc[2]
    at = rows["at"]
    assert at.iloc[1] == pd.Timestamp("2024-03-04T14:30:00.25Z")
    assert at.iloc[3] == pd.Timestamp("2024-12-31T23:59:59.000001Z")
    assert at.isna().iloc[2]
    assert list(rows["extra"]) == [{"k": [1, 2]}, None, "text", [2**70, True, None]]


def test_pandas_code_reads_a_file_with_a_bom_and_hidden_columns(
    client, data, tmp_path, monkeypatch
):
    pytest.importorskip("pandas", reason="pandas is not installed")
    xtype, experiment = data
    query = "_neutralise=0&_bom=1&_hide=notes&_hide=at&_id=0&_timestamps=1"
    path, name, codes = export(client, experiment, tmp_path, query)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = run_pandas(codes["pandas"], tmp_path, monkeypatch)
    assert "notes" not in rows.columns and "id" not in rows.columns
    assert list(rows.columns)[0] == "participant_id"
    assert "UTC" in str(rows["created_at"].dtype)
    assert rows["updated_at"].notna().all()


def r_col_types(code: str) -> dict[str, str]:
    block = code.split("col_types = readr::cols(")[1].split("\n  ),")[0]
    pairs = [line.strip().rstrip(",") for line in block.strip().splitlines()]
    return dict(pair.split(" = ", 1) for pair in pairs)


def test_r_code_names_a_readr_type_for_every_column(client, data, tmp_path):
    xtype, experiment = data
    path, name, codes = export(client, experiment, tmp_path)
    code = codes["r"]
    assert code.count("readr::read_csv(") == 1
    assert f'  "{name}",' in code
    assert r_col_types(code) == {
        "id": "readr::col_integer()",
        "participant_id": "readr::col_character()",
        "trials": "readr::col_integer()",
        "rt": "readr::col_double()",
        "word": "readr::col_character()",
        "notes": "readr::col_character()",
        "correct": "readr::col_logical()",
        "at": "readr::col_datetime()",
        "extra": "readr::col_character()",
        "`function`": "readr::col_integer()",
    }
    assert 'na = c("")' in code and "trim_ws = FALSE" in code
    assert "rows$extra <- lapply(rows$extra," in code
    assert "jsonlite::fromJSON" in code


def test_r_code_leaves_out_hidden_columns_and_adds_chosen_ones(client, data, tmp_path):
    xtype, experiment = data
    query = "_hide=rt&_hide=extra&_id=0&_timestamps=1"
    _path, _name, codes = export(client, experiment, tmp_path, query)
    types = r_col_types(codes["r"])
    assert "rt" not in types and "id" not in types and "extra" not in types
    assert types["created_at"] == types["updated_at"] == "readr::col_datetime()"
    assert "jsonlite" not in codes["r"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("function", "`function`"),
        ("repeat", "`repeat`"),
        ("while", "`while`"),
        ("next", "`next`"),
        ("break", "`break`"),
        ("if", "`if`"),
        ("TRUE", "`TRUE`"),
        ("rt", "rt"),
        ("reaction_time_2", "reaction_time_2"),
        ("_x", "`_x`"),
        ("2x", "`2x`"),
    ],
)
def test_r_names_in_backticks_when_reserved_or_not_syntactic(name, expected):
    assert handoff.r_name(name) == expected


def test_code_warns_when_the_file_keeps_neutralising_apostrophes(
    client, data, tmp_path
):
    xtype, experiment = data
    _path, _name, codes = export(client, experiment, tmp_path, "")
    for code in codes.values():
        assert "Neutralise formulas" in code
    _path, _name, codes = export(client, experiment, tmp_path, "_neutralise=0")
    for code in codes.values():
        assert "Neutralise formulas" not in code


def test_code_for_a_type_has_experiment_uuid_as_text(db):
    xtype = make_type("Stroop task", "stroop_data", COLUMNS)
    pandas = handoff.pandas_code(xtype, "stroop.csv")
    r = handoff.r_code(xtype, "stroop.csv")
    assert '"experiment_uuid": "string"' in pandas
    assert "experiment_uuid = readr::col_character()" in r
    assert '"created_at"' not in pandas  # not in a default export
    assert 'parse_dates=["at"]' in pandas


def test_code_without_dates_json_or_booleans_is_short(db):
    xtype = make_type("Plain", "plain_data", (ColumnDef("n", "INTEGER"),))
    cols = queries.grid_columns(xtype)
    chosen = [c for c in cols if c.name in ("participant_id", "n")]
    pandas = handoff.pandas_code(xtype, "plain.csv", chosen)
    assert "parse_dates" not in pandas and "converters" not in pandas
    assert "true_values" not in pandas and "import json" not in pandas
    compile(pandas, "<generated>", "exec")


def test_generated_python_compiles_and_comments_cannot_be_broken(db):
    xtype = make_type("Line\nbreak = 1", "odd_data", COLUMNS)
    code = handoff.pandas_code(xtype, "odd.csv", neutralised=True)
    compile(code, "<generated>", "exec")
    assert all(
        len(line) <= handoff.COMMENT_WIDTH
        for line in code.splitlines()
        if line.startswith("#")
    )
    assert not re.search(r"^break = 1", code, re.M)


def test_options_pages_show_both_code_blocks(client, data):
    xtype, experiment = data
    for url in (f"/experiments/{experiment.uuid}/export", f"/types/{xtype.id}/export"):
        page = parse(client.get(url).data)
        section = page.find("section", id="handoff")
        assert section is not None, url
        pandas = section.find("details", id="handoff-pandas")
        r = section.find("details", id="handoff-r")
        assert "pd.read_csv(" in raw_text(pandas)
        assert "readr::read_csv(" in raw_text(r)
        name = section.find("code").text
        assert name.endswith(".csv") and name.startswith("stroop_data-")
        assert f'"{name}"' in raw_text(pandas)

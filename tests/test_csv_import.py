"""The import pipeline (csv_io.importing) without the web layer, on both databases."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import datatables
from wave_web.columns import ColumnDef
from wave_web.csv_io.importing import ImportOptions
from wave_web.csv_io.importing import ImportRefused
from wave_web.csv_io.importing import check_file
from wave_web.csv_io.importing import import_file
from wave_web.csv_io.importing import offending_rows
from wave_web.csv_io.reading import FileRefused
from wave_web.extensions import db as _db

ALL_TYPES = (
    ColumnDef("n", "INTEGER"),
    ColumnDef("x", "FLOAT"),
    ColumnDef("s", "STRING"),
    ColumnDef("t", "TEXT"),
    ColumnDef("b", "BOOLEAN"),
    ColumnDef("at", "DATETIME"),
    ColumnDef("j", "JSON"),
)
HEADER = "participant_id,n,x,s,t,b,at,j\r\n"


@pytest.fixture
def xtype(db):
    return make_type("All types", "all_types", ALL_TYPES)


@pytest.fixture
def experiment(xtype):
    return make_experiment(xtype, "Import target")


def write(tmp_path, text: str | bytes, name: str = "upload.csv") -> str:
    path = tmp_path / name
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return str(path)


def stored(xtype, experiment):
    table = datatables.reflect(xtype)
    names = ["participant_id", *(c.name for c in xtype.columns)]
    stmt = (
        sa.select(*(table.c[n] for n in names))
        .where(table.c.experiment_uuid == experiment.uuid)
        .order_by(table.c.id)
    )
    return [dict(r) for r in _db.session.execute(stmt).mappings()]


def run_import(xtype, experiment, path, **options):
    try:
        report = import_file(xtype, experiment.uuid, path, ImportOptions(**options))
        _db.session.commit()
        return report
    except Exception:
        _db.session.rollback()
        raise


def test_valid_file_is_stored_with_canonical_values(tmp_path, xtype, experiment):
    path = write(
        tmp_path,
        HEADER + 'P1,42,0.25,"a, b","line 1\nline 2",yes,2024-03-04T14:30:00+02:00,'
        '"{""k"": [1, 2]}"\r\n'
        + "P2,,,,,,,\r\n"
        + 'P3,-7,1e-05,tab\there,back\\slash,F,2024-03-04,"""x"""\r\n',
    )
    report = run_import(xtype, experiment, path)
    assert report.written == 3
    rows = stored(xtype, experiment)
    assert rows[0] == {
        "participant_id": "P1",
        "n": 42,
        "x": 0.25,
        "s": "a, b",
        "t": "line 1\nline 2",
        "b": True,
        "at": dt.datetime(2024, 3, 4, 12, 30),
        "j": {"k": [1, 2]},
    }
    assert rows[1] == {"participant_id": "P2"} | {c.name: None for c in ALL_TYPES}
    assert rows[2]["s"] == "tab\there"
    assert rows[2]["t"] == "back\\slash"
    assert rows[2]["x"] == 1e-05
    assert rows[2]["b"] is False
    assert rows[2]["j"] == "x"
    _db.session.refresh(experiment)
    assert experiment.row_count == 3


def test_bad_cell_writes_nothing_and_names_row_line_column_value(
    tmp_path, xtype, experiment
):
    make_rows(xtype, experiment, [{"participant_id": "OLD", "n": 1}])
    path = write(
        tmp_path,
        HEADER + "P1,1,,,,,,\r\n" + 'P2,"multi\nline",,,,,,\r\n' + "P3,1.0,,,,,,\r\n",
    )
    with pytest.raises(ImportRefused) as caught:
        run_import(xtype, experiment, path)
    report = caught.value.report
    assert report.problem_count == 2
    first, second = report.problems
    assert (first.row, first.line, first.column) == (2, 3, "n")
    assert first.value == "multi\\nline"
    assert "whole number" in first.rule
    assert (second.row, second.line, second.column, second.value) == (3, 5, "n", "1.0")
    assert [r["participant_id"] for r in stored(xtype, experiment)] == ["OLD"]
    _db.session.refresh(experiment)
    assert experiment.row_count == 1


def test_problems_past_the_first_hundred_are_counted_per_column(
    tmp_path, xtype, experiment
):
    lines = "".join(f"P{i},x,y,,,maybe,,\r\n" for i in range(80))
    with pytest.raises(ImportRefused) as caught:
        run_import(xtype, experiment, write(tmp_path, HEADER + lines))
    report = caught.value.report
    assert report.problem_count == 240
    assert len(report.problems) == 100
    assert report.per_column == {"n": 80, "x": 80, "b": 80}
    assert report.bad_rows == 80


@pytest.mark.parametrize(
    ("header", "rule"),
    [
        ("participant_id,n,accuracy", "is not a column of this type"),
        ("participant_id,n,n", "is a duplicate column"),
        ("n,x", "participant_id"),
        ("participant_id,id", "update mode"),
        ("participant_id,created_at", "set by wave_web"),
    ],
)
def test_header_problems_refuse_the_file(tmp_path, xtype, experiment, header, rule):
    path = write(tmp_path, header + "\r\nP1,1,2\r\n")
    with pytest.raises(ImportRefused) as caught:
        run_import(xtype, experiment, path)
    assert any(rule in p.rule or rule == p.column for p in caught.value.report.problems)
    assert stored(xtype, experiment) == []


def test_unknown_header_suggests_the_closest_column(tmp_path, db):
    xtype = make_type("Acc", "acc_test", [ColumnDef("accuracy", "FLOAT")])
    report = check_file(
        xtype, write(tmp_path, "participant_id,acuracy\nP1,1\n"), ImportOptions()
    )
    assert "did you mean accuracy?" in report.problems[0].rule


def test_case_and_spaces_in_the_header_are_forgiven_with_a_note(
    tmp_path, xtype, experiment
):
    path = write(tmp_path, " Participant_ID , N \r\nP1,5\r\n")
    report = run_import(xtype, experiment, path)
    assert report.written == 1
    assert any("case or spaces" in c.note for c in report.header)
    assert stored(xtype, experiment)[0]["n"] == 5


def test_mapping_renames_and_ignores_file_columns(tmp_path, xtype, experiment):
    path = write(tmp_path, "subject_nr,n,junk\n007,3,zzz\n")
    report = run_import(xtype, experiment, path, mapping={0: "participant_id", 2: ""})
    assert report.written == 1
    assert stored(xtype, experiment)[0]["participant_id"] == "007"


def test_missing_value_words_are_empty_only_when_asked(tmp_path, xtype, experiment):
    path = write(tmp_path, "participant_id,n,x\nP1,NA,None\n")
    with pytest.raises(ImportRefused):
        run_import(xtype, experiment, path)
    run_import(xtype, experiment, path, missing=frozenset({"NA", "None"}))
    assert stored(xtype, experiment)[0] == {"participant_id": "P1"} | {
        c.name: None for c in ALL_TYPES
    }


def test_required_column_missing_from_header_is_a_problem(tmp_path, db):
    xtype = make_type("Req", "req_test", [ColumnDef("score", "INTEGER", False)])
    report = check_file(xtype, write(tmp_path, "participant_id\nP1\n"), ImportOptions())
    assert report.problems[0].column == "score"


def test_ragged_rows_are_problems_but_trailing_empty_cells_are_not(
    tmp_path, xtype, experiment
):
    path = write(tmp_path, "participant_id,n\nP1,1\nP2\nP3,3,,\nP4,4,9\n")
    report = check_file(xtype, path, ImportOptions())
    assert [(p.row, p.column) for p in report.problems] == [(2, None), (4, None)]
    assert "has 1 cells but the header has 2" in report.problems[0].rule


def test_unnamed_trailing_column_must_stay_empty(tmp_path, xtype, experiment):
    ok = write(tmp_path, "participant_id,n,\nP1,1,\n", "ok.csv")
    assert run_import(xtype, experiment, ok).written == 1
    bad = write(tmp_path, "participant_id,n,\nP1,1,surprise\n", "bad.csv")
    report = check_file(xtype, bad, ImportOptions())
    assert report.problems[0].column == "column 3"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("\ufeffparticipant_id,n\r\nP1,1\r\n".encode(), "utf-8-sig"),
        (b"participant_id;n\nP1;1\n", "utf-8"),
        ("participant_id\tn\nP1\t1\n".encode("utf-16"), "utf-16"),
    ],
)
def test_bom_semicolons_tabs_and_utf16_are_read(
    tmp_path, xtype, experiment, data, expected
):
    report = run_import(xtype, experiment, write(tmp_path, data))
    assert report.format.encoding == expected
    assert stored(xtype, experiment)[0]["n"] == 1


def test_latin1_file_is_refused_with_its_line(tmp_path, xtype, experiment):
    path = write(tmp_path, b"participant_id,s\nP1,ok\nP2,gr\xfcn\n")
    with pytest.raises(FileRefused) as caught:
        run_import(xtype, experiment, path)
    assert caught.value.line == 3
    assert stored(xtype, experiment) == []


def test_bad_quoting_late_in_a_large_file_leaves_nothing(tmp_path, xtype, experiment):
    lines = "".join(f"P{i},{i}\n" for i in range(12_000))
    path = write(tmp_path, "participant_id,n\n" + lines + 'P,"open\n')
    with pytest.raises(FileRefused) as caught:
        run_import(xtype, experiment, path)
    assert caught.value.line == 12_002
    assert stored(xtype, experiment) == []


def test_a_one_mebibyte_text_cell_is_a_value(tmp_path, xtype, experiment):
    big = "é" * (1024 * 1024)
    run_import(xtype, experiment, write(tmp_path, f"participant_id,t\nP1,{big}\n"))
    assert stored(xtype, experiment)[0]["t"] == big


@pytest.mark.parametrize(
    "data", ["", "participant_id,n\n", "\n\n", "participant_id,n\n,\n"]
)
def test_empty_or_header_only_files_are_refused(tmp_path, xtype, experiment, data):
    with pytest.raises((FileRefused, ImportRefused)):
        run_import(xtype, experiment, write(tmp_path, data))


def test_large_file_crosses_chunks_and_counts_exactly(tmp_path, xtype, experiment):
    lines = "".join(
        f"P{i % 7},{i},{i / 4},s{i},,{i % 2},,[{i}]\n" for i in range(12_345)
    )
    report = run_import(xtype, experiment, write(tmp_path, HEADER + lines))
    assert report.written == 12_345
    rows = stored(xtype, experiment)
    assert len(rows) == 12_345
    assert rows[-1]["j"] == [12_344]
    _db.session.refresh(experiment)
    assert experiment.row_count == 12_345


def test_update_mode_changes_only_rows_of_this_experiment(tmp_path, xtype, experiment):
    other = make_experiment(xtype, "Other")
    make_rows(xtype, experiment, [{"participant_id": "A", "n": 1}] * 2)
    make_rows(xtype, other, [{"participant_id": "B", "n": 1}])
    ids = [
        r.id
        for r in _db.session.execute(
            sa.select(datatables.reflect(xtype).c.id).order_by("id")
        )
    ]
    path = write(tmp_path, f"id,n\n{ids[0]},10\n{ids[1]},20\n")
    report = run_import(xtype, experiment, path, mode="update")
    assert report.written == 2
    assert [r["n"] for r in stored(xtype, experiment)] == [10, 20]
    assert [r["participant_id"] for r in stored(xtype, experiment)] == ["A", "A"]

    foreign = write(tmp_path, f"id,n\n{ids[0]},11\n{ids[2]},99\n", "foreign.csv")
    with pytest.raises(ImportRefused) as caught:
        run_import(xtype, experiment, foreign, mode="update")
    problem = caught.value.report.problems[0]
    assert (problem.row, problem.line, problem.column) == (2, 3, "id")
    assert [r["n"] for r in stored(xtype, experiment)] == [10, 20]
    assert stored(xtype, other)[0]["n"] == 1


def test_update_mode_refuses_an_id_twice(tmp_path, xtype, experiment):
    make_rows(xtype, experiment, [{"participant_id": "A", "n": 1}])
    row_id = _db.session.scalar(sa.select(datatables.reflect(xtype).c.id))
    path = write(tmp_path, f"id,n\n{row_id},1\n{row_id},2\n")
    with pytest.raises(ImportRefused) as caught:
        run_import(xtype, experiment, path, mode="update")
    assert "twice" in caught.value.report.problems[0].rule


def test_check_file_previews_rows_as_they_will_be_stored(tmp_path, xtype):
    path = write(tmp_path, HEADER + "P1, 5 ,1.50,a,,Y,2024-01-01 10:00,{ }\n")
    report = check_file(xtype, path, ImportOptions())
    assert report.ok
    assert report.rows == 1
    assert report.preview[0] == {
        "participant_id": "P1",
        "n": "5",
        "x": "1.5",
        "s": "a",
        "t": "",
        "b": "true",
        "at": "2024-01-01T10:00:00Z",
        "j": "{}",
    }


def test_offending_rows_file_holds_bad_rows_with_an_error_column(tmp_path, xtype):
    path = write(tmp_path, "participant_id,n\nP1,1\nP2,x\nP3,3\n")
    rows = list(offending_rows(xtype, path, ImportOptions()))
    assert rows[0] == ["participant_id", "n", "error"]
    assert rows[1][:2] == ["P2", "x"]
    assert "n: expected a whole number" in rows[1][2]
    assert len(rows) == 2


def test_imported_rows_are_stored_exactly_like_rows_added_in_the_grid(
    tmp_path, xtype, experiment
):
    """Same bytes in the database (SQLite keeps datetimes, JSON, booleans as text)."""
    values = {
        "participant_id": "P1",
        "n": 5,
        "x": 0.1,
        "s": "s",
        "t": "t",
        "b": True,
        "at": dt.datetime(2024, 3, 4, 12, 30),
        "j": {"a": [1, "ü"]},
    }
    make_rows(xtype, experiment, [values])
    path = write(
        tmp_path, HEADER + 'P1,5,0.1,s,t,true,2024-03-04T12:30:00,"{""a"":[1,""ü""]}"\n'
    )
    run_import(xtype, experiment, path)
    table = datatables.reflect(xtype)
    raw = [sa.cast(table.c[n], sa.Text) for n in values]
    stmt = sa.select(*raw).where(table.c.experiment_uuid == experiment.uuid)
    first, second = _db.session.execute(stmt.order_by(table.c.id)).all()
    assert first == second


def test_writing_takes_the_sqlite_write_lock_at_begin(app, dialect):
    """A background job's transaction cannot be overtaken between its read and write."""
    from wave_web.database import writing

    if dialect != "sqlite":
        pytest.skip("SQLite only: PostgreSQL has row locks")
    with app.app_context():
        with writing():
            _db.session.execute(sa.text("SELECT 1"))
            other = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
            with other.connect() as conn:
                conn.exec_driver_sql("PRAGMA busy_timeout=0")
                with pytest.raises(sa.exc.OperationalError, match="locked"):
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
            other.dispose()
        _db.session.rollback()


def test_update_mode_marks_the_experiment_changed_for_cached_summaries(
    tmp_path, xtype, experiment
):
    make_rows(xtype, experiment, [{"participant_id": "A", "n": 1}])
    row_id = _db.session.scalar(sa.select(datatables.reflect(xtype).c.id))
    _db.session.refresh(experiment)
    before = experiment.updated_at
    run_import(xtype, experiment, write(tmp_path, f"id,n\n{row_id},2\n"), mode="update")
    _db.session.refresh(experiment)
    assert experiment.updated_at > before

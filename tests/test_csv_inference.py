"""Inference (csv_io/inference.py): layout, names and types proposed from a file.

No database: the engine reads files only. The sample files in tests/data/samples are
small synthetic copies of real tool exports; the expectations below are those of their
README (shared/samples/README.md).
"""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from wave_web import columns
from wave_web.csv_io import inference
from wave_web.csv_io import reading
from wave_web.csv_io.inference import analyse
from wave_web.csv_io.inference import detect_layout
from wave_web.csv_io.reading import CsvFormat
from wave_web.errors import InvalidValue

SAMPLES = Path(__file__).parent / "data" / "samples"


def analysed(path: Path | str, **options):
    path = str(path)
    return analyse(path, detect_layout(path), **options)


def sample(name: str, **options):
    return analysed(SAMPLES / name, **options)


def col(analysis, header: str):
    return next(c for c in analysis.columns if c.header == header)


def write(tmp_path: Path, text: str, encoding: str = "utf-8", name="f.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def synthetic(tmp_path: Path, text: str, **options):
    return analysed(write(tmp_path, text), **options)


# ----------------------------------------------------------------------
# suggest_name
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("PsychoPy", "psychopy"),
        ("jsPsych", "jspsych"),
        ("OpenSesame", "opensesame"),
        ("E-Prime", "e_prime"),
        ("psychopyVersion", "psychopy_version"),
        ("runPsychoPy", "run_psychopy"),
        ("expName", "exp_name"),
        ("frameRate", "frame_rate"),
        ("StartDate", "start_date"),
        ("ResponseId", "response_id"),
        ("IPAddress", "ip_address"),
        ("Stimulus.RTTime", "stimulus_rt_time"),
        ("key_resp.rt", "key_resp_rt"),
        ("Procedure[Trial]", "procedure_trial"),
        ("Duration (in seconds)", "duration_in_seconds"),
        ("ratios", "ratios"),
        ("userIDs", "user_ids"),
    ],
)
def test_suggested_name_splits_camel_case_but_not_brand_names(header, name):
    assert columns.suggest_name(header) == name


# ----------------------------------------------------------------------
# The sample files
# ----------------------------------------------------------------------


def test_psychopy_sample():
    a = sample("psychopy_stroop.csv")
    assert a.rows == 59
    assert a.layout.header_line == 1 and a.layout.skips == ()
    assert a.layout.tool == "psychopy"
    who = col(a, "participant")
    assert a.participant == who.position
    assert (who.name, who.type, who.nullable, who.participant) == (
        "participant_id",
        "STRING",
        False,
        True,
    )
    assert who.samples == ["007"]
    rt = col(a, "key_resp.rt")
    assert (rt.name, rt.type, rt.nullable) == ("key_resp_rt", "FLOAT", True)
    assert col(a, "key_resp.corr").type == "INTEGER"
    assert col(a, "congruent").type == "BOOLEAN"
    keys = col(a, "key_resp.keys")
    assert keys.type == "STRING" and keys.missing["None"] == 3
    for header in ("date", "expStart"):
        assert (col(a, header).type, col(a, header).format) == ("DATETIME", "psychopy")
    assert col(a, "dominant hand").name == "dominant_hand"
    assert col(a, "psychopyVersion").name == "psychopy_version"
    trailing = a.columns[-1]
    assert trailing.header == "" and trailing.drop and trailing.nullable
    assert not col(a, "notes").drop  # empty, but it has a name
    assert a.missing_found == {"None": 55}


def test_jspsych_sample():
    a = sample("jspsych_rt.csv")
    assert a.rows == 79
    assert a.columns[a.participant].header == "subject_id"
    rt = col(a, "rt")
    assert (rt.type, rt.nullable) == ("FLOAT", True)
    assert rt.missing == {"null": 40, "": 2}
    correct = col(a, "correct")
    assert (correct.type, correct.nullable) == ("BOOLEAN", True)
    for header in ("view_history", "question_order", "failed_images"):
        assert col(a, header).type == "JSON", header
    assert "[]" not in col(a, "failed_images").missing  # an empty array is a value
    for header in ("trial_index", "time_elapsed"):
        assert col(a, header).type == "INTEGER"
    assert col(a, "response").type == "STRING"
    assert col(a, "internal_node_id").type == "STRING"


def test_qualtrics_sample():
    a = sample("qualtrics_survey.csv")
    assert a.layout.format == CsvFormat("utf-8-sig", ",")
    assert a.rows == 20
    assert [(s.line, s.kind) for s in a.layout.skips] == [
        (2, "header_extra"),
        (3, "header_extra"),
    ]
    consent = col(a, "consent")
    assert consent.description == "Do you agree to take part in this study?"
    assert a.layout.descriptions[consent.position] == consent.description
    assert a.columns[a.participant].header == "PROLIFIC_PID"
    assert col(a, "ResponseId").name == "response_id"
    duration = col(a, "Duration (in seconds)")
    assert (duration.name, duration.type) == ("duration_in_seconds", "INTEGER")
    for header in ("StartDate", "EndDate", "RecordedDate"):
        assert (col(a, header).type, col(a, header).format) == ("DATETIME", None)
    assert col(a, "Finished").type == "INTEGER"
    assert (col(a, "PANAS_1").type, col(a, "PANAS_1").nullable) == ("INTEGER", True)
    assert col(a, "Q5").type == "STRING"
    assert col(a, "Q6").type == "STRING"
    assert "1 row is a Qualtrics survey preview (Status = 1)." in a.notes
    assert "2 responses are unfinished (Finished = 0)." in a.notes
    assert any("America/Denver" in n for n in a.notes)
    assert any("no participant id" in n for n in a.notes)  # the preview row


def test_gorilla_sample():
    a = sample("gorilla_long.csv")
    assert a.rows == 96
    assert [(s.line, s.kind, s.text) for s in a.layout.skips] == [
        (98, "sentinel", "END OF FILE")
    ]
    assert a.columns[a.participant].header == "Participant Private ID"
    assert col(a, "Participant Public ID").name == "participant_public_id"
    date = col(a, "UTC Date")
    assert (date.type, date.format, date.ambiguous) == ("DATETIME", "dmy", None)
    assert date.format_choices == ["dmy", "mdy"]
    reaction = col(a, "Reaction Time")
    assert (reaction.name, reaction.type, reaction.nullable) == (
        "reaction_time",
        "FLOAT",
        True,
    )
    stamp = col(a, "UTC Timestamp")
    assert stamp.type == "STRING" and "32 bits" in stamp.reason
    names = [c.name for c in a.columns]
    assert len(names) == 46 == len(set(names))
    for name in names:
        columns.validate_name(name) if name != "participant_id" else None


def test_eprime_sample():
    a = sample("eprime_export.txt")
    assert a.layout.format == CsvFormat("utf-16", "\t")
    assert a.layout.header_line == 2
    assert [(s.line, s.kind) for s in a.layout.skips] == [(1, "preamble")]
    assert a.layout.skips[0].text.startswith("C:")
    assert a.rows == 30
    who = a.columns[a.participant]
    assert who.header == "Subject" and who.samples == ["12", "13"]
    rt = col(a, "Stimulus.RT")
    assert (rt.name, rt.type) == ("stimulus_rt", "INTEGER")
    procedure = col(a, "Procedure[Trial]")
    assert (procedure.name, procedure.type) == ("procedure_trial", "STRING")
    acc = col(a, "Feedback.ACC")
    assert (acc.type, acc.nullable, acc.missing) == ("INTEGER", True, {"NULL": 20})
    for header in ("SessionDate", "SessionStartDateTimeUtc"):
        assert (col(a, header).type, col(a, header).format) == ("DATETIME", "mdy")
    assert a.missing_found == {"NULL": 40}


def test_opensesame_sample():
    a = sample("opensesame_subject-1.csv")
    assert a.layout.backslash_quotes
    assert a.rows == 40
    assert a.columns[a.participant].header == "subject_nr"
    assert (col(a, "datetime").type, col(a, "datetime").format) == (
        "DATETIME",
        "ctime",
    )
    note = col(a, "session_note")
    assert (note.type, note.nullable, note.missing) == (
        "STRING",
        True,
        {"": 20, "NA": 20},
    )
    assert col(a, "description").samples == [
        'Spatial cueing; note: "valid" cue = same side'
    ]
    assert col(a, "experiment_path").samples == ["C:\\Users\\lab\\Experiments"]
    assert col(a, "practice").type == "BOOLEAN"
    assert col(a, "correct").type == "INTEGER"
    assert col(a, "response_time").type == "FLOAT"


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("psychopy_stroop.csv", 59),
        ("jspsych_rt.csv", 79),
        ("qualtrics_survey.csv", 20),
        ("gorilla_long.csv", 96),
        ("eprime_export.txt", 30),
        ("opensesame_subject-1.csv", 40),
    ],
)
def test_data_records_yield_only_the_data_rows(name, rows):
    path = str(SAMPLES / name)
    layout = detect_layout(path)
    found = list(inference.data_records(path, layout))
    assert len(found) == rows
    assert all(len(cells) == len(layout.header) for _, cells in found)


# ----------------------------------------------------------------------
# Types
# ----------------------------------------------------------------------


def test_ambiguous_dates_are_not_guessed(tmp_path):
    a = synthetic(tmp_path, "p,when\nA,01/02/2024\nB,03/04/2024 10:00\n")
    when = col(a, "when")
    assert (when.type, when.format) == ("STRING", None)
    assert when.format_choices == ["dmy", "mdy"]
    assert "day-first and month-first" in when.ambiguous


def test_a_chosen_format_settles_an_ambiguous_column(tmp_path):
    path = write(tmp_path, "p,when\nA,01/02/2024\nB,03/04/2024 10:00\n")
    a = analyse(str(path), detect_layout(str(path)), formats={1: "dmy"})
    when = col(a, "when")
    assert (when.type, when.format, when.ambiguous) == ("DATETIME", "dmy", None)


def test_a_chosen_format_that_does_not_fit_lists_the_cells(tmp_path):
    path = write(tmp_path, "p,when\nA,01/02/2024\nB,13/25/2024\nC,x\n")
    a = analyse(str(path), detect_layout(str(path)), formats={1: "dmy"})
    when = col(a, "when")
    assert when.type == "STRING"
    assert when.almost == "DATETIME (dmy) except 2 cells: `13/25/2024` row 2, `x` row 3"
    assert [(e.row, e.value) for e in when.counter_examples] == [
        (2, "13/25/2024"),
        (3, "x"),
    ]


def test_unknown_format_or_column_is_refused(tmp_path):
    path = str(write(tmp_path, "p,a\nA,1\n"))
    layout = detect_layout(path)
    with pytest.raises(InvalidValue, match="not a known value format"):
        analyse(path, layout, formats={1: "klingon"})
    with pytest.raises(InvalidValue, match="not in the file"):
        analyse(path, layout, formats={7: "dmy"})


def test_counter_examples_name_their_rows(tmp_path):
    values = [f"{i}.5" for i in range(40)]
    values[16], values[19], values[30] = "n/a", "x", "?"
    a = synthetic(tmp_path, "p,rt\n" + "".join(f"A,{v}\n" for v in values))
    rt = col(a, "rt")
    assert rt.type == "STRING"
    assert rt.almost == "FLOAT except 3 cells: `n/a` row 17, `x` row 20, `?` row 31"
    assert [e.row for e in rt.counter_examples] == [17, 20, 31]


def test_more_than_a_tenth_of_misfits_is_not_almost(tmp_path):
    values = ["0.5"] * 8 + ["x", "y"]
    a = synthetic(tmp_path, "p,rt\n" + "".join(f"A,{v}\n" for v in values))
    assert (col(a, "rt").type, col(a, "rt").almost) == ("STRING", None)


def test_zero_padded_numbers_stay_text(tmp_path):
    a = synthetic(tmp_path, "participant,code,n\n007,001,1\n012,010,2\n")
    who = col(a, "participant")
    assert (who.type, who.samples) == ("STRING", ["007", "012"])
    code = col(a, "code")
    assert code.type == "STRING" and "leading zeros" in code.reason
    assert col(a, "n").type == "INTEGER"


def test_zero_and_one_only_is_integer_words_are_boolean(tmp_path):
    a = synthetic(
        tmp_path,
        "p,bit,word,mixed,yn\nA,0,true,TRUE,y\nB,1,False,1,n\nC,1,,0,\n",
    )
    assert col(a, "bit").type == "INTEGER"
    assert (col(a, "word").type, col(a, "word").nullable) == ("BOOLEAN", True)
    assert col(a, "mixed").type == "BOOLEAN"
    assert col(a, "yn").type == "BOOLEAN"


def test_values_over_255_characters_make_text(tmp_path):
    a = synthetic(tmp_path, f"p,short,long\nA,{'x' * 255},{'y' * 256}\nB,b,b\n")
    assert col(a, "short").type == "STRING"
    long = col(a, "long")
    assert long.type == "TEXT" and "256" in long.reason


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([str(2**31 - 1), str(-(2**31))], "INTEGER"),
        ([str(2**31), "5"], "STRING"),
        ([str(-(2**31) - 1)], "STRING"),
        (["0.5", "1712241068522"], "STRING"),
        (["0.5", "2147483648.5"], "FLOAT"),
    ],
)
def test_whole_numbers_beyond_32_bits_are_text_not_float(tmp_path, values, expected):
    a = synthetic(tmp_path, "p,n\n" + "".join(f"A,{v}\n" for v in values))
    assert col(a, "n").type == expected


def test_json_needs_objects_or_arrays(tmp_path):
    a = synthetic(
        tmp_path,
        'p,obj,scalar,mixed\nA,"{""a"": 1}",1,"[1]"\nB,[],"""x""",x\nC,,2,\n',
    )
    assert col(a, "obj").type == "JSON"
    assert col(a, "scalar").type == "STRING"  # JSON scalars are not proposed as JSON
    assert col(a, "mixed").type == "STRING"


def test_iso_datetimes_need_no_format(tmp_path):
    a = synthetic(
        tmp_path,
        "p,at\nA,2024-03-04T14:30:00Z\nB,2024-03-05 09:00:00+02:00\nC,2024-03-06\n",
    )
    at = col(a, "at")
    assert (at.type, at.format, at.format_choices) == ("DATETIME", None, [])


def test_decimal_comma_with_semicolons(tmp_path):
    a = synthetic(tmp_path, "p;rt;ok\nA;512,3;WAHR\nB;0,25;FALSCH\nC;3;wahr\n")
    assert a.layout.format.delimiter == ";"
    rt = col(a, "rt")
    assert (rt.type, rt.format, rt.format_choices) == (
        "FLOAT",
        "decimal_comma",
        ["decimal_comma"],
    )
    ok = col(a, "ok")
    assert (ok.type, ok.format) == ("BOOLEAN", "bool_words")


def test_decimal_comma_is_not_proposed_when_dots_appear(tmp_path):
    a = synthetic(tmp_path, 'p,rt\nA,"0,5"\nB,2.5\nC,"1,25"\n')
    assert (col(a, "rt").type, col(a, "rt").format) == ("STRING", None)


def test_every_missing_spelling_counts_by_default(tmp_path):
    a = synthetic(tmp_path, "p,rt\nA,0.5\nB,NA\nC,\nD, NaN \nE,.\nF,  \n")
    rt = col(a, "rt")
    assert (rt.type, rt.nullable) == ("FLOAT", True)
    assert rt.missing == {"": 2, "NA": 1, "NaN": 1, ".": 1}
    assert a.missing_found == {"NA": 1, "NaN": 1, ".": 1}


def test_a_given_missing_set_counts_only_those(tmp_path):
    rows = "".join(f"A,{i}.5\n" for i in range(20)) + "B,NA\nC,None\n"
    a = synthetic(tmp_path, "p,rt\n" + rows, missing=frozenset({"NA"}))
    rt = col(a, "rt")
    assert rt.missing == {"NA": 1}
    assert rt.type == "STRING"
    assert rt.almost == "FLOAT except 1 cell: `None` row 22"


def test_all_missing_column_is_nullable_text_dropped_only_without_a_name(tmp_path):
    a = synthetic(tmp_path, "p,empty,\nA,NA,\nB,,\n")
    empty = col(a, "empty")
    assert (empty.type, empty.nullable, empty.drop) == ("STRING", True, False)
    nameless = a.columns[2]
    assert (nameless.name, nameless.drop) == ("column_3", True)


# ----------------------------------------------------------------------
# Names and the participant column
# ----------------------------------------------------------------------


def test_duplicate_empty_and_standard_headers_get_valid_unique_names(tmp_path):
    a = synthetic(
        tmp_path,
        "participant_id,a,a,,A,id,created_at,日本語\nP1,1,2,3,4,5,6,7\n",
    )
    names = [c.name for c in a.columns]
    assert names == [
        "participant_id",
        "a",
        "a_2",
        "column_4",
        "a_3",
        "id_value",
        "created_at_value",
        "column_8",
    ]
    assert any("a_2" in n for n in a.notes)
    for name in names[1:]:
        assert columns.validate_name(name) == name


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Participant Public ID,Participant Private ID,x", "Participant Private ID"),
        ("ResponseId,x,PROLIFIC_PID", "PROLIFIC_PID"),
        ("ResponseId,x", "ResponseId"),
        ("trial,VP_Nr", "VP_Nr"),
        ("Subject,subject_nr", "Subject"),
        ("worker_id,rt", "worker_id"),
    ],
)
def test_participant_column_is_the_first_alias_secondary_ones_last(header, expected):
    cells = header.split(",")
    assert cells[inference.participant_position(cells)] == expected


def test_no_participant_alias_means_no_participant_and_a_note(tmp_path):
    a = synthetic(tmp_path, "trial,rt\n1,0.5\n")
    assert a.participant is None
    assert not any(c.participant for c in a.columns)
    assert any("participant id" in n for n in a.notes)


def test_participant_column_is_never_nullable(tmp_path):
    a = synthetic(tmp_path, "subject,rt\nS1,0.5\n,0.7\nNA,0.1\n")
    who = col(a, "subject")
    assert (who.type, who.nullable, who.missing) == ("STRING", False, {"": 1})
    assert who.samples == ["S1", "NA"]  # an id, not a missing value
    assert any("1 row has no participant id" in n for n in a.notes)


# ----------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_detected(tmp_path, encoding):
    path = write(tmp_path, "subject\trt\ngrün\t0.5\nS2\t0.7\n", encoding)
    layout = detect_layout(str(path))
    assert layout.format == CsvFormat(encoding, "\t")
    assert "without BOM" in layout.format.label
    a = analyse(str(path), layout)
    assert a.rows == 2 and col(a, "subject").samples == ["grün", "S2"]
    assert [cells for _, cells in reading.records(str(path), layout.format)][1] == [
        "grün",
        "0.5",
    ]


def test_utf16_with_bom_and_plain_utf8_are_not_mistaken_for_bomless():
    assert inference.utf16_without_bom(codecs.BOM_UTF16_LE + "ab".encode("utf-16-le"))
    assert inference.utf16_without_bom(b"subject,rt\n1,2\n") is None
    eprime = (SAMPLES / "eprime_export.txt").read_bytes()
    assert inference.sniff(str(SAMPLES / "eprime_export.txt")).encoding == "utf-16"
    assert eprime.startswith(codecs.BOM_UTF16_LE)


def test_delimiter_is_found_below_a_preamble_line(tmp_path):
    path = write(tmp_path, "C:\\data\\run 1.txt\na\tb\tc\n1\t2\t3\n")
    layout = detect_layout(str(path))
    assert (layout.format.delimiter, layout.header_line) == ("\t", 2)


def test_eprime_text_type_rows_are_preamble(tmp_path):
    text = (
        "STRING\tINTEGER\tINTEGER\n"
        "EXPNAME\tSUBJECT\tVARIABLE\n"
        "1\t1\t3\n"
        "ExperimentName\tSubject\tStimulus.RT\n"
        "Stroop\t12\t545\n"
    )
    a = synthetic(tmp_path, text)
    assert a.layout.header_line == 4
    assert [s.kind for s in a.layout.skips] == ["preamble"] * 3
    assert a.rows == 1 and col(a, "Stimulus.RT").type == "INTEGER"


@pytest.mark.parametrize(
    "text",
    [
        "participant\nP1\nP2\n",  # one column
        "participant,\n007,5\n",  # a header with one name over numbers
        "a,b\n1,2\n",
    ],
)
def test_first_record_stays_the_header_when_unsure(tmp_path, text):
    assert detect_layout(str(write(tmp_path, text))).header_line == 1


def test_chosen_header_line_overrides_detection(tmp_path):
    path = str(write(tmp_path, "title,x\nrun,2\nsubject,rt\nS1,0.5\n"))
    layout = detect_layout(path, header_line=3)
    assert layout.header_line == 3
    assert [(s.line, s.kind) for s in layout.skips] == [
        (1, "preamble"),
        (2, "preamble"),
    ]
    a = analyse(path, layout)
    assert a.rows == 1 and a.columns[a.participant].header == "subject"


@pytest.mark.parametrize("line", [0, 2, 99])
def test_chosen_header_line_must_start_a_record(tmp_path, line):
    path = str(write(tmp_path, "a,b\n\n1,2\n"))
    with pytest.raises(InvalidValue, match="line"):
        detect_layout(path, header_line=line)


def test_qualtrics_two_row_export_skips_the_question_text(tmp_path):
    text = (
        "StartDate,EndDate,ResponseId,Q1\n"
        "Start Date,End Date,Response ID,How are you?\n"
        "2024-04-02 12:34:00,2024-04-02 12:41:05,R_1,3\n"
    )
    a = synthetic(tmp_path, text)
    assert [(s.line, s.kind) for s in a.layout.skips] == [(2, "header_extra")]
    assert col(a, "Q1").description == "How are you?"
    assert a.rows == 1 and col(a, "Q1").type == "INTEGER"


def test_qualtrics_like_header_without_question_row_keeps_row_two(tmp_path):
    text = "StartDate,EndDate,ResponseId\n2024-04-02 12:34:00,2024-04-02 12:41:05,R_1\n"
    a = synthetic(tmp_path, text)
    assert a.layout.skips == () and a.rows == 1


def test_sentinel_records_are_skipped_wherever_they_are(tmp_path):
    rows = "".join(f"S{i},{i}\n" for i in range(200))
    text = "subject,n\n" + rows + "END OF FILE,\n" + "S9,9\n" + "END OF FILE,\n"
    path = str(write(tmp_path, text))
    layout = detect_layout(path)
    assert layout.skips == ()  # beyond the records detect_layout reads
    a = analyse(path, layout)
    assert a.rows == 201
    assert [(s.line, s.kind) for s in a.layout.skips] == [
        (202, "sentinel"),
        (204, "sentinel"),
    ]


def test_backslash_escaped_quotes_are_read_and_other_backslashes_kept(tmp_path):
    text = (
        '"subject","note","path"\n'
        '"1","say \\"hi\\" now","C:\\dir\\"\n'
        '"2","\\"quoted\\"","D:\\x"\n'
    )
    a = synthetic(tmp_path, text)
    assert a.layout.backslash_quotes
    assert col(a, "note").samples == ['say "hi" now', '"quoted"']
    assert col(a, "path").samples == ["C:\\dir\\", "D:\\x"]


def test_rfc_quotes_are_not_mistaken_for_backslash_escapes(tmp_path):
    a = synthetic(tmp_path, 'subject,path\n1,"C:\\dir\\"\n2,"say ""hi"""\n')
    assert not a.layout.backslash_quotes
    assert col(a, "path").samples == ["C:\\dir\\", 'say "hi"']


def test_rows_of_other_widths_are_noted(tmp_path):
    a = synthetic(tmp_path, "subject,a,b\nS1,1\nS2,1,2,3\nS3,1,2,\n")
    assert a.rows == 3
    assert (col(a, "b").type, col(a, "b").nullable) == ("INTEGER", True)
    assert any("shorter than the header (first: row 1)" in n for n in a.notes)
    assert any("longer than the header (first: row 2)" in n for n in a.notes)


# ----------------------------------------------------------------------
# Many chunks
# ----------------------------------------------------------------------


def test_chunks_keep_counts_and_rows_across_the_file(tmp_path):
    n = inference.CHUNK_ROWS * 2 + 123
    lines = [
        f"P{i % 7},{i * 0.5},{i % 2},2024-01-01T00:00:{i % 60:02d}" for i in range(n)
    ]
    lines[7_000] = "P1,oops,1,2024-01-01"
    lines[n - 1] = "P1,,1,"
    path = write(tmp_path, "subject,rt,bit,at\n" + "\n".join(lines) + "\n")
    seen = []
    a = analysed(path, progress=seen.append)
    assert a.rows == n
    assert seen == [inference.CHUNK_ROWS, 2 * inference.CHUNK_ROWS, n]
    rt = col(a, "rt")
    assert rt.type == "STRING"
    assert rt.almost == "FLOAT except 1 cell: `oops` row 7001"
    assert col(a, "bit").type == "INTEGER"
    at = col(a, "at")
    assert (at.type, at.nullable, at.missing) == ("DATETIME", True, {"": 1})
    assert "7 distinct" in col(a, "subject").reason


# ----------------------------------------------------------------------
# Refused files and small rules
# ----------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n\n", codecs.BOM_UTF8])
def test_empty_file_is_refused(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(reading.FileRefused, match="empty"):
        detect_layout(str(path))


def test_undecodable_file_is_refused_with_its_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("subject,word\nS1,gr\u00fcn\n".encode("latin-1"))
    with pytest.raises(reading.FileRefused) as info:
        detect_layout(str(path))
    assert info.value.line == 2


def test_empty_array_is_missing_in_a_numeric_column(tmp_path):
    a = synthetic(tmp_path, "subject,rt\nS1,0.5\nS2,[]\n")
    rt = col(a, "rt")
    assert (rt.type, rt.missing) == ("FLOAT", {"[]": 1})
    assert a.missing_found == {"[]": 1}


def test_skipped_records_are_shown_shortened():
    a = sample("qualtrics_survey.csv")
    assert all(len(s.text) <= 80 for s in a.layout.skips)
    assert a.layout.skips[0].text.startswith("Start Date, End Date")


def test_every_alias_is_spelt_as_suggest_name_spells_it():
    for alias in inference.PARTICIPANT_ALIASES:
        if alias != "participant_id":  # a standard column: suggest_name adds _value
            assert columns.suggest_name(alias) == alias
    assert set(inference.SECONDARY_PARTICIPANT_ALIASES) <= set(
        inference.PARTICIPANT_ALIASES
    )


def test_a_chosen_header_line_far_down_lists_only_the_last_preamble_records(tmp_path):
    preamble = "".join(f"note {i}\n" for i in range(300))
    path = str(write(tmp_path, preamble + "subject,rt\nS1,0.5\n"))
    layout = detect_layout(path, header_line=301)
    assert layout.header_line == 301
    assert len(layout.skips) == inference.MAX_SKIPS
    assert layout.skips[-1].line == 300
    assert analyse(path, layout).rows == 1


def test_a_nul_character_is_noted_with_its_row(tmp_path):
    a = synthetic(tmp_path, "subject,note\nS1,ok\nS2,a\x00b\n")
    assert any("NUL character in row 2" in n for n in a.notes)


def test_a_time_zone_format_can_be_chosen_for_a_column(tmp_path):
    path = str(write(tmp_path, "subject,at\nS1,2024-04-02 12:34:00\n"))
    a = analyse(path, detect_layout(path), formats={1: "zone:America/Denver"})
    at = col(a, "at")
    assert (at.type, at.format) == ("DATETIME", "zone:America/Denver")

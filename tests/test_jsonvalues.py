"""The batch's row reader gives exactly read_row's values and refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from wave_web import jsonvalues
from wave_web.catalog import TypeRef
from wave_web.jsonvalues import RowProblemsJSON

XTYPE = TypeRef(
    1,
    "t",
    "t",
    {
        "n": "INTEGER",
        "x": "FLOAT",
        "ok": {"type": "BOOLEAN", "nullable": False},
        "s": "STRING",
        "txt": "TEXT",
    },
    1,
    None,
)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**33), max_value=2**33),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.sampled_from(["1", "true", "2.5", "\x00", "x" * 256]),
    st.lists(st.integers(), max_size=2),
)
KEYS = st.sampled_from(["n", "x", "ok", "s", "txt", "id", "other", "participant_id"])
PARTICIPANTS = st.one_of(
    st.sampled_from(["P1", "", "  ", "a\x00b", "p" * 100, "p" * 101]), st.text()
)


def outcome(read, participant, data):
    try:
        return ("ok", read(participant, data))
    except RowProblemsJSON as exc:
        return ("refused", exc.problems)


@settings(max_examples=400, deadline=None)
@given(PARTICIPANTS, st.dictionaries(KEYS, VALUES, max_size=6))
def test_row_reader_is_read_row(participant, data):
    reader = jsonvalues.row_reader(XTYPE)
    expected = outcome(
        lambda p, d: jsonvalues.read_row(XTYPE, p, d, new=True), participant, data
    )
    assert outcome(reader, participant, data) == expected


@pytest.mark.parametrize(
    ("data", "stored"),
    [
        ({"n": 2, "x": 0.5, "ok": True, "s": "a", "txt": "b"}, None),
        ({"n": 2.0, "x": 1, "ok": "yes"}, {"n": 2, "x": 1.0, "ok": True}),
    ],
    ids=["plain values taken as they are", "other spellings read by the rules"],
)
def test_row_reader_stores_what_the_rules_store(data, stored):
    values = jsonvalues.row_reader(XTYPE)("P1", data)
    assert values == {"participant_id": "P1", **(stored or data)}
    assert all(type(values[k]) is type((stored or data)[k]) for k in data)
